//! The Secret Table: TYPE and DATA (its keys).

use jiff::Timestamp;
use serde_json::{Value, json};

use super::*;

pub(super) const COLUMNS: &[Column] = &[
    NAME,
    col(
        "Type",
        0,
        "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types",
    ),
    col(
        "Data",
        0,
        "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4",
    ),
    AGE,
];

pub(super) fn row(obj: &Value, now: Timestamp) -> Row {
    Row::plain(vec![name(obj), json!(s(obj, &["type"])), json!(key_count(obj, "data")), age(obj, now)])
}
