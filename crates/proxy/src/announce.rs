//! Answering for load-balancer addresses on the node's network (layer 2, as
//! MetalLB's speaker does): for each LoadBalancer address inside the node
//! network, one node, the same on every node's reckoning, holds it on its
//! interface, so the kernel answers ARP for it and the traffic arrives here,
//! where the Service's rules take it. The node is chosen among those with a
//! ready endpoint of the Service (for `externalTrafficPolicy: Local` only
//! they can serve it), by the lowest hash of node name and address.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use kubesvc_api::net::Cidr;

use crate::model::ServiceName;
use crate::tracker::PortState;

#[derive(Clone, Debug)]
pub struct Announce {
    /// The node's interface on the network (e.g. `eth0`).
    pub interface: String,
    /// Only addresses inside it are announced.
    pub network: Cidr,
}

fn score(node: &str, ip: &IpAddr) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in node.bytes().chain(ip.to_string().into_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// The addresses of one Service that `node` should hold.
pub fn held_here(cfg: &Announce, node: &str, ports: &[PortState]) -> BTreeSet<IpAddr> {
    let vips: BTreeSet<IpAddr> = ports
        .iter()
        .flat_map(|p| p.port.load_balancer_vips().collect::<Vec<_>>())
        .filter(|ip| cfg.network.contains(ip))
        .collect();
    let nodes: BTreeSet<&str> = ports
        .iter()
        .flat_map(|p| p.endpoints.iter())
        .filter(|e| e.ready || (e.serving && e.terminating))
        .filter_map(|e| e.node.as_deref())
        .collect();
    vips.into_iter().filter(|ip| nodes.iter().min_by_key(|n| score(n, ip)).is_some_and(|n| *n == node)).collect()
}

/// What this node holds now, per Service.
#[derive(Default)]
pub struct Held {
    by_service: HashMap<ServiceName, BTreeSet<IpAddr>>,
}

impl Held {
    /// Sets one Service's addresses; gives what to add and what to remove on the interface.
    pub fn set(&mut self, name: &ServiceName, want: BTreeSet<IpAddr>) -> (Vec<IpAddr>, Vec<IpAddr>) {
        let old = if want.is_empty() {
            self.by_service.remove(name).unwrap_or_default()
        } else {
            self.by_service.insert(name.clone(), want.clone()).unwrap_or_default()
        };
        (want.difference(&old).copied().collect(), old.difference(&want).copied().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::tests::{service, slice};
    use crate::tracker::Tracker;
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use serde_json::json;

    #[test]
    fn one_node_with_an_endpoint_holds_each_address_on_every_nodes_reckoning() {
        let cfg = Announce { interface: "eth0".into(), network: Cidr::parse("10.250.0.0/24").unwrap() };
        let mut s = service("web", "10.96.0.10", json!({"type": "LoadBalancer"}));
        s["status"] = json!({"loadBalancer": {"ingress": [{"ip": "10.250.0.210"}, {"ip": "10.250.0.211"}, {"ip": "192.168.9.9"}]}});
        let svc: Service = serde_json::from_value(s).unwrap();
        let ready = json!({"ready": true});
        let sl: EndpointSlice = serde_json::from_value(slice(
            "web",
            "web-1",
            &[
                ("10.244.1.5", "node-1", ready.clone()),
                ("10.244.2.5", "node-2", ready.clone()),
                ("10.244.2.6", "node-2", ready),
            ],
        ))
        .unwrap();
        let name = ServiceName { namespace: "default".into(), name: "web".into() };
        let mut held = BTreeSet::new();
        for node in ["node-1", "node-2", "node-3"] {
            let mut t = Tracker::new(node, vec![kubesvc_api::net::Family::IPv4]);
            t.service(name.clone(), Some(&svc));
            t.slice(&sl, false);
            let here = held_here(&cfg, node, &t.ports(&name));
            assert!(node != "node-3" || here.is_empty(), "no endpoint on node-3: {here:?}");
            for ip in here {
                assert!(held.insert(ip), "{ip} held twice");
            }
        }
        let want: BTreeSet<IpAddr> = ["10.250.0.210".parse().unwrap(), "10.250.0.211".parse().unwrap()].into();
        assert_eq!(held, want, "each address in the network held once; the other one not at all");
        let mut h = Held::default();
        let ip: IpAddr = "10.250.0.210".parse().unwrap();
        assert_eq!(h.set(&name, [ip].into()), (vec![ip], vec![]));
        assert_eq!(h.set(&name, [ip].into()), (vec![], vec![]));
        assert_eq!(h.set(&name, BTreeSet::new()), (vec![], vec![ip]));
    }
}
