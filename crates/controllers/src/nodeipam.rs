//! Node IPAM, as kube-controller-manager's range allocator does it: every
//! node gets a pod CIDR (one per `--cluster-cidr` range, a `/24` of
//! 10.244.0.0/16 by default) in `spec.podCIDR(s)`, the next free one after the
//! last handed out; a deleted node's CIDRs are free again. Existing
//! assignments are taken as they are; ranges the Services use are never given.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use kubesvc_api::net::{Cidr, Family};
use kubesvc_runtime::events::{EventType, Recorder, reference};
use kubesvc_runtime::{Change, Informer, WorkQueue};
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::watch;

use crate::Error;

/// How node CIDRs are cut from the cluster ranges.
#[derive(Clone, Debug)]
pub struct IpamOptions {
    /// `--cluster-cidr`: one range, or one per family for dual-stack. Empty: no allocation.
    pub cluster_cidrs: Vec<Cidr>,
    /// `--node-cidr-mask-size-ipv4` (24).
    pub mask_ipv4: u8,
    /// `--node-cidr-mask-size-ipv6` (64).
    pub mask_ipv6: u8,
    /// Service ranges: node CIDRs overlapping them are never handed out.
    pub service_cidrs: Vec<Cidr>,
}

impl Default for IpamOptions {
    fn default() -> Self {
        IpamOptions {
            cluster_cidrs: Cidr::parse("10.244.0.0/16").into_iter().collect(),
            mask_ipv4: 24,
            mask_ipv6: 64,
            service_cidrs: Vec::new(),
        }
    }
}

/// Why a set of node CIDRs cannot be cut from a cluster range.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CidrSetError {
    #[error("the node mask /{mask} does not fit in the cluster CIDR {cluster}")]
    MaskTooShort { cluster: Cidr, mask: u8 },
    #[error("New CIDR set failed; the node CIDR size is too big")]
    TooBig,
    #[error("CIDR allocation failed; there are no remaining CIDRs left to allocate in the accepted range")]
    Full,
}

/// One cluster range cut into node CIDRs, with which are taken.
#[derive(Debug)]
pub struct CidrSet {
    cluster: Cidr,
    mask: u8,
    used: Vec<bool>,
    /// Where the next search starts (after the last allocation), as Kubernetes does.
    next: usize,
}

/// Kubernetes' limit on how many node CIDRs one range may hold (2^16).
const MAX_DIFF: u8 = 16;

impl CidrSet {
    pub fn new(cluster: Cidr, mask: u8) -> Result<CidrSet, CidrSetError> {
        let bits = if cluster.family() == Family::IPv4 { 32 } else { 128 };
        if mask < cluster.prefix || mask > bits {
            return Err(CidrSetError::MaskTooShort { cluster, mask });
        }
        if mask - cluster.prefix > MAX_DIFF {
            return Err(CidrSetError::TooBig);
        }
        Ok(CidrSet { cluster, mask, used: vec![false; 1 << (mask - cluster.prefix)], next: 0 })
    }

    fn step(&self) -> u128 {
        let bits: u32 = if self.cluster.family() == Family::IPv4 { 32 } else { 128 };
        1u128 << (bits - u32::from(self.mask))
    }

    fn cidr(&self, index: usize) -> Option<Cidr> {
        let network = self.cluster.nth(index as u128 * self.step())?;
        Some(Cidr { network, prefix: self.mask })
    }

    /// The node CIDR index of `cidr`, if it is one of this set's.
    fn index(&self, cidr: &Cidr) -> Option<usize> {
        if cidr.prefix != self.mask {
            return None;
        }
        let offset = self.cluster.offset(&cidr.network)?;
        (offset % self.step() == 0).then(|| (offset / self.step()) as usize)
    }

    /// Takes the next free CIDR after the last one handed out, wrapping around.
    pub fn allocate(&mut self) -> Result<Cidr, CidrSetError> {
        let n = self.used.len();
        let i = (0..n).map(|k| (self.next + k) % n).find(|&i| !self.used[i]).ok_or(CidrSetError::Full)?;
        self.used[i] = true;
        self.next = (i + 1) % n;
        self.cidr(i).ok_or(CidrSetError::Full)
    }

    /// Marks `cidr` taken; false if it is not one of this set's.
    pub fn occupy(&mut self, cidr: &Cidr) -> bool {
        self.index(cidr).map(|i| self.used[i] = true).is_some()
    }

