//! The ReplicaSet controller: as many active pods as `spec.replicas`,
//! created from the template in slow-start batches, the least valuable
//! deleted first, orphans adopted and non-matching pods released; status
//! counts ready and available pods.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{DeleteParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;

use crate::Error;
use crate::claim::{self, Claim, controller_of};
use crate::expectations::Expectations;
use crate::ownerindex::OwnerIndex;
use kubesvc_runtime::Informer;
use kubesvc_runtime::events::{EventType, Recorder, reference};
use kubesvc_runtime::pod;
use kubesvc_runtime::selector::{self, Labels};
use kubesvc_runtime::{Change, ObjectKey, WorkQueue, key_of};

/// The most pods one sync creates or deletes.
pub const BURST: usize = 500;
/// `controller.kubernetes.io/pod-deletion-cost`.
pub const ANNOTATION_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

type Key = ObjectKey;

fn key_str(k: &Key) -> String {
    format!("{}/{}", k.0, k.1)
}

/// Not finished and not being deleted.
pub fn is_active(p: &Pod) -> bool {
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed")) && p.metadata.deletion_timestamp.is_none()
}

/// Ready for at least `min_ready` seconds at `now`.
pub fn is_available(p: &Pod, min_ready: i32, now: jiff::Timestamp) -> bool {
    if !pod::is_ready(p) {
        return false;
    }
    if min_ready <= 0 {
        return true;
    }
    pod::ready_since(p)
        .and_then(|t| t.0.checked_add(jiff::SignedDuration::from_secs(i64::from(min_ready))).ok())
        .is_some_and(|t| t < now)
}

fn max_restarts(p: &Pod) -> (i32, i32) {
    let status = p.status.as_ref();
    let max = |list: Option<&Vec<k8s_openapi::api::core::v1::ContainerStatus>>| {
        list.into_iter().flatten().map(|c| c.restart_count).max().unwrap_or(0)
    };
    (
        max(status.and_then(|s| s.container_statuses.as_ref())),
        max(status.and_then(|s| s.init_container_statuses.as_ref())),
    )
}

/// Whole powers of two of the time since `t` (Kubernetes' logarithmic scale-down buckets).
fn log_bucket(t: Option<&Time>, now: jiff::Timestamp) -> i64 {
    match t {
        Some(t) => {
            let ns = now.duration_since(t.0).as_nanos().max(1) as f64;
            ns.log2().floor() as i64
        }
        None => i64::MIN,
    }
}

/// Kubernetes' order for deleting pods: the first sorts first.
pub fn deletion_order(a: &Pod, b: &Pod, rank: &dyn Fn(&Pod) -> usize, now: jiff::Timestamp) -> Ordering {
    let node = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty());
    let phase = |p: &Pod| match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 3,
    };
    let cost = |p: &Pod| p.annotations().get(ANNOTATION_DELETION_COST).and_then(|v| v.parse::<i32>().ok()).unwrap_or(0);
    let uid = |p: &Pod| p.uid().unwrap_or_default();
    node(a)
        .cmp(&node(b))
        .then_with(|| phase(a).cmp(&phase(b)))
        .then_with(|| pod::is_ready(a).cmp(&pod::is_ready(b)))
        .then_with(|| cost(a).cmp(&cost(b)))
        .then_with(|| rank(b).cmp(&rank(a)))
        .then_with(|| {
            if pod::is_ready(a) && pod::is_ready(b) {
                // More recently ready first: a smaller time since.
                let (ta, tb) = (pod::ready_since(a), pod::ready_since(b));
                log_bucket(ta.as_ref(), now).cmp(&log_bucket(tb.as_ref(), now)).then_with(|| uid(a).cmp(&uid(b)))
            } else {
                Ordering::Equal
            }
        })
        .then_with(|| max_restarts(b).cmp(&max_restarts(a)))
        .then_with(|| {
            let (ca, cb) = (a.metadata.creation_timestamp.as_ref(), b.metadata.creation_timestamp.as_ref());
            log_bucket(ca, now).cmp(&log_bucket(cb, now)).then_with(|| uid(a).cmp(&uid(b)))
        })
}

