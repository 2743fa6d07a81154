//! A scheduler with kube-scheduler's default filters that matter here
//! (unschedulable nodes, taints, node selector and required node affinity,
//! host ports, cpu/memory/pod counts) and its scoring preferences (spread a
//! workload's pods, least allocated node); binds through the Binding
//! subresource and explains a pod that fits nowhere in kube-scheduler's words.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Binding, Node, NodeSelectorRequirement, ObjectReference, Pod, PodCondition, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::watch;

use crate::claim::controller_of;
use crate::{Error, replicaset};
use kubesvc_runtime::WorkQueue;
use kubesvc_runtime::events::{EventType, Recorder, reference};
use kubesvc_runtime::wellknown::TAINT_NODE_UNSCHEDULABLE;
use kubesvc_runtime::{Change, Informer, ObjectKey, key_of};

pub const SCHEDULER_NAME: &str = "default-scheduler";

type Key = ObjectKey;

/// Why a node does not fit, and whether preemption could ever help there.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Unfit {
    reasons: Vec<String>,
    resolvable: bool,
}

fn unresolvable(reason: &str) -> Unfit {
    Unfit { reasons: vec![reason.into()], resolvable: false }
}

/// Whether `tolerations` tolerate `taint` (Kubernetes' ToleratesTaint).
pub fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| {
        let effect_ok = t.effect.as_deref().is_none_or(|e| e.is_empty() || e == taint.effect);
        let key_ok = t.key.as_deref().is_none_or(|k| k.is_empty()) || t.key.as_deref() == Some(taint.key.as_str());
        let value_ok = match t.operator.as_deref() {
            Some("Exists") => true,
            _ => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        };
        // An empty key with Exists tolerates everything.
        effect_ok
            && key_ok
            && (value_ok || (t.key.as_deref().unwrap_or("").is_empty() && t.operator.as_deref() == Some("Exists")))
    })
}

fn requirement_matches(r: &NodeSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let v = labels.get(&r.key);
    match r.operator.as_str() {
        "In" => v.is_some_and(|v| values.contains(v)),
        "NotIn" => v.is_none_or(|v| !values.contains(v)),
        "Exists" => v.is_some(),
        "DoesNotExist" => v.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) =
                (v.and_then(|v| v.parse::<i64>().ok()), values.first().and_then(|b| b.parse::<i64>().ok()))
            else {
                return false;
            };
            if r.operator == "Gt" { v > bound } else { v < bound }
        }
        _ => false,
    }
}

/// nodeSelector and required node affinity.
fn affinity_matches(pod: &Pod, node: &Node) -> bool {
    let spec = pod.spec.as_ref();
    let labels = node.labels();
    let selector_ok =
        spec.and_then(|s| s.node_selector.as_ref()).is_none_or(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let required = spec
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| na.required_during_scheduling_ignored_during_execution.as_ref());
    let affinity_ok = required.is_none_or(|r| {
        r.node_selector_terms.iter().any(|term| {
            let exprs = term.match_expressions.iter().flatten().all(|e| requirement_matches(e, labels));
            let fields = term.match_fields.iter().flatten().all(|f| {
                let mut named = BTreeMap::new();
                named.insert("metadata.name".to_string(), node.name_any());
                requirement_matches(f, &named)
            });
            (term.match_expressions.as_ref().is_some_and(|e| !e.is_empty())
                || term.match_fields.as_ref().is_some_and(|f| !f.is_empty()))
                && exprs
                && fields
        })
    });
    selector_ok && affinity_ok
}

