//! The garbage collector: a graph of owner references by uid. A dependent
//! goes when all its owners are gone (checked live, by name and uid); an
//! owner deleted in the foreground waits until its blocking dependents are
//! gone; an orphaning owner first lets go of its dependents. As Kubernetes'
//! garbage collector, for the kinds kubesvc serves.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, Client, Resource, ResourceExt};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::watch;

use crate::Error;
use kubesvc_runtime::Informer;
use kubesvc_runtime::WorkQueue;

use kubesvc_runtime::wellknown::{FINALIZER_FOREGROUND, FINALIZER_ORPHAN};

/// The kinds the collector knows: (apiVersion, kind) → (plural, namespaced).
fn resource_of(api_version: &str, kind: &str) -> Option<(ApiResource, bool)> {
    let (plural, namespaced) = match (api_version, kind) {
        ("v1", "Pod") => ("pods", true),
        ("v1", "Service") => ("services", true),
        ("v1", "Endpoints") => ("endpoints", true),
        ("v1", "ConfigMap") => ("configmaps", true),
        ("v1", "Secret") => ("secrets", true),
        ("v1", "Node") => ("nodes", false),
        ("v1", "Namespace") => ("namespaces", false),
        ("apps/v1", "Deployment") => ("deployments", true),
        ("apps/v1", "ReplicaSet") => ("replicasets", true),
        ("discovery.k8s.io/v1", "EndpointSlice") => ("endpointslices", true),
        ("coordination.k8s.io/v1", "Lease") => ("leases", true),
        _ => return None,
    };
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    Some((ApiResource::from_gvk_with_plural(&gvk, plural), namespaced))
}

#[derive(Clone, Debug)]
struct Node {
    api_version: String,
    kind: String,
    namespace: Option<String>,
    name: String,
    owners: Vec<OwnerReference>,
    dependents: HashSet<String>,
    /// Has a deletionTimestamp.
    deleting: bool,
    /// Being deleted in the foreground: waits for its blocking dependents.
    deleting_dependents: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Work {
    Delete(String),
    Orphan(String),
}

#[derive(Default)]
struct Graph {
    nodes: HashMap<String, Node>,
    /// Dependents of owners not seen yet, by the owner's uid.
    pending: HashMap<String, HashSet<String>>,
}

pub struct Collector {
    client: Client,
    graph: Mutex<Graph>,
    queue: Arc<WorkQueue<Work>>,
}

impl Collector {
    pub fn new(client: Client) -> Arc<Self> {
        Arc::new(Collector { client, graph: Mutex::new(Graph::default()), queue: WorkQueue::new() })
    }

    /// Follows a kind through its informer.
    pub fn observe<K>(self: &Arc<Self>, informer: &Informer<K>)
    where
        K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    {
        let me = Arc::downgrade(self);
        informer.on_change(move |change| {
            if let Some(me) = me.upgrade() {
                let api_version = K::api_version(&()).into_owned();
                let kind = K::kind(&()).into_owned();
                me.changed(&api_version, &kind, change.before().map(|o| o.meta()), change.after().map(|n| n.meta()));
            }
        });
    }

