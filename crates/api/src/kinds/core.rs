//! Namespaces, nodes, events and leases.

use serde_json::{Value, json};

use super::{Deletion, Rules, keep_status, str_at};
use crate::meta;
use crate::validation::{ErrorList, FieldError, NameRule};
use crate::wellknown::{
    FINALIZER_NAMESPACE as NAMESPACE_FINALIZER, LABEL_NAMESPACE_NAME as NAMESPACE_NAME_LABEL, TAINT_NODE_NOT_READY,
};

pub struct NamespaceRules;

impl Rules for NamespaceRules {
    fn name_rule(&self) -> NameRule {
        NameRule::Dns1123Label
    }

    fn has_status(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        meta::default_at(obj, &["status"], "phase", "Active");
        let name = meta::name(obj).to_string();
        if !name.is_empty() {
            meta::object_at(obj, &["metadata", "labels"]).insert(NAMESPACE_NAME_LABEL.into(), json!(name));
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Active"});
        let spec = meta::object_at(obj, &["spec"]);
        let finalizers = spec.entry("finalizers").or_insert_with(|| json!([]));
        if let Some(list) = finalizers.as_array_mut()
            && !list.iter().any(|f| f == NAMESPACE_FINALIZER)
        {
            list.push(json!(NAMESPACE_FINALIZER));
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
        match meta::get(old, &["spec", "finalizers"]) {
            Some(f) => {
                meta::object_at(new, &["spec"]).insert("finalizers".into(), f.clone());
            }
            None => {
                if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.remove("finalizers");
                }
            }
        }
    }

    fn return_deleted_object(&self) -> bool {
        true
    }

    fn deletion(&self) -> Deletion {
        Deletion::Terminating
    }

    fn undeletable(&self, name: &str) -> Option<&'static str> {
        // Kubernetes' immortal namespaces.
        matches!(name, "default" | "kube-system" | "kube-public").then_some("this namespace may not be deleted")
    }

    fn mark_terminating(&self, obj: &mut Value) {
        meta::object_at(obj, &["status"]).insert("phase".into(), json!("Terminating"));
    }

    fn kind_finalizers_pending(&self, obj: &Value) -> bool {
        meta::get(obj, &["spec", "finalizers"]).and_then(Value::as_array).is_some_and(|f| !f.is_empty())
    }

    fn field_labels(&self) -> (&'static [&'static str], bool) {
        (&["status.phase", "name"], true)
    }

    fn field_value(&self, obj: &Value, label: &str) -> Option<String> {
        match label {
            "status.phase" => Some(str_at(obj, &["status", "phase"]).into()),
            "name" => Some(meta::name(obj).into()),
            _ => None,
        }
    }
}

pub struct NodeRules;

impl Rules for NodeRules {
    fn has_status(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        // v1's podCIDR is podCIDRs[0] (conversion keeps the two in step).
        let cidrs = meta::get(obj, &["spec", "podCIDRs"]).and_then(Value::as_array).filter(|l| !l.is_empty()).cloned();
        let single = str_at(obj, &["spec", "podCIDR"]).to_string();
        match cidrs {
            Some(list) => {
                meta::object_at(obj, &["spec"]).insert("podCIDR".into(), list[0].clone());
            }
            None if !single.is_empty() => {
                meta::object_at(obj, &["spec"]).insert("podCIDRs".into(), json!([single]));
            }
            None => {}
        }
        // Allocatable defaults to capacity.
        if let Some(capacity) = meta::get(obj, &["status", "capacity"]).cloned()
            && meta::get(obj, &["status", "allocatable"]).is_none()
        {
            meta::object_at(obj, &["status"]).insert("allocatable".into(), capacity);
        }
    }

    /// The TaintNodesByCondition admission plugin: a new node is not ready
    /// until its node controller has seen it Ready.
    fn prepare_for_create(&self, obj: &mut Value) {
        let taints = meta::object_at(obj, &["spec"]).entry("taints").or_insert_with(|| json!([]));
        if let Some(list) = taints.as_array_mut()
            && !list.iter().any(|t| t["key"] == TAINT_NODE_NOT_READY && t["effect"] == "NoSchedule")
        {
            list.push(json!({"key": TAINT_NODE_NOT_READY, "effect": "NoSchedule"}));
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
    }

    /// A node's pod CIDRs are set once: from none to some, never changed after.
    fn validate_update(&self, new: &Value, old: &Value) -> ErrorList {
        let mut errs = self.validate(new);
        let list =
            |v: &Value| meta::get(v, &["spec", "podCIDRs"]).and_then(Value::as_array).cloned().unwrap_or_default();
        let (old_cidrs, new_cidrs) = (list(old), list(new));
        if !old_cidrs.is_empty() {
            let changed = if old_cidrs.len() != new_cidrs.len() {
                1
            } else {
                old_cidrs.iter().zip(&new_cidrs).filter(|(a, b)| a != b).count()
            };
            for _ in 0..changed {
                errs.push(FieldError::forbidden(
                    "spec.podCIDRs",
                    "node updates may not change podCIDR except from \"\" to valid",
                ));
            }
        }
        errs
    }

    fn field_labels(&self) -> (&'static [&'static str], bool) {
        (&["spec.unschedulable"], true)
    }

    fn field_value(&self, obj: &Value, label: &str) -> Option<String> {
        (label == "spec.unschedulable")
            .then(|| meta::get(obj, &["spec", "unschedulable"]).and_then(Value::as_bool).unwrap_or(false).to_string())
    }
}

pub struct EventRules;

impl Rules for EventRules {
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    fn allow_create_on_update(&self) -> bool {
        true
    }

    fn field_labels(&self) -> (&'static [&'static str], bool) {
        (
            &[
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ],
            true,
        )
    }

    fn field_value(&self, obj: &Value, label: &str) -> Option<String> {
        if let Some(f) = label.strip_prefix("involvedObject.") {
            return Some(str_at(obj, &["involvedObject", f]).into());
        }
        Some(match label {
            "reason" => str_at(obj, &["reason"]).into(),
            "reportingComponent" => str_at(obj, &["reportingComponent"]).into(),
            "source" => str_at(obj, &["source", "component"]).into(),
            "type" => str_at(obj, &["type"]).into(),
            _ => return None,
        })
    }
}

pub struct LeaseRules;

impl Rules for LeaseRules {
    fn standard_finalizers_only(&self) -> bool {
        false
    }

    fn allow_create_on_update(&self) -> bool {
        true
    }

    fn allow_unconditional_update(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_cidrs_are_set_once_and_kept_in_step() {
        let r = NodeRules;
        let mut node = json!({"metadata": {"name": "n"}, "spec": {"podCIDR": "10.244.1.0/24"}});
        r.default(&mut node);
        assert_eq!(node["spec"]["podCIDRs"], json!(["10.244.1.0/24"]));
        let fresh = json!({"metadata": {"name": "n"}, "spec": {}});
        assert!(r.validate_update(&node, &fresh).is_empty(), "from none to some");
        let mut moved = json!({"metadata": {"name": "n"}, "spec": {"podCIDRs": ["10.244.2.0/24"]}});
        r.default(&mut moved);
        assert_eq!(moved["spec"]["podCIDR"], "10.244.2.0/24");
        let errs: Vec<String> = r.validate_update(&moved, &node).iter().map(|e| e.to_string()).collect();
        assert_eq!(errs, ["spec.podCIDRs: Forbidden: node updates may not change podCIDR except from \"\" to valid"]);
    }
}