/// A pod for `rs` from its template.
pub fn pod_from_template(rs: &ReplicaSet) -> Option<Pod> {
    let template = rs.spec.template.as_ref()?;
    let meta = template.metadata.clone().unwrap_or_default();
    let name = rs.name_any();
    let generate_name = if name.len() < 63 - 5 { format!("{name}-") } else { name };
    Some(Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: rs.namespace(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![claim::controller_ref(rs)]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    })
}

pub struct Controller {
    client: Client,
    sets: Arc<Informer<ReplicaSet>>,
    pods: Arc<OwnerIndex<Pod>>,
    set_index: Arc<OwnerIndex<ReplicaSet>>,
    queue: Arc<WorkQueue<Key>>,
    expectations: Expectations,
    recorder: Recorder,
}

fn selector_of(rs: &ReplicaSet) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector> {
    Some(&rs.spec.selector)
}

impl Controller {
    pub fn new(
        client: Client,
        sets: Arc<Informer<ReplicaSet>>,
        pods_informer: &Informer<Pod>,
        set_index: Arc<OwnerIndex<ReplicaSet>>,
    ) -> Arc<Self> {
        let c = Arc::new(Controller {
            recorder: Recorder::new(client.clone(), "replicaset-controller"),
            client,
            sets: sets.clone(),
            pods: OwnerIndex::attach(pods_informer),
            set_index,
            queue: WorkQueue::new(),
            expectations: Expectations::default(),
        });
        let weak = Arc::downgrade(&c);
        sets.on_change(move |change| {
            let Some(me) = weak.upgrade() else { return };
            if let Change::Deleted(o) = change {
                me.expectations.forget(&key_str(&key_of(o)));
            }
            me.queue.add(key_of(change.object()));
        });
        let weak = Arc::downgrade(&c);
        pods_informer.on_change(move |change| {
            if let Some(me) = weak.upgrade() {
                me.pod_changed(change);
            }
        });
        c
    }

    /// Pods by controller, shared with the Deployment controller.
    pub fn pod_index(&self) -> Arc<OwnerIndex<Pod>> {
        self.pods.clone()
    }

    /// The ReplicaSet a controller reference names, if it is that very one.
    fn owner_of(&self, ns: &str, meta: &ObjectMeta) -> Option<Arc<ReplicaSet>> {
        let r = controller_of(meta).filter(|r| r.kind == "ReplicaSet")?;
        self.sets
            .store()
            .get(&ObjectRef::new(&r.name).within(ns))
            .filter(|rs| rs.uid().as_deref() == Some(r.uid.as_str()))
    }

    /// Every ReplicaSet of `ns` whose selector matches `labels`.
    fn matching(&self, ns: &str, labels: &Labels) -> Vec<Key> {
        self.sets
            .store()
            .state()
            .iter()
            .filter(|rs| rs.namespace().as_deref() == Some(ns))
            .filter(|rs| selector_of(rs).is_some_and(|s| !selector::is_empty(s) && selector::matches(s, labels)))
            .map(|rs| key_of(&**rs))
            .collect()
    }

