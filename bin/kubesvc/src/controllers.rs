//! `kubesvc controllers`: the controllers against any Kubernetes API server
//! (`kubesvc server` also runs them in process).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use kubesvc_api::net::Cidr;
use kubesvc_controllers::nodeipam::IpamOptions;

use crate::supervisor::Supervisor;

/// The controllers' settings, shared by `kubesvc server` and `kubesvc controllers`.
#[derive(clap::Args, Clone)]
pub struct Flags {
    /// Seconds a node may go without a heartbeat before it is marked NotReady.
    #[arg(long, default_value_t = 50)]
    node_monitor_grace_period: u64,
    /// The most endpoints one EndpointSlice holds.
    #[arg(long, default_value_t = 100)]
    max_endpoints_per_slice: usize,
    /// Give each node a pod CIDR from --cluster-cidr (`spec.podCIDR(s)`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    allocate_node_cidrs: bool,
    /// Pods' address range; a second range of the other family, after a comma, for dual-stack.
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: String,
    /// The size of each node's IPv4 pod CIDR.
    #[arg(long, alias = "node-cidr-mask-size-ipv4", default_value_t = 24)]
    node_cidr_mask_size: u8,
    /// The size of each node's IPv6 pod CIDR.
    #[arg(long, default_value_t = 64)]
    node_cidr_mask_size_ipv6: u8,
    /// Addresses for LoadBalancer Services (ranges `a-b` or CIDRs, comma-separated);
    /// none: no load-balancer controller (`kubesvc up` carves one from its node network).
    #[arg(long, value_delimiter = ',')]
    pub lb_pool: Vec<String>,
}

impl Flags {
    /// The controllers' options; `service_cidrs` are kept out of node CIDRs.
    pub fn options(&self, service_cidrs: &[Cidr]) -> anyhow::Result<kubesvc_controllers::Options> {
        let cluster_cidrs = if self.allocate_node_cidrs {
            self.cluster_cidr
                .split(',')
                .map(|c| Cidr::parse(c.trim()).map_err(|e| anyhow!("--cluster-cidr: {e}")))
                .collect::<anyhow::Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        Ok(kubesvc_controllers::Options {
            max_endpoints_per_slice: self.max_endpoints_per_slice.clamp(1, 1000),
            node_monitor_grace_period: Duration::from_secs(self.node_monitor_grace_period.max(1)),
            ipam: IpamOptions {
                cluster_cidrs,
                mask_ipv4: self.node_cidr_mask_size,
                mask_ipv6: self.node_cidr_mask_size_ipv6,
                service_cidrs: service_cidrs.to_vec(),
            },
            lb_pool: self
                .lb_pool
                .iter()
                .filter(|r| !r.trim().is_empty())
                .map(|r| kubesvc_controllers::loadbalancer::IpRange::parse(r).map_err(|e| anyhow!("--lb-pool: {e}")))
                .collect::<anyhow::Result<Vec<_>>>()?,
            ..Default::default()
        })
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// The kubeconfig of the cluster to control (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    #[command(flatten)]
    flags: Flags,
}

/// Adds the controllers, on `client`, to a supervisor.
pub fn spawn(sup: &mut Supervisor, client: kube::Client, opts: kubesvc_controllers::Options) {
    let stop = sup.stopping();
    sup.spawn("controllers", async move { Ok(kubesvc_controllers::run(client, opts, stop).await?) });
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let client = kubesvc_runtime::client::from_kubeconfig(args.kubeconfig.as_deref()).await?;
    let mut sup = Supervisor::new();
    spawn(&mut sup, client, args.flags.options(&[])?);
    sup.run().await
}
