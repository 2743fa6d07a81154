//! The Namespace Table: STATUS (its phase).

use jiff::Timestamp;
use serde_json::{Value, json};

use super::*;

pub(super) const COLUMNS: &[Column] = &[NAME, col("Status", 0, "The status of the namespace"), AGE];

pub(super) fn row(obj: &Value, now: Timestamp) -> Row {
    Row::plain(vec![name(obj), json!(s(obj, &["status", "phase"])), age(obj, now)])
}
