//! Runs a process's roles side by side until a signal asks them to stop or
//! one of them ends: a role that fails, or ends before it was asked to, makes
//! the whole process fail with that role named, after the others stopped.

use std::future::Future;
use std::time::Duration;

use std::panic::AssertUnwindSafe;

use anyhow::anyhow;
use futures::FutureExt;
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
    /// A panic in it is its failure.
    pub fn spawn(&mut self, role: &'static str, run: impl Future<Output = anyhow::Result<()>> + Send + 'static) {
        self.roles.spawn(async move {
            let result = AssertUnwindSafe(run).catch_unwind().await.unwrap_or_else(|_| Err(anyhow!("panicked")));
            (role, result)
        });
    }

    /// Waits for SIGINT/SIGTERM or the first role to end, then stops every
    /// role; the first failure (or early end) is the result. A second signal
    /// while stopping, or roles slower than [`STOP_GRACE`], end them at once.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let mut failure: Option<anyhow::Error> = None;
        tokio::select! {
            _ = shutdown_signal() => tracing::info!("shutting down"),
            Some(ended) = self.roles.join_next() => {
                failure = Some(match ended {
                    Ok((role, Ok(()))) => anyhow!("{role} stopped on its own"),
                    Ok((role, Err(e))) => e.context(format!("{role} failed")),
                    Err(e) => anyhow!("a role was cancelled: {e}"),
                });
            }
        }
        self.stop.send_replace(true);
        let roles = &mut self.roles;
        let mut stopping_failure: Option<anyhow::Error> = None;
        let drain = async {
            while let Some(ended) = roles.join_next().await {
                if let Ok((role, Err(e))) = ended {
                    let e = e.context(format!("{role} failed while stopping"));
                    tracing::error!(error = format!("{e:#}"));
                    stopping_failure.get_or_insert(e);
                }
            }
        };
        let cut_short = tokio::select! {
            _ = drain => None,
            _ = tokio::time::sleep(STOP_GRACE) => Some(anyhow!("roles did not stop within {STOP_GRACE:?}")),
            _ = shutdown_signal() => Some(anyhow!("interrupted while stopping")),
        };
        if cut_short.is_some() {
            self.roles.abort_all();
        }
        failure.or(stopping_failure).or(cut_short).map_or(Ok(()), Err)
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
    async fn a_panicking_role_is_named_and_the_others_still_stop() {
        let mut s = Supervisor::new();
        let mut stop = s.stopping();
        let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel();
        s.spawn("steady", async move {
            let _ = stop.wait_for(|s| *s).await;
            let _ = stopped_tx.send(());
            Ok(())
        });
        s.spawn("broken", async { panic!("a bug") });
        assert_eq!(format!("{:#}", s.run().await.unwrap_err()), "broken failed: panicked");
        assert!(stopped_rx.await.is_ok());
    }

    #[tokio::test]
    async fn a_role_that_ends_on_its_own_is_a_failure() {
        let mut s = Supervisor::new();
        s.spawn("quitter", async { Ok(()) });
        assert_eq!(s.run().await.unwrap_err().to_string(), "quitter stopped on its own");
    }
}