    fn pod_changed(&self, change: Change<'_, Pod>) {
        let obj = change.object();
        let ns = obj.namespace().unwrap_or_default();
        let pod_key = key_str(&key_of(obj));
        match change {
            Change::Added(p) => {
                if let Some(rs) = self.owner_of(&ns, &p.metadata) {
                    let k = key_of(&*rs);
                    if p.metadata.deletion_timestamp.is_some() {
                        self.expectations.deletion_observed(&key_str(&k), &pod_key);
                    } else {
                        self.expectations.creation_observed(&key_str(&k));
                    }
                    self.queue.add(k);
                } else if controller_of(&p.metadata).is_none() {
                    for k in self.matching(&ns, p.labels()) {
                        self.queue.add(k);
                    }
                }
            }
            Change::Modified { old: o, new: p } => {
                let owners = [self.owner_of(&ns, &o.metadata), self.owner_of(&ns, &p.metadata)];
                if o.metadata.deletion_timestamp.is_none()
                    && p.metadata.deletion_timestamp.is_some()
                    && let Some(rs) = &owners[1]
                {
                    self.expectations.deletion_observed(&key_str(&key_of(&**rs)), &pod_key);
                }
                for rs in owners.iter().flatten() {
                    self.queue.add(key_of(&**rs));
                }
                let relabelled = o.labels() != p.labels() || controller_of(&o.metadata) != controller_of(&p.metadata);
                if relabelled && controller_of(&p.metadata).is_none() {
                    for k in self.matching(&ns, p.labels()) {
                        self.queue.add(k);
                    }
                }
            }
            Change::Deleted(o) => {
                if let Some(rs) = self.owner_of(&ns, &o.metadata) {
                    let k = key_of(&*rs);
                    self.expectations.deletion_observed(&key_str(&k), &pod_key);
                    self.queue.add(k);
                }
            }
        }
    }

    pub fn spawn(self: &Arc<Self>, workers: usize, stop: watch::Receiver<bool>) {
        let me = self.clone();
        kubesvc_runtime::run_workers(self.queue.clone(), workers, stop, move |key| {
            let me = me.clone();
            async move { me.sync(&key).await }
        });
    }

