//! `kubesvc up`: a local cluster in one command. The API server and the
//! controllers run in this process; each node is a `kubesvc agent` process
//! in a network namespace of its own, wired by a veth to a bridge in the
//! namespace `up` runs in, with its own address there. Every node gets a
//! client certificate of its own (`system:node:<name>`, group
//! `system:nodes`). Stopping `up` stops the agents (they stop their pods)
//! and removes every namespace and link it made, by name; what a killed
//! `up` left is recorded in the data directory and removed by the next one,
//! which resumes the same cluster.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kubesvc_api::net::Cidr;
use kubesvc_api::wellknown::{TAINT_NODE_NOT_READY, TAINT_NODE_UNREACHABLE};
use kubesvc_host::{NetNs, Netlink, Route};
use serde::{Deserialize, Serialize};

use crate::controllers;
use crate::server::{self, Settings};
use crate::supervisor::Supervisor;

/// The bridge the nodes hang off, in the namespace `up` runs in.
const BRIDGE: &str = "kubesvc0";

#[derive(clap::Args)]
pub struct Args {
    /// How many nodes (agents) to run.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=200))]
    nodes: u8,
    /// Where the cluster lives: database, certificates, kubeconfig, nodes' state (default: ~/.kubesvc).
    #[arg(long, env = "KUBESVC_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Names the nodes' network namespaces (`<name>-node-1`, ...), which are machine-wide.
    #[arg(long, default_value = "kubesvc")]
    name: String,
    /// The network of node addresses: the bridge takes the first, node i the (i+1)th.
    #[arg(long, default_value = "10.250.0.0/24")]
    node_network: String,
    /// The API server's port, on the bridge's address.
    #[arg(long, default_value_t = 6443)]
    api_port: u16,
    /// How the nodes program Services (auto: the best that works here; `up` says which).
    #[arg(long, value_enum, default_value = "auto")]
    proxy_mode: crate::proxy::Mode,
    #[command(flatten)]
    controller_flags: controllers::Flags,
}

/// What this `up` made, by name, so that whatever stops it, the next one can remove it.
#[derive(Default, Serialize, Deserialize)]
struct Made {
    namespaces: Vec<String>,
    links: Vec<String>,
}

struct NodePlan {
    name: String,
    netns: String,
    host_veth: String,
    ip: IpAddr,
    dir: PathBuf,
}

fn default_data_dir() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").context("no --data-dir and no $HOME")?;
    Ok(Path::new(&home).join(".kubesvc"))
}

fn record_path(dir: &Path) -> PathBuf {
    dir.join("up.json")
}

fn save(dir: &Path, made: &Made) -> anyhow::Result<()> {
    let path = record_path(dir);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(made)?).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Removes what `made` names: links (a veth takes its peer with it), then namespaces.
async fn remove(nl: &Netlink, made: &Made) {
    for link in made.links.iter().rev() {
        match nl.delete_link(link).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => tracing::warn!(link, error = %e, "removing a link failed"),
        }
    }
    for name in &made.namespaces {
        match NetNs::open(name).and_then(NetNs::delete) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => tracing::warn!(netns = name, error = %e, "removing a node namespace failed"),
        }
    }
}

/// The nodes' names, namespaces, links and addresses.
fn plan(args: &Args, dir: &Path, network: Cidr) -> anyhow::Result<(IpAddr, Vec<NodePlan>)> {
    let IpAddr::V4(_) = network.network else { bail!("--node-network must be IPv4") };
    let bridge_ip = network.nth(1).context("--node-network has no first address")?;
    let mut nodes = Vec::new();
    for i in 1..=u32::from(args.nodes) {
        let ip = network
            .nth(u128::from(i) + 1)
            .filter(|ip| network.contains(ip) && Some(*ip) != network.nth((1u128 << (32 - network.prefix)) - 1))
            .with_context(|| format!("--node-network {} has no address for node {i}", args.node_network))?;
        let name = format!("node-{i}");
        nodes.push(NodePlan {
            netns: format!("{}-{name}", args.name),
            host_veth: format!("{BRIDGE}-{i}"),
            dir: dir.join("nodes").join(&name),
            name,
            ip,
        });
    }
    Ok((bridge_ip, nodes))
}

