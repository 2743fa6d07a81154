//! Pod networking without a bridge: each pod gets a network namespace, a veth
//! whose node end carries the node's pod gateway (the first address of its
//! pod CIDR, as a /32) and whose pod end (`eth0`) carries the pod's address
//! (a /32), with routes on the link both ways and a default route in the pod.
//! Traffic between two pods of one node so passes the node's IP layer. Other
//! nodes' pod CIDRs are routed via those nodes' addresses.
//!
//! What was set up is recorded in the state directory (one file per address,
//! one per pod), so a restarted agent adopts it and frees what is no longer
//! wanted, by name.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use kubesvc_api::net::Cidr;
use kubesvc_host::{NetNs, Netlink, Route, sysctl};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::Error;

/// What one pod's network is, as recorded.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Sandbox {
    pub netns: String,
    pub host_veth: String,
    pub ips: Vec<IpAddr>,
}

impl Sandbox {
    pub fn netns_path(&self) -> PathBuf {
        Path::new(kubesvc_host::netns::RUN_DIR).join(&self.netns)
    }

    /// Where the network namespace of pod `uid` is (or would be).
    pub fn netns_path_of(uid: &str) -> PathBuf {
        Path::new(kubesvc_host::netns::RUN_DIR).join(names(uid).0)
    }
}

pub struct PodNetwork {
    nl: Netlink,
    cidr: Cidr,
    gateway: IpAddr,
    state: PathBuf,
    /// Address → pod uid.
    taken: Mutex<BTreeMap<IpAddr, String>>,
    /// Other nodes' pod CIDRs routed, with their gateways.
    peers: Mutex<BTreeMap<String, (Cidr, IpAddr)>>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::Io(path.to_path_buf(), e)
}

/// The names a pod's network parts get (veth names hold at most 15 bytes).
fn names(uid: &str) -> (String, String) {
    let short: String = uid.chars().filter(|c| c.is_ascii_hexdigit()).take(12).collect();
    (format!("kubesvc-pod-{uid}"), format!("kv{short}"))
}

