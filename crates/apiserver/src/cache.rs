//! The watch cache: every served object in memory, fed by one store watch, so
//! that gets, lists and watches never re-read the store.
//!
//! Each resource keeps its objects ordered by key (namespace/name), each one
//! serialized once with its resourceVersion; a ring of recent events lets a
//! watch resume from a resourceVersion; live watchers share one broadcast.
//! A resource's state and revision change together under its lock, so a
//! snapshot and a subscription taken under that lock never miss or repeat an event.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use kubesvc_api::kinds;
use kubesvc_api::meta;
use kubesvc_api::resources::{self, Resource};
use kubesvc_store::{EventKind, RangeRequest, Store, WatchBatch};
use parking_lot::RwLock;
use serde_json::{Map, Value};
use tokio::sync::{broadcast, watch};

use crate::Error;

/// One object as the cache holds it.
pub struct Entry {
    pub namespace: String,
    pub name: String,
    pub rv: i64,
    pub labels: Option<Map<String, Value>>,
    /// Values of the kind's field labels, for field selectors.
    fields: Vec<(&'static str, String)>,
    /// The object as JSON, with apiVersion, kind and resourceVersion.
    pub json: Bytes,
    /// The object as a bare protobuf message, made on first use.
    pb: OnceLock<Bytes>,
}

impl Entry {
    /// An entry for `obj` at revision `rv`.
    pub fn build(r: &'static Resource, mut obj: Value, rv: i64) -> Entry {
        meta::set(&mut obj, "resourceVersion", rv.to_string());
        let (extra, _) = r.rules.field_labels();
        let fields = extra.iter().map(|l| (*l, kinds::field_value(r.rules, &obj, l).unwrap_or_default())).collect();
        Entry {
            namespace: meta::namespace(&obj).to_string(),
            name: meta::name(&obj).to_string(),
            rv,
            labels: meta::labels(&obj).cloned(),
            fields,
            json: Bytes::from(serde_json::to_vec(&obj).expect("a JSON value serializes")),
            pb: OnceLock::new(),
        }
    }

    /// The object, parsed.
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }

    /// The value of a field label.
    pub fn field(&self, label: &str) -> Option<String> {
        match label {
            "metadata.name" => Some(self.name.clone()),
            "metadata.namespace" => Some(self.namespace.clone()),
            _ => self.fields.iter().find(|(l, _)| *l == label).map(|(_, v)| v.clone()),
        }
    }