/// Millicores and bytes a pod requests (the larger of its containers' sum and any init container).
fn requests(pod: &Pod) -> (i64, i64) {
    let Some(spec) = pod.spec.as_ref() else { return (0, 0) };
    let of = |c: &k8s_openapi::api::core::v1::Container| -> (i64, i64) {
        let r = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        (
            r.and_then(|r| r.get("cpu")).map(cpu_millis).unwrap_or(0),
            r.and_then(|r| r.get("memory")).map(bytes).unwrap_or(0),
        )
    };
    let (mut cpu, mut mem) = spec.containers.iter().map(of).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    for c in spec.init_containers.iter().flatten() {
        let (c_cpu, c_mem) = of(c);
        cpu = cpu.max(c_cpu);
        mem = mem.max(c_mem);
    }
    (cpu, mem)
}

/// A CPU quantity in millicores.
pub fn cpu_millis(q: &Quantity) -> i64 {
    let s = q.0.trim();
    match s.strip_suffix('m') {
        Some(m) => m.parse().unwrap_or(0),
        None => s.parse::<f64>().map(|v| (v * 1000.0).round() as i64).unwrap_or(0),
    }
}

/// A memory quantity in bytes.
pub fn bytes(q: &Quantity) -> i64 {
    let s = q.0.trim();
    const UNITS: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    for (suffix, mult) in UNITS {
        if let Some(n) = s.strip_suffix(suffix) {
            return n.parse::<f64>().map(|v| (v * mult) as i64).unwrap_or(0);
        }
    }
    s.parse::<f64>().map(|v| v as i64).unwrap_or(0)
}

fn host_ports(pod: &Pod) -> Vec<(String, String, i32)> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let hp = p.host_port.filter(|h| *h > 0)?;
            Some((p.protocol.clone().unwrap_or_else(|| "TCP".into()), p.host_ip.clone().unwrap_or_default(), hp))
        })
        .collect()
}

/// What a node already runs, for fit and score.
#[derive(Default, Clone)]
struct Usage {
    cpu: i64,
    memory: i64,
    pods: i64,
    ports: HashSet<(String, String, i32)>,
    /// Pods per controller uid (a workload's spread).
    by_owner: HashMap<String, i64>,
}

fn owner_key(p: &Pod) -> Option<String> {
    controller_of(&p.metadata).map(|r| r.uid.clone())
}

/// The first filter a node fails, in kube-scheduler's plugin order.
fn filter(pod: &Pod, node: &Node, usage: &Usage) -> Result<(), Unfit> {
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
    let node_spec = node.spec.as_ref();
    if node_spec.and_then(|s| s.unschedulable).unwrap_or(false) {
        let cordon = Taint { key: TAINT_NODE_UNSCHEDULABLE.into(), effect: "NoSchedule".into(), ..Default::default() };
        if !tolerates(&tolerations, &cordon) {
            return Err(unresolvable("node(s) were unschedulable"));
        }
    }
    let taints = node_spec.and_then(|s| s.taints.clone()).unwrap_or_default();
    if taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .any(|t| !tolerates(&tolerations, t))
    {
        return Err(unresolvable("node(s) had untolerated taint(s)"));
    }
    if !affinity_matches(pod, node) {
        return Err(unresolvable("node(s) didn't match Pod's node affinity/selector"));
    }
    let wanted = host_ports(pod);
    let clash = wanted.iter().any(|(proto, ip, port)| {
        usage.ports.iter().any(|(p2, ip2, port2)| {
            p2 == proto
                && port2 == port
                && (ip.is_empty() || ip2.is_empty() || ip == ip2 || ip == "0.0.0.0" || ip2 == "0.0.0.0")
        })
    });
    if clash {
        return Err(Unfit {
            reasons: vec!["node(s) didn't have free ports for the requested pod ports".into()],
            resolvable: true,
        });
    }
    let alloc = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
    let (cpu, mem) = requests(pod);
    let mut reasons = Vec::new();
    if let Some(max) = alloc.and_then(|a| a.get("pods")).map(|q| q.0.parse::<i64>().unwrap_or(110))
        && usage.pods + 1 > max
    {
        reasons.push("Too many pods".to_string());
    }
    if cpu > 0
        && let Some(max) = alloc.and_then(|a| a.get("cpu")).map(cpu_millis)
        && usage.cpu + cpu > max
    {
        reasons.push("Insufficient cpu".into());
    }
    if mem > 0
        && let Some(max) = alloc.and_then(|a| a.get("memory")).map(bytes)
        && usage.memory + mem > max
    {
        reasons.push("Insufficient memory".into());
    }
    if reasons.is_empty() { Ok(()) } else { Err(Unfit { reasons, resolvable: true }) }
}

