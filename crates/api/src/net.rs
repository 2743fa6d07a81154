//! Address arithmetic for Service allocation: CIDRs, port ranges, and pools
//! of offsets that prefer a dynamic band and keep a static band for the
//! addresses and ports users pick themselves.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    IPv4,
    IPv6,
}

impl Family {
    pub fn of(ip: &IpAddr) -> Family {
        if ip.is_ipv4() { Family::IPv4 } else { Family::IPv6 }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Family::IPv4 => "IPv4",
            Family::IPv6 => "IPv6",
        }
    }

    pub fn parse(s: &str) -> Option<Family> {
        match s {
            "IPv4" => Some(Family::IPv4),
            "IPv6" => Some(Family::IPv6),
            _ => None,
        }
    }
}

/// An IP network, e.g. `10.96.0.0/12`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The network address (host bits zero).
    pub network: IpAddr,
    pub prefix: u8,
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_u128(family: Family, n: u128) -> IpAddr {
    match family {
        Family::IPv4 => IpAddr::V4(Ipv4Addr::from(n as u32)),
        Family::IPv6 => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

impl Cidr {
    /// Parses `a.b.c.d/n` or `x::y/n`; host bits must be zero.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = s.split_once('/').ok_or_else(|| format!("invalid CIDR address: {s}"))?;
        let ip: IpAddr = addr.parse().map_err(|_| format!("invalid CIDR address: {s}"))?;
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        let prefix: u8 =
            prefix.parse().ok().filter(|p| *p <= bits).ok_or_else(|| format!("invalid CIDR address: {s}"))?;
        let cidr = Cidr { network: ip, prefix };
        if cidr.masked() != ip {
            return Err(format!("invalid CIDR address: {s}: host bits are set"));
        }
        Ok(cidr)
    }

    pub fn family(&self) -> Family {
        Family::of(&self.network)
    }

    fn bits(&self) -> u32 {
        if self.network.is_ipv4() { 32 } else { 128 }
    }

    fn masked(&self) -> IpAddr {
        let host = self.bits() - u32::from(self.prefix);
        let n = to_u128(self.network);
        let mask = if host >= 128 { 0 } else { !((1u128 << host) - 1) };
        from_u128(self.family(), n & mask)
    }

    /// How many addresses the network spans (saturating for /0 in IPv6).
    pub fn len(&self) -> u128 {
        let host = self.bits() - u32::from(self.prefix);
        if host >= 128 { u128::MAX } else { 1u128 << host }
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        Family::of(ip) == self.family() && {
            let off = to_u128(*ip).wrapping_sub(to_u128(self.network));
            to_u128(*ip) >= to_u128(self.network) && off < self.len()
        }
    }

    /// The address `n` places after the network address.
    pub fn nth(&self, n: u128) -> Option<IpAddr> {
        (n < self.len()).then(|| from_u128(self.family(), to_u128(self.network) + n))
    }

    /// How far `ip` is from the network address, if inside.
    pub fn offset(&self, ip: &IpAddr) -> Option<u128> {
        self.contains(ip).then(|| to_u128(*ip) - to_u128(self.network))
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// `low-high`, inclusive, e.g. `30000-32767`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub low: u16,
    pub high: u16,
}

impl PortRange {
    pub fn parse(s: &str) -> Result<PortRange, String> {
        let bad = || format!("invalid port range {s:?}: expected <low>-<high>");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let (low, high): (u16, u16) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
        if low == 0 || high < low {
            return Err(bad());
        }
        Ok(PortRange { low, high })
    }

    pub fn size(&self) -> usize {
        usize::from(self.high - self.low) + 1
    }

    pub fn contains(&self, port: i64) -> bool {
        port >= i64::from(self.low) && port <= i64::from(self.high)
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.low, self.high)
    }
}

/// Which offsets of a range are taken, as a sorted set so that huge ranges
/// (an IPv6 /64) cost only what is allocated. Automatic allocation picks from
/// the dynamic band (offsets at or above `static_band`) and only falls back to
/// the static band when the dynamic one is full, so the addresses users pick
/// themselves from the low end rarely collide with automatic ones.
#[derive(Clone, Debug)]
pub struct Pool {
    size: u128,
    static_band: u128,
    used: std::collections::BTreeSet<u128>,
}

/// Kubernetes' static band for service IPs: size/16 clamped to [16, 256], none
/// for ranges of 16 addresses or fewer (`size` counts network and broadcast).
pub fn ip_static_band(total: u128) -> u128 {
    if total <= 16 { 0 } else { (total / 16).clamp(16, 256) }
}

/// Kubernetes' static band for node ports: size/32 clamped to [16, 128], none for 16 ports or fewer.
pub fn port_static_band(size: u128) -> u128 {
    if size <= 16 { 0 } else { (size / 32).clamp(16, 128) }
}

impl Pool {
    pub fn new(size: u128, static_band: u128) -> Pool {
        Pool { size, static_band: static_band.min(size), used: Default::default() }
    }

    pub fn size(&self) -> u128 {
        self.size
    }

    pub fn used(&self) -> usize {
        self.used.len()
    }

    pub fn is_used(&self, i: u128) -> bool {
        self.used.contains(&i)
    }

    /// Marks `i` taken; false if it already was (or is out of range).
    pub fn take(&mut self, i: u128) -> bool {
        i < self.size && self.used.insert(i)
    }

    pub fn free(&mut self, i: u128) {
        self.used.remove(&i);
    }

    /// A free offset in `[lo, hi)`, scanning up from `lo + start % (hi - lo)` and wrapping.
    fn free_in(&self, lo: u128, hi: u128, start: u128, skip: &dyn Fn(u128) -> bool) -> Option<u128> {
        if lo >= hi {
            return None;
        }
        let first = lo + start % (hi - lo);
        let scan = |from: u128, to: u128| -> Option<u128> {
            // Walk the taken offsets in order: the first gap at or after `from` is free.
            let mut cand = from;
            let mut taken = self.used.range(from..to).peekable();
            while cand < to {
                if taken.peek() == Some(&&cand) {
                    taken.next();
                    cand += 1;
                } else if skip(cand) {
                    cand += 1;
                } else {
                    return Some(cand);
                }
            }
            None
        };
        scan(first, hi).or_else(|| scan(lo, first))
    }

    /// A free offset for automatic allocation: the dynamic band first, then the
    /// static one. `start` spreads concurrent allocations; `skip` excludes
    /// offsets already chosen but not yet recorded.
    pub fn next_free(&self, start: u128, skip: &dyn Fn(u128) -> bool) -> Option<u128> {
        self.free_in(self.static_band, self.size, start, skip)
            .or_else(|| self.free_in(0, self.static_band, start, skip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.96.0.0/12").unwrap();
        assert_eq!(c.len(), 1 << 20);
        assert_eq!(c.nth(1).unwrap().to_string(), "10.96.0.1");
        assert_eq!(c.nth(10).unwrap().to_string(), "10.96.0.10");
        assert!(c.contains(&"10.111.255.255".parse().unwrap()));
        assert!(!c.contains(&"10.112.0.0".parse().unwrap()));
        assert_eq!(c.offset(&"10.96.1.0".parse().unwrap()), Some(256));
        assert!(Cidr::parse("10.96.0.1/12").is_err(), "host bits set");
        let v6 = Cidr::parse("fd00:10:96::/112").unwrap();
        assert_eq!(v6.len(), 65536);
        assert_eq!(v6.nth(10).unwrap().to_string(), "fd00:10:96::a");
        assert!(!v6.contains(&"10.96.0.1".parse().unwrap()));
        assert_eq!(PortRange::parse("30000-32767").unwrap().size(), 2768);
        assert!(PortRange::parse("3-2").is_err());
    }

    #[test]
    fn pool_prefers_the_dynamic_band() {
        let mut b = Pool::new(32, 16);
        let first = b.next_free(0, &|_| false).unwrap();
        assert!(first >= 16);
        for i in 16..32 {
            b.take(i);
        }
        let fallback = b.next_free(5, &|_| false).unwrap();
        assert!(fallback < 16, "static band when the dynamic one is full");
        for i in 0..16 {
            b.take(i);
        }
        assert_eq!(b.next_free(0, &|_| false), None);
        assert_eq!(b.used(), 32);
        b.free(3);
        assert_eq!(b.next_free(0, &|i| i == 4), Some(3));
        assert_eq!(b.next_free(0, &|i| i == 3), None);
        // A /64 costs nothing until used.
        let mut huge = Pool::new(u128::from(u64::MAX), 256);
        assert!(huge.take(1 << 40));
        assert!(huge.next_free(12345, &|_| false).unwrap() >= 256);
    }

    #[test]
    fn static_bands() {
        assert_eq!(ip_static_band(1 << 20), 256, "/12");
        assert_eq!(ip_static_band(256), 16, "/24");
        assert_eq!(ip_static_band(1 << 11), 128, "/21");
        assert_eq!(ip_static_band(16), 0, "/28");
        assert_eq!(port_static_band(2768), 86, "30000-32767");
        assert_eq!(port_static_band(16), 0);
    }
}
