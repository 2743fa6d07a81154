//! The ConfigMap Table: DATA (data and binaryData keys).

use jiff::Timestamp;
use serde_json::{Value, json};

use super::*;

pub(super) const COLUMNS: &[Column] = &[
    NAME,
    col(
        "Data",
        0,
        "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.",
    ),
    AGE,
];

pub(super) fn row(obj: &Value, now: Timestamp) -> Row {
    Row::plain(vec![name(obj), json!(key_count(obj, "data") + key_count(obj, "binaryData")), age(obj, now)])
}
