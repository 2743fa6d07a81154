//! Objects by their controller (owner uid), and the orphans of each
//! namespace: what a workload controller claims from, without scanning
//! every object of the kind.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::Arc;

use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use parking_lot::RwLock;
use serde::de::DeserializeOwned;

use crate::claim::controller_of;
use kubesvc_runtime::Informer;

#[derive(Default)]
struct Inner {
    by_controller: HashMap<String, BTreeSet<(String, String)>>,
    orphans: HashMap<String, BTreeSet<String>>,
}

pub struct OwnerIndex<K: Resource<DynamicType = ()> + Clone + 'static> {
    inner: RwLock<Inner>,
    store: Store<K>,
}

impl<K> OwnerIndex<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    pub fn attach(informer: &Informer<K>) -> Arc<Self> {
        let idx = Arc::new(OwnerIndex { inner: RwLock::new(Inner::default()), store: informer.store().clone() });
        let i = idx.clone();
        informer.on_change(move |change| i.changed(change.before(), change.after()));
        idx
    }

    fn changed(&self, old: Option<&K>, new: Option<&K>) {
        let mut inner = self.inner.write();
        let place = |o: &K| -> (Option<String>, String, String) {
            let owner = controller_of(o.meta()).map(|r| r.uid.clone());
            (owner, o.namespace().unwrap_or_default(), o.name_any())
        };
        if let Some(o) = old {
            let (owner, ns, name) = place(o);
            match owner {
                Some(uid) => {
                    if let Some(set) = inner.by_controller.get_mut(&uid) {
                        set.remove(&(ns, name));
                        if set.is_empty() {
                            inner.by_controller.remove(&uid);
                        }
                    }
                }
                None => {
                    if let Some(set) = inner.orphans.get_mut(&ns) {
                        set.remove(&name);
                    }
                }
            }
        }
        if let Some(n) = new {
            let (owner, ns, name) = place(n);
            match owner {
                Some(uid) => {
                    inner.by_controller.entry(uid).or_default().insert((ns, name));
                }
                None => {
                    inner.orphans.entry(ns).or_default().insert(name);
                }
            }
        }
    }

    /// What `uid` controls.
    pub fn controlled_by(&self, uid: &str) -> Vec<Arc<K>> {
        let keys: Vec<(String, String)> =
            self.inner.read().by_controller.get(uid).map(|s| s.iter().cloned().collect()).unwrap_or_default();
        keys.iter().filter_map(|(ns, n)| self.store.get(&ObjectRef::new(n).within(ns))).collect()
    }

    /// The objects of `ns` with no controller.
    pub fn orphans(&self, ns: &str) -> Vec<Arc<K>> {
        let names: Vec<String> =
            self.inner.read().orphans.get(ns).map(|s| s.iter().cloned().collect()).unwrap_or_default();
        names.iter().filter_map(|n| self.store.get(&ObjectRef::new(n).within(ns))).collect()
    }
}
