//! Deleting an object: preconditions, graceful deletion, finalizers (the
//! garbage collector's among them), and the terminating lifecycle of kinds
//! their own controller finishes (namespaces).

use kubesvc_api::kinds::Deletion;
use kubesvc_api::meta;
use kubesvc_api::resources::Resource;
use kubesvc_api::status::StatusError;
use kubesvc_store::Op;

use super::update::{Prepared, Write};
use super::*;

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

/// What marking an object as being deleted writes.
struct Marks {
    at: String,
    grace: i64,
    finalizers: Option<Vec<String>>,
}

impl Registry {
    /// DELETE of one object.
    pub async fn delete(
        &self,
        r: &'static Resource,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted, StatusError> {
        if let Some(why) = r.rules.undeletable(name) {
            return Err(StatusError::forbidden(r.gr(), name, why));
        }
        if r.rules.deletion() == Deletion::Terminating {
            return self.delete_terminating(r, ns, name, opts).await;
        }
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
            let key = r.key(ns, name).into_bytes();
            let mut extra = TxnAppend::default();
            for a in self.plugins(r) {
                a.delete(r, &old, &mut extra).await?;
            }
            let txn = extra.after(kv.mod_revision, Vec::new(), Op::Delete { key });
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

    /// DELETE of a kind that is always marked terminating first, whatever
    /// finalizers it has; its own controller empties it and removes it
    /// (namespaces). Preconditions are checked as its storage checks them.
    async fn delete_terminating(
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
            let precondition = |what: &str, want: &Option<String>, have: &str| -> Result<(), StatusError> {
                match want {
                    Some(w) if w != have => Err(StatusError::precondition_failed(r.gr(), name, what, w, have)),
                    _ => Ok(()),
                }
            };
            precondition("UID", &opts.uid, meta::uid(&old))?;
            precondition("ResourceVersion", &opts.resource_version, meta::resource_version(&old))?;
            if meta::deletion_timestamp(&old).is_some() {
                return Ok(Deleted::Pending(old));
            }
            let mut new = old.clone();
            meta::set(&mut new, "deletionTimestamp", kubesvc_api::time::now_string());
            r.rules.mark_terminating(&mut new);
            let write = WriteOptions { dry_run: opts.dry_run, field_validation: FieldValidation::Ignore };
            let how = Prepared::Server;
            if let Write::Done(obj) = self.write_update(r, ns, name, new, &old, kv.mod_revision, write, how).await? {
                return Ok(Deleted::Pending(obj));
            }
        }
        Err(StatusError::conflict(
            r.gr(),
            name,
            &format!("the {} has been modified too often to delete; please try again", r.kind.to_lowercase()),
        ))
    }
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
