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
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use kubesvc_api::kinds;
use kubesvc_api::meta;
use kubesvc_api::resources::{self, Resource};
use kubesvc_store::{EventKind, RangeRequest, Store, WatchBatch};
use parking_lot::RwLock;
use serde_json::{Map, Value};
use tokio::sync::{broadcast, watch};

use crate::Error;
use crate::follow::{Follower, follow};

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
    /// The last revision that changed this resource.
    last_change: i64,
    /// Live watchers; replaced (closing them all) when the cache relists.
    tx: broadcast::Sender<Arc<CacheEvent>>,
}

/// The cache of one resource.
pub struct ResourceCache {
    pub resource: &'static Resource,
    state: RwLock<State>,
    /// The store revision the state reflects. It moves under the write lock when
    /// events change the state, and without it when a revision left this
    /// resource alone (its state at the new revision is the same).
    rv: AtomicI64,
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

/// Which state a list page must show.
#[derive(Clone, Copy, Debug)]
pub enum At {
    /// Whatever the cache holds now.
    Current,
    /// The state at this revision: only servable if the resource has not changed since.
    Exactly(i64),
}

/// One page of a list.
pub struct Page {
    /// The revision the items are at.
    pub rv: i64,
    pub items: Vec<Arc<Entry>>,
    /// How many objects follow the page, counted when asked for; `Some(0)` when none do.
    pub remaining: Option<usize>,
    /// Whether more matching objects follow.
    pub more: bool,
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
                last_change: rv,
                tx,
            }),
            rv: AtomicI64::new(rv),
            capacity,
        }
    }

    pub fn rv(&self) -> i64 {
        self.rv.load(Ordering::Acquire)
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<Entry>> {
        self.state.read().objects.get(&object_key(self.resource, namespace, name)).cloned()
    }

    /// Every object in `namespace` (all when `None`), in key order, and their revision.
    pub fn snapshot(&self, namespace: Option<&str>) -> (i64, Vec<Arc<Entry>>) {
        let page = self.page(namespace, None, At::Current, None, &|_| true, false);
        let page = page.expect("the current state is always servable");
        (page.rv, page.items)
    }

    /// Up to `limit` objects matching `pred`, in `namespace`, after key `after`,
    /// as of `at`; `None` if the cache no longer has that state. All under one
    /// read lock, so the items and their revision agree.
    pub fn page(
        &self,
        namespace: Option<&str>,
        after: Option<&str>,
        at: At,
        limit: Option<usize>,
        pred: &dyn Fn(&Entry) -> bool,
        count_remaining: bool,
    ) -> Option<Page> {
        let st = self.state.read();
        let current = self.rv();
        let rv = match at {
            At::Current => current,
            At::Exactly(want) if st.last_change <= want && want <= current => want,
            At::Exactly(_) => return None,
        };
        let ns = namespace.filter(|_| self.resource.namespaced);
        let lo = match (after, ns) {
            (Some(k), _) => Bound::Excluded(k.to_string()),
            (None, Some(ns)) => Bound::Included(format!("{ns}/")),
            (None, None) => Bound::Unbounded,
        };
        let mut range = st
            .objects
            .range((lo, Bound::Unbounded))
            .take_while(|(k, _)| ns.is_none_or(|ns| k.starts_with(ns) && k.as_bytes().get(ns.len()) == Some(&b'/')))
            .map(|(_, e)| e);
        let limit = limit.unwrap_or(usize::MAX);
        let mut items = Vec::new();
        let mut more = false;
        for e in range.by_ref() {
            if !pred(e) {
                continue;
            }
            if items.len() == limit {
                more = true;
                break;
            }
            items.push(e.clone());
        }
        let remaining = count_remaining.then(|| if more { 1 + range.count() } else { 0 });
        Some(Page { rv, items, remaining, more })
    }

    /// Starts a watch: what to send first, and the live events after it.
    pub fn subscribe(&self, start: WatchStart) -> Result<Subscription, WatchError> {
        let st = self.state.read();
        let live = st.tx.subscribe();
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
        Ok(Subscription { backlog, rv: self.rv(), live })
    }

    fn apply(&self, batch_rv: i64, events: Vec<(EventKind, String, Option<Value>)>) {
        if events.is_empty() {
            self.rv.store(batch_rv, Ordering::Release);
            return;
        }
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
                // A deletion, or a value that cannot be read: the object is gone from what we serve.
                (_, _) => {
                    st.objects.remove(&key);
                    let Some(last) = prev else { continue };
                    // The deletion event carries the last state at the deleting revision.
                    let gone = Arc::new(Entry::build(self.resource, last.value(), batch_rv));
                    CacheEvent { rv: batch_rv, ty: EventType::Deleted, obj: gone, prev: Some(last) }
                }
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
            let _ = st.tx.send(event);
        }
        self.rv.store(batch_rv, Ordering::Release);
    }

    /// Replaces the whole state with `objects` at `rev`, ending every watch.
    fn reset(&self, objects: BTreeMap<String, Arc<Entry>>, rev: i64) {
        let mut st = self.state.write();
        st.objects = objects;
        st.events.clear();
        st.window_start = rev;
        st.last_change = rev;
        st.tx = broadcast::channel(self.capacity.max(16)).0;
        self.rv.store(rev, Ordering::Release);
    }
}