    fn changed(&self, api_version: &str, kind: &str, old: Option<&ObjectMeta>, new: Option<&ObjectMeta>) {
        let mut guard = self.graph.lock();
        let Graph { nodes: g, pending } = &mut *guard;
        let mut work = Vec::new();
        match new {
            Some(m) => {
                let uid = m.uid.clone().unwrap_or_default();
                let owners: Vec<OwnerReference> = m.owner_references.clone().unwrap_or_default();
                let finalizers = m.finalizers.clone().unwrap_or_default();
                let deleting = m.deletion_timestamp.is_some();
                // Taken out and put back below: its dependents move rather than copy.
                let (prev_owners, mut dependents) = match g.remove(&uid) {
                    Some(n) => (n.owners, n.dependents),
                    None => (Vec::new(), HashSet::new()),
                };
                // Owner references that went away (or stopped blocking) unblock their owners.
                {
                    for r in &prev_owners {
                        let still = owners.iter().find(|o| o.uid == r.uid);
                        let unblocked = still.is_none_or(|o| {
                            r.block_owner_deletion == Some(true) && o.block_owner_deletion != Some(true)
                        });
                        if still.is_none() {
                            if let Some(owner) = g.get_mut(&r.uid) {
                                owner.dependents.remove(&uid);
                            }
                            if let Some(p) = pending.get_mut(&r.uid) {
                                p.remove(&uid);
                            }
                        }
                        if unblocked {
                            work.push(Work::Delete(r.uid.clone()));
                        }
                    }
                }
                let newly = |f: &str| {
                    deleting
                        && finalizers.iter().any(|x| x == f)
                        && !old.is_some_and(|o| {
                            o.deletion_timestamp.is_some() && o.finalizers.iter().flatten().any(|x| x == f)
                        })
                };
                let orphaning = newly(FINALIZER_ORPHAN);
                let foreground = !orphaning && newly(FINALIZER_FOREGROUND);
                // Dependents seen before their owner link up now.
                dependents.extend(pending.remove(&uid).unwrap_or_default());
                if foreground {
                    work.extend(dependents.iter().map(|d| Work::Delete(d.clone())));
                }
                let node = Node {
                    api_version: api_version.into(),
                    kind: kind.into(),
                    namespace: m.namespace.clone(),
                    name: m.name.clone().unwrap_or_default(),
                    owners,
                    dependents,
                    deleting,
                    deleting_dependents: deleting && finalizers.iter().any(|x| x == FINALIZER_FOREGROUND),
                };
                g.insert(uid.clone(), node);
                for r in m.owner_references.iter().flatten() {
                    match g.get_mut(&r.uid) {
                        Some(owner) => {
                            owner.dependents.insert(uid.clone());
                        }
                        // An owner never seen: remember the link, and check whether it exists.
                        None => {
                            pending.entry(r.uid.clone()).or_default().insert(uid.clone());
                            work.push(Work::Delete(uid.clone()));
                        }
                    }
                }
                if orphaning {
                    work.push(Work::Orphan(uid.clone()));
                } else if foreground {
                    work.push(Work::Delete(uid.clone()));
                }
            }
            None => {
                let Some(m) = old else { return };
                let uid = m.uid.clone().unwrap_or_default();
                if let Some(node) = g.remove(&uid) {
                    work.extend(node.dependents.iter().map(|d| Work::Delete(d.clone())));
                    for r in &node.owners {
                        if let Some(owner) = g.get_mut(&r.uid) {
                            owner.dependents.remove(&uid);
                            if owner.deleting_dependents {
                                work.push(Work::Delete(r.uid.clone()));
                            }
                        }
                        if let Some(p) = pending.get_mut(&r.uid) {
                            p.remove(&uid);
                            if p.is_empty() {
                                pending.remove(&r.uid);
                            }
                        }
                    }
                }
            }
        }
        drop(guard);
        for w in work {
            self.queue.add(w);
        }
    }

    pub fn spawn(self: &Arc<Self>, workers: usize, stop: watch::Receiver<bool>) {
        let me = self.clone();
        kubesvc_runtime::run_workers(self.queue.clone(), workers, stop, move |w| {
            let me = me.clone();
            async move {
                match w {
                    Work::Delete(uid) => me.attempt_to_delete(&uid).await,
                    Work::Orphan(uid) => me.attempt_to_orphan(&uid).await,
                }
            }
        });
    }

    fn api(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> Option<Api<DynamicObject>> {
        let (ar, namespaced) = resource_of(api_version, kind)?;
        Some(match (namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &ar),
            (true, None) => return None,
            (false, _) => Api::all_with(self.client.clone(), &ar),
        })
    }

    /// The live object, if it is the one with `uid`.
    async fn live(&self, api: &Api<DynamicObject>, name: &str, uid: &str) -> Result<Option<DynamicObject>, Error> {
        Ok(api.get_opt(name).await?.filter(|o| o.uid().as_deref() == Some(uid)))
    }

    /// Forgets an object found gone: its dependents are looked at again.
    fn vanished(&self, uid: &str) {
        let dependents = self.graph.lock().nodes.remove(uid).map(|n| n.dependents).unwrap_or_default();
        for d in dependents {
            self.queue.add(Work::Delete(d));
        }
    }