    /// Marks every node CIDR overlapping `other` taken (the Service ranges).
    pub fn occupy_overlapping(&mut self, other: &Cidr) {
        if other.family() != self.cluster.family() {
            return;
        }
        for i in 0..self.used.len() {
            let Some(c) = self.cidr(i) else { continue };
            if c.contains(&other.network) || other.contains(&c.network) {
                self.used[i] = true;
            }
        }
    }

    pub fn release(&mut self, cidr: &Cidr) {
        if let Some(i) = self.index(cidr) {
            self.used[i] = false;
        }
    }

    pub fn family(&self) -> Family {
        self.cluster.family()
    }
}

pub struct Controller {
    client: Client,
    nodes: Arc<Informer<Node>>,
    sets: Mutex<Vec<CidrSet>>,
    /// CIDRs written to nodes and not yet seen back in the cache: a sync that
    /// plans from a lagging cache must not hand the node a second set.
    pending: Mutex<std::collections::HashMap<String, Vec<Cidr>>>,
    queue: Arc<WorkQueue<String>>,
    recorder: Recorder,
}

fn pod_cidrs(node: &Node) -> Vec<Cidr> {
    let spec = node.spec.as_ref();
    let listed = spec.and_then(|s| s.pod_cidrs.clone()).filter(|l| !l.is_empty());
    let all = listed.or_else(|| spec.and_then(|s| s.pod_cidr.clone()).map(|c| vec![c])).unwrap_or_default();
    all.iter().filter_map(|c| Cidr::parse(c).ok()).collect()
}

impl Controller {
    /// `None` when no cluster range is configured (allocation off).
    pub fn new(client: Client, nodes: &Arc<Informer<Node>>, opts: &IpamOptions) -> Result<Option<Arc<Self>>, Error> {
        if opts.cluster_cidrs.is_empty() {
            return Ok(None);
        }
        let mut sets = Vec::new();
        for c in &opts.cluster_cidrs {
            let mask = if c.family() == Family::IPv4 { opts.mask_ipv4 } else { opts.mask_ipv6 };
            let mut set = CidrSet::new(*c, mask).map_err(|e| Error::Other(format!("--cluster-cidr {c}: {e}")))?;
            for s in &opts.service_cidrs {
                set.occupy_overlapping(s);
            }
            sets.push(set);
        }
        let c = Arc::new(Controller {
            recorder: Recorder::new(client.clone(), "cidrAllocator"),
            client,
            nodes: nodes.clone(),
            sets: Mutex::new(sets),
            pending: Mutex::default(),
            queue: WorkQueue::new(),
        });
        let weak = Arc::downgrade(&c);
        nodes.on_change(move |change| {
            let Some(me) = weak.upgrade() else { return };
            match change {
                Change::Deleted(n) => me.release(n),
                Change::Added(n) | Change::Modified { new: n, .. } => {
                    if !pod_cidrs(n).is_empty() {
                        me.pending.lock().remove(&n.name_any());
                    }
                    me.queue.add(n.name_any())
                }
            }
        });
        Ok(Some(c))
    }

    fn release(&self, node: &Node) {
        let pending = self.pending.lock().remove(&node.name_any()).unwrap_or_default();
        let mut sets = self.sets.lock();
        for c in pod_cidrs(node).into_iter().chain(pending) {
            for s in sets.iter_mut() {
                s.release(&c);
            }
        }
    }

    /// Takes what the nodes hold already, then allocates for the rest. Call once the node informer synced.
    pub fn spawn(self: &Arc<Self>, stop: watch::Receiver<bool>) {
        {
            let mut sets = self.sets.lock();
            for node in self.nodes.store().state() {
                for c in pod_cidrs(&node) {
                    if !sets.iter_mut().any(|s| s.occupy(&c)) {
                        tracing::warn!(node = %node.name_any(), cidr = %c, "a node's pod CIDR is outside --cluster-cidr");
                    }
                }
            }
        }
        let me = self.clone();
        kubesvc_runtime::run_workers(self.queue.clone(), 1, stop, move |name| {
            let me = me.clone();
            async move { me.sync(&name).await }
        });
    }

