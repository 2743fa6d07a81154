//! Deployments and ReplicaSets.

use serde_json::{Value, json};

use super::pod::{default_pod_spec, validate_pod_spec};
use super::{Generation, Rules, keep_status};
use crate::meta;
use crate::selector::LabelSelector;
use crate::validation::{ErrorList, FieldError, validate_labels};

fn default_template(obj: &mut Value) {
    if let Some(spec) = obj.get_mut("spec").and_then(|s| s.get_mut("template")).and_then(|t| t.get_mut("spec")) {
        default_pod_spec(spec);
    }
}

/// The checks deployments and replica sets share: replicas, selector, template.
fn validate_workload(obj: &Value, template_restart_always: bool) -> ErrorList {
    let mut errs = ErrorList::new();
    if let Some(r) = meta::get(obj, &["spec", "replicas"]).and_then(Value::as_i64)
        && r < 0
    {
        errs.push(FieldError::invalid("spec.replicas", r, "must be greater than or equal to 0"));
    }
    let selector = meta::get(obj, &["spec", "selector"]);
    match selector {
        None => errs.push(FieldError::required("spec.selector", "")),
        Some(sel) => match LabelSelector::from_api(Some(sel)) {
            Err(e) => errs.push(FieldError::invalid("spec.selector", sel.clone(), e)),
            Ok(s) if s.is_everything() => {
                errs.push(FieldError::invalid("spec.selector", sel.clone(), "empty selector is invalid for deployment"))
            }
            Ok(s) => {
                let labels = meta::get(obj, &["spec", "template", "metadata", "labels"]).and_then(Value::as_object);
                if !s.matches(labels) {
                    errs.push(FieldError::invalid(
                        "spec.template.metadata.labels",
                        labels.map_or(json!({}), |l| Value::Object(l.clone())),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        },
    }
    errs.extend(validate_labels(
        meta::get(obj, &["spec", "template", "metadata", "labels"]).and_then(Value::as_object),
        "spec.template.metadata.labels",
    ));
    let spec = meta::get(obj, &["spec", "template", "spec"]).unwrap_or(&Value::Null);
    errs.extend(validate_pod_spec(spec, "spec.template.spec"));
    if template_restart_always
        && let Some(p) = spec.get("restartPolicy").and_then(Value::as_str)
        && p != "Always"
    {
        errs.push(FieldError::not_supported("spec.template.spec.restartPolicy", p, &["Always"]));
    }
    errs
}

fn selector_immutable(new: &Value, old: &Value, errs: &mut ErrorList) {
    let (n, o) = (meta::get(new, &["spec", "selector"]), meta::get(old, &["spec", "selector"]));
    if n != o {
        errs.push(FieldError::invalid("spec.selector", n.cloned().unwrap_or(Value::Null), "field is immutable"));
    }
}

pub struct DeploymentRules;

impl Rules for DeploymentRules {
    fn generation(&self) -> Generation {
        Generation::SpecOrAnnotations
    }

    fn has_status(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        meta::default_at(obj, &["spec"], "replicas", 1);
        meta::default_at(obj, &["spec", "strategy"], "type", "RollingUpdate");
        if meta::get_str(obj, &["spec", "strategy", "type"]) == "RollingUpdate" {
            meta::default_at(obj, &["spec", "strategy", "rollingUpdate"], "maxUnavailable", "25%");
            meta::default_at(obj, &["spec", "strategy", "rollingUpdate"], "maxSurge", "25%");
        }
        meta::default_at(obj, &["spec"], "revisionHistoryLimit", 10);
        meta::default_at(obj, &["spec"], "progressDeadlineSeconds", 600);
        default_template(obj);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({});
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
    }

    fn prepare_for_status_update(&self, new: &mut Value, old: &Value) {
        meta::keep_field(new, old, "spec");
        match meta::meta(old).get("labels") {
            Some(l) => meta::set(new, "labels", l.clone()),
            None => {
                meta::remove(new, "labels");
            }
        }
    }

    fn validate(&self, obj: &Value) -> ErrorList {
        let mut errs = validate_workload(obj, true);
        match meta::get_str(obj, &["spec", "strategy", "type"]) {
            "RollingUpdate" => {}
            "Recreate" => {
                if meta::get(obj, &["spec", "strategy", "rollingUpdate"]).is_some() {
                    errs.push(FieldError::forbidden(
                        "spec.strategy.rollingUpdate",
                        "may not be specified when strategy `type` is 'Recreate'",
                    ));
                }
            }
            other => errs.push(FieldError::not_supported("spec.strategy.type", other, &["Recreate", "RollingUpdate"])),
        }
        for f in ["revisionHistoryLimit", "progressDeadlineSeconds", "minReadySeconds"] {
            if let Some(v) = meta::get(obj, &["spec", f]).and_then(Value::as_i64)
                && v < 0
            {
                errs.push(FieldError::invalid(format!("spec.{f}"), v, "must be greater than or equal to 0"));
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> ErrorList {
        let mut errs = self.validate(new);
        selector_immutable(new, old, &mut errs);
        errs
    }
}

pub struct ReplicaSetRules;

impl Rules for ReplicaSetRules {
    fn generation(&self) -> Generation {
        Generation::Spec
    }

    fn has_status(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        meta::default_at(obj, &["spec"], "replicas", 1);
        default_template(obj);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"replicas": 0});
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
    }

    fn validate(&self, obj: &Value) -> ErrorList {
        validate_workload(obj, true)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> ErrorList {
        let mut errs = self.validate(new);
        selector_immutable(new, old, &mut errs);
        errs
    }
}
