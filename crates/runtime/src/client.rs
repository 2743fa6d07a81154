//! Kube clients for a kubeconfig file, or for the environment's default one
//! ($KUBECONFIG, ~/.kube/config, or the in-cluster service account).

use std::path::{Path, PathBuf};

use kube::config::{InferConfigError, KubeConfigOptions, Kubeconfig, KubeconfigError};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("reading {0}")]
    Read(PathBuf, #[source] KubeconfigError),
    #[error("using {0}")]
    Use(PathBuf, #[source] KubeconfigError),
    #[error("finding a kubeconfig")]
    Infer(#[source] InferConfigError),
    #[error("making a Kubernetes client")]
    Client(#[source] kube::Error),
}

/// A client for `kubeconfig`, or for the environment's default one when `None`.
pub async fn from_kubeconfig(kubeconfig: Option<&Path>) -> Result<kube::Client, ClientError> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|e| ClientError::Read(path.to_path_buf(), e))?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| ClientError::Use(path.to_path_buf(), e))?
        }
        None => kube::Config::infer().await.map_err(ClientError::Infer)?,
    };
    kube::Client::try_from(config).map_err(ClientError::Client)
}
