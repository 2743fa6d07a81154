//! IP address and CIDR checks, worded as Kubernetes words them.
//!
//! Kubernetes parses addresses two ways: "sloppily" (the old Go parser, which
//! reads IPv4 octets with leading zeros as decimal) and strictly (`netip`).
//! A value that only the sloppy parser accepts, or an IPv4-mapped IPv6
//! address, is an error in new values of legacy fields; values already
//! stored in the old object are exempt so that updates keep working.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{ErrorList, FieldError, go_quote as q};

/// Parses an IPv4 address whose octets may carry leading zeros (read as decimal).
fn parse_v4_sloppy(s: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = s.split('.');
    for o in &mut octets {
        let p = parts.next()?;
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let trimmed = p.trim_start_matches('0');
        if trimmed.len() > 3 {
            return None;
        }
        *o = if trimmed.is_empty() { 0 } else { trimmed.parse().ok()? };
    }
    parts.next().is_none().then_some(Ipv4Addr::from(octets))
}

/// The old Go parser: std's strict forms, plus IPv4 octets with leading zeros,
/// alone or as the tail of an IPv6 address. Zones are refused.
pub fn parse_ip_sloppy(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(v4) = parse_v4_sloppy(s) {
        return Some(IpAddr::V4(v4));
    }
    let (head, tail) = s.rsplit_once(':')?;
    let v4 = parse_v4_sloppy(tail)?;
    format!("{head}:{v4}").parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

/// Whether Go's `netip.ParseAddr` accepts `s` (no leading zeros); zones are not used here.
fn parses_strictly(s: &str) -> bool {
    !s.contains('%') && s.parse::<IpAddr>().is_ok()
}

fn is_4in6(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some())
}

/// How Go's `net.IP.String()` prints an address: IPv4-mapped addresses as IPv4.
pub fn go_ip_string(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        IpAddr::V4(v4) => v4.to_string(),
    }
}

const NOT_AN_IP: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";

/// The strict-mode checks shared by legacy and new IP fields.
fn parse_checked(path: &str, value: &str, errs: &mut ErrorList) -> Option<IpAddr> {
    let Some(ip) = parse_ip_sloppy(value) else {
        errs.push(FieldError::invalid(path, value, NOT_AN_IP));
        return None;
    };
    if !parses_strictly(value) {
        errs.push(FieldError::invalid(path, value, "must not have leading 0s"));
    }
    if is_4in6(&ip) {
        errs.push(FieldError::invalid(path, value, "must not be an IPv4-mapped IPv6 address"));
    }
    Some(ip)
}

/// `IsValidIPForLegacyField`: an IP in an old field (clusterIPs, externalIPs,
/// endpoint addresses); values in `old` are accepted as they are.
pub fn legacy_ip(path: &str, value: &str, old: &[&str]) -> ErrorList {
    let mut errs = ErrorList::new();
    if !old.contains(&value) {
        parse_checked(path, value, &mut errs);
    }
    errs
}

/// `IsValidIP`: an IP in a new field, which must also be in canonical form.
pub fn strict_ip(path: &str, value: &str) -> ErrorList {
    let mut errs = ErrorList::new();
    if let Some(ip) = parse_checked(path, value, &mut errs)
        && errs.is_empty()
        && ip.to_string() != value
    {
        errs.push(FieldError::invalid(path, value, format!("must be in canonical form ({})", q(&ip.to_string()))));
    }
    errs
}

/// A CIDR as the old Go parser reads it: the address (host bits as given) and prefix length.
pub fn parse_cidr_sloppy(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = s.split_once('/')?;
    let ip = parse_ip_sloppy(addr)?;
    if addr.contains('%') || len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let trimmed = len.trim_start_matches('0');
    let prefix: u32 = if trimmed.is_empty() { 0 } else { trimmed.parse().ok()? };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some((ip, prefix as u8))
}

fn masked(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) };
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix)) };
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

