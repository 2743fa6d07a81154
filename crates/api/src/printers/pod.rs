//! The pod Table: READY, STATUS (kubectl's reason rules), RESTARTS and the wide columns.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::*;
use crate::meta;

pub(super) const COLUMNS: &[Column] = &[
    NAME,
    col("Ready", 0, "The aggregate readiness state of this pod for accepting traffic."),
    col("Status", 0, "The aggregate status of the containers in this pod."),
    col("Restarts", 0, "How many times the pod's containers restarted, and when the last restart was."),
    AGE,
    col("IP", 1, "The pod's IP address (status.podIP)."),
    col("Node", 1, "The node the pod is scheduled on (spec.nodeName)."),
    col("Nominated Node", 1, "The node preemption nominated for the pod (status.nominatedNodeName)."),
    col("Readiness Gates", 1, "How many of the pod's readiness gates are true."),
];

pub(super) fn row(obj: &Value, now: Timestamp) -> Row {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let status = obj.get("status").unwrap_or(&Value::Null);
    let init_specs = arr(spec, &["initContainers"]);
    let is_sidecar =
        |name: &str| init_specs.iter().any(|c| s(c, &["name"]) == name && s(c, &["restartPolicy"]) == "Always");
    let sidecars = init_specs.iter().filter(|c| s(c, &["restartPolicy"]) == "Always").count();
    let total = arr(spec, &["containers"]).len() + sidecars;
    let (mut restarts, mut sidecar_restarts, mut ready) = (0i64, 0i64, 0usize);
    let (mut last_restart, mut last_sidecar_restart): (Option<Timestamp>, Option<Timestamp>) = (None, None);
    let finished_at = |cs: &Value| {
        meta::get(cs, &["lastState", "terminated", "finishedAt"]).and_then(Value::as_str).and_then(crate::time::parse)
    };
    let later = |a: Option<Timestamp>, b: Option<Timestamp>| match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    };

    let mut reason = s(status, &["phase"]).to_string();
    if !s(status, &["reason"]).is_empty() {
        reason = s(status, &["reason"]).to_string();
    }
    let conditions = arr(status, &["conditions"]);
    if conditions.iter().any(|c| s(c, &["type"]) == "PodScheduled" && s(c, &["reason"]) == "SchedulingGated") {
        reason = "SchedulingGated".into();
    }

    let mut initializing = false;
    let init_total = init_specs.len();
    for (idx, cs) in arr(status, &["initContainerStatuses"]).iter().enumerate() {
        let rc = i(cs, &["restartCount"]).unwrap_or(0);
        restarts += rc;
        last_restart = later(last_restart, finished_at(cs));
        let sidecar = is_sidecar(s(cs, &["name"]));
        if sidecar {
            sidecar_restarts += rc;
            last_sidecar_restart = later(last_sidecar_restart, finished_at(cs));
        }
        let terminated = meta::get(cs, &["state", "terminated"]);
        let waiting_reason = s(cs, &["state", "waiting", "reason"]);
        if terminated.is_some_and(|t| i(t, &["exitCode"]).unwrap_or(0) == 0) {
            continue;
        }
        if sidecar && meta::get(cs, &["started"]).and_then(Value::as_bool) == Some(true) {
            if meta::get(cs, &["ready"]).and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            let r = s(t, &["reason"]);
            reason = if !r.is_empty() {
                format!("Init:{r}")
            } else if i(t, &["signal"]).unwrap_or(0) != 0 {
                format!("Init:Signal:{}", i(t, &["signal"]).unwrap_or(0))
            } else {
                format!("Init:ExitCode:{}", i(t, &["exitCode"]).unwrap_or(0))
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{idx}/{init_total}");
        }
        initializing = true;
        break;
    }

    let initialized = conditions.iter().any(|c| s(c, &["type"]) == "Initialized" && s(c, &["status"]) == "True");
    if !initializing || initialized {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for cs in arr(status, &["containerStatuses"]).iter().rev() {
            restarts += i(cs, &["restartCount"]).unwrap_or(0);
            last_restart = later(last_restart, finished_at(cs));
            let waiting = s(cs, &["state", "waiting", "reason"]);
            let terminated = meta::get(cs, &["state", "terminated"]);
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if let Some(t) = terminated {
                let r = s(t, &["reason"]);
                reason = if !r.is_empty() {
                    r.to_string()
                } else if i(t, &["signal"]).unwrap_or(0) != 0 {
                    format!("Signal:{}", i(t, &["signal"]).unwrap_or(0))
                } else {
                    format!("ExitCode:{}", i(t, &["exitCode"]).unwrap_or(0))
                };
            } else if meta::get(cs, &["ready"]).and_then(Value::as_bool) == Some(true)
                && meta::get(cs, &["state", "running"]).is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = conditions.iter().any(|c| s(c, &["type"]) == "Ready" && s(c, &["status"]) == "True");
            reason = if pod_ready { "Running".into() } else { "NotReady".into() };
        }
    }

    let phase = s(status, &["phase"]);
    if meta::deletion_timestamp(obj).is_some() {
        if s(status, &["reason"]) == "NodeLost" {
            reason = "Unknown".into();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".into();
        }
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", human_duration(now.as_second() - t.as_second())),
        _ => restarts.to_string(),
    };
    let mut ip = s(status, &["podIP"]).to_string();
    if ip.is_empty() {
        ip = arr(status, &["podIPs"]).first().map(|p| s(p, &["ip"]).to_string()).unwrap_or_default();
    }
    let gates = arr(spec, &["readinessGates"]);
    let gates_cell = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let t = gates
            .iter()
            .filter(|g| {
                let ty = s(g, &["conditionType"]);
                conditions.iter().find(|c| s(c, &["type"]) == ty).is_some_and(|c| s(c, &["status"]) == "True")
            })
            .count();
        format!("{t}/{}", gates.len())
    };
    let row_conditions = match phase {
        "Succeeded" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}]),
        ),
        "Failed" => {
            Some(json!([{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]))
        }
        _ => None,
    };
    Row {
        cells: vec![
            json!(meta::name(obj)),
            json!(format!("{ready}/{total}")),
            json!(reason),
            json!(restarts_cell),
            json!(since(meta::meta(obj).get("creationTimestamp").and_then(Value::as_str), now)),
            json!(or_none(ip)),
            json!(or_none(s(spec, &["nodeName"]).into())),
            json!(or_none(s(status, &["nominatedNodeName"]).into())),
            json!(gates_cell),
        ],
        conditions: row_conditions,
    }
}