/// kube-scheduler's FitError text.
pub fn fit_error(total: usize, unfit: &[(String, bool)]) -> String {
    let histogram = |items: &mut dyn Iterator<Item = String>| -> String {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for r in items {
            *counts.entry(r).or_default() += 1;
        }
        let mut parts: Vec<String> = counts.into_iter().map(|(r, n)| format!("{n} {r}")).collect();
        parts.sort();
        parts.join(", ")
    };
    let reasons = histogram(&mut unfit.iter().map(|(r, _)| r.clone()));
    let preemption = histogram(&mut unfit.iter().map(|(_, resolvable)| {
        if *resolvable {
            "No preemption victims found for incoming pod".to_string()
        } else {
            "Preemption is not helpful for scheduling".to_string()
        }
    }));
    format!(
        "0/{total} nodes are available: {reasons}. no new claims to deallocate, preemption: 0/{total} nodes are available: {preemption}."
    )
}

/// What each node runs, kept as pods come and go, with the pods bound but not
/// yet seen bound ("assumed") counted on their node.
#[derive(Default)]
struct Placement {
    usage: HashMap<String, Usage>,
    assumed: HashMap<Key, String>,
}

impl Placement {
    fn node_of(&self, p: &Pod) -> Option<String> {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty())
            .or_else(|| self.assumed.get(&key_of(p)).cloned())
    }

    fn apply(&mut self, p: &Pod, sign: i64) {
        if matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")) {
            return;
        }
        let Some(node) = self.node_of(p) else { return };
        let u = self.usage.entry(node).or_default();
        let (cpu, mem) = requests(p);
        u.cpu += sign * cpu;
        u.memory += sign * mem;
        u.pods += sign;
        for port in host_ports(p) {
            if sign > 0 {
                u.ports.insert(port);
            } else {
                u.ports.remove(&port);
            }
        }
        if let Some(o) = owner_key(p) {
            let n = u.by_owner.entry(o.clone()).or_default();
            *n += sign;
            if *n <= 0 {
                u.by_owner.remove(&o);
            }
        }
    }

    fn changed(&mut self, old: Option<&Pod>, new: Option<&Pod>) {
        if let Some(o) = old {
            self.apply(o, -1);
        }
        match new {
            Some(n) => {
                if n.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|x| !x.is_empty()) {
                    self.assumed.remove(&key_of(n));
                }
                self.apply(n, 1);
            }
            None => {
                if let Some(o) = old {
                    self.assumed.remove(&key_of(o));
                }
            }
        }
    }
}

pub struct Scheduler {
    client: Client,
    pods: Arc<Informer<Pod>>,
    nodes: Store<Node>,
    queue: Arc<WorkQueue<Key>>,
    placement: Mutex<Placement>,
    /// Pods that fit nowhere, retried when the cluster changes.
    unschedulable: Mutex<HashSet<Key>>,
    recorder: Recorder,
}

/// A pod this scheduler should place.
fn wants_scheduling(p: &Pod) -> bool {
    let spec = p.spec.as_ref();
    spec.and_then(|s| s.node_name.as_deref()).is_none_or(str::is_empty)
        && spec.and_then(|s| s.scheduler_name.as_deref()).unwrap_or(SCHEDULER_NAME) == SCHEDULER_NAME
        && p.metadata.deletion_timestamp.is_none()
        && replicaset::is_active(p)
}

