//! The service IP ranges and the node port range, and a mirror of which of
//! their addresses and ports are taken, followed from the store.
//!
//! Each allocation is a key of its own (`/allocations/serviceips/<ip>`,
//! `/allocations/nodeports/<port>`) written in the same transaction as the
//! Service that holds it, with a compare that it did not exist: the store,
//! not this mirror, decides who gets an address. The mirror only lets
//! dynamic allocation pick candidates that are very likely free.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use kubesvc_api::net::{Cidr, Family, Pool, PortRange, ip_static_band, port_static_band};
use kubesvc_store::{EventKind, RangeRequest, Store, WatchBatch};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::NetworkError;
use crate::follow::Follower;

pub const PREFIX: &str = "/allocations/";
pub const IP_PREFIX: &str = "/allocations/serviceips/";
pub const PORT_PREFIX: &str = "/allocations/nodeports/";

/// How long a dynamically chosen candidate is kept from other requests while
/// its transaction is in flight.
const IN_FLIGHT: Duration = Duration::from_secs(30);

pub fn ip_key(ip: &IpAddr) -> String {
    format!("{IP_PREFIX}{ip}")
}

pub fn port_key(port: u16) -> String {
    format!("{PORT_PREFIX}{port}")
}

/// Who holds an allocation: a Service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// One service CIDR: its usable addresses are pool offsets 0.. (the network
/// address, and for IPv4 the broadcast address, are never handed out).
#[derive(Clone, Copy, Debug)]
pub struct IpRange {
    pub cidr: Cidr,
    usable: u128,
}

impl IpRange {
    pub fn new(cidr: Cidr) -> Result<IpRange, NetworkError> {
        let usable = match cidr.family() {
            Family::IPv4 => cidr.len().saturating_sub(2),
            Family::IPv6 => cidr.len().saturating_sub(1).min(u128::from(u64::MAX)),
        };
        if cidr.len() < 8 {
            return Err(NetworkError::RangeTooSmall(cidr));
        }
        if cidr.family() == Family::IPv6 && cidr.prefix < 64 {
            return Err(NetworkError::PrefixTooShort(cidr.prefix));
        }
        Ok(IpRange { cidr, usable })
    }

    /// The pool offset of a usable address of this range.
    pub fn offset(&self, ip: &IpAddr) -> Option<u128> {
        self.cidr.offset(ip).filter(|&o| o >= 1 && o <= self.usable).map(|o| o - 1)
    }

    pub fn ip(&self, offset: u128) -> Option<IpAddr> {
        self.cidr.nth(offset + 1)
    }

    /// The `n`th address of the range (1 = the first usable, as Kubernetes counts).
    pub fn indexed(&self, n: u128) -> Option<IpAddr> {
        self.cidr.nth(n)
    }

    fn pool(&self) -> Pool {
        Pool::new(self.usable, ip_static_band(self.cidr.len()))
    }
}

/// What is taken, as last seen in the store.
struct Mirror {
    ips: Vec<Pool>,
    ports: Pool,
    /// Keys handed to requests whose transactions have not shown up yet.
    in_flight: HashMap<String, Instant>,
}

/// The allocation ranges and the mirror of what is taken in them.
pub struct Ranges {
    pub ip_ranges: Vec<IpRange>,
    pub node_ports: PortRange,
    mirror: Mutex<Mirror>,
}

/// What a key names.
enum Slot {
    Ip(usize, u128),
    Port(u128),
}

impl Ranges {
    pub fn new(ip_ranges: Vec<IpRange>, node_ports: PortRange) -> Ranges {
        let size = node_ports.size() as u128;
        let mirror = Mirror {
            ips: ip_ranges.iter().map(IpRange::pool).collect(),
            ports: Pool::new(size, port_static_band(size)),
            in_flight: HashMap::new(),
        };
        Ranges { ip_ranges, node_ports, mirror: Mutex::new(mirror) }
    }

    pub fn range_of(&self, family: Family) -> Option<usize> {
        self.ip_ranges.iter().position(|r| r.cidr.family() == family)
    }

    /// The range holding a usable address `ip`, and its offset there.
    pub fn locate_ip(&self, ip: &IpAddr) -> Option<(usize, u128)> {
        self.ip_ranges.iter().enumerate().find_map(|(i, r)| r.offset(ip).map(|o| (i, o)))
    }

