//! The rendered rule set, tested by where packets land (the tracer), and the
//! transactions, tested by what they change.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kubesvc_api::net::{Cidr, Family};
use serde_json::{Value, json};

use super::ir::{Key, Op, Rule, Stmt, Verdict};
use super::render::{self, NftConfig};
use super::{Plan, Table};
use crate::model::{Protocol, ServiceName};
use crate::trace::{Fate, Outcome, Packet, Tracer};
use crate::tracker::Tracker;

const NODE_IP: &str = "192.168.0.10";

pub(crate) fn config() -> NftConfig {
    NftConfig {
        family: Family::IPv4,
        table: "kubesvc".into(),
        service_cidrs: vec![Cidr::parse("10.96.0.0/16").unwrap()],
        pod_cidrs: vec![Cidr::parse("10.244.0.0/16").unwrap()],
        node_port_cidrs: None,
        node: "node-a".into(),
        zone: Some("zone-a".into()),
    }
}

pub(crate) struct World {
    pub tracker: Tracker,
    pub table: Table,
    pub now: Instant,
    pub dynamic: Vec<(String, IpAddr)>,
}

impl World {
    pub fn new() -> World {
        World::with(config())
    }

    pub fn with(cfg: NftConfig) -> World {
        World {
            tracker: Tracker::new(&cfg.node.clone(), vec![cfg.family]),
            table: Table::keeping_rules(cfg),
            now: Instant::now(),
            dynamic: vec![],
        }
    }

    pub fn svc(&mut self, v: Value) {
        let s: Service = serde_json::from_value(v).unwrap();
        let name =
            ServiceName { namespace: s.metadata.namespace.clone().unwrap(), name: s.metadata.name.clone().unwrap() };
        self.tracker.service(name, Some(&s));
    }

    pub fn delete_svc(&mut self, ns: &str, name: &str) {
        self.tracker.service(ServiceName { namespace: ns.into(), name: name.into() }, None);
    }

    pub fn slice(&mut self, v: Value) {
        let s: EndpointSlice = serde_json::from_value(v).unwrap();
        self.tracker.slice(&s, false);
    }

    pub fn sync(&mut self) -> Plan {
        if self.table.needs_full() {
            self.tracker.mark_all();
        }
        let (dirty, _) = self.tracker.take_dirty();
        let changes = dirty
            .into_iter()
            .map(|s| {
                let c = render::render_service(self.table.config(), &self.tracker.ports(&s));
                (s, c)
            })
            .collect();
        self.table.plan(changes, self.now)
    }

    fn outcomes(&self, src: &str, dst: &str, port: u16, proto: Protocol, from_node: bool) -> Vec<Outcome> {
        let rs = self.table.ruleset();
        let mut t = Tracer::new(&rs, vec![NODE_IP.parse().unwrap(), "127.0.0.1".parse().unwrap()]);
        t.dynamic = self.dynamic.iter().cloned().collect();
        t.trace(&Packet { src: src.parse().unwrap(), dst: dst.parse().unwrap(), proto, dport: port, from_node })
    }

    /// Where a TCP packet from `src` (a pod or another host) to `dst:port` lands.
    pub fn to(&self, src: &str, dst: &str, port: u16) -> String {
        summary(&self.outcomes(src, dst, port, Protocol::Tcp, false))
    }

    pub fn udp(&self, src: &str, dst: &str, port: u16) -> String {
        summary(&self.outcomes(src, dst, port, Protocol::Udp, false))
    }

    /// The same, sent by the node itself.
    pub fn sent_by_node(&self, dst: &str, port: u16) -> String {
        summary(&self.outcomes(NODE_IP, dst, port, Protocol::Tcp, true))
    }
}

/// "dnat A:P, dnat B:P masq", "reject", "drop" or "accept".
fn summary(outs: &[Outcome]) -> String {
    let mut parts: Vec<String> = outs
        .iter()
        .map(|o| {
            let mut s = match (o.fate, o.dnat) {
                (Fate::Drop, _) => "drop".to_string(),
                (Fate::Reject, _) => "reject".to_string(),
                (Fate::Accept, Some(to)) => format!("dnat {to}"),
                (Fate::Accept, None) => "accept".to_string(),
            };
            if o.masquerade {
                s.push_str(" masq");
            }
            s
        })
        .collect();
    parts.sort();
    parts.dedup();
    parts.join(", ")
}

pub(crate) fn service(name: &str, ip: &str, spec: Value) -> Value {
    let mut s = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "default", "name": name},
        "spec": {"clusterIP": ip, "clusterIPs": [ip], "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}});
    for (k, v) in spec.as_object().unwrap() {
        s["spec"][k] = v.clone();
    }
    s
}