/// `IsValidCIDRForLegacyField`: a CIDR in an old field; values in `old` are accepted as they are.
pub fn legacy_cidr(path: &str, value: &str, old: &[&str]) -> ErrorList {
    let mut errs = ErrorList::new();
    if old.contains(&value) {
        return errs;
    }
    let Some((ip, prefix)) = parse_cidr_sloppy(value) else {
        errs.push(FieldError::invalid(path, value, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"));
        return errs;
    };
    let (addr, len) = value.split_once('/').unwrap_or((value, ""));
    let strict_len = len == "0" || !len.starts_with('0');
    if !parses_strictly(addr) || !strict_len {
        errs.push(FieldError::invalid(path, value, "must not have leading 0s in IP or prefix length"));
    } else if is_4in6(&ip) {
        errs.push(FieldError::invalid(path, value, "must not have an IPv4-mapped IPv6 address"));
    } else if masked(ip, prefix) != ip {
        errs.push(FieldError::invalid(path, value, "must not have bits set beyond the prefix length"));
    }
    errs
}

/// `ValidateEndpointIP`: an address traffic may be sent to (not unspecified,
/// loopback or link-local).
pub fn endpoint_ip(path: &str, value: &str) -> ErrorList {
    let mut errs = ErrorList::new();
    let Some(ip) = parse_ip_sloppy(value) else {
        errs.push(FieldError::invalid(path, value, "must be a valid IP address"));
        return errs;
    };
    // Go looks through IPv4-mapped addresses.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    let (unspecified, loopback, link_local, link_local_multicast) = match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            (v4.is_unspecified(), v4.is_loopback(), o[0] == 169 && o[1] == 254, o[0] == 224 && o[1] == 0 && o[2] == 0)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            (v6.is_unspecified(), v6.is_loopback(), s[0] & 0xffc0 == 0xfe80, s[0] & 0xff0f == 0xff02)
        }
    };
    if unspecified {
        errs.push(FieldError::invalid(path, value, format!("may not be unspecified ({value})")));
    }
    if loopback {
        errs.push(FieldError::invalid(path, value, "may not be in the loopback range (127.0.0.0/8, ::1/128)"));
    }
    if link_local {
        errs.push(FieldError::invalid(path, value, "may not be in the link-local range (169.254.0.0/16, fe80::/10)"));
    }
    if link_local_multicast {
        errs.push(FieldError::invalid(
            path,
            value,
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ));
    }
    errs
}

/// `GetWarningsForIP`: advice about accepted but non-standard addresses.
pub fn ip_warnings(path: &str, value: &str) -> Vec<String> {
    let Some(ip) = parse_ip_sloppy(value) else {
        return Vec::new();
    };
    if !parses_strictly(value) || is_4in6(&ip) {
        return vec![format!("{path}: non-standard IP address {} is invalid: use {}", q(value), q(&go_ip_string(&ip)))];
    }
    if ip.is_ipv6() && ip.to_string() != value {
        return vec![format!(
            "{path}: IPv6 address {} should be in RFC 5952 canonical format ({})",
            q(value),
            q(&ip.to_string())
        )];
    }
    Vec::new()
}

/// `GetWarningsForCIDR`: advice about accepted but ambiguous or non-standard CIDRs.
pub fn cidr_warnings(path: &str, value: &str) -> Vec<String> {
    let Some((ip, prefix)) = parse_cidr_sloppy(value) else {
        return Vec::new();
    };
    let mut warnings = Vec::new();
    let network = masked(ip, prefix);
    let canonical = format!("{}/{prefix}", go_ip_string(&network));
    if network != ip {
        let bits = if ip.is_ipv4() || is_4in6(&ip) { 32 } else { 128 };
        warnings.push(format!(
            "{path}: CIDR value {} is ambiguous in this context (should be {} or {}?)",
            q(value),
            q(&canonical),
            q(&format!("{}/{bits}", go_ip_string(&ip)))
        ));
    }
    let (addr, len) = value.split_once('/').unwrap_or((value, ""));
    let strict_len = len == "0" || !len.starts_with('0');
    if !parses_strictly(addr) || !strict_len || is_4in6(&ip) {
        warnings.push(format!("{path}: non-standard CIDR value {} is invalid: use {}", q(value), q(&canonical)));
    } else if ip.is_ipv6() && format!("{ip}/{prefix}") != value {
        warnings.push(format!(
            "{path}: IPv6 CIDR value {} should be in RFC 5952 canonical format ({})",
            q(value),
            q(&format!("{ip}/{prefix}"))
        ));
    }
    warnings
}

