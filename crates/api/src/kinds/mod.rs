//! Per-kind rules, as Kubernetes' registry strategies and scheme defaults have
//! them: what the server sets on create, keeps on update, defaults,
//! validates, and which fields selectors may use.

mod apps;
mod config;
mod core;
mod endpoints;
mod pod;
pub mod scale;
pub mod service;

use serde_json::Value;

use crate::meta;
use crate::validation::{ErrorList, NameRule};

pub use apps::{DeploymentRules, ReplicaSetRules};
pub use config::{ConfigMapRules, SecretRules, is_config_map_key};
pub use core::{EventRules, LeaseRules, NamespaceRules, NodeRules};
pub use endpoints::{EndpointSliceRules, EndpointsRules};
pub use pod::{Binding, PodRules, default_pod_spec, qos_class};
pub use service::ServiceRules;

/// When `metadata.generation` moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Generation {
    /// Never set.
    Untracked,
    /// 1 on create, +1 whenever `spec` changes.
    Spec,
    /// As `Spec`, and also when annotations change (deployments).
    SpecOrAnnotations,
    /// 1 on create, +1 when anything outside metadata, or the labels, change (endpoint slices).
    ContentOrLabels,
}

/// How DELETE treats a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// The generic store's way: a grace period (pods), then finalizers, else gone at once.
    Standard,
    /// Always marked terminating first, whatever finalizers it has; the kind's own
    /// controller empties it and removes it (namespaces).
    Terminating,
}

/// The behaviour of one kind. Defaults fit a namespaced kind with a DNS
/// subdomain name, no status subresource and no generation.
pub trait Rules: Send + Sync + 'static {
    fn name_rule(&self) -> NameRule {
        NameRule::Dns1123Subdomain
    }

    /// Whether finalizers without a '/' must be one of Kubernetes' own.
    fn standard_finalizers_only(&self) -> bool {
        true
    }

    fn generation(&self) -> Generation {
        Generation::Untracked
    }

    /// Whether `status` is a subresource: writes to the object keep the old
    /// status, and writes to `/status` keep everything else.
    fn has_status(&self) -> bool {
        false
    }

    /// The scheme defaults, applied to every object decoded from a client.
    fn default(&self, _obj: &mut Value) {}

    /// What the server sets on create, after defaulting.
    fn prepare_for_create(&self, _obj: &mut Value) {}

    /// What the server keeps or resets on an update of the object itself.
    fn prepare_for_update(&self, _new: &mut Value, _old: &Value) {}

    /// What the server keeps on an update of `/status`; by default everything but status and metadata.
    fn prepare_for_status_update(&self, new: &mut Value, old: &Value) {
        let keys: Vec<String> = new.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
        for k in keys.iter().chain(old.as_object().into_iter().flat_map(|m| m.keys())) {
            if !matches!(k.as_str(), "status" | "metadata" | "apiVersion" | "kind") {
                meta::keep_field(new, old, k);
            }
        }
    }

    /// Kind-specific validation of a new object (metadata is checked separately).
    fn validate(&self, _obj: &Value) -> ErrorList {
        ErrorList::new()
    }

    /// Kind-specific validation of an update.
    fn validate_update(&self, new: &Value, _old: &Value) -> ErrorList {
        self.validate(new)
    }

    /// Kind-specific validation of an update of `/status`.
    fn validate_status_update(&self, _new: &Value, _old: &Value) -> ErrorList {
        ErrorList::new()
    }

    /// Whether a PUT of a missing object creates it.
    fn allow_create_on_update(&self) -> bool {
        false
    }

    /// Whether a PUT without resourceVersion overwrites whatever is there.
    fn allow_unconditional_update(&self) -> bool {
        true
    }

    /// Whether DELETE answers with the deleted object rather than a Status.
    fn return_deleted_object(&self) -> bool {
        false
    }

    fn deletion(&self) -> Deletion {
        Deletion::Standard
    }

    /// Why an object of this name may never be deleted, if so.
    fn undeletable(&self, _name: &str) -> Option<&'static str> {
        None
    }

    /// What marking a [`Deletion::Terminating`] object as deleted changes beyond its deletionTimestamp.
    fn mark_terminating(&self, _obj: &mut Value) {}

    /// Whether finalizers of the kind's own (a namespace's `spec.finalizers`) still
    /// hold an object being deleted once its metadata finalizers are gone.
    fn kind_finalizers_pending(&self, _obj: &Value) -> bool {
        false
    }

    /// The grace period a delete waits for, or `None` to delete at once (only pods wait).
    fn grace_period(&self, _obj: &Value, _requested: Option<i64>) -> Option<i64> {
        None
    }

    /// Field labels beyond `metadata.name` and `metadata.namespace`, and
    /// whether the kind has its own conversion (which changes the error wording).
    fn field_labels(&self) -> (&'static [&'static str], bool) {
        (&[], false)
    }

    /// The value of a field label on an object.
    fn field_value(&self, _obj: &Value, _label: &str) -> Option<String> {
        None
    }

    /// Warnings to return with every successful write.
    fn warnings(&self, _obj: &Value) -> Vec<String> {
        Vec::new()
    }
}

/// The value of any supported field label, including the metadata ones.
pub fn field_value(rules: &dyn Rules, obj: &Value, label: &str) -> Option<String> {
    match label {
        "metadata.name" => Some(meta::name(obj).to_string()),
        "metadata.namespace" => Some(meta::namespace(obj).to_string()),
        _ => rules.field_value(obj, label),
    }
}

/// Checks that every label of a field selector is supported, with Kubernetes' error text.
pub fn check_field_labels(rules: &dyn Rules, labels: impl IntoIterator<Item = impl AsRef<str>>) -> Result<(), String> {
    let (extra, converts) = rules.field_labels();
    for l in labels {
        let l = l.as_ref();
        if l == "metadata.name" || l == "metadata.namespace" || extra.contains(&l) {
            continue;
        }
        return Err(if converts {
            format!("field label not supported: {l}")
        } else {
            format!("{l:?} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"")
        });
    }
    Ok(())
}

/// Applies the generation policy to a create or an update.
pub fn apply_generation(policy: Generation, new: &mut Value, old: Option<&Value>) {
    if policy == Generation::Untracked {
        meta::remove(new, "generation");
        return;
    }
    let Some(old) = old else {
        meta::set(new, "generation", 1);
        return;
    };
    let mut generation = meta::generation(old).max(1);
    let changed = match policy {
        Generation::Untracked => false,
        Generation::Spec => new.get("spec") != old.get("spec"),
        Generation::SpecOrAnnotations => {
            new.get("spec") != old.get("spec") || meta::annotations(new) != meta::annotations(old)
        }
        Generation::ContentOrLabels => {
            let outside_meta = |v: &Value| -> Vec<(String, Value)> {
                v.as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(k, _)| !matches!(k.as_str(), "metadata" | "apiVersion" | "kind"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            };
            outside_meta(new) != outside_meta(old) || meta::labels(new) != meta::labels(old)
        }
    };
    if changed {
        generation += 1;
    }
    meta::set(new, "generation", generation);
}

/// Keeps `status` from the old object (updates to the object itself).
pub fn keep_status(new: &mut Value, old: &Value) {
    meta::keep_field(new, old, "status");
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    meta::get_str(v, path)
}
