//! The EndpointSlice controller: keeps each selector Service's slices equal
//! to its pods (see [`reconcile`] for the rules). A pod change syncs only the
//! Services that select it; a sync reads only its own pods and slices.

pub mod reconcile;

use std::sync::Arc;

use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::podindex::{PodIndex, ServiceKey};
use crate::slices::Slices;
use crate::trigger::TriggerTimes;
use crate::{Informers, Options};
use kubesvc_runtime::events::{EventType, Recorder, reference};
use kubesvc_runtime::wellknown::LABEL_TOPOLOGY_ZONE;
use kubesvc_runtime::{Change, WorkQueue, key_of};
use reconcile::MANAGED_BY;

pub struct Controller {
    client: Client,
    informers: Arc<Informers>,
    index: Arc<PodIndex>,
    queue: Arc<WorkQueue<ServiceKey>>,
    max_per_slice: usize,
    triggers: Mutex<TriggerTimes>,
    slices: Arc<Slices>,
    recorder: Recorder,
}

impl Controller {
    pub fn new(client: Client, informers: Arc<Informers>, index: Arc<PodIndex>, opts: &Options) -> Arc<Self> {
        let queue = WorkQueue::new();
        let q = queue.clone();
        let slices = Slices::attach(&informers.slices, MANAGED_BY, move |k| q.add(k));
        let c = Arc::new(Controller {
            recorder: Recorder::new(client.clone(), "endpoint-slice-controller"),
            client,
            informers: informers.clone(),
            index: index.clone(),
            queue,
            max_per_slice: opts.max_endpoints_per_slice,
            triggers: Mutex::new(TriggerTimes::default()),
            slices,
        });
        let q = c.queue.clone();
        informers.services.on_change(move |change| q.add(key_of(change.object())));
        let q = c.queue.clone();
        index.subscribe(move |key| q.add(key.clone()));
        // A node appearing or changing zone changes endpoints of pods on it.
        let (q, svcs) = (c.queue.clone(), informers.services.store().clone());
        informers.nodes.on_change(move |change| {
            let zone = |n: &k8s_openapi::api::core::v1::Node| n.labels().get(LABEL_TOPOLOGY_ZONE).cloned();
            let relevant = match change {
                Change::Modified { old, new } => zone(old) != zone(new),
                Change::Added(_) | Change::Deleted(_) => true,
            };
            if relevant {
                for s in svcs.state() {
                    q.add(key_of(&*s));
                }
            }
        });
        c
    }

    pub fn spawn(self: &Arc<Self>, workers: usize, stop: watch::Receiver<bool>) {
        let me = self.clone();
        kubesvc_runtime::run_workers(self.queue.clone(), workers, stop, move |key| {
            let me = me.clone();
            async move { me.sync(&key).await }
        });
    }

    async fn sync(&self, key: &ServiceKey) -> Result<(), crate::Error> {
        let (ns, name) = key;
        let Some(svc) = self.informers.services.store().get(&ObjectRef::new(name).within(ns)) else {
            // Gone: the garbage collector removes its slices through their owner reference.
            self.triggers.lock().forget(key);
            return Ok(());
        };
        let spec = svc.spec.as_ref();
        if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName")
            || spec.and_then(|s| s.selector.as_ref()).is_none()
        {
            return Ok(());
        }
        if self.slices.stale(key) {
            return Err(crate::Error::Other("EndpointSlice informer cache is out of date".into()));
        }
        let pods = self.index.pods_of(ns, name);
        let existing = self.slices.of(key);
        let trigger = self.triggers.lock().observe(key, &svc, &pods);
        let nodes = self.informers.nodes.store().clone();
        let node = move |n: &str| nodes.get(&ObjectRef::new(n));
        let plan = reconcile::reconcile(&svc, &pods, &node, &existing, self.max_per_slice, trigger.as_ref());
        let result = self.slices.write(&self.client, key, plan.create, plan.update, plan.delete).await;
        let err = match (result, plan.errors.is_empty()) {
            (Ok(()), true) => return Ok(()),
            (Ok(()), false) => plan.errors.join("; "),
            (Err(e), _) => e.to_string(),
        };
        let msg = format!("Error updating Endpoint Slices for Service {ns}/{name}: {err}");
        self.recorder.record(&reference(&*svc), EventType::Warning, "FailedToUpdateEndpointSlices", &msg).await;
        Err(crate::Error::Other(msg))
    }

    /// How many Services wait to be synced (for tests and benchmarks).
    pub fn pending(&self) -> usize {
        self.queue.len()
    }
}
