//! kubesvc's Kubernetes-compatible API server.
//!
//! Layout, in the order a request flows:
//! - [`server`] accepts TLS connections and serves HTTP/2 and HTTP/1.1;
//! - [`handlers`] authenticates (client certificate or bearer token, see
//!   [`auth`]), asks the authorizer, and dispatches; [`web`] routes paths, negotiates formats and decodes bodies;
//! - reads go to [`list`], [`watch`] and the [`cache`], which follows the store;
//! - writes go through the [`registry`]: per-kind rules from kubesvc-api,
//!   admission steps, and compare-and-swap transactions on the store;
//! - [`output`] renders objects, lists and Tables; [`discovery`] and
//!   [`openapi`] describe the API; [`namespaces`] runs namespace lifecycle;
//!   [`services`] allocates Services' addresses and keeps the built-in
//!   Services; [`pki`] keeps the certificates and writes the admin kubeconfig.

pub mod auth;
pub mod cache;
pub mod discovery;
pub mod follow;
pub mod handlers;
pub mod list;
pub mod namespaces;
pub mod nodeproxy;
pub mod openapi;
pub mod output;
pub mod pki;
pub mod registry;
pub mod server;
pub mod services;
pub mod watch;
pub mod web;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kubesvc_store::Store;
use tokio::sync::watch as signal;

