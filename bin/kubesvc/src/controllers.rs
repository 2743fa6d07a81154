//! `kubesvc controllers`: the controllers against any Kubernetes API server
//! (`kubesvc server` also runs them in process).

use std::path::PathBuf;
use std::time::Duration;

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
}

impl Flags {
    pub fn options(&self) -> kubesvc_controllers::Options {
        kubesvc_controllers::Options {
            max_endpoints_per_slice: self.max_endpoints_per_slice.clamp(1, 1000),
            node_monitor_grace_period: Duration::from_secs(self.node_monitor_grace_period.max(1)),
            ..Default::default()
        }
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
pub fn spawn(sup: &mut Supervisor, client: kube::Client, flags: &Flags) {
    let (opts, stop) = (flags.options(), sup.stopping());
    sup.spawn("controllers", async move { Ok(kubesvc_controllers::run(client, opts, stop).await?) });
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let client = kubesvc_runtime::client::from_kubeconfig(args.kubeconfig.as_deref()).await?;
    let mut sup = Supervisor::new();
    spawn(&mut sup, client, &args.flags);
    sup.run().await
}