impl PodNetwork {
    /// Takes the node's pod CIDR; forwarding on; reads what an earlier run recorded.
    pub async fn start(state: &Path, cidr: Cidr) -> Result<PodNetwork, Error> {
        let gateway = cidr.nth(1).ok_or_else(|| Error::Network(format!("pod CIDR {cidr} has no first address")))?;
        sysctl::set("net/ipv4/ip_forward", "1")?;
        let dir = state.join("ips");
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut taken = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))?.flatten() {
            let Ok(ip) = entry.file_name().to_string_lossy().parse::<IpAddr>() else { continue };
            if let Ok(uid) = std::fs::read_to_string(entry.path()) {
                taken.insert(ip, uid.trim().to_string());
            }
        }
        Ok(PodNetwork {
            nl: Netlink::connect()?,
            cidr,
            gateway,
            state: state.to_path_buf(),
            taken: Mutex::new(taken),
            peers: Mutex::default(),
        })
    }

    pub fn gateway(&self) -> IpAddr {
        self.gateway
    }

    fn record_path(&self, uid: &str) -> PathBuf {
        self.state.join("pods").join(uid).join("sandbox.json")
    }

    /// The recorded sandbox of pod `uid`, if any.
    pub fn recorded(&self, uid: &str) -> Option<Sandbox> {
        serde_json::from_slice(&std::fs::read(self.record_path(uid)).ok()?).ok()
    }

    /// Every pod uid with a recorded sandbox.
    pub fn recorded_pods(&self) -> Vec<String> {
        let dir = self.state.join("pods");
        let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
        entries
            .flatten()
            .filter(|e| e.path().join("sandbox.json").exists())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// The lowest free address after the gateway, recorded for `uid`.
    fn allocate(&self, uid: &str) -> Result<IpAddr, Error> {
        let mut taken = self.taken.lock();
        if let Some((ip, _)) = taken.iter().find(|(_, u)| *u == uid) {
            return Ok(*ip);
        }
        // Skip the network address and the gateway; the last (broadcast) address is never used.
        let last = self.cidr.len().saturating_sub(1);
        let ip = (2..last)
            .filter_map(|n| self.cidr.nth(n))
            .find(|ip| !taken.contains_key(ip))
            .ok_or_else(|| Error::Network(format!("no free address left in {}", self.cidr)))?;
        let path = self.state.join("ips").join(ip.to_string());
        std::fs::write(&path, uid).map_err(io(&path))?;
        taken.insert(ip, uid.to_string());
        Ok(ip)
    }

    fn release(&self, ip: &IpAddr) {
        self.taken.lock().remove(ip);
        let _ = std::fs::remove_file(self.state.join("ips").join(ip.to_string()));
    }

    /// Sets up (or finds, after a restart) pod `uid`'s network.
    pub async fn setup(&self, uid: &str) -> Result<Sandbox, Error> {
        let (netns, host_veth) = names(uid);
        if let Some(s) = self.recorded(uid)
            && NetNs::exists(&s.netns)
            && self.nl.try_index(&s.host_veth).await?.is_some()
        {
            return Ok(s);
        }
        // Whatever half-made parts an interrupted setup left go first.
        self.remove_parts(&netns, &host_veth).await;
        let ip = self.allocate(uid)?;
        let made = self.wire(&netns, &host_veth, ip).await;
        if let Err(e) = made {
            self.remove_parts(&netns, &host_veth).await;
            self.release(&ip);
            return Err(e);
        }
        let sandbox = Sandbox { netns, host_veth, ips: vec![ip] };
        let path = self.record_path(uid);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let text = serde_json::to_vec(&sandbox).map_err(|e| Error::Network(e.to_string()))?;
        std::fs::write(&path, text).map_err(io(&path))?;
        Ok(sandbox)
    }

    async fn wire(&self, netns: &str, host_veth: &str, ip: IpAddr) -> Result<(), Error> {
        let ns = NetNs::create(netns)?;
        let pod = Netlink::connect_in(&ns)?;
        pod.set_up("lo").await?;
        // Made with its pod end already inside, as `eth0`: moving a link costs far more.
        self.nl.add_veth_into(host_veth, "eth0", &ns).await?;
        self.nl.add_address(host_veth, self.gateway, 32).await?;
        self.nl.set_up(host_veth).await?;
        pod.add_address("eth0", ip, 32).await?;
        pod.set_up("eth0").await?;
        pod.add_route(&Route::on_link(self.gateway, 32, "eth0")).await?;
        let any = if ip.is_ipv4() { IpAddr::from([0, 0, 0, 0]) } else { IpAddr::from([0u16; 8]) };
        pod.add_route(&Route::via(any, 0, self.gateway, Some("eth0"))).await?;
        self.nl.add_route(&Route::on_link(ip, 32, host_veth)).await?;
        Ok(())
    }

    /// The namespace's name goes, and the kernel frees the namespace and the
    /// veth with it (both ends) as its last process ends; deleting the veth
    /// here instead would wait ~16 ms on the kernel per pod. A veth left
    /// without a namespace (an interrupted setup) is deleted outright.
    async fn remove_parts(&self, netns: &str, host_veth: &str) {
        match NetNs::open(netns) {
            Ok(ns) => {
                let _ = ns.delete();
            }
            Err(_) => {
                if let Ok(Some(_)) = self.nl.try_index(host_veth).await {
                    let _ = self.nl.delete_link(host_veth).await;
                }
            }
        }
    }

    /// Removes pod `uid`'s network: its veth (and route), namespace and address.
    pub async fn teardown(&self, uid: &str) -> Result<(), Error> {
        let (netns, host_veth) = names(uid);
        let recorded = self.recorded(uid);
        self.remove_parts(&netns, &host_veth).await;
        let ips: Vec<IpAddr> = match &recorded {
            Some(s) => s.ips.clone(),
            None => self.taken.lock().iter().filter(|(_, u)| *u == uid).map(|(ip, _)| *ip).collect(),
        };
        for ip in ips {
            self.release(&ip);
        }
        let dir = self.state.join("pods").join(uid);
        let _ = std::fs::remove_file(dir.join("sandbox.json"));
        Ok(())
    }

    /// Routes other nodes' pod CIDRs via their addresses: `peers` is node name →
    /// (pod CIDR, node address); routes of nodes gone are removed.
    pub async fn route_peers(&self, wanted: BTreeMap<String, (Cidr, IpAddr)>) -> Result<(), Error> {
        let current = self.peers.lock().clone();
        for (node, (cidr, via)) in &current {
            if wanted.get(node) != Some(&(*cidr, *via)) {
                let _ = self.nl.delete_route(&Route::via(cidr.network, cidr.prefix, *via, None)).await;
            }
        }
        let mut done = BTreeMap::new();
        for (node, (cidr, via)) in wanted {
            if cidr.family() != self.cidr.family() || cidr == self.cidr {
                continue;
            }
            match self.nl.add_route(&Route::via(cidr.network, cidr.prefix, via, None)).await {
                Ok(()) => {
                    done.insert(node, (cidr, via));
                }
                Err(e) => tracing::warn!(node, %cidr, %via, error = %e, "routing a node's pods failed"),
            }
        }
        *self.peers.lock() = done;
        Ok(())
    }

    /// The addresses pods hold now, with their uids.
    pub fn allocations(&self) -> BTreeSet<(IpAddr, String)> {
        self.taken.lock().iter().map(|(ip, uid)| (*ip, uid.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::names;

    #[test]
    fn link_names_fit_the_kernel() {
        let (ns, veth) = names("0d1c3b6e-7f3e-4a7b-9c1d-2e3f4a5b6c7d");
        assert_eq!(ns, "kubesvc-pod-0d1c3b6e-7f3e-4a7b-9c1d-2e3f4a5b6c7d");
        assert_eq!(veth, "kv0d1c3b6e7f3e");
        assert!(veth.len() <= 15);
    }
}
