//! Which endpoints a node uses for a Service port: kube-proxy's
//! `CategorizeEndpoints` (ready endpoints, topology hints, terminating
//! endpoints as the fallback when nothing is ready, and the local subset for
//! the `Local` traffic policies).

use std::collections::BTreeMap;

use crate::model::{Endpoint, ServicePort, TrafficDistribution};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Categorized {
    /// For traffic under the Cluster policies.
    pub cluster: Vec<Endpoint>,
    /// For traffic under the Local policies (this node's endpoints).
    pub local: Vec<Endpoint>,
    /// The union: the endpoints that get chains.
    pub reachable: Vec<Endpoint>,
    /// Some endpoint anywhere can serve (so "no endpoints" is a reject, not a drop).
    pub any: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    None,
    SameZone,
    SameNode,
}

fn topology_mode(port: &ServicePort, endpoints: &[Endpoint], node: &str, zone: Option<&str>) -> Mode {
    let (mut all_node_hints, mut for_node) = (true, false);
    let (mut all_zone_hints, mut for_zone) = (true, false);
    for e in endpoints.iter().filter(|e| e.ready) {
        if e.node_hints.is_empty() {
            all_node_hints = false;
        } else if e.node_hints.contains(node) {
            for_node = true;
        }
        if e.zone_hints.is_empty() {
            all_zone_hints = false;
        } else if zone.is_some_and(|z| e.zone_hints.contains(z)) {
            for_zone = true;
        }
    }
    if port.traffic_distribution == Some(TrafficDistribution::PreferSameNode) && all_node_hints && for_node {
        return Mode::SameNode;
    }
    if all_zone_hints && for_zone {
        return Mode::SameZone;
    }
    Mode::None
}

fn available(e: &Endpoint, mode: Mode, node: &str, zone: Option<&str>) -> bool {
    match mode {
        Mode::None => true,
        Mode::SameNode => e.node_hints.contains(node),
        Mode::SameZone => zone.is_some_and(|z| e.zone_hints.contains(z)),
    }
}

/// Splits `endpoints` for this node (`node`, in `zone`).
pub fn categorize(port: &ServicePort, endpoints: &[Endpoint], node: &str, zone: Option<&str>) -> Categorized {
    let mut out = Categorized::default();
    if port.uses_cluster_endpoints() {
        let mode = topology_mode(port, endpoints, node, zone);
        out.cluster = endpoints.iter().filter(|e| e.ready && available(e, mode, node, zone)).cloned().collect();
        if out.cluster.is_empty() {
            // Nothing ready anywhere: drain to serving terminating endpoints.
            out.cluster = endpoints
                .iter()
                .filter(|e| e.serving && e.terminating && available(e, mode, node, zone))
                .cloned()
                .collect();
        }
        out.any = !out.cluster.is_empty();
    }
    if !port.uses_local_endpoints() {
        out.reachable = out.cluster.clone();
        return out;
    }
    let (mut local_ready, mut local_terminating) = (false, false);
    for e in endpoints {
        if e.ready {
            out.any = true;
            local_ready |= e.local;
        } else if e.serving && e.terminating {
            out.any = true;
            local_terminating |= e.local;
        }
    }
    if local_ready {
        out.local = endpoints.iter().filter(|e| e.local && e.ready).cloned().collect();
    } else if local_terminating {
        out.local = endpoints.iter().filter(|e| e.local && e.serving && e.terminating).cloned().collect();
    }
    if !port.uses_cluster_endpoints() {
        out.reachable = out.local.clone();
        return out;
    }
    let mut all: BTreeMap<std::net::SocketAddr, Endpoint> = BTreeMap::new();
    for e in out.cluster.iter().chain(&out.local) {
        all.insert(e.addr(), e.clone());
    }
    out.reachable = all.into_values().collect();
    out
}
