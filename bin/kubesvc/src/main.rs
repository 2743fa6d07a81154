//! The kubesvc binary: one program, several roles.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use kubesvc_store::Store;

#[derive(Parser)]
#[command(name = "kubesvc", version, about = "Kubernetes Services in one binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Kubernetes-compatible API server (and, by default, the controllers).
    Server(ServerArgs),
    /// Run the controllers against any Kubernetes API server.
    Controllers(ControllersArgs),
}

#[derive(clap::Args, Clone)]
struct ControllerFlags {
    /// Seconds a node may go without a heartbeat before it is marked NotReady.
    #[arg(long, default_value_t = 50)]
    node_monitor_grace_period: u64,
    /// The most endpoints one EndpointSlice holds.
    #[arg(long, default_value_t = 100)]
    max_endpoints_per_slice: usize,
}

impl ControllerFlags {
    fn options(&self) -> kubesvc_controllers::Options {
        kubesvc_controllers::Options {
            max_endpoints_per_slice: self.max_endpoints_per_slice.clamp(1, 1000),
            node_monitor_grace_period: Duration::from_secs(self.node_monitor_grace_period.max(1)),
            ..Default::default()
        }
    }
}

#[derive(clap::Args)]
struct ControllersArgs {
    /// The kubeconfig of the cluster to control (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    #[command(flatten)]
    flags: ControllerFlags,
}

#[derive(Clone, Copy, ValueEnum)]
enum Storage {
    /// Durable, embedded (redb) in the data directory.
    Redb,
    /// In memory: nothing survives the process.
    Memory,
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Where certificates, the admin kubeconfig and the database live.
    #[arg(long, env = "KUBESVC_DATA_DIR")]
    data_dir: PathBuf,
    /// Address to serve HTTPS on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    #[arg(long, value_enum, default_value = "redb")]
    storage: Storage,
    /// Events remembered per resource for watches resuming from a resourceVersion.
    #[arg(long, default_value_t = 10_000)]
    watch_cache_size: usize,
    /// Seconds between compactions of old revisions.
    #[arg(long, default_value_t = 300)]
    compaction_interval: u64,
    /// Extra DNS names or IPs for the serving certificate.
    #[arg(long = "tls-san")]
    tls_san: Vec<String>,
    /// Seconds between bookmarks to watches that ask for them.
    #[arg(long, default_value_t = 60)]
    watch_bookmark_interval: u64,
    /// Services' cluster IP range; a second range of the other family, after a comma, makes the cluster dual-stack.
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cidr: String,
    /// Node ports for NodePort and LoadBalancer Services, inclusive.
    #[arg(long, default_value = "30000-32767")]
    service_node_port_range: String,
    /// The address the `kubernetes` Service's endpoints name (default: the listen
    /// address, or the first global address of this host).
    #[arg(long)]
    advertise_address: Option<std::net::IpAddr>,
    /// Run the controllers in this process (`--controllers=false` for an API server alone).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    controllers: bool,
    #[command(flatten)]
    controller_flags: ControllerFlags,
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return ctrl_c.await.unwrap_or(()),
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn server(args: ServerArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("creating {}", args.data_dir.display()))?;
    let store: Arc<dyn Store> = match args.storage {
        Storage::Redb => Arc::new(
            kubesvc_store::redb::RedbStore::open(&args.data_dir.join("kubesvc.redb"))
                .context("opening the database")?,
        ),
        Storage::Memory => Arc::new(kubesvc_store::memory::MemoryStore::new()),
    };
    let mut config = kubesvc_apiserver::Config::new(args.data_dir.clone(), args.listen);
    config.watch_cache_size = args.watch_cache_size;
    config.compaction_interval = Duration::from_secs(args.compaction_interval.max(1));
    config.extra_sans = args.tls_san;
    config.bookmark_interval = Duration::from_secs(args.watch_bookmark_interval.max(1));
    config.services =
        kubesvc_apiserver::services::ServiceNetwork::parse(&args.service_cidr, &args.service_node_port_range)
            .map_err(anyhow::Error::msg)?;
    config.advertise_address = args.advertise_address;
    let running = kubesvc_apiserver::start(config, store).await?;
    eprintln!("kubesvc API server listening on https://{}; kubeconfig: {}", running.addr, running.kubeconfig.display());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let controllers = if args.controllers {
        let client = client_from(Some(running.kubeconfig.clone())).await?;
        let opts = args.controller_flags.options();
        Some(tokio::spawn(kubesvc_controllers::run(client, opts, stopped)))
    } else {
        None
    };
    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop.send(true);
    if let Some(c) = controllers {
        let _ = c.await;
    }
    running.shutdown().await;
    Ok(())
}

/// A client for a kubeconfig file, or for the environment's default one.
async fn client_from(kubeconfig: Option<PathBuf>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc =
                kube::config::Kubeconfig::read_from(&path).with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(config)?)
}

async fn controllers(args: ControllersArgs) -> anyhow::Result<()> {
    let client = client_from(args.kubeconfig).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(kubesvc_controllers::run(client, args.flags.options(), stopped));
    shutdown_signal().await;
    let _ = stop.send(true);
    task.await??;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        match cli.command {
            Command::Server(args) => server(args).await,
            Command::Controllers(args) => controllers(args).await,
        }
    })
}
