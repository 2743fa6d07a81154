//! Node health, as Kubernetes' node lifecycle and taint eviction controllers
//! keep it: a node whose kubelet stops renewing its Lease (and posting its
//! Ready condition) for the grace period turns Unknown; its pods turn
//! not-ready, so their endpoints leave every Service; taints follow the
//! conditions; pods that do not tolerate a NoExecute taint are evicted after
//! their toleration (300 s by default).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::{Notify, watch};

use crate::scheduler::tolerates;
use crate::{Error, Options};
use kubesvc_runtime::events::{EventType, Recorder, reference};
use kubesvc_runtime::wellknown::{
    NAMESPACE_NODE_LEASE, TAINT_NODE_DISK_PRESSURE, TAINT_NODE_MEMORY_PRESSURE, TAINT_NODE_NETWORK_UNAVAILABLE,
    TAINT_NODE_NOT_READY as TAINT_NOT_READY, TAINT_NODE_PID_PRESSURE, TAINT_NODE_UNREACHABLE as TAINT_UNREACHABLE,
    TAINT_NODE_UNSCHEDULABLE,
};
use kubesvc_runtime::{Informer, ObjectKey, key_of, pod};

/// How often node health is looked at (`--node-monitor-period`).
pub const MONITOR_PERIOD: Duration = Duration::from_secs(5);
/// A node that never reported Ready gets this long (`--node-startup-grace-period`).
const STARTUP_GRACE: Duration = Duration::from_secs(60);
const CONDITIONS: &[&str] = &["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// Pods (namespace, name) by the node they are bound to.
type PodsByNode = HashMap<String, HashSet<ObjectKey>>;

/// The last sign of life seen from a node, by this controller's clock.
struct Probe {
    heartbeat: Option<Time>,
    renew: Option<jiff::Timestamp>,
    at: Instant,
}

pub struct Controller {
    client: Client,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    grace: Duration,
    probes: Mutex<HashMap<String, Probe>>,
    /// Pods on a NoExecute-tainted node: when each is due for eviction.
    evictions: Mutex<HashMap<(String, String), Instant>>,
    /// Pods by the node they are bound to.
    on_node: Arc<Mutex<PodsByNode>>,
    node_events: Recorder,
    eviction_events: Recorder,
    /// A node changed: its taints follow its conditions at once, as Kubernetes'
    /// tainting pass runs on node updates, not only every monitor period.
    node_changed: Arc<Notify>,
}

fn condition<'a>(n: &'a Node, ty: &str) -> Option<&'a NodeCondition> {
    n.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == ty)
}

/// The Ready condition's status; `None` for a node that never reported one.
fn ready_status(n: &Node) -> Option<&str> {
    condition(n, "Ready").map(|c| c.status.as_str())
}

/// The NoSchedule taints a node's conditions call for (TaintNodesByCondition).
fn condition_taints(n: &Node) -> Vec<&'static str> {
    let mut keys = Vec::new();
    match ready_status(n) {
        Some("False") => keys.push(TAINT_NOT_READY),
        Some("True") | None => {}
        Some(_) => keys.push(TAINT_UNREACHABLE),
    }
    for (ty, key) in [
        ("MemoryPressure", TAINT_NODE_MEMORY_PRESSURE),
        ("DiskPressure", TAINT_NODE_DISK_PRESSURE),
        ("PIDPressure", TAINT_NODE_PID_PRESSURE),
        ("NetworkUnavailable", TAINT_NODE_NETWORK_UNAVAILABLE),
    ] {
        if condition(n, ty).is_some_and(|c| c.status == "True") {
            keys.push(key);
        }
    }
    if n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false) {
        keys.push(TAINT_NODE_UNSCHEDULABLE);
    }
    keys
}

const CONTROLLER_NO_SCHEDULE: &[&str] = &[
    TAINT_NOT_READY,
    TAINT_UNREACHABLE,
    TAINT_NODE_MEMORY_PRESSURE,
    TAINT_NODE_DISK_PRESSURE,
    TAINT_NODE_PID_PRESSURE,
    TAINT_NODE_NETWORK_UNAVAILABLE,
    TAINT_NODE_UNSCHEDULABLE,
];

/// The taints a node should carry: others' untouched, ours from its conditions.
fn desired_taints(n: &Node, all_down: bool) -> Vec<Taint> {
    let now = Time(jiff::Timestamp::now());
    let current = n.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let ours = |t: &Taint| {
        (t.effect == "NoSchedule" && CONTROLLER_NO_SCHEDULE.contains(&t.key.as_str()))
            || (t.effect == "NoExecute" && (t.key == TAINT_NOT_READY || t.key == TAINT_UNREACHABLE))
    };
    let mut out: Vec<Taint> = current.iter().filter(|t| !ours(t)).cloned().collect();
    let keep_or_new = |key: &str, effect: &str| -> Taint {
        current.iter().find(|t| t.key == key && t.effect == effect).cloned().unwrap_or(Taint {
            key: key.into(),
            effect: effect.into(),
            time_added: Some(now.clone()),
            value: None,
        })
    };
    for key in condition_taints(n) {
        out.push(keep_or_new(key, "NoSchedule"));
    }
    // NoExecute follows Ready; not when every node is down (nothing to move pods to).
    if !all_down {
        match ready_status(n) {
            Some("False") => out.push(keep_or_new(TAINT_NOT_READY, "NoExecute")),
            Some("True") | None => {}
            Some(_) => out.push(keep_or_new(TAINT_UNREACHABLE, "NoExecute")),
        }
    }
    out
}

