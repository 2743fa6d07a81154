//! A stand-in for a node's kubelet, for tests and benchmarks of the
//! controllers: it registers a Node, renews its Lease, and moves the pods
//! bound to it the way a kubelet reports them (Running with an IP, Ready or
//! not), finishing graceful deletions. It runs no process (the node agent
//! does that, in its own issue); it only writes the status a kubelet writes.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use kubesvc_runtime::wellknown::NAMESPACE_NODE_LEASE;
use serde_json::json;

/// How often the Lease is renewed (a real kubelet: every 10 s).
pub const RENEW_EVERY: Duration = Duration::from_millis(500);

struct Shared {
    heartbeats: AtomicBool,
    /// New pods start Ready.
    ready_on_start: AtomicBool,
    /// Pods being deleted are finished (removed), as a kubelet confirms.
    finish_deletions: AtomicBool,
    next_ip: AtomicU32,
    /// The node's InternalIP, which its pods report as hostIP.
    host_ip: String,
}

pub struct FakeKubelet {
    pub name: String,
    client: Client,
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

/// The status a kubelet on the node at `host_ip` writes for a started pod.
pub fn running_status(ip: &str, host_ip: &str, ready: bool) -> serde_json::Value {
    let s = if ready { "True" } else { "False" };
    json!({"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
    "conditions": [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": now()},
        {"type": "Initialized", "status": "True", "lastTransitionTime": now()},
        {"type": "ContainersReady", "status": s, "lastTransitionTime": now()},
        {"type": "Ready", "status": s, "lastTransitionTime": now()}
    ]})
}

impl FakeKubelet {
    /// Registers node `name` (pods get IPs 10.244.`index`.x) and starts acting as its kubelet.
    pub async fn start(client: Client, name: &str, index: u8, labels: serde_json::Value) -> Result<FakeKubelet> {
        let nodes: Api<Node> = Api::all(client.clone());
        let host_ip = format!("192.168.240.{}", 10 + u32::from(index));
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "addresses": [{"type": "InternalIP", "address": host_ip}]}
        }))?;
        let node = nodes.create(&PostParams::default(), &node).await?;
        let status = json!({"status": {"conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
             "lastHeartbeatTime": now(), "lastTransitionTime": now()}]}});
        nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await?;
        let shared = Arc::new(Shared {
            heartbeats: AtomicBool::new(true),
            ready_on_start: AtomicBool::new(true),
            finish_deletions: AtomicBool::new(true),
            next_ip: AtomicU32::new(u32::from(Ipv4Addr::new(10, 244, index, 2))),
            host_ip,
        });
        let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE_NODE_LEASE);
        let lease: Lease = serde_json::from_value(json!({
            "metadata": {"name": name, "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": node.uid()}]},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": MicroTime(jiff::Timestamp::now())}
        }))?;
        leases.create(&PostParams::default(), &lease).await?;
        let mut tasks = Vec::new();
        {
            let (shared, leases, name) = (shared.clone(), leases.clone(), name.to_string());
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(RENEW_EVERY).await;
                    if shared.heartbeats.load(Ordering::SeqCst) {
                        let patch = json!({"spec": {"renewTime": MicroTime(jiff::Timestamp::now())}});
                        let _ = leases.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await;
                    }
                }
            }));
        }
        {
            let (shared, client, name) = (shared.clone(), client.clone(), name.to_string());
            tasks.push(tokio::spawn(async move { run_pods(client, name, shared).await }));
        }
        Ok(FakeKubelet { name: name.into(), client, shared, tasks })
    }

    /// The kubelet dies: no more Lease renewals, no more pod updates.
    pub fn stop(&self) {
        self.shared.heartbeats.store(false, Ordering::SeqCst);
        self.shared.finish_deletions.store(false, Ordering::SeqCst);
        self.shared.ready_on_start.store(false, Ordering::SeqCst);
    }

    /// Whether pods it starts are Ready at once.
    pub fn ready_on_start(&self, ready: bool) {
        self.shared.ready_on_start.store(ready, Ordering::SeqCst);
    }

    /// Whether pods being deleted are finished (else they stay terminating).
    pub fn finish_deletions(&self, finish: bool) {
        self.shared.finish_deletions.store(finish, Ordering::SeqCst);
    }

    /// Reports a pod's readiness, as a readiness probe would change it.
    pub async fn set_ready(&self, ns: &str, pod: &str, ready: bool) -> Result<()> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let p = api.get(pod).await?;
        let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default();
        let status = running_status(&ip, &self.shared.host_ip, ready);
        api.patch_status(pod, &PatchParams::default(), &Patch::Merge(json!({ "status": status }))).await?;
        Ok(())
    }
}

async fn run_pods(client: Client, node: String, shared: Arc<Shared>) {
    let all: Api<Pod> = Api::all(client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut stream = std::pin::pin!(watcher::watcher(all, cfg));
    while let Some(ev) = stream.next().await {
        let pods = match ev {
            Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => vec![p],
            _ => continue,
        };
        for p in pods {
            let api: Api<Pod> = Api::namespaced(client.clone(), &p.namespace().unwrap_or_default());
            let name = p.name_any();
            if p.metadata.deletion_timestamp.is_some() {
                if shared.finish_deletions.load(Ordering::SeqCst) {
                    let _ = api.delete(&name, &DeleteParams::default().grace_period(0)).await;
                }
                continue;
            }
            let started = p.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some();
            if started || !shared.heartbeats.load(Ordering::SeqCst) {
                continue;
            }
            let ip = Ipv4Addr::from(shared.next_ip.fetch_add(1, Ordering::SeqCst)).to_string();
            let ready = shared.ready_on_start.load(Ordering::SeqCst);
            let _ = api
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": running_status(&ip, &shared.host_ip, ready)})),
                )
                .await;
        }
    }
}
