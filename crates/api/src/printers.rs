//! Server-side printing: the Table columns and cells `kubectl get` shows, kind
//! by kind, as Kubernetes computes them. All columns are always sent; kubectl
//! hides priority-1 columns unless asked for `-o wide`.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::meta;
use crate::selector::LabelSelector;

#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub ty: &'static str,
    pub format: &'static str,
    pub priority: u8,
    pub description: &'static str,
}

impl Column {
    pub fn to_json(&self) -> Value {
        json!({"name": self.name, "type": self.ty, "format": self.format, "description": self.description, "priority": self.priority})
    }
}

const fn col(name: &'static str, priority: u8, description: &'static str) -> Column {
    Column { name, ty: "string", format: "", priority, description }
}

const fn int_col(name: &'static str, description: &'static str) -> Column {
    Column { name, ty: "integer", format: "", priority: 0, description }
}

const NAME: Column = Column {
    name: "Name",
    ty: "string",
    format: "name",
    priority: 0,
    description: "Name must be unique within a namespace; see https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
};
const AGE: Column = col("Age", 0, "Time since the object was created (metadata.creationTimestamp).");
const CONTAINERS: Column = col("Containers", 1, "Names of each container in the template.");
const IMAGES: Column = col("Images", 1, "Images referenced by each container in the template.");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Printer {
    Pod,
    Service,
    Endpoints,
    EndpointSlice,
    Deployment,
    ReplicaSet,
    Node,
    Namespace,
    Event,
    Lease,
    /// Name and creation time, for kinds without a printer.
    Default,
}

/// One row: its cells, and the row conditions (only pods have them).
pub struct Row {
    pub cells: Vec<Value>,
    pub conditions: Option<Value>,
}

