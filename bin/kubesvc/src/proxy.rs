//! `kubesvc proxy`: the service proxy against any Kubernetes API server (a
//! stand-in for kube-proxy), and the flags the agent shares with it (every
//! agent runs one for its node).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use kubesvc_api::net::{Cidr, Family};
use kubesvc_proxy::nft::Writer;
use kubesvc_proxy::nft::apply::Nft;
use kubesvc_proxy::nft::netlink::Netlink;
use tokio::sync::watch;

use crate::supervisor::Supervisor;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// The best mode that works here (nftables, when this kernel takes nf_tables transactions).
    Auto,
    Nftables,
    Iptables,
    Userspace,
    Ipvs,
    /// No proxy (e.g. an agent joining a cluster that runs kube-proxy).
    None,
}

/// How nftables transactions reach the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WriterKind {
    /// A netlink socket kept open (no `nft` binary needed; a change costs its own size).
    Netlink,
    /// `nft -f -`, as kube-proxy runs it (every run re-reads the kernel's rules first).
    Nft,
}

/// A writer of the given kind, in this process's network namespace.
pub fn writer(kind: WriterKind) -> anyhow::Result<Writer> {
    Ok(match kind {
        WriterKind::Netlink => Writer::Netlink(Netlink::open().context("opening a netfilter netlink socket")?),
        WriterKind::Nft => Writer::Nft(Nft::default()),
    })
}

#[derive(clap::Args, Clone, Debug)]
pub struct Flags {
    /// How Services are programmed.
    #[arg(long, value_enum, default_value = "auto")]
    pub proxy_mode: Mode,
    /// Pods' address ranges (comma-separated): traffic to a cluster IP from elsewhere is
    /// masqueraded. Default: the node's podCIDRs.
    #[arg(long = "cluster-cidr", value_delimiter = ',')]
    pub proxy_cluster_cidr: Vec<String>,
    /// The Service address ranges: an address there that no Service holds is dropped.
    #[arg(long, value_delimiter = ',')]
    pub service_cluster_ip_range: Vec<String>,
    /// Where node ports are served (CIDRs, or `primary`); default every local address but loopback.
    #[arg(long, value_delimiter = ',')]
    pub nodeport_addresses: Vec<String>,
    /// /healthz and /livez (kube-proxy's 10256); an empty value serves none.
    #[arg(long, default_value = "0.0.0.0:10256")]
    pub healthz_bind_address: String,
    /// /metrics (kube-proxy's 10249); an empty value serves none.
    #[arg(long, default_value = "127.0.0.1:10249")]
    pub metrics_bind_address: String,
    /// The shortest time between two syncs (changes within it are batched), e.g. `100ms`, `1s`.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub min_sync_period: Duration,
    /// Hold LoadBalancer addresses inside this network on `--announce-interface`, one node
    /// per address (`kubesvc up` sets both).
    #[arg(long, hide = true, requires = "announce_interface")]
    pub announce_network: Option<String>,
    #[arg(long, hide = true)]
    pub announce_interface: Option<String>,
    /// Balance connections from this cgroup (a cgroup v2 directory holding the node's pods)
    /// to cluster IPs at the socket, with eBPF (default: the agent's pod cgroup; none for
    /// `kubesvc proxy`).
    #[arg(long)]
    pub socket_lb_cgroup: Option<PathBuf>,
    /// How nftables transactions are written (netlink, or `nft -f` for comparison and debugging).
    #[arg(long, value_enum, default_value = "netlink", hide = true)]
    pub nftables_writer: WriterKind,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit() && c != '.').map(|i| s.split_at(i)).unwrap_or((s, "s"));
    let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("invalid duration {s:?} (use ms, s or m)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

fn cidrs(flag: &str, values: &[String]) -> anyhow::Result<Vec<Cidr>> {
    values
        .iter()
        .filter(|v| !v.trim().is_empty())
        .map(|v| Cidr::parse(v.trim()).map_err(|e| anyhow!("--{flag}: {e}")))
        .collect()
}

/// Chooses the mode, saying which and why.
pub async fn choose(mode: Mode, writer: &Writer) -> anyhow::Result<Option<Mode>> {
    match mode {
        Mode::None => Ok(None),
        Mode::Ipvs => bail!(
            "--proxy-mode ipvs: this kernel has no IPVS (the ip_vs module is missing); use nftables (the default), iptables or userspace"
        ),
        Mode::Iptables | Mode::Userspace => {
            bail!("--proxy-mode {mode:?}: not built yet (it is the next proxy issue); nftables is", mode = mode)
        }
        Mode::Nftables => {
            writer.check().await.context("--proxy-mode nftables: nf_tables cannot be programmed here")?;
            tracing::info!(writer = writer.name(), "proxy mode nftables (asked for)");
            Ok(Some(Mode::Nftables))
        }
        Mode::Auto => match writer.check().await {
            Ok(()) => {
                tracing::info!(
                    writer = writer.name(),
                    "proxy mode nftables (auto: the kernel takes nf_tables transactions)"
                );
                Ok(Some(Mode::Nftables))
            }
            Err(e) => {
                bail!("no proxy mode works here: nftables: {e} (the kernel needs nf_tables; or pass --proxy-mode none)")
            }
        },
    }
}

/// The flag value for a chosen mode (`None`: no proxy).
pub fn mode_name(mode: Option<Mode>) -> &'static str {
    match mode {
        None | Some(Mode::None) => "none",
        Some(Mode::Nftables) | Some(Mode::Auto) => "nftables",
        Some(Mode::Iptables) => "iptables",
        Some(Mode::Userspace) => "userspace",
        Some(Mode::Ipvs) => "ipvs",
    }
}

