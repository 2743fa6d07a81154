//! Pod → cluster IP traffic balanced at the socket: on nodes where eBPF
//! programs can be attached to the pods' cgroup, a pod's TCP `connect()` and
//! unconnected UDP `sendmsg()` to a cluster IP go straight to an endpoint the
//! nftables rules would have chosen from (the same topology and traffic
//! policy), so no packet is NATed and no conntrack port clash can stall a new
//! connection (see the proxy issue's churn measurements). Everything else —
//! node ports, external and load-balancer addresses, connected UDP, ClientIP
//! affinity, traffic from outside the cgroup — stays on the nftables path.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};

use kubesvc_host::bpf::BpfError;
use kubesvc_host::socklb::{Proto, SocketLb};

use crate::model::{Protocol, ServiceName};
use crate::tracker::PortState;

/// One virtual address balanced at the socket.
pub type Frontend = (Ipv4Addr, u16, Proto);

/// What the socket balancer holds for one Service's ports on `node`: each IPv4 cluster IP
/// port over TCP or UDP with endpoints for in-cluster traffic, and those endpoints.
pub fn desired(ports: &[PortState], node: &str, zone: Option<&str>) -> Vec<(Frontend, Vec<SocketAddrV4>)> {
    let mut out = Vec::new();
    for ps in ports {
        let p = &ps.port;
        let (Some(IpAddr::V4(vip)), None) = (p.cluster_ip, p.affinity_seconds) else { continue };
        let proto = match p.name.protocol {
            Protocol::Tcp => Proto::Tcp,
            Protocol::Udp => Proto::Udp,
            Protocol::Sctp => continue,
        };
        let cat = crate::topology::categorize(p, &ps.endpoints, node, zone);
        let eps = if p.internal_local { &cat.local } else { &cat.cluster };
        let mut backends: Vec<SocketAddrV4> = eps
            .iter()
            .filter_map(|e| match e.ip {
                IpAddr::V4(ip) => Some(SocketAddrV4::new(ip, e.port)),
                IpAddr::V6(_) => None,
            })
            .collect();
        backends.sort();
        backends.dedup();
        // None: the packet path rejects at once, as for any Service without endpoints.
        if !backends.is_empty() {
            out.push(((vip, p.port, proto), backends));
        }
    }
    out
}

/// The programs on the pods' cgroup and what each Service has in their maps.
pub struct Balancer {
    lb: SocketLb,
    applied: HashMap<ServiceName, Vec<(Frontend, usize)>>,
}

impl Balancer {
    pub fn new(lb: SocketLb) -> Balancer {
        Balancer { lb, applied: HashMap::new() }
    }

    /// Brings `name`'s entries to `want` (empty: the Service is gone or has nothing to balance).
    pub fn sync(&mut self, name: &ServiceName, want: Vec<(Frontend, Vec<SocketAddrV4>)>) -> Result<(), BpfError> {
        let before: HashMap<Frontend, usize> = self.applied.remove(name).unwrap_or_default().into_iter().collect();
        let mut now = Vec::with_capacity(want.len());
        let mut result = Ok(());
        for ((vip, port, proto), backends) in &want {
            let previous = before.get(&(*vip, *port, *proto)).copied().unwrap_or(0);
            match self.lb.set(*vip, *port, *proto, backends, previous) {
                Ok(()) => now.push(((*vip, *port, *proto), backends.len())),
                Err(e) => {
                    // What was written of it is deleted on the next sync of this Service.
                    now.push(((*vip, *port, *proto), backends.len().max(previous)));
                    result = Err(e);
                }
            }
        }
        for ((vip, port, proto), previous) in before {
            if !want.iter().any(|(f, _)| *f == (vip, port, proto))
                && let Err(e) = self.lb.remove(vip, port, proto, previous)
            {
                now.push(((vip, port, proto), previous));
                result = Err(e);
            }
        }
        if !now.is_empty() {
            self.applied.insert(name.clone(), now);
        }
        result
    }

    /// Frontends held, for the log.
    pub fn frontends(&self) -> usize {
        self.applied.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, ServicePort, ServicePortName};
    use std::sync::Arc;

    fn port(protocol: Protocol, affinity: Option<u32>, internal_local: bool) -> Arc<ServicePort> {
        Arc::new(ServicePort {
            name: ServicePortName {
                service: ServiceName { namespace: "default".into(), name: "web".into() },
                port: "http".into(),
                protocol,
            },
            family: kubesvc_api::net::Family::IPv4,
            cluster_ip: Some("10.96.0.10".parse().unwrap()),
            port: 80,
            node_port: None,
            external_ips: vec![],
            load_balancer: vec![],
            load_balancer_source_ranges: vec![],
            affinity_seconds: affinity,
            external_local: false,
            internal_local,
            health_check_node_port: None,
            traffic_distribution: None,
            node_port_type: false,
        })
    }

    fn ep(ip: &str, node: &str, ready: bool, terminating: bool) -> Endpoint {
        Endpoint {
            ip: ip.parse().unwrap(),
            port: 8080,
            ready,
            serving: ready || terminating,
            terminating,
            local: node == "node-a",
            node: Some(node.into()),
            zone_hints: Default::default(),
            node_hints: Default::default(),
        }
    }

    #[test]
    fn cluster_ip_ports_get_the_endpoints_the_rules_would_use() {
        let eps = vec![ep("10.244.1.5", "node-a", true, false), ep("10.244.2.5", "node-b", true, false)];
        let ps = |p| PortState { port: p, endpoints: eps.clone() };
        let vip: Ipv4Addr = "10.96.0.10".parse().unwrap();
        let both = vec!["10.244.1.5:8080".parse().unwrap(), "10.244.2.5:8080".parse().unwrap()];
        assert_eq!(
            desired(&[ps(port(Protocol::Tcp, None, false))], "node-a", None),
            vec![((vip, 80, Proto::Tcp), both)]
        );
        // internalTrafficPolicy Local: this node's endpoints only.
        assert_eq!(
            desired(&[ps(port(Protocol::Udp, None, true))], "node-a", None),
            vec![((vip, 80, Proto::Udp), vec!["10.244.1.5:8080".parse().unwrap()])]
        );
        // ...and none on a node without one: left to the rules (which reject).
        let elsewhere = PortState { port: port(Protocol::Udp, None, true), endpoints: vec![eps[1].clone()] };
        assert_eq!(desired(&[elsewhere], "node-a", None), vec![]);
        // ClientIP affinity and SCTP stay on the packet path.
        assert_eq!(desired(&[ps(port(Protocol::Tcp, Some(10800), false))], "node-a", None), vec![]);
        assert_eq!(desired(&[ps(port(Protocol::Sctp, None, false))], "node-a", None), vec![]);
        // Only terminating endpoints left: they serve (graceful drain), as in the rules.
        let draining = PortState {
            port: port(Protocol::Tcp, None, false),
            endpoints: vec![ep("10.244.1.5", "node-a", false, true), ep("10.244.2.5", "node-b", false, false)],
        };
        assert_eq!(
            desired(&[draining], "node-a", None),
            vec![((vip, 80, Proto::Tcp), vec!["10.244.1.5:8080".parse().unwrap()])]
        );
    }
}