impl Printer {
    pub fn columns(self) -> &'static [Column] {
        match self {
            Printer::Pod => {
                const {
                    &[
                        NAME,
                        col("Ready", 0, "The aggregate readiness state of this pod for accepting traffic."),
                        col("Status", 0, "The aggregate status of the containers in this pod."),
                        col(
                            "Restarts",
                            0,
                            "How many times the pod's containers restarted, and when the last restart was.",
                        ),
                        AGE,
                        col("IP", 1, "The pod's IP address (status.podIP)."),
                        col("Node", 1, "The node the pod is scheduled on (spec.nodeName)."),
                        col(
                            "Nominated Node",
                            1,
                            "The node preemption nominated for the pod (status.nominatedNodeName).",
                        ),
                        col("Readiness Gates", 1, "How many of the pod's readiness gates are true."),
                    ]
                }
            }
            Printer::Service => {
                const {
                    &[
                        NAME,
                        col("Type", 0, "How the service is exposed (spec.type)."),
                        col("Cluster-IP", 0, "The service's virtual IP (spec.clusterIP)."),
                        col("External-IP", 0, "Addresses outside the cluster that reach the service."),
                        col("Port(s)", 0, "The ports the service exposes (spec.ports)."),
                        AGE,
                        col("Selector", 1, "The labels of the pods the service routes to (spec.selector)."),
                    ]
                }
            }
            Printer::Endpoints => {
                const { &[NAME, col("Endpoints", 0, "Ready addresses and ports of the endpoints."), AGE] }
            }
            Printer::EndpointSlice => {
                const {
                    &[
                        NAME,
                        col("AddressType", 0, "The type of the addresses in this slice (IPv4, IPv6 or FQDN)."),
                        col("Ports", 0, "The ports every endpoint in this slice exposes."),
                        col("Endpoints", 0, "The addresses of the endpoints in this slice."),
                        AGE,
                    ]
                }
            }
            Printer::Deployment => {
                const {
                    &[
                        NAME,
                        col("Ready", 0, "Ready pods over desired pods."),
                        col("Up-to-date", 0, "Pods that run the current template (status.updatedReplicas)."),
                        col("Available", 0, "Pods available to serve (status.availableReplicas)."),
                        AGE,
                        CONTAINERS,
                        IMAGES,
                        col("Selector", 1, "The label selector of the deployment's pods."),
                    ]
                }
            }
            Printer::ReplicaSet => {
                const {
                    &[
                        NAME,
                        int_col("Desired", "The desired number of pods (spec.replicas)."),
                        int_col("Current", "The number of non-terminating pods (status.replicas)."),
                        int_col("Ready", "The number of ready pods (status.readyReplicas)."),
                        AGE,
                        CONTAINERS,
                        IMAGES,
                        col("Selector", 1, "The label selector of the replica set's pods."),
                    ]
                }
            }
            Printer::Node => {
                const {
                    &[
                        NAME,
                        col("Status", 0, "The status of the node"),
                        col("Roles", 0, "The roles of the node"),
                        AGE,
                        col("Version", 0, "Kubelet version reported by the node."),
                        col("Internal-IP", 1, "The node's first InternalIP address."),
                        col("External-IP", 1, "The node's first ExternalIP address."),
                        col("OS-Image", 1, "Operating system image reported by the node."),
                        col("Kernel-Version", 1, "Kernel version reported by the node."),
                        col("Container-Runtime", 1, "Container runtime version reported by the node."),
                    ]
                }
            }
            Printer::Namespace => const { &[NAME, col("Status", 0, "The status of the namespace"), AGE] },
            Printer::Event => {
                const {
                    &[
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
                    ]
                }
            }
            Printer::Lease => const { &[NAME, col("Holder", 0, "The identity of the lease's holder."), AGE] },
            Printer::Default => {
                const {
                    &[
                        NAME,
                        Column {
                            name: "Created At",
                            ty: "date",
                            format: "",
                            priority: 0,
                            description: AGE.description,
                        },
                    ]
                }
            }
        }
    }

    pub fn row(self, obj: &Value, now: Timestamp) -> Row {
        let plain = |cells: Vec<Value>| Row { cells, conditions: None };
        let name = json!(meta::name(obj));
        let age = json!(since(meta::meta(obj).get("creationTimestamp").and_then(Value::as_str), now));
        match self {
            Printer::Pod => pod_row(obj, now),
            Printer::Service => plain(vec![
                name,
                json!(s(obj, &["spec", "type"])),
                json!(service_cluster_ip(obj)),
                json!(service_external_ip(obj)),
                json!(service_ports(obj)),
                age,
                json!(format_labels(meta::get(obj, &["spec", "selector"]))),
            ]),
            Printer::Endpoints => plain(vec![name, json!(endpoints_cell(obj)), age]),
            Printer::EndpointSlice => {
                let (ports, endpoints) = slice_cells(obj);
                plain(vec![name, json!(s(obj, &["addressType"])), json!(ports), json!(endpoints), age])
            }
            Printer::Deployment => {
                let (containers, images) = container_cells(obj);
                let replicas = i(obj, &["spec", "replicas"]).unwrap_or(1);
                let selector = match LabelSelector::from_api(meta::get(obj, &["spec", "selector"])) {
                    Ok(sel) if !sel.matches_nothing => sel.to_string(),
                    Ok(_) => String::new(),
                    Err(_) => "<invalid>".into(),
                };
                plain(vec![
                    name,
                    json!(format!("{}/{}", i(obj, &["status", "readyReplicas"]).unwrap_or(0), replicas)),
                    json!(i(obj, &["status", "updatedReplicas"]).unwrap_or(0)),
                    json!(i(obj, &["status", "availableReplicas"]).unwrap_or(0)),
                    age,
                    json!(containers),
                    json!(images),
                    json!(selector),
                ])
            }
            Printer::ReplicaSet => {
                let (containers, images) = container_cells(obj);
                plain(vec![
                    name,
                    json!(i(obj, &["spec", "replicas"]).unwrap_or(1)),
                    json!(i(obj, &["status", "replicas"]).unwrap_or(0)),
                    json!(i(obj, &["status", "readyReplicas"]).unwrap_or(0)),
                    age,
                    json!(containers),
                    json!(images),
                    json!(format_label_selector(meta::get(obj, &["spec", "selector"]))),
                ])
            }
            Printer::Node => node_row(obj, name, age),
            Printer::Namespace => plain(vec![name, json!(s(obj, &["status", "phase"])), age]),
            Printer::Event => event_row(obj, now),
            Printer::Lease => plain(vec![name, json!(s(obj, &["spec", "holderIdentity"])), age]),
            Printer::Default => {
                let created =
                    meta::meta(obj).get("creationTimestamp").and_then(Value::as_str).unwrap_or("0001-01-01T00:00:00Z");
                plain(vec![name, json!(created)])
            }
        }
    }
}

fn s<'a>(obj: &'a Value, path: &[&str]) -> &'a str {
    meta::get_str(obj, path)
}

fn i(obj: &Value, path: &[&str]) -> Option<i64> {
    meta::get(obj, path).and_then(Value::as_i64)
}

fn arr<'a>(obj: &'a Value, path: &[&str]) -> &'a [Value] {
    meta::get(obj, path).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

fn or_none(v: String) -> String {
    if v.is_empty() { "<none>".into() } else { v }
}

