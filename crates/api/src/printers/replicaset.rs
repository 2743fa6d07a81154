//! The ReplicaSet Table: DESIRED, CURRENT, READY, and the template when wide.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::*;
use crate::meta;

pub(super) const COLUMNS: &[Column] = &[
    NAME,
    int_col("Desired", "The desired number of pods (spec.replicas)."),
    int_col("Current", "The number of non-terminating pods (status.replicas)."),
    int_col("Ready", "The number of ready pods (status.readyReplicas)."),
    AGE,
    CONTAINERS,
    IMAGES,
    col("Selector", 1, "The label selector of the replica set's pods."),
];

pub(super) fn row(obj: &Value, now: Timestamp) -> Row {
    let (containers, images) = container_cells(obj);
    Row::plain(vec![
        name(obj),
        json!(i(obj, &["spec", "replicas"]).unwrap_or(1)),
        json!(i(obj, &["status", "replicas"]).unwrap_or(0)),
        json!(i(obj, &["status", "readyReplicas"]).unwrap_or(0)),
        age(obj, now),
        json!(containers),
        json!(images),
        json!(format_label_selector(meta::get(obj, &["spec", "selector"]))),
    ])
}
