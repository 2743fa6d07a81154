//! The registry over a memory store, without HTTP: the write path's rules and
//! what admission steps may add to a transaction.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use kubesvc_store::memory::MemoryStore;
use kubesvc_store::{Compare, Op, RangeRequest};
use serde_json::json;
use tokio::sync::watch;

use super::*;

fn find(plural: &str) -> &'static Resource {
    resources::find("", "v1", plural).unwrap()
}

const WRITE: WriteOptions = WriteOptions { dry_run: false, field_validation: FieldValidation::Strict };

/// Appends a write of `/side/<name>` to every Endpoints create and a release to every delete;
/// with `fail`, a compare that never holds.
struct SideKey {
    fail: AtomicBool,
    calls: AtomicUsize,
}

impl SideKey {
    fn new(fail: bool) -> Arc<SideKey> {
        Arc::new(SideKey { fail: AtomicBool::new(fail), calls: AtomicUsize::new(0) })
    }

    fn never_holds(&self, txn: &mut TxnAppend) {
        if self.fail.load(Ordering::SeqCst) {
            txn.compare(Compare::ModRevision(b"/side/never".to_vec(), 12345));
        }
    }
}

#[async_trait]
impl Admission for SideKey {
    fn handles(&self, r: &Resource) -> bool {
        r.plural == "endpoints"
    }

    async fn create(
        &self,
        _r: &'static Resource,
        obj: &mut Value,
        txn: &mut TxnAppend,
        _: bool,
    ) -> Result<(), StatusError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let key = format!("/side/{}", meta::name(obj)).into_bytes();
        self.never_holds(txn);
        txn.op(Op::Put { key, value: Bytes::from_static(b"held") });
        Ok(())
    }

    async fn update(
        &self,
        _r: &'static Resource,
        _new: &mut Value,
        _old: &Value,
        txn: &mut TxnAppend,
        _: bool,
    ) -> Result<(), StatusError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.never_holds(txn);
        Ok(())
    }

    async fn delete(&self, _r: &'static Resource, old: &Value, txn: &mut TxnAppend) -> Result<(), StatusError> {
        txn.op(Op::Delete { key: format!("/side/{}", meta::name(old)).into_bytes() });
        Ok(())
    }
}

async fn registry(admission: Vec<Arc<dyn Admission>>) -> (Registry, Arc<MemoryStore>, watch::Sender<bool>) {
    let store = Arc::new(MemoryStore::new());
    let (stop, stopped) = watch::channel(false);
    let cache = Cache::start(store.clone(), 1000, stopped).await.unwrap();
    let reg = Registry::new(store.clone(), cache, admission);
    crate::namespaces::bootstrap(&reg).await.unwrap();
    (reg, store, stop)
}

fn endpoints(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name},
        "subsets": [{"addresses": [{"ip": "10.1.0.1"}], "ports": [{"port": 80}]}]})
}

async fn side_keys(store: &MemoryStore) -> Vec<String> {
    let kvs = store.range(RangeRequest::prefix(b"/side/")).await.unwrap().kvs;
    kvs.iter().map(|kv| String::from_utf8_lossy(&kv.key).into_owned()).collect()
}

#[tokio::test]
async fn admission_writes_commit_with_the_object_or_not_at_all() {
    let side = SideKey::new(false);
    let (reg, store, _stop) = registry(vec![side.clone()]).await;
    let eps = find("endpoints");
    let w = reg.create(eps, "default", endpoints("web"), WRITE).await.unwrap();
    assert!(w.created);
    assert_eq!(side_keys(&store).await, ["/side/web"]);
    // A create that fails validation writes nothing, admission's keys included.
    let mut bad = endpoints("Bad_Name");
    meta::set(&mut bad, "name", "Bad_Name");
    assert_eq!(reg.create(eps, "default", bad, WRITE).await.err().map(|e| e.code), Some(422));
    // A second create of the same name: the object's own compare decides, 409.
    let err = reg.create(eps, "default", endpoints("web"), WRITE).await.err().unwrap();
    assert_eq!((err.code, err.message.as_str()), (409, "endpoints \"web\" already exists"));
    assert_eq!(side_keys(&store).await, ["/side/web"]);
    // Delete releases what admission holds, in the same transaction.
    let gone = reg.delete(eps, "default", "web", &DeleteOptions::default()).await.unwrap();
    assert!(matches!(gone, Deleted::Gone(_)));
    assert!(side_keys(&store).await.is_empty());
}

#[tokio::test]
async fn a_compare_admission_appended_that_never_holds_is_retried_then_refused() {
    let side = SideKey::new(true);
    let (reg, store, _stop) = registry(vec![side.clone()]).await;
    let err = reg.create(find("endpoints"), "default", endpoints("web"), WRITE).await.err().unwrap();
    assert_eq!(err.code, 409);
    assert_eq!(side.calls.load(Ordering::SeqCst), MAX_RETRIES, "each lost race is retried, up to the limit");
    assert!(side_keys(&store).await.is_empty());
    assert!(reg.read(find("endpoints"), "default", "web").await.unwrap().is_none());
}

