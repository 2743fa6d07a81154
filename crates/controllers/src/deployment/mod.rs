//! The Deployment controller: a ReplicaSet per template, rolled out by the
//! RollingUpdate or Recreate strategy, with revisions, proportional scaling,
//! history cleanup and status conditions as Kubernetes keeps them (see
//! [`util`] for the arithmetic).

pub mod util;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;

use crate::Error;
use crate::claim::{self, Claim, controller_of};
use crate::ownerindex::OwnerIndex;
use kubesvc_runtime::Informer;
use kubesvc_runtime::events::{EventType, Recorder, reference};
use kubesvc_runtime::selector;
use kubesvc_runtime::{Change, ObjectKey, WorkQueue, key_of};
use util::*;

type Key = ObjectKey;

pub struct Controller {
    client: Client,
    deployments: Arc<Informer<Deployment>>,
    sets: Arc<OwnerIndex<ReplicaSet>>,
    set_store: kube::runtime::reflector::Store<ReplicaSet>,
    pods: Arc<OwnerIndex<Pod>>,
    queue: Arc<WorkQueue<Key>>,
    recorder: Recorder,
}

impl Controller {
    pub fn new(
        client: Client,
        deployments: Arc<Informer<Deployment>>,
        sets_informer: &Informer<ReplicaSet>,
        sets: Arc<OwnerIndex<ReplicaSet>>,
        pods_informer: &Informer<Pod>,
        pods: Arc<OwnerIndex<Pod>>,
    ) -> Arc<Self> {
        let c = Arc::new(Controller {
            recorder: Recorder::new(client.clone(), "deployment-controller"),
            client,
            deployments: deployments.clone(),
            sets,
            set_store: sets_informer.store().clone(),
            pods,
            queue: WorkQueue::new(),
        });
        let q = c.queue.clone();
        deployments.on_change(move |change| q.add(key_of(change.object())));
        let weak = Arc::downgrade(&c);
        sets_informer.on_change(move |change| {
            let Some(me) = weak.upgrade() else { return };
            for rs in [change.before(), change.after()].into_iter().flatten() {
                me.enqueue_owner_of(rs);
            }
        });
        // Recreate waits for old pods to be gone.
        let weak = Arc::downgrade(&c);
        pods_informer.on_change(move |change| {
            let Some(me) = weak.upgrade() else { return };
            if let Change::Deleted(p) = change {
                let ns = p.namespace().unwrap_or_default();
                if let Some(r) = controller_of(&p.metadata).filter(|r| r.kind == "ReplicaSet")
                    && let Some(rs) = me.set_store.get(&ObjectRef::new(&r.name).within(&ns))
                {
                    me.enqueue_owner_of(&rs);
                }
            }
        });
        c
    }