/// A slice of `service` with endpoints (ip, node, ready) on port 8080 named http.
pub(crate) fn slice(service: &str, name: &str, eps: &[(&str, &str, Value)]) -> Value {
    let endpoints: Vec<Value> =
        eps.iter().map(|(ip, node, cond)| json!({"addresses": [ip], "nodeName": node, "conditions": cond})).collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"namespace": "default", "name": name, "labels": {"kubernetes.io/service-name": service}},
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}], "endpoints": endpoints})
}

fn ready() -> Value {
    json!({"ready": true})
}

fn web(world: &mut World, spec: Value) {
    world.svc(service("web", "10.96.0.10", spec));
    world.slice(slice("web", "web-1", &[("10.244.1.5", "node-a", ready()), ("10.244.2.5", "node-b", ready())]));
    world.sync();
}

const BOTH: &str = "dnat 10.244.1.5:8080, dnat 10.244.2.5:8080";
const BOTH_MASQ: &str = "dnat 10.244.1.5:8080 masq, dnat 10.244.2.5:8080 masq";

#[test]
fn cluster_ip_spreads_over_endpoints_and_masquerades_only_traffic_from_outside_the_pod_network() {
    let mut w = World::new();
    web(&mut w, json!({}));
    assert_eq!(w.to("10.244.1.9", "10.96.0.10", 80), BOTH);
    assert_eq!(w.to("10.244.3.9", "10.96.0.10", 80), BOTH);
    assert_eq!(w.sent_by_node("10.96.0.10", 80), BOTH_MASQ);
    assert_eq!(w.to("192.168.0.99", "10.96.0.10", 80), BOTH_MASQ);
    // Hairpin: a pod reaching itself through its Service is masqueraded (else it would answer itself).
    assert_eq!(w.to("10.244.1.5", "10.96.0.10", 80), "dnat 10.244.1.5:8080 masq, dnat 10.244.2.5:8080");
    // A port the Service does not have is refused at once; an address no Service holds is dropped.
    assert_eq!(w.to("10.244.1.9", "10.96.0.10", 81), "reject");
    assert_eq!(w.udp("10.244.1.9", "10.96.0.10", 80), "reject");
    assert_eq!(w.sent_by_node("10.96.0.10", 81), "reject");
    assert_eq!(w.to("10.244.1.9", "10.96.0.77", 80), "drop");
    // Other traffic is left alone.
    assert_eq!(w.to("10.244.1.9", "10.244.2.5", 8080), "accept");
    assert_eq!(w.sent_by_node("10.244.2.5", 8080), "accept");
}

