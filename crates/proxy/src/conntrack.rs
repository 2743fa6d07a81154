//! UDP has no connection to end: a conntrack entry keeps sending a client's
//! datagrams to the endpoint it was first DNAT'd to, even after that endpoint
//! is gone, until the entry times out (kube-proxy's long-standing UDP
//! problem). After a sync that changed UDP Services, the entries to their
//! addresses whose destination is no longer one of their serving endpoints
//! are deleted, so the client's next datagram is balanced afresh. What to
//! delete is decided here, from the flows the kernel lists (`kubesvc_host::conntrack`
//! lists and deletes them over netlink).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use crate::model::Protocol;
use crate::tracker::PortState;

/// One UDP flow as conntrack holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    pub orig_src: SocketAddr,
    pub orig_dst: SocketAddr,
    /// Where replies come from: the DNAT target (or `orig_dst` when not translated).
    pub reply_src: SocketAddr,
}

/// For the Services a sync changed: each UDP address and port they serve, with the endpoints
/// a flow to it may go to; node ports by port.
#[derive(Debug, Default)]
pub struct Targets {
    addresses: HashMap<SocketAddr, HashSet<SocketAddr>>,
    node_ports: HashMap<u16, HashSet<SocketAddr>>,
}

impl Targets {
    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty() && self.node_ports.is_empty()
    }

    /// Adds a Service's UDP ports (as the tracker has them now; a Service gone adds nothing,
    /// and flows to its old addresses then meet the "drop" rules or other Services).
    pub fn add(&mut self, ports: &[PortState]) {
        for ps in ports.iter().filter(|p| p.port.name.protocol == Protocol::Udp) {
            let p = &ps.port;
            // The endpoints the rules use: the ready ones, or while none is, the serving
            // terminating ones (a terminating pod's flows move once a ready one exists).
            let ready: HashSet<SocketAddr> = ps.endpoints.iter().filter(|e| e.ready).map(|e| e.addr()).collect();
            let serving = if ready.is_empty() {
                ps.endpoints.iter().filter(|e| e.serving && e.terminating).map(|e| e.addr()).collect()
            } else {
                ready
            };
            let addrs = p.cluster_ip.into_iter().chain(p.external_ips.iter().copied()).chain(p.load_balancer_vips());
            for ip in addrs.collect::<Vec<IpAddr>>() {
                self.addresses.insert(SocketAddr::new(ip, p.port), serving.clone());
            }
            if let Some(np) = p.node_port {
                self.node_ports.insert(np, serving);
            }
        }
    }

    /// Also the addresses of a Service's UDP ports before the change, so flows to an address
    /// it no longer has (or a Service deleted) are found: they may go nowhere now.
    pub fn add_gone(&mut self, addrs: impl IntoIterator<Item = SocketAddr>) {
        for a in addrs {
            self.addresses.entry(a).or_default();
        }
    }

    /// Whether `f` should be deleted: it is to one of these addresses and goes to something
    /// that is not one of its endpoints (including not translated at all while endpoints
    /// exist); or it came in on one of these node ports, was translated, and its endpoint is gone.
    pub fn is_stale(&self, f: &Flow) -> bool {
        if let Some(allowed) = self.addresses.get(&f.orig_dst) {
            let translated = f.reply_src != f.orig_dst;
            return if translated { !allowed.contains(&f.reply_src) } else { !allowed.is_empty() };
        }
        if let Some(allowed) = self.node_ports.get(&f.orig_dst.port()) {
            let translated = f.reply_src != f.orig_dst;
            return translated && !allowed.contains(&f.reply_src);
        }
        false
    }
}

/// A Service's UDP addresses and ports (cluster IP, external IPs, load-balancer addresses).
pub fn udp_addresses(ports: &[PortState]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for p in ports.iter().map(|ps| &ps.port).filter(|p| p.name.protocol == Protocol::Udp) {
        let addrs = p.cluster_ip.into_iter().chain(p.external_ips.iter().copied()).chain(p.load_balancer_vips());
        out.extend(addrs.map(|ip| SocketAddr::new(ip, p.port)));
    }
    out
}

/// Deletes the stale UDP flows of both families; gives how many went. Blocking.
pub fn clean(targets: &Targets) -> Result<usize, kubesvc_host::conntrack::ConntrackError> {
    use kubesvc_host::conntrack::{Conntrack, IPPROTO_UDP};
    let mut ct = Conntrack::open()?;
    let mut gone = 0;
    for v6 in [false, true] {
        for e in ct.list(v6, IPPROTO_UDP)? {
            let f = Flow { orig_src: e.orig.src, orig_dst: e.orig.dst, reply_src: e.reply.src };
            if targets.is_stale(&f) {
                ct.delete(&e)?;
                gone += 1;
            }
        }
    }
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::tests::{service, slice};
    use crate::tracker::Tracker;
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use serde_json::json;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn flows_to_a_gone_endpoint_are_stale_and_flows_to_live_ones_are_not() {
        let mut s = service(
            "dns",
            "10.96.0.53",
            json!({"type": "NodePort", "ports": [{"name": "http", "port": 53, "protocol": "UDP", "nodePort": 30053}]}),
        );
        s["spec"]["externalIPs"] = json!(["203.0.113.7"]);
        let svc: Service = serde_json::from_value(s).unwrap();
        let mut sl = slice("dns", "dns-1", &[("10.244.1.5", "node-a", json!({"ready": true}))]);
        sl["ports"][0]["protocol"] = json!("UDP");
        let sl: EndpointSlice = serde_json::from_value(sl).unwrap();
        let mut t = Tracker::new("node-a", vec![kubesvc_api::net::Family::IPv4]);
        let name = crate::model::ServiceName { namespace: "default".into(), name: "dns".into() };
        t.service(name.clone(), Some(&svc));
        t.slice(&sl, false);
        let mut targets = Targets::default();
        targets.add(&t.ports(&name));
        let flow =
            |dst: &str, reply: &str| Flow { orig_src: sa("10.244.2.9:40000"), orig_dst: sa(dst), reply_src: sa(reply) };
        assert!(!targets.is_stale(&flow("10.96.0.53:53", "10.244.1.5:8080")), "the live endpoint");
        assert!(targets.is_stale(&flow("10.96.0.53:53", "10.244.1.6:8080")), "an endpoint that went");
        assert!(targets.is_stale(&flow("203.0.113.7:53", "10.244.1.6:8080")));
        assert!(targets.is_stale(&flow("10.96.0.53:53", "10.96.0.53:53")), "untranslated, while endpoints exist");
        assert!(targets.is_stale(&flow("192.168.0.10:30053", "10.244.1.6:8080")), "a node port's gone endpoint");
        assert!(!targets.is_stale(&flow("192.168.0.10:30053", "192.168.0.10:30053")), "not translated: not ours");
        assert!(!targets.is_stale(&flow("10.96.0.54:53", "10.244.1.6:8080")), "another Service's");
        targets.add_gone([sa("10.96.0.99:53")]);
        assert!(targets.is_stale(&flow("10.96.0.99:53", "10.244.1.5:8080")), "an address no Service has now");
    }
}
