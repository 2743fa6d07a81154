//! Server-side printing: the Table columns and cells `kubectl get` shows, kind
//! by kind (a file each), as Kubernetes computes them. All columns are always
//! sent; kubectl hides priority-1 columns unless asked for `-o wide`.

mod configmap;
mod deployment;
mod endpoints;
mod endpointslice;
mod event;
mod lease;
mod namespace;
mod node;
mod pod;
mod replicaset;
mod secret;
mod service;

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
    ConfigMap,
    Secret,
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
            Printer::Pod => pod::COLUMNS,
            Printer::Service => service::COLUMNS,
            Printer::Endpoints => endpoints::COLUMNS,
            Printer::EndpointSlice => endpointslice::COLUMNS,
            Printer::Deployment => deployment::COLUMNS,
            Printer::ReplicaSet => replicaset::COLUMNS,
            Printer::Node => node::COLUMNS,
            Printer::Namespace => namespace::COLUMNS,
            Printer::Event => event::COLUMNS,
            Printer::Lease => lease::COLUMNS,
            Printer::ConfigMap => configmap::COLUMNS,
            Printer::Secret => secret::COLUMNS,
            Printer::Default => DEFAULT_COLUMNS,
        }
    }

    pub fn row(self, obj: &Value, now: Timestamp) -> Row {
        match self {
            Printer::Pod => pod::row(obj, now),
            Printer::Service => service::row(obj, now),
            Printer::Endpoints => endpoints::row(obj, now),
            Printer::EndpointSlice => endpointslice::row(obj, now),
            Printer::Deployment => deployment::row(obj, now),
            Printer::ReplicaSet => replicaset::row(obj, now),
            Printer::Node => node::row(obj, now),
            Printer::Namespace => namespace::row(obj, now),
            Printer::Event => event::row(obj, now),
            Printer::Lease => lease::row(obj, now),
            Printer::ConfigMap => configmap::row(obj, now),
            Printer::Secret => secret::row(obj, now),
            Printer::Default => {
                let created =
                    meta::meta(obj).get("creationTimestamp").and_then(Value::as_str).unwrap_or("0001-01-01T00:00:00Z");
                Row::plain(vec![name(obj), json!(created)])
            }
        }
    }
}

/// Name and creation time, for kinds without a printer.
const DEFAULT_COLUMNS: &[Column] =
    &[NAME, Column { name: "Created At", ty: "date", format: "", priority: 0, description: AGE.description }];

impl Row {
    fn plain(cells: Vec<Value>) -> Row {
        Row { cells, conditions: None }
    }
}

/// The NAME cell.
fn name(obj: &Value) -> Value {
    json!(meta::name(obj))
}

/// How many keys the map at `field` has.
fn key_count(obj: &Value, field: &str) -> usize {
    obj.get(field).and_then(Value::as_object).map_or(0, |m| m.len())
}

/// The AGE cell.
fn age(obj: &Value, now: Timestamp) -> Value {
    json!(since(meta::meta(obj).get("creationTimestamp").and_then(Value::as_str), now))
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
        assert_eq!(endpoints::endpoints_cell(&ep), "10.0.0.1:80,10.0.0.2:80,10.0.0.1:81 + 1 more...");
        assert_eq!(endpoints::endpoints_cell(&json!({})), "<none>");
        let slice = json!({"ports": [{"port": 80}], "endpoints": [{"addresses": ["10.0.0.1"]}]});
        assert_eq!(endpointslice::cells(&slice), ("80".into(), "10.0.0.1".into()));
        assert_eq!(endpointslice::cells(&json!({})), ("<unset>".into(), "<unset>".into()));
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