    async fn attempt_to_delete(&self, uid: &str) -> Result<(), Error> {
        let Some(node) = self.graph.lock().nodes.get(uid).cloned() else { return Ok(()) };
        if node.deleting && !node.deleting_dependents {
            return Ok(());
        }
        let Some(api) = self.api(&node.api_version, &node.kind, node.namespace.as_deref()) else { return Ok(()) };
        let Some(live) = self.live(&api, &node.name, uid).await? else {
            self.vanished(uid);
            return Ok(());
        };
        if node.deleting_dependents {
            return self.finish_foreground(uid, &node, &api, &live).await;
        }
        // The live object's owners, not the graph's: they may have changed since (an orphaning owner).
        let owners = live.owner_references().to_vec();
        if owners.is_empty() {
            return Ok(());
        }
        let (mut solid, mut dangling, mut waiting) = (0, Vec::new(), Vec::new());
        for r in &owners {
            let Some((_, namespaced)) = resource_of(&r.api_version, &r.kind) else {
                // A kind kubesvc does not serve: treat it as present, never delete for it.
                solid += 1;
                continue;
            };
            if namespaced && node.namespace.is_none() {
                // A cluster-scoped object cannot be owned by a namespaced one: leave it.
                solid += 1;
                continue;
            }
            let Some(owner_api) = self.api(&r.api_version, &r.kind, node.namespace.as_deref()) else { continue };
            match self.live(&owner_api, &r.name, &r.uid).await? {
                None => dangling.push(r.uid.clone()),
                Some(o)
                    if o.meta().deletion_timestamp.is_some()
                        && o.finalizers().iter().any(|f| f == FINALIZER_FOREGROUND) =>
                {
                    waiting.push(r.uid.clone())
                }
                Some(_) => solid += 1,
            }
        }
        let has_dependents = !node.dependents.is_empty();
        if solid > 0 {
            let gone: Vec<&String> = dangling.iter().chain(&waiting).collect();
            if !gone.is_empty() {
                let deletes: Vec<serde_json::Value> =
                    gone.iter().map(|u| json!({"$patch": "delete", "uid": u})).collect();
                let patch = json!({"metadata": {"ownerReferences": deletes, "uid": uid}});
                match api.patch(&node.name, &PatchParams::default(), &Patch::Strategic(patch)).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => self.vanished(uid),
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(());
        }
        let policy = if !waiting.is_empty() && has_dependents {
            PropagationPolicy::Foreground
        } else if live.finalizers().iter().any(|f| f == FINALIZER_ORPHAN) {
            PropagationPolicy::Orphan
        } else if live.finalizers().iter().any(|f| f == FINALIZER_FOREGROUND) {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        let dp = DeleteParams {
            propagation_policy: Some(policy),
            // Exactly the object judged: a change meanwhile (a new owner, say) is judged again.
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: live.resource_version(),
            }),
            ..Default::default()
        };
        match api.delete(&node.name, &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            // Changed since it was judged: judge it again.
            Err(kube::Error::Api(e)) if e.code == 409 => {
                Err(Error::Other(format!("{} changed; looking again", node.name)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// An owner deleted in the foreground: done once no dependent blocks it.
    async fn finish_foreground(
        &self,
        uid: &str,
        node: &Node,
        api: &Api<DynamicObject>,
        live: &DynamicObject,
    ) -> Result<(), Error> {
        let blocking: Vec<String> = {
            let guard = self.graph.lock();
            let g = &guard.nodes;
            node.dependents
                .iter()
                .filter(|d| {
                    g.get(*d)
                        .is_some_and(|n| n.owners.iter().any(|o| o.uid == uid && o.block_owner_deletion == Some(true)))
                })
                .cloned()
                .collect()
        };
        if blocking.is_empty() {
            return self.remove_finalizer(api, live, FINALIZER_FOREGROUND).await;
        }
        let guard = self.graph.lock();
        let g = &guard.nodes;
        for d in blocking {
            if g.get(&d).is_some_and(|n| !n.deleting_dependents) {
                self.queue.add(Work::Delete(d));
            }
        }
        Ok(())
    }

    async fn remove_finalizer(&self, api: &Api<DynamicObject>, live: &DynamicObject, f: &str) -> Result<(), Error> {
        let left: Vec<String> = live.finalizers().iter().filter(|x| *x != f).cloned().collect();
        let patch = json!({"metadata": {"resourceVersion": live.resource_version(), "finalizers": left}});
        match api.patch(&live.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// An orphaning owner: its dependents lose their reference to it, then it goes.
    async fn attempt_to_orphan(&self, uid: &str) -> Result<(), Error> {
        let Some(node) = self.graph.lock().nodes.get(uid).cloned() else { return Ok(()) };
        let dependents: Vec<(String, Node)> = {
            let guard = self.graph.lock();
            let g = &guard.nodes;
            node.dependents.iter().filter_map(|d| g.get(d).cloned().map(|n| (d.clone(), n))).collect()
        };
        for (dep_uid, dep) in &dependents {
            let Some(api) = self.api(&dep.api_version, &dep.kind, dep.namespace.as_deref()) else { continue };
            let patch = json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": uid}], "uid": dep_uid}});
            match api.patch(&dep.name, &PatchParams::default(), &Patch::Strategic(patch)).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 422 => {}
                Err(e) => return Err(e.into()),
            }
        }
        let Some(api) = self.api(&node.api_version, &node.kind, node.namespace.as_deref()) else { return Ok(()) };
        match self.live(&api, &node.name, uid).await? {
            Some(live) => self.remove_finalizer(&api, &live, FINALIZER_ORPHAN).await,
            None => Ok(()),
        }
    }
}
