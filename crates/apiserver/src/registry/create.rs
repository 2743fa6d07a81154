//! Creating an object: defaults and server-set fields, generated names, the
//! namespace fence, admission, validation, and one compare-and-swap.

use kubesvc_api::meta;
use kubesvc_api::resources::Resource;
use kubesvc_api::status::StatusError;
use kubesvc_store::{Compare, Op, TxnResponse};

use super::*;

impl Registry {
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
            // The object must not exist, and its namespace must not change (be marked for
            // deletion) under the create.
            let fences: Vec<Compare> = fence
                .iter()
                .map(|(ns_key, ns_rev)| Compare::ModRevision(ns_key.clone().into_bytes(), *ns_rev))
                .collect();
            // Admission (address allocation) comes before validation, as in Kubernetes: what it
            // fills in is validated, and its own errors win.
            let mut extra = TxnAppend::default();
            for a in self.plugins(r) {
                a.create(r, &mut candidate, &mut extra, opts.dry_run).await?;
            }
            let errs = Self::validate_new(r, &candidate);
            if !errs.is_empty() {
                return Err(StatusError::invalid(r.gk(), meta::name(&candidate), &errs));
            }
            let warnings = r.rules.warnings(&candidate);
            let txn = extra.after(0, fences, Op::Put { key: key.into_bytes(), value: stored_bytes(&candidate) });
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
}
