//! The desired nftables rules, as kube-proxy's nftables mode lays them out:
//! fixed base chains dispatching through verdict maps keyed by address .
//! protocol . port (so a packet's cost does not grow with the number of
//! Services), and per Service port its own chains and map elements, rendered
//! on their own so that a change re-renders only the Services it touches.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use kubesvc_api::net::{Cidr, Family};

use super::ir::*;
use crate::model::{Endpoint, Protocol, ServicePort};
use crate::topology::Categorized;

pub const SERVICE_IPS: &str = "service-ips";
pub const SERVICE_NODEPORTS: &str = "service-nodeports";
pub const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
pub const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
pub const FIREWALL_IPS: &str = "firewall-ips";
pub const CLUSTER_IPS: &str = "cluster-ips";
const REJECT_CHAIN: &str = "reject-chain";
const MARK_FOR_MASQUERADE: &str = "mark-for-masquerade";

/// Every map, with its key.
pub const MAPS: [(&str, MapKind); 5] = [
    (SERVICE_IPS, MapKind::AddrProtoPort),
    (SERVICE_NODEPORTS, MapKind::ProtoPort),
    (NO_ENDPOINT_SERVICES, MapKind::AddrProtoPort),
    (NO_ENDPOINT_NODEPORTS, MapKind::ProtoPort),
    (FIREWALL_IPS, MapKind::AddrProtoPort),
];

/// What one family's table is rendered from, apart from the Services.
#[derive(Clone, Debug)]
pub struct NftConfig {
    pub family: Family,
    pub table: String,
    /// The Service CIDRs: an address there that no Service holds is dropped.
    pub service_cidrs: Vec<Cidr>,
    /// Pods' addresses (the local-traffic detector); traffic from elsewhere to a
    /// cluster IP is masqueraded. Empty: all of it is.
    pub pod_cidrs: Vec<Cidr>,
    /// Where node ports listen: `None` is every local address but loopback.
    pub node_port_cidrs: Option<Vec<Cidr>>,
    pub node: String,
    pub zone: Option<String>,
}

impl NftConfig {
    pub fn syntax(&self) -> Syntax {
        Syntax { family: self.family }
    }

    fn loopback(&self) -> Cidr {
        match self.family {
            Family::IPv4 => Cidr { network: IpAddr::from([127, 0, 0, 0]), prefix: 8 },
            Family::IPv6 => Cidr { network: IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]), prefix: 128 },
        }
    }

    /// Destinations that are node ports: any one of these match lists (one rule each).
    fn node_port_matches(&self) -> Vec<Vec<Match>> {
        match &self.node_port_cidrs {
            None => vec![vec![Match::FibDaddrLocal, Match::Daddr { negated: true, cidr: self.loopback() }]],
            Some(cidrs) => {
                cidrs.iter().map(|c| vec![Match::Daddr { negated: false, cidr: *c }, Match::FibDaddrLocal]).collect()
            }
        }
    }
}

fn base(ty: ChainType, hook: Hook, priority: i32) -> BaseChain {
    BaseChain { ty, hook, priority }
}

fn rule(matches: Vec<Match>, stmt: Stmt) -> Rule {
    Rule::new(matches, vec![stmt])
}

fn jump(c: &str) -> Stmt {
    Stmt::Jump(c.to_string())
}

