//! The worker loop under every controller: keys from a [`WorkQueue`] handed
//! to a sync function on a few tasks, failures (and panics) retried with the
//! queue's back-off, until a stop signal shuts the queue down.

use std::fmt::{Debug, Display};
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;

use futures::FutureExt;
use tokio::sync::watch;

use crate::queue::WorkQueue;

/// Runs `sync` for each key of `queue` on `workers` tasks until `stop` turns true.
pub fn run_workers<K, F, Fut, E>(queue: Arc<WorkQueue<K>>, workers: usize, stop: watch::Receiver<bool>, sync: F)
where
    K: Clone + Eq + Hash + Send + Sync + Debug + 'static,
    F: Fn(K) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: Display,
{
    for _ in 0..workers.max(1) {
        let (q, sync) = (queue.clone(), sync.clone());
        tokio::spawn(async move {
            while let Some(key) = q.next().await {
                // A panic in one sync (building its future or running it) is that key's
                // failure, not the worker's end.
                let result = std::panic::AssertUnwindSafe(async { sync(key.clone()).await }).catch_unwind().await;
                match result {
                    Ok(Ok(())) => q.forget(&key),
                    Ok(Err(e)) => {
                        tracing::debug!(key = ?key, error = %e, "sync failed; will retry");
                        q.retry(key.clone());
                    }
                    Err(_) => {
                        tracing::error!(key = ?key, "sync panicked; will retry");
                        q.retry(key.clone());
                    }
                }
                q.done(&key);
            }
        });
    }
    let mut stop = stop;
    tokio::spawn(async move {
        let _ = stop.wait_for(|s| *s).await;
        queue.shutdown();
    });
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn failures_and_panics_are_retried_until_they_succeed() {
        let q = WorkQueue::new();
        let (stop_tx, stop) = watch::channel(false);
        let attempts = Arc::new(AtomicUsize::new(0));
        let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel();
        let a = attempts.clone();
        run_workers(q.clone(), 2, stop, move |key: &'static str| {
            let (a, done_tx) = (a.clone(), done_tx.clone());
            async move {
                match a.fetch_add(1, Ordering::SeqCst) {
                    0 => Err("first try fails"),
                    1 => panic!("second try panics"),
                    _ => {
                        let _ = done_tx.send(key);
                        Ok(())
                    }
                }
            }
        });
        q.add("k");
        let got = tokio::time::timeout(Duration::from_secs(10), done.recv()).await.unwrap();
        assert_eq!(got, Some("k"));
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
        stop_tx.send_replace(true);
        // Shut down: adding does nothing, and no worker runs again.
        tokio::time::sleep(Duration::from_millis(20)).await;
        q.add("k");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
    }
}
