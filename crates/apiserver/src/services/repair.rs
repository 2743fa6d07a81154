//! Makes allocations and Services agree: every address and port a Service
//! holds is recorded as its own, and every record no Service holds is
//! removed. Writes keep the two in step already; this repairs what they
//! cannot (a store edited or restored by hand, a range changed between
//! runs). It runs before the server serves, then every three minutes.
//! Problems it cannot fix (two Services on one address, an address outside
//! the ranges) are reported as Warning events on the Service, in
//! Kubernetes' words.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kubesvc_api::kinds::service::ServiceView;
use kubesvc_api::meta;
use kubesvc_api::net::Family;
use kubesvc_api::resources;
use kubesvc_api::validation::ip::parse_ip_sloppy;
use kubesvc_store::{Compare, Op, RangeRequest, Store, Txn};
use serde_json::{Value, json};

use super::ranges::{Owner, PREFIX, Ranges, ip_key, port_key};
use crate::State;
use crate::registry::{FieldValidation, Registry, WriteOptions};

/// Kubernetes' repair loop interval.
pub const INTERVAL: Duration = Duration::from_secs(180);
/// Fixes per transaction.
const BATCH: usize = 256;

/// What one pass found and did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Allocations recorded (missing, or recorded for someone else).
    pub recorded: Vec<String>,
    /// Allocations no Service holds, removed.
    pub removed: Vec<String>,
    /// Problems left for a person: (namespace, service, reason, message).
    pub problems: Vec<(String, String, String, String)>,
}

struct Wanted {
    owner: Owner,
    /// The Service's key and revision in the snapshot: a fix must not outlive it.
    service: (Vec<u8>, i64),
    /// How an event names it: `Cluster IP [IPv4]: 10.0.0.5` or `Port 30080`.
    label: String,
    is_ip: bool,
}