async fn bind(flag: &str, addr: &str) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    if addr.is_empty() {
        return Ok(None);
    }
    let a: SocketAddr = addr.parse().map_err(|_| anyhow!("--{flag}: {addr:?} is not host:port"))?;
    Ok(Some(tokio::net::TcpListener::bind(a).await.with_context(|| format!("--{flag} {a}"))?))
}

/// Starts the proxy for `node` under `sup` (nothing with `--proxy-mode none`).
pub async fn start(
    sup: &mut Supervisor,
    client: kube::Client,
    node: String,
    node_ips: Vec<std::net::IpAddr>,
    flags: Flags,
) -> anyhow::Result<()> {
    let writer = writer(flags.nftables_writer)?;
    let Some(_mode) = choose(flags.proxy_mode, &writer).await? else {
        tracing::info!("proxy: --proxy-mode none; Services are not programmed on this node");
        return Ok(());
    };
    let node_port_cidrs = if flags.nodeport_addresses.is_empty() {
        None
    } else {
        let mut out = Vec::new();
        for v in &flags.nodeport_addresses {
            if v.trim() == "primary" {
                out.extend(
                    node_ips.iter().map(|ip| Cidr { network: *ip, prefix: if ip.is_ipv4() { 32 } else { 128 } }),
                );
            } else {
                out.push(Cidr::parse(v.trim()).map_err(|e| anyhow!("--nodeport-addresses: {e}"))?);
            }
        }
        Some(out)
    };
    let config = kubesvc_proxy::runner::Config {
        node,
        families: vec![Family::IPv4, Family::IPv6],
        service_cidrs: cidrs("service-cluster-ip-range", &flags.service_cluster_ip_range)?,
        cluster_cidrs: cidrs("cluster-cidr", &flags.proxy_cluster_cidr)?,
        node_port_cidrs,
        min_sync_period: flags.min_sync_period,
        writer,
        socket_lb: flags.socket_lb_cgroup.clone(),
        announce: match (&flags.announce_network, &flags.announce_interface) {
            (Some(n), Some(i)) => Some(kubesvc_proxy::announce::Announce {
                interface: i.clone(),
                network: Cidr::parse(n).map_err(|e| anyhow!("--announce-network: {e}"))?,
            }),
            _ => None,
        },
    };
    let metrics = Arc::new(kubesvc_proxy::metrics::Metrics::new());
    let healthz = bind("healthz-bind-address", &flags.healthz_bind_address).await?;
    let metrics_listener = bind("metrics-bind-address", &flags.metrics_bind_address).await?;
    let stop: watch::Receiver<bool> = sup.stopping();
    if let Some(l) = healthz {
        let (m, s) = (metrics.clone(), stop.clone());
        sup.spawn("proxy-health", async move {
            kubesvc_proxy::health::serve_health(l, m, s).await;
            Ok(())
        });
    }
    if let Some(l) = metrics_listener {
        let (m, s) = (metrics.clone(), stop.clone());
        sup.spawn("proxy-metrics", async move {
            kubesvc_proxy::health::serve_health(l, m, s).await;
            Ok(())
        });
    }
    sup.spawn("proxy", async move {
        kubesvc_proxy::runner::run(client, config, metrics, stop).await;
        Ok(())
    });
    Ok(())
}

#[derive(clap::Args)]
pub struct Args {
    /// The kubeconfig to reach the API with (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The node this proxy serves (default: this host's name), as kube-proxy's flag.
    #[arg(long)]
    hostname_override: Option<String>,
    /// Remove kubesvc's nftables tables and exit.
    #[arg(long)]
    cleanup: bool,
    #[command(flatten)]
    flags: Flags,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.cleanup {
        let writer = writer(args.flags.nftables_writer)?;
        for family in [Family::IPv4, Family::IPv6] {
            writer.remove_table(family, "kubesvc").await.context("removing kubesvc's nftables tables")?;
        }
        eprintln!("removed kubesvc's nftables tables");
        return Ok(());
    }
    // A mode that cannot work fails before anything else is tried.
    choose(args.flags.proxy_mode, &writer(args.flags.nftables_writer)?).await?;
    let client = kubesvc_runtime::client::from_kubeconfig(args.kubeconfig.as_deref()).await?;
    let node = match args.hostname_override {
        Some(n) => n,
        None => nix::unistd::gethostname().context("reading the host name")?.to_string_lossy().to_lowercase(),
    };
    let mut sup = Supervisor::new();
    start(&mut sup, client, node, kubesvc_host::addresses::global_addresses(), args.flags).await?;
    sup.run().await
}
