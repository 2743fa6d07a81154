//! The generic registry: how every kind is created, updated, patched and
//! deleted, as Kubernetes' generic store does it. Reads come from the watch
//! cache; writes are compare-and-swap transactions on the store, retried when
//! another writer got there first. Admission plugins may add their own
//! compares and writes (allocations) to the same transaction.

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
use kubesvc_store::{Compare, KeyValue, Op, Store, Txn, TxnResponse};
use serde_json::{Value, json};

use crate::cache::{Cache, Entry};

/// A step with I/O in the write path of some kinds (for example allocating a
/// Service's cluster IP): it sees the object about to be written and may add
/// compares and writes to the same store transaction.
#[async_trait]
pub trait Admission: Send + Sync {
    fn handles(&self, r: &Resource) -> bool;

    /// A dry run must check what it can and change nothing (its transaction is never committed).
    async fn create(
        &self,
        _r: &'static Resource,
        _obj: &mut Value,
        _txn: &mut Txn,
        _dry_run: bool,
    ) -> Result<(), StatusError> {
        Ok(())
    }

    async fn update(
        &self,
        _r: &'static Resource,
        _new: &mut Value,
        _old: &Value,
        _txn: &mut Txn,
        _dry_run: bool,
    ) -> Result<(), StatusError> {
        Ok(())
    }