#[test]
fn no_ready_endpoints_rejects_and_terminating_ones_drain() {
    let mut w = World::new();
    w.svc(service(
        "web",
        "10.96.0.10",
        json!({"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
    ));
    w.sync();
    assert_eq!(w.to("10.244.1.9", "10.96.0.10", 80), "reject");
    assert_eq!(w.to("192.168.0.99", NODE_IP, 30080), "reject");
    assert_eq!(w.sent_by_node(NODE_IP, 30080), "reject");
    // Not ready and not serving: still no endpoints.
    w.slice(slice(
        "web",
        "web-1",
        &[("10.244.1.5", "node-a", json!({"ready": false, "serving": false, "terminating": true}))],
    ));
    w.sync();
    assert_eq!(w.to("10.244.1.9", "10.96.0.10", 80), "reject");
    // Serving while terminating, and nothing ready anywhere: traffic drains to it.
    w.slice(slice(
        "web",
        "web-1",
        &[
            ("10.244.1.5", "node-a", json!({"ready": false, "serving": true, "terminating": true})),
            ("10.244.2.5", "node-b", json!({"ready": false, "serving": false})),
        ],
    ));
    w.sync();
    assert_eq!(w.to("10.244.1.9", "10.96.0.10", 80), "dnat 10.244.1.5:8080");
    // A ready endpoint takes over from the terminating one.
    w.slice(slice(
        "web",
        "web-1",
        &[
            ("10.244.1.5", "node-a", json!({"ready": false, "serving": true, "terminating": true})),
            ("10.244.2.5", "node-b", ready()),
        ],
    ));
    w.sync();
    assert_eq!(w.to("10.244.1.9", "10.96.0.10", 80), "dnat 10.244.2.5:8080");
}

#[test]
fn node_ports_answer_on_node_addresses_but_not_loopback() {
    let mut w = World::new();
    web(&mut w, json!({"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}));
    assert_eq!(w.to("192.168.0.99", NODE_IP, 30080), BOTH_MASQ);
    assert_eq!(w.sent_by_node(NODE_IP, 30080), BOTH_MASQ);
    assert_eq!(w.sent_by_node("127.0.0.1", 30080), "accept");
    assert_eq!(w.to("192.168.0.99", NODE_IP, 30081), "accept");
    // The cluster IP still works as before.
    assert_eq!(w.to("10.244.1.9", "10.96.0.10", 80), BOTH);
    // Restricted to some addresses (--nodeport-addresses): others are not node ports.
    let mut cfg = config();
    cfg.node_port_cidrs = Some(vec![Cidr::parse("10.0.0.0/8").unwrap()]);
    let mut w = World::with(cfg);
    web(&mut w, json!({"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}));
    assert_eq!(w.to("192.168.0.99", NODE_IP, 30080), "accept");
}

#[test]
fn external_traffic_policy_local_keeps_the_source_and_uses_local_endpoints() {
    let mut w = World::new();
    let spec = json!({"type": "NodePort", "externalTrafficPolicy": "Local", "externalIPs": ["203.0.113.7"],
        "ports": [{"name": "http", "port": 80, "nodePort": 30080}]});
    web(&mut w, spec.clone());
    assert_eq!(w.to("192.168.0.99", NODE_IP, 30080), "dnat 10.244.1.5:8080");
    assert_eq!(w.to("192.168.0.99", "203.0.113.7", 80), "dnat 10.244.1.5:8080");
    // Pods are short-circuited to every endpoint, as if they had gone out and come back.
    assert_eq!(w.to("10.244.1.9", NODE_IP, 30080), BOTH);
    // The node itself gets masqueraded, to every endpoint.
    assert_eq!(w.sent_by_node(NODE_IP, 30080), BOTH_MASQ);
    // The cluster IP is not affected by the external policy.
    assert_eq!(w.to("10.244.1.9", "10.96.0.10", 80), BOTH);

    // No endpoint on this node: external traffic is dropped (the node is not a place for it),
    // pods and the node still reach the remote ones.
    let mut w = World::new();
    w.svc(service("web", "10.96.0.10", spec));
    w.slice(slice("web", "web-1", &[("10.244.2.5", "node-b", ready())]));
    w.sync();
    assert_eq!(w.to("192.168.0.99", NODE_IP, 30080), "drop");
    assert_eq!(w.to("192.168.0.99", "203.0.113.7", 80), "drop");
    assert_eq!(w.to("10.244.1.9", NODE_IP, 30080), "dnat 10.244.2.5:8080");
    assert_eq!(w.sent_by_node(NODE_IP, 30080), "dnat 10.244.2.5:8080 masq");
}

#[test]
fn internal_traffic_policy_local_uses_only_this_nodes_endpoints() {
    let mut w = World::new();
    web(&mut w, json!({"internalTrafficPolicy": "Local"}));
    assert_eq!(w.to("10.244.1.9", "10.96.0.10", 80), "dnat 10.244.1.5:8080");
    let mut w = World::new();
    w.svc(service("web", "10.96.0.10", json!({"internalTrafficPolicy": "Local"})));
    w.slice(slice("web", "web-1", &[("10.244.2.5", "node-b", ready())]));
    w.sync();
    assert_eq!(w.to("10.244.1.9", "10.96.0.10", 80), "drop");
}

#[test]
fn external_ips_and_load_balancers_with_source_ranges() {
    let mut w = World::new();
    let mut s = service(
        "web",
        "10.96.0.10",
        json!({"type": "LoadBalancer", "externalIPs": ["203.0.113.7"], "loadBalancerSourceRanges": ["10.1.0.0/16"],
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
    );
    s["status"] =
        json!({"loadBalancer": {"ingress": [{"ip": "192.168.0.200"}, {"ip": "192.168.0.201", "ipMode": "Proxy"}]}});
    w.svc(s);
    w.slice(slice("web", "web-1", &[("10.244.1.5", "node-a", ready()), ("10.244.2.5", "node-b", ready())]));
    w.sync();
    assert_eq!(w.to("192.168.0.99", "203.0.113.7", 80), BOTH_MASQ);
    assert_eq!(w.to("10.1.2.3", "192.168.0.200", 80), BOTH_MASQ);
    assert_eq!(w.to("192.168.0.99", "192.168.0.200", 80), "drop");
    // An address in Proxy mode belongs to the balancer: not programmed here.
    assert_eq!(w.to("10.1.2.3", "192.168.0.201", 80), "accept");
}

#[test]
fn client_ip_affinity_sends_a_known_client_to_its_endpoint_and_remembers_new_ones() {
    let mut w = World::new();
    web(&mut w, json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}));
    let rs = w.table.ruleset();
    let set_of = |ip: &str| rs.dynamic_sets.keys().find(|k| k.ends_with(&format!("__{ip}/8080"))).unwrap().clone();
    assert_eq!(rs.dynamic_sets[&set_of("10.244.2.5")], 60);
    // A new client is spread, and its choice is recorded.
    let outs = w.outcomes("10.244.1.9", "10.96.0.10", 80, Protocol::Tcp, false);
    assert_eq!(summary(&outs), BOTH);
    for o in &outs {
        let ep = o.dnat.unwrap().ip().to_string();
        assert_eq!(o.updated_sets.iter().cloned().collect::<Vec<_>>(), vec![set_of(&ep)]);
    }
    // A known client goes where it went before.
    w.dynamic.push((set_of("10.244.2.5"), "10.244.1.9".parse().unwrap()));
    assert_eq!(w.to("10.244.1.9", "10.96.0.10", 80), "dnat 10.244.2.5:8080");
    assert_eq!(w.to("10.244.1.8", "10.96.0.10", 80), BOTH);
}

#[test]
fn traffic_distribution_prefers_endpoints_hinted_for_this_zone_or_node() {
    let zone = |ip: &str, node: &str, z: &str| json!({"addresses": [ip], "nodeName": node, "zone": z, "conditions": {"ready": true}, "hints": {"forZones": [{"name": z}], "forNodes": [{"name": node}]}});
    let mut w = World::new();
    w.svc(service("web", "10.96.0.10", json!({"trafficDistribution": "PreferClose"})));
    let mut s = slice("web", "web-1", &[]);
    s["endpoints"] = json!([zone("10.244.1.5", "node-c", "zone-a"), zone("10.244.2.5", "node-b", "zone-b")]);
    w.slice(s.clone());
    w.sync();
    assert_eq!(w.to("10.244.1.9", "10.96.0.10", 80), "dnat 10.244.1.5:8080");
    // PreferSameNode: the endpoint hinted for this node.
    s["endpoints"] = json!([
        zone("10.244.1.5", "node-c", "zone-a"),
        zone("10.244.1.6", "node-a", "zone-a"),
        zone("10.244.2.5", "node-b", "zone-b")
    ]);
    w.svc(service("web", "10.96.0.10", json!({"trafficDistribution": "PreferSameNode"})));
    w.slice(s.clone());
    w.sync();
    assert_eq!(w.to("10.244.1.9", "10.96.0.10", 80), "dnat 10.244.1.6:8080");
    // One endpoint without hints: hints are ignored.
    s["endpoints"][2]["hints"] = Value::Null;
    w.slice(s);
    w.sync();
    assert_eq!(
        w.to("10.244.1.9", "10.96.0.10", 80),
        "dnat 10.244.1.5:8080, dnat 10.244.1.6:8080, dnat 10.244.2.5:8080"
    );
}

#[test]
fn ports_are_told_apart_by_number_and_protocol() {
    let mut w = World::new();
    w.svc(service(
        "dns",
        "10.96.0.53",
        json!({"ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
            {"name": "metrics", "port": 9153, "protocol": "TCP"}]}),
    ));
    w.slice(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"namespace": "default", "name": "dns-1", "labels": {"kubernetes.io/service-name": "dns"}},
        "ports": [{"name": "dns", "port": 5353, "protocol": "UDP"}, {"name": "dns-tcp", "port": 5354, "protocol": "TCP"},
            {"name": "metrics", "port": 9153, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.244.1.5"], "nodeName": "node-a"}]}));
    w.sync();
    assert_eq!(w.udp("10.244.1.9", "10.96.0.53", 53), "dnat 10.244.1.5:5353");
    assert_eq!(w.to("10.244.1.9", "10.96.0.53", 53), "dnat 10.244.1.5:5354");
    assert_eq!(w.to("10.244.1.9", "10.96.0.53", 9153), "dnat 10.244.1.5:9153");
    assert_eq!(w.udp("10.244.1.9", "10.96.0.53", 9153), "reject");
}

#[test]
fn duplicate_endpoints_across_slices_count_once_and_unknown_port_names_match_nothing() {
    let mut w = World::new();
    w.svc(service("web", "10.96.0.10", json!({})));
    w.slice(slice("web", "web-1", &[("10.244.1.5", "node-a", ready())]));
    w.slice(slice("web", "web-2", &[("10.244.1.5", "node-a", ready()), ("10.244.2.5", "node-b", ready())]));
    let mut other = slice("web", "web-3", &[("10.244.3.5", "node-b", ready())]);
    other["ports"][0]["name"] = json!("nope");
    w.slice(other);
    w.sync();
    assert_eq!(w.to("10.244.1.9", "10.96.0.10", 80), BOTH);
    let rs = w.table.ruleset();
    assert_eq!(rs.chains.keys().filter(|k| k.starts_with("endpoint-")).count(), 2);
}

#[test]
fn two_services_claiming_one_external_address_keep_the_first_and_report_the_second() {
    let mut w = World::new();
    web(&mut w, json!({"externalIPs": ["203.0.113.7"]}));
    w.svc(service("api", "10.96.0.11", json!({"externalIPs": ["203.0.113.7"]})));
    w.slice(slice("api", "api-1", &[("10.244.3.5", "node-a", ready())]));
    let plan = w.sync();
    assert_eq!(plan.conflicts.len(), 1, "{:?}", plan.conflicts);
    assert_eq!(plan.conflicts[0].owner.name, "web");
    assert_eq!(w.to("192.168.0.99", "203.0.113.7", 80), BOTH_MASQ);
    // The second Service's cluster IP works regardless.
    assert_eq!(w.to("10.244.1.9", "10.96.0.11", 80), "dnat 10.244.3.5:8080");
}

#[test]
fn a_sync_rewrites_only_what_changed_and_deletes_unused_chains_later() {
    let mut w = World::new();
    web(&mut w, json!({}));
    w.svc(service("api", "10.96.0.11", json!({})));
    w.slice(slice("api", "api-1", &[("10.244.3.5", "node-a", ready())]));
    let plan = w.sync();
    assert!(!plan.full);
    assert!(!plan.text().contains("table"), "{}", plan.text());
    assert!(!plan.text().contains("/web/"), "only api is touched:\n{}", plan.text());
    assert!(
        plan.text().contains("add element ip kubesvc service-ips { 10.96.0.11 . tcp . 80 : goto service-"),
        "{}",
        plan.text()
    );
    // Nothing changed, nothing to do.
    assert_eq!(w.sync().text(), "");
    // One endpoint goes: its chain is flushed now and deleted a second later.
    w.slice(slice("web", "web-1", &[("10.244.1.5", "node-a", ready())]));
    let plan = w.sync();
    assert!(plan.text().contains("flush chain ip kubesvc endpoint-"), "{}", plan.text());
    assert!(!plan.text().contains("delete chain"), "{}", plan.text());
    assert_eq!(w.to("10.244.1.9", "10.96.0.10", 80), "dnat 10.244.1.5:8080");
    assert!(w.table.next_cleanup().is_some());
    w.now += Duration::from_secs(2);
    let plan = w.sync();
    assert_eq!(plan.text().lines().filter(|l| l.starts_with("delete chain")).count(), 1, "{}", plan.text());
    assert!(w.table.next_cleanup().is_none());
    // The endpoint comes back before its chain is deleted: the chain is reused, not re-added.
    w.slice(slice("web", "web-1", &[("10.244.1.5", "node-a", ready()), ("10.244.2.5", "node-b", ready())]));
    w.sync();
    w.slice(slice("web", "web-1", &[("10.244.1.5", "node-a", ready())]));
    w.sync();
    w.slice(slice("web", "web-1", &[("10.244.1.5", "node-a", ready()), ("10.244.2.5", "node-b", ready())]));
    let plan = w.sync();
    assert!(!plan.text().contains("add chain"), "{}", plan.text());
    w.now += Duration::from_secs(2);
    assert!(!w.sync().text().contains("delete chain"));
    assert_eq!(w.to("10.244.1.9", "10.96.0.10", 80), BOTH);
    // The Service goes: its address is no longer any Service's.
    w.delete_svc("default", "web");
    let plan = w.sync();
    assert!(plan.text().contains("delete element ip kubesvc service-ips { 10.96.0.10 . tcp . 80 }"), "{}", plan.text());
    assert_eq!(w.to("10.244.1.9", "10.96.0.10", 80), "drop");
    // After a refused transaction the next sync rebuilds everything.
    w.table.reset();
    let plan = w.sync();
    assert!(plan.full && plan.text().starts_with("add table ip kubesvc\ndelete table ip kubesvc\n"));
    assert!(plan.text().contains("10.96.0.11 . tcp . 80"));
    assert_eq!(w.to("10.244.1.9", "10.96.0.11", 80), "dnat 10.244.3.5:8080");
}

/// A network namespace of the test's own (held by a `sleep` it kills), to apply transactions in.
struct Scratch {
    child: std::process::Child,
}

impl Scratch {
    fn new() -> Scratch {
        let child = std::process::Command::new("unshare")
            .args(["--net", "--", "sleep", "600"])
            .spawn()
            .expect("unshare --net (needs root)");
        // The namespace exists once unshare has exec'd sleep.
        for _ in 0..100 {
            let ns = std::fs::read_link(format!("/proc/{}/ns/net", child.id())).ok();
            let mine = std::fs::read_link("/proc/self/ns/net").ok();
            if ns.is_some() && ns != mine {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Scratch { child }
    }

    fn nft(&self) -> super::apply::Nft {
        super::apply::Nft::with_argv(vec![
            "nsenter".into(),
            "-t".into(),
            self.child.id().to_string(),
            "-n".into(),
            "nft".into(),
        ])
    }

    /// A netlink socket inside the namespace.
    fn netlink(&self) -> super::netlink::Netlink {
        let ns = std::fs::File::open(format!("/proc/{}/ns/net", self.child.id())).unwrap();
        super::netlink::Netlink::open_in(std::os::fd::AsFd::as_fd(&ns)).unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lb(w: &mut World) {
    let mut s = service(
        "lb",
        "10.96.0.12",
        json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "externalIPs": ["203.0.113.7"],
            "loadBalancerSourceRanges": ["10.1.0.0/16"], "sessionAffinity": "ClientIP", "healthCheckNodePort": 30999,
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}, {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}]}),
    );
    s["status"] = json!({"loadBalancer": {"ingress": [{"ip": "192.168.0.200"}]}});
    w.svc(s);
}

/// A world of every kind of Service (affinity, load balancer with source ranges and
/// local policy, no endpoints), before its first sync.
fn every_kind() -> World {
    let mut w = World::new();
    w.svc(service("web", "10.96.0.10", json!({"sessionAffinity": "ClientIP"})));
    w.slice(slice("web", "web-1", &[("10.244.1.5", "node-a", ready()), ("10.244.2.5", "node-b", ready())]));
    lb(&mut w);
    w.slice(slice("lb", "lb-1", &[("10.244.1.5", "node-a", ready()), ("10.244.2.5", "node-b", ready())]));
    w.svc(service(
        "empty",
        "10.96.0.13",
        json!({"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": 30081}]}),
    ));
    w
}

type Step = Box<dyn Fn(&mut World)>;

/// Every kind of change, each to be synced and applied in turn.
fn every_change() -> Vec<Step> {
    vec![
        Box::new(|w| w.slice(slice("web", "web-1", &[("10.244.1.5", "node-a", ready())]))),
        Box::new(|w| {
            w.svc(service(
                "web",
                "10.96.0.10",
                json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 30}}}),
            ))
        }),
        Box::new(|w| w.delete_svc("default", "lb")),
        Box::new(|w| w.now += Duration::from_secs(2)),
        Box::new(lb),
        Box::new(|w| w.slice(slice("empty", "empty-1", &[("10.244.3.5", "node-b", ready())]))),
        Box::new(|w| {
            w.slice(slice(
                "web",
                "web-1",
                &[("10.244.1.5", "node-a", json!({"ready": false, "serving": true, "terminating": true}))],
            ))
        }),
        Box::new(|w| w.now += Duration::from_secs(2)),
    ]
}

#[tokio::test]
async fn the_kernel_takes_every_transaction_full_and_incremental() {
    let ns = Scratch::new();
    let nft = ns.nft();
    let mut w = every_kind();
    let plan = w.sync();
    assert!(plan.full);
    nft.apply(&plan.text()).await.unwrap_or_else(|e| panic!("{e}\n{}", plan.text()));
    let listed = nft.command(&["list", "table", "ip", "kubesvc"]).await.unwrap();
    assert!(listed.contains("10.96.0.10 . tcp . 80 : goto service-"), "{listed}");
    assert!(
        listed.contains("numgen random mod 2 == 0 goto endpoint-")
            || listed.contains("numgen random mod 2 0 goto endpoint-"),
        "{listed}"
    );
    for (i, step) in every_change().iter().enumerate() {
        step(&mut w);
        let plan = w.sync();
        assert!(!plan.full);
        nft.apply(&plan.text()).await.unwrap_or_else(|e| panic!("step {i}: {e}\n{}", plan.text()));
    }
    // What the kernel holds is what a rebuild would write: no chain left over, none missing.
    let listed = nft.command(&["list", "table", "ip", "kubesvc"]).await.unwrap();
    let kernel: std::collections::BTreeSet<String> = listed
        .lines()
        .filter_map(|l| l.trim().strip_prefix("chain "))
        .map(|l| l.trim_end_matches(" {").to_string())
        .collect();
    let expected: std::collections::BTreeSet<String> = w.table.ruleset().chains.keys().cloned().collect();
    assert_eq!(kernel, expected);
    // A refused transaction changes nothing.
    let before = nft.command(&["list", "table", "ip", "kubesvc"]).await.unwrap();
    let err = nft.apply("flush chain ip kubesvc services\nadd rule ip kubesvc no-such-chain drop\n").await.unwrap_err();
    assert!(err.to_string().contains("No such file or directory"), "{err}");
    assert_eq!(nft.command(&["list", "table", "ip", "kubesvc"]).await.unwrap(), before);
}

/// A listing with each set's elements in one order (the kernel's hash order differs
/// between two tables holding the same elements).
fn normalized(listing: &str) -> String {
    let mut out = Vec::new();
    let mut elements: Option<(String, String)> = None;
    for line in listing.lines() {
        match elements.as_mut() {
            Some((_, items)) => items.push_str(line),
            None => match line.find("elements = { ") {
                Some(at) => elements = Some((line[..at].to_string(), line[at + "elements = { ".len()..].to_string())),
                None => {
                    out.push(line.to_string());
                    continue;
                }
            },
        }
        if line.trim_end().ends_with('}')
            && let Some((indent, items)) = elements.take()
        {
            let mut items: Vec<&str> =
                items.trim_end().trim_end_matches('}').split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
            items.sort();
            out.push(format!("{indent}elements = {{ {} }}", items.join(", ")));
        }
    }
    out.join("\n")
}

/// Applies `plan` in `a` with `nft -f` and in `b` over netlink, and checks both list alike.
async fn both_ways(
    a: &super::apply::Nft,
    b: &super::netlink::Netlink,
    b_nft: &super::apply::Nft,
    plan: &Plan,
    what: &str,
) {
    a.apply(&plan.text()).await.unwrap_or_else(|e| panic!("{what}: nft: {e}\n{}", plan.text()));
    b.apply(plan).await.unwrap_or_else(|e| panic!("{what}: netlink: {e}\n{}", plan.text()));
    let family = plan.syntax().nft_family();
    let by_nft = a.command(&["list", "table", family, "kubesvc"]).await.unwrap();
    let by_netlink = b_nft.command(&["list", "table", family, "kubesvc"]).await.unwrap();
    assert_eq!(normalized(&by_netlink), normalized(&by_nft), "{what}: the tables differ");
}

#[tokio::test]
async fn netlink_writes_the_tables_nft_writes_full_and_incremental() {
    let (by_nft, by_netlink) = (Scratch::new(), Scratch::new());
    let (nft, netlink, netlink_nft) = (by_nft.nft(), by_netlink.netlink(), by_netlink.nft());
    let mut w = every_kind();
    let plan = w.sync();
    assert!(plan.full);
    both_ways(&nft, &netlink, &netlink_nft, &plan, "full").await;
    for (i, step) in every_change().iter().enumerate() {
        step(&mut w);
        let plan = w.sync();
        both_ways(&nft, &netlink, &netlink_nft, &plan, &format!("step {i}")).await;
    }
    // A rebuild over the existing table (what follows a refused transaction).
    w.table.reset();
    let plan = w.sync();
    assert!(plan.full);
    both_ways(&nft, &netlink, &netlink_nft, &plan, "rebuild").await;
    let listed = netlink_nft.command(&["list", "table", "ip", "kubesvc"]).await.unwrap();
    assert!(listed.contains("comment \"rules for kubesvc\""), "{listed}");
    assert!(listed.contains("ip saddr != 10.244.0.0/16 jump mark-for-masquerade"), "{listed}");
}

#[tokio::test]
async fn a_refused_netlink_transaction_names_the_op_and_changes_nothing() {
    let ns = Scratch::new();
    let (netlink, nft) = (ns.netlink(), ns.nft());
    let mut w = every_kind();
    netlink.apply(&w.sync()).await.unwrap();
    let before = nft.command(&["list", "table", "ip", "kubesvc"]).await.unwrap();
    let refused =
        |ops: Vec<Op>| Plan { ops, syntax: w.table.config().syntax(), table: "kubesvc".into(), ..Plan::default() };
    let missing_chain = refused(vec![
        Op::FlushChain("services".into()),
        Op::AddRule { chain: "no-such-chain".into(), rule: Rule::new(vec![], vec![Stmt::Drop]) },
        Op::AddChain { name: "new-chain".into(), base: None },
    ]);
    let err = netlink.apply(&missing_chain).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("add rule ip kubesvc no-such-chain drop"), "{text}");
    assert!(matches!(err, super::netlink::NetlinkError::Refused { index: 1, .. }), "{err:?}");
    assert_eq!(err.errno(), Some(2), "ENOENT: {err}");
    assert_eq!(nft.command(&["list", "table", "ip", "kubesvc"]).await.unwrap(), before);
    // Deleting what is not there, after a change that would have worked.
    let missing = refused(vec![
        Op::AddElement {
            map: render::SERVICE_IPS,
            key: Key::AddrProtoPort("10.96.0.99".parse().unwrap(), Protocol::Tcp, 1),
            verdict: Verdict::Drop,
        },
        Op::DeleteChain("no-such-chain".into()),
    ]);
    let err = netlink.apply(&missing).await.unwrap_err();
    assert!(err.to_string().contains("delete chain ip kubesvc no-such-chain"), "{err}");
    assert_eq!(err.errno(), Some(2), "ENOENT: {err}");
    // A key of the wrong shape for its map (EINVAL).
    let wrong = refused(vec![Op::AddElement {
        map: render::SERVICE_IPS,
        key: Key::ProtoPort(Protocol::Tcp, 1),
        verdict: Verdict::Drop,
    }]);
    let err = netlink.apply(&wrong).await.unwrap_err();
    assert_eq!(err.errno(), Some(22), "EINVAL: {err}");
    // A chain still jumped to cannot go (EBUSY).
    let busy = refused(vec![Op::DeleteChain("mark-for-masquerade".into())]);
    let err = netlink.apply(&busy).await.unwrap_err();
    assert_eq!(err.errno(), Some(16), "EBUSY: {err}");
    assert_eq!(nft.command(&["list", "table", "ip", "kubesvc"]).await.unwrap(), before);
    // The socket goes on after refusals.
    w.slice(slice("web", "web-1", &[("10.244.1.5", "node-a", ready())]));
    netlink.apply(&w.sync()).await.unwrap();
    assert_ne!(nft.command(&["list", "table", "ip", "kubesvc"]).await.unwrap(), before);
}

fn v6_service(name: &str, ip: &str, spec: Value) -> Value {
    let mut s = service(name, ip, spec);
    s["spec"]["ipFamilies"] = json!(["IPv6"]);
    s
}

fn v6_slice(service: &str, name: &str, eps: &[(&str, &str, Value)]) -> Value {
    let mut s = slice(service, name, eps);
    s["addressType"] = json!("IPv6");
    s
}

#[tokio::test]
async fn ipv6_tables_are_written_alike_both_ways() {
    let (by_nft, by_netlink) = (Scratch::new(), Scratch::new());
    let (nft, netlink, netlink_nft) = (by_nft.nft(), by_netlink.netlink(), by_netlink.nft());
    let mut cfg = config();
    cfg.family = Family::IPv6;
    cfg.service_cidrs = vec![Cidr::parse("fd00:10:96::/112").unwrap()];
    // A whole-byte prefix and one that is not (loaded and compared differently).
    cfg.pod_cidrs = vec![Cidr::parse("fd00:10:244::/56").unwrap(), Cidr::parse("fd00:10:245::/60").unwrap()];
    let mut w = World::with(cfg);
    let eps = |w: &mut World, name: &str, ips: &[&str]| {
        let list: Vec<(&str, &str, Value)> =
            ips.iter().enumerate().map(|(i, ip)| (*ip, if i == 0 { "node-a" } else { "node-b" }, ready())).collect();
        w.slice(v6_slice(name, &format!("{name}-1"), &list));
    };
    w.svc(v6_service("web", "fd00:10:96::10", json!({"sessionAffinity": "ClientIP"})));
    eps(&mut w, "web", &["fd00:10:244::5", "fd00:10:244:1::5"]);
    let mut lb = v6_service(
        "lb",
        "fd00:10:96::12",
        json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "externalIPs": ["2001:db8::7"],
            "loadBalancerSourceRanges": ["2001:db8:1::/48"],
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}, {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}]}),
    );
    lb["status"] = json!({"loadBalancer": {"ingress": [{"ip": "2001:db8::200"}]}});
    w.svc(lb);
    eps(&mut w, "lb", &["fd00:10:244::6", "fd00:10:244:1::6"]);
    w.svc(v6_service(
        "empty",
        "fd00:10:96::13",
        json!({"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": 30081}]}),
    ));
    let plan = w.sync();
    assert!(plan.full);
    both_ways(&nft, &netlink, &netlink_nft, &plan, "full").await;
    let listed = netlink_nft.command(&["list", "table", "ip6", "kubesvc"]).await.unwrap();
    assert!(listed.contains("dnat to [fd00:10:244::5]:8080"), "{listed}");
    assert!(listed.contains("fd00:10:96::10 . tcp . 80 : goto service-"), "{listed}");
    eps(&mut w, "web", &["fd00:10:244::5"]);
    eps(&mut w, "empty", &["fd00:10:244:1::7"]);
    let plan = w.sync();
    both_ways(&nft, &netlink, &netlink_nft, &plan, "endpoints changed").await;
    w.delete_svc("default", "lb");
    w.now += Duration::from_secs(2);
    let plan = w.sync();
    both_ways(&nft, &netlink, &netlink_nft, &plan, "service gone").await;
    w.now += Duration::from_secs(2);
    let plan = w.sync();
    both_ways(&nft, &netlink, &netlink_nft, &plan, "stale chains deleted").await;
}