    fn slot(&self, key: &str) -> Option<Slot> {
        if let Some(ip) = key.strip_prefix(IP_PREFIX) {
            let ip: IpAddr = ip.parse().ok()?;
            return self.locate_ip(&ip).map(|(i, o)| Slot::Ip(i, o));
        }
        let port: i64 = key.strip_prefix(PORT_PREFIX)?.parse().ok()?;
        self.node_ports.contains(port).then(|| Slot::Port((port - i64::from(self.node_ports.low)) as u128))
    }

    /// Records a key written (`taken`) or deleted.
    fn record(&self, m: &mut Mirror, key: &str, taken: bool) {
        if taken {
            m.in_flight.remove(key);
        }
        match (self.slot(key), taken) {
            (Some(Slot::Ip(i, o)), true) => {
                m.ips[i].take(o);
            }
            (Some(Slot::Ip(i, o)), false) => m.ips[i].free(o),
            (Some(Slot::Port(o)), true) => {
                m.ports.take(o);
            }
            (Some(Slot::Port(o)), false) => m.ports.free(o),
            (None, _) => {}
        }
    }

    /// Replaces the mirror with what the store holds; returns the revision read.
    pub async fn load_all(&self, store: &dyn Store) -> Result<i64, kubesvc_store::Error> {
        let snapshot = store.range(RangeRequest::prefix(PREFIX.as_bytes())).await?;
        let mut m = self.mirror.lock();
        for (p, r) in m.ips.iter_mut().zip(&self.ip_ranges) {
            *p = r.pool();
        }
        let size = self.node_ports.size() as u128;
        m.ports = Pool::new(size, port_static_band(size));
        for kv in &snapshot.kvs {
            let key = String::from_utf8_lossy(&kv.key).to_string();
            self.record(&mut m, &key, true);
        }
        Ok(snapshot.revision)
    }

    /// A free address of range `range` for automatic allocation, not one of `exclude`.
    pub fn pick_ip(&self, range: usize, exclude: &[String]) -> Option<IpAddr> {
        let r = self.ip_ranges[range];
        let key = |o: u128| r.ip(o).map(|ip| ip_key(&ip)).unwrap_or_default();
        let mut m = self.mirror.lock();
        let now = Instant::now();
        m.in_flight.retain(|_, at| now.duration_since(*at) < IN_FLIGHT);
        let start = rand::random::<u128>();
        let in_flight = &m.in_flight;
        // Candidates other requests hold are avoided while there is a choice; once
        // there is none they are tried too (a failed request may have left them).
        let o = m.ips[range]
            .next_free(start, &|o| {
                let k = key(o);
                in_flight.contains_key(&k) || exclude.contains(&k)
            })
            .or_else(|| m.ips[range].next_free(start, &|o| exclude.contains(&key(o))))?;
        let ip = r.ip(o)?;
        m.in_flight.insert(ip_key(&ip), now);
        Some(ip)
    }

    /// A free node port for automatic allocation, not one of `exclude`.
    pub fn pick_port(&self, exclude: &[String]) -> Option<u16> {
        let low = self.node_ports.low;
        let key = |o: u128| port_key(low + o as u16);
        let mut m = self.mirror.lock();
        let now = Instant::now();
        m.in_flight.retain(|_, at| now.duration_since(*at) < IN_FLIGHT);
        let start = rand::random::<u128>();
        let in_flight = &m.in_flight;
        let o = m
            .ports
            .next_free(start, &|o| {
                let k = key(o);
                in_flight.contains_key(&k) || exclude.contains(&k)
            })
            .or_else(|| m.ports.next_free(start, &|o| exclude.contains(&key(o))))?;
        let port = low + o as u16;
        m.in_flight.insert(port_key(port), now);
        Some(port)
    }
}

#[async_trait::async_trait]
impl Follower for Ranges {
    async fn load(&self, store: &dyn Store) -> Result<i64, kubesvc_store::Error> {
        self.load_all(store).await
    }