    async fn delete(&self, _r: &'static Resource, _old: &Value, _txn: &mut Txn) -> Result<(), StatusError> {
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

/// The finalizers a delete leaves for the garbage collector, Kubernetes'
/// rules: orphan when asked (or already orphaning), foreground when asked (or
/// already in foreground), else neither (background).
pub fn gc_finalizers(existing: &[String], opts: &DeleteOptions) -> Vec<String> {
    let has = |f: &str| existing.iter().any(|x| x == f);
    let orphan = match (opts.orphan_dependents, opts.propagation.as_deref()) {
        (Some(o), _) => o,
        (None, Some(p)) => p == "Orphan",
        (None, None) => has(FINALIZER_ORPHAN),
    };
    let foreground = opts.orphan_dependents.is_none()
        && match opts.propagation.as_deref() {
            Some(p) => p == "Foreground",
            None => has(FINALIZER_FOREGROUND) && !orphan,
        };
    let mut out: Vec<String> =
        existing.iter().filter(|f| *f != FINALIZER_ORPHAN && *f != FINALIZER_FOREGROUND).cloned().collect();
    if orphan {
        out.push(FINALIZER_ORPHAN.into());
    } else if foreground {
        out.push(FINALIZER_FOREGROUND.into());
    }
    out
}

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

/// What marking an object as being deleted writes.
struct Marks {
    at: String,
    grace: i64,
    finalizers: Option<Vec<String>>,
}

/// Whether an update still goes through admission and the kind's rules.
#[derive(Clone, Copy)]
enum Prepared {
    /// A client's version of the object (or of a subresource).
    Client(Option<Subresource>),
    /// Written by the server as it is (deletion marks).
    Server,
}

/// The outcome of one compare-and-swap write.
enum Write {
    Done(Value),
    /// Another writer changed the object first.
    ObjectMoved,
    /// An admission step's compare failed; the object is as it was.
    Raced,
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

    /// POST: creates `obj` (decoded, type-checked and canonical) in `ns`.
    pub async fn create(
        &self,
        r: &'static Resource,
        ns: &str,
        mut obj: Value,
        opts: WriteOptions,
    ) -> Result<Written, StatusError> {
        let body_ns = meta::namespace(&obj).to_string();
        if r.namespaced {
            if body_ns.is_empty() {
                meta::set(&mut obj, "namespace", ns);
            } else if body_ns != ns {
                return Err(StatusError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        } else {
            meta::remove(&mut obj, "namespace");
        }
        if !meta::resource_version(&obj).is_empty() {
            return Err(StatusError::plain("resourceVersion should not be set on objects to be created"));
        }
        for k in ["creationTimestamp", "uid", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
            meta::remove(&mut obj, k);
        }
        r.rules.default(&mut obj);
        r.rules.prepare_for_create(&mut obj);
        kinds::apply_generation(r.rules.generation(), &mut obj, None);

        let generated = meta::name(&obj).is_empty() && !meta::generate_name(&obj).is_empty();
        let base: String = meta::generate_name(&obj).chars().take(58).collect();
        let mut name_attempts = 0;
        // One uid for every attempt, so that admission recognises its own earlier tries.
        let uid = uuid::Uuid::new_v4().to_string();
        for _ in 0..MAX_RETRIES {
            self.consistent().await?;
            let mut candidate = obj.clone();
            if generated {
                meta::set(&mut candidate, "name", format!("{base}{}", random_suffix()));
            }
            let fence = self.check_namespace(r, ns, meta::name(&candidate))?;
            meta::set(&mut candidate, "uid", uid.as_str());
            meta::set(&mut candidate, "creationTimestamp", kubesvc_api::time::now_string());
            let name = meta::name(&candidate).to_string();
            let key = r.key(ns, &name);
            let mut txn = Txn::create(key.clone(), Bytes::new());
            // The namespace must not change (be marked for deletion) under the create.
            if let Some((ns_key, ns_rev)) = &fence {
                txn.compares.push(Compare::ModRevision(ns_key.clone().into_bytes(), *ns_rev));
            }
            // Admission (address allocation) comes before validation, as in Kubernetes: what it
            // fills in is validated, and its own errors win.
            for a in self.plugins(r) {
                a.create(r, &mut candidate, &mut txn, opts.dry_run).await?;
            }
            let errs = Self::validate_new(r, &candidate);
            if !errs.is_empty() {
                return Err(StatusError::invalid(r.gk(), meta::name(&candidate), &errs));
            }
            let warnings = r.rules.warnings(&candidate);
            txn.ops[0] = Op::Put { key: key.clone().into_bytes(), value: stored_bytes(&candidate) };
            if opts.dry_run {
                if self.read(r, ns, &name).await?.is_some() {
                    return Err(StatusError::already_exists(r.gr(), &name));
                }
                return Ok(Written { obj: candidate, created: true, warnings });
            }
            match self.store.txn(txn).await.map_err(internal)? {
                TxnResponse::Committed { revision, .. } => {
                    return Ok(Written { obj: with_rv(candidate, revision), created: true, warnings });
                }
                TxnResponse::Failed { current, .. } => {
                    let Some(kv) = current.first().cloned().flatten() else {
                        // The namespace changed, or a plugin raced another writer: check again.
                        continue;
                    };
                    name_attempts += 1;
                    if generated && name_attempts < 8 {
                        continue;
                    }
                    let mut err = StatusError::already_exists(r.gr(), &name);
                    if generated {
                        err.message.push_str(", the server was not able to generate a unique name for the object");
                        if let Some(d) = err.details.as_mut() {
                            d.retry_after_seconds = 1;
                        }
                    } else if meta::deletion_timestamp(&parse_kv(&kv)?).is_some() {
                        err.message = format!("object is being deleted: {}", err.message);
                    }
                    return Err(err);
                }
            }
        }
        Err(StatusError::conflict(r.gr(), meta::name(&obj), "the object could not be created after repeated conflicts"))
    }

    /// Checks the name and namespace of an update and applies the scheme defaults.
    fn begin_update(r: &'static Resource, new: &mut Value, old: &Value) -> Result<(), StatusError> {
        let name = meta::name(old).to_string();
        let new_name = meta::name(new).to_string();
        if new_name.is_empty() {
            meta::set(new, "name", name.as_str());
        } else if new_name != name {
            return Err(StatusError::bad_request(format!(
                "the name of the object ({new_name}) does not match the name on the URL ({name})"
            )));
        }
        let (old_ns, new_ns) = (meta::namespace(old).to_string(), meta::namespace(new).to_string());
        if r.namespaced {
            if new_ns.is_empty() {
                meta::set(new, "namespace", old_ns.as_str());
            } else if new_ns != old_ns {
                return Err(StatusError::bad_request(format!(
                    "the namespace of the object ({new_ns}) does not match the namespace on the request ({old_ns})"
                )));
            }
        } else {
            meta::remove(new, "namespace");
        }
        r.rules.default(new);
        Ok(())
    }

    /// What the kind keeps and resets on an update, then validation.
    fn finish_update(
        r: &'static Resource,
        new: &mut Value,
        old: &Value,
        sub: Option<Subresource>,
    ) -> Result<(), StatusError> {
        let name = meta::name(old).to_string();
        match sub {
            Some(Subresource::Status) => r.rules.prepare_for_status_update(new, old),
            Some(Subresource::Finalize) => {
                // Only spec.finalizers may change through /finalize.
                let finalizers = meta::get(new, &["spec", "finalizers"]).cloned();
                let mut kept = old.clone();
                match finalizers {
                    Some(f) => {
                        meta::object_at(&mut kept, &["spec"]).insert("finalizers".into(), f);
                    }
                    None => {
                        if let Some(s) = kept.get_mut("spec").and_then(Value::as_object_mut) {
                            s.remove("finalizers");
                        }
                    }
                }
                meta::keep_field(new, &kept, "spec");
                meta::keep_field(new, old, "status");
            }
            // A binding sets the node and the scheduled condition directly.
            Some(Subresource::Binding) => {}
            _ => r.rules.prepare_for_update(new, old),
        }
        // What no client changes: creation and deletion marks, generation. A
        // missing uid is the old one; a different one fails validation.
        if meta::uid(new).is_empty() {
            meta::set(new, "uid", meta::uid(old));
        }
        for k in ["creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"] {
            match meta::meta(old).get(k) {
                Some(v) => meta::set(new, k, v.clone()),
                None => {
                    meta::remove(new, k);
                }
            }
        }
        match meta::meta(old).get("generation") {
            Some(g) => meta::set(new, "generation", g.clone()),
            None => {
                meta::remove(new, "generation");
            }
        }
        if sub.is_none() {
            kinds::apply_generation(r.rules.generation(), new, Some(old));
        }
        let mut errs = validate_object_meta(
            meta::meta(new),
            r.namespaced,
            r.rules.name_rule(),
            r.rules.standard_finalizers_only(),
        );
        errs.extend(validate_object_meta_update(meta::meta(new), meta::meta(old)));
        match sub {
            None => errs.extend(r.rules.validate_update(new, old)),
            Some(Subresource::Status) => errs.extend(r.rules.validate_status_update(new, old)),
            Some(_) => {}
        }
        if !errs.is_empty() {
            return Err(StatusError::invalid(r.gk(), &name, &errs));
        }
        Ok(())
    }

    /// Writes `new` over `old` (read at `old_rev`), or deletes it when an update
    /// removes the last finalizer of an object being deleted.
    #[allow(clippy::too_many_arguments)]
    async fn write_update(
        &self,
        r: &'static Resource,
        ns: &str,
        name: &str,
        mut new: Value,
        old: &Value,
        old_rev: i64,
        opts: WriteOptions,
        how: Prepared,
    ) -> Result<Write, StatusError> {
        let key = r.key(ns, name);
        let mut txn = Txn::update(key.clone(), old_rev, Bytes::new());
        if let Prepared::Client(sub) = how {
            // As on create, admission sees the update before the kind's rules and validation.
            if sub.is_none() {
                for a in self.plugins(r) {
                    a.update(r, &mut new, old, &mut txn, opts.dry_run).await?;
                }
            }
            Self::finish_update(r, &mut new, old, sub)?;
        }
        let comparable = |v: &Value| {
            let mut v = v.clone();
            meta::remove(&mut v, "resourceVersion");
            v
        };
        if comparable(&new) == comparable(old) {
            // Kubernetes writes nothing, and moves no resourceVersion, for a no-op.
            return Ok(Write::Done(old.clone()));
        }
        let finishing = meta::deletion_timestamp(old).is_some()
            && meta::finalizers(&new).is_empty()
            && meta::meta(old).get("deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0) == 0
            && (r.plural != "namespaces"
                || meta::get(&new, &["spec", "finalizers"]).and_then(Value::as_array).is_none_or(|f| f.is_empty()));
        if finishing {
            // The last finalizer is gone: the update deletes, and releases what a delete releases.
            txn = Txn::delete(key.clone(), old_rev);
            for a in self.plugins(r) {
                a.delete(r, old, &mut txn).await?;
            }
        } else {
            txn.ops[0] = Op::Put { key: key.into_bytes(), value: stored_bytes(&new) };
        }
        if opts.dry_run {
            return Ok(Write::Done(new));
        }
        match self.store.txn(txn).await.map_err(internal)? {
            TxnResponse::Committed { revision, .. } => Ok(Write::Done(with_rv(new, revision))),
            // The first compare is the object's own; later ones are admission steps'.
            TxnResponse::Failed { current, .. } => match current.first().cloned().flatten() {
                Some(kv) if kv.mod_revision == old_rev => Ok(Write::Raced),
                _ => Ok(Write::ObjectMoved),
            },
        }
    }

    /// PUT: replaces the object (or its status or finalizers) with `body`.
    pub async fn update(
        &self,
        r: &'static Resource,
        ns: &str,
        name: &str,
        mut body: Value,
        sub: Option<Subresource>,
        opts: WriteOptions,
    ) -> Result<Written, StatusError> {
        let warnings = r.rules.warnings(&body);
        let body_rv = meta::resource_version(&body).to_string();
        let body_uid = meta::uid(&body).to_string();
        for _ in 0..MAX_RETRIES {
            let Some(kv) = self.read(r, ns, name).await? else {
                if sub.is_none() && r.rules.allow_create_on_update() {
                    meta::remove(&mut body, "resourceVersion");
                    let body_name = meta::name(&body).to_string();
                    if !body_name.is_empty() && body_name != name {
                        return Err(StatusError::bad_request(format!(
                            "the name of the object ({body_name}) does not match the name on the URL ({name})"
                        )));
                    }
                    meta::set(&mut body, "name", name);
                    let mut w = self.create(r, ns, body, opts).await?;
                    w.warnings.extend(warnings);
                    return Ok(w);
                }
                return Err(StatusError::not_found(r.gr(), name));
            };
            let old = parse_kv(&kv)?;
            if body_rv.is_empty() {
                if !r.rules.allow_unconditional_update() {
                    let mut errs = ErrorList::new();
                    errs.push(FieldError::invalid("metadata.resourceVersion", 0, "must be specified for an update"));
                    return Err(StatusError::invalid(GroupKind { group: r.group, kind: r.plural }, name, &errs));
                }
            } else if parse_rv(&body_rv)? != kv.mod_revision {
                return Err(StatusError::stale(r.gr(), name));
            }
            if !body_uid.is_empty() && body_uid != meta::uid(&old) {
                return Err(StatusError::conflict(
                    r.gr(),
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {body_uid}, UID in object meta: {}",
                        meta::uid(&old)
                    ),
                ));
            }
            let mut new = body.clone();
            Self::begin_update(r, &mut new, &old)?;
            match self.write_update(r, ns, name, new, &old, kv.mod_revision, opts, Prepared::Client(sub)).await? {
                Write::Done(obj) => return Ok(Written { obj, created: false, warnings }),
                Write::ObjectMoved if !body_rv.is_empty() => return Err(StatusError::stale(r.gr(), name)),
                Write::ObjectMoved | Write::Raced => {}
            }
        }
        Err(StatusError::conflict(r.gr(), name, "the object has been modified too often to update; please try again"))
    }

    /// PATCH: applies a patch to the object (or its status) and writes the result.
    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        r: &'static Resource,
        ns: &str,
        name: &str,
        ty: PatchType,
        body: &[u8],
        sub: Option<Subresource>,
        opts: WriteOptions,
    ) -> Result<Written, StatusError> {
        for _ in 0..MAX_RETRIES {
            let Some(kv) = self.read(r, ns, name).await? else {
                return Err(StatusError::not_found(r.gr(), name));
            };
            let old = parse_kv(&kv)?;
            let mut patched = patch::apply(ty, &old, body, r.schema()).map_err(patch_error)?;
            let warnings = patched_input(r, &mut patched, body, opts.field_validation)?;
            // A resourceVersion the patch sets is a precondition; otherwise any current version will do.
            let rv = meta::resource_version(&patched).to_string();
            let precondition = !rv.is_empty() && rv != meta::resource_version(&old);
            if precondition {
                return Err(StatusError::stale(r.gr(), name));
            }
            let mut new = patched;
            Self::begin_update(r, &mut new, &old)?;
            let mut warnings = warnings;
            warnings.extend(r.rules.warnings(&new));
            let how = Prepared::Client(sub);
            if let Write::Done(obj) = self.write_update(r, ns, name, new, &old, kv.mod_revision, opts, how).await? {
                return Ok(Written { obj, created: false, warnings });
            }
        }
        Err(StatusError::conflict(r.gr(), name, "the object has been modified too often to patch; please try again"))
    }

    /// DELETE of one object.
    pub async fn delete(
        &self,
        r: &'static Resource,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted, StatusError> {
        for _ in 0..MAX_RETRIES {
            let Some(kv) = self.read(r, ns, name).await? else {
                return Err(StatusError::not_found(r.gr(), name));
            };
            let old = parse_kv(&kv)?;
            check_preconditions(r, name, &old, opts)?;
            let write = WriteOptions { dry_run: opts.dry_run, field_validation: FieldValidation::Ignore };
            let deleting = meta::deletion_timestamp(&old).is_some();
            let current_grace = meta::meta(&old).get("deletionGracePeriodSeconds").and_then(Value::as_i64);
            // Graceful deletion (pods): Some(grace), and Some(0) for "now".
            let grace = r.rules.grace_period(&old, opts.grace_period);
            let finalizers = meta::finalizers(&old);
            let gc = gc_finalizers(&finalizers, opts);
            let new_finalizers = (gc != finalizers).then(|| gc.clone());
            let marked = match grace {
                // Mark, and wait for the node to finish.
                Some(g) if g > 0 => {
                    if deleting && current_grace.is_some_and(|c| c <= g) {
                        return Ok(Deleted::Pending(old));
                    }
                    let deadline = deadline_after(g)?;
                    let marks = Marks { at: deadline, grace: g, finalizers: new_finalizers };
                    self.mark_deleting(r, ns, name, &old, kv.mod_revision, marks, write).await?
                }
                // Finalizers (the garbage collector's among them): mark as being deleted;
                // their owners finish it. A shorter grace (to 0) is recorded, so that the
                // last finalizer's removal deletes it.
                _ if !gc.is_empty() => {
                    if deleting && current_grace == Some(0) && new_finalizers.is_none() {
                        return Ok(Deleted::Pending(old));
                    }
                    let at = if deleting {
                        meta::deletion_timestamp(&old).unwrap_or_default().to_string()
                    } else {
                        kubesvc_api::time::now_string()
                    };
                    let marks = Marks { at, grace: 0, finalizers: new_finalizers };
                    self.mark_deleting(r, ns, name, &old, kv.mod_revision, marks, write).await?
                }
                _ => None,
            };
            match marked {
                Some(Write::Done(obj)) => return Ok(Deleted::Pending(obj)),
                Some(_) => continue,
                None => {}
            }
            let mut txn = Txn::delete(r.key(ns, name), kv.mod_revision);
            for a in self.plugins(r) {
                a.delete(r, &old, &mut txn).await?;
            }
            if opts.dry_run {
                return Ok(Deleted::Gone(old));
            }
            if self.store.txn(txn).await.map_err(internal)?.committed() {
                return Ok(Deleted::Gone(old));
            }
        }
        Err(StatusError::conflict(r.gr(), name, "the object has been modified too often to delete; please try again"))
    }

    /// Sets deletionTimestamp, deletionGracePeriodSeconds (and the finalizers a
    /// propagation policy asks for), bumping a tracked generation.
    #[allow(clippy::too_many_arguments)]
    async fn mark_deleting(
        &self,
        r: &'static Resource,
        ns: &str,
        name: &str,
        old: &Value,
        rev: i64,
        marks: Marks,
        opts: WriteOptions,
    ) -> Result<Option<Write>, StatusError> {
        let mut new = old.clone();
        meta::set(&mut new, "deletionTimestamp", marks.at);
        meta::set(&mut new, "deletionGracePeriodSeconds", marks.grace);
        if let Some(f) = marks.finalizers {
            meta::set_finalizers(&mut new, f);
        }
        if meta::generation(old) > 0 && meta::deletion_timestamp(old).is_none() {
            meta::set(&mut new, "generation", meta::generation(old) + 1);
        }
        Ok(Some(self.write_update(r, ns, name, new, old, rev, opts, Prepared::Server).await?))
    }

    /// Marks a namespace as terminating; the namespace controller empties and removes it.
    pub async fn delete_namespace(
        &self,
        r: &'static Resource,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted, StatusError> {
        if matches!(name, "default" | "kube-system" | "kube-public") {
            return Err(StatusError::forbidden(r.gr(), name, "this namespace may not be deleted"));
        }
        for _ in 0..MAX_RETRIES {
            let Some(kv) = self.read(r, "", name).await? else {
                return Err(StatusError::not_found(r.gr(), name));
            };
            let old = parse_kv(&kv)?;
            let precondition = |what: &str, want: &Option<String>, have: &str| -> Result<(), StatusError> {
                match want {
                    Some(w) if w != have => Err(StatusError::conflict(
                        r.gr(),
                        name,
                        &format!("Precondition failed: {what} in precondition: {w}, {what} in object meta: {have}"),
                    )),
                    _ => Ok(()),
                }
            };
            precondition("UID", &opts.uid, meta::uid(&old))?;
            precondition("ResourceVersion", &opts.resource_version, meta::resource_version(&old))?;
            if meta::deletion_timestamp(&old).is_some() {
                return Ok(Deleted::Pending(old));
            }
            // Always Terminating first: the controller empties it, whatever finalizers it has.
            let mut new = old.clone();
            meta::set(&mut new, "deletionTimestamp", kubesvc_api::time::now_string());
            meta::object_at(&mut new, &["status"]).insert("phase".into(), json!("Terminating"));
            let write = WriteOptions { dry_run: opts.dry_run, field_validation: FieldValidation::Ignore };
            let how = Prepared::Server;
            if let Write::Done(obj) = self.write_update(r, "", name, new, &old, kv.mod_revision, write, how).await? {
                return Ok(Deleted::Pending(obj));
            }
        }
        Err(StatusError::conflict(
            r.gr(),
            name,
            "the namespace has been modified too often to delete; please try again",
        ))
    }

    /// Writes a change computed from the current object, retrying on conflicts.
    /// `f` may refuse the change after seeing the object. With a
    /// `resource_version`, the object must be at it (409 otherwise).
    pub async fn mutate(
        &self,
        r: &'static Resource,
        ns: &str,
        name: &str,
        sub: Option<Subresource>,
        opts: MutateOptions<'_>,
        f: impl Fn(&mut Value) -> Result<(), StatusError>,
    ) -> Result<Value, StatusError> {
        for _ in 0..MAX_RETRIES {
            let Some(kv) = self.read(r, ns, name).await? else {
                return Err(StatusError::not_found(r.gr(), name));
            };
            if let Some(rv) = opts.resource_version.filter(|rv| !rv.is_empty())
                && parse_rv(rv)? != kv.mod_revision
            {
                return Err(StatusError::stale(r.gr(), name));
            }
            let old = parse_kv(&kv)?;
            let mut new = old.clone();
            f(&mut new)?;
            Self::begin_update(r, &mut new, &old)?;
            let write = WriteOptions { dry_run: opts.dry_run, field_validation: FieldValidation::Ignore };
            let how = Prepared::Client(sub);
            match self.write_update(r, ns, name, new, &old, kv.mod_revision, write, how).await? {
                Write::Done(obj) => return Ok(obj),
                Write::ObjectMoved if opts.resource_version.is_some_and(|rv| !rv.is_empty()) => {
                    return Err(StatusError::stale(r.gr(), name));
                }
                _ => {}
            }
        }
        Err(StatusError::conflict(r.gr(), name, "the object has been modified too often; please try again"))
    }
}

/// Options of [`Registry::mutate`].
#[derive(Clone, Copy, Debug, Default)]
pub struct MutateOptions<'a> {
    pub resource_version: Option<&'a str>,
    pub dry_run: bool,
}

/// The deletion deadline `grace` seconds from now; absurd periods are refused, not overflowed.
fn deadline_after(grace: i64) -> Result<String, StatusError> {
    let at = jiff::SignedDuration::from_secs(grace);
    kubesvc_api::time::now().checked_add(at).map(kubesvc_api::time::format).map_err(|_| {
        let mut errs = ErrorList::new();
        errs.push(FieldError::invalid("gracePeriodSeconds", grace, "must be a number of seconds a timestamp can hold"));
        StatusError::invalid(GroupKind { group: "meta.k8s.io", kind: "DeleteOptions" }, "", &errs)
    })
}

/// DELETE's preconditions; Kubernetes names the object by its kind in these conflicts.
fn check_preconditions(r: &'static Resource, name: &str, old: &Value, opts: &DeleteOptions) -> Result<(), StatusError> {
    let kind = GroupKind { group: r.group, kind: r.kind }.to_string();
    let conflict = |why: String| {
        StatusError::conflict(kubesvc_api::status::GroupResource { group: "", resource: &kind }, name, &why)
    };
    if let Some(uid) = &opts.uid
        && uid != meta::uid(old)
    {
        return Err(conflict(format!(
            "the UID in the precondition ({uid}) does not match the UID in record ({}). The object might have been deleted and then recreated",
            meta::uid(old)
        )));
    }
    if let Some(rv) = &opts.resource_version
        && rv != meta::resource_version(old)
    {
        return Err(conflict(format!(
            "the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({}). The object might have been modified",
            meta::resource_version(old)
        )));
    }
    Ok(())
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
