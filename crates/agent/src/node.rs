//! The agent's Node: registered with kubelet's labels, addresses, capacity
//! and node info; its status (MemoryPressure, DiskPressure, PIDPressure,
//! Ready, with kubelet's reasons) posted when it changes and at least every
//! five minutes; its Lease in kube-node-lease renewed every quarter of its
//! duration.

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use kubesvc_runtime::wellknown::{LABEL_HOSTNAME, NAMESPACE_NODE_LEASE};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::Error;

/// Kubernetes' architecture names.
fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

/// `PRETTY_NAME` of /etc/os-release.
fn os_image() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

/// MemTotal in KiB.
fn memory_kib() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// What the agent reports about its node.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub name: String,
    pub address: IpAddr,
    pub max_pods: u32,
}

impl NodeInfo {
    fn capacity(&self) -> (Value, Value) {
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let mem = memory_kib();
        let capacity = json!({"cpu": cpus.to_string(), "memory": format!("{mem}Ki"), "pods": self.max_pods.to_string(),
            "hugepages-1Gi": "0", "hugepages-2Mi": "0"});
        // kubelet's default hard eviction threshold: 100Mi of memory.
        let allocatable = json!({"cpu": cpus.to_string(), "memory": format!("{}Ki", mem.saturating_sub(100 * 1024)),
            "pods": self.max_pods.to_string(), "hugepages-1Gi": "0", "hugepages-2Mi": "0"});
        (capacity, allocatable)
    }

    fn node_info() -> Value {
        let uname = nix::sys::utsname::uname().ok();
        json!({
            "machineID": read_trimmed("/etc/machine-id"),
            "systemUUID": read_trimmed("/sys/class/dmi/id/product_uuid"),
            "bootID": read_trimmed("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": uname.map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default(),
            "osImage": os_image(),
            "containerRuntimeVersion": format!("kubesvc://{}", env!("CARGO_PKG_VERSION")),
            "kubeletVersion": kubesvc_api::wellknown::git_version(),
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": arch(),
        })
    }

    /// The status the agent posts; `since` is when Ready last changed.
    fn status(&self, since: &Time) -> Value {
        let now = Time(jiff::Timestamp::now());
        let cond = |ty: &str, status: &str, reason: &str, message: &str| {
            json!({"type": ty, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": now, "lastTransitionTime": since})
        };
        let (capacity, allocatable) = self.capacity();
        json!({
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [{"type": "InternalIP", "address": self.address.to_string()}, {"type": "Hostname", "address": self.name}],
            "capacity": capacity,
            "allocatable": allocatable,
            "nodeInfo": Self::node_info(),
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        })
    }
}

/// Registers the node (or takes the one that exists) and posts its status; returns it.
pub async fn register(client: &Client, info: &NodeInfo) -> Result<Node, Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": info.name, "labels": {
            LABEL_HOSTNAME: info.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": arch(),
            "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": arch()},
            "annotations": {"volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
    }))
    .map_err(|e| Error::Other(e.to_string()))?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => tracing::info!(node = %info.name, "registered the node"),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            tracing::info!(node = %info.name, "the node is registered already")
        }
        Err(e) => return Err(e.into()),
    }
    let since = Time(jiff::Timestamp::now());
    let patch = json!({"status": info.status(&since)});
    Ok(nodes.patch_status(&info.name, &PatchParams::default(), &Patch::Strategic(patch)).await?)
}

/// Renews the Lease every `duration / 4` and re-posts the status every five
/// minutes, until `stop`. The Lease is made (owned by the Node) if missing.
pub async fn keep_alive(
    client: Client,
    info: NodeInfo,
    lease_duration: Duration,
    mut stop: watch::Receiver<bool>,
) -> Result<(), Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE_NODE_LEASE);
    let nodes: Api<Node> = Api::all(client.clone());
    let renew_every = (lease_duration / 4).max(Duration::from_millis(100));
    let since = Time(jiff::Timestamp::now());
    let mut last_status = tokio::time::Instant::now();
    loop {
        let now = MicroTime(jiff::Timestamp::now());
        let renewed = leases
            .patch(
                &info.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"renewTime": now, "holderIdentity": info.name}})),
            )
            .await;
        match renewed {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {
                let uid = nodes.get(&info.name).await.ok().and_then(|n| n.uid()).unwrap_or_default();
                let lease: Lease = serde_json::from_value(json!({
                    "metadata": {"name": info.name, "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": info.name, "uid": uid}]},
                    "spec": {"holderIdentity": info.name, "leaseDurationSeconds": lease_duration.as_secs().max(1), "renewTime": now}
                }))
                .map_err(|e| Error::Other(e.to_string()))?;
                if let Err(e) = leases.create(&PostParams::default(), &lease).await {
                    tracing::warn!(error = %e, "creating the node lease failed; will retry");
                }
            }
            Err(e) => tracing::warn!(error = %e, "renewing the node lease failed; will retry"),
        }
        if last_status.elapsed() >= Duration::from_secs(300) {
            let patch = json!({"status": info.status(&since)});
            match nodes.patch_status(&info.name, &PatchParams::default(), &Patch::Strategic(patch)).await {
                Ok(_) => last_status = tokio::time::Instant::now(),
                Err(e) => tracing::warn!(error = %e, "posting the node status failed; will retry"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(renew_every) => {}
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
    }
}