    /// The bare protobuf message of the object.
    pub fn protobuf(&self, r: &'static Resource) -> &Bytes {
        self.pb.get_or_init(|| Bytes::from(kubesvc_wire::encode_raw(&self.value(), r.schema())))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

pub struct CacheEvent {
    pub rv: i64,
    pub ty: EventType,
    /// The new state, or for a deletion the last state (with the deleting revision).
    pub obj: Arc<Entry>,
    pub prev: Option<Arc<Entry>>,
}

struct State {
    objects: BTreeMap<String, Arc<Entry>>,
    events: VecDeque<Arc<CacheEvent>>,
    /// Every event after this revision is in `events`.
    window_start: i64,
    /// The store revision this resource's state reflects.
    rv: i64,
    /// The last revision that changed this resource.
    last_change: i64,
}

/// The cache of one resource.
pub struct ResourceCache {
    pub resource: &'static Resource,
    state: RwLock<State>,
    tx: broadcast::Sender<Arc<CacheEvent>>,
    capacity: usize,
}

/// Where a watch starts.
pub enum WatchStart {
    /// With synthetic ADDED events for every current object.
    Initial,
    /// After this resourceVersion.
    After(i64),
}

pub struct Subscription {
    /// Events to send before live ones.
    pub backlog: Vec<Arc<CacheEvent>>,
    /// The revision the backlog brings the watcher to.
    pub rv: i64,
    pub live: broadcast::Receiver<Arc<CacheEvent>>,
}

/// Why a watch cannot start where asked.
pub enum WatchError {
    /// The resourceVersion is older than the cache remembers: (requested, oldest available).
    TooOld(i64, i64),
}

/// The key of an object within its resource: `namespace/name` or `name`.
pub fn object_key(r: &Resource, namespace: &str, name: &str) -> String {
    if r.namespaced { format!("{namespace}/{name}") } else { name.to_string() }
}

impl ResourceCache {
    fn new(resource: &'static Resource, capacity: usize, rv: i64) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(16));
        ResourceCache {
            resource,
            state: RwLock::new(State {
                objects: BTreeMap::new(),
                events: VecDeque::new(),
                window_start: rv,
                rv,
                last_change: rv,
            }),
            tx,
            capacity,
        }
    }

    pub fn rv(&self) -> i64 {
        self.state.read().rv
    }

    /// The revision this resource last changed at, and the revision its state reflects.
    pub fn revisions(&self) -> (i64, i64) {
        let st = self.state.read();
        (st.last_change, st.rv)
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<Entry>> {
        self.state.read().objects.get(&object_key(self.resource, namespace, name)).cloned()
    }

    /// The objects in `namespace` (all when `None`) with keys after `after`, in
    /// key order, and the revision they are at.
    pub fn snapshot(&self, namespace: Option<&str>, after: Option<&str>) -> (i64, Vec<Arc<Entry>>) {
        let st = self.state.read();
        let lo = match after {
            Some(k) => Bound::Excluded(k.to_string()),
            None => match namespace {
                Some(ns) if self.resource.namespaced => Bound::Included(format!("{ns}/")),
                _ => Bound::Unbounded,
            },
        };
        let items = st
            .objects
            .range((lo, Bound::Unbounded))
            .take_while(|(k, _)| match namespace {
                Some(ns) if self.resource.namespaced => k.starts_with(ns) && k.as_bytes().get(ns.len()) == Some(&b'/'),
                _ => true,
            })
            .map(|(_, e)| e.clone())
            .collect();
        (st.rv, items)
    }

    /// How many objects the resource has (in a namespace, or everywhere).
    pub fn count(&self, namespace: Option<&str>) -> usize {
        match namespace {
            None => self.state.read().objects.len(),
            Some(_) => self.snapshot(namespace, None).1.len(),
        }
    }

    /// Starts a watch: what to send first, and the live events after it.
    pub fn subscribe(&self, start: WatchStart) -> Result<Subscription, WatchError> {
        let st = self.state.read();
        let live = self.tx.subscribe();
        let backlog = match start {
            WatchStart::Initial => st
                .objects
                .values()
                .map(|e| Arc::new(CacheEvent { rv: e.rv, ty: EventType::Added, obj: e.clone(), prev: None }))
                .collect(),
            WatchStart::After(rv) => {
                if rv < st.window_start {
                    return Err(WatchError::TooOld(rv, st.window_start));
                }
                st.events.iter().filter(|e| e.rv > rv).cloned().collect()
            }
        };
        Ok(Subscription { backlog, rv: st.rv, live })
    }

    fn apply(&self, batch_rv: i64, events: Vec<(EventKind, String, Option<Value>)>) {
        let mut st = self.state.write();
        for (kind, key, value) in events {
            let prev = st.objects.get(&key).cloned();
            let event = match (kind, value) {
                (EventKind::Put, Some(obj)) => {
                    let entry = Arc::new(Entry::build(self.resource, obj, batch_rv));
                    st.objects.insert(key, entry.clone());
                    let ty = if prev.is_some() { EventType::Modified } else { EventType::Added };
                    CacheEvent { rv: batch_rv, ty, obj: entry, prev }
                }
                (EventKind::Delete, _) => {
                    st.objects.remove(&key);
                    let Some(last) = prev else { continue };
                    // The deletion event carries the last state at the deleting revision.
                    let gone = Arc::new(Entry::build(self.resource, last.value(), batch_rv));
                    CacheEvent { rv: batch_rv, ty: EventType::Deleted, obj: gone, prev: Some(last) }
                }
                (EventKind::Put, None) => continue,
            };
            let event = Arc::new(event);
            st.last_change = batch_rv;
            st.events.push_back(event.clone());
            while st.events.len() > self.capacity {
                if let Some(old) = st.events.pop_front() {
                    st.window_start = old.rv;
                }
            }
            // Nobody listening is fine.
            let _ = self.tx.send(event);
        }
        st.rv = batch_rv;
    }
}

/// The caches of every served resource.
pub struct Cache {
    resources: Vec<(String, Arc<ResourceCache>)>,
    rv: watch::Sender<i64>,
}

impl Cache {
    /// Loads every object at one revision and starts following the store from there.
    pub async fn start(store: Arc<dyn Store>, capacity: usize) -> Result<Arc<Cache>, Error> {
        let snapshot = store.range(RangeRequest::prefix(b"/registry/")).await?;
        let rev = snapshot.revision;
        let resources: Vec<(String, Arc<ResourceCache>)> =
            resources::all().iter().map(|r| (r.key_prefix(), Arc::new(ResourceCache::new(r, capacity, rev)))).collect();
        let (tx, _) = watch::channel(rev);
        let cache = Arc::new(Cache { resources, rv: tx });
        for kv in snapshot.kvs {
            if let Some((i, key, value)) = cache.route(&kv.key, Some(&kv.value)) {
                let st = &cache.resources[i].1;
                let entry = Arc::new(Entry::build(st.resource, value.unwrap_or(Value::Null), kv.mod_revision));
                st.state.write().objects.insert(key, entry);
            }
        }
        let stream = store.watch(b"/registry/".to_vec(), rev + 1).await?;
        let c = cache.clone();
        tokio::spawn(async move { c.follow(stream).await });
        Ok(cache)
    }

    /// The resource cache, key within it and parsed value for a store key.
    fn route(&self, key: &[u8], value: Option<&[u8]>) -> Option<(usize, String, Option<Value>)> {
        let key = std::str::from_utf8(key).ok()?;
        let (i, (prefix, _)) = self.resources.iter().enumerate().find(|(_, (p, _))| key.starts_with(p.as_str()))?;
        let parsed = match value {
            Some(v) => match serde_json::from_slice(v) {
                Ok(obj) => Some(obj),
                Err(e) => {
                    tracing::error!(key, error = %e, "skipping an unreadable object in storage");
                    return None;
                }
            },
            None => None,
        };
        Some((i, key[prefix.len()..].to_string(), parsed))
    }

    async fn follow(self: Arc<Self>, mut stream: kubesvc_store::WatchStream) {
        while let Some(batch) = stream.next().await {
            match batch {
                Ok(b) => self.apply(b),
                Err(e) => {
                    // The store watch only ends with the store; nothing can be served fresh after that.
                    tracing::error!(error = %e, "the watch cache lost its store watch");
                    return;
                }
            }
        }
    }

    fn apply(&self, batch: WatchBatch) {
        let mut per: Vec<Vec<(EventKind, String, Option<Value>)>> = vec![Vec::new(); self.resources.len()];
        for ev in batch.events {
            let value = (ev.kind == EventKind::Put).then_some(&ev.kv.value[..]);
            if let Some((i, key, parsed)) = self.route(&ev.kv.key, value) {
                per[i].push((ev.kind, key, parsed));
            }
        }
        for ((_, rc), events) in self.resources.iter().zip(per) {
            rc.apply(batch.revision, events);
        }
        self.rv.send_replace(batch.revision);
    }

    pub fn resource(&self, r: &Resource) -> &Arc<ResourceCache> {
        &self.resources.iter().find(|(p, _)| *p == r.key_prefix()).expect("every served resource has a cache").1
    }

    /// The revision the whole cache has reached.
    pub fn rv(&self) -> i64 {
        *self.rv.borrow()
    }

    /// Waits until the cache has reached `rev`; false on timeout.
    pub async fn wait_for(&self, rev: i64, timeout: Duration) -> bool {
        let mut rx = self.rv.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|r| *r >= rev)).await.is_ok_and(|r| r.is_ok())
    }
}
