//! SPDY/3 framing as Kubernetes' streams use it (moby/spdystream): control
//! frames (SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY,
//! HEADERS, WINDOW_UPDATE) and data frames, with header blocks compressed by
//! one zlib stream per direction primed with SPDY/3's dictionary. No flow
//! control: spdystream keeps none.

use std::collections::BTreeMap;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

pub const SYN_STREAM: u16 = 1;
pub const SYN_REPLY: u16 = 2;
pub const RST_STREAM: u16 = 3;
pub const SETTINGS: u16 = 4;
pub const PING: u16 = 6;
pub const GOAWAY: u16 = 7;
pub const HEADERS: u16 = 8;
pub const WINDOW_UPDATE: u16 = 9;
pub const FLAG_FIN: u8 = 0x01;
/// The most a header block may decompress to.
const MAX_HEADER_BLOCK: usize = 1 << 20;

/// The words SPDY/3's header dictionary lists, each length-prefixed in it.
const DICTIONARY_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// The text that ends SPDY/3's header dictionary.
const DICTIONARY_TAIL: &str = "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505\
203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized\
403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable\
Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT\
chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,\
text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";

/// SPDY/3's zlib dictionary for header blocks (draft 3, section 2.6.10.1).
pub fn dictionary() -> Vec<u8> {
    let mut d = Vec::with_capacity(1423);
    for w in DICTIONARY_WORDS {
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    d.extend_from_slice(DICTIONARY_TAIL.as_bytes());
    d
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("malformed SPDY frame: {0}")]
    Malformed(&'static str),
    #[error("SPDY header compression: {0}")]
    Zlib(String),
}

/// One frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Control { kind: u16, flags: u8, payload: Vec<u8> },
    Data { stream: u32, flags: u8, data: Vec<u8> },
}

/// Splits frames off the front of `buf`; `None` until a whole frame is there.
pub fn parse(buf: &mut Vec<u8>) -> Option<Frame> {
    if buf.len() < 8 {
        return None;
    }
    let len = (usize::from(buf[5]) << 16) | (usize::from(buf[6]) << 8) | usize::from(buf[7]);
    if buf.len() < 8 + len {
        return None;
    }
    let flags = buf[4];
    let payload = buf[8..8 + len].to_vec();
    let head = [buf[0], buf[1], buf[2], buf[3]];
    buf.drain(..8 + len);
    Some(if head[0] & 0x80 != 0 {
        Frame::Control { kind: u16::from_be_bytes([head[2], head[3]]), flags, payload }
    } else {
        Frame::Data { stream: u32::from_be_bytes(head) & 0x7fff_ffff, flags, data: payload }
    })
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + payload.len());
    f.extend_from_slice(&[0x80, 3]);
    f.extend_from_slice(&kind.to_be_bytes());
    f.push(flags);
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(payload);
    f
}

/// A data frame (at most 16 MiB - 1 of data).
pub fn data(stream: u32, fin: bool, bytes: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + bytes.len());
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.push(if fin { FLAG_FIN } else { 0 });
    f.extend_from_slice(&(bytes.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(bytes);
    f
}

pub fn ping(id: u32) -> Vec<u8> {
    control(PING, 0, &id.to_be_bytes())
}

pub fn rst_stream(stream: u32, status: u32) -> Vec<u8> {
    let mut p = stream.to_be_bytes().to_vec();
    p.extend_from_slice(&status.to_be_bytes());
    control(RST_STREAM, 0, &p)
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, Error> {
    b.get(at..at + 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]])).ok_or(Error::Malformed("short frame"))
}

/// A SYN_STREAM's stream id and compressed header block.
pub fn syn_stream(payload: &[u8]) -> Result<(u32, &[u8]), Error> {
    let id = u32_at(payload, 0)? & 0x7fff_ffff;
    payload.get(10..).map(|h| (id, h)).ok_or(Error::Malformed("short SYN_STREAM"))
}

/// The stream id a RST_STREAM, PING or WINDOW_UPDATE names first.
pub fn first_word(payload: &[u8]) -> Result<u32, Error> {
    u32_at(payload, 0)
}

/// The two header-compression contexts of one connection.
pub struct Headers {
    inflate: Decompress,
    deflate: Compress,
    dictionary: Vec<u8>,
}

impl Default for Headers {
    fn default() -> Self {
        let dictionary = dictionary();
        let mut deflate = Compress::new(Compression::default(), true);
        // Primed as spdystream's compressor is, so either side could read the other.
        let _ = deflate.set_dictionary(&dictionary);
        Headers { inflate: Decompress::new(true), deflate, dictionary }
    }
}

