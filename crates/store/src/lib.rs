//! Storage for kubesvc: one trait with etcd's semantics and the backends behind it.
//!
//! The model is etcd's MVCC keyspace, so that an etcd backend maps one to one:
//! every committed transaction gets the next global *revision*; each key
//! remembers the revision that created it, the revision that last modified it
//! and how many times it was written; reads can be served at any revision that
//! has not been compacted; a watch replays every change from a revision on;
//! compaction forgets history below a revision but never a live value.
//!
//! Layout: [`Store`] is the trait, [`Txn`], [`Compare`], [`Op`] and the
//! other types its vocabulary; [`memory`] and [`redb`](mod@crate::redb) are
//! the backends; [`conformance`] is the test suite that every backend must pass.

pub mod conformance;
mod hub;
pub mod memory;
mod mvcc;
pub mod redb;
mod types;

pub use types::*;

use async_trait::async_trait;
use futures::stream::BoxStream;

/// A stream of committed changes, one batch per revision, in revision order.
///
/// A batch with no events is a progress notification: the store has reached
/// that revision, and nothing under the watched prefix changed in it.
pub type WatchStream = BoxStream<'static, Result<WatchBatch, Error>>;

/// A keyspace with etcd's semantics.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads keys, at the current revision or an older one that is not compacted.
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, Error>;

    /// Applies `ops` atomically if every compare holds; otherwise changes nothing.
    async fn txn(&self, txn: Txn) -> Result<TxnResponse, Error>;

    /// Streams changes to keys under `prefix`, starting with revision `start`
    /// (inclusive). `start == 0` means "changes after the current revision".
    /// Fails with [`Error::Compacted`] when `start` is at or below the compacted revision.
    async fn watch(&self, prefix: Vec<u8>, start: i64) -> Result<WatchStream, Error>;

    /// Forgets history at and below `revision`, keeping the value every key had at it.
    async fn compact(&self, revision: i64) -> Result<(), Error>;

    /// The current revision and the compacted revision.
    async fn revisions(&self) -> Result<Revisions, Error>;

    /// Reads one key at the current revision.
    async fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, Error> {
        let resp = self.range(RangeRequest::key(key)).await?;
        Ok(resp.kvs.into_iter().next())
    }
}

/// The end of the key range that holds every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff: the range is open-ended, which etcd spells as "\0".
    vec![0]
}