impl Scheduler {
    pub fn new(client: Client, pods: Arc<Informer<Pod>>, nodes: &Informer<Node>) -> Arc<Self> {
        let s = Arc::new(Scheduler {
            recorder: Recorder::new(client.clone(), SCHEDULER_NAME),
            client,
            pods: pods.clone(),
            nodes: nodes.store().clone(),
            queue: WorkQueue::new(),
            placement: Mutex::new(Placement::default()),
            unschedulable: Mutex::new(HashSet::new()),
        });
        let weak = Arc::downgrade(&s);
        pods.on_change(move |change| {
            let Some(me) = weak.upgrade() else { return };
            me.placement.lock().changed(change.before(), change.after());
            match change {
                Change::Added(p) | Change::Modified { new: p, .. } if wants_scheduling(p) => me.queue.add(key_of(p)),
                Change::Added(_) | Change::Modified { .. } => {}
                // Room freed: the waiting pods may fit now.
                Change::Deleted(_) => me.retry_unschedulable(),
            }
        });
        let weak = Arc::downgrade(&s);
        nodes.on_change(move |_| {
            if let Some(me) = weak.upgrade() {
                me.retry_unschedulable();
            }
        });
        s
    }

    fn retry_unschedulable(&self) {
        let waiting: Vec<Key> = self.unschedulable.lock().drain().collect();
        for k in waiting {
            self.queue.add(k);
        }
    }

    pub fn spawn(self: &Arc<Self>, stop: watch::Receiver<bool>) {
        // One worker: placements are decided one at a time against the same usage.
        let me = self.clone();
        kubesvc_runtime::run_workers(self.queue.clone(), 1, stop, move |key| {
            let me = me.clone();
            async move { me.schedule(&key).await }
        });
    }

    async fn schedule(&self, key: &Key) -> Result<(), Error> {
        let (ns, name) = key;
        let Some(pod) = self.pods.store().get(&ObjectRef::new(name).within(ns)) else { return Ok(()) };
        let nodes = self.nodes.state();
        let (feasible_names, unfit) = {
            let placement = self.placement.lock();
            if !wants_scheduling(&pod) || placement.assumed.contains_key(key) {
                return Ok(());
            }
            let empty = Usage::default();
            let mut feasible: Vec<(&Node, &Usage)> = Vec::new();
            let mut unfit: Vec<(String, bool)> = Vec::new();
            for n in &nodes {
                let u = placement.usage.get(&n.name_any()).unwrap_or(&empty);
                match filter(&pod, n, u) {
                    Ok(()) => feasible.push((n, u)),
                    Err(e) => unfit.extend(e.reasons.into_iter().map(|r| (r, e.resolvable))),
                }
            }
            let best = self.choose(&pod, &feasible);
            (best, unfit)
        };
        match feasible_names {
            Some(node) => self.bind(&pod, &node).await,
            None => self.unschedulable(&pod, &fit_error(nodes.len(), &unfit)).await,
        }
    }

    /// Spread a workload's pods, then prefer the least allocated node; ties at random.
    fn choose(&self, pod: &Pod, feasible: &[(&Node, &Usage)]) -> Option<String> {
        let owner = owner_key(pod);
        let (cpu, mem) = requests(pod);
        let score = |(n, u): &(&Node, &Usage)| -> (i64, i64, u32) {
            let same = owner.as_ref().and_then(|o| u.by_owner.get(o)).copied().unwrap_or(0);
            let alloc = n.status.as_ref().and_then(|s| s.allocatable.as_ref());
            let frac = |used: i64, max: Option<i64>| max.filter(|m| *m > 0).map_or(0, |m| (used * 1000) / m);
            let load = frac(u.cpu + cpu, alloc.and_then(|a| a.get("cpu")).map(cpu_millis))
                + frac(u.memory + mem, alloc.and_then(|a| a.get("memory")).map(bytes))
                + u.pods;
            (same, load, rand::random::<u32>())
        };
        feasible.iter().min_by_key(|c| score(c)).map(|(n, _)| n.name_any())
    }

