//! Runs a process's roles side by side until a signal asks them to stop or
//! one of them ends: a role that fails, or ends before it was asked to, makes
//! the whole process fail with that role named, after the others stopped.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, anyhow};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How long roles get to finish once asked to stop.
const STOP_GRACE: Duration = Duration::from_secs(20);

pub struct Supervisor {
    stop: watch::Sender<bool>,
    roles: JoinSet<(&'static str, anyhow::Result<()>)>,
}

impl Supervisor {
    pub fn new() -> Self {
        Supervisor { stop: watch::channel(false).0, roles: JoinSet::new() }
    }

    /// Turns true when the roles are to stop.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Runs `role` until it ends; it should end soon after [`Supervisor::stopping`] turns true.
    pub fn spawn(&mut self, role: &'static str, run: impl Future<Output = anyhow::Result<()>> + Send + 'static) {
        self.roles.spawn(async move { (role, run.await) });
    }

    /// Waits for SIGINT/SIGTERM or the first role to end, then stops every
    /// role; the first failure (or early end) is the result.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let mut failure: Option<anyhow::Error> = None;
        tokio::select! {
            _ = shutdown_signal() => tracing::info!("shutting down"),
            Some(ended) = self.roles.join_next() => {
                let (role, result) = ended.context("a role panicked")?;
                failure = Some(match result {
                    Ok(()) => anyhow!("{role} stopped on its own"),
                    Err(e) => e.context(format!("{role} failed")),
                });
            }
        }
        self.stop.send_replace(true);
        let drained = tokio::time::timeout(STOP_GRACE, async {
            while let Some(ended) = self.roles.join_next().await {
                match ended {
                    Ok((_, Ok(()))) => {}
                    Ok((role, Err(e))) => {
                        let e = e.context(format!("{role} failed while stopping"));
                        tracing::error!(error = format!("{e:#}"));
                        failure.get_or_insert(e);
                    }
                    Err(e) => {
                        failure.get_or_insert(anyhow!("a role panicked while stopping: {e}"));
                    }
                }
            }
        })
        .await;
        if drained.is_err() {
            failure.get_or_insert(anyhow!("roles did not stop within {STOP_GRACE:?}"));
        }
        failure.map_or(Ok(()), Err)
    }
}

/// SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failing_role_is_named_and_the_others_are_stopped() {
        let mut s = Supervisor::new();
        let mut stop = s.stopping();
        let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel();
        s.spawn("steady", async move {
            let _ = stop.wait_for(|s| *s).await;
            let _ = stopped_tx.send(());
            Ok(())
        });
        s.spawn("flaky", async { Err(anyhow!("lost the API")) });
        let err = s.run().await.unwrap_err();
        assert_eq!(format!("{err:#}"), "flaky failed: lost the API");
        assert!(stopped_rx.await.is_ok(), "the steady role was asked to stop and did");
    }

    #[tokio::test]
    async fn a_role_that_ends_on_its_own_is_a_failure() {
        let mut s = Supervisor::new();
        s.spawn("quitter", async { Ok(()) });
        assert_eq!(s.run().await.unwrap_err().to_string(), "quitter stopped on its own");
    }
}