    /// Claims the pods of `rs`: its own that still match, and matching orphans.
    async fn claim_pods(&self, rs: &ReplicaSet, api: &Api<Pod>) -> Result<Vec<Arc<Pod>>, Error> {
        let ns = rs.namespace().unwrap_or_default();
        let uid = rs.uid().unwrap_or_default();
        let deleting = rs.metadata.deletion_timestamp.is_some();
        let sel = selector_of(rs).cloned().unwrap_or_default();
        let mut claimed = Vec::new();
        let mut checked_owner = false;
        let candidates = self.pods.controlled_by(&uid).into_iter().chain(self.pods.orphans(&ns));
        for pod in candidates {
            let matches = !selector::is_empty(&sel) && selector::matches(&sel, pod.labels());
            match claim::decide(&pod.metadata, &uid, deleting, matches) {
                Claim::Keep => claimed.push(pod),
                Claim::Release => claim::release(api, &*pod, &uid).await?,
                Claim::Adopt if is_active(&pod) => {
                    if !checked_owner {
                        // Only a live owner adopts: the cache may hold one deleted meanwhile.
                        let sets: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &ns);
                        let live = sets.get_opt(&rs.name_any()).await?;
                        if live.is_none_or(|l| l.uid() != rs.uid() || l.metadata.deletion_timestamp.is_some()) {
                            return Err(Error::Other(format!(
                                "can't adopt Pod {ns}/{} ({}): the ReplicaSet is gone or being deleted",
                                pod.name_any(),
                                pod.uid().unwrap_or_default()
                            )));
                        }
                        checked_owner = true;
                    }
                    match claim::adopt(api, &*pod, rs).await {
                        Ok(p) => claimed.push(Arc::new(p)),
                        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 422 => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                _ => {}
            }
        }
        Ok(claimed)
    }

    async fn sync(&self, key: &Key) -> Result<(), Error> {
        let (ns, name) = key;
        let Some(rs) = self.sets.store().get(&ObjectRef::new(name).within(ns)) else {
            self.expectations.forget(&key_str(key));
            return Ok(());
        };
        let may_act = self.expectations.satisfied(&key_str(key));
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let claimed = self.claim_pods(&rs, &api).await?;
        let (active, others): (Vec<Arc<Pod>>, Vec<Arc<Pod>>) = claimed.into_iter().partition(|p| is_active(p));
        let terminating = others
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some())
            .filter(|p| !matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")))
            .count();
        let mut manage_err = None;
        if may_act
            && rs.metadata.deletion_timestamp.is_none()
            && let Err(e) = self.manage(&rs, &active, &api).await
        {
            manage_err = Some(e);
        }
        let requeue = self.update_status(&rs, &active, terminating, manage_err.as_ref()).await?;
        if let Some(after) = requeue {
            self.queue.add_after(key.clone(), after);
        }
        match manage_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn manage(&self, rs: &ReplicaSet, active: &[Arc<Pod>], api: &Api<Pod>) -> Result<(), Error> {
        let key = key_str(&key_of(rs));
        let want = rs.spec.replicas.unwrap_or(1).max(0) as usize;
        let reference = reference(rs);
        if active.len() < want {
            let n = (want - active.len()).min(BURST);
            let Some(pod) = pod_from_template(rs) else {
                return Err(Error::Other("unable to create pods, no template".into()));
            };
            if pod.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
                return Err(Error::Other("unable to create pods, no labels".into()));
            }
            self.expectations.expect_creations(&key, n as i64);
            // Slow start: 1, 2, 4, ... at once, stopping at the first batch with a failure.
            let (mut done, mut batch) = (0, 1);
            let pp = PostParams::default();
            while done < n {
                let size = batch.min(n - done);
                let results = futures::future::join_all((0..size).map(|_| api.create(&pp, &pod))).await;
                let mut failed = None;
                for r in results {
                    match r {
                        Ok(p) => {
                            let msg = format!("Created pod: {}", p.name_any());
                            self.recorder.record(&reference, EventType::Normal, "SuccessfulCreate", &msg).await;
                        }
                        // The namespace is going away: not a failure.
                        Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains("being terminated") => {
                            self.expectations.lower_creations(&key, 1);
                        }
                        Err(e) => {
                            self.expectations.lower_creations(&key, 1);
                            let msg = format!("Error creating: {e}");
                            self.recorder.record(&reference, EventType::Warning, "FailedCreate", &msg).await;
                            failed = Some(e);
                        }
                    }
                }
                done += size;
                if let Some(e) = failed {
                    self.expectations.lower_creations(&key, (n - done) as i64);
                    return Err(e.into());
                }
                batch *= 2;
            }
        } else if active.len() > want {
            let n = (active.len() - want).min(BURST);
            let victims = self.choose_victims(rs, active, n);
            self.expectations.expect_deletions(&key, victims.iter().map(|p| key_str(&key_of(&**p))));
            let results = futures::future::join_all(
                victims.iter().map(|p| async move { (p, api.delete(&p.name_any(), &DeleteParams::default()).await) }),
            )
            .await;
            let mut failed = None;
            for (p, r) in results {
                match r {
                    Ok(_) => {
                        let msg = format!("Deleted pod: {}", p.name_any());
                        self.recorder.record(&reference, EventType::Normal, "SuccessfulDelete", &msg).await;
                    }
                    Err(kube::Error::Api(e)) if e.code == 404 => {
                        self.expectations.deletion_observed(&key, &key_str(&key_of(&**p)));
                    }
                    Err(e) => {
                        self.expectations.deletion_observed(&key, &key_str(&key_of(&**p)));
                        let msg = format!("Error deleting: {e}");
                        self.recorder.record(&reference, EventType::Warning, "FailedDelete", &msg).await;
                        failed = Some(e);
                    }
                }
            }
            if let Some(e) = failed {
                return Err(Error::Other(format!("unable to delete pods: {e}")));
            }
        }
        Ok(())
    }

    /// The `n` pods to delete, ranked as Kubernetes ranks them (siblings under
    /// the same Deployment count as related pods on a node).
    fn choose_victims(&self, rs: &ReplicaSet, active: &[Arc<Pod>], n: usize) -> Vec<Arc<Pod>> {
        if n >= active.len() {
            return active.to_vec();
        }
        let mut related: Vec<Arc<Pod>> = match controller_of(&rs.metadata) {
            Some(owner) => self
                .set_index
                .controlled_by(&owner.uid)
                .iter()
                .flat_map(|s| self.pods.controlled_by(&s.uid().unwrap_or_default()))
                .filter(|p| is_active(p))
                .collect(),
            None => active.to_vec(),
        };
        if related.is_empty() {
            related = active.to_vec();
        }
        let mut on_node: HashMap<String, usize> = HashMap::new();
        for p in &related {
            if let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()) {
                *on_node.entry(node).or_default() += 1;
            }
        }
        let rank = |p: &Pod| {
            p.spec.as_ref().and_then(|s| s.node_name.as_deref()).and_then(|n| on_node.get(n).copied()).unwrap_or(0)
        };
        let now = jiff::Timestamp::now();
        let mut sorted = active.to_vec();
        sorted.sort_by(|a, b| deletion_order(a, b, &rank, now));
        sorted.truncate(n);
        sorted
    }

