//! The EndpointSlice reconciler, rule for rule with Kubernetes'
//! (k8s.io/endpointslice): from a Service, the pods it selects and the slices
//! it has, the slices to create, update and delete. No I/O.
//!
//! Pods are grouped by the ports they resolve (a named targetPort may mean
//! different numbers on different pods), per address family; existing slices
//! are kept and filled before new ones are made; a Service with no endpoints
//! keeps one empty placeholder slice per family.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointHints, EndpointPort, EndpointSlice, ForNode, ForZone,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::ResourceExt;

use crate::podutil::{self, find_port, format_trigger_time, hostname_for, should_be_in_endpoints};
use kubesvc_runtime::pod::{self, is_headless};

pub use crate::slices::{LABEL_MANAGED_BY, LABEL_SERVICE_NAME};
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
use kubesvc_runtime::wellknown::LABEL_TOPOLOGY_ZONE as LABEL_ZONE;
pub use kubesvc_runtime::wellknown::{ANNOTATION_TRIGGER_TIME, LABEL_HEADLESS};

/// What to write.
#[derive(Debug, Default)]
pub struct Plan {
    pub create: Vec<EndpointSlice>,
    /// Each carries its name (and, for a recycled slice, no resourceVersion).
    pub update: Vec<EndpointSlice>,
    pub delete: Vec<String>,
    /// Pods left out for a reason worth retrying (their node is not known yet).
    pub errors: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// A slice's ports, in a canonical order: the key pods and slices are grouped by.
type PortKey = Vec<(String, i32, String, Option<String>)>;

fn port_key(ports: &[EndpointPort]) -> PortKey {
    let mut k: PortKey = ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or_default(),
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                p.app_protocol.clone(),
            )
        })
        .collect();
    k.sort();
    k
}

/// Identifies an endpoint across versions: its addresses, hostname and pod.
type EndpointKey = (Vec<String>, Option<String>, Option<(String, String)>);

fn endpoint_key(e: &Endpoint) -> EndpointKey {
    let mut addrs = e.addresses.clone();
    addrs.sort();
    let target =
        e.target_ref.as_ref().map(|t| (t.namespace.clone().unwrap_or_default(), t.name.clone().unwrap_or_default()));
    (addrs, e.hostname.clone(), target)
}

/// Endpoints equal as Kubernetes compares them (a targetRef's resourceVersion does not count).
fn same_endpoint(a: &Endpoint, b: &Endpoint) -> bool {
    let strip = |e: &Endpoint| {
        let mut e = e.clone();
        if let Some(t) = e.target_ref.as_mut() {
            t.resource_version = None;
        }
        e
    };
    strip(a) == strip(b)
}

/// The address families a Service's slices carry.
pub fn address_types(svc: &Service) -> Vec<&'static str> {
    let spec = svc.spec.as_ref();
    let families = spec.and_then(|s| s.ip_families.clone()).unwrap_or_default();
    if !families.is_empty() {
        return families
            .iter()
            .filter_map(|f| match f.as_str() {
                "IPv4" => Some("IPv4"),
                "IPv6" => Some("IPv6"),
                _ => None,
            })
            .collect();
    }
    match spec.and_then(|s| s.cluster_ip.as_deref()).and_then(pod::parse_ip_lenient) {
        Some(IpAddr::V4(_)) => vec!["IPv4"],
        Some(IpAddr::V6(_)) => vec!["IPv6"],
        None => vec!["IPv4", "IPv6"],
    }
}

fn family_matches(ip: &IpAddr, address_type: &str) -> bool {
    matches!((ip, address_type), (IpAddr::V4(_), "IPv4") | (IpAddr::V6(_), "IPv6"))
}

/// The labels every slice of the Service carries.
pub fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = svc
        .labels()
        .iter()
        .filter(|(k, _)| ![LABEL_SERVICE_NAME, LABEL_MANAGED_BY, LABEL_HEADLESS].contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(LABEL_SERVICE_NAME.into(), svc.name_any());
    labels.insert(LABEL_MANAGED_BY.into(), MANAGED_BY.into());
    if is_headless(svc) {
        labels.insert(LABEL_HEADLESS.into(), String::new());
    }
    labels
}

