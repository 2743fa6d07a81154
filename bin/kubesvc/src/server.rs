//! `kubesvc server`: the Kubernetes-compatible API server on durable
//! embedded storage, and by default the controllers in the same process.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;
use kubesvc_store::Store;

use crate::controllers;
use crate::supervisor::Supervisor;

#[derive(Clone, Copy, ValueEnum)]
enum Storage {
    /// Durable, embedded (redb) in the data directory.
    Redb,
    /// In memory: nothing survives the process.
    Memory,
}

#[derive(clap::Args)]
pub struct Args {
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
    advertise_address: Option<IpAddr>,
    /// Run the controllers in this process (`--controllers=false` for an API server alone).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    controllers: bool,
    #[command(flatten)]
    controller_flags: controllers::Flags,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
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
        kubesvc_apiserver::services::ServiceNetwork::parse(&args.service_cidr, &args.service_node_port_range)?;
    config.advertise_address = args.advertise_address;
    let controller_options = args.controller_flags.options(&config.services.cidrs)?;
    let running = kubesvc_apiserver::start(config, store).await.context("starting the API server")?;
    eprintln!("kubesvc API server listening on https://{}; kubeconfig: {}", running.addr, running.kubeconfig.display());
    let kubeconfig = running.kubeconfig.clone();
    let mut sup = Supervisor::new();
    let stop = sup.stopping();
    sup.spawn("API server", async move { Ok(running.serve_until(stop).await?) });
    if args.controllers {
        let client = kubesvc_runtime::client::from_kubeconfig(Some(&kubeconfig)).await?;
        controllers::spawn(&mut sup, client, controller_options);
    }
    sup.run().await
}