    /// Writes the status if it changed; returns when to look again for availability.
    async fn update_status(
        &self,
        rs: &ReplicaSet,
        active: &[Arc<Pod>],
        terminating: usize,
        manage_err: Option<&Error>,
    ) -> Result<Option<Duration>, Error> {
        let spec = &rs.spec;
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let template_labels: Labels =
            spec.template.as_ref().and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone()).unwrap_or_default();
        let now = jiff::Timestamp::now();
        let ready = active.iter().filter(|p| pod::is_ready(p)).count() as i32;
        let available = active.iter().filter(|p| is_available(p, min_ready, now)).count() as i32;
        let fully_labeled =
            active.iter().filter(|p| template_labels.iter().all(|(k, v)| p.labels().get(k) == Some(v))).count() as i32;
        let old = rs.status.clone().unwrap_or_default();
        let mut conditions: Vec<ReplicaSetCondition> = old.conditions.clone().unwrap_or_default();
        let has_failure = conditions.iter().any(|c| c.type_.as_deref() == Some("ReplicaFailure"));
        match manage_err {
            Some(e) if !has_failure => {
                let want = spec.replicas.unwrap_or(1) as usize;
                let reason = if active.len() < want { "FailedCreate" } else { "FailedDelete" };
                conditions.push(ReplicaSetCondition {
                    type_: Some("ReplicaFailure".into()),
                    status: Some("True".into()),
                    reason: Some(reason.into()),
                    message: Some(e.to_string()),
                    last_transition_time: Some(Time(now)),
                });
            }
            None => conditions.retain(|c| c.type_.as_deref() != Some("ReplicaFailure")),
            _ => {}
        }
        let status = ReplicaSetStatus {
            replicas: active.len() as i32,
            fully_labeled_replicas: Some(fully_labeled),
            ready_replicas: Some(ready),
            available_replicas: Some(available),
            terminating_replicas: Some(terminating as i32),
            observed_generation: rs.metadata.generation,
            conditions: (!conditions.is_empty()).then_some(conditions),
        };
        let normalize = |s: &ReplicaSetStatus| {
            let mut s = s.clone();
            for f in [&mut s.fully_labeled_replicas, &mut s.ready_replicas, &mut s.available_replicas] {
                if *f == Some(0) {
                    *f = None;
                }
            }
            s
        };
        if normalize(&old) != normalize(&status) {
            let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &rs.namespace().unwrap_or_default());
            let mut body = rs.clone();
            body.status = Some(status);
            match api.replace_status(&rs.name_any(), &PostParams::default(), &body).await {
                Ok(_) => {}
                // Changed meanwhile: the next sync writes it.
                Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {
                    return Ok(Some(Duration::from_millis(10)));
                }
                Err(e) => return Err(e.into()),
            }
        }
        if min_ready > 0 && ready != available {
            // Look again when the next pod becomes available.
            let next = active
                .iter()
                .filter(|p| pod::is_ready(p) && !is_available(p, min_ready, now))
                .filter_map(|p| pod::ready_since(p))
                .filter_map(|t| t.0.checked_add(jiff::SignedDuration::from_secs(i64::from(min_ready))).ok())
                .map(|t| t.duration_since(now))
                .min()
                .and_then(|d| Duration::try_from(d).ok())
                .unwrap_or(Duration::from_secs(min_ready as u64));
            return Ok(Some(next + Duration::from_millis(10)));
        }
        Ok(None)
    }
}
