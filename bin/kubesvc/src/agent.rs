//! `kubesvc agent`: the node agent, against kubesvc's API server or any
//! Kubernetes cluster's.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::supervisor::Supervisor;

#[derive(clap::Args)]
pub struct Args {
    /// The kubeconfig to reach the API with (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The node's name (default: this host's name).
    #[arg(long)]
    node_name: Option<String>,
    /// The node's InternalIP (default: the first global address of this host).
    #[arg(long)]
    node_ip: Option<IpAddr>,
    /// Pods' files and logs, and what the agent set up.
    #[arg(long, default_value = "/var/lib/kubesvc/agent")]
    state_dir: PathBuf,
    /// The cluster DNS Service's address, for pods' resolv.conf.
    #[arg(long, default_value = "10.96.0.10", value_delimiter = ',')]
    cluster_dns: Vec<IpAddr>,
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Seconds the node Lease lasts; it is renewed every quarter of that.
    #[arg(long, default_value_t = 40)]
    node_lease_duration_seconds: u64,
    /// Leave pods running when the agent stops, for the next agent to adopt.
    #[arg(long)]
    keep_pods_on_exit: bool,
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    /// The cgroup pods run in, under the cgroup v2 mount (default `kubesvc/<node name>`;
    /// empty: none, and no socket load balancing). It is made at start and removed at exit.
    #[arg(long)]
    cgroup_root: Option<String>,
    /// The serving certificate for logs, exec and port-forward (kubelet's flags;
    /// all three, or the agent serves none of them).
    #[arg(long, requires_all = ["tls_private_key_file", "client_ca_file"])]
    tls_cert_file: Option<PathBuf>,
    #[arg(long)]
    tls_private_key_file: Option<PathBuf>,
    /// The CA whose clients (the API server) may use logs, exec and port-forward.
    #[arg(long)]
    client_ca_file: Option<PathBuf>,
    /// Stop (as on SIGTERM) when stdin reaches its end: `kubesvc up` holds the
    /// other end, so its agents stop cleanly whenever it goes, even killed.
    #[arg(long, hide = true)]
    stop_when_stdin_closes: bool,
    #[command(flatten)]
    proxy: crate::proxy::Flags,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let client = kubesvc_runtime::client::from_kubeconfig(args.kubeconfig.as_deref()).await?;
    let node_name = match args.node_name {
        Some(n) => n,
        None => nix::unistd::gethostname().context("reading the host name")?.to_string_lossy().to_lowercase(),
    };
    // As kubelet falls back to: this host's first global address, IPv4 first.
    let node_ip = args
        .node_ip
        .or_else(|| kubesvc_host::addresses::global_addresses().first().copied())
        .context("no address to report for the node: pass --node-ip")?;
    let pod_cgroup = pod_cgroup(args.cgroup_root.as_deref(), &node_name);
    let mut proxy = args.proxy;
    if proxy.socket_lb_cgroup.is_none() {
        proxy.socket_lb_cgroup = pod_cgroup.clone();
    }
    let keep_pods = args.keep_pods_on_exit;
    let config = kubesvc_agent::Config {
        node_name,
        node_ip,
        state_dir: args.state_dir,
        shim: std::env::current_exe().context("finding the kubesvc binary for the shim")?,
        cluster_dns: args.cluster_dns,
        cluster_domain: args.cluster_domain,
        lease_duration: Duration::from_secs(args.node_lease_duration_seconds.max(1)),
        keep_pods_on_exit: args.keep_pods_on_exit,
        max_pods: args.max_pods,
        pod_cgroup: pod_cgroup.clone(),
        serve: match (args.tls_cert_file, args.tls_private_key_file, args.client_ca_file) {
            (Some(cert), Some(key), Some(client_ca)) => Some(kubesvc_agent::server::Tls { cert, key, client_ca }),
            _ => None,
        },
    };
    if args.stop_when_stdin_closes {
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            tracing::info!("stdin closed: stopping");
            let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGTERM);
        });
    }
    let mut sup = Supervisor::new();
    crate::proxy::start(&mut sup, client.clone(), config.node_name.clone(), vec![node_ip], proxy).await?;
    let stop = sup.stopping();
    sup.spawn("agent", async move { Ok(kubesvc_agent::run(client, config, stop).await?) });
    let result = sup.run().await;
    // Pods left for the next agent stay in their cgroup.
    if let Some(dir) = pod_cgroup.filter(|_| !keep_pods) {
        remove_cgroup(&dir).await;
    }
    result
}

/// Makes the pods' cgroup: `root` (or `kubesvc/<node>`) under the cgroup v2 mount. None
/// (logged) where there is no cgroup v2 or it cannot be made: pods then run in the
/// agent's cgroup and are balanced by the nftables rules alone.
fn pod_cgroup(root: Option<&str>, node: &str) -> Option<PathBuf> {
    let relative = match root {
        Some("") => return None,
        Some(r) => r.trim_start_matches('/').to_string(),
        None => format!("kubesvc/{node}"),
    };
    let mount = match kubesvc_host::socklb::ensure_cgroup2() {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "no cgroup v2 hierarchy: pods run in the agent's cgroup, without socket load balancing");
            return None;
        }
    };
    let dir = mount.join(relative);
    match std::fs::create_dir_all(&dir) {
        Ok(()) => Some(dir),
        Err(e) => {
            tracing::warn!(cgroup = %dir.display(), error = %e, "cannot make the pods' cgroup: pods run in the agent's, without socket load balancing");
            None
        }
    }
}

/// Removes the pods' cgroup once its processes are gone (pods kept for the next agent
/// keep it), and its `kubesvc` parent if no other node uses it.
async fn remove_cgroup(dir: &Path) {
    for _ in 0..50 {
        match std::fs::remove_dir(dir) {
            Ok(()) => break,
            // Busy: pods killed with the agent are still exiting.
            Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(_) => return,
        }
    }
    if let Some(parent) = dir.parent().filter(|p| p.file_name().is_some_and(|n| n == "kubesvc")) {
        let _ = std::fs::remove_dir(parent);
    }
}
