//! The generic registry: how every kind is created (`create.rs`), updated
//! and patched (`update.rs`) and deleted (`delete.rs`), as Kubernetes'
//! generic store does it, with the per-kind rules of kubesvc-api. Reads come
//! from the watch cache; writes are compare-and-swap transactions on the
//! store, retried when another writer got there first. Admission steps may append their own compares and writes
//! (allocations) to the same transaction through a [`TxnAppend`].

mod create;
mod delete;
mod update;

pub use delete::gc_finalizers;
pub use update::MutateOptions;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use kubesvc_api::kinds;
use kubesvc_api::meta;
use kubesvc_api::patch::{self, PatchError, PatchType};
use kubesvc_api::resources::{self, Resource, Subresource};
use kubesvc_api::schema::canonicalize;
use kubesvc_api::status::{GroupKind, StatusError};
use kubesvc_api::validation::{ErrorList, FieldError, validate_object_meta, validate_object_meta_update};
use kubesvc_store::{Compare, KeyValue, Op, Store, Txn};
use serde_json::{Value, json};

use crate::cache::{Cache, Entry};

/// What admission steps add to an object's store transaction. The registry's
/// own compares (the object's revision first) and its write of the object
/// always lead; a step can only append after them.
#[derive(Debug, Default)]
pub struct TxnAppend {
    compares: Vec<Compare>,
    ops: Vec<Op>,
}

impl TxnAppend {
    /// The transaction commits only if this holds too.
    pub fn compare(&mut self, c: Compare) {
        self.compares.push(c);
    }

    /// Written in the same transaction as the object.
    pub fn op(&mut self, op: Op) {
        self.ops.push(op);
    }

    /// The transaction writing the object with `op`: first the compare that the
    /// object is at `object_rev` (0: absent), which failure handling reads
    /// first; then the registry's `fences`; then what the steps appended.
    fn after(self, object_rev: i64, fences: Vec<Compare>, op: Op) -> Txn {
        let mut compares = vec![Compare::ModRevision(op.key().to_vec(), object_rev)];
        compares.extend(fences);
        compares.extend(self.compares);
        let mut ops = vec![op];
        ops.extend(self.ops);
        Txn { compares, ops }
    }
}

/// A step with I/O in the write path of some kinds (for example allocating a
/// Service's cluster IP): it sees the object about to be written and may
/// append compares and writes to the same store transaction.
#[async_trait]
pub trait Admission: Send + Sync {
    fn handles(&self, r: &Resource) -> bool;

    /// A dry run must check what it can and change nothing (its transaction is never committed).
    async fn create(
        &self,
        _r: &'static Resource,
        _obj: &mut Value,
        _txn: &mut TxnAppend,
        _dry_run: bool,
    ) -> Result<(), StatusError> {
        Ok(())
    }

    async fn update(
        &self,
        _r: &'static Resource,
        _new: &mut Value,
        _old: &Value,
        _txn: &mut TxnAppend,
        _dry_run: bool,
    ) -> Result<(), StatusError> {
        Ok(())
    }

    async fn delete(&self, _r: &'static Resource, _old: &Value, _txn: &mut TxnAppend) -> Result<(), StatusError> {
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn parse(s: Option<&str>) -> Result<Self, StatusError> {
        match s.unwrap_or_default() {
            "" | "Warn" => Ok(FieldValidation::Warn),
            "Ignore" => Ok(FieldValidation::Ignore),
            "Strict" => Ok(FieldValidation::Strict),
            other => {
                let mut errs = ErrorList::new();
                errs.push(FieldError::not_supported("fieldValidation", other, &["", "Ignore", "Strict", "Warn"]));
                Err(StatusError::invalid(GroupKind { group: "meta.k8s.io", kind: "CreateOptions" }, "", &errs))
            }
        }
    }
}

/// Options every write takes.
#[derive(Clone, Copy, Debug)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_validation: FieldValidation,
}

/// DELETE's options, from the body or the query.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub grace_period: Option<i64>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub dry_run: bool,
    /// `propagationPolicy`: Orphan, Background or Foreground.
    pub propagation: Option<String>,
    /// The legacy `orphanDependents`.
    pub orphan_dependents: Option<bool>,
}

use kubesvc_api::wellknown::{FINALIZER_FOREGROUND, FINALIZER_ORPHAN};

/// The result of a write.
pub struct Written {
    pub obj: Value,
    /// Whether the write created the object (201 rather than 200).
    pub created: bool,
    pub warnings: Vec<String>,
}