impl Headers {
    /// Decodes a compressed header block (names lowercase, values split on NUL).
    pub fn decode(&mut self, block: &[u8]) -> Result<BTreeMap<String, Vec<String>>, Error> {
        let mut out = Vec::with_capacity(block.len() * 4 + 64);
        let mut input = block;
        loop {
            out.reserve(4096);
            let (before_in, before_out) = (self.inflate.total_in(), self.inflate.total_out());
            let mut progress_expected = true;
            match self.inflate.decompress_vec(input, &mut out, FlushDecompress::Sync) {
                Ok(_) => {}
                // The block's zlib header asks for the dictionary (spdystream primes its compressor).
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate.set_dictionary(&self.dictionary).map_err(|e| Error::Zlib(e.to_string()))?;
                    progress_expected = false;
                }
                Err(e) => return Err(Error::Zlib(e.to_string())),
            }
            let used = (self.inflate.total_in() - before_in) as usize;
            input = &input[used..];
            // Headers name a stream type, a port and a request id: a block this big is an attack.
            if out.len() > MAX_HEADER_BLOCK {
                return Err(Error::Malformed("a header block over 1 MiB"));
            }
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
            let stuck = used == 0 && self.inflate.total_out() == before_out;
            if stuck && progress_expected {
                return Err(Error::Malformed("a header block that does not decompress"));
            }
        }
        parse_block(&out)
    }

    /// Encodes a header block, flushed so the peer can read it at once.
    pub fn encode(&mut self, headers: &[(&str, &str)]) -> Result<Vec<u8>, Error> {
        let mut raw = (headers.len() as u32).to_be_bytes().to_vec();
        for (n, v) in headers {
            raw.extend_from_slice(&(n.len() as u32).to_be_bytes());
            raw.extend_from_slice(n.to_ascii_lowercase().as_bytes());
            raw.extend_from_slice(&(v.len() as u32).to_be_bytes());
            raw.extend_from_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input = &raw[..];
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            let before = self.deflate.total_in();
            self.deflate.compress_vec(input, &mut out, FlushCompress::Sync).map_err(|e| Error::Zlib(e.to_string()))?;
            input = &input[(self.deflate.total_in() - before) as usize..];
            // Done once everything went in and the flush fitted.
            if input.is_empty() && out.capacity() > out.len() {
                return Ok(out);
            }
        }
    }

    /// A SYN_REPLY for `stream`.
    pub fn syn_reply(&mut self, stream: u32, headers: &[(&str, &str)]) -> Result<Vec<u8>, Error> {
        let mut p = (stream & 0x7fff_ffff).to_be_bytes().to_vec();
        p.extend(self.encode(headers)?);
        Ok(control(SYN_REPLY, 0, &p))
    }
}

fn parse_block(b: &[u8]) -> Result<BTreeMap<String, Vec<String>>, Error> {
    let n = u32_at(b, 0)? as usize;
    let mut at = 4;
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let len = u32_at(b, at)? as usize;
        let name = b.get(at + 4..at + 4 + len).ok_or(Error::Malformed("header name"))?;
        at += 4 + len;
        let len = u32_at(b, at)? as usize;
        let value = b.get(at + 4..at + 4 + len).ok_or(Error::Malformed("header value"))?;
        at += 4 + len;
        let values = String::from_utf8_lossy(value).split('\0').map(str::to_string).collect();
        out.insert(String::from_utf8_lossy(name).to_lowercase(), values);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_spdy_3s() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        // zlib names a dictionary by its Adler-32; this is SPDY/3's.
        let mut probe = Compress::new(Compression::default(), true);
        assert_eq!(probe.set_dictionary(&d).ok(), Some(0xe3c6_a7c2));
    }

    #[test]
    fn header_blocks_round_trip_across_frames() {
        // One side's compressor feeds the other side's decompressor, block after block.
        let (mut a, mut b) = (Headers::default(), Headers::default());
        for port in ["8080", "9090"] {
            let block = a.encode(&[("streamType", "data"), ("port", port), ("requestID", "0")]).unwrap_or_default();
            let h = b.decode(&block).unwrap_or_default();
            assert_eq!(h.get("streamtype"), Some(&vec!["data".to_string()]));
            assert_eq!(h.get("port"), Some(&vec![port.to_string()]));
        }
    }

    #[test]
    fn frames_are_split_off_a_byte_stream() {
        let mut buf = data(3, true, b"hello");
        buf.extend(ping(1));
        buf.extend_from_slice(&[0x80]);
        assert_eq!(parse(&mut buf), Some(Frame::Data { stream: 3, flags: FLAG_FIN, data: b"hello".to_vec() }));
        assert_eq!(
            parse(&mut buf),
            Some(Frame::Control { kind: PING, flags: 0, payload: 1u32.to_be_bytes().to_vec() })
        );
        assert_eq!(parse(&mut buf), None);
        assert_eq!(buf, [0x80]);
    }
}
