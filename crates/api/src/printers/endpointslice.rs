//! The EndpointSlice Table: ADDRESSTYPE, PORTS and ENDPOINTS.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::*;

pub(super) const COLUMNS: &[Column] = &[
    NAME,
    col("AddressType", 0, "The type of the addresses in this slice (IPv4, IPv6 or FQDN)."),
    col("Ports", 0, "The ports every endpoint in this slice exposes."),
    col("Endpoints", 0, "The addresses of the endpoints in this slice."),
    AGE,
];

pub(super) fn row(obj: &Value, now: Timestamp) -> Row {
    let (ports, endpoints) = cells(obj);
    Row::plain(vec![name(obj), json!(s(obj, &["addressType"])), json!(ports), json!(endpoints), age(obj, now)])
}

pub(super) fn cells(obj: &Value) -> (String, String) {
    let ports = arr(obj, &["ports"]);
    let port_items: Vec<String> = ports
        .iter()
        .take(3)
        .map(|p| match (i(p, &["port"]), s(p, &["name"])) {
            (Some(n), _) => n.to_string(),
            (None, name) if !name.is_empty() => name.to_string(),
            _ => "*".into(),
        })
        .collect();
    let addresses: Vec<String> = arr(obj, &["endpoints"])
        .iter()
        .flat_map(|e| arr(e, &["addresses"]).iter().map(|a| a.as_str().unwrap_or_default().to_string()))
        .collect();
    let shown: Vec<String> = addresses.iter().take(3).cloned().collect();
    (
        list_with_more(&port_items, ports.len(), ports.len() > 3),
        list_with_more(&shown, addresses.len(), addresses.len() > 3),
    )
}