/// The result of a delete.
pub enum Deleted {
    /// The object still exists (graceful deletion or finalizers): its new state.
    Pending(Value),
    /// The object is gone: its last state.
    Gone(Value),
}

/// How often a write retries after losing a compare-and-swap to another writer.
const MAX_RETRIES: usize = 16;
/// How long a read waits for the cache to catch up with the store.
pub const CACHE_WAIT: Duration = Duration::from_secs(3);

pub struct Registry {
    pub store: Arc<dyn Store>,
    pub cache: Arc<Cache>,
    admission: Vec<Arc<dyn Admission>>,
}

fn internal(e: impl std::fmt::Display) -> StatusError {
    StatusError::internal(e)
}

/// The Go package of a group's internal types, as decode errors name it.
fn internal_package(group: &str) -> &str {
    match group {
        "" => "core",
        g => g.split('.').next().unwrap_or(g),
    }
}

/// Checks a body's `apiVersion` and `kind` against the endpoint, defaulting missing ones.
pub fn check_type(r: &'static Resource, obj: &mut Value) -> Result<(), StatusError> {
    let Some(m) = obj.as_object_mut() else {
        return Err(StatusError::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): couldn't get version/kind; json parse error: expected an object",
            r.kind
        )));
    };
    let api_version = m.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_string();
    let kind = m.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
    let want = r.api_version();
    let (av, k) = (
        if api_version.is_empty() { want.clone() } else { api_version },
        if kind.is_empty() { r.kind.to_string() } else { kind },
    );
    if k == r.kind && av == want {
        m.insert("apiVersion".into(), json!(av));
        m.insert("kind".into(), json!(k));
        return Ok(());
    }
    let version = av.rsplit('/').next().unwrap_or(&av).to_string();
    let group = av.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    let known_version = resources::group_versions().iter().any(|(g, v)| *g == group && *v == version);
    let msg = if k == r.kind && group == r.group && known_version {
        format!("the API version in the data ({av}) does not match the expected API version ({want})")
    } else if let Some(other) = resources::by_kind(&av, &k) {
        format!(
            "{k} in version {version:?} cannot be handled as a {}: converting ({}.{k}) to ({}.{}): unknown conversion",
            r.kind,
            other.version,
            internal_package(r.group),
            r.kind
        )
    } else {
        format!(
            "{k} in version {version:?} cannot be handled as a {}: no kind {k:?} is registered for version {av:?} in scheme \"k8s.io/kubernetes/pkg/api/legacyscheme/scheme.go:30\"",
            r.kind
        )
    };
    Err(StatusError::bad_request(msg))
}

/// Canonicalizes a decoded body; unknown fields are an error, warnings or nothing.
pub fn canonical_input(r: &'static Resource, obj: &mut Value, fv: FieldValidation) -> Result<Vec<String>, StatusError> {
    let cannot = |msg: &str| {
        StatusError::bad_request(format!(
            "{} in version {:?} cannot be handled as a {}: {msg}",
            r.kind, r.version, r.kind
        ))
    };
    let report = canonicalize(r.schema(), obj).map_err(|e| cannot(&e.message))?;
    let unknown: Vec<String> = report.unknown_fields.iter().map(|f| format!("unknown field {f:?}")).collect();
    match fv {
        FieldValidation::Strict if !unknown.is_empty() => {
            Err(cannot(&format!("strict decoding error: {}", unknown.join(", "))))
        }
        FieldValidation::Warn => Ok(unknown),
        _ => Ok(Vec::new()),
    }
}

fn random_suffix() -> String {
    // Kubernetes' alphabet: no vowels, no easily confused digits.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5).map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char).collect()
}

fn stored_bytes(obj: &Value) -> Bytes {
    let mut o = obj.clone();
    meta::remove(&mut o, "resourceVersion");
    Bytes::from(serde_json::to_vec(&o).expect("a JSON value serializes"))
}

fn with_rv(mut obj: Value, rv: i64) -> Value {
    meta::set(&mut obj, "resourceVersion", rv.to_string());
    obj
}

fn parse_kv(kv: &KeyValue) -> Result<Value, StatusError> {
    let obj: Value = serde_json::from_slice(&kv.value).map_err(internal)?;
    Ok(with_rv(obj, kv.mod_revision))
}

fn parse_rv(rv: &str) -> Result<i64, StatusError> {
    rv.parse::<i64>().map_err(|_| {
        StatusError::bad_request(format!("invalid resource version: strconv.ParseInt: parsing {rv:?}: invalid syntax"))
    })
}