impl Controller {
    pub fn new(
        client: Client,
        nodes: &Informer<Node>,
        leases: &Informer<Lease>,
        pods: &Informer<Pod>,
        opts: &Options,
    ) -> Arc<Self> {
        let node_changed = Arc::new(Notify::new());
        let wake = node_changed.clone();
        nodes.on_change(move |_| wake.notify_one());
        let on_node: Arc<Mutex<PodsByNode>> = Arc::default();
        let index = on_node.clone();
        pods.on_change(move |change| {
            let place = |p: &Pod| -> Option<(String, ObjectKey)> { Some((pod::node_name(p)?.to_string(), key_of(p))) };
            let mut idx = index.lock();
            if let Some((node, key)) = change.before().and_then(place)
                && let Some(set) = idx.get_mut(&node)
            {
                set.remove(&key);
                if set.is_empty() {
                    idx.remove(&node);
                }
            }
            if let Some((node, key)) = change.after().and_then(place) {
                idx.entry(node).or_default().insert(key);
            }
        });
        Arc::new(Controller {
            on_node,
            node_events: Recorder::new(client.clone(), "node-controller"),
            eviction_events: Recorder::new(client.clone(), "taint-eviction-controller"),
            client,
            nodes: nodes.store().clone(),
            leases: leases.store().clone(),
            pods: pods.store().clone(),
            grace: opts.node_monitor_grace_period,
            probes: Mutex::new(HashMap::new()),
            evictions: Mutex::new(HashMap::new()),
            node_changed,
        })
    }

    pub fn spawn(self: &Arc<Self>, stop: watch::Receiver<bool>) {
        let me = self.clone();
        let mut stop = stop;
        tokio::spawn(async move {
            loop {
                if let Err(e) = me.monitor().await {
                    tracing::debug!(error = %e, "node health pass failed");
                }
                tokio::select! {
                    _ = tokio::time::sleep(MONITOR_PERIOD.min(me.grace / 2).max(Duration::from_millis(200))) => {}
                    _ = me.node_changed.notified() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        });
    }

    /// Updates the node's probe time from its heartbeat and Lease; true if it is overdue.
    fn overdue(&self, n: &Node) -> bool {
        let name = n.name_any();
        let heartbeat = condition(n, "Ready").and_then(|c| c.last_heartbeat_time.clone());
        let renew = self
            .leases
            .get(&ObjectRef::new(&name).within(NAMESPACE_NODE_LEASE))
            .and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0));
        let mut probes = self.probes.lock();
        let p = probes.entry(name).or_insert_with(|| Probe { heartbeat: heartbeat.clone(), renew, at: Instant::now() });
        if p.heartbeat != heartbeat || renew.is_some_and(|r| p.renew.is_none_or(|old| r > old)) {
            p.heartbeat = heartbeat;
            p.renew = renew.or(p.renew);
            p.at = Instant::now();
        }
        let grace = if condition(n, "Ready").is_none() { STARTUP_GRACE.max(self.grace) } else { self.grace };
        p.at.elapsed() > grace
    }

