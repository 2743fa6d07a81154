//! The Deployment Table: READY, UP-TO-DATE, AVAILABLE, and the template when wide.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::*;
use crate::meta;
use crate::selector::LabelSelector;

pub(super) const COLUMNS: &[Column] = &[
    NAME,
    col("Ready", 0, "Ready pods over desired pods."),
    col("Up-to-date", 0, "Pods that run the current template (status.updatedReplicas)."),
    col("Available", 0, "Pods available to serve (status.availableReplicas)."),
    AGE,
    CONTAINERS,
    IMAGES,
    col("Selector", 1, "The label selector of the deployment's pods."),
];

pub(super) fn row(obj: &Value, now: Timestamp) -> Row {
    let (containers, images) = container_cells(obj);
    let replicas = i(obj, &["spec", "replicas"]).unwrap_or(1);
    let selector = match LabelSelector::from_api(meta::get(obj, &["spec", "selector"])) {
        Ok(sel) if !sel.matches_nothing => sel.to_string(),
        Ok(_) => String::new(),
        Err(_) => "<invalid>".into(),
    };
    Row::plain(vec![
        name(obj),
        json!(format!("{}/{}", i(obj, &["status", "readyReplicas"]).unwrap_or(0), replicas)),
        json!(i(obj, &["status", "updatedReplicas"]).unwrap_or(0)),
        json!(i(obj, &["status", "availableReplicas"]).unwrap_or(0)),
        age(obj, now),
        json!(containers),
        json!(images),
        json!(selector),
    ])
}