/// One pass over a consistent snapshot of Services and allocations.
pub async fn run_once(store: &dyn Store, ranges: &Ranges) -> Result<Report, kubesvc_store::Error> {
    let services = store.range(RangeRequest::prefix(b"/registry/services/")).await?;
    let mut at = RangeRequest::prefix(PREFIX.as_bytes());
    at.revision = services.revision;
    let held: BTreeMap<String, (Owner, i64)> = store
        .range(at)
        .await?
        .kvs
        .into_iter()
        .map(|kv| {
            let owner = serde_json::from_slice(&kv.value).unwrap_or(Owner {
                namespace: String::new(),
                name: String::new(),
                uid: String::new(),
            });
            (String::from_utf8_lossy(&kv.key).to_string(), (owner, kv.mod_revision))
        })
        .collect();

    let mut report = Report::default();
    let mut wanted: HashMap<String, Wanted> = HashMap::new();
    for kv in &services.kvs {
        let Ok(svc) = serde_json::from_slice::<Value>(&kv.value) else { continue };
        let owner = Owner {
            namespace: meta::namespace(&svc).to_string(),
            name: meta::name(&svc).to_string(),
            uid: meta::uid(&svc).to_string(),
        };
        let problem = |report: &mut Report, reason: &str, message: String| {
            report.problems.push((owner.namespace.clone(), owner.name.clone(), reason.into(), message));
        };
        let v = ServiceView::new(&svc);
        for ip in v.allocated_ips() {
            let Some(addr) = parse_ip_sloppy(ip) else {
                problem(
                    &mut report,
                    "ClusterIPNotValid",
                    format!("Cluster IP {ip} is not a valid IP; please recreate service"),
                );
                continue;
            };
            let family = Family::of(&addr).as_str();
            let label = format!("Cluster IP [{family}]: {addr}");
            if ranges.locate_ip(&addr).is_none() {
                let msg = format!("{label} is not within any configured Service CIDR; please recreate service");
                problem(&mut report, "ClusterIPOutOfRange", msg);
                continue;
            }
            let key = ip_key(&addr);
            if wanted.contains_key(&key) {
                let msg =
                    format!("Cluster IP [{family}]:{addr} was assigned to multiple services; please recreate service");
                problem(&mut report, "ClusterIPAlreadyAllocated", msg);
                continue;
            }
            let service = (kv.key.to_vec(), kv.mod_revision);
            wanted.insert(key, Wanted { owner: owner.clone(), service, label, is_ip: true });
        }
        let mut ports = v.held_node_ports();
        if v.needs_health_check() && v.health_check_node_port != 0 {
            ports.push(v.health_check_node_port);
        }
        ports.sort_unstable();
        ports.dedup();
        for p in ports {
            if !ranges.node_ports.contains(p) {
                let msg =
                    format!("Port {p} is not within the port range {}; please recreate service", ranges.node_ports);
                problem(&mut report, "PortOutOfRange", msg);
                continue;
            }
            let key = port_key(p as u16);
            if wanted.contains_key(&key) {
                problem(
                    &mut report,
                    "PortAlreadyAllocated",
                    format!("Port {p} was assigned to multiple services; please recreate service"),
                );
                continue;
            }
            let service = (kv.key.to_vec(), kv.mod_revision);
            wanted.insert(key, Wanted { owner: owner.clone(), service, label: format!("Port {p}"), is_ip: false });
        }
    }

    // Each fix holds only if what it was computed from is unchanged.
    let mut fixes: Vec<(Vec<Compare>, Op)> = Vec::new();
    let mut wanted_sorted: Vec<(&String, &Wanted)> = wanted.iter().collect();
    wanted_sorted.sort_by(|a, b| a.0.cmp(b.0));
    for (key, w) in wanted_sorted {
        let holder = held.get(key);
        let (rev, reason) = match holder {
            None => (0, "is not allocated; repairing"),
            Some((o, _)) if o.namespace == w.owner.namespace && o.name == w.owner.name => continue,
            Some((_, rev)) => (*rev, "has a wrong reference; repairing"),
        };
        let value = Bytes::from(serde_json::to_vec(&w.owner).unwrap_or_default());
        let compares = vec![
            Compare::ModRevision(key.clone().into_bytes(), rev),
            Compare::ModRevision(w.service.0.clone(), w.service.1),
        ];
        fixes.push((compares, Op::Put { key: key.clone().into_bytes(), value }));
        let reason_code = if w.is_ip { "ClusterIPNotAllocated" } else { "PortNotAllocated" };
        report.problems.push((
            w.owner.namespace.clone(),
            w.owner.name.clone(),
            reason_code.into(),
            format!("{} {reason}", w.label),
        ));
        report.recorded.push(key.clone());
    }
    for (key, (owner, rev)) in &held {
        if wanted.contains_key(key) {
            continue;
        }
        tracing::warn!(key, service = %format!("{}/{}", owner.namespace, owner.name), "an allocation appears to have leaked: cleaning up");
        let compares = vec![Compare::ModRevision(key.clone().into_bytes(), *rev)];
        fixes.push((compares, Op::Delete { key: key.clone().into_bytes() }));
        report.removed.push(key.clone());
    }
    for chunk in fixes.chunks(BATCH) {
        let txn = Txn {
            compares: chunk.iter().flat_map(|(c, _)| c.iter().cloned()).collect(),
            ops: chunk.iter().map(|(_, o)| o.clone()).collect(),
        };
        if !store.txn(txn).await?.committed() {
            // Someone changed these meanwhile; the next pass looks again.
            tracing::info!("allocation repair raced a write; will look again");
        }
    }
    Ok(report)
}

/// Records the problems of a pass as Warning events on their Services.
pub async fn report_events(registry: &Registry, report: &Report) {
    let Some(events) = resources::find("", "v1", "events") else { return };
    for (ns, name, reason, message) in &report.problems {
        let component = if reason.starts_with("Port") {
            "portallocator-repair-controller"
        } else {
            "ipallocator-repair-controller"
        };
        let now = kubesvc_api::time::now_string();
        let event = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": format!("{name}.{:016x}", rand::random::<u64>()), "namespace": ns},
            "involvedObject": {"apiVersion": "v1", "kind": "Service", "namespace": ns, "name": name},
            "reason": reason, "message": message, "type": "Warning", "count": 1,
            "source": {"component": component}, "reportingComponent": component,
            "action": if reason.starts_with("Port") { "PortAllocation" } else { "ClusterIPAllocation" },
            "firstTimestamp": now, "lastTimestamp": now
        });
        let opts = WriteOptions { dry_run: false, field_validation: FieldValidation::Ignore };
        if let Err(e) = registry.create(events, ns, event, opts).await {
            tracing::warn!(error = %e.message, "recording a repair event failed");
        }
    }
}

/// Repairs every [`INTERVAL`] until shutdown.
pub fn spawn(store: Arc<dyn Store>, ranges: Arc<Ranges>, state: Arc<State>) {
    let mut stop = state.shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(INTERVAL) => {}
                _ = stop.changed() => return,
            }
            match run_once(&*store, &ranges).await {
                Ok(report) => report_events(&state.registry, &report).await,
                Err(e) => tracing::warn!(error = %e, "allocation repair failed; will retry"),
            }
        }
    });
}
