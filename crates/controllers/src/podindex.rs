//! Which pods each Service selects, kept incrementally: a pod event looks only
//! at the Services of its namespace, a Service event only at the pods of its
//! namespace, and a sync reads only its own pods. Endpoint controllers
//! subscribe to be told which Services a change concerns.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use parking_lot::RwLock;

use crate::Informers;
use kubesvc_runtime::selector::{Labels, map_matches};
use kubesvc_runtime::{Change, key_of};

/// A Service, by namespace and name.
pub type ServiceKey = kubesvc_runtime::ObjectKey;

type Subscriber = Arc<dyn Fn(&ServiceKey) + Send + Sync>;

#[derive(Default)]
struct Inner {
    /// Per namespace: the selector of every Service that has one.
    selectors: HashMap<String, HashMap<String, Labels>>,
    /// Per namespace: every pod name and its labels.
    pods: HashMap<String, HashMap<String, Labels>>,
    /// Service → the pods it selects.
    members: HashMap<ServiceKey, BTreeSet<String>>,
    /// (namespace, pod) → the Services selecting it.
    selected_by: HashMap<(String, String), BTreeSet<String>>,
}

pub struct PodIndex {
    inner: RwLock<Inner>,
    pods: kube::runtime::reflector::Store<Pod>,
    subscribers: RwLock<Vec<Subscriber>>,
}

/// What an endpoint depends on in a pod; a change of anything else is not worth a sync.
fn endpoint_view(p: &Pod) -> impl PartialEq + use<> {
    let spec = p.spec.as_ref();
    let status = p.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| (c.status.clone(), c.last_transition_time.clone()));
    (
        p.metadata.deletion_timestamp.clone(),
        status.and_then(|s| s.pod_ips.clone()),
        status.and_then(|s| s.pod_ip.clone()),
        status.and_then(|s| s.phase.clone()),
        ready,
        spec.and_then(|s| s.hostname.clone()),
        spec.and_then(|s| s.subdomain.clone()),
        spec.and_then(|s| s.node_name.clone()),
        spec.map(|s| {
            s.containers.iter().chain(s.init_containers.iter().flatten()).map(|c| c.ports.clone()).collect::<Vec<_>>()
        }),
    )
}

fn selector_of(svc: &Service) -> Option<Labels> {
    svc.spec.as_ref().and_then(|s| s.selector.clone())
}

impl PodIndex {
    /// An index fed by the shared pod and service informers.
    pub fn attach(informers: &Informers) -> Arc<PodIndex> {
        let index = Arc::new(PodIndex {
            inner: RwLock::new(Inner::default()),
            pods: informers.pods.store().clone(),
            subscribers: RwLock::new(Vec::new()),
        });
        let i = index.clone();
        informers.services.on_change(move |change| i.service_changed(change));
        let i = index.clone();
        informers.pods.on_change(move |change| i.pod_changed(change));
        index
    }

    /// Asks to be told of every Service whose selected pods changed.
    pub fn subscribe(&self, f: impl Fn(&ServiceKey) + Send + Sync + 'static) {
        self.subscribers.write().push(Arc::new(f));
    }

    fn notify(&self, keys: impl IntoIterator<Item = ServiceKey>) {
        let subs: Vec<Subscriber> = self.subscribers.read().clone();
        for k in keys {
            for s in &subs {
                s(&k);
            }
        }
    }

    /// The pods `svc` selects, from the pod store.
    pub fn pods_of(&self, ns: &str, svc: &str) -> Vec<Arc<Pod>> {
        let names: Vec<String> = self
            .inner
            .read()
            .members
            .get(&(ns.to_string(), svc.to_string()))
            .map(|m| m.iter().cloned().collect())
            .unwrap_or_default();
        names.iter().filter_map(|n| self.pods.get(&ObjectRef::new(n).within(ns))).collect()
    }

    /// The Services selecting a pod.
    pub fn services_of(&self, ns: &str, pod: &str) -> Vec<String> {
        let inner = self.inner.read();
        inner
            .selected_by
            .get(&(ns.to_string(), pod.to_string()))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn service_changed(&self, change: Change<'_, Service>) {
        let (old, new) = (change.before(), change.after());
        let (old_sel, new_sel) = (old.and_then(selector_of), new.and_then(selector_of));
        if old.is_some() && old_sel == new_sel {
            return;
        }
        let key = key_of(change.object());
        let (ns, name) = key.clone();
        let mut inner = self.inner.write();
        let before = inner.members.remove(&key).unwrap_or_default();
        for p in &before {
            if let Some(s) = inner.selected_by.get_mut(&(ns.clone(), p.clone())) {
                s.remove(&name);
            }
        }
        match &new_sel {
            Some(sel) => {
                inner.selectors.entry(ns.clone()).or_default().insert(name.clone(), sel.clone());
            }
            None => {
                if let Some(m) = inner.selectors.get_mut(&ns) {
                    m.remove(&name);
                }
            }
        }
        if let (Some(sel), Some(_)) = (&new_sel, new) {
            let members: BTreeSet<String> = inner
                .pods
                .get(&ns)
                .into_iter()
                .flatten()
                .filter(|(_, labels)| map_matches(sel, labels))
                .map(|(p, _)| p.clone())
                .collect();
            for p in &members {
                inner.selected_by.entry((ns.clone(), p.clone())).or_default().insert(name.clone());
            }
            inner.members.insert(key, members);
        }
    }

    fn pod_changed(&self, change: Change<'_, Pod>) {
        let new = change.after();
        let pod_key = key_of(change.object());
        let (ns, name) = pod_key.clone();
        let touched: Vec<ServiceKey> = {
            let mut inner = self.inner.write();
            let before = inner.selected_by.remove(&pod_key).unwrap_or_default();
            let after: BTreeSet<String> = match new {
                Some(p) => {
                    let labels = p.labels().clone();
                    let after = inner
                        .selectors
                        .get(&ns)
                        .into_iter()
                        .flatten()
                        .filter(|(_, sel)| map_matches(sel, &labels))
                        .map(|(s, _)| s.clone())
                        .collect();
                    inner.pods.entry(ns.clone()).or_default().insert(name.clone(), labels);
                    after
                }
                None => {
                    if let Some(m) = inner.pods.get_mut(&ns) {
                        m.remove(&name);
                    }
                    BTreeSet::new()
                }
            };
            for s in before.difference(&after) {
                if let Some(m) = inner.members.get_mut(&(ns.clone(), s.clone())) {
                    m.remove(&name);
                }
            }
            for s in after.difference(&before) {
                inner.members.entry((ns.clone(), s.clone())).or_default().insert(name.clone());
            }
            let changed = match change {
                Change::Modified { old, new } => endpoint_view(old) != endpoint_view(new),
                _ => true,
            };
            // A pod that changed concerns every Service it was or is in; one that only
            // moved between Services concerns those it left or joined.
            let affected: HashSet<&String> =
                if changed { before.union(&after).collect() } else { before.symmetric_difference(&after).collect() };
            let touched = affected.into_iter().map(|s| (ns.clone(), s.clone())).collect();
            if !after.is_empty() {
                inner.selected_by.insert(pod_key, after);
            }
            touched
        };
        self.notify(touched);
    }
}