/// Whether a string is an IPv6 address (Go's `netutils.IsIPv6String`).
pub fn is_ipv6_string(s: &str) -> bool {
    matches!(parse_ip_sloppy(s), Some(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(errs: ErrorList) -> Vec<String> {
        errs.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn sloppy_parsing() {
        assert_eq!(parse_ip_sloppy("010.001.2.3"), Some("10.1.2.3".parse().unwrap()));
        assert_eq!(parse_ip_sloppy("::ffff:010.1.2.3"), Some("::ffff:10.1.2.3".parse().unwrap()));
        assert_eq!(parse_ip_sloppy("1.2.3.256"), None);
        assert_eq!(parse_ip_sloppy("fe80::1%eth0"), None);
        assert_eq!(parse_ip_sloppy("1.2.3"), None);
        assert_eq!(parse_cidr_sloppy("10.0.0.0/08"), Some(("10.0.0.0".parse().unwrap(), 8)));
        assert_eq!(parse_cidr_sloppy("10.0.0.0/33"), None);
    }

    #[test]
    fn legacy_and_strict_ips() {
        assert!(legacy_ip("f", "10.1.2.3", &[]).is_empty());
        assert!(legacy_ip("f", "FD00::1", &[]).is_empty());
        assert_eq!(
            msgs(legacy_ip("f", "010.1.2.3", &[])),
            [r#"f: Invalid value: "010.1.2.3": must not have leading 0s"#]
        );
        assert!(legacy_ip("f", "010.1.2.3", &["010.1.2.3"]).is_empty());
        assert_eq!(
            msgs(legacy_ip("f", "::ffff:1.2.3.4", &[])),
            [r#"f: Invalid value: "::ffff:1.2.3.4": must not be an IPv4-mapped IPv6 address"#]
        );
        assert_eq!(
            msgs(legacy_ip("f", "bad", &[])),
            [r#"f: Invalid value: "bad": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"#]
        );
        assert_eq!(
            msgs(strict_ip("f", "FD00:0:0::1")),
            [r#"f: Invalid value: "FD00:0:0::1": must be in canonical form ("fd00::1")"#]
        );
    }

    #[test]
    fn cidrs() {
        assert!(legacy_cidr("f", "10.0.0.0/8", &[]).is_empty());
        assert_eq!(
            msgs(legacy_cidr("f", "10.0.0.1/8", &[])),
            [r#"f: Invalid value: "10.0.0.1/8": must not have bits set beyond the prefix length"#]
        );
        assert_eq!(
            msgs(legacy_cidr("f", "10.0.0.0/08", &[])),
            [r#"f: Invalid value: "10.0.0.0/08": must not have leading 0s in IP or prefix length"#]
        );
        assert_eq!(
            msgs(legacy_cidr("f", "foo", &[])),
            [r#"f: Invalid value: "foo": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"#]
        );
        assert_eq!(
            cidr_warnings("f", "10.0.0.1/8"),
            [r#"f: CIDR value "10.0.0.1/8" is ambiguous in this context (should be "10.0.0.0/8" or "10.0.0.1/32"?)"#]
        );
    }

    #[test]
    fn endpoint_ips() {
        assert!(endpoint_ip("f", "10.1.2.3").is_empty());
        assert!(endpoint_ip("f", "239.1.2.3").is_empty());
        assert_eq!(
            msgs(endpoint_ip("f", "0.0.0.0")),
            [r#"f: Invalid value: "0.0.0.0": may not be unspecified (0.0.0.0)"#]
        );
        assert_eq!(endpoint_ip("f", "127.0.0.1").len(), 1);
        assert_eq!(endpoint_ip("f", "::1").len(), 1);
        assert_eq!(endpoint_ip("f", "169.254.1.1").len(), 1);
        assert_eq!(endpoint_ip("f", "fe80::1").len(), 1);
        assert_eq!(endpoint_ip("f", "224.0.0.1").len(), 1);
        assert_eq!(endpoint_ip("f", "ff02::1").len(), 1);
        assert_eq!(msgs(endpoint_ip("f", "x")), [r#"f: Invalid value: "x": must be a valid IP address"#]);
    }

    #[test]
    fn warnings() {
        assert_eq!(ip_warnings("f", "1.2.3.4"), Vec::<String>::new());
        assert_eq!(
            ip_warnings("f", "FD00::1"),
            [r#"f: IPv6 address "FD00::1" should be in RFC 5952 canonical format ("fd00::1")"#]
        );
        assert_eq!(
            ip_warnings("f", "010.1.2.3"),
            [r#"f: non-standard IP address "010.1.2.3" is invalid: use "10.1.2.3""#]
        );
    }
}