    async fn monitor(&self) -> Result<(), Error> {
        let nodes = self.nodes.state();
        let names: HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
        self.probes.lock().retain(|n, _| names.contains(n));
        let api: Api<Node> = Api::all(self.client.clone());
        for n in &nodes {
            if self.overdue(n) && ready_status(n) != Some("Unknown") {
                self.mark_unknown(&api, n).await?;
            }
        }
        // Taints, against the freshest state.
        let nodes = self.nodes.state();
        // Pods of every node that is not ready are not ready (those bound since too).
        for n in nodes.iter().filter(|n| matches!(ready_status(n), Some("False" | "Unknown"))) {
            self.mark_pods_not_ready(&n.name_any()).await?;
        }
        let all_down = !nodes.is_empty() && nodes.iter().all(|n| ready_status(n) != Some("True"));
        for n in &nodes {
            let want = desired_taints(n, all_down);
            let have = n.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
            let key = |t: &Taint| (t.key.clone(), t.effect.clone(), t.value.clone());
            let mut a: Vec<_> = want.iter().map(key).collect();
            let mut b: Vec<_> = have.iter().map(key).collect();
            a.sort();
            b.sort();
            if a != b {
                let patch = json!({"metadata": {"resourceVersion": n.resource_version()}, "spec": {"taints": want}});
                match api.patch(&n.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
                    Ok(_) | Err(kube::Error::Api(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        self.evict(&nodes).await
    }

    /// The kubelet went quiet: its conditions turn Unknown and its pods not ready.
    async fn mark_unknown(&self, api: &Api<Node>, n: &Node) -> Result<(), Error> {
        let now = Time(jiff::Timestamp::now());
        let mut conditions = n.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        for ty in CONDITIONS {
            match conditions.iter_mut().find(|c| c.type_ == *ty) {
                Some(c) if c.status != "Unknown" => {
                    c.status = "Unknown".into();
                    c.reason = Some("NodeStatusUnknown".into());
                    c.message = Some("Kubelet stopped posting node status.".into());
                    c.last_transition_time = Some(now.clone());
                }
                Some(_) => {}
                None => conditions.push(NodeCondition {
                    type_: (*ty).into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: n.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(now.clone()),
                }),
            }
        }
        let patch =
            json!({"metadata": {"resourceVersion": n.resource_version()}, "status": {"conditions": conditions}});
        match api.patch_status(&n.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(_) => {}
            // Changed meanwhile: the next pass looks again.
            Err(kube::Error::Api(e)) if e.code == 409 => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let name = n.name_any();
        let msg = format!("Node {name} status is now: NodeNotReady");
        self.node_events.record(&reference(n), EventType::Normal, "NodeNotReady", &msg).await;
        Ok(())
    }

    async fn mark_pods_not_ready(&self, node: &str) -> Result<(), Error> {
        let now = Time(jiff::Timestamp::now());
        for p in self.pods.state().iter().filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
        {
            let mut conditions = p.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
            let Some(ready) = conditions.iter_mut().find(|c| c.type_ == "Ready") else { continue };
            if ready.status == "False" {
                continue;
            }
            ready.status = "False".into();
            ready.last_transition_time = Some(now.clone());
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &p.namespace().unwrap_or_default());
            let patch =
                json!({"metadata": {"resourceVersion": p.resource_version()}, "status": {"conditions": conditions}});
            match api.patch_status(&p.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
                Ok(_) => {
                    self.node_events
                        .record(&reference(&**p), EventType::Warning, "NodeNotReady", "Node is not ready")
                        .await;
                }
                Err(kube::Error::Api(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Taint-based eviction: pods that do not tolerate a node's NoExecute taint
    /// go, at once or after their tolerationSeconds.
    async fn evict(&self, nodes: &[Arc<Node>]) -> Result<(), Error> {
        let tainted: BTreeMap<String, Vec<Taint>> = nodes
            .iter()
            .filter_map(|n| {
                let t: Vec<Taint> =
                    n.spec.as_ref()?.taints.clone()?.into_iter().filter(|t| t.effect == "NoExecute").collect();
                (!t.is_empty()).then(|| (n.name_any(), t))
            })
            .collect();
        let mut due = Vec::new();
        {
            let mut evictions = self.evictions.lock();
            let mut still = HashSet::new();
            let keys: Vec<((String, String), &Vec<Taint>)> = {
                let idx = self.on_node.lock();
                tainted
                    .iter()
                    .flat_map(|(node, taints)| idx.get(node).into_iter().flatten().map(move |k| (k.clone(), taints)))
                    .collect()
            };
            let candidates = keys
                .into_iter()
                .filter_map(|((ns, name), t)| self.pods.get(&ObjectRef::new(&name).within(&ns)).map(|p| (p, t)));
            for (p, taints) in candidates {
                if p.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let key = (p.namespace().unwrap_or_default(), p.name_any());
                let tolerations = p.spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
                // The shortest toleration among the taints; none tolerating one means now.
                let mut wait: Option<Option<u64>> = Some(None);
                for t in taints {
                    let used: Vec<_> =
                        tolerations.iter().filter(|tol| tolerates(std::slice::from_ref(tol), t)).collect();
                    if used.is_empty() {
                        wait = None;
                        break;
                    }
                    let secs = used.iter().filter_map(|tol| tol.toleration_seconds).map(|s| s.max(0) as u64).min();
                    if let Some(s) = secs {
                        wait = Some(Some(wait.flatten().map_or(s, |w| w.min(s))));
                    }
                }
                let deadline = match wait {
                    None => Some(Instant::now()),
                    Some(Some(s)) => {
                        Some(*evictions.entry(key.clone()).or_insert_with(|| Instant::now() + Duration::from_secs(s)))
                    }
                    Some(None) => None,
                };
                if let Some(d) = deadline {
                    still.insert(key.clone());
                    if d <= Instant::now() {
                        due.push(p.clone());
                    }
                }
            }
            evictions.retain(|k, _| still.contains(k));
        }
        for p in due {
            let (ns, name) = (p.namespace().unwrap_or_default(), p.name_any());
            let msg = format!("Marking for deletion Pod {ns}/{name}");
            self.eviction_events.record(&reference(&*p), EventType::Normal, "TaintManagerEviction", &msg).await;
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            let cond = json!({"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
                "message": "Taint manager: deleting due to NoExecute taint", "lastTransitionTime": Time(jiff::Timestamp::now())});
            let _ = api
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Strategic(json!({"status": {"conditions": [cond]}})),
                )
                .await;
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => return Err(e.into()),
            }
            self.evictions.lock().remove(&(ns, name));
        }
        Ok(())
    }
}