/// The bridge, with the first address of the node network.
async fn bridge(nl: &Netlink, ip: IpAddr, prefix: u8, made: &mut Made, dir: &Path) -> anyhow::Result<()> {
    if nl.try_index(BRIDGE).await?.is_none() {
        made.links.push(BRIDGE.into());
        save(dir, made)?;
        nl.add_bridge(BRIDGE).await.context("making the nodes' bridge")?;
    }
    if !nl.addresses(BRIDGE).await?.contains(&(ip, prefix)) {
        nl.add_address(BRIDGE, ip, prefix).await?;
    }
    nl.set_up(BRIDGE).await?;
    Ok(())
}

/// A node's namespace with `eth0` on the bridge and a default route through it.
async fn node_network(
    nl: &Netlink,
    node: &NodePlan,
    gateway: IpAddr,
    prefix: u8,
    made: &mut Made,
    dir: &Path,
) -> anyhow::Result<()> {
    if NetNs::exists(&node.netns) {
        bail!(
            "network namespace {} exists and this data directory did not make it: is another `kubesvc up` named {:?} running? (pass --name)",
            node.netns,
            node.netns.trim_end_matches(&format!("-{}", node.name))
        );
    }
    made.namespaces.push(node.netns.clone());
    // Deleted by name too: a namespace (and the veth end in it) goes only
    // once the kernel has let go of it, which may be after `up` exits.
    made.links.push(node.host_veth.clone());
    save(dir, made)?;
    let ns = NetNs::create(&node.netns)?;
    nl.add_veth_into(&node.host_veth, "eth0", &ns).await?;
    nl.set_master(&node.host_veth, BRIDGE).await?;
    nl.set_up(&node.host_veth).await?;
    let inside = Netlink::connect_in(&ns)?;
    inside.set_up("lo").await?;
    inside.add_address("eth0", node.ip, prefix).await?;
    inside.set_up("eth0").await?;
    inside.add_route(&Route::via(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0, gateway, Some("eth0"))).await?;
    Ok(())
}

