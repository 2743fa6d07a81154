//! A keyed work queue, as client-go's: a key waits at most once; a key added
//! while it is being worked on is worked on again afterwards (never by two
//! workers at once); failures come back after a growing delay.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

struct State<K> {
    queue: VecDeque<K>,
    /// Keys waiting in `queue`.
    dirty: HashSet<K>,
    /// Keys a worker holds now.
    processing: HashSet<K>,
    /// Consecutive failures per key, for the retry delay.
    failures: HashMap<K, u32>,
    closed: bool,
}

pub struct WorkQueue<K> {
    state: Mutex<State<K>>,
    notify: Notify,
}

/// The first retry delay; it doubles per failure up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

impl<K: Clone + Eq + Hash + Send + Sync + 'static> WorkQueue<K> {
    pub fn new() -> Arc<Self> {
        Arc::new(WorkQueue {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                failures: HashMap::new(),
                closed: false,
            }),
            notify: Notify::new(),
        })
    }

    pub fn add(&self, key: K) {
        let mut st = self.state.lock();
        if st.closed || !st.dirty.insert(key.clone()) {
            return;
        }
        // A key being worked on is queued when its worker is done.
        if !st.processing.contains(&key) {
            st.queue.push_back(key);
            drop(st);
            self.notify.notify_one();
        }
    }

    /// Adds `key` after `delay`.
    pub fn add_after(self: &Arc<Self>, key: K, delay: Duration) {
        let q = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            q.add(key);
        });
    }

    /// The next key to work on; `None` once the queue is shut down.
    pub async fn next(&self) -> Option<K> {
        loop {
            let notified = self.notify.notified();
            {
                let mut st = self.state.lock();
                if let Some(key) = st.queue.pop_front() {
                    st.dirty.remove(&key);
                    st.processing.insert(key.clone());
                    // Others may be waiting for more.
                    if !st.queue.is_empty() {
                        self.notify.notify_one();
                    }
                    return Some(key);
                }
                if st.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Ends work on `key`; if it changed meanwhile, it is queued again.
    pub fn done(&self, key: &K) {
        let mut st = self.state.lock();
        st.processing.remove(key);
        if st.dirty.contains(key) {
            st.queue.push_back(key.clone());
            drop(st);
            self.notify.notify_one();
        }
    }

    /// Work on `key` succeeded: its retry delay starts over.
    pub fn forget(&self, key: &K) {
        self.state.lock().failures.remove(key);
    }

    /// Work on `key` failed: it comes back after a delay that grows with each failure.
    pub fn retry(self: &Arc<Self>, key: K) {
        let n = {
            let mut st = self.state.lock();
            let n = st.failures.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        };
        let delay = BASE_BACKOFF.saturating_mul(1 << n.min(20)).min(MAX_BACKOFF);
        self.add_after(key, delay);
    }

    pub fn len(&self) -> usize {
        self.state.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops handing out keys; workers see `None`.
    pub fn shutdown(&self) {
        self.state.lock().closed = true;
        self.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_waits_once_and_is_never_worked_twice_at_once() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        let k = q.next().await.unwrap();
        assert_eq!(k, "a");
        // Changed while being worked on: not handed out until done.
        q.add("a");
        assert_eq!(q.next().await, Some("b"));
        assert!(q.is_empty());
        q.done(&"a");
        assert_eq!(q.next().await, Some("a"));
        q.done(&"a");
        q.done(&"b");
        q.shutdown();
        assert_eq!(q.next().await, None);
    }

    #[tokio::test]
    async fn failures_come_back() {
        let q = WorkQueue::new();
        q.add(1);
        let k = q.next().await.unwrap();
        q.done(&k);
        q.retry(k);
        assert_eq!(tokio::time::timeout(Duration::from_secs(5), q.next()).await.unwrap(), Some(1));
    }
}