#[tokio::test]
async fn updates_need_the_current_version_and_no_op_writes_move_nothing() {
    let (reg, _store, _stop) = registry(Vec::new()).await;
    let eps = find("endpoints");
    let created = reg.create(eps, "default", endpoints("web"), WRITE).await.unwrap().obj;
    let rv = meta::resource_version(&created).to_string();
    // The same object again: nothing written, the resourceVersion stays.
    let same = reg.update(eps, "default", "web", created.clone(), None, WRITE).await.unwrap();
    assert_eq!(meta::resource_version(&same.obj), rv);
    let mut changed = created.clone();
    changed["metadata"]["labels"] = json!({"a": "b"});
    let moved = reg.update(eps, "default", "web", changed.clone(), None, WRITE).await.unwrap();
    assert_ne!(meta::resource_version(&moved.obj), rv);
    // The old version is stale now.
    changed["metadata"]["labels"] = json!({"a": "c"});
    let err = reg.update(eps, "default", "web", changed, None, WRITE).await.err().unwrap();
    assert_eq!(err.code, 409);
    assert!(
        err.message.contains("the object has been modified; please apply your changes to the latest version"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn finalizers_hold_a_delete_and_the_last_one_out_deletes() {
    let side = SideKey::new(false);
    let (reg, store, _stop) = registry(vec![side]).await;
    let eps = find("endpoints");
    let mut obj = endpoints("held");
    obj["metadata"]["finalizers"] = json!(["example.com/hold"]);
    reg.create(eps, "default", obj, WRITE).await.unwrap();
    let Deleted::Pending(marked) = reg.delete(eps, "default", "held", &DeleteOptions::default()).await.unwrap() else {
        panic!("a finalizer holds the object")
    };
    assert!(meta::deletion_timestamp(&marked).is_some());
    assert_eq!(side_keys(&store).await, ["/side/held"], "nothing is released while it is held");
    let m = MutateOptions::default();
    reg.mutate(eps, "default", "held", None, m, |o| {
        meta::set_finalizers(o, Vec::new());
        Ok(())
    })
    .await
    .unwrap();
    assert!(reg.read(eps, "default", "held").await.unwrap().is_none(), "removing the last finalizer deletes");
    assert!(side_keys(&store).await.is_empty(), "and releases what a delete releases");
}

#[tokio::test]
async fn namespaces_terminate_first_and_immortal_ones_stay() {
    let (reg, _store, _stop) = registry(Vec::new()).await;
    let ns = find("namespaces");
    let err = reg.delete(ns, "", "default", &DeleteOptions::default()).await.err().unwrap();
    assert_eq!(
        (err.code, err.message.as_str()),
        (403, "namespaces \"default\" is forbidden: this namespace may not be deleted")
    );
    let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}});
    reg.create(ns, "", obj, WRITE).await.unwrap();
    let Deleted::Pending(t) = reg.delete(ns, "", "shop", &DeleteOptions::default()).await.unwrap() else {
        panic!("a namespace is marked terminating first")
    };
    assert_eq!(t["status"]["phase"], "Terminating");
    assert_eq!(t["spec"]["finalizers"], json!(["kubernetes"]));
    // New content is refused while it terminates.
    let err = reg.create(find("endpoints"), "shop", endpoints("late"), WRITE).await.err().unwrap();
    assert_eq!(err.code, 403);
    assert!(err.message.contains("because it is being terminated"), "{}", err.message);
    // Its own finalizer removed (the namespace controller's last step), it is gone.
    let m = MutateOptions::default();
    reg.mutate(ns, "", "shop", Some(Subresource::Finalize), m, |o| {
        o["spec"]["finalizers"] = json!([]);
        Ok(())
    })
    .await
    .unwrap();
    assert!(reg.read(ns, "", "shop").await.unwrap().is_none());
}

/// Whatever admission appends, the object's own compare is read first: a
/// create of an existing name is AlreadyExists, and an update whose appended
/// compare fails is a lost race, retried, never a stale-version conflict.
#[tokio::test]
async fn the_objects_own_compare_decides_before_appended_ones() {
    let side = SideKey::new(false);
    let (reg, _store, _stop) = registry(vec![side.clone()]).await;
    let eps = find("endpoints");
    let created = reg.create(eps, "default", endpoints("web"), WRITE).await.unwrap().obj;
    side.fail.store(true, Ordering::SeqCst);
    let err = reg.create(eps, "default", endpoints("web"), WRITE).await.err().unwrap();
    assert_eq!((err.code, err.message.as_str()), (409, "endpoints \"web\" already exists"));

    side.calls.store(0, Ordering::SeqCst);
    let mut changed = created.clone();
    changed["metadata"]["labels"] = json!({"a": "b"});
    let err = reg.update(eps, "default", "web", changed, None, WRITE).await.err().unwrap();
    assert_eq!(err.code, 409);
    assert!(err.message.contains("the object has been modified too often to update"), "{}", err.message);
    assert_eq!(side.calls.load(Ordering::SeqCst), MAX_RETRIES, "each race lost to the appended compare is retried");
    let stored = reg.read(eps, "default", "web").await.unwrap().unwrap();
    assert_eq!(stored.mod_revision.to_string(), meta::resource_version(&created), "nothing was written");
}
