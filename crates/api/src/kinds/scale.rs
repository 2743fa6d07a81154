//! The `/scale` subresource of deployments and replica sets: the autoscaling/v1
//! Scale a workload shows, and what writing one changes (only `spec.replicas`).

use serde_json::{Value, json};

use crate::meta;
use crate::selector::LabelSelector;
use crate::status::{GroupKind, StatusError};
use crate::validation::{ErrorList, FieldError};

/// The OpenAPI name of the Scale type, for decoding and patching.
pub const SCALE_TYPE: &str = "io.k8s.api.autoscaling.v1.Scale";

/// The Scale a workload shows.
pub fn scale_of(obj: &Value) -> Value {
    let selector =
        LabelSelector::from_api(meta::get(obj, &["spec", "selector"])).map(|s| s.to_string()).unwrap_or_default();
    let m = meta::meta(obj);
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {"name": m.get("name"), "namespace": m.get("namespace"), "uid": m.get("uid"),
                     "resourceVersion": m.get("resourceVersion"), "creationTimestamp": m.get("creationTimestamp")},
        "spec": {"replicas": meta::get(obj, &["spec", "replicas"]).and_then(Value::as_i64).unwrap_or(1)},
        "status": {"replicas": meta::get(obj, &["status", "replicas"]).and_then(Value::as_i64).unwrap_or(0), "selector": selector},
    })
}

/// The replica count a Scale asks for, checked as Kubernetes validates a Scale.
pub fn requested_replicas(scale: &Value, name: &str) -> Result<i64, StatusError> {
    let replicas = meta::get(scale, &["spec", "replicas"]).and_then(Value::as_i64).unwrap_or(0);
    if replicas < 0 {
        let mut errs = ErrorList::new();
        errs.push(FieldError::invalid("spec.replicas", replicas, "must be greater than or equal to 0"));
        return Err(StatusError::invalid(GroupKind { group: "autoscaling", kind: "Scale" }, name, &errs));
    }
    Ok(replicas)
}

/// What writing a Scale changes on the workload.
pub fn set_replicas(obj: &mut Value, replicas: i64) {
    meta::object_at(obj, &["spec"]).insert("replicas".into(), json!(replicas));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workload_as_its_scale() {
        let d = json!({"metadata": {"name": "web", "namespace": "default", "uid": "u", "resourceVersion": "7"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}}, "status": {"replicas": 2}});
        let s = scale_of(&d);
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"], json!({"replicas": 2, "selector": "app=web"}));
        assert_eq!(s["metadata"]["resourceVersion"], "7");
        assert_eq!(requested_replicas(&json!({"spec": {"replicas": 5}}), "web").ok(), Some(5));
        let err = requested_replicas(&json!({"spec": {"replicas": -1}}), "web").unwrap_err();
        assert_eq!(err.code, 422);
        assert!(
            err.message.contains("spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
            "{}",
            err.message
        );
        let mut d = d;
        set_replicas(&mut d, 0);
        assert_eq!(d["spec"]["replicas"], 0);
    }
}
