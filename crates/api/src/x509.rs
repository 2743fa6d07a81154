//! Just enough DER to read a certificate's subject; the TLS verifier has
//! already checked the certificate, so nothing here is trusted for more.

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
/// The `[0]` EXPLICIT version of a v3 certificate.
const VERSION: u8 = 0xa0;
/// 2.5.4.3 and 2.5.4.10.
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
const OID_O: &[u8] = &[0x55, 0x04, 0x0a];

/// Splits one TLV off the front: (tag, contents, rest).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

fn expect(input: &[u8], want: u8) -> Option<(&[u8], &[u8])> {
    let (tag, body, rest) = tlv(input)?;
    (tag == want).then_some((body, rest))
}

/// The text of a DirectoryString: UTF8String, PrintableString, IA5String and
/// T61String as bytes, BMPString as UTF-16BE; `None` for anything else.
fn decode_string(tag: u8, bytes: &[u8]) -> Option<String> {
    match tag {
        0x0c | 0x13 | 0x16 | 0x14 => String::from_utf8(bytes.to_vec()).ok(),
        0x1e if bytes.len().is_multiple_of(2) => {
            let units: Vec<u16> = bytes.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

/// The subject's CN and O values (those that decode).
pub fn subject(cert: &[u8]) -> Option<(Option<String>, Vec<String>)> {
    let (cert, _) = expect(cert, SEQUENCE)?;
    let (tbs, _) = expect(cert, SEQUENCE)?;
    let mut rest = tbs;
    if rest.first() == Some(&VERSION) {
        rest = tlv(rest)?.2;
    }
    // serialNumber, signature, issuer, validity, then the subject.
    for _ in 0..4 {
        rest = tlv(rest)?.2;
    }
    let (mut name, _) = expect(rest, SEQUENCE)?;
    let (mut cn, mut orgs) = (None, Vec::new());
    while !name.is_empty() {
        let (mut rdn, next) = expect(name, SET)?;
        name = next;
        while !rdn.is_empty() {
            let (attr, next) = expect(rdn, SEQUENCE)?;
            rdn = next;
            let (oid, value) = expect(attr, OID)?;
            if oid != OID_CN && oid != OID_O {
                continue;
            }
            let (tag, text, _) = tlv(value)?;
            let Some(text) = decode_string(tag, text) else { continue };
            if oid == OID_CN {
                cn = Some(text);
            } else {
                orgs.push(text);
            }
        }
    }
    Some((cn, orgs))
}
