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