pub use registry::Admission;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Io(PathBuf, #[source] std::io::Error),
    #[error("certificates: {0}")]
    Pki(&'static str, #[source] pki::PkiError),
    #[error("storage")]
    Store(#[from] kubesvc_store::Error),
    #[error("listening on {0}")]
    Bind(SocketAddr, #[source] std::io::Error),
    #[error("the Service network")]
    ServiceNetwork(#[from] services::NetworkError),
    #[error("starting the Service address allocator")]
    Allocator(#[from] services::StartError),
    #[error("creating the default namespaces")]
    Bootstrap(#[source] kubesvc_api::status::StatusError),
    #[error("unable to perform initial IP and Port allocation check")]
    InitialRepair(#[source] kubesvc_store::Error),
    #[error("the server stopped serving on its own")]
    Stopped(#[source] Option<tokio::task::JoinError>),
}

/// Shared by every request.
pub struct State {
    pub registry: registry::Registry,
    pub openapi: openapi::OpenApi,
    /// The admin bearer token.
    pub token: String,
    /// host:port clients should use, for discovery.
    pub advertise: String,
    /// Flips to true at shutdown; watches end.
    pub shutdown: signal::Receiver<bool>,
    /// How often watches that asked for bookmarks get one.
    pub bookmark_interval: Duration,
    /// Asked before every authenticated request is served.
    pub authorizer: Arc<dyn auth::Authorizer>,
    /// TLS towards node agents, for the pod subresources they serve.
    pub node_tls: Arc<rustls::ClientConfig>,
}

pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Events kept per resource for watches that resume from a resourceVersion.
    pub watch_cache_size: usize,
    /// How often old revisions are compacted away.
    pub compaction_interval: Duration,
    /// Extra names and addresses for the serving certificate.
    pub extra_sans: Vec<String>,
    /// How often watches that asked for bookmarks get one (Kubernetes: about a minute).
    pub bookmark_interval: Duration,
    /// Where Services' cluster IPs and node ports come from.
    pub services: services::ServiceNetwork,
    /// The address the `kubernetes` Service's endpoints name; found from the listen
    /// address or the host's interfaces when not given.
    pub advertise_address: Option<IpAddr>,
    /// How often the built-in Services and their endpoints are put right.
    pub builtin_interval: Duration,
    pub admission: Vec<Arc<dyn Admission>>,
    pub authorizer: Arc<dyn auth::Authorizer>,
}

impl Config {
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> Self {
        Config {
            data_dir,
            listen,
            watch_cache_size: 10_000,
            compaction_interval: Duration::from_secs(300),
            extra_sans: Vec::new(),
            bookmark_interval: Duration::from_secs(60),
            services: services::ServiceNetwork::default(),
            advertise_address: None,
            builtin_interval: services::builtin::INTERVAL,
            admission: Vec::new(),
            authorizer: Arc::new(auth::DefaultAuthorizer),
        }
    }
}

/// A running API server.
pub struct Running {
    pub addr: SocketAddr,
    pub kubeconfig: PathBuf,
    stop: signal::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting, ends watches, lets in-flight requests finish.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Serves until `stop` turns true, then shuts down; an error if serving ended before.
    pub async fn serve_until(mut self, mut stop: signal::Receiver<bool>) -> Result<(), Error> {
        let ended = tokio::select! {
            _ = stop.wait_for(|s| *s) => None,
            ended = &mut self.task => Some(ended),
        };
        match ended {
            None => {
                self.shutdown().await;
                Ok(())
            }
            Some(ended) => Err(Error::Stopped(ended.err())),
        }
    }
}

/// The address other hosts reach this server at: the listen address if it is
/// one, else the first global address of an interface that is up.
fn advertise_address(listen: &SocketAddr) -> Option<IpAddr> {
    let usable = |ip: &IpAddr| !ip.is_unspecified() && !ip.is_loopback() && !ip.is_multicast();
    if usable(&listen.ip()) {
        return Some(listen.ip());
    }
    kubesvc_host::addresses::global_addresses().first().copied()
}

fn server_names(listen: &SocketAddr, extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = [
        "localhost",
        "127.0.0.1",
        "::1",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if !listen.ip().is_unspecified() {
        names.push(listen.ip().to_string());
    }
    names.extend(extra.iter().cloned());
    names.dedup();
    names
}

/// Starts the API server on `store`; it serves until [`Running::shutdown`].
pub async fn start(config: Config, store: Arc<dyn Store>) -> Result<Running, Error> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| Error::Io(config.data_dir.clone(), e))?;
    let mut sans = config.extra_sans.clone();
    sans.extend(config.advertise_address.map(|ip| ip.to_string()));
    let pki = pki::Pki::load_or_create(&config.data_dir, &server_names(&config.listen, &sans))?;
    let tls = pki.server_config()?;
    let (stop, stopped) = signal::channel(false);
    let cache = cache::Cache::start(store.clone(), config.watch_cache_size, stopped.clone()).await?;
    let allocator = services::ServiceAllocator::start(store.clone(), &config.services, stopped.clone()).await?;
    let mut admission = config.admission;
    admission.push(allocator.clone());
    let registry = registry::Registry::new(store.clone(), cache, admission);
    namespaces::bootstrap(&registry).await.map_err(Error::Bootstrap)?;
    let report = services::repair::run_once(&*store, &allocator.ranges).await.map_err(Error::InitialRepair)?;
    services::repair::report_events(&registry, &report).await;

    let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|e| Error::Bind(config.listen, e))?;
    let addr = listener.local_addr().map_err(|e| Error::Bind(config.listen, e))?;
    let host: IpAddr = if addr.ip().is_unspecified() { IpAddr::from([127, 0, 0, 1]) } else { addr.ip() };
    let advertise = SocketAddr::new(host, addr.port()).to_string();
    let state = Arc::new(State {
        registry,
        openapi: openapi::OpenApi::new(),
        token: pki.token.clone(),
        advertise: advertise.clone(),
        shutdown: stopped.clone(),
        bookmark_interval: config.bookmark_interval,
        authorizer: config.authorizer,
        node_tls: pki.kubelet_client_config()?,
    });

    namespaces::spawn_controller(state.clone());
    let primary = services::ranges::IpRange::new(config.services.cidrs[0])?;
    let advertise_ip = config.advertise_address.or_else(|| advertise_address(&config.listen));
    let builtins = services::builtin::Builtins {
        range: primary,
        advertise: advertise_ip,
        port: addr.port(),
        interval: config.builtin_interval,
    };
    services::builtin::start(state.clone(), builtins).await;
    services::repair::spawn(store.clone(), allocator.ranges.clone(), state.clone());
    spawn_compactor(store, config.compaction_interval, stopped.clone());
    // The kubeconfig appears only once the server accepts connections.
    let kubeconfig = pki.write_kubeconfig(&config.data_dir.join("kubeconfig"), &format!("https://{advertise}"))?;
    let task = tokio::spawn(server::serve(listener, tls, state, stopped));
    tracing::info!(%addr, kubeconfig = %kubeconfig.display(), "kubesvc API server ready");
    Ok(Running { addr, kubeconfig, stop, task })
}

/// How many revisions one compaction step forgets.
const COMPACTION_STEP: i64 = 1_000;

/// Every interval, forgets history older than the revision seen one interval
/// ago, as kube-apiserver compacts etcd.
fn spawn_compactor(store: Arc<dyn Store>, every: Duration, mut stop: signal::Receiver<bool>) {
    tokio::spawn(async move {
        let mut previous: Option<i64> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => return,
            }
            let Ok(revs) = store.revisions().await else {
                continue;
            };
            if let Some(target) = previous {
                // In steps, so that writes queued behind compaction wait for one step at most.
                let mut at = revs.compacted;
                while at < target {
                    at = (at + COMPACTION_STEP).min(target);
                    if let Err(e) = store.compact(at).await {
                        tracing::warn!(error = %e, revision = at, "compaction failed");
                        break;
                    }
                }
            }
            previous = Some(revs.current);
        }
    });
}