    async fn bind(&self, pod: &Pod, node: &str) -> Result<(), Error> {
        let (ns, name) = key_of(pod);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                uid: pod.uid(),
                ..Default::default()
            },
            target: ObjectReference { kind: Some("Node".into()), name: Some(node.into()), ..Default::default() },
        };
        match api
            .create_subresource::<Binding, serde_json::Value>("binding", &name, &PostParams::default(), &binding)
            .await
        {
            Ok(_) => {}
            // Bound by someone else, or gone: nothing to do.
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        {
            // Count it on its node until the informer shows it bound (unless it already does).
            let mut placement = self.placement.lock();
            let seen_bound =
                self.pods.store().get(&ObjectRef::new(&name).within(&ns)).is_some_and(|p| {
                    p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty())
                });
            if !seen_bound {
                placement.assumed.insert((ns.clone(), name.clone()), node.to_string());
                placement.apply(pod, 1);
            }
        }
        let msg = format!("Successfully assigned {ns}/{name} to {node}");
        self.recorder.record(&reference(pod), EventType::Normal, "Scheduled", &msg).await;
        Ok(())
    }

    async fn unschedulable(&self, pod: &Pod, message: &str) -> Result<(), Error> {
        let (ns, name) = key_of(pod);
        self.unschedulable.lock().insert((ns.clone(), name.clone()));
        let shown = if message.len() > 1024 { format!("{} ...", &message[..1020]) } else { message.to_string() };
        self.recorder.record(&reference(pod), EventType::Warning, "FailedScheduling", &shown).await;
        let current = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
            .cloned();
        if current.as_ref().is_some_and(|c| c.status == "False" && c.message.as_deref() == Some(message)) {
            return Ok(());
        }
        let transition = current
            .filter(|c| c.status == "False")
            .and_then(|c| c.last_transition_time)
            .unwrap_or(Time(jiff::Timestamp::now()));
        let cond = PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some(message.into()),
            last_transition_time: Some(transition),
            ..Default::default()
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let patch = json!({"status": {"conditions": [cond]}});
        match api.patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        // Pods that fit nowhere are tried again at least every five minutes.
        self.queue.add_after((ns, name), Duration::from_secs(300));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubesvc_runtime::wellknown::TAINT_NODE_NOT_READY;

    #[test]
    fn fit_error_text_is_kube_schedulers() {
        let unfit = vec![
            ("node(s) had untolerated taint(s)".to_string(), false),
            ("node(s) didn't match Pod's node affinity/selector".to_string(), false),
            ("node(s) didn't match Pod's node affinity/selector".to_string(), false),
        ];
        assert_eq!(
            fit_error(3, &unfit),
            "0/3 nodes are available: 1 node(s) had untolerated taint(s), 2 node(s) didn't match Pod's node affinity/selector. no new claims to deallocate, preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
        assert_eq!(
            fit_error(1, &[("Insufficient cpu".into(), true)]),
            "0/1 nodes are available: 1 Insufficient cpu. no new claims to deallocate, preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn tolerations() {
        let taint = Taint { key: TAINT_NODE_NOT_READY.into(), effect: "NoSchedule".into(), ..Default::default() };
        assert!(!tolerates(&[], &taint));
        let exists = Toleration {
            key: Some(TAINT_NODE_NOT_READY.into()),
            operator: Some("Exists".into()),
            ..Default::default()
        };
        assert!(tolerates(&[exists], &taint));
        let everything = Toleration { operator: Some("Exists".into()), ..Default::default() };
        assert!(tolerates(&[everything], &taint));
        let other_effect = Toleration {
            key: Some(TAINT_NODE_NOT_READY.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            ..Default::default()
        };
        assert!(!tolerates(&[other_effect], &taint));
        assert_eq!(cpu_millis(&Quantity("1.5".into())), 1500);
        assert_eq!(cpu_millis(&Quantity("250m".into())), 250);
        assert_eq!(bytes(&Quantity("1Gi".into())), 1073741824);
    }
}
