//! Kube clients for the roles that talk to an API server: kubesvc's or any
//! Kubernetes cluster's.

use std::path::PathBuf;

use anyhow::Context;

/// A client for a kubeconfig file, or for the environment's default one
/// ($KUBECONFIG, ~/.kube/config, or the in-cluster service account).
pub async fn from_kubeconfig(kubeconfig: Option<PathBuf>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc =
                kube::config::Kubeconfig::read_from(&path).with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("using {}", path.display()))?
        }
        None => kube::Config::infer().await.context("finding a kubeconfig")?,
    };
    kube::Client::try_from(config).context("making a Kubernetes client")
}