/// Kubernetes' `HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    let (minutes, hours) = (secs / 60, secs / 3600);
    if secs < 120 {
        format!("{secs}s")
    } else if minutes < 10 {
        let s = secs % 60;
        if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") }
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        let m = minutes % 60;
        if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 192 {
        let h = hours % 24;
        if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{h}h", hours / 24) }
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        let days = hours / 24;
        let dd = days % 365;
        if dd == 0 { format!("{}y", days / 365) } else { format!("{}y{dd}d", days / 365) }
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

/// `translateTimestampSince`: the age of a timestamp, `<unknown>` when unset.
pub fn since(ts: Option<&str>, now: Timestamp) -> String {
    match ts.and_then(crate::time::parse) {
        Some(t) => human_duration(now.as_second() - t.as_second()),
        None => "<unknown>".into(),
    }
}

/// `labels.FormatLabels`: sorted `k=v` joined by commas, `<none>` when empty.
pub fn format_labels(labels: Option<&Value>) -> String {
    let mut parts: Vec<String> = labels
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    parts.sort();
    or_none(parts.join(","))
}

/// `metav1.FormatLabelSelector`.
pub fn format_label_selector(sel: Option<&Value>) -> String {
    match LabelSelector::from_api(sel) {
        Ok(s) if s.matches_nothing => "<none>".into(),
        Ok(s) => or_none(s.to_string()),
        Err(_) => "<error>".into(),
    }
}

fn container_cells(obj: &Value) -> (String, String) {
    let cs = arr(obj, &["spec", "template", "spec", "containers"]);
    let names: Vec<&str> = cs.iter().map(|c| s(c, &["name"])).collect();
    let images: Vec<&str> = cs.iter().map(|c| s(c, &["image"])).collect();
    (names.join(","), images.join(","))
}

/// `listWithMoreString`: the first three items, `+ N more...`, `<unset>` when empty.
fn list_with_more(items: &[String], count: usize, more: bool) -> String {
    let mut out = items.join(",");
    if more {
        out.push_str(&format!(" + {} more...", count - 3));
    }
    if out.is_empty() { "<unset>".into() } else { out }
}

fn join_host_port(ip: &str, port: i64) -> String {
    if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") }
}

fn endpoints_cell(obj: &Value) -> String {
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

fn slice_cells(obj: &Value) -> (String, String) {
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

fn service_cluster_ip(obj: &Value) -> String {
    let ip = s(obj, &["spec", "clusterIP"]);
    if !ip.is_empty() {
        return ip.into();
    }
    or_none(arr(obj, &["spec", "clusterIPs"]).first().and_then(Value::as_str).unwrap_or_default().to_string())
}

fn service_external_ip(obj: &Value) -> String {
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

fn service_ports(obj: &Value) -> String {
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

fn node_row(obj: &Value, name: Value, age: Value) -> Row {
    let ready = arr(obj, &["status", "conditions"]).iter().find(|c| s(c, &["type"]) == "Ready");
    let mut status = match ready {
        Some(c) if s(c, &["status"]) == "True" => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if meta::get(obj, &["spec", "unschedulable"]).and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    let mut roles = BTreeSet::new();
    for (k, v) in meta::labels(obj).into_iter().flatten() {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.insert(role.to_string());
            }
        } else if k == "kubernetes.io/role" && v.as_str().is_some_and(|v| !v.is_empty()) {
            roles.insert(v.as_str().unwrap_or_default().to_string());
        }
    }
    let address = |ty: &str| {
        or_none(
            arr(obj, &["status", "addresses"])
                .iter()
                .find(|a| s(a, &["type"]) == ty)
                .map(|a| s(a, &["address"]).to_string())
                .unwrap_or_default(),
        )
    };
    let info = |k: &str| {
        let v = s(obj, &["status", "nodeInfo", k]);
        if v.is_empty() { "<unknown>".to_string() } else { v.to_string() }
    };
    Row {
        cells: vec![
            name,
            json!(status),
            json!(or_none(roles.into_iter().collect::<Vec<_>>().join(","))),
            age,
            json!(s(obj, &["status", "nodeInfo", "kubeletVersion"])),
            json!(address("InternalIP")),
            json!(address("ExternalIP")),
            json!(info("osImage")),
            json!(info("kernelVersion")),
            json!(info("containerRuntimeVersion")),
        ],
        conditions: None,
    }
}

fn event_row(obj: &Value, now: Timestamp) -> Row {
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

fn pod_row(obj: &Value, now: Timestamp) -> Row {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        crate::time::parse("2024-05-10T12:00:00Z").unwrap()
    }

    #[test]
    fn durations() {
        let cases = [
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (125, "2m5s"),
            (599, "9m59s"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (5 * 3600 + 1800, "5h30m"),
            (23 * 3600, "23h"),
            (47 * 3600 + 59, "47h"),
            (48 * 3600, "2d"),
            (3 * 86400 + 5 * 3600, "3d5h"),
            (8 * 86400, "8d"),
            (729 * 86400, "729d"),
            (730 * 86400, "2y"),
            ((3 * 365 + 10) * 86400, "3y10d"),
            (-1, "0s"),
            (-5, "<invalid>"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want, "{secs}s");
        }
    }

    #[test]
    fn services() {
        let row = |v: Value| Printer::Service.row(&v, now()).cells;
        let svc = json!({"metadata": {"name": "web", "creationTimestamp": "2024-05-10T11:55:00Z"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.20", "selector": {"b": "2", "a": "1"},
                     "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}});
        assert_eq!(
            row(svc),
            vec![
                json!("web"),
                json!("NodePort"),
                json!("10.96.0.20"),
                json!("<none>"),
                json!("80:30080/TCP,53/UDP"),
                json!("5m"),
                json!("a=1,b=2")
            ]
        );
        let lb = json!({"spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.21"}});
        assert_eq!(row(lb)[3], "<pending>");
        let ext = json!({"spec": {"type": "ExternalName", "externalName": "db.example.com"}});
        assert_eq!(row(ext)[2..4], [json!("<none>"), json!("db.example.com")]);
        let headless = json!({"spec": {"type": "ClusterIP", "clusterIP": "None"}});
        assert_eq!(row(headless)[2], "None");
    }

    #[test]
    fn endpoints_and_slices() {
        let ep = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 81}]}]});
        assert_eq!(endpoints_cell(&ep), "10.0.0.1:80,10.0.0.2:80,10.0.0.1:81 + 1 more...");
        assert_eq!(endpoints_cell(&json!({})), "<none>");
        let slice = json!({"ports": [{"port": 80}], "endpoints": [{"addresses": ["10.0.0.1"]}]});
        assert_eq!(slice_cells(&slice), ("80".into(), "10.0.0.1".into()));
        assert_eq!(slice_cells(&json!({})), ("<unset>".into(), "<unset>".into()));
    }

    #[test]
    fn pods() {
        let pod = json!({"metadata": {"name": "p", "creationTimestamp": "2024-05-10T11:00:00Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
            "status": {"phase": "Running", "podIP": "10.1.0.5", "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}},
                 "lastState": {"terminated": {"finishedAt": "2024-05-10T11:57:00Z"}}},
                {"name": "b", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        let cells = Printer::Pod.row(&pod, now()).cells;
        assert_eq!(
            cells[1..7],
            [
                json!("1/2"),
                json!("CrashLoopBackOff"),
                json!("2 (3m ago)"),
                json!("60m"),
                json!("10.1.0.5"),
                json!("n1")
            ]
        );
        let pending = json!({"metadata": {"name": "q", "deletionTimestamp": "2024-05-10T12:00:00Z"}, "spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Pending"}});
        assert_eq!(Printer::Pod.row(&pending, now()).cells[2], "Terminating");
    }

    #[test]
    fn deployments_nodes_events() {
        let d = json!({"metadata": {"name": "web"}, "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}]}}},
            "status": {"readyReplicas": 4, "updatedReplicas": 4, "availableReplicas": 4}});
        let cells = Printer::Deployment.row(&d, now()).cells;
        assert_eq!(cells[1..4], [json!("4/4"), json!(4), json!(4)]);
        assert_eq!(cells[5..8], [json!("nginx"), json!("nginx:1.25"), json!("app=web")]);
        let n = json!({"metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": true}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let cells = Printer::Node.row(&n, now()).cells;
        assert_eq!(cells[1..3], [json!("Ready,SchedulingDisabled"), json!("control-plane")]);
        let e = json!({"metadata": {"name": "e1"}, "type": "Normal", "reason": "Scheduled", "message": " hi ",
            "involvedObject": {"kind": "Pod", "name": "p"}, "source": {"component": "default-scheduler"},
            "lastTimestamp": "2024-05-10T11:59:00Z"});
        let cells = Printer::Event.row(&e, now()).cells;
        assert_eq!(
            cells,
            vec![
                json!("60s"),
                json!("Normal"),
                json!("Scheduled"),
                json!("pod/p"),
                json!(""),
                json!("default-scheduler"),
                json!("hi"),
                json!("<unknown>"),
                json!(1),
                json!("e1")
            ]
        );
    }
}
