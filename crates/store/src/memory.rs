//! The in-memory backend: the MVCC model in ordered maps, for tests and
//! throwaway clusters. Nothing survives the process.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::hub::{HistorySource, Hub};
use crate::mvcc::{self, ReadEngine, Version, WriteEngine};
use crate::{Error, RangeRequest, RangeResponse, Revisions, Store, Txn, TxnResponse, WatchBatch, WatchStream};

#[derive(Default)]
struct State {
    revs: Revisions,
    /// Versions of each key, oldest first.
    keys: BTreeMap<Vec<u8>, Vec<Version>>,
    log: BTreeMap<i64, Vec<Vec<u8>>>,
}

/// A [`Store`] held in memory.
#[derive(Clone)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    hub: Hub,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        MemoryStore { state: Arc::default(), hub: Hub::new() }
    }
}

fn end_bound(end: &[u8]) -> Bound<&[u8]> {
    if end == [0] { Bound::Unbounded } else { Bound::Excluded(end) }
}

impl ReadEngine for State {
    fn revisions(&self) -> Result<Revisions, Error> {
        Ok(self.revs)
    }

    fn version_at(&self, key: &[u8], rev: i64) -> Result<Option<Version>, Error> {
        let Some(versions) = self.keys.get(key) else {
            return Ok(None);
        };
        let idx = versions.partition_point(|v| v.rev <= rev);
        Ok(idx.checked_sub(1).map(|i| versions[i].clone()))
    }

    fn scan_at(
        &self,
        start: &[u8],
        end: &[u8],
        rev: i64,
        visit: &mut dyn FnMut(&[u8], Version) -> bool,
    ) -> Result<(), Error> {
        if end != [0] && start >= end {
            return Ok(());
        }
        let range = self.keys.range::<[u8], _>((Bound::Included(start), end_bound(end)));
        for (key, versions) in range {
            let idx = versions.partition_point(|v| v.rev <= rev);
            if let Some(i) = idx.checked_sub(1)
                && !visit(key, versions[i].clone())
            {
                break;
            }
        }
        Ok(())
    }

    fn log_at(&self, rev: i64) -> Result<Vec<Vec<u8>>, Error> {
        Ok(self.log.get(&rev).cloned().unwrap_or_default())
    }
}

impl WriteEngine for State {
    fn put_version(&mut self, key: &[u8], version: &Version) -> Result<(), Error> {
        self.keys.entry(key.to_vec()).or_default().push(version.clone());
        Ok(())
    }

    fn put_log(&mut self, rev: i64, keys: &[&[u8]]) -> Result<(), Error> {
        self.log.insert(rev, keys.iter().map(|k| k.to_vec()).collect());
        Ok(())
    }

    fn set_revisions(&mut self, revs: Revisions) -> Result<(), Error> {
        self.revs = revs;
        Ok(())
    }

    fn remove_versions(&mut self, key: &[u8], rev: i64, including: bool) -> Result<(), Error> {
        if let Some(versions) = self.keys.get_mut(key) {
            versions.retain(|v| if including { v.rev > rev } else { v.rev >= rev });
            if versions.is_empty() {
                self.keys.remove(key);
            }
        }
        Ok(())
    }

    fn remove_log(&mut self, from: i64, to: i64) -> Result<(), Error> {
        let keep = self.log.split_off(&(to + 1));
        let dropped = std::mem::replace(&mut self.log, keep);
        debug_assert!(dropped.keys().all(|r| *r >= from));
        Ok(())
    }
}

impl HistorySource for MemoryStore {
    fn history(&self, prefix: &[u8], from: i64) -> Result<(Vec<WatchBatch>, i64), Error> {
        mvcc::history(&*self.state.lock(), prefix, from)
    }

    fn current_revision(&self) -> Result<i64, Error> {
        Ok(self.state.lock().revs.current)
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, Error> {
        mvcc::range(&*self.state.lock(), &req)
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse, Error> {
        let mut state = self.state.lock();
        let (resp, batch) = mvcc::apply_txn(&mut *state, &txn)?;
        // Publish under the lock, so batches go out in revision order.
        if let Some(batch) = batch {
            self.hub.publish(batch);
        }
        Ok(resp)
    }

    async fn watch(&self, prefix: Vec<u8>, start: i64) -> Result<WatchStream, Error> {
        self.hub.watch(Arc::new(self.clone()), prefix, start).await
    }

    async fn compact(&self, revision: i64) -> Result<(), Error> {
        mvcc::compact(&mut *self.state.lock(), revision)
    }

    async fn revisions(&self) -> Result<Revisions, Error> {
        Ok(self.state.lock().revs)
    }
}
