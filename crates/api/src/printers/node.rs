//! The Node Table: STATUS, ROLES, VERSION, and addresses and node info when wide.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::*;
use crate::meta;

pub(super) const COLUMNS: &[Column] = &[
    NAME,
    col("Status", 0, "The status of the node"),
    col("Roles", 0, "The roles of the node"),
    AGE,
    col("Version", 0, "Kubelet version reported by the node."),
    col("Internal-IP", 1, "The node's first InternalIP address."),
    col("External-IP", 1, "The node's first ExternalIP address."),
    col("OS-Image", 1, "Operating system image reported by the node."),
    col("Kernel-Version", 1, "Kernel version reported by the node."),
    col("Container-Runtime", 1, "Container runtime version reported by the node."),
];

pub(super) fn row(obj: &Value, now: Timestamp) -> Row {
    let ready = arr(obj, &["status", "conditions"]).iter().find(|c| s(c, &["type"]) == "Ready");
    let mut status = match ready {
        Some(c) if s(c, &["status"]) == "True" => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if meta::get(obj, &["spec", "unschedulable"]).and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    let mut roles = BTreeSet::new();
    for (k, v) in meta::labels(obj).into_iter().flatten() {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.insert(role.to_string());
            }
        } else if k == "kubernetes.io/role" && v.as_str().is_some_and(|v| !v.is_empty()) {
            roles.insert(v.as_str().unwrap_or_default().to_string());
        }
    }
    let address = |ty: &str| {
        or_none(
            arr(obj, &["status", "addresses"])
                .iter()
                .find(|a| s(a, &["type"]) == ty)
                .map(|a| s(a, &["address"]).to_string())
                .unwrap_or_default(),
        )
    };
    let info = |k: &str| {
        let v = s(obj, &["status", "nodeInfo", k]);
        if v.is_empty() { "<unknown>".to_string() } else { v.to_string() }
    };
    Row {
        cells: vec![
            name(obj),
            json!(status),
            json!(or_none(roles.into_iter().collect::<Vec<_>>().join(","))),
            age(obj, now),
            json!(s(obj, &["status", "nodeInfo", "kubeletVersion"])),
            json!(address("InternalIP")),
            json!(address("ExternalIP")),
            json!(info("osImage")),
            json!(info("kernelVersion")),
            json!(info("containerRuntimeVersion")),
        ],
        conditions: None,
    }
}
