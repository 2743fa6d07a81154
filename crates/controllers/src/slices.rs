//! What the two EndpointSlice writers (the EndpointSlice controller and the
//! mirroring controller) share: an index of slices by manager and Service,
//! a tracker of their own writes, and the writing itself.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use parking_lot::Mutex;

use crate::podindex::ServiceKey;
use kubesvc_runtime::{Change, Informer};

pub use kubesvc_runtime::wellknown::{LABEL_ENDPOINTSLICE_MANAGED_BY as LABEL_MANAGED_BY, LABEL_SERVICE_NAME};

/// The Service a slice of `manager` belongs to.
pub fn owner_key(s: &EndpointSlice, manager: &str) -> Option<ServiceKey> {
    let labels = s.labels();
    (labels.get(LABEL_MANAGED_BY).map(String::as_str) == Some(manager))
        .then(|| labels.get(LABEL_SERVICE_NAME).map(|svc| (s.namespace().unwrap_or_default(), svc.clone())))
        .flatten()
}

/// A write not yet seen come back through the informer.
struct Pending {
    generation: i64,
    at: Instant,
}

/// A write not seen this long is taken as lost (a watch gap): stop waiting for it.
const PENDING_TTL: Duration = Duration::from_secs(10);

/// One manager's slices, by Service, and its writes not yet seen in the cache.
pub struct Slices {
    manager: &'static str,
    store: Store<EndpointSlice>,
    by_service: Mutex<HashMap<ServiceKey, BTreeSet<String>>>,
    /// Per Service: slice name → what was written (generation 0: deleted).
    written: Mutex<HashMap<ServiceKey, HashMap<String, Pending>>>,
}

impl Slices {
    /// Follows `informer`; `resync` is told which Service to sync when a slice
    /// changed other than by our own hand.
    pub fn attach(
        informer: &Informer<EndpointSlice>,
        manager: &'static str,
        resync: impl Fn(ServiceKey) + Send + Sync + 'static,
    ) -> Arc<Slices> {
        let me = Arc::new(Slices {
            manager,
            store: informer.store().clone(),
            by_service: Mutex::new(HashMap::new()),
            written: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&me);
        informer.on_change(move |change| {
            if let Some(me) = weak.upgrade() {
                for k in me.changed(change) {
                    resync(k);
                }
            }
        });
        me
    }

    /// Indexes a change; returns the Services to sync.
    fn changed(&self, change: Change<'_, EndpointSlice>) -> Vec<ServiceKey> {
        let (old, new) = (change.before(), change.after());
        let (old_key, new_key) =
            (old.and_then(|s| owner_key(s, self.manager)), new.and_then(|s| owner_key(s, self.manager)));
        {
            let mut idx = self.by_service.lock();
            if let (Some(k), Some(o)) = (&old_key, old)
                && let Some(set) = idx.get_mut(k)
            {
                set.remove(&o.name_any());
                if set.is_empty() {
                    idx.remove(k);
                }
            }
            if let (Some(k), Some(n)) = (&new_key, new) {
                idx.entry(k.clone()).or_default().insert(n.name_any());
            }
        }
        let name = change.object().name_any();
        let mut written = self.written.lock();
        let mut take = |k: &Option<ServiceKey>| -> Option<i64> {
            let per = written.get_mut(k.as_ref()?)?;
            let g = per.get(&name).map(|p| p.generation);
            if let Some(g) = g {
                let seen = match new {
                    Some(n) => g > 0 && n.metadata.generation.unwrap_or(0) >= g,
                    None => true,
                };
                if seen {
                    per.remove(&name);
                }
            }
            g
        };
        let expected = take(&new_key).or_else(|| take(&old_key));
        let own = match (expected, new) {
            (Some(g), Some(n)) => g > 0 && n.metadata.generation.unwrap_or(0) >= g && old_key == new_key,
            (Some(g), None) => g == 0,
            _ => false,
        };
        if own {
            return Vec::new();
        }
        let mut keys: Vec<ServiceKey> = old_key.into_iter().collect();
        if let Some(k) = new_key
            && !keys.contains(&k)
        {
            keys.push(k);
        }
        keys
    }

    /// The Service's slices in the cache, without those being deleted.
    pub fn of(&self, key: &ServiceKey) -> Vec<Arc<EndpointSlice>> {
        let names: Vec<String> =
            self.by_service.lock().get(key).map(|s| s.iter().cloned().collect()).unwrap_or_default();
        names
            .iter()
            .filter_map(|n| self.store.get(&ObjectRef::new(n).within(&key.0)))
            .filter(|s| s.metadata.deletion_timestamp.is_none())
            .collect()
    }

    /// Whether the cache has not yet caught up with what we wrote for this Service.
    pub fn stale(&self, key: &ServiceKey) -> bool {
        let mut written = self.written.lock();
        let Some(per) = written.get_mut(key) else { return false };
        per.retain(|_, p| p.at.elapsed() < PENDING_TTL);
        let mine = |s: &EndpointSlice| owner_key(s, self.manager).as_ref() == Some(key);
        let lagging = per.iter().any(|(name, p)| {
            let cached = self.store.get(&ObjectRef::new(name).within(&key.0));
            match (p.generation, cached) {
                (0, Some(s)) => mine(&s),
                (0, None) => false,
                (g, Some(s)) => mine(&s) && s.metadata.generation.unwrap_or(0) < g,
                (_, None) => true,
            }
        });
        if per.is_empty() {
            written.remove(key);
        }
        lagging
    }

    /// Creates, then updates, then deletes, remembering each write.
    pub async fn write(
        &self,
        client: &Client,
        key: &ServiceKey,
        create: Vec<EndpointSlice>,
        update: Vec<EndpointSlice>,
        delete: Vec<String>,
    ) -> Result<(), kube::Error> {
        let ns = key.0.as_str();
        let api: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
        for s in create {
            let made = api.create(&PostParams::default(), &s).await?;
            self.wrote(key, &made.name_any(), made.metadata.generation.unwrap_or(1));
        }
        for s in update {
            let name = s.name_any();
            let made = api.replace(&name, &PostParams::default(), &s).await?;
            self.wrote(key, &name, made.metadata.generation.unwrap_or(1));
        }
        for name in delete {
            self.wrote(key, &name, 0);
            if let Err(e) = api.delete(&name, &DeleteParams::default()).await {
                // Not deleted (or already gone): nothing to wait for.
                if let Some(per) = self.written.lock().get_mut(key) {
                    per.remove(&name);
                }
                match e {
                    kube::Error::Api(e) if e.code == 404 => {}
                    e => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Remembers a write, unless the cache already shows it.
    fn wrote(&self, key: &ServiceKey, name: &str, generation: i64) {
        if generation > 0
            && self
                .store
                .get(&ObjectRef::new(name).within(&key.0))
                .is_some_and(|s| s.metadata.generation.unwrap_or(0) >= generation)
        {
            return;
        }
        let pending = Pending { generation, at: Instant::now() };
        self.written.lock().entry(key.clone()).or_default().insert(name.to_string(), pending);
    }
}