fn owner_ref(svc: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: svc.name_any(),
        uid: svc.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether the slice belongs to this very Service (not an earlier one of the same name).
fn owned_by(slice: &EndpointSlice, svc: &Service) -> bool {
    let uid = svc.uid().unwrap_or_default();
    slice.owner_references().iter().any(|o| o.uid == uid && o.kind == "Service" && o.api_version == "v1")
}

/// A generateName that stays a valid name prefix.
fn generate_name(svc: &Service) -> String {
    let name = svc.name_any();
    if name.len() < 63 - 5 { format!("{name}-") } else { name }
}

fn new_slice(svc: &Service, address_type: &str, ports: Vec<EndpointPort>, endpoints: Vec<Endpoint>) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(generate_name(svc)),
            namespace: svc.namespace(),
            labels: Some(slice_labels(svc)),
            owner_references: Some(vec![owner_ref(svc)]),
            ..Default::default()
        },
        address_type: address_type.into(),
        ports: Some(ports),
        endpoints: Some(endpoints),
    }
}

/// Hints for `trafficDistribution` (PreferClose and PreferSameZone: the zone;
/// PreferSameNode: the node too), on ready endpoints with a zone.
fn apply_hints(svc: &Service, endpoints: &mut [Endpoint]) {
    let mode = svc.spec.as_ref().and_then(|s| s.traffic_distribution.as_deref());
    for e in endpoints {
        let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false);
        e.hints = match (mode, &e.zone) {
            (Some("PreferClose" | "PreferSameZone" | "PreferSameNode"), Some(zone)) if ready => Some(EndpointHints {
                for_zones: Some(vec![ForZone { name: zone.clone() }]),
                for_nodes: (mode == Some("PreferSameNode"))
                    .then(|| e.node_name.clone().map(|n| vec![ForNode { name: n }]))
                    .flatten(),
            }),
            _ => None,
        };
    }
}