    fn enqueue_owner_of(&self, rs: &ReplicaSet) {
        let ns = rs.namespace().unwrap_or_default();
        match controller_of(&rs.metadata) {
            Some(r) if r.kind == "Deployment" => {
                if let Some(d) = self.deployments.store().get(&ObjectRef::new(&r.name).within(&ns))
                    && d.uid().as_deref() == Some(r.uid.as_str())
                {
                    self.queue.add(key_of(&*d));
                }
            }
            Some(_) => {}
            None => {
                for d in self.deployments.store().state() {
                    let sel = d.spec.selector.clone();
                    if d.namespace().as_deref() == Some(&ns)
                        && !selector::is_empty(&sel)
                        && selector::matches(&sel, rs.labels())
                    {
                        self.queue.add(key_of(&*d));
                    }
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

    fn sets_api(&self, ns: &str) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// The Deployment's ReplicaSets: its own that still match, and matching orphans.
    async fn claim(&self, d: &Deployment) -> Result<Vec<ReplicaSet>, Error> {
        let ns = d.namespace().unwrap_or_default();
        let uid = d.uid().unwrap_or_default();
        let deleting = d.metadata.deletion_timestamp.is_some();
        let sel = d.spec.selector.clone();
        let api = self.sets_api(&ns);
        let mut out = Vec::new();
        let mut checked = false;
        for rs in self.sets.controlled_by(&uid).into_iter().chain(self.sets.orphans(&ns)) {
            let matches = selector::matches(&sel, rs.labels());
            match claim::decide(&rs.metadata, &uid, deleting, matches) {
                Claim::Keep => out.push((*rs).clone()),
                Claim::Release => claim::release(&api, &*rs, &uid).await?,
                Claim::Adopt => {
                    if !checked {
                        let live: Api<Deployment> = Api::namespaced(self.client.clone(), &ns);
                        let l = live.get_opt(&d.name_any()).await?;
                        if l.is_none_or(|l| l.uid() != d.uid() || l.metadata.deletion_timestamp.is_some()) {
                            return Err(Error::Other(format!(
                                "can't adopt ReplicaSet {ns}/{}: the Deployment is gone",
                                rs.name_any()
                            )));
                        }
                        checked = true;
                    }
                    match claim::adopt(&api, &*rs, d).await {
                        Ok(r) => out.push(r),
                        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 422 => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Claim::Ignore => {}
            }
        }
        Ok(out)
    }

    async fn sync(&self, key: &Key) -> Result<(), Error> {
        let (ns, name) = key;
        let Some(d) = self.deployments.store().get(&ObjectRef::new(name).within(ns)) else { return Ok(()) };
        let mut d = (*d).clone();
        let sel = d.spec.selector.clone();
        if selector::is_empty(&sel) {
            let msg = "This deployment is selecting all pods. A non-empty selector is required.";
            self.recorder.record(&reference(&d), EventType::Warning, "SelectingAll", msg).await;
            if d.status.as_ref().and_then(|s| s.observed_generation) != d.metadata.generation {
                let mut s = d.status.clone().unwrap_or_default();
                s.observed_generation = d.metadata.generation;
                self.write_status(&d, s).await?;
            }
            return Ok(());
        }
        let sets = self.claim(&d).await?;
        let refs: Vec<&ReplicaSet> = sets.iter().collect();
        if d.metadata.deletion_timestamp.is_some() {
            let (new, _) = split(&d, &refs);
            let status = calculate_status(&d, &refs, new);
            return self.write_status_if_changed(&d, status).await;
        }
        self.check_paused(&mut d).await?;
        let paused = d.spec.paused.unwrap_or(false);
        if paused || is_scaling_event(&d, &refs) {
            return self.sync_scale(&d, &sets).await;
        }
        if is_recreate(&d) { self.rollout_recreate(&d, &sets).await } else { self.rollout_rolling(&d, &sets).await }
    }

    async fn check_paused(&self, d: &mut Deployment) -> Result<(), Error> {
        if deadline(d).is_none() {
            return Ok(());
        }
        let mut status = d.status.clone().unwrap_or_default();
        let cond = get_condition(&status, "Progressing").cloned();
        if cond.as_ref().and_then(|c| c.reason.as_deref()) == Some("ProgressDeadlineExceeded") {
            return Ok(());
        }
        let paused = d.spec.paused.unwrap_or(false);
        let paused_cond = cond.as_ref().and_then(|c| c.reason.as_deref()) == Some("DeploymentPaused");
        let c = if paused && !paused_cond {
            condition("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused")
        } else if !paused && paused_cond {
            condition("Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed")
        } else {
            return Ok(());
        };
        set_condition(&mut status, c);
        let updated = self.write_status(d, status).await?;
        *d = updated;
        Ok(())
    }

    /// Writes a Deployment's status (and its annotations, as the controller does through /status).
    async fn write_status(&self, d: &Deployment, status: DeploymentStatus) -> Result<Deployment, Error> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &d.namespace().unwrap_or_default());
        let mut body = d.clone();
        body.status = Some(status);
        Ok(api.replace_status(&d.name_any(), &PostParams::default(), &body).await?)
    }

    async fn write_status_if_changed(&self, d: &Deployment, status: DeploymentStatus) -> Result<(), Error> {
        if d.status.as_ref().map(stored_form) != Some(stored_form(&status)) {
            self.write_status(d, status).await?;
        }
        Ok(())
    }

    /// Scales `rs` to `size`, refreshing its desired/max annotations; records the event.
    async fn scale(&self, d: &Deployment, rs: &ReplicaSet, size: i32, force: bool) -> Result<bool, Error> {
        let before = spec_replicas(rs);
        let annotations = scaled_annotations(d, rs);
        // A forced write refreshes the annotations even when the size stays.
        if before == size && (!force || annotations == *rs.annotations()) {
            return Ok(false);
        }
        let mut body = rs.clone();
        body.metadata.annotations = Some(annotations);
        body.spec.replicas = Some(size);
        self.sets_api(&rs.namespace().unwrap_or_default())
            .replace(&rs.name_any(), &PostParams::default(), &body)
            .await?;
        if before != size {
            let dir = if before < size { "up" } else { "down" };
            let msg = format!("Scaled {dir} replica set {} from {before} to {size}", rs.name_any());
            self.recorder.record(&reference(d), EventType::Normal, "ScalingReplicaSet", &msg).await;
        }
        Ok(before != size)
    }

    /// Finds (and with `create`, makes) the new ReplicaSet, keeping revisions and annotations.
    async fn new_rs(&self, d: &Deployment, sets: &[ReplicaSet], create: bool) -> Result<Option<ReplicaSet>, Error> {
        let refs: Vec<&ReplicaSet> = sets.iter().collect();
        let (existing, old) = split(d, &refs);
        let new_revision = max_revision(&old) + 1;
        let ns = d.namespace().unwrap_or_default();
        if let Some(rs) = existing {
            let min_ready = d.spec.min_ready_seconds;
            let annotations = rs_annotations(d, rs.annotations(), new_revision, false);
            let rs_min_ready = rs.spec.min_ready_seconds;
            if annotations.is_some() || rs_min_ready != min_ready {
                let mut body = rs.clone();
                if let Some(a) = annotations {
                    body.metadata.annotations = Some(a);
                }
                body.spec.min_ready_seconds = min_ready;
                let updated = self.sets_api(&ns).replace(&rs.name_any(), &PostParams::default(), &body).await?;
                return Ok(Some(updated));
            }
            // The Deployment takes the new ReplicaSet's revision.
            let rev = rs.annotations().get(ANNOTATION_REVISION).cloned().unwrap_or_default();
            let mut status = d.status.clone().unwrap_or_default();
            let mut changed = d.annotations().get(ANNOTATION_REVISION) != Some(&rev);
            if deadline(d).is_some() && get_condition(&status, "Progressing").is_none() {
                let msg = format!("Found new replica set \"{}\"", rs.name_any());
                set_condition(&mut status, condition("Progressing", "True", "FoundNewReplicaSet", &msg));
                changed = true;
            }
            if changed {
                let mut body = d.clone();
                body.metadata.annotations.get_or_insert_with(Default::default).insert(ANNOTATION_REVISION.into(), rev);
                self.write_status(&body, status).await?;
            }
            return Ok(Some(rs.clone()));
        }
        if !create {
            return Ok(None);
        }
        let spec = d.spec.clone();
        let collision = d.status.as_ref().and_then(|s| s.collision_count);
        let hash = template_hash(&spec.template, collision);
        let mut template = spec.template.clone();
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default)
            .insert(LABEL_HASH.into(), hash.clone());
        let mut rs_selector = spec.selector.clone();
        rs_selector.match_labels.get_or_insert_with(Default::default).insert(LABEL_HASH.into(), hash.clone());
        let mut name = format!("{}-{hash}", d.name_any());
        if name.len() > 253 {
            name = format!("{}-{hash}", &d.name_any()[..253 - 1 - hash.len()]);
        }
        let size = new_rs_new_replicas(d, &refs, None);
        let annotations = rs_annotations(d, &Default::default(), new_revision, true).unwrap_or_default();
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                annotations: Some(annotations),
                owner_references: Some(vec![claim::controller_ref(d)]),
                ..Default::default()
            },
            spec: ReplicaSetSpec {
                replicas: Some(size),
                min_ready_seconds: spec.min_ready_seconds,
                selector: rs_selector,
                template: Some(template),
            },
            status: None,
        };
        let made = match self.sets_api(&ns).create(&PostParams::default(), &rs).await {
            Ok(made) => made,
            Err(kube::Error::Api(e)) if e.code == 409 => {
                // Ours already (a lagging cache), or a hash collision: count it and try another name.
                let live = self.sets_api(&ns).get_opt(&name).await?;
                if let Some(l) = live
                    && controller_of(&l.metadata).is_some_and(|r| Some(r.uid.as_str()) == d.uid().as_deref())
                    && same_template(&rs_template(&l), &spec.template)
                {
                    return Ok(Some(l));
                }
                let mut status = d.status.clone().unwrap_or_default();
                status.collision_count = Some(collision.unwrap_or(0) + 1);
                self.write_status(d, status).await?;
                return Err(Error::Other(format!("hash collision for ReplicaSet {name}")));
            }
            Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains("being terminated") => return Ok(None),
            Err(e) => {
                let msg = format!("Failed to create new replica set \"{name}\": {e}");
                self.recorder.record(&reference(d), EventType::Warning, "ReplicaSetCreateError", &msg).await;
                if deadline(d).is_some() {
                    let mut status = d.status.clone().unwrap_or_default();
                    set_condition(&mut status, condition("Progressing", "False", "ReplicaSetCreateError", &msg));
                    let _ = self.write_status(d, status).await;
                }
                return Err(e.into());
            }
        };
        if size > 0 {
            let msg = format!("Scaled up replica set {name} from 0 to {size}");
            self.recorder.record(&reference(d), EventType::Normal, "ScalingReplicaSet", &msg).await;
        }
        let mut body = d.clone();
        body.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(ANNOTATION_REVISION.into(), new_revision.to_string());
        let mut status = d.status.clone().unwrap_or_default();
        if deadline(d).is_some() {
            let msg = format!("Created new replica set \"{name}\"");
            set_condition(&mut status, condition("Progressing", "True", "NewReplicaSetCreated", &msg));
        }
        self.write_status(&body, status).await?;
        Ok(Some(made))
    }

    async fn rollout_rolling(&self, d: &Deployment, sets: &[ReplicaSet]) -> Result<(), Error> {
        let Some(new) = self.new_rs(d, sets, true).await? else { return Ok(()) };
        let mut all: Vec<ReplicaSet> = sets.iter().filter(|s| s.name_any() != new.name_any()).cloned().collect();
        all.push(new.clone());
        let refs: Vec<&ReplicaSet> = all.iter().collect();
        let want = desired(d);
        // Scale the new ReplicaSet up (or down to the desired count).
        let new_size = spec_replicas(&new);
        let target = if new_size > want { want } else { new_rs_new_replicas(d, &refs, Some(&new)) };
        if target != new_size {
            self.scale(d, &new, target, false).await?;
            return self.sync_rollout_status(d, &all, Some(&new)).await;
        }
        // Scale old ones down as far as availability allows.
        let old: Vec<&ReplicaSet> =
            refs.iter().copied().filter(|s| s.name_any() != new.name_any() && spec_replicas(s) > 0).collect();
        if self.reconcile_old(d, &refs, &old, &new).await? {
            return self.sync_rollout_status(d, &all, Some(&new)).await;
        }
        let status = calculate_status(d, &refs, Some(&new));
        if complete(d, &status) {
            self.cleanup(d, &refs, Some(&new)).await?;
        }
        self.sync_rollout_status(d, &all, Some(&new)).await
    }

    /// reconcileOldReplicaSets: true if something was scaled.
    async fn reconcile_old(
        &self,
        d: &Deployment,
        all: &[&ReplicaSet],
        old: &[&ReplicaSet],
        new: &ReplicaSet,
    ) -> Result<bool, Error> {
        let old_total: i32 = old.iter().map(|rs| spec_replicas(rs)).sum();
        if old_total == 0 {
            return Ok(false);
        }
        let (_, max_unavailable) = surge_and_unavailable(d);
        let min_available = desired(d) - max_unavailable;
        let new_unavailable = spec_replicas(new) - available(new);
        let all_total: i32 = all.iter().map(|rs| spec_replicas(rs)).sum();
        let max_scaled_down = all_total - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        let mut sorted: Vec<&ReplicaSet> = old.to_vec();
        by_age(&mut sorted);
        // First the unhealthy part of old ReplicaSets.
        let mut cleaned = 0;
        let mut sizes: Vec<(String, i32)> = sorted.iter().map(|rs| (rs.name_any(), spec_replicas(rs))).collect();
        let mut scaled = false;
        for (i, rs) in sorted.iter().enumerate() {
            if cleaned >= max_scaled_down {
                break;
            }
            let size = sizes[i].1;
            // Nothing unhealthy (a status that still counts pods of a larger size included).
            if size == 0 || size <= available(rs) {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(size - available(rs));
            self.scale(d, rs, size - down, false).await?;
            sizes[i].1 = size - down;
            cleaned += down;
            scaled = true;
        }
        // Then as far as the available pods allow.
        let avail: i32 = all.iter().map(|rs| available(rs)).sum();
        if avail > min_available {
            let budget = avail - min_available;
            let mut done = 0;
            for (i, rs) in sorted.iter().enumerate() {
                if done >= budget {
                    break;
                }
                let size = sizes[i].1;
                if size == 0 {
                    continue;
                }
                let down = size.min(budget - done);
                let fresh = self
                    .set_store
                    .get(&ObjectRef::from_obj(*rs))
                    .map(|r| (*r).clone())
                    .unwrap_or_else(|| (*rs).clone());
                self.scale(d, &fresh, size - down, false).await?;
                done += down;
                scaled = true;
            }
        }
        Ok(scaled)
    }

    async fn rollout_recreate(&self, d: &Deployment, sets: &[ReplicaSet]) -> Result<(), Error> {
        let refs: Vec<&ReplicaSet> = sets.iter().collect();
        let (new, old) = split(d, &refs);
        let mut scaled = false;
        for rs in old.iter().filter(|rs| spec_replicas(rs) > 0) {
            scaled |= self.scale(d, rs, 0, false).await?;
        }
        if scaled {
            return self.sync_rollout_status(d, sets, new).await;
        }
        // Old pods must be gone first.
        let running = old.iter().any(|rs| rs.status.as_ref().is_some_and(|s| s.replicas > 0))
            || old.iter().any(|rs| {
                self.pods.controlled_by(&rs.uid().unwrap_or_default()).iter().any(|p| {
                    !matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Failed" | "Succeeded"))
                })
            });
        if running {
            return self.sync_rollout_status(d, sets, new).await;
        }
        let Some(new) = self.new_rs(d, sets, true).await? else { return Ok(()) };
        let mut all: Vec<ReplicaSet> = sets.iter().filter(|s| s.name_any() != new.name_any()).cloned().collect();
        all.push(new.clone());
        if spec_replicas(&new) != desired(d) {
            self.scale(d, &new, desired(d), false).await?;
        }
        let refs: Vec<&ReplicaSet> = all.iter().collect();
        if complete(d, &calculate_status(d, &refs, Some(&new))) {
            self.cleanup(d, &refs, Some(&new)).await?;
        }
        self.sync_rollout_status(d, &all, Some(&new)).await
    }

    /// Paused Deployments and replica changes mid-rollout: scale proportionally.
    async fn sync_scale(&self, d: &Deployment, sets: &[ReplicaSet]) -> Result<(), Error> {
        let new = self.new_rs(d, sets, false).await?;
        let mut all: Vec<ReplicaSet> =
            sets.iter().filter(|s| Some(s.name_any()) != new.as_ref().map(|n| n.name_any())).cloned().collect();
        if let Some(n) = &new {
            all.push(n.clone());
        }
        let refs: Vec<&ReplicaSet> = all.iter().collect();
        let old: Vec<&ReplicaSet> =
            refs.iter().copied().filter(|s| Some(s.name_any()) != new.as_ref().map(|n| n.name_any())).collect();
        let plan = proportional(d, new.as_ref(), &old);
        let many = refs.iter().filter(|rs| spec_replicas(rs) > 0).count() > 1;
        for (name, size) in plan {
            if let Some(rs) = refs.iter().find(|r| r.name_any() == name) {
                self.scale(d, rs, size, many).await?;
            }
        }
        let paused = d.spec.paused.unwrap_or(false);
        let status = calculate_status(d, &refs, new.as_ref());
        if !paused && complete(d, &status) {
            self.cleanup(d, &refs, new.as_ref()).await?;
        }
        let mut status = status;
        if deadline(d).is_none() {
            remove_condition(&mut status, "Progressing");
        }
        self.write_status_if_changed(d, status).await
    }

    /// Deletes the oldest drained ReplicaSets beyond revisionHistoryLimit.
    async fn cleanup(&self, d: &Deployment, all: &[&ReplicaSet], new: Option<&ReplicaSet>) -> Result<(), Error> {
        let Some(limit) = d.spec.revision_history_limit.filter(|l| *l != i32::MAX) else {
            return Ok(());
        };
        let mut old: Vec<&ReplicaSet> = all
            .iter()
            .copied()
            .filter(|rs| Some(rs.name_any()) != new.map(|n| n.name_any()) && rs.metadata.deletion_timestamp.is_none())
            .collect();
        let diff = old.len() as i64 - i64::from(limit);
        if diff <= 0 {
            return Ok(());
        }
        by_age(&mut old);
        old.sort_by_key(|rs| revision(*rs));
        for rs in old.into_iter().take(diff as usize) {
            let s = rs.status.clone().unwrap_or_default();
            let drained = s.replicas == 0 && spec_replicas(rs) == 0;
            if drained && rs.metadata.generation.unwrap_or(0) <= s.observed_generation.unwrap_or(0) {
                match self
                    .sets_api(&rs.namespace().unwrap_or_default())
                    .delete(&rs.name_any(), &DeleteParams::default())
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// syncRolloutStatus: counts, Available, Progressing (with the deadline), ReplicaFailure.
    async fn sync_rollout_status(
        &self,
        d: &Deployment,
        all: &[ReplicaSet],
        new: Option<&ReplicaSet>,
    ) -> Result<(), Error> {
        let refs: Vec<&ReplicaSet> = all.iter().collect();
        let mut status = calculate_status(d, &refs, new);
        let who = match new {
            Some(n) => format!("ReplicaSet \"{}\"", n.name_any()),
            None => format!("Deployment \"{}\"", d.name_any()),
        };
        let mut requeue = None;
        match deadline(d) {
            None => remove_condition(&mut status, "Progressing"),
            Some(secs) => {
                let cur = get_condition(&status, "Progressing").cloned();
                let done_before = new.is_some_and(|n| {
                    let s = n.status.clone().unwrap_or_default();
                    spec_replicas(n) == s.replicas
                }) && cur.as_ref().and_then(|c| c.reason.as_deref())
                    == Some("NewReplicaSetAvailable");
                if !done_before {
                    if complete(d, &status) {
                        let msg = format!("{who} has successfully progressed.");
                        set_condition(&mut status, condition("Progressing", "True", "NewReplicaSetAvailable", &msg));
                    } else if progressing(d, &status) {
                        let msg = format!("{who} is progressing.");
                        let mut c = condition("Progressing", "True", "ReplicaSetUpdated", &msg);
                        if let Some(cur) = cur.as_ref().filter(|c| c.status.as_deref() == Some("True")) {
                            c.last_transition_time = cur.last_transition_time.clone();
                        }
                        // Replaced every time: its update time is the last progress.
                        remove_condition(&mut status, "Progressing");
                        set_condition(&mut status, c);
                    } else if let Some(cur) =
                        cur.as_ref().filter(|c| c.reason.as_deref() != Some("NewReplicaSetAvailable"))
                    {
                        let last = cur.last_update_time.as_ref().map(|t| t.0).unwrap_or_else(jiff::Timestamp::now);
                        let due = last
                            .checked_add(jiff::SignedDuration::from_secs(i64::from(secs)))
                            .unwrap_or(jiff::Timestamp::MAX);
                        let now = jiff::Timestamp::now();
                        if cur.reason.as_deref() == Some("ProgressDeadlineExceeded") || due < now {
                            let msg = format!("{who} has timed out progressing.");
                            set_condition(
                                &mut status,
                                condition("Progressing", "False", "ProgressDeadlineExceeded", &msg),
                            );
                        } else {
                            requeue =
                                Duration::try_from(due.duration_since(now)).ok().map(|d| d + Duration::from_secs(1));
                        }
                    }
                }
            }
        }
        // ReplicaFailure mirrors the new (else an old) ReplicaSet's.
        let failure = new.into_iter().chain(refs.iter().copied()).find_map(|rs| {
            rs.status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_.as_deref() == Some("ReplicaFailure"))
                .cloned()
        });
        match failure {
            Some(f) => set_condition(
                &mut status,
                k8s_openapi::api::apps::v1::DeploymentCondition {
                    type_: Some("ReplicaFailure".into()),
                    status: f.status,
                    reason: f.reason,
                    message: f.message,
                    last_update_time: f.last_transition_time.clone(),
                    last_transition_time: f.last_transition_time,
                },
            ),
            None => remove_condition(&mut status, "ReplicaFailure"),
        }
        // Look again when the progress deadline passes.
        if let Some(after) = requeue {
            self.queue.add_after(key_of(d), after);
        }
        if d.status.as_ref().map(stored_form) != Some(stored_form(&status)) {
            self.write_status(d, status).await?;
        }
        Ok(())
    }
}
