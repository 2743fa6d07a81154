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

/// What a server role needs beyond its defaults; `kubesvc up` builds one too.
pub struct Settings {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub memory: bool,
    pub watch_cache_size: usize,
    pub compaction_interval: Duration,
    pub tls_san: Vec<String>,
    pub bookmark_interval: Duration,
    pub service_cidr: String,
    pub service_node_port_range: String,
    pub advertise_address: Option<IpAddr>,
    /// The controllers' flags, or none for an API server alone.
    pub controllers: Option<controllers::Flags>,
}

impl Settings {
    /// Settings for `kubesvc up`: its data directory, its address, everything else as `kubesvc server` defaults it.
    pub fn defaults(data_dir: PathBuf, listen: SocketAddr, controllers: controllers::Flags) -> Settings {
        Settings {
            data_dir,
            listen,
            memory: false,
            watch_cache_size: 10_000,
            compaction_interval: Duration::from_secs(300),
            tls_san: Vec::new(),
            bookmark_interval: Duration::from_secs(60),
            service_cidr: "10.96.0.0/12".into(),
            service_node_port_range: "30000-32767".into(),
            advertise_address: Some(listen.ip()),
            controllers: Some(controllers),
        }
    }
}

impl From<Args> for Settings {
    fn from(a: Args) -> Settings {
        Settings {
            data_dir: a.data_dir,
            listen: a.listen,
            memory: matches!(a.storage, Storage::Memory),
            watch_cache_size: a.watch_cache_size,
            compaction_interval: Duration::from_secs(a.compaction_interval.max(1)),
            tls_san: a.tls_san,
            bookmark_interval: Duration::from_secs(a.watch_bookmark_interval.max(1)),
            service_cidr: a.service_cidr,
            service_node_port_range: a.service_node_port_range,
            advertise_address: a.advertise_address,
            controllers: a.controllers.then_some(a.controller_flags),
        }
    }
}

/// Starts the API server (and the controllers) under `sup`; the admin kubeconfig's path once it serves.
pub async fn spawn(sup: &mut Supervisor, s: Settings) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(&s.data_dir).with_context(|| format!("creating {}", s.data_dir.display()))?;
    let store: Arc<dyn Store> = if s.memory {
        Arc::new(kubesvc_store::memory::MemoryStore::new())
    } else {
        Arc::new(
            kubesvc_store::redb::RedbStore::open(&s.data_dir.join("kubesvc.redb")).context("opening the database")?,
        )
    };
    let mut config = kubesvc_apiserver::Config::new(s.data_dir.clone(), s.listen);
    config.watch_cache_size = s.watch_cache_size;
    config.compaction_interval = s.compaction_interval;
    config.extra_sans = s.tls_san;
    config.bookmark_interval = s.bookmark_interval;
    config.services = kubesvc_apiserver::services::ServiceNetwork::parse(&s.service_cidr, &s.service_node_port_range)?;
    config.advertise_address = s.advertise_address;
    let controller_options = s.controllers.as_ref().map(|f| f.options(&config.services.cidrs)).transpose()?;
    let running = kubesvc_apiserver::start(config, store).await.context("starting the API server")?;
    eprintln!("kubesvc API server listening on https://{}; kubeconfig: {}", running.addr, running.kubeconfig.display());
    let kubeconfig = running.kubeconfig.clone();
    let stop = sup.stopping();
    sup.spawn("API server", async move { Ok(running.serve_until(stop).await?) });
    if let Some(options) = controller_options {
        let client = kubesvc_runtime::client::from_kubeconfig(Some(&kubeconfig)).await?;
        controllers::spawn(sup, client, options);
    }
    Ok(kubeconfig)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut sup = Supervisor::new();
    spawn(&mut sup, args.into()).await?;
    sup.run().await
}
