//! Following a key prefix of the store: a snapshot, then its watch, and a
//! fresh snapshot whenever the watch is lost (compaction, a slow consumer).
//! The watch cache and the allocation mirror both keep state this way.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use kubesvc_store::{Error, Store, WatchBatch};
use tokio::sync::watch;

/// State rebuilt from a snapshot of a prefix and kept by its changes.
#[async_trait]
pub trait Follower: Send + Sync + 'static {
    /// Replaces the state with a snapshot; returns the revision it was read at.
    async fn load(&self, store: &dyn Store) -> Result<i64, Error>;
    /// Applies one batch of changes.
    fn apply(&self, batch: WatchBatch);
}

/// Follows `prefix` from just after `rev` until `stop`, reloading after a lost watch.
pub async fn follow(
    f: Arc<dyn Follower>,
    store: Arc<dyn Store>,
    prefix: &[u8],
    mut rev: i64,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match store.watch(prefix.to_vec(), rev + 1).await {
            Ok(mut stream) => loop {
                tokio::select! {
                    batch = stream.next() => match batch {
                        Some(Ok(b)) => f.apply(b),
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, prefix = %String::from_utf8_lossy(prefix), "lost the store watch; reloading");
                            break;
                        }
                        None => return,
                    },
                    _ = stop.changed() => return,
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, prefix = %String::from_utf8_lossy(prefix), "could not watch the store; reloading")
            }
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = stop.changed() => return,
            }
            match f.load(&*store).await {
                Ok(r) => {
                    rev = r;
                    break;
                }
                Err(e) => tracing::warn!(error = %e, "reloading from the store failed; retrying"),
            }
        }
    }
}
