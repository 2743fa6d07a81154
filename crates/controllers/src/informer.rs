//! Shared informers: one watch per resource feeding a reflector store and
//! every controller's change handlers, with the old version of each object
//! (controllers need it: a pod whose labels changed leaves some Services and
//! joins others). Objects gone while the watch was re-listing are reported
//! as deleted.

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

/// Called with (old, new): `old` is `None` for an add, `new` is `None` for a delete.
pub type Handler<K> = Arc<dyn Fn(Option<&K>, Option<&K>) + Send + Sync>;

pub struct Informer<K: Resource<DynamicType = ()> + Clone + 'static> {
    api: Api<K>,
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
        let writer = Writer::default();
        Arc::new(Informer {
            api,
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
    pub fn on_change(&self, f: impl Fn(Option<&K>, Option<&K>) + Send + Sync + 'static) {
        self.handlers.write().push(Arc::new(f));
    }

    fn dispatch(&self, old: Option<&K>, new: Option<&K>) {
        let handlers: Vec<Handler<K>> = self.handlers.read().clone();
        for h in handlers {
            h(old, new);
        }
    }

    /// Starts watching until `stop`.
    pub fn start(self: &Arc<Self>, mut stop: watch::Receiver<bool>) {
        let Some(mut writer) = self.writer.lock().take() else { return };
        let me = self.clone();
        tokio::spawn(async move {
            let stream = watcher::watcher(me.api.clone(), watcher::Config::default()).default_backoff();
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
                        me.dispatch(old.as_deref(), Some(obj));
                    }
                    Event::InitApply(obj) => {
                        let old = me.store.get(&ObjectRef::from_obj(obj));
                        writer.apply_watcher_event(&ev);
                        listed.push((old, obj.clone()));
                    }
                    Event::Delete(obj) => {
                        writer.apply_watcher_event(&ev);
                        me.dispatch(Some(obj), None);
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
                            me.dispatch(old.as_deref(), Some(&new));
                        }
                        for o in gone {
                            me.dispatch(Some(&o), None);
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
