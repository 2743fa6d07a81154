//! Updating an object: PUT, PATCH and server-side changes computed from the
//! stored object, each a compare-and-swap retried when another writer won,
//! with what the kind keeps, resets and validates.

use kubesvc_api::meta;
use kubesvc_api::resources::Resource;
use kubesvc_api::status::StatusError;
use kubesvc_store::{Op, TxnResponse};

use super::*;

/// Whether an update still goes through admission and the kind's rules.
#[derive(Clone, Copy)]
pub(super) enum Prepared {
    /// A client's version of the object (or of a subresource).
    Client(Option<Subresource>),
    /// Written by the server as it is (deletion marks).
    Server,
}

/// The outcome of one compare-and-swap write.
pub(super) enum Write {
    Done(Value),
    /// Another writer changed the object first.
    ObjectMoved,
    /// An admission step's compare failed; the object is as it was.
    Raced,
}

impl Registry {
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
    pub(super) async fn write_update(
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
        let mut extra = TxnAppend::default();
        if let Prepared::Client(sub) = how {
            // As on create, admission sees the update before the kind's rules and validation.
            if sub.is_none() {
                for a in self.plugins(r) {
                    a.update(r, &mut new, old, &mut extra, opts.dry_run).await?;
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
            && !r.rules.kind_finalizers_pending(&new);
        let txn = if finishing {
            // The last finalizer is gone: the update deletes, and releases what a delete
            // releases (not what the update itself would have taken).
            let mut extra = TxnAppend::default();
            for a in self.plugins(r) {
                a.delete(r, old, &mut extra).await?;
            }
            extra.after(old_rev, Vec::new(), Op::Delete { key: key.into_bytes() })
        } else {
            extra.after(old_rev, Vec::new(), Op::Put { key: key.into_bytes(), value: stored_bytes(&new) })
        };
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
                return Err(StatusError::precondition_failed(r.gr(), name, "UID", &body_uid, meta::uid(&old)));
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
