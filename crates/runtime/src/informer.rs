//! Shared informers: one watch per resource feeding a reflector store and
//! every change handler, with the old version of each object (a pod whose
//! labels changed leaves some Services and joins others). Objects gone while
//! the watch was re-listing are reported as deleted.

use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use futures::StreamExt;
use kube::Resource;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use parking_lot::RwLock;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

/// One change an informer saw.
#[derive(Debug)]
pub enum Change<'a, K> {
    Added(&'a K),
    Modified {
        old: &'a K,
        new: &'a K,
    },
    /// The object's last known state.
    Deleted(&'a K),
}

impl<K> Clone for Change<'_, K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K> Copy for Change<'_, K> {}

impl<'a, K> Change<'a, K> {
    /// From what was there before and what is there now; `None` when both are missing.
    pub fn between(old: Option<&'a K>, new: Option<&'a K>) -> Option<Self> {
        match (old, new) {
            (None, Some(n)) => Some(Change::Added(n)),
            (Some(old), Some(new)) => Some(Change::Modified { old, new }),
            (Some(o), None) => Some(Change::Deleted(o)),
            (None, None) => None,
        }
    }

    /// The object before the change (`None` for an add).
    pub fn before(&self) -> Option<&'a K> {
        match *self {
            Change::Added(_) => None,
            Change::Modified { old, .. } | Change::Deleted(old) => Some(old),
        }
    }

    /// The object after the change (`None` for a delete).
    pub fn after(&self) -> Option<&'a K> {
        match *self {
            Change::Added(new) | Change::Modified { new, .. } => Some(new),
            Change::Deleted(_) => None,
        }
    }

    /// The latest state: the new object, or the last state of a deleted one.
    pub fn object(&self) -> &'a K {
        match *self {
            Change::Added(k) | Change::Modified { new: k, .. } | Change::Deleted(k) => k,
        }
    }

    pub fn is_deleted(&self) -> bool {
        matches!(self, Change::Deleted(_))
    }
}

/// A change handler.
pub type Handler<K> = Arc<dyn Fn(Change<'_, K>) + Send + Sync>;

pub struct Informer<K: Resource<DynamicType = ()> + Clone + 'static> {
    api: Api<K>,
    config: watcher::Config,
    store: Store<K>,
    writer: parking_lot::Mutex<Option<Writer<K>>>,
    handlers: RwLock<Vec<Handler<K>>>,
    synced: watch::Sender<bool>,
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    ObjectRef<K>: Hash + Eq,
{
    pub fn new(api: Api<K>) -> Arc<Self> {
        Self::with_config(api, watcher::Config::default())
    }

    /// An informer over the objects `config` selects (labels, fields).
    pub fn with_config(api: Api<K>, config: watcher::Config) -> Arc<Self> {
        let writer = Writer::default();
        Arc::new(Informer {
            api,
            config,
            store: writer.as_reader(),
            writer: parking_lot::Mutex::new(Some(writer)),
            handlers: RwLock::new(Vec::new()),
            synced: watch::channel(false).0,
        })
    }

    pub fn store(&self) -> &Store<K> {
        &self.store
    }

    /// Adds a change handler (before [`Informer::start`], to see every object).
    pub fn on_change(&self, f: impl Fn(Change<'_, K>) + Send + Sync + 'static) {
        self.handlers.write().push(Arc::new(f));
    }

    fn dispatch(&self, change: Change<'_, K>) {
        let handlers: Vec<Handler<K>> = self.handlers.read().clone();
        for h in handlers {
            h(change);
        }
    }

    /// Starts watching until `stop`.
    pub fn start(self: &Arc<Self>, mut stop: watch::Receiver<bool>) {
        let Some(mut writer) = self.writer.lock().take() else { return };
        let me = self.clone();
        tokio::spawn(async move {
            let stream = watcher::watcher(me.api.clone(), me.config.clone()).default_backoff();
            let mut stream = std::pin::pin!(stream);
            // A (re-)list is applied at its end, all at once; its changes are reported then,
            // so handlers never run ahead of the store.
            let mut listed: Vec<(Option<Arc<K>>, K)> = Vec::new();
            loop {
                let ev = tokio::select! {
                    ev = stream.next() => ev,
                    _ = stop.changed() => return,
                };
                let Some(ev) = ev else { return };
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(e) => {
                        tracing::warn!(error = %e, kind = %K::kind(&()), "watch error; retrying");
                        continue;
                    }
                };
                match &ev {
                    Event::Apply(obj) => {
                        let old = me.store.get(&ObjectRef::from_obj(obj));
                        writer.apply_watcher_event(&ev);
                        me.dispatch(match old.as_deref() {
                            Some(old) => Change::Modified { old, new: obj },
                            None => Change::Added(obj),
                        });
                    }
                    Event::InitApply(obj) => {
                        let old = me.store.get(&ObjectRef::from_obj(obj));
                        writer.apply_watcher_event(&ev);
                        listed.push((old, obj.clone()));
                    }
                    Event::Delete(obj) => {
                        writer.apply_watcher_event(&ev);
                        me.dispatch(Change::Deleted(obj));
                    }
                    Event::Init => {
                        listed.clear();
                        writer.apply_watcher_event(&ev);
                    }
                    Event::InitDone => {
                        tracing::debug!(kind = %K::kind(&()), objects = listed.len(), "listed");
                        let seen: HashSet<ObjectRef<K>> = listed.iter().map(|(_, o)| ObjectRef::from_obj(o)).collect();
                        // Whatever the re-list did not return is gone.
                        let gone: Vec<Arc<K>> = me
                            .store
                            .state()
                            .into_iter()
                            .filter(|o| !seen.contains(&ObjectRef::from_obj(&**o)))
                            .collect();
                        writer.apply_watcher_event(&ev);
                        for (old, new) in listed.drain(..) {
                            me.dispatch(match old.as_deref() {
                                Some(old) => Change::Modified { old, new: &new },
                                None => Change::Added(&new),
                            });
                        }
                        for o in gone {
                            me.dispatch(Change::Deleted(&o));
                        }
                        me.synced.send_replace(true);
                    }
                }
            }
        });
    }

    /// Whether the first list has been applied (and reported).
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits until the first list is in the store.
    pub async fn synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }
}

#[cfg(test)]
mod tests {
    use super::Change;

    #[test]
    fn a_change_knows_its_sides() {
        let (a, b) = (1, 2);
        let added = Change::between(None, Some(&a)).unwrap();
        assert_eq!((added.before(), added.after(), *added.object()), (None, Some(&1), 1));
        let modified = Change::between(Some(&a), Some(&b)).unwrap();
        assert_eq!((modified.before(), modified.after(), *modified.object()), (Some(&1), Some(&2), 2));
        let deleted = Change::between(Some(&a), None).unwrap();
        assert!(deleted.is_deleted());
        assert_eq!((deleted.before(), deleted.after(), *deleted.object()), (Some(&1), None, 1));
        assert!(Change::<i32>::between(None, None).is_none());
    }
}
