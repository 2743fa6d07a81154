//! `resource.Quantity` syntax: a signed decimal with an optional binary-SI,
//! decimal-SI or exponent suffix, as Kubernetes parses it.

/// Whether `s` parses as a quantity (`100m`, `1.5Gi`, `2e3`, `-1`).
pub fn is_valid(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let split = body.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(body.len());
    let (number, suffix) = body.split_at(split);
    let digits = number.chars().filter(char::is_ascii_digit).count();
    if digits == 0 || number.matches('.').count() > 1 {
        return false;
    }
    match suffix {
        "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" => true,
        _ => match suffix.strip_prefix(['e', 'E']) {
            Some(exp) => {
                let exp = exp.strip_prefix(['+', '-']).unwrap_or(exp);
                !exp.is_empty() && exp.chars().all(|c| c.is_ascii_digit())
            }
            None => false,
        },
    }
}

/// The quantity in thousandths of its unit (`"500m"` → 500, `"1Ki"` → 1024000), for comparisons.
pub fn milli_value(s: &str) -> Option<i128> {
    if !is_valid(s) {
        return None;
    }
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let split = body.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(body.len());
    let (number, suffix) = body.split_at(split);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    let mantissa: i128 = if digits.is_empty() { 0 } else { digits.parse().ok()? };
    let scale = i32::try_from(frac.len()).ok()?;
    // value = mantissa * 10^(exp10 - scale) * 2^exp2, in thousandths.
    let (exp10, exp2): (i32, u32) = match suffix {
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "" => (0, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        exp => (exp[1..].parse().ok()?, 0),
    };
    let mut v = mantissa.checked_mul(1i128.checked_shl(exp2)?)?;
    let e = exp10.checked_add(3)?.checked_sub(scale)?;
    if e >= 0 {
        v = v.checked_mul(10i128.checked_pow(e as u32)?)?;
    } else {
        // Past 10^38 nothing of the value is left.
        v = 10i128.checked_pow(e.unsigned_abs()).map_or(0, |d| v / d);
    }
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::{is_valid, milli_value};

    #[test]
    fn values() {
        assert_eq!(milli_value("500m"), Some(500));
        assert_eq!(milli_value("0.5"), Some(500));
        assert_eq!(milli_value("1"), Some(1000));
        assert_eq!(milli_value("1Ki"), Some(1_024_000));
        assert_eq!(milli_value("2e3"), Some(2_000_000));
        assert_eq!(milli_value("-1.5k"), Some(-1_500_000));
        assert_eq!(milli_value("bad"), None);
        assert_eq!(milli_value("1e2147483647"), None, "no overflow panic");
        assert_eq!(
            milli_value("123456789012345678901234567890123456789012"),
            None,
            "too many digits is no value, not 0"
        );
        assert_eq!(milli_value("1e-100"), Some(0));
    }

    #[test]
    fn syntax() {
        for ok in ["0", "100m", "1.5Gi", "2e3", "-1", "+3", ".5", "5.", "1E-2", "128974848"] {
            assert!(is_valid(ok), "{ok}");
        }
        for bad in ["", "m", "1.2.3", "1Xi", "1e", "abc", "1 Gi"] {
            assert!(!is_valid(bad), "{bad}");
        }
    }
}
