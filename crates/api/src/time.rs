//! Kubernetes' timestamp formats: `metav1.Time` (RFC 3339, seconds) and
//! `metav1.MicroTime` (RFC 3339, exactly six fractional digits), both in UTC.

use jiff::{Timestamp, Unit};

pub fn now() -> Timestamp {
    Timestamp::now()
}

/// Parses RFC 3339 with any offset and optional fraction.
pub fn parse(s: &str) -> Option<Timestamp> {
    s.parse::<Timestamp>().ok()
}

/// `2006-01-02T15:04:05Z`, truncated to the second as Go does.
pub fn format(ts: Timestamp) -> String {
    let secs = Timestamp::from_second(ts.as_second()).unwrap_or(ts);
    secs.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `2006-01-02T15:04:05.000000Z`, truncated to the microsecond.
pub fn format_micro(ts: Timestamp) -> String {
    let micros =
        ts.round(jiff::TimestampRound::new().smallest(Unit::Microsecond).mode(jiff::RoundMode::Trunc)).unwrap_or(ts);
    micros.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub fn now_string() -> String {
    format(now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let ts = parse("2024-05-01T12:00:00.987654321+02:00").unwrap();
        assert_eq!(format(ts), "2024-05-01T10:00:00Z");
        assert_eq!(format_micro(ts), "2024-05-01T10:00:00.987654Z");
        assert!(parse("2024-05-01").is_none());
    }
}
