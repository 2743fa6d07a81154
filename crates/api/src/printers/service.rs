//! The Service Table: TYPE, CLUSTER-IP, EXTERNAL-IP, PORT(S), and SELECTOR when wide.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::*;
use crate::meta;

pub(super) const COLUMNS: &[Column] = &[
    NAME,
    col("Type", 0, "How the service is exposed (spec.type)."),
    col("Cluster-IP", 0, "The service's virtual IP (spec.clusterIP)."),
    col("External-IP", 0, "Addresses outside the cluster that reach the service."),
    col("Port(s)", 0, "The ports the service exposes (spec.ports)."),
    AGE,
    col("Selector", 1, "The labels of the pods the service routes to (spec.selector)."),
];

pub(super) fn row(obj: &Value, now: Timestamp) -> Row {
    Row::plain(vec![
        name(obj),
        json!(s(obj, &["spec", "type"])),
        json!(cluster_ip(obj)),
        json!(external_ip(obj)),
        json!(ports(obj)),
        age(obj, now),
        json!(format_labels(meta::get(obj, &["spec", "selector"]))),
    ])
}

fn cluster_ip(obj: &Value) -> String {
    let ip = s(obj, &["spec", "clusterIP"]);
    if !ip.is_empty() {
        return ip.into();
    }
    or_none(arr(obj, &["spec", "clusterIPs"]).first().and_then(Value::as_str).unwrap_or_default().to_string())
}

fn external_ip(obj: &Value) -> String {
    let external: Vec<&str> = arr(obj, &["spec", "externalIPs"]).iter().filter_map(Value::as_str).collect();
    match s(obj, &["spec", "type"]) {
        "ClusterIP" | "NodePort" => or_none(external.join(",")),
        "LoadBalancer" => {
            let lb: BTreeSet<String> = arr(obj, &["status", "loadBalancer", "ingress"])
                .iter()
                .filter_map(|ing| {
                    let ip = s(ing, &["ip"]);
                    let host = s(ing, &["hostname"]);
                    if !ip.is_empty() {
                        Some(ip.to_string())
                    } else if !host.is_empty() {
                        Some(host.to_string())
                    } else {
                        None
                    }
                })
                .collect();
            let mut all: Vec<String> = lb.into_iter().collect();
            if !external.is_empty() {
                all.extend(external.iter().map(|s| s.to_string()));
                all.join(",")
            } else if !all.is_empty() {
                all.join(",")
            } else {
                "<pending>".into()
            }
        }
        "ExternalName" => s(obj, &["spec", "externalName"]).into(),
        _ => "<unknown>".into(),
    }
}

fn ports(obj: &Value) -> String {
    let ports: Vec<String> = arr(obj, &["spec", "ports"])
        .iter()
        .map(|p| {
            let port = i(p, &["port"]).unwrap_or(0);
            let proto = s(p, &["protocol"]);
            match i(p, &["nodePort"]) {
                Some(np) if np > 0 => format!("{port}:{np}/{proto}"),
                _ => format!("{port}/{proto}"),
            }
        })
        .collect();
    or_none(ports.join(","))
}
