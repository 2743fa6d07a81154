//! The Event Table: LAST SEEN, TYPE, REASON, OBJECT, MESSAGE, and more when wide.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::*;
use crate::meta;

pub(super) const COLUMNS: &[Column] = &[
    col("Last Seen", 0, "When the event was last observed."),
    col("Type", 0, "Type of this event (Normal, Warning)."),
    col("Reason", 0, "A short, machine understandable reason for the event."),
    col("Object", 0, "The object the event is about."),
    col("Subobject", 1, "The part of the object the event is about."),
    col("Source", 1, "The component that reported the event."),
    col("Message", 0, "A human-readable description of the event."),
    col("First Seen", 1, "When the event was first observed."),
    col("Count", 1, "How many times the event has occurred."),
    Column { priority: 1, ..NAME },
];

pub(super) fn row(obj: &Value, now: Timestamp) -> Row {
    let first_ts = meta::get(obj, &["firstTimestamp"]).and_then(Value::as_str);
    let first = match first_ts {
        Some(t) => since(Some(t), now),
        None => since(meta::get(obj, &["eventTime"]).and_then(Value::as_str), now),
    };
    let mut last = match meta::get(obj, &["lastTimestamp"]).and_then(Value::as_str) {
        Some(t) => since(Some(t), now),
        None => first.clone(),
    };
    let mut count = i(obj, &["count"]).unwrap_or(0);
    if let Some(series) = obj.get("series").filter(|v| v.is_object()) {
        last = since(series.get("lastObservedTime").and_then(Value::as_str), now);
        count = i(series, &["count"]).unwrap_or(0);
    } else if count == 0 {
        count = 1;
    }
    let kind = s(obj, &["involvedObject", "kind"]).to_lowercase();
    let oname = s(obj, &["involvedObject", "name"]);
    let object = if oname.is_empty() { kind } else { format!("{kind}/{oname}") };
    let mut component = s(obj, &["source", "component"]);
    if component.is_empty() {
        component = s(obj, &["reportingController"]);
    }
    let mut host = s(obj, &["source", "host"]);
    if host.is_empty() {
        host = s(obj, &["reportingInstance"]);
    }
    let source = if host.is_empty() { component.to_string() } else { format!("{component}, {host}") };
    Row {
        cells: vec![
            json!(last),
            json!(s(obj, &["type"])),
            json!(s(obj, &["reason"])),
            json!(object),
            json!(s(obj, &["involvedObject", "fieldPath"])),
            json!(source),
            json!(s(obj, &["message"]).trim()),
            json!(first),
            json!(count),
            json!(meta::name(obj)),
        ],
        conditions: None,
    }
}
