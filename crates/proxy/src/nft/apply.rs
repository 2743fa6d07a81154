//! Applying a transaction: `nft -f -`, as kube-proxy's knftables runs it; the
//! whole text is one atomic transaction (the kernel takes all of it or none).

use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("running {0}: {1}")]
    Spawn(String, #[source] std::io::Error),
    #[error("nft refused the transaction: {0}")]
    Refused(String),
}

/// How to run `nft` (a prefix such as `nsenter -t PID -n` runs it in another namespace).
#[derive(Clone, Debug)]
pub struct Nft {
    argv: Vec<String>,
}

impl Default for Nft {
    fn default() -> Self {
        Nft { argv: vec!["nft".to_string()] }
    }
}

impl Nft {
    pub fn with_argv(argv: Vec<String>) -> Nft {
        Nft { argv }
    }

    async fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, NftError> {
        let name = self.argv.join(" ");
        let mut cmd = Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..]).args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() }).kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| NftError::Spawn(name.clone(), e))?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes()).await.map_err(|e| NftError::Spawn(name.clone(), e))?;
        }
        let out = child.wait_with_output().await.map_err(|e| NftError::Spawn(name, e))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(NftError::Refused(String::from_utf8_lossy(&out.stderr).trim().to_string()))
        }
    }

    /// Applies one transaction.
    pub async fn apply(&self, transaction: &str) -> Result<(), NftError> {
        if transaction.is_empty() {
            return Ok(());
        }
        self.run(&["-f", "-"], Some(transaction)).await.map(|_| ())
    }

    /// Whether nft works here: it can list, and the kernel takes a table (checked, not applied).
    pub async fn check(&self) -> Result<(), NftError> {
        self.run(&["--check", "-f", "-"], Some("add table ip kubesvc-probe\n")).await.map(|_| ())
    }

    /// Runs `nft <args>` (e.g. `list table ip kubesvc`).
    pub async fn command(&self, args: &[&str]) -> Result<String, NftError> {
        self.run(args, None).await
    }
}