/// The fixed part of the table: base chains, helper chains, maps and sets (empty).
pub fn base_ruleset(cfg: &NftConfig) -> Ruleset {
    let mut rs = Ruleset::default();
    let new = || vec![Match::CtStateNew];
    let mut add = |name: &str, b: Option<BaseChain>, rules: Vec<Rule>| {
        if let Some(b) = b {
            rs.base.insert(name.to_string(), b);
        }
        rs.chains.insert(name.to_string(), rules);
    };
    use ChainType::{Filter, Nat};
    add("filter-prerouting", Some(base(Filter, Hook::Prerouting, -110)), vec![rule(new(), jump("firewall-check"))]);
    add(
        "filter-input",
        Some(base(Filter, Hook::Input, -110)),
        vec![rule(new(), jump("nodeport-endpoints-check")), rule(new(), jump("service-endpoints-check"))],
    );
    add(
        "filter-forward",
        Some(base(Filter, Hook::Forward, -110)),
        vec![rule(new(), jump("service-endpoints-check")), rule(new(), jump("cluster-ips-check"))],
    );
    add("filter-output", Some(base(Filter, Hook::Output, -110)), vec![rule(new(), jump("service-endpoints-check"))]);
    add("filter-output-post-dnat", Some(base(Filter, Hook::Output, -90)), vec![rule(new(), jump("cluster-ips-check"))]);
    add("nat-prerouting", Some(base(Nat, Hook::Prerouting, -100)), vec![rule(vec![], jump("services"))]);
    add("nat-output", Some(base(Nat, Hook::Output, -100)), vec![rule(vec![], jump("services"))]);
    add("nat-postrouting", Some(base(Nat, Hook::Postrouting, 100)), vec![rule(vec![], jump("masquerading"))]);
    add(MARK_FOR_MASQUERADE, None, vec![rule(vec![], Stmt::MarkOr(MASQ_MARK))]);
    add(
        "masquerading",
        None,
        vec![
            rule(vec![Match::MarkClear(MASQ_MARK)], Stmt::Return),
            rule(vec![], Stmt::MarkXor(MASQ_MARK)),
            // Not fully-random for TCP: a randomly moved source port lands new SYNs on the
            // server's TIME_WAIT sockets, which PAWS rejects (see the proxy issue's measurements).
            rule(vec![Match::L4Proto(Protocol::Tcp)], Stmt::Masquerade { fully_random: false }),
            rule(vec![], Stmt::Masquerade { fully_random: true }),
        ],
    );
    add(REJECT_CHAIN, None, vec![rule(vec![], Stmt::Reject)]);
    let mut check = vec![
        rule(vec![Match::DaddrInSet(CLUSTER_IPS.into())], Stmt::Reject)
            .commented("Reject traffic to invalid ports of ClusterIPs"),
    ];
    for c in &cfg.service_cidrs {
        check.push(
            rule(vec![Match::Daddr { negated: false, cidr: *c }], Stmt::Drop)
                .commented("Drop traffic to unallocated ClusterIPs"),
        );
    }
    add("cluster-ips-check", None, check);
    add("service-endpoints-check", None, vec![rule(vec![], Stmt::VmapAddrProtoPort(NO_ENDPOINT_SERVICES.into()))]);
    add(
        "nodeport-endpoints-check",
        None,
        cfg.node_port_matches()
            .into_iter()
            .map(|m| rule(m, Stmt::VmapProtoPort(NO_ENDPOINT_NODEPORTS.into())))
            .collect(),
    );
    add("firewall-check", None, vec![rule(vec![], Stmt::VmapAddrProtoPort(FIREWALL_IPS.into()))]);
    add(
        "services",
        None,
        std::iter::once(rule(vec![], Stmt::VmapAddrProtoPort(SERVICE_IPS.into())))
            .chain(cfg.node_port_matches().into_iter().map(|m| rule(m, Stmt::VmapProtoPort(SERVICE_NODEPORTS.into()))))
            .collect(),
    );
    for (m, _) in MAPS {
        rs.maps.insert(m.to_string(), BTreeMap::new());
    }
    rs.sets.insert(CLUSTER_IPS.to_string(), BTreeSet::new());
    rs
}