    fn apply(&self, batch: WatchBatch) {
        let mut m = self.mirror.lock();
        for ev in &batch.events {
            let key = String::from_utf8_lossy(&ev.kv.key).to_string();
            self.record(&mut m, &key, ev.kind == EventKind::Put);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use kubesvc_store::Txn;
    use kubesvc_store::memory::MemoryStore;

    use super::*;

    fn range(cidr: &str) -> IpRange {
        IpRange::new(Cidr::parse(cidr).unwrap()).unwrap()
    }

    fn ranges(cidr: &str, ports: &str) -> Ranges {
        Ranges::new(vec![range(cidr)], PortRange::parse(ports).unwrap())
    }

    #[test]
    fn usable_addresses_leave_out_network_and_broadcast() {
        let r = range("10.0.0.0/29");
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(r.offset(&ip("10.0.0.0")), None, "the network address");
        assert_eq!(r.offset(&ip("10.0.0.1")), Some(0));
        assert_eq!(r.offset(&ip("10.0.0.6")), Some(5));
        assert_eq!(r.offset(&ip("10.0.0.7")), None, "the broadcast address");
        assert_eq!(r.offset(&ip("10.0.1.1")), None);
        assert_eq!(r.ip(5), Some(ip("10.0.0.6")));
        assert_eq!(r.indexed(6), Some(ip("10.0.0.6")), "Kubernetes' n-th address, as kube-dns is the 10th");
        assert_eq!(r.indexed(10), None, "past the range");
        let v6 = range("fd00::/120");
        assert_eq!(v6.offset(&ip("fd00::ff")), Some(254), "IPv6 has no broadcast address");
        assert!(matches!(IpRange::new(Cidr::parse("10.0.0.0/30").unwrap()), Err(NetworkError::RangeTooSmall(_))));
        assert!(matches!(IpRange::new(Cidr::parse("fd00::/63").unwrap()), Err(NetworkError::PrefixTooShort(63))));
    }

    #[test]
    fn picks_avoid_taken_in_flight_and_excluded_addresses() {
        let r = ranges("10.0.0.0/29", "30000-30002");
        // Six usable addresses, no static band in so small a range: six distinct picks.
        let picks: BTreeSet<IpAddr> = (0..6).map(|_| r.pick_ip(0, &[]).unwrap()).collect();
        assert_eq!(picks.len(), 6, "in-flight candidates are not handed out twice while others are free");
        // All in flight: they are tried again rather than failing.
        assert!(r.pick_ip(0, &[]).is_some());
        let all: Vec<String> = picks.iter().map(ip_key).collect();
        assert_eq!(r.pick_ip(0, &all), None, "excluded ones never");
        let ports: BTreeSet<u16> = (0..3).map(|_| r.pick_port(&[]).unwrap()).collect();
        assert_eq!(ports, BTreeSet::from([30000, 30001, 30002]));
    }

    #[tokio::test]
    async fn the_mirror_follows_the_store() {
        let store = MemoryStore::new();
        let r = ranges("10.0.0.0/29", "30000-30099");
        let owner = br#"{"namespace":"default","name":"s","uid":"u"}"#.to_vec();
        let mut txn = Txn::default();
        for n in 1..=5 {
            txn.ops.push(kubesvc_store::Op::Put {
                key: ip_key(&format!("10.0.0.{n}").parse().unwrap()).into_bytes(),
                value: owner.clone().into(),
            });
        }
        assert!(store.txn(txn).await.unwrap().committed());
        r.load_all(&store).await.unwrap();
        for _ in 0..3 {
            assert_eq!(r.pick_ip(0, &[]), Some("10.0.0.6".parse().unwrap()), "the one free address");
        }
        // A deletion seen through the watch frees its address.
        let mut w = store.watch(PREFIX.as_bytes().to_vec(), 0).await.unwrap();
        let mut del = Txn::default();
        del.ops.push(kubesvc_store::Op::Delete { key: ip_key(&"10.0.0.2".parse().unwrap()).into_bytes() });
        assert!(store.txn(del).await.unwrap().committed());
        use futures::StreamExt;
        loop {
            let batch = w.next().await.unwrap().unwrap();
            let done = batch.events.iter().any(|e| e.kind == EventKind::Delete);
            r.apply(batch);
            if done {
                break;
            }
        }
        assert_eq!(r.pick_ip(0, &[]), Some("10.0.0.2".parse().unwrap()), "free and not in flight comes first");
        let free: BTreeSet<IpAddr> = BTreeSet::from(["10.0.0.2".parse().unwrap(), "10.0.0.6".parse().unwrap()]);
        for _ in 0..4 {
            assert!(free.contains(&r.pick_ip(0, &[]).unwrap()), "never one the store holds");
        }
    }

    #[test]
    fn dynamic_band_first() {
        // 100 ports: the first 16 are the static band, used only once the rest is gone.
        let r = ranges("10.0.0.0/24", "30000-30099");
        for _ in 0..84 {
            assert!(r.pick_port(&[]).unwrap() >= 30016);
        }
        assert!(r.pick_port(&[]).unwrap() < 30016, "then the static band");
    }
}
