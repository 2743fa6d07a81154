//! Watch fan-out for the in-process backends: committed batches are broadcast
//! live, and a watcher that starts in the past or falls behind catches up from
//! the backend's history, so no watcher sees a gap or a duplicate.

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::{Error, WatchBatch, WatchStream};

/// Reads history for watchers that start in the past or fall behind.
pub(crate) trait HistorySource: Send + Sync + 'static {
    /// Batches for revisions `from..=current` under `prefix`, and `current`.
    fn history(&self, prefix: &[u8], from: i64) -> Result<(Vec<WatchBatch>, i64), Error>;
    fn current_revision(&self) -> Result<i64, Error>;
}

#[derive(Clone)]
pub(crate) struct Hub {
    tx: broadcast::Sender<Arc<WatchBatch>>,
}

/// How many revisions a live watcher may fall behind before it re-reads history.
const LIVE_BUFFER: usize = 4096;
/// How many batches may wait for a slow consumer.
const OUT_BUFFER: usize = 1024;

impl Hub {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(LIVE_BUFFER);
        Hub { tx }
    }

    /// Publishes a committed batch. Must be called in revision order.
    pub fn publish(&self, batch: WatchBatch) {
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(Arc::new(batch));
    }

    pub async fn watch(
        &self,
        source: Arc<dyn HistorySource>,
        prefix: Vec<u8>,
        start: i64,
    ) -> Result<WatchStream, Error> {
        // Subscribe before reading history, so that nothing committed in between is missed.
        let mut live = self.tx.subscribe();
        let start = if start == 0 { source.current_revision()? + 1 } else { start };
        // Fail fast on a compacted start, before handing out a stream.
        let (mut pending, upto) = read_history(&source, &prefix, start).await?;
        // A start beyond the current revision waits for it.
        let mut next = start.max(upto + 1);
        let (out, rx) = mpsc::channel::<Result<WatchBatch, Error>>(OUT_BUFFER);
        tokio::spawn(async move {
            loop {
                for batch in pending.drain(..) {
                    if out.send(Ok(batch)).await.is_err() {
                        return;
                    }
                }
                // Live: deliver each revision once, in order; on lag or gap, re-read history.
                loop {
                    let batch = tokio::select! {
                        r = live.recv() => r,
                        _ = out.closed() => return,
                    };
                    match batch {
                        Ok(b) if b.revision < next => continue,
                        Ok(b) if b.revision == next => {
                            next += 1;
                            let events = b.events.iter().filter(|e| e.kv.key.starts_with(&prefix)).cloned().collect();
                            if out.send(Ok(WatchBatch { revision: b.revision, events })).await.is_err() {
                                return;
                            }
                        }
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
                match read_history(&source, &prefix, next).await {
                    Ok((batches, upto)) => {
                        pending = batches;
                        next = next.max(upto + 1);
                    }
                    Err(e) => {
                        let _ = out.send(Err(e)).await;
                        return;
                    }
                }
            }
        });
        Ok(ReceiverStream::new(rx).boxed())
    }
}

/// Reads history off the async runtime: a backend may touch the disk.
async fn read_history(
    source: &Arc<dyn HistorySource>,
    prefix: &[u8],
    from: i64,
) -> Result<(Vec<WatchBatch>, i64), Error> {
    let (source, prefix) = (source.clone(), prefix.to_vec());
    tokio::task::spawn_blocking(move || source.history(&prefix, from))
        .await
        .map_err(|e| Error::Backend(format!("history reader failed: {e}")))?
}
