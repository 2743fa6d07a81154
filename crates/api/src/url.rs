//! URL pieces decoded as Go's net/url decodes them.

/// Go's `url.ParseQuery` decoding; `+` is a space in queries.
pub fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = b[i + 1..i + 3]
                    .iter()
                    .all(u8::is_ascii_hexdigit)
                    .then(|| std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()))
                    .flatten();
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A query string's `key=value` pairs, decoded as Go's `url.ParseQuery`
/// decodes them (a key without `=` has the empty value), in order.
pub fn query_pairs(q: Option<&str>) -> impl Iterator<Item = (String, String)> + '_ {
    q.unwrap_or_default().split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k, true), percent_decode(v, true))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_as_go_does() {
        assert_eq!(percent_decode("%+1x%41", false), "%+1xA");
        assert_eq!(percent_decode("a+b%20c", true), "a b c");
        assert_eq!(percent_decode("a+b", false), "a+b");
        let pairs: Vec<_> = query_pairs(Some("command=echo+hi%21&tty&x=1")).collect();
        assert_eq!(
            pairs,
            [("command".into(), "echo hi!".into()), ("tty".into(), String::new()), ("x".into(), "1".into())]
        );
    }
}