    async fn sync(&self, name: &str) -> Result<(), Error> {
        let Some(node) = self.nodes.store().get(&kube::runtime::reflector::ObjectRef::new(name)) else {
            return Ok(());
        };
        if !pod_cidrs(&node).is_empty() || self.pending.lock().contains_key(name) {
            return Ok(());
        }
        let allocated: Result<Vec<Cidr>, CidrSetError> = {
            let mut sets = self.sets.lock();
            let mut got = Vec::new();
            let mut result = Ok(());
            for s in sets.iter_mut() {
                match s.allocate() {
                    Ok(c) => got.push(c),
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            if result.is_err() {
                for (s, c) in sets.iter_mut().zip(&got) {
                    s.release(c);
                }
            }
            result.map(|()| got)
        };
        let cidrs = match allocated {
            Ok(c) => c,
            Err(e) => {
                let message = format!("Node {name} status is now: CIDRNotAvailable");
                self.recorder.record(&reference(&*node), EventType::Normal, "CIDRNotAvailable", &message).await;
                return Err(Error::Other(format!("failed to allocate cidr from cluster cidr at idx:0: {e}")));
            }
        };
        let list: Vec<String> = cidrs.iter().map(Cidr::to_string).collect();
        let patch = json!({"spec": {"podCIDR": list[0], "podCIDRs": list}});
        let api: Api<Node> = Api::all(self.client.clone());
        // Recorded before the write, so that the cache's view of it always comes after.
        self.pending.lock().insert(name.to_string(), cidrs.clone());
        if let Err(e) = api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            self.pending.lock().remove(name);
            {
                let mut sets = self.sets.lock();
                for (s, c) in sets.iter_mut().zip(&cidrs) {
                    s.release(c);
                }
            }
            if matches!(&e, kube::Error::Api(s) if s.code == 404) {
                return Ok(());
            }
            let message = format!("Node {name} status is now: CIDRAssignmentFailed");
            self.recorder.record(&reference(&*node), EventType::Normal, "CIDRAssignmentFailed", &message).await;
            return Err(e.into());
        }
        tracing::info!(node = name, cidrs = ?list, "assigned pod CIDRs");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        Cidr::parse(s).unwrap()
    }

    #[test]
    fn node_cidrs_come_in_order_after_the_last_and_wrap() {
        let mut s = CidrSet::new(cidr("10.244.0.0/22"), 24).unwrap();
        assert_eq!(s.allocate().unwrap(), cidr("10.244.0.0/24"));
        assert_eq!(s.allocate().unwrap(), cidr("10.244.1.0/24"));
        s.release(&cidr("10.244.0.0/24"));
        // Not the freed one: the next after the last handed out, as Kubernetes does.
        assert_eq!(s.allocate().unwrap(), cidr("10.244.2.0/24"));
        assert_eq!(s.allocate().unwrap(), cidr("10.244.3.0/24"));
        assert_eq!(s.allocate().unwrap(), cidr("10.244.0.0/24"), "then it wraps to what is free");
        assert_eq!(s.allocate(), Err(CidrSetError::Full));
        assert_eq!(
            CidrSetError::Full.to_string(),
            "CIDR allocation failed; there are no remaining CIDRs left to allocate in the accepted range"
        );
    }

    #[test]
    fn existing_and_service_ranges_are_never_handed_out() {
        let mut s = CidrSet::new(cidr("10.0.0.0/22"), 24).unwrap();
        assert!(s.occupy(&cidr("10.0.0.0/24")));
        assert!(!s.occupy(&cidr("10.9.0.0/24")), "outside the range");
        assert!(!s.occupy(&cidr("10.0.1.0/25")), "not a node CIDR of this set");
        s.occupy_overlapping(&cidr("10.0.2.128/25"));
        assert_eq!(s.allocate().unwrap(), cidr("10.0.1.0/24"));
        assert_eq!(s.allocate().unwrap(), cidr("10.0.3.0/24"));
        assert_eq!(s.allocate(), Err(CidrSetError::Full));
    }

    #[test]
    fn ipv6_and_size_limits() {
        let mut s = CidrSet::new(cidr("fd00:10:244::/56"), 64).unwrap();
        assert_eq!(s.allocate().unwrap(), cidr("fd00:10:244::/64"));
        assert_eq!(s.allocate().unwrap(), cidr("fd00:10:244:1::/64"));
        assert_eq!(CidrSet::new(cidr("fd00::/32"), 64).unwrap_err(), CidrSetError::TooBig);
        assert!(matches!(CidrSet::new(cidr("10.0.0.0/16"), 8), Err(CidrSetError::MaskTooShort { .. })));
    }
}
