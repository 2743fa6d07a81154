//! The Lease Table: HOLDER.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::*;

pub(super) const COLUMNS: &[Column] = &[NAME, col("Holder", 0, "The identity of the lease's holder."), AGE];

pub(super) fn row(obj: &Value, now: Timestamp) -> Row {
    Row::plain(vec![name(obj), json!(s(obj, &["spec", "holderIdentity"])), age(obj, now)])
}
