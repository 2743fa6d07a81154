//! The store's vocabulary: key-values, ranges, transactions, watch events, errors.

use bytes::Bytes;

/// A key with its value and etcd's bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Bytes,
    pub value: Bytes,
    /// The revision of the write that created this key (since it last did not exist).
    pub create_revision: i64,
    /// The revision of the last write to this key.
    pub mod_revision: i64,
    /// How many times the key was written since it was created (1 on create).
    pub version: i64,
}

/// A read of one key or a range of keys.
#[derive(Clone, Debug, Default)]
pub struct RangeRequest {
    pub start: Vec<u8>,
    /// Exclusive end; empty means the single key `start`; `[0]` means no end.
    pub end: Vec<u8>,
    /// The revision to read at; 0 means the current one.
    pub revision: i64,
    /// At most this many keys; 0 means no limit.
    pub limit: usize,
}

impl RangeRequest {
    pub fn key(key: &[u8]) -> Self {
        RangeRequest { start: key.to_vec(), ..Default::default() }
    }

    pub fn prefix(prefix: &[u8]) -> Self {
        RangeRequest { start: prefix.to_vec(), end: crate::prefix_end(prefix), ..Default::default() }
    }

    /// Whether `key` falls in this request's range.
    pub fn contains(&self, key: &[u8]) -> bool {
        if self.end.is_empty() {
            return key == self.start.as_slice();
        }
        key >= self.start.as_slice() && (self.end == [0] || key < self.end.as_slice())
    }
}

#[derive(Clone, Debug, Default)]
pub struct RangeResponse {
    pub kvs: Vec<KeyValue>,
    /// Whether keys beyond `limit` exist in the range.
    pub more: bool,
    /// How many keys the whole range holds at that revision.
    pub count: usize,
    /// The revision the read was served at.
    pub revision: i64,
}

/// A condition a transaction checks before it writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compare {
    /// The key's mod revision equals this; 0 means the key does not exist.
    ModRevision(Vec<u8>, i64),
}

impl Compare {
    pub fn key(&self) -> &[u8] {
        match self {
            Compare::ModRevision(k, _) => k,
        }
    }

    pub(crate) fn holds(&self, current: Option<&KeyValue>) -> bool {
        match self {
            Compare::ModRevision(_, want) => current.map_or(0, |kv| kv.mod_revision) == *want,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put {
        key: Vec<u8>,
        value: Bytes,
    },
    /// Deleting a key that does not exist is not an error and changes nothing.
    Delete {
        key: Vec<u8>,
    },
}

impl Op {
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

/// Writes applied together, all or nothing, under one new revision.
#[derive(Clone, Debug, Default)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub ops: Vec<Op>,
}

impl Txn {
    /// Creates `key`, failing if it exists.
    pub fn create(key: impl Into<Vec<u8>>, value: impl Into<Bytes>) -> Self {
        let key = key.into();
        Txn { compares: vec![Compare::ModRevision(key.clone(), 0)], ops: vec![Op::Put { key, value: value.into() }] }
    }

    /// Replaces `key` if it was last modified at `mod_revision`.
    pub fn update(key: impl Into<Vec<u8>>, mod_revision: i64, value: impl Into<Bytes>) -> Self {
        let key = key.into();
        Txn {
            compares: vec![Compare::ModRevision(key.clone(), mod_revision)],
            ops: vec![Op::Put { key, value: value.into() }],
        }
    }

    /// Deletes `key` if it was last modified at `mod_revision`.
    pub fn delete(key: impl Into<Vec<u8>>, mod_revision: i64) -> Self {
        let key = key.into();
        Txn { compares: vec![Compare::ModRevision(key.clone(), mod_revision)], ops: vec![Op::Delete { key }] }
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        let mut keys: Vec<&[u8]> = self.ops.iter().map(Op::key).collect();
        keys.sort_unstable();
        if keys.windows(2).any(|w| w[0] == w[1]) {
            return Err(Error::InvalidTxn("a key is written twice in one transaction".into()));
        }
        if self.ops.iter().any(|op| op.key().is_empty()) || self.compares.iter().any(|c| c.key().is_empty()) {
            return Err(Error::InvalidTxn("empty key".into()));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnResponse {
    /// Every compare held; the writes were applied at `revision`. `prev` holds,
    /// per op, what the key held before.
    Committed { revision: i64, prev: Vec<Option<KeyValue>> },
    /// A compare failed; nothing was written. `current` holds, per compare,
    /// what its key holds now, read at `revision`.
    Failed { revision: i64, current: Vec<Option<KeyValue>> },
}

impl TxnResponse {
    pub fn committed(&self) -> bool {
        matches!(self, TxnResponse::Committed { .. })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change to one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For a put, the new key-value; for a delete, the key with `mod_revision`
    /// set to the deleting revision and an empty value.
    pub kv: KeyValue,
    /// What the key held before this change.
    pub prev: Option<KeyValue>,
}

/// The events of one revision under a watched prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchBatch {
    pub revision: i64,
    pub events: Vec<Event>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Revisions {
    pub current: i64,
    pub compacted: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("required revision {requested} has been compacted (compacted revision {compacted})")]
    Compacted { requested: i64, compacted: i64 },
    #[error("required revision {requested} is a future revision (current revision {current})")]
    FutureRevision { requested: i64, current: i64 },
    #[error("invalid transaction: {0}")]
    InvalidTxn(String),
    #[error("storage backend: {0}")]
    Backend(String),
    #[error("the store is closed")]
    Closed,
    #[error("corrupt record under key {key:?}: {reason}")]
    Corrupt { key: String, reason: String },
}