/// One Service's share of the table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contribution {
    pub chains: BTreeMap<String, Vec<Rule>>,
    pub elements: BTreeMap<(&'static str, Key), Verdict>,
    pub set_elements: BTreeSet<(&'static str, IpAddr)>,
    /// Affinity sets and their timeouts.
    pub affinity_sets: BTreeMap<String, u32>,
}

impl Contribution {
    pub fn is_empty(&self) -> bool {
        self.chains.is_empty() && self.elements.is_empty() && self.set_elements.is_empty()
    }

    /// Adds this contribution to a whole ruleset (for the tracer).
    pub fn merge_into(&self, rs: &mut Ruleset) {
        rs.chains.extend(self.chains.iter().map(|(k, v)| (k.clone(), v.clone())));
        for ((map, key), v) in &self.elements {
            rs.maps.entry(map.to_string()).or_default().insert(*key, v.clone());
        }
        for (set, ip) in &self.set_elements {
            rs.sets.entry(set.to_string()).or_default().insert(*ip);
        }
        rs.dynamic_sets.extend(self.affinity_sets.iter().map(|(k, v)| (k.clone(), *v)));
    }
}

/// A short stable hash for chain names (FNV-1a, base32): names stay unique
/// and stable across restarts while the readable part says what they are.
fn hash8(s: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    (0..8).map(|i| ALPHABET[((h >> (i * 5)) & 31) as usize] as char).collect()
}

struct Names {
    base: String,
}

impl Names {
    fn new(p: &ServicePort) -> Names {
        let n = &p.name;
        let readable = format!("{}/{}/{}/{}", n.service.namespace, n.service.name, n.protocol.nft(), n.port);
        Names { base: format!("{}-{readable}", hash8(&readable)) }
    }
    fn cluster(&self) -> String {
        format!("service-{}", self.base)
    }
    fn local(&self) -> String {
        format!("local-{}", self.base)
    }
    fn external(&self) -> String {
        format!("external-{}", self.base)
    }
    fn firewall(&self) -> String {
        format!("firewall-{}", self.base)
    }
    fn endpoint_suffix(&self, e: &Endpoint) -> String {
        // nft identifiers take no ':', so IPv6 colons become dots.
        let ep = format!("{}/{}", e.ip, e.port).replace(':', ".");
        let readable = &self.base[9..];
        format!("{}-{readable}__{ep}", hash8(&format!("{}{ep}", self.base)))
    }
    fn endpoint(&self, e: &Endpoint) -> String {
        format!("endpoint-{}", self.endpoint_suffix(e))
    }
    /// A set's timeout cannot change in place, so it is part of the name.
    fn affinity(&self, e: &Endpoint, timeout: u32) -> String {
        format!("affinity-{timeout}-{}", self.endpoint_suffix(e))
    }
}

enum Target {
    Reject,
    Drop,
}

impl Target {
    fn verdict(&self) -> Verdict {
        match self {
            Target::Reject => Verdict::Goto(REJECT_CHAIN.to_string()),
            Target::Drop => Verdict::Drop,
        }
    }
}

/// Renders one Service port (`cat`: its endpoints as this node uses them) into `out`.
pub fn render_port(cfg: &NftConfig, p: &ServicePort, cat: &Categorized, out: &mut Contribution) {
    let names = Names::new(p);
    let proto = p.name.protocol;
    let cluster_chain = names.cluster();
    let local_chain = names.local();
    let external_chain = names.external();
    let has_endpoints = cat.any;

    let uses_cluster_chain = !cat.cluster.is_empty() && p.uses_cluster_endpoints();
    let uses_local_chain = !cat.local.is_empty() && p.uses_local_endpoints();
    let (internal_chain, has_internal) = if p.internal_local {
        (&local_chain, has_endpoints && !cat.local.is_empty())
    } else {
        (&cluster_chain, has_endpoints)
    };
    let (external_policy_chain, has_external) = if p.external_policy_local() {
        (&local_chain, has_endpoints && !cat.local.is_empty())
    } else {
        (&cluster_chain, has_endpoints)
    };
    let uses_external_chain = has_endpoints && p.externally_accessible();
    let (internal_target, external_target) =
        if has_endpoints { (Target::Drop, Target::Drop) } else { (Target::Reject, Target::Reject) };

    let addr_key = |ip: IpAddr| Key::AddrProtoPort(ip, proto, p.port);
    if let Some(cip) = p.cluster_ip {
        out.set_elements.insert((CLUSTER_IPS, cip));
        if has_internal {
            out.elements.insert((SERVICE_IPS, addr_key(cip)), Verdict::Goto(internal_chain.clone()));
        } else {
            out.elements.insert((NO_ENDPOINT_SERVICES, addr_key(cip)), internal_target.verdict());
        }
    }
    let external_addrs: Vec<IpAddr> = p.external_ips.iter().copied().chain(p.load_balancer_vips()).collect();
    for ip in &external_addrs {
        if has_endpoints {
            out.elements.insert((SERVICE_IPS, addr_key(*ip)), Verdict::Goto(external_chain.clone()));
        }
        if !has_external {
            out.elements.insert((NO_ENDPOINT_SERVICES, addr_key(*ip)), external_target.verdict());
        }
    }
    let ranges: Vec<Cidr> = p.load_balancer_source_ranges.iter().filter_map(|r| Cidr::parse(r.trim()).ok()).collect();
    let ranges: Vec<Cidr> = ranges.into_iter().filter(|c| c.family() == cfg.family).collect();
    if has_endpoints && !ranges.is_empty() && p.load_balancer_vips().next().is_some() {
        let fw = names.firewall();
        for ip in p.load_balancer_vips() {
            out.elements.insert((FIREWALL_IPS, addr_key(ip)), Verdict::Goto(fw.clone()));
        }
        let outside = ranges.into_iter().map(|cidr| Match::Saddr { negated: true, cidr }).collect();
        out.chains.insert(fw, vec![rule(outside, Stmt::Drop)]);
    }
    if let Some(np) = p.node_port {
        if has_endpoints {
            out.elements.insert((SERVICE_NODEPORTS, Key::ProtoPort(proto, np)), Verdict::Goto(external_chain.clone()));
        }
        if !has_external {
            out.elements.insert((NO_ENDPOINT_NODEPORTS, Key::ProtoPort(proto, np)), external_target.verdict());
        }
    }

    // Traffic to the cluster IP from outside the pod network is masqueraded (so replies return here).
    let masq_internal = match (has_internal, p.cluster_ip) {
        (true, Some(cip)) => {
            let mut m = vec![Match::DaddrIs(cip), Match::Dport(proto, p.port)];
            if !cfg.pod_cidrs.is_empty() {
                m.extend(cfg.pod_cidrs.iter().map(|c| Match::Saddr { negated: true, cidr: *c }));
            }
            Some(rule(m, jump(MARK_FOR_MASQUERADE)))
        }
        _ => None,
    };

    if uses_external_chain {
        let mut rules = Vec::new();
        if !p.external_policy_local() {
            rules.push(rule(vec![], jump(MARK_FOR_MASQUERADE)));
        } else {
            for c in &cfg.pod_cidrs {
                rules.push(
                    rule(vec![Match::Saddr { negated: false, cidr: *c }], Stmt::Goto(cluster_chain.clone()))
                        .commented("short-circuit pod traffic"),
                );
            }
            rules.push(
                rule(vec![Match::FibSaddrLocal], jump(MARK_FOR_MASQUERADE)).commented("masquerade local traffic"),
            );
            rules.push(
                rule(vec![Match::FibSaddrLocal], Stmt::Goto(cluster_chain.clone()))
                    .commented("route local traffic to cluster policy"),
            );
        }
        if has_external {
            rules.push(rule(vec![], Stmt::Goto(external_policy_chain.clone())));
        }
        out.chains.insert(external_chain.clone(), rules);
    }

    let policy_chain = |name: &String, eps: &[Endpoint], out: &mut Contribution| {
        let mut rules = Vec::new();
        if name == internal_chain {
            rules.extend(masq_internal.clone());
        }
        if let Some(timeout) = p.affinity_seconds {
            for e in eps {
                let set = names.affinity(e, timeout);
                rules.push(rule(vec![Match::SaddrInSet(set.clone())], Stmt::Goto(names.endpoint(e))));
                out.affinity_sets.insert(set, timeout);
            }
        }
        // Spread as iptables' statistic match does: endpoint i of n is taken one time in n - i.
        // (A `numgen ... vmap { }` per Service is O(1) per packet but each is an anonymous set,
        // and the kernel's set handling is linear in the table's sets: 10,000 of them made a
        // full sync take 33 s. Only a connection's first packet walks this chain.)
        for (i, e) in eps.iter().enumerate() {
            let left = (eps.len() - i) as u32;
            let m = if left > 1 { vec![Match::NumgenOneIn(left)] } else { vec![] };
            rules.push(rule(m, Stmt::Goto(names.endpoint(e))));
        }
        out.chains.insert(name.clone(), rules);
    };
    if uses_cluster_chain {
        policy_chain(&cluster_chain, &cat.cluster, out);
    } else if uses_external_chain && p.external_policy_local() {
        // The short-circuit rules above go to the cluster chain: with no cluster endpoints it rejects.
        out.chains.insert(cluster_chain.clone(), vec![rule(vec![], Stmt::Goto(REJECT_CHAIN.to_string()))]);
    }
    if uses_local_chain {
        policy_chain(&local_chain, &cat.local, out);
    }

    for e in &cat.reachable {
        let mut rules = vec![rule(vec![Match::SaddrIs(e.ip)], jump(MARK_FOR_MASQUERADE))];
        if let Some(timeout) = p.affinity_seconds {
            rules.push(rule(vec![], Stmt::UpdateSaddr(names.affinity(e, timeout))));
        }
        rules.push(rule(vec![], Stmt::Dnat(proto, SocketAddr::new(e.ip, e.port))));
        out.chains.insert(names.endpoint(e), rules);
    }
}

/// Renders every port of one Service (in this table's family) for this node.
pub fn render_service(cfg: &NftConfig, ports: &[crate::tracker::PortState]) -> Contribution {
    let mut out = Contribution::default();
    for ps in ports.iter().filter(|ps| ps.port.family == cfg.family) {
        let cat = crate::topology::categorize(&ps.port, &ps.endpoints, &cfg.node, cfg.zone.as_deref());
        render_port(cfg, &ps.port, &cat, &mut out);
    }
    out
}
