//! Controllers that keep a Service's set of pods true, as
//! kube-controller-manager's do: endpoint slices, legacy endpoints and their
//! mirroring, replica sets, deployments, a scheduler, garbage collection,
//! node health and node IPAM. They talk to the API only through kube clients (watches into
//! shared informers, writes through the API), so they run the same inside
//! `kubesvc server` and against any Kubernetes cluster.

pub mod claim;
pub mod deployment;
pub mod endpoints;
pub mod endpointslice;
pub mod expectations;
pub mod gc;
pub mod loadbalancer;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod ownerindex;
pub mod podindex;
pub mod podutil;
pub mod replicaset;
pub mod scheduler;
pub mod slices;
pub mod trigger;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Node, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::{Api, Client};
use kubesvc_runtime::Informer;
use kubesvc_runtime::wellknown::NAMESPACE_NODE_LEASE;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Other(String),
}

/// Settings, with kube-controller-manager's defaults.
#[derive(Clone, Debug)]
pub struct Options {
    /// `--max-endpoints-per-slice`.
    pub max_endpoints_per_slice: usize,
    /// Workers per controller (`--concurrent-*-syncs`).
    pub workers: usize,
    /// How long a node may go without a heartbeat before it is NotReady.
    pub node_monitor_grace_period: Duration,
    /// Pod CIDRs for nodes (`--cluster-cidr`, `--node-cidr-mask-size`).
    pub ipam: nodeipam::IpamOptions,
    /// Addresses for LoadBalancer Services (`--lb-pool`); empty: no load-balancer controller.
    pub lb_pool: Vec<loadbalancer::IpRange>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_endpoints_per_slice: 100,
            workers: 5,
            node_monitor_grace_period: Duration::from_secs(50),
            ipam: nodeipam::IpamOptions::default(),
            lb_pool: Vec::new(),
        }
    }
}

/// The informers every controller shares.
pub struct Informers {
    pub services: Arc<Informer<Service>>,
    pub pods: Arc<Informer<Pod>>,
    pub nodes: Arc<Informer<Node>>,
    pub slices: Arc<Informer<EndpointSlice>>,
    pub endpoints: Arc<Informer<Endpoints>>,
    pub replicasets: Arc<Informer<ReplicaSet>>,
    pub deployments: Arc<Informer<Deployment>>,
    pub leases: Arc<Informer<Lease>>,
    /// For the garbage collector only.
    pub configmaps: Arc<Informer<ConfigMap>>,
    pub secrets: Arc<Informer<Secret>>,
}

impl Informers {
    pub fn new(client: &Client) -> Self {
        Informers {
            services: Informer::new(Api::all(client.clone())),
            pods: Informer::new(Api::all(client.clone())),
            nodes: Informer::new(Api::all(client.clone())),
            slices: Informer::new(Api::all(client.clone())),
            endpoints: Informer::new(Api::all(client.clone())),
            replicasets: Informer::new(Api::all(client.clone())),
            deployments: Informer::new(Api::all(client.clone())),
            leases: Informer::new(Api::namespaced(client.clone(), NAMESPACE_NODE_LEASE)),
            configmaps: Informer::new(Api::all(client.clone())),
            secrets: Informer::new(Api::all(client.clone())),
        }
    }

    fn start(&self, stop: &watch::Receiver<bool>) {
        self.services.start(stop.clone());
        self.pods.start(stop.clone());
        self.nodes.start(stop.clone());
        self.slices.start(stop.clone());
        self.endpoints.start(stop.clone());
        self.replicasets.start(stop.clone());
        self.deployments.start(stop.clone());
        self.leases.start(stop.clone());
        self.configmaps.start(stop.clone());
        self.secrets.start(stop.clone());
    }

    /// Waits until every informer has its first list.
    pub async fn synced(&self) {
        self.services.synced().await;
        self.pods.synced().await;
        self.nodes.synced().await;
        self.slices.synced().await;
        self.endpoints.synced().await;
        self.replicasets.synced().await;
        self.deployments.synced().await;
        self.leases.synced().await;
        self.configmaps.synced().await;
        self.secrets.synced().await;
    }
}

/// Runs every controller until `stop` turns true.
pub async fn run(client: Client, opts: Options, stop: watch::Receiver<bool>) -> Result<(), Error> {
    let informers = Arc::new(Informers::new(&client));
    let index = podindex::PodIndex::attach(&informers);
    let slices = endpointslice::Controller::new(client.clone(), informers.clone(), index.clone(), &opts);
    let endpoints = endpoints::Controller::new(client.clone(), informers.clone(), index.clone());
    let mirroring = endpoints::Mirroring::new(client.clone(), informers.clone(), &opts);
    let set_index = ownerindex::OwnerIndex::attach(&informers.replicasets);
    let sets =
        replicaset::Controller::new(client.clone(), informers.replicasets.clone(), &informers.pods, set_index.clone());
    let deployments = deployment::Controller::new(
        client.clone(),
        informers.deployments.clone(),
        &informers.replicasets,
        set_index,
        &informers.pods,
        sets.pod_index(),
    );
    let collector = gc::Collector::new(client.clone());
    collector.observe(&informers.pods);
    collector.observe(&informers.services);
    collector.observe(&informers.endpoints);
    collector.observe(&informers.slices);
    collector.observe(&informers.replicasets);
    collector.observe(&informers.deployments);
    collector.observe(&informers.nodes);
    collector.observe(&informers.leases);
    collector.observe(&informers.configmaps);
    collector.observe(&informers.secrets);
    let scheduler = scheduler::Scheduler::new(client.clone(), informers.pods.clone(), &informers.nodes);
    let nodes =
        nodelifecycle::Controller::new(client.clone(), &informers.nodes, &informers.leases, &informers.pods, &opts);
    let ipam = nodeipam::Controller::new(client.clone(), &informers.nodes, &opts.ipam)?;
    let lb = loadbalancer::Controller::new(client.clone(), &informers.services, &opts.lb_pool);
    informers.start(&stop);
    let mut stopping = stop.clone();
    tokio::select! {
        _ = informers.synced() => {}
        _ = stopping.wait_for(|s| *s) => return Ok(()),
    }
    tracing::info!("controllers' caches are synced; starting");
    slices.spawn(opts.workers, stop.clone());
    endpoints.spawn(opts.workers, stop.clone());
    mirroring.spawn(opts.workers, stop.clone());
    sets.spawn(opts.workers, stop.clone());
    deployments.spawn(opts.workers, stop.clone());
    collector.spawn(opts.workers, stop.clone());
    scheduler.spawn(stop.clone());
    nodes.spawn(stop.clone());
    if let Some(ipam) = &ipam {
        ipam.spawn(stop.clone());
    }
    if let Some(lb) = &lb {
        lb.spawn(stop.clone());
    }
    let mut stop = stop;
    let _ = stop.wait_for(|s| *s).await;
    Ok(())
}