/// The caches of every served resource, in the order of `resources::all()`.
pub struct Cache {
    resources: Vec<Arc<ResourceCache>>,
    prefixes: Vec<String>,
    rv: watch::Sender<i64>,
}

const PREFIX: &[u8] = b"/registry/";

impl Cache {
    /// Loads every object at one revision and follows the store from there until shutdown.
    pub async fn start(
        store: Arc<dyn Store>,
        capacity: usize,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Cache>, Error> {
        let all = resources::all();
        let cache = Arc::new(Cache {
            resources: all.iter().map(|r| Arc::new(ResourceCache::new(r, capacity, 0))).collect(),
            prefixes: all.iter().map(|r| r.key_prefix()).collect(),
            rv: watch::channel(0).0,
        });
        let rev = cache.load_all(&*store).await?;
        // Every watch ends when the cache reloads; clients resume or relist as against Kubernetes.
        let follower: Arc<dyn Follower> = cache.clone();
        tokio::spawn(async move { follow(follower, store, PREFIX, rev, shutdown).await });
        Ok(cache)
    }

    /// Reads every object at the current revision into the caches.
    async fn load_all(&self, store: &dyn Store) -> Result<i64, kubesvc_store::Error> {
        let snapshot = store.range(RangeRequest::prefix(PREFIX)).await?;
        let rev = snapshot.revision;
        let mut per: Vec<BTreeMap<String, Arc<Entry>>> = vec![BTreeMap::new(); self.resources.len()];
        for kv in snapshot.kvs {
            if let Some((i, key, Some(value))) = self.route(&kv.key, Some(&kv.value)) {
                per[i].insert(key, Arc::new(Entry::build(self.resources[i].resource, value, kv.mod_revision)));
            }
        }
        for (rc, objects) in self.resources.iter().zip(per) {
            rc.reset(objects, rev);
        }
        self.rv.send_replace(rev);
        Ok(rev)
    }

    /// The resource cache, key within it, and parsed value (`None` if unreadable) for a store key.
    fn route(&self, key: &[u8], value: Option<&[u8]>) -> Option<(usize, String, Option<Value>)> {
        let key = std::str::from_utf8(key).ok()?;
        let i = self.prefixes.iter().position(|p| key.starts_with(p.as_str()))?;
        let parsed = value.and_then(|v| match serde_json::from_slice(v) {
            Ok(obj) => Some(obj),
            Err(e) => {
                tracing::error!(key, error = %e, "an object in storage cannot be read; it is not served");
                None
            }
        });
        Some((i, key[self.prefixes[i].len()..].to_string(), parsed))
    }

    fn apply_batch(&self, batch: WatchBatch) {
        let mut per: Vec<Vec<(EventKind, String, Option<Value>)>> = vec![Vec::new(); self.resources.len()];
        for ev in batch.events {
            let value = (ev.kind == EventKind::Put).then_some(&ev.kv.value[..]);
            if let Some((i, key, parsed)) = self.route(&ev.kv.key, value) {
                per[i].push((ev.kind, key, parsed));
            }
        }
        for (rc, events) in self.resources.iter().zip(per) {
            rc.apply(batch.revision, events);
        }
        self.rv.send_replace(batch.revision);
    }

    pub fn resource(&self, r: &Resource) -> &Arc<ResourceCache> {
        &self.resources[resources::index(r)]
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

#[async_trait::async_trait]
impl Follower for Cache {
    async fn load(&self, store: &dyn Store) -> Result<i64, kubesvc_store::Error> {
        self.load_all(store).await
    }

    fn apply(&self, batch: WatchBatch) {
        self.apply_batch(batch)
    }
}

#[cfg(test)]
mod tests {
    use kubesvc_store::memory::MemoryStore;
    use kubesvc_store::{Op, Txn};
    use serde_json::json;

    use super::*;

    fn services() -> &'static Resource {
        resources::find("", "v1", "services").unwrap()
    }

    fn svc(ns: &str, name: &str, port: i64) -> Vec<u8> {
        serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns}, "spec": {"ports": [{"port": port}]}}))
        .unwrap()
    }

    async fn put(store: &dyn Store, key: String, value: Vec<u8>) -> i64 {
        let mut txn = Txn::default();
        txn.ops.push(Op::Put { key: key.into_bytes(), value: value.into() });
        match store.txn(txn).await.unwrap() {
            kubesvc_store::TxnResponse::Committed { revision, .. } => revision,
            other => panic!("{other:?}"),
        }
    }

    async fn delete(store: &dyn Store, key: String) -> i64 {
        let txn = Txn { compares: vec![], ops: vec![Op::Delete { key: key.into_bytes() }] };
        match store.txn(txn).await.unwrap() {
            kubesvc_store::TxnResponse::Committed { revision, .. } => revision,
            other => panic!("{other:?}"),
        }
    }

    async fn cache(store: Arc<MemoryStore>, capacity: usize) -> (Arc<Cache>, watch::Sender<bool>) {
        let (stop, stopped) = watch::channel(false);
        (Cache::start(store, capacity, stopped).await.unwrap(), stop)
    }

    #[tokio::test]
    async fn changes_become_events_with_the_state_before() {
        let store = Arc::new(MemoryStore::new());
        let r = services();
        let before = put(&*store, r.key("a", "old"), svc("a", "old", 80)).await;
        let (cache, _stop) = cache(store.clone(), 100).await;
        let rc = cache.resource(r);
        assert_eq!(rc.get("a", "old").map(|e| e.rv), Some(before), "loaded at startup");
        let sub = rc.subscribe(WatchStart::After(before)).ok().unwrap();
        let mut live = sub.live;

        let added = put(&*store, r.key("a", "web"), svc("a", "web", 80)).await;
        let modified = put(&*store, r.key("a", "web"), svc("a", "web", 81)).await;
        let deleted = delete(&*store, r.key("a", "web")).await;
        // A write elsewhere moves the revision, with no event for services.
        let other = put(&*store, "/registry/pods/a/p".into(), b"{}".to_vec()).await;
        assert!(cache.wait_for(other, Duration::from_secs(5)).await);
        assert_eq!(rc.rv(), other);

        let mut seen = Vec::new();
        for _ in 0..3 {
            let e = live.recv().await.unwrap();
            seen.push((e.ty.as_str(), e.rv, e.prev.as_ref().map(|p| p.rv)));
        }
        assert_eq!(
            seen,
            [("ADDED", added, None), ("MODIFIED", modified, Some(added)), ("DELETED", deleted, Some(modified))]
        );
        assert!(rc.get("a", "web").is_none());
        // The ring replays the same events to a watch that resumes.
        let resumed = rc.subscribe(WatchStart::After(added)).ok().unwrap();
        let rvs: Vec<i64> = resumed.backlog.iter().map(|e| e.rv).collect();
        assert_eq!(rvs, [modified, deleted]);
    }

    #[tokio::test]
    async fn a_resume_older_than_the_ring_is_too_old() {
        let store = Arc::new(MemoryStore::new());
        let r = services();
        let (cache, _stop) = cache(store.clone(), 3).await;
        let mut revs = Vec::new();
        for i in 0..5 {
            revs.push(put(&*store, r.key("a", &format!("s{i}")), svc("a", &format!("s{i}"), 80)).await);
        }
        assert!(cache.wait_for(revs[4], Duration::from_secs(5)).await);
        let rc = cache.resource(r);
        match rc.subscribe(WatchStart::After(revs[0])) {
            Err(WatchError::TooOld(asked, oldest)) => assert_eq!((asked, oldest), (revs[0], revs[1])),
            Ok(_) => panic!("the ring holds only the last three events"),
        }
        let ok = rc.subscribe(WatchStart::After(revs[1])).ok().unwrap();
        assert_eq!(ok.backlog.len(), 3);
        let initial = rc.subscribe(WatchStart::Initial).ok().unwrap();
        assert_eq!(initial.backlog.len(), 5, "an initial watch gets every object");
    }

    #[tokio::test]
    async fn pages_by_namespace_limit_and_revision() {
        let store = Arc::new(MemoryStore::new());
        let r = services();
        for (ns, name) in [("a", "x"), ("a", "y"), ("a", "z"), ("ab", "w"), ("b", "v")] {
            put(&*store, r.key(ns, name), svc(ns, name, 80)).await;
        }
        // An unreadable object is not served, and stops nothing else.
        let last = put(&*store, r.key("a", "broken"), b"{not json".to_vec()).await;
        let (cache, _stop) = cache(store.clone(), 100).await;
        let rc = cache.resource(r);
        assert!(rc.get("a", "broken").is_none());
        let names = |p: &Page| p.items.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
        let all = |_: &Entry| true;
        let p = rc.page(Some("a"), None, At::Current, Some(2), &all, true).unwrap();
        assert_eq!((names(&p), p.more, p.remaining), (vec!["x".to_string(), "y".into()], true, Some(1)));
        let next = rc.page(Some("a"), Some("a/y"), At::Exactly(p.rv), Some(2), &all, true).unwrap();
        assert_eq!((names(&next), next.more, next.remaining), (vec!["z".to_string()], false, Some(0)), "not ab/w");
        assert_eq!(p.rv, last);
        // Once the resource changes, the old state can no longer be paged.
        let changed = put(&*store, r.key("b", "u"), svc("b", "u", 80)).await;
        assert!(cache.wait_for(changed, Duration::from_secs(5)).await);
        assert!(rc.page(Some("a"), Some("a/y"), At::Exactly(p.rv), Some(2), &all, false).is_none());
        let ports_81 = |e: &Entry| e.value()["spec"]["ports"][0]["port"] == 81;
        assert!(rc.page(None, None, At::Current, None, &ports_81, false).unwrap().items.is_empty());
        let (rv, everything) = rc.snapshot(None);
        assert_eq!((rv, everything.len()), (changed, 6));
    }
}