impl Registry {
    pub fn new(store: Arc<dyn Store>, cache: Arc<Cache>, admission: Vec<Arc<dyn Admission>>) -> Self {
        Registry { store, cache, admission }
    }

    fn plugins(&self, r: &Resource) -> impl Iterator<Item = &Arc<dyn Admission>> {
        self.admission.iter().filter(move |a| a.handles(r))
    }

    /// Waits until the cache holds every write acknowledged so far.
    pub async fn consistent(&self) -> Result<i64, StatusError> {
        let rev = self.store.revisions().await.map_err(internal)?.current;
        if !self.cache.wait_for(rev, CACHE_WAIT).await {
            return Err(StatusError::timeout("Too large resource version", 1));
        }
        Ok(rev)
    }

    /// An object from the cache, consistent with every acknowledged write.
    pub async fn get(&self, r: &'static Resource, ns: &str, name: &str) -> Result<Arc<Entry>, StatusError> {
        self.consistent().await?;
        self.cache.resource(r).get(ns, name).ok_or_else(|| StatusError::not_found(r.gr(), name))
    }

    async fn read(&self, r: &'static Resource, ns: &str, name: &str) -> Result<Option<KeyValue>, StatusError> {
        self.store.get(r.key(ns, name).as_bytes()).await.map_err(internal)
    }

    /// Checks that a namespaced object's namespace exists and takes new content;
    /// returns the namespace's key and revision, to fence the create on them.
    fn check_namespace(
        &self,
        r: &'static Resource,
        ns: &str,
        name: &str,
    ) -> Result<Option<(String, i64)>, StatusError> {
        if !r.namespaced {
            return Ok(None);
        }
        let nsr = resources::find("", "v1", "namespaces").expect("namespaces are served");
        match self.cache.resource(nsr).get("", ns) {
            None => Err(StatusError::not_found(nsr.gr(), ns)),
            Some(e) if meta::deletion_timestamp(&e.value()).is_some() => {
                let mut err = StatusError::forbidden(
                    r.gr(),
                    if name.is_empty() { "Unknown" } else { name },
                    &format!("unable to create new content in namespace {ns} because it is being terminated"),
                );
                if let Some(d) = err.details.as_mut() {
                    d.causes.push(kubesvc_api::status::Cause {
                        reason: "NamespaceTerminating".into(),
                        message: format!("namespace {ns} is being terminated"),
                        field: "metadata.namespace".into(),
                    });
                }
                Err(err)
            }
            Some(e) => Ok(Some((nsr.key("", ns), e.rv))),
        }
    }

    fn validate_new(r: &'static Resource, obj: &Value) -> ErrorList {
        let mut errs = validate_object_meta(
            meta::meta(obj),
            r.namespaced,
            r.rules.name_rule(),
            r.rules.standard_finalizers_only(),
        );
        errs.extend(r.rules.validate(obj));
        errs
    }
}

/// Canonicalizes the result of a patch; strict unknown fields are a 422 on patches.
fn patched_input(
    r: &'static Resource,
    obj: &mut Value,
    body: &[u8],
    fv: FieldValidation,
) -> Result<Vec<String>, StatusError> {
    let report = canonicalize(r.schema(), obj).map_err(|e| patch_invalid(body, &e.message))?;
    let unknown: Vec<String> = report.unknown_fields.iter().map(|f| format!("unknown field {f:?}")).collect();
    match fv {
        FieldValidation::Strict if !unknown.is_empty() => {
            Err(patch_invalid(body, &format!("strict decoding error: {}", unknown.join(", "))))
        }
        FieldValidation::Warn => Ok(unknown),
        _ => Ok(Vec::new()),
    }
}

fn patch_invalid(body: &[u8], detail: &str) -> StatusError {
    let mut errs = ErrorList::new();
    errs.push(FieldError::invalid("patch", String::from_utf8_lossy(body).into_owned(), detail));
    StatusError::invalid(GroupKind { group: "", kind: "" }, "", &errs)
}

fn patch_error(e: PatchError) -> StatusError {
    match e {
        PatchError::BadRequest(m) => StatusError::bad_request(m),
        PatchError::Rejected(_) => StatusError {
            details: Some(Box::default()),
            ..StatusError::new(422, "Invalid", "the server rejected our request due to an error in our request")
        },
        PatchError::Internal(m) => StatusError::plain(m),
    }
}

#[cfg(test)]
mod tests;
