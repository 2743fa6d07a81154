//! The node agent (kubesvc's kubelet): it registers its Node, renews its
//! Lease, and runs the pods bound to it as processes, each pod in network,
//! UTS and mount namespaces of its own with an address from the node's pod
//! CIDR. It talks to the API only through kube clients, so it joins a
//! kubesvc cluster and a real one alike.
//!
//! Layout, in the order a pod comes to life: [`node`] registers the node and
//! keeps its Lease; [`network`] gives each pod its namespace, veth and
//! address; [`files`] and [`env`](mod@env) compute what a pod sees (hosts,
//! resolv.conf, hostname, environment) exactly as kubelet does; [`pods`]
//! runs one worker per pod, starting each container under the [`shim`] (the
//! process a container runs under: namespaces, mounts, cgroups, the CRI log,
//! the exit record) and reporting the pod's status.

pub mod env;
pub mod exec;
pub mod files;
pub mod grpc;
pub mod logs;
pub mod network;
pub mod node;
pub mod pods;
pub mod portforward;
pub mod probe;
pub mod server;
pub mod shim;
pub mod spdy;
pub mod ws;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use kubesvc_api::net::Cidr;
use kubesvc_runtime::events::Recorder;
use kubesvc_runtime::{Change, Informer};
use parking_lot::Mutex;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API")]
    Kube(#[from] kube::Error),
    #[error("host networking")]
    Host(#[from] kubesvc_host::Error),
    #[error("{0}")]
    Io(PathBuf, #[source] std::io::Error),
    #[error("pod networking: {0}")]
    Network(String),
    #[error("{0}")]
    Other(String),
}

/// The agent's settings, with kubelet's defaults where it has them.
#[derive(Clone, Debug)]
pub struct Config {
    pub node_name: String,
    /// The node's InternalIP: where other nodes route this node's pods.
    pub node_ip: IpAddr,
    /// Pods' files, logs and the records of what the agent set up.
    pub state_dir: PathBuf,
    /// The kubesvc binary, run as `kubesvc shim` for each container.
    pub shim: PathBuf,
    /// kubelet's `--cluster-dns` and `--cluster-domain`.
    pub cluster_dns: Vec<IpAddr>,
    pub cluster_domain: String,
    /// The node Lease's duration (40 s); it is renewed every quarter of it.
    pub lease_duration: Duration,
    /// Leave pods running when the agent stops, for the next agent to adopt.
    pub keep_pods_on_exit: bool,
    pub max_pods: u32,
    /// The cgroup (v2 directory) every container joins; the node's proxy balances
    /// connections from it at the socket.
    pub pod_cgroup: Option<PathBuf>,
    /// Serve logs, exec, attach and port-forward to the API server (kubelet's port 10250).
    pub serve: Option<server::Tls>,
}

/// The node's pod CIDR, once the IPAM controller has assigned it.
async fn pod_cidr(client: &Client, name: &str, stop: &mut watch::Receiver<bool>) -> Result<Option<Cidr>, Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut waited = Duration::ZERO;
    loop {
        let node = nodes.get(name).await?;
        let cidr = node.spec.as_ref().and_then(|s| s.pod_cidr.clone()).filter(|c| !c.is_empty());
        if let Some(c) = cidr {
            return Cidr::parse(&c).map(Some).map_err(Error::Network);
        }
        if waited >= Duration::from_secs(5) && waited.as_millis() % 5000 < 100 {
            tracing::info!(node = name, "waiting for the node's pod CIDR (is node IPAM running?)");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => waited += Duration::from_millis(100),
            _ = stop.wait_for(|s| *s) => return Ok(None),
        }
    }
}

/// Runs the agent until `stop` turns true.
pub async fn run(client: Client, config: Config, mut stop: watch::Receiver<bool>) -> Result<(), Error> {
    let info = node::NodeInfo { name: config.node_name.clone(), address: config.node_ip, max_pods: config.max_pods };
    node::register(&client, &info).await?;
    let keep_alive = tokio::spawn(node::keep_alive(client.clone(), info.clone(), config.lease_duration, stop.clone()));
    let Some(cidr) = pod_cidr(&client, &config.node_name, &mut stop).await? else { return Ok(()) };
    tracing::info!(node = %config.node_name, %cidr, "the node's pod CIDR");
    let network = Arc::new(network::PodNetwork::start(&config.state_dir, cidr).await?);

    let pods = Informer::with_config(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().fields(&format!("spec.nodeName={}", config.node_name)),
    );
    let services: Arc<Informer<Service>> = Informer::new(Api::all(client.clone()));
    let nodes: Arc<Informer<Node>> = Informer::new(Api::all(client.clone()));
    let host_resolv = files::ResolvConf::parse(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
    let shared = Arc::new(pods::Shared {
        recorder: Recorder::new(client.clone(), "kubelet").on_host(&config.node_name),
        client: client.clone(),
        config: config.clone(),
        network: network.clone(),
        services: services.clone(),
        host_resolv,
    });

    // One worker per pod, fed the pod's latest version.
    let workers: Arc<Mutex<HashMap<String, watch::Sender<Arc<Pod>>>>> = Arc::default();
    // Workers that ended are reaped as new ones start, so churn piles up nothing.
    let tasks: Arc<Mutex<tokio::task::JoinSet<()>>> = Arc::default();
    {
        let (workers, tasks, shared, stop) = (workers.clone(), tasks.clone(), shared.clone(), stop.clone());
        pods.on_change(move |change| {
            let pod = Arc::new(change.object().clone());
            let uid = pod.uid().unwrap_or_default();
            let mut w = workers.lock();
            match change {
                Change::Deleted(_) => {
                    // Dropping the sender tells the worker the pod is gone.
                    w.remove(&uid);
                }
                _ => match w.get(&uid) {
                    Some(tx) => {
                        tx.send_replace(pod);
                    }
                    None => {
                        let (tx, rx) = watch::channel(pod);
                        w.insert(uid, tx);
                        let worker = pods::Worker::new(shared.clone(), rx);
                        let mut t = tasks.lock();
                        while t.try_join_next().is_some() {}
                        t.spawn(worker.run(stop.clone()));
                    }
                },
            }
        });
    }
    // Other nodes' pods are routed via those nodes.
    {
        let (network, me) = (network.clone(), config.node_name.clone());
        let routes: Arc<Mutex<BTreeMap<String, (Cidr, IpAddr)>>> = Arc::default();
        let notify = Arc::new(tokio::sync::Notify::new());
        let (r, n) = (routes.clone(), notify.clone());
        nodes.on_change(move |change| {
            let node = change.object();
            let name = node.name_any();
            if name == me {
                return;
            }
            let mut routes = r.lock();
            let cidr = node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()).and_then(|c| Cidr::parse(c).ok());
            let ip = node.status.as_ref().and_then(|s| s.addresses.as_ref()).and_then(|a| {
                a.iter().find(|a| a.type_ == "InternalIP").and_then(|a| a.address.parse::<IpAddr>().ok())
            });
            match (change.is_deleted(), cidr, ip) {
                (false, Some(c), Some(ip)) => {
                    routes.insert(name, (c, ip));
                }
                _ => {
                    routes.remove(&name);
                }
            }
            n.notify_one();
        });
        let mut stop = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = notify.notified() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                let wanted = routes.lock().clone();
                if let Err(e) = network.route_peers(wanted).await {
                    tracing::warn!(error = %e, "routing other nodes' pods failed");
                }
            }
        });
    }
    if let Some(tls) = &config.serve {
        let ctx = Arc::new(server::Context {
            pods: pods.clone(),
            state_dir: config.state_dir.clone(),
            shim: config.shim.clone(),
        });
        let addr = std::net::SocketAddr::new(config.node_ip, server::PORT);
        let (tls, stop) = (tls.clone(), stop.clone());
        tokio::spawn(async move {
            if let Err(e) = server::serve(addr, &tls, ctx, stop).await {
                tracing::error!(error = %e, "the agent's server failed: no logs, exec or port-forward");
            }
        });
    }
    services.start(stop.clone());
    nodes.start(stop.clone());
    services.synced().await;
    pods.start(stop.clone());
    pods.synced().await;
    // What an earlier run set up for pods that are gone now goes, by the names it recorded.
    let live: Vec<String> = pods.store().state().iter().filter_map(|p| p.uid()).collect();
    for uid in network.recorded_pods() {
        if !live.contains(&uid) {
            tracing::info!(uid, "removing what a gone pod left");
            if let Err(e) = network.teardown(&uid).await {
                tracing::warn!(uid, error = %e, "removing a gone pod's network failed");
            }
            let _ = std::fs::remove_dir_all(config.state_dir.join("pods").join(&uid));
        }
    }
    tracing::info!(node = %config.node_name, "the agent is running pods");
    let _ = stop.wait_for(|s| *s).await;
    let mut running = std::mem::take(&mut *tasks.lock());
    while running.join_next().await.is_some() {}
    let _ = keep_alive.await;
    Ok(())
}
