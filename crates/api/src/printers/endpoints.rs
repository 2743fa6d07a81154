//! The Endpoints Table: the first ready addresses with their ports.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::*;

pub(super) const COLUMNS: &[Column] = &[NAME, col("Endpoints", 0, "Ready addresses and ports of the endpoints."), AGE];

pub(super) fn row(obj: &Value, now: Timestamp) -> Row {
    Row::plain(vec![name(obj), json!(endpoints_cell(obj)), age(obj, now)])
}

fn join_host_port(ip: &str, port: i64) -> String {
    if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") }
}

pub(super) fn endpoints_cell(obj: &Value) -> String {
    let subsets = arr(obj, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".into();
    }
    let (mut list, mut count, mut more) = (Vec::new(), 0usize, false);
    for ss in subsets {
        let addrs = arr(ss, &["addresses"]);
        let ports = arr(ss, &["ports"]);
        if ports.is_empty() {
            count += addrs.len();
            for a in addrs {
                if list.len() < 3 { list.push(s(a, &["ip"]).to_string()) } else { more = true }
            }
        } else {
            for p in ports {
                count += addrs.len();
                let port = i(p, &["port"]).unwrap_or(0);
                for a in addrs {
                    if list.len() < 3 { list.push(join_host_port(s(a, &["ip"]), port)) } else { more = true }
                }
            }
        }
    }
    let mut out = list.join(",");
    if more {
        out.push_str(&format!(" + {} more...", count - 3));
    }
    out
}
