//! Protobuf primitives: varints, keys, length-delimited fields.

use crate::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireType {
    Varint,
    Fixed64,
    Len,
    Fixed32,
}

pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    last: &'a [u8],
}

fn malformed(what: &str) -> Error {
    Error::Malformed(what.to_string())
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0, last: &[] }
    }

    pub fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub fn varint(&mut self) -> Result<u64, Error> {
        let mut v: u64 = 0;
        for shift in (0..70).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or_else(|| malformed("truncated varint"))?;
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err(malformed("varint overflows 64 bits"));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(malformed("varint too long"))
    }

    /// The next field's number and wire type, or `None` at the end.
    pub fn key(&mut self) -> Result<Option<(u32, WireType)>, Error> {
        if self.done() {
            return Ok(None);
        }
        let k = self.varint()?;
        let wt = match k & 7 {
            0 => WireType::Varint,
            1 => WireType::Fixed64,
            2 => WireType::Len,
            5 => WireType::Fixed32,
            other => return Err(Error::Malformed(format!("unsupported wire type {other}"))),
        };
        let tag = u32::try_from(k >> 3).map_err(|_| malformed("field number too large"))?;
        if tag == 0 {
            return Err(malformed("field number 0"));
        }
        Ok(Some((tag, wt)))
    }

    pub fn fixed64(&mut self) -> Result<u64, Error> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end =
            self.pos.checked_add(n).filter(|e| *e <= self.buf.len()).ok_or_else(|| malformed("truncated field"))?;
        let b = &self.buf[self.pos..end];
        self.pos = end;
        Ok(b)
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let n = usize::try_from(self.varint()?).map_err(|_| malformed("length too large"))?;
        let b = self.take(n)?;
        self.last = b;
        Ok(b)
    }

    /// The bytes of a length-delimited field, failing on any other wire type.
    pub fn expect_len(&mut self, wt: WireType) -> Result<&'a [u8], Error> {
        if wt != WireType::Len {
            return Err(Error::Malformed(format!("expected a length-delimited field, got {wt:?}")));
        }
        self.bytes()
    }

    /// The last length-delimited field read, as UTF-8.
    pub fn last_string(&self) -> Result<String, Error> {
        String::from_utf8(self.last.to_vec()).map_err(|_| malformed("invalid UTF-8 in a string field"))
    }

    pub fn string(&mut self) -> Result<String, Error> {
        self.bytes()?;
        self.last_string()
    }

    pub fn skip(&mut self, wt: WireType) -> Result<(), Error> {
        match wt {
            WireType::Varint => {
                self.varint()?;
            }
            WireType::Fixed64 => {
                self.take(8)?;
            }
            WireType::Len => {
                self.bytes()?;
            }
            WireType::Fixed32 => {
                self.take(4)?;
            }
        }
        Ok(())
    }
}

#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Writer::default()
    }

    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    fn key(&mut self, tag: u32, wt: u8) {
        self.varint((u64::from(tag) << 3) | u64::from(wt));
    }

    pub fn varint_field(&mut self, tag: u32, v: u64) {
        self.key(tag, 0);
        self.varint(v);
    }

    pub fn fixed64_field(&mut self, tag: u32, v: u64) {
        self.key(tag, 1);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn bytes_field(&mut self, tag: u32, b: &[u8]) {
        self.key(tag, 2);
        self.varint(b.len() as u64);
        self.buf.extend_from_slice(b);
    }

    pub fn string_field(&mut self, tag: u32, s: &str) {
        self.bytes_field(tag, s.as_bytes());
    }

    pub fn message(&mut self, tag: u32, body: &[u8]) {
        self.bytes_field(tag, body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_roundtrip() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, (-1i64) as u64, u64::MAX] {
            let mut w = Writer::new();
            w.varint(v);
            let b = w.into_inner();
            assert_eq!(Reader::new(&b).varint().unwrap(), v);
        }
        assert!(Reader::new(&[0x80]).varint().is_err(), "truncated");
        assert!(Reader::new(&[0xff; 11]).varint().is_err(), "too long");
    }
}