/// The endpoint a pod gives in slices of `address_type`.
fn endpoint_for(svc: &Service, pod: &Pod, node: Option<&Node>, address_type: &str) -> Endpoint {
    let pnra = svc.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false);
    let serving = pod::is_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let addresses: Vec<String> =
        pod::pod_ips(pod).into_iter().filter(|ip| family_matches(ip, address_type)).map(|ip| ip.to_string()).collect();
    let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty());
    Endpoint {
        addresses,
        conditions: Some(EndpointConditions {
            ready: Some(pnra || (serving && !terminating)),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: hostname_for(pod, svc),
        node_name,
        zone: node.and_then(|n| n.labels().get(LABEL_ZONE).cloned()).filter(|z| !z.is_empty()),
        target_ref: Some(podutil::pod_ref(pod)),
        deprecated_topology: None,
        hints: None,
    }
}

/// The ports a pod serves for the Service; a named port the pod lacks is left out for it.
fn pod_ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    let ports = svc.spec.as_ref().and_then(|s| s.ports.clone()).unwrap_or_default();
    ports
        .iter()
        .filter_map(|sp| {
            let number = find_port(pod, sp)?;
            Some(EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(number),
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

/// Slices being built for one port set.
struct Working {
    slice: EndpointSlice,
    endpoints: Vec<Endpoint>,
}

/// Plans the slices of one Service.
pub fn reconcile(
    svc: &Service,
    pods: &[Arc<Pod>],
    node: &dyn Fn(&str) -> Option<Arc<Node>>,
    existing: &[Arc<EndpointSlice>],
    max_per_slice: usize,
    trigger: Option<&Time>,
) -> Plan {
    let mut plan = Plan::default();
    let types = address_types(svc);
    let pnra = svc.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false);
    let labels = slice_labels(svc);
    let max = max_per_slice.max(1);

    // Pods, once: ports, node, eligibility.
    struct PodInfo {
        pod: Arc<Pod>,
        ports: Vec<EndpointPort>,
        node: Option<Arc<Node>>,
    }
    let mut eligible = Vec::new();
    for pod in pods {
        if !should_be_in_endpoints(pod, true) {
            continue;
        }
        let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        let n = if node_name.is_empty() { None } else { node(&node_name) };
        if !node_name.is_empty() && n.is_none() && !pnra {
            plan.errors.push(format!(
                "skipping Pod {} for Service {}/{}: Node {node_name} Not Found",
                pod.name_any(),
                svc.namespace().unwrap_or_default(),
                svc.name_any()
            ));
            continue;
        }
        let ports = pod_ports(svc, pod);
        eligible.push(PodInfo { pod: pod.clone(), ports, node: n });
    }

    for address_type in &types {
        // Desired: port set -> endpoints (by identity, in pod order).
        let mut desired: BTreeMap<PortKey, (Vec<EndpointPort>, Vec<Endpoint>)> = BTreeMap::new();
        for info in &eligible {
            let entry = desired.entry(port_key(&info.ports)).or_insert_with(|| (info.ports.clone(), Vec::new()));
            let e = endpoint_for(svc, &info.pod, info.node.as_deref(), address_type);
            if !e.addresses.is_empty() {
                entry.1.push(e);
            }
        }
        for (_, eps) in desired.values_mut() {
            apply_hints(svc, eps);
        }

        // Existing slices of this family: ours by port set; others go.
        let mut by_key: BTreeMap<PortKey, Vec<&EndpointSlice>> = BTreeMap::new();
        let mut family_existing = 0;
        let mut deletes: Vec<&EndpointSlice> = Vec::new();
        for s in existing.iter().filter(|s| s.address_type == *address_type) {
            family_existing += 1;
            if owned_by(s, svc) {
                by_key.entry(port_key(s.ports.as_deref().unwrap_or_default())).or_default().push(s);
            } else {
                deletes.push(s);
            }
        }

        let mut creates: Vec<Working> = Vec::new();
        let mut updates: Vec<Working> = Vec::new();
        for (key, (ports, want)) in &desired {
            let mut remaining: Vec<(EndpointKey, Endpoint)> =
                want.iter().map(|e| (endpoint_key(e), e.clone())).collect();
            let mut index: HashMap<EndpointKey, usize> = HashMap::new();
            for (i, (k, _)) in remaining.iter().enumerate() {
                index.entry(k.clone()).or_insert(i);
            }
            let mut taken = vec![false; remaining.len()];
            let mut changed_slices: Vec<Working> = Vec::new();
            let mut unchanged: Vec<Working> = Vec::new();
            for slice in by_key.remove(key).unwrap_or_default() {
                let mut kept = Vec::new();
                let mut changed = false;
                for e in slice.endpoints.iter().flatten() {
                    match index.get(&endpoint_key(e)) {
                        Some(&i) if !taken[i] => {
                            taken[i] = true;
                            let want = &remaining[i].1;
                            if !same_endpoint(e, want) {
                                changed = true;
                            }
                            kept.push(want.clone());
                        }
                        _ => changed = true,
                    }
                }
                let w = Working { slice: slice.clone(), endpoints: kept };
                if changed {
                    if w.endpoints.is_empty() {
                        deletes.push(slice);
                    } else {
                        changed_slices.push(w);
                    }
                } else if slice.labels() != &labels {
                    changed_slices.push(w);
                } else {
                    unchanged.push(w);
                }
            }
            let mut left: Vec<Endpoint> =
                remaining.drain(..).zip(taken).filter(|(_, t)| !t).map(|((_, e), _)| e).collect();
            left.reverse(); // pop() takes them in pod order
            // Fill the slices being updated anyway, fullest first.
            changed_slices.sort_by_key(|w| std::cmp::Reverse(w.endpoints.len()));
            for w in &mut changed_slices {
                while w.endpoints.len() < max {
                    match left.pop() {
                        Some(e) => w.endpoints.push(e),
                        None => break,
                    }
                }
            }
            updates.extend(changed_slices);
            // Then an unchanged slice the rest fits best, else new slices.
            while !left.is_empty() {
                let best = (left.len() < max)
                    .then(|| {
                        unchanged
                            .iter()
                            .enumerate()
                            .filter(|(_, w)| w.endpoints.len() + left.len() <= max)
                            .min_by_key(|(_, w)| max - (w.endpoints.len() + left.len()))
                            .map(|(i, _)| i)
                    })
                    .flatten();
                let mut w = match best {
                    Some(i) => unchanged.remove(i),
                    None => Working {
                        slice: new_slice(svc, address_type, ports.clone(), Vec::new()),
                        endpoints: Vec::new(),
                    },
                };
                let is_new = w.slice.metadata.name.is_none();
                while w.endpoints.len() < max {
                    match left.pop() {
                        Some(e) => w.endpoints.push(e),
                        None => break,
                    }
                }
                if is_new { creates.push(w) } else { updates.push(w) }
            }
        }
        // Port sets no pod has any more.
        for (_, slices) in by_key {
            deletes.extend(slices);
        }

        // A Service with no endpoints keeps one empty slice per family.
        let remaining_slices = family_existing - deletes.len();
        if creates.is_empty() && remaining_slices == 0 {
            let placeholder = new_slice(svc, address_type, Vec::new(), Vec::new());
            let keep = (deletes.len() == 1 && is_placeholder(deletes[0], &placeholder)).then(|| deletes.remove(0));
            if keep.is_none() {
                creates.push(Working { slice: placeholder, endpoints: Vec::new() });
            }
        }

        // Recycle: a create paired with a delete of ours becomes an update of that name.
        let mut deletes: Vec<&EndpointSlice> = deletes;
        let mut recycled: Vec<Working> = Vec::new();
        while let Some(pos) = (!creates.is_empty()).then(|| deletes.iter().position(|d| owned_by(d, svc))).flatten() {
            let d = deletes.remove(pos);
            let mut w = creates.pop().expect("checked non-empty");
            w.slice.metadata.name = d.metadata.name.clone();
            w.slice.metadata.generate_name = None;
            recycled.push(w);
        }

        let deleting = svc.metadata.deletion_timestamp.is_some();
        let finish = |w: Working| -> EndpointSlice {
            let mut s = w.slice;
            s.endpoints = Some(w.endpoints);
            s.metadata.labels = Some(labels.clone());
            let ann = s.metadata.annotations.get_or_insert_with(Default::default);
            match trigger {
                Some(t) => {
                    ann.insert(ANNOTATION_TRIGGER_TIME.into(), format_trigger_time(t));
                }
                None => {
                    ann.remove(ANNOTATION_TRIGGER_TIME);
                }
            }
            if ann.is_empty() {
                s.metadata.annotations = None;
            }
            s
        };
        if !deleting {
            plan.create.extend(creates.into_iter().map(finish));
        }
        plan.update.extend(
            updates
                .into_iter()
                .chain(recycled.into_iter().map(|mut w| {
                    w.slice.metadata.resource_version = None;
                    w
                }))
                .map(finish),
        );
        plan.delete.extend(deletes.into_iter().filter_map(|d| d.metadata.name.clone()));
    }

    // Slices of a family the Service no longer has.
    let kept: BTreeSet<&str> = types.iter().copied().collect();
    plan.delete.extend(
        existing.iter().filter(|s| !kept.contains(s.address_type.as_str())).filter_map(|s| s.metadata.name.clone()),
    );
    plan
}

/// Whether an existing slice is already the placeholder (names and annotations aside).
fn is_placeholder(existing: &EndpointSlice, placeholder: &EndpointSlice) -> bool {
    existing.metadata.namespace == placeholder.metadata.namespace
        && existing.labels() == placeholder.labels()
        && existing.owner_references() == placeholder.owner_references()
        && existing.address_type == placeholder.address_type
        && existing.ports.as_deref().unwrap_or_default().is_empty()
        && existing.endpoints.as_deref().unwrap_or_default().is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn svc(spec: Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "ns", "uid": "svc-uid",
            "labels": {"app": "web", "kubernetes.io/service-name": "ignored"}}, "spec": spec}))
        .unwrap()
    }

    fn basic() -> Service {
        svc(json!({"selector": {"app": "web"}, "clusterIP": "10.96.0.5", "ipFamilies": ["IPv4"],
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}))
    }

    /// A running, ready pod whose container names port `http` as `http_port`.
    fn pod(name: &str, ip: &str, http_port: i32, ready: bool) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
                "spec": {"nodeName": "node-1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": http_port}]}]},
                "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                    "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" },
                        "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
            }))
            .unwrap(),
        )
    }

    fn nodes(name: &str) -> Option<Arc<Node>> {
        (name == "node-1").then(|| {
            Arc::new(
                serde_json::from_value(
                    json!({"metadata": {"name": "node-1", "labels": {"topology.kubernetes.io/zone": "z1"}}}),
                )
                .unwrap(),
            )
        })
    }

    fn plan(s: &Service, pods: &[Arc<Pod>], existing: &[Arc<EndpointSlice>], max: usize) -> Plan {
        reconcile(s, pods, &nodes, existing, max, None)
    }

    /// The plan applied, as the API server would: creates get names.
    fn applied(p: Plan, existing: &[Arc<EndpointSlice>]) -> Vec<Arc<EndpointSlice>> {
        let mut out: Vec<Arc<EndpointSlice>> = existing
            .iter()
            .filter(|s| !p.delete.contains(&s.name_any()))
            .filter(|s| !p.update.iter().any(|u| u.name_any() == s.name_any()))
            .cloned()
            .collect();
        out.extend(p.update.into_iter().map(Arc::new));
        for (i, mut c) in p.create.into_iter().enumerate() {
            c.metadata.name = Some(format!("web-{i}{}", out.len()));
            out.push(Arc::new(c));
        }
        out
    }

    fn endpoint_count(slices: &[Arc<EndpointSlice>]) -> usize {
        slices.iter().map(|s| s.endpoints.as_ref().map_or(0, Vec::len)).sum()
    }

    #[test]
    fn one_slice_with_labels_owner_and_conditions() {
        let s = basic();
        let p = plan(&s, &[pod("a", "10.1.0.1", 8080, true), pod("b", "10.1.0.2", 8080, false)], &[], 100);
        assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (1, 0, 0));
        let slice = &p.create[0];
        assert_eq!(slice.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(slice.address_type, "IPv4");
        let labels = slice.labels();
        assert_eq!(labels.get(LABEL_SERVICE_NAME).map(String::as_str), Some("web"));
        assert_eq!(labels.get(LABEL_MANAGED_BY).map(String::as_str), Some(MANAGED_BY));
        assert_eq!(labels.get("app").map(String::as_str), Some("web"));
        assert!(!labels.contains_key(LABEL_HEADLESS));
        let owner = &slice.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller, owner.block_owner_deletion),
            ("Service", "svc-uid", Some(true), Some(true))
        );
        assert_eq!(slice.ports.as_ref().unwrap()[0].port, Some(8080));
        let eps = slice.endpoints.as_ref().unwrap();
        let a = &eps[0];
        assert_eq!(a.addresses, ["10.1.0.1"]);
        assert_eq!(a.zone.as_deref(), Some("z1"));
        assert_eq!(a.node_name.as_deref(), Some("node-1"));
        assert_eq!(a.target_ref.as_ref().unwrap().name.as_deref(), Some("a"));
        let c = |e: &Endpoint| {
            let c = e.conditions.clone().unwrap();
            (c.ready, c.serving, c.terminating)
        };
        assert_eq!(c(a), (Some(true), Some(true), Some(false)));
        assert_eq!(c(&eps[1]), (Some(false), Some(false), Some(false)));
    }

    #[test]
    fn named_ports_resolving_differently_split_slices() {
        let s = basic();
        let p = plan(
            &s,
            &[pod("a", "10.1.0.1", 8080, true), pod("b", "10.1.0.2", 9090, true), pod("c", "10.1.0.3", 8080, true)],
            &[],
            100,
        );
        assert_eq!(p.create.len(), 2);
        let mut by_port: Vec<(i32, usize)> = p
            .create
            .iter()
            .map(|s| (s.ports.as_ref().unwrap()[0].port.unwrap(), s.endpoints.as_ref().unwrap().len()))
            .collect();
        by_port.sort();
        assert_eq!(by_port, [(8080, 2), (9090, 1)]);
        // A pod lacking the named port serves the Service with no ports at all.
        let lacking: Arc<Pod> = Arc::new(
            serde_json::from_value(json!({
            "metadata": {"name": "d", "namespace": "ns", "uid": "uid-d"},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c"}]},
            "status": {"phase": "Running", "podIP": "10.1.0.4", "conditions": [{"type": "Ready", "status": "True"}]}}))
            .unwrap(),
        );
        let p = plan(&s, &[lacking], &[], 100);
        assert_eq!(p.create[0].ports.as_ref().unwrap().len(), 0);
        assert_eq!(p.create[0].endpoints.as_ref().unwrap().len(), 1);
    }

    #[test]
    fn more_than_a_slice_holds_and_minimal_changes() {
        let s = basic();
        let pods: Vec<Arc<Pod>> = (0..250)
            .map(|i| pod(&format!("p{i:03}"), &format!("10.1.{}.{}", i / 200, i % 200 + 1), 8080, true))
            .collect();
        let p = plan(&s, &pods, &[], 100);
        let mut sizes: Vec<usize> = p.create.iter().map(|s| s.endpoints.as_ref().unwrap().len()).collect();
        sizes.sort();
        assert_eq!(sizes, [50, 100, 100]);
        let slices = applied(p, &[]);
        // Nothing changed: nothing to write.
        assert!(plan(&s, &pods, &slices, 100).is_empty());
        // One pod turns unready: exactly one slice is rewritten.
        let mut changed = pods.clone();
        changed[7] = pod("p007", "10.1.0.8", 8080, false);
        let p = plan(&s, &changed, &slices, 100);
        assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (0, 1, 0));
        let slices = applied(p, &slices);
        assert_eq!(endpoint_count(&slices), 250);
        // Ten more pods: they go to the slice they fit best, not a new one.
        let mut more = changed.clone();
        more.extend((0..10).map(|i| pod(&format!("q{i}"), &format!("10.2.0.{}", i + 1), 8080, true)));
        let p = plan(&s, &more, &slices, 100);
        assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (0, 1, 0));
        let slices = applied(p, &slices);
        assert_eq!(endpoint_count(&slices), 260);
        assert!(slices.iter().all(|s| s.endpoints.as_ref().unwrap().len() <= 100));
        // All pods gone: one slice becomes the placeholder (recycled), the rest go.
        let p = plan(&s, &[], &slices, 100);
        assert_eq!(p.create.len(), 0);
        assert_eq!(p.update.len(), 1, "a deleted slice is recycled into the placeholder");
        assert_eq!(p.delete.len(), 2);
        let placeholder = &p.update[0];
        assert!(placeholder.endpoints.as_ref().unwrap().is_empty() && placeholder.ports.as_ref().unwrap().is_empty());
        let slices = applied(p, &slices);
        assert!(plan(&s, &[], &slices, 100).is_empty(), "the placeholder stays");
    }

    #[test]
    fn terminating_not_ready_and_publish_not_ready() {
        let mut going = (*pod("a", "10.1.0.1", 8080, true)).clone();
        going.metadata.deletion_timestamp = Some(Time("2026-01-01T00:00:00Z".parse().unwrap()));
        let going = Arc::new(going);
        let p = plan(&basic(), std::slice::from_ref(&going), &[], 100);
        let c = p.create[0].endpoints.as_ref().unwrap()[0].conditions.clone().unwrap();
        assert_eq!((c.ready, c.serving, c.terminating), (Some(false), Some(true), Some(true)));
        let mut pnra = basic();
        pnra.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let p = plan(&pnra, &[pod("b", "10.1.0.2", 8080, false)], &[], 100);
        let c = p.create[0].endpoints.as_ref().unwrap()[0].conditions.clone().unwrap();
        assert_eq!((c.ready, c.serving), (Some(true), Some(false)));
    }

    #[test]
    fn unknown_nodes_and_finished_pods() {
        let mut elsewhere = (*pod("a", "10.1.0.1", 8080, true)).clone();
        elsewhere.spec.as_mut().unwrap().node_name = Some("node-9".into());
        let mut done = (*pod("b", "10.1.0.2", 8080, true)).clone();
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        let p = plan(&basic(), &[Arc::new(elsewhere), Arc::new(done)], &[], 100);
        assert_eq!(p.errors, ["skipping Pod a for Service ns/web: Node node-9 Not Found"]);
        assert!(p.create[0].endpoints.as_ref().unwrap().is_empty(), "only the placeholder");
    }

    #[test]
    fn headless_hostnames_and_dual_stack() {
        let s =
            svc(json!({"selector": {"app": "web"}, "clusterIP": "None", "ipFamilies": ["IPv4", "IPv6"], "ports": []}));
        let p: Arc<Pod> = Arc::new(
            serde_json::from_value(json!({
            "metadata": {"name": "a", "namespace": "ns", "uid": "uid-a"},
            "spec": {"hostname": "db-0", "subdomain": "web", "nodeName": "node-1", "containers": [{"name": "c"}]},
            "status": {"phase": "Running", "podIP": "10.1.0.1", "podIPs": [{"ip": "10.1.0.1"}, {"ip": "fd00::1"}],
                "conditions": [{"type": "Ready", "status": "True"}]}}))
            .unwrap(),
        );
        let plan = plan(&s, &[p], &[], 100);
        let mut types: Vec<&str> = plan.create.iter().map(|s| s.address_type.as_str()).collect();
        types.sort();
        assert_eq!(types, ["IPv4", "IPv6"]);
        for slice in &plan.create {
            assert_eq!(slice.labels().get(LABEL_HEADLESS).map(String::as_str), Some(""));
            let e = &slice.endpoints.as_ref().unwrap()[0];
            assert_eq!(e.hostname.as_deref(), Some("db-0"));
            assert_eq!(e.addresses, [if slice.address_type == "IPv4" { "10.1.0.1" } else { "fd00::1" }]);
        }
    }

    #[test]
    fn slices_of_an_earlier_service_are_replaced_and_hints_follow_traffic_distribution() {
        let s = basic();
        let p = plan(&s, &[pod("a", "10.1.0.1", 8080, true)], &[], 100);
        let mut old = p.create[0].clone();
        old.metadata.name = Some("web-old".into());
        old.metadata.owner_references.as_mut().unwrap()[0].uid = "earlier-uid".into();
        let p = plan(&s, &[pod("a", "10.1.0.1", 8080, true)], &[Arc::new(old)], 100);
        // Not ours (an earlier Service of the same name): deleted, never recycled.
        assert_eq!((p.create.len(), p.update.len()), (1, 0));
        assert_eq!(p.delete, ["web-old"]);
        assert_eq!(p.create[0].owner_references()[0].uid, "svc-uid");
        let mut zoned = basic();
        zoned.spec.as_mut().unwrap().traffic_distribution = Some("PreferSameNode".into());
        let p = plan(&zoned, &[pod("a", "10.1.0.1", 8080, true), pod("b", "10.1.0.2", 8080, false)], &[], 100);
        let eps = p.create[0].endpoints.as_ref().unwrap();
        let hints = eps[0].hints.clone().unwrap();
        assert_eq!(hints.for_zones.unwrap()[0].name, "z1");
        assert_eq!(hints.for_nodes.unwrap()[0].name, "node-1");
        assert!(eps[1].hints.is_none(), "not-ready endpoints get no hints");
    }

    #[test]
    fn trigger_time_annotation() {
        let t = Time("2026-08-04T13:01:58.5Z".parse().unwrap());
        let p = reconcile(&basic(), &[pod("a", "10.1.0.1", 8080, true)], &nodes, &[], 100, Some(&t));
        assert_eq!(
            p.create[0].annotations().get(ANNOTATION_TRIGGER_TIME).map(String::as_str),
            Some("2026-08-04T13:01:58.5Z")
        );
    }
}