/// A node's own kubeconfig (a certificate for `system:node:<name>` in
/// `system:nodes`) and its serving certificate, with the cluster CA whose
/// clients (the API server) it serves.
fn node_certificates(data_dir: &Path, node: &NodePlan, server_url: &str) -> anyhow::Result<PathBuf> {
    let ca = kubesvc_apiserver::pki::Ca::load(data_dir)?;
    let user = format!("system:node:{}", node.name);
    let cert = ca.issue_client(&user, "system:nodes")?;
    std::fs::create_dir_all(&node.dir).with_context(|| format!("creating {}", node.dir.display()))?;
    let serving = ca.issue_server(&node.name, &[node.ip.to_string(), node.name.clone()])?;
    for (file, text) in [("kubelet.crt", &serving.cert_pem), ("kubelet.key", &serving.key_pem), ("ca.crt", &ca.pem)] {
        let path = node.dir.join(file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ca.write_kubeconfig(&node.dir.join("kubeconfig"), server_url, &user, &cert)?)
}

/// `kubesvc agent` for a node, started inside its namespace; its stdin is
/// held by `up`, so the agent stops when `up` goes, however it goes.
fn spawn_agent(
    node: &NodePlan,
    kubeconfig: &Path,
    dns: IpAddr,
    extra: &[String],
) -> anyhow::Result<tokio::process::Child> {
    let exe = std::env::current_exe().context("finding the kubesvc binary")?;
    let log = std::fs::File::create(node.dir.join("agent.log"))?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("agent")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--node-name", &node.name, "--node-ip", &node.ip.to_string(), "--cluster-dns", &dns.to_string()])
        .arg("--state-dir")
        .arg(node.dir.join("state"))
        .arg("--tls-cert-file")
        .arg(node.dir.join("kubelet.crt"))
        .arg("--tls-private-key-file")
        .arg(node.dir.join("kubelet.key"))
        .arg("--client-ca-file")
        .arg(node.dir.join("ca.crt"))
        .arg("--stop-when-stdin-closes")
        // Node names repeat across clusters on one machine; their namespaces' names do not.
        .args(["--cgroup-root", &format!("kubesvc/{}", node.netns)])
        .args(extra)
        .stdin(std::process::Stdio::piped())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    let ns = NetNs::open(&node.netns)?;
    let runtime = tokio::runtime::Handle::current();
    // A child starts in the network namespace of the thread that forks it.
    let child = ns.run(move || {
        let _entered = runtime.enter();
        cmd.spawn()
    })??;
    Ok(child)
}

/// Waits until every node reports Ready.
async fn nodes_ready(
    client: &kube::Client,
    names: &[String],
    agents: &mut [tokio::process::Child],
) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = api.list(&Default::default()).await?;
        // Ready, and schedulable: the taints of its registration (not yet Ready) lifted.
        let ready = |name: &String| {
            list.items.iter().any(|n| {
                let conditions = n.status.as_ref().and_then(|s| s.conditions.as_ref());
                let taints = n.spec.as_ref().and_then(|s| s.taints.as_ref());
                n.metadata.name.as_ref() == Some(name)
                    && conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                    && !taints.is_some_and(|ts| {
                        ts.iter().any(|t| t.key == TAINT_NODE_NOT_READY || t.key == TAINT_NODE_UNREACHABLE)
                    })
            })
        };
        if names.iter().all(ready) {
            return Ok(());
        }
        for (agent, name) in agents.iter_mut().zip(names) {
            if let Some(status) = agent.try_wait()? {
                bail!("the agent of {name} exited with {status} before its node was Ready");
            }
        }
        if Instant::now() > deadline {
            bail!("nodes were not Ready within 60s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let data_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => default_data_dir()?,
    };
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize()?;
    let network = Cidr::parse(&args.node_network).map_err(|e| anyhow::anyhow!("--node-network: {e}"))?;
    let (bridge_ip, nodes) = plan(&args, &data_dir, network)?;
    let nl = Netlink::connect()?;

    // What a stopped or killed `up` left goes first, by the names it recorded.
    if let Ok(bytes) = std::fs::read(record_path(&data_dir)) {
        let old: Made = serde_json::from_slice(&bytes).unwrap_or_default();
        tracing::info!("removing what the last `kubesvc up` of this data directory left");
        remove(&nl, &old).await;
    }
    let mut made = Made::default();
    let wired = async {
        bridge(&nl, bridge_ip, network.prefix, &mut made, &data_dir).await?;
        for node in &nodes {
            node_network(&nl, node, bridge_ip, network.prefix, &mut made, &data_dir).await?;
        }
        anyhow::Ok(())
    };
    if let Err(e) = wired.await {
        remove(&nl, &made).await;
        let _ = std::fs::remove_file(record_path(&data_dir));
        return Err(e);
    }

    let result = serve(&args, &data_dir, bridge_ip, &nodes, started).await;
    remove(&nl, &made).await;
    let _ = std::fs::remove_file(record_path(&data_dir));
    eprintln!("kubesvc stopped; removed its {} node namespaces and the {BRIDGE} bridge", nodes.len());
    result
}

/// The default `--lb-pool`: the node network's last 48 addresses (before its broadcast
/// address), after the nodes' own. `None` when the nodes leave none.
fn default_lb_pool(network: Cidr, nodes: &[NodePlan]) -> Option<String> {
    let last = network.nth(network.len().checked_sub(2)?)?;
    let last_n = network.offset(&last)?;
    let after_nodes = nodes.iter().filter_map(|n| network.offset(&n.ip)).max().unwrap_or(1) + 1;
    let first_n = last_n.saturating_sub(47).max(after_nodes);
    (first_n <= last_n).then(|| format!("{}-{last}", network.nth(first_n).unwrap_or(last)))
}

/// The server, controllers and agents, until a signal or a failure.
async fn serve(
    args: &Args,
    data_dir: &Path,
    bridge_ip: IpAddr,
    nodes: &[NodePlan],
    started: Instant,
) -> anyhow::Result<()> {
    let mut sup = Supervisor::new();
    let listen = SocketAddr::new(bridge_ip, args.api_port);
    let mut controller_flags = args.controller_flags.clone();
    if controller_flags.lb_pool.is_empty() {
        let network = Cidr::parse(&args.node_network).map_err(|e| anyhow::anyhow!("--node-network: {e}"))?;
        controller_flags.lb_pool.extend(default_lb_pool(network, nodes));
    }
    let lb_pool = controller_flags.lb_pool.join(",");
    let settings = Settings::defaults(data_dir.to_path_buf(), listen, controller_flags);
    let dns: IpAddr = settings
        .service_cidr
        .split(',')
        .next()
        .and_then(|c| Cidr::parse(c.trim()).ok())
        .and_then(|c| c.nth(10))
        .context("the service range has no tenth address for cluster DNS")?;
    let mode = crate::proxy::choose(args.proxy_mode, &crate::proxy::writer(crate::proxy::WriterKind::Netlink)?).await?;
    let proxy_args = vec![
        "--proxy-mode".to_string(),
        crate::proxy::mode_name(mode).to_string(),
        "--cluster-cidr".to_string(),
        args.controller_flags.cluster_cidr.clone(),
        "--service-cluster-ip-range".to_string(),
        settings.service_cidr.clone(),
        "--announce-network".to_string(),
        args.node_network.clone(),
        "--announce-interface".to_string(),
        "eth0".to_string(),
    ];
    let kubeconfig = server::spawn(&mut sup, settings).await?;
    let server_url = format!("https://{listen}");
    // Once, before the agents (which would race to mount it where it is hidden).
    if let Err(e) = kubesvc_host::socklb::ensure_cgroup2() {
        tracing::warn!(error = %e, "no cgroup v2 hierarchy: pods are balanced by the nftables rules alone");
    }
    let mut agents = Vec::new();
    for node in nodes {
        let kc = node_certificates(data_dir, node, &server_url)?;
        agents.push(spawn_agent(node, &kc, dns, &proxy_args)?);
    }
    let client = kubesvc_runtime::client::from_kubeconfig(Some(&kubeconfig)).await?;
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let ready = tokio::select! {
        r = nodes_ready(&client, &names, &mut agents) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted before the nodes were Ready")),
    };
    if let Err(e) = ready {
        stop_agents(&mut agents).await;
        return Err(e);
    }
    println!(
        "kubesvc is up: {} node{} Ready in {:.2}s, Services by the {} proxy\n\n  export KUBECONFIG={}\n  kubectl get nodes\n\nLoadBalancer Services get addresses from {}. Node logs: {}/nodes/*/agent.log.\nCtrl-C stops the cluster and removes what it set up.",
        nodes.len(),
        if nodes.len() == 1 { "" } else { "s" },
        started.elapsed().as_secs_f64(),
        crate::proxy::mode_name(mode),
        kubeconfig.display(),
        if lb_pool.is_empty() { "nowhere (no --lb-pool)" } else { lb_pool.as_str() },
        data_dir.display(),
    );
    let mut stop = sup.stopping();
    // Held apart: waiting on a child closes its stdin, which would stop it.
    let mut stdins: Vec<_> = agents.iter_mut().map(|a| a.stdin.take()).collect();
    sup.spawn("nodes", async move {
        let mut waits: futures::stream::FuturesUnordered<_> =
            agents.iter_mut().zip(&names).map(|(a, n)| async move { (n.clone(), a.wait().await) }).collect();
        use futures::StreamExt;
        let ended = tokio::select! {
            _ = stop.wait_for(|s| *s) => None,
            ended = waits.next() => ended,
        };
        drop(waits);
        stdins.clear();
        stop_agents(&mut agents).await;
        match ended {
            None => Ok(()),
            Some((name, status)) => Err(anyhow::anyhow!("the agent of {name} exited ({:?})", status.ok())),
        }
    });
    sup.run().await
}

/// Closes the agents' stdin (they stop their pods and leave), then waits; SIGKILL after 30 s.
async fn stop_agents(agents: &mut [tokio::process::Child]) {
    for a in agents.iter_mut() {
        drop(a.stdin.take());
    }
    for a in agents.iter_mut() {
        if tokio::time::timeout(Duration::from_secs(30), a.wait()).await.is_err() {
            let _ = a.kill().await;
        }
    }
}
