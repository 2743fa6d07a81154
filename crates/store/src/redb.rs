//! The embedded, durable backend on redb.
//!
//! Tables: `versions` maps (key, revision) to a version record, `log` maps a
//! revision to the keys it changed, `meta` holds the current and compacted
//! revisions. One writer thread applies transactions in groups: everything
//! queued while the previous group was being fsynced goes into the next redb
//! transaction, each store transaction still getting its own revision, and
//! nobody is answered before the group is durable. Reads run on redb snapshots.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

use crate::hub::{HistorySource, Hub};
use crate::mvcc::{self, ReadEngine, Version, WriteEngine};
use crate::{Error, RangeRequest, RangeResponse, Revisions, Store, Txn, TxnResponse, WatchBatch, WatchStream};

const VERSIONS: TableDefinition<(&[u8], u64), &[u8]> = TableDefinition::new("versions");
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Most store transactions applied in one redb transaction.
const MAX_GROUP: usize = 512;

fn backend<E: std::fmt::Display>(e: E) -> Error {
    Error::Backend(e.to_string())
}

enum Request {
    Txn(Txn, oneshot::Sender<Result<TxnResponse, Error>>),
    Compact(i64, oneshot::Sender<Result<(), Error>>),
}

struct Shared {
    db: Database,
    current: AtomicI64,
    compacted: AtomicI64,
    hub: Hub,
}

/// A [`Store`] in a redb file: every acknowledged write is on disk.
#[derive(Clone)]
pub struct RedbStore {
    shared: Arc<Shared>,
    writer: mpsc::Sender<Request>,
    thread: Arc<parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl RedbStore {
    /// Opens (or creates) the database at `path` and starts its writer thread.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let db = Database::create(path).map_err(backend)?;
        {
            let w = db.begin_write().map_err(backend)?;
            w.open_table(VERSIONS).map_err(backend)?;
            w.open_table(LOG).map_err(backend)?;
            w.open_table(META).map_err(backend)?;
            w.commit().map_err(backend)?;
        }
        let revs = {
            let r = db.begin_read().map_err(backend)?;
            let meta = r.open_table(META).map_err(backend)?;
            read_revisions(&meta)?
        };
        let shared = Arc::new(Shared {
            db,
            current: AtomicI64::new(revs.current),
            compacted: AtomicI64::new(revs.compacted),
            hub: Hub::new(),
        });
        let (tx, rx) = mpsc::channel(4 * MAX_GROUP);
        let writer_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("redb-writer".into())
            .spawn(move || writer_loop(writer_shared, rx))
            .map_err(backend)?;
        Ok(RedbStore { shared, writer: tx, thread: Arc::new(parking_lot::Mutex::new(Some(thread))) })
    }

    /// Closes the database file, waiting for the writer to finish what it was
    /// given. Every other clone must be gone (or this waits for them).
    pub fn close(self) {
        let RedbStore { shared, writer, thread } = self;
        drop(writer);
        drop(shared);
        let handle = thread.lock().take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    async fn request<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T, Error>>) -> Request) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.writer.send(make(tx)).await.map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn ReadEngine) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || read_snapshot(&shared.db, f))
            .await
            .map_err(|e| Error::Backend(format!("reader failed: {e}")))?
    }
}

fn read_snapshot<T>(db: &Database, f: impl FnOnce(&dyn ReadEngine) -> Result<T, Error>) -> Result<T, Error> {
    let r = db.begin_read().map_err(backend)?;
    let tables = Tables {
        versions: r.open_table(VERSIONS).map_err(backend)?,
        log: r.open_table(LOG).map_err(backend)?,
        meta: r.open_table(META).map_err(backend)?,
    };
    f(&tables)
}

fn read_revisions(meta: &impl ReadableTable<&'static str, u64>) -> Result<Revisions, Error> {
    let get = |k: &str| -> Result<i64, Error> { Ok(meta.get(k).map_err(backend)?.map_or(0, |v| v.value() as i64)) };
    Ok(Revisions { current: get("current")?, compacted: get("compacted")? })
}

fn writer_loop(shared: Arc<Shared>, mut rx: mpsc::Receiver<Request>) {
    while let Some(first) = rx.blocking_recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        apply_group(&shared, group);
    }
}

enum Outcome {
    Txn(oneshot::Sender<Result<TxnResponse, Error>>, Result<TxnResponse, Error>),
    Compact(oneshot::Sender<Result<(), Error>>, Result<(), Error>),
}

fn apply_group(shared: &Shared, group: Vec<Request>) {
    let mut outcomes = Vec::with_capacity(group.len());
    let mut batches = Vec::new();
    let mut requests = group.into_iter();
    let result = (|| -> Result<Revisions, Error> {
        let mut w = shared.db.begin_write().map_err(backend)?;
        w.set_durability(Durability::Immediate).map_err(backend)?;
        let revs = {
            let mut tables = Tables {
                versions: w.open_table(VERSIONS).map_err(backend)?,
                log: w.open_table(LOG).map_err(backend)?,
                meta: w.open_table(META).map_err(backend)?,
            };
            for req in requests.by_ref() {
                match req {
                    Request::Txn(txn, reply) => {
                        // A malformed transaction fails alone, before it writes anything.
                        if let Err(e) = txn.validate() {
                            outcomes.push(Outcome::Txn(reply, Err(e)));
                            continue;
                        }
                        // Any other error may come after partial writes: it fails the whole group.
                        match mvcc::apply_txn(&mut tables, &txn) {
                            Ok((resp, batch)) => {
                                batches.extend(batch);
                                outcomes.push(Outcome::Txn(reply, Ok(resp)));
                            }
                            Err(e) => {
                                outcomes.push(Outcome::Txn(reply, Err(Error::Backend(e.to_string()))));
                                return Err(e);
                            }
                        }
                    }
                    Request::Compact(rev, reply) => {
                        let revs = tables.revisions()?;
                        // Refusals come before any write; other errors fail the group.
                        if rev > revs.current || rev <= revs.compacted {
                            outcomes.push(Outcome::Compact(reply, mvcc::compact(&mut tables, rev)));
                            continue;
                        }
                        match mvcc::compact(&mut tables, rev) {
                            Ok(()) => outcomes.push(Outcome::Compact(reply, Ok(()))),
                            Err(e) => {
                                outcomes.push(Outcome::Compact(reply, Err(Error::Backend(e.to_string()))));
                                return Err(e);
                            }
                        }
                    }
                }
            }
            tables.revisions()?
        };
        w.commit().map_err(backend)?;
        Ok(revs)
    })();
    match result {
        Ok(revs) => {
            shared.current.store(revs.current, Ordering::Release);
            shared.compacted.store(revs.compacted, Ordering::Release);
            for batch in batches {
                shared.hub.publish(batch);
            }
            for o in outcomes {
                match o {
                    Outcome::Txn(reply, r) => drop(reply.send(r)),
                    Outcome::Compact(reply, r) => drop(reply.send(r)),
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "redb write group failed; nothing in it was written");
            let fail = || Error::Backend(format!("write group failed: {e}"));
            for o in outcomes {
                match o {
                    Outcome::Txn(reply, _) => drop(reply.send(Err(fail()))),
                    Outcome::Compact(reply, _) => drop(reply.send(Err(fail()))),
                }
            }
            for req in requests {
                match req {
                    Request::Txn(_, reply) => drop(reply.send(Err(fail()))),
                    Request::Compact(_, reply) => drop(reply.send(Err(fail()))),
                }
            }
        }
    }
}

/// The three tables of one redb transaction, read-only or writable.
struct Tables<V, L, M> {
    versions: V,
    log: L,
    meta: M,
}

fn encode_keys(keys: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for k in keys {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k);
    }
    out
}

fn decode_keys(mut bytes: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
    let mut keys = Vec::new();
    while !bytes.is_empty() {
        let corrupt = || Error::Corrupt { key: "log".into(), reason: "truncated key list".into() };
        let (len, rest) = bytes.split_first_chunk::<4>().ok_or_else(corrupt)?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return Err(corrupt());
        }
        keys.push(rest[..len].to_vec());
        bytes = &rest[len..];
    }
    Ok(keys)
}

impl<V, L, M> ReadEngine for Tables<V, L, M>
where
    V: ReadableTable<(&'static [u8], u64), &'static [u8]>,
    L: ReadableTable<u64, &'static [u8]>,
    M: ReadableTable<&'static str, u64>,
{
    fn revisions(&self) -> Result<Revisions, Error> {
        read_revisions(&self.meta)
    }

    fn version_at(&self, key: &[u8], rev: i64) -> Result<Option<Version>, Error> {
        let hi = rev.max(0) as u64;
        let mut range = self.versions.range((key, 0u64)..=(key, hi)).map_err(backend)?;
        match range.next_back() {
            None => Ok(None),
            Some(entry) => {
                let (k, v) = entry.map_err(backend)?;
                Ok(Some(Version::decode(key, k.value().1 as i64, v.value())?))
            }
        }
    }

    fn scan_at(
        &self,
        start: &[u8],
        end: &[u8],
        rev: i64,
        visit: &mut dyn FnMut(&[u8], Version) -> bool,
    ) -> Result<(), Error> {
        let lo = Bound::Included((start, 0u64));
        let hi = if end == [0] { Bound::Unbounded } else { Bound::Excluded((end, 0u64)) };
        let range = self.versions.range::<(&[u8], u64)>((lo, hi)).map_err(backend)?;
        // Versions come grouped by key, oldest first: remember the newest one at or below `rev`.
        let mut pending: Option<(Vec<u8>, Version)> = None;
        let mut current_key: Vec<u8> = Vec::new();
        for entry in range {
            let (k, v) = entry.map_err(backend)?;
            let (key, r) = k.value();
            if key != current_key.as_slice() {
                if let Some((pk, pv)) = pending.take()
                    && !visit(&pk, pv)
                {
                    return Ok(());
                }
                current_key = key.to_vec();
            }
            if (r as i64) <= rev {
                pending = Some((key.to_vec(), Version::decode(key, r as i64, v.value())?));
            }
        }
        if let Some((pk, pv)) = pending {
            visit(&pk, pv);
        }
        Ok(())
    }

    fn log_at(&self, rev: i64) -> Result<Vec<Vec<u8>>, Error> {
        match self.log.get(rev.max(0) as u64).map_err(backend)? {
            Some(v) => decode_keys(v.value()),
            None => Ok(Vec::new()),
        }
    }
}

type WriteTables<'t> = Tables<
    redb::Table<'t, (&'static [u8], u64), &'static [u8]>,
    redb::Table<'t, u64, &'static [u8]>,
    redb::Table<'t, &'static str, u64>,
>;

impl WriteEngine for WriteTables<'_> {
    fn put_version(&mut self, key: &[u8], version: &Version) -> Result<(), Error> {
        self.versions.insert((key, version.rev as u64), version.encode().as_slice()).map_err(backend)?;
        Ok(())
    }

    fn put_log(&mut self, rev: i64, keys: &[&[u8]]) -> Result<(), Error> {
        self.log.insert(rev as u64, encode_keys(keys).as_slice()).map_err(backend)?;
        Ok(())
    }

    fn set_revisions(&mut self, revs: Revisions) -> Result<(), Error> {
        self.meta.insert("current", revs.current as u64).map_err(backend)?;
        self.meta.insert("compacted", revs.compacted as u64).map_err(backend)?;
        Ok(())
    }

    fn remove_versions(&mut self, key: &[u8], rev: i64, including: bool) -> Result<(), Error> {
        let hi = if including { Bound::Included((key, rev as u64)) } else { Bound::Excluded((key, rev as u64)) };
        let revs: Vec<u64> = self
            .versions
            .range::<(&[u8], u64)>((Bound::Included((key, 0u64)), hi))
            .map_err(backend)?
            .map(|e| e.map(|(k, _)| k.value().1))
            .collect::<Result<_, _>>()
            .map_err(backend)?;
        for r in revs {
            self.versions.remove((key, r)).map_err(backend)?;
        }
        Ok(())
    }

    fn remove_log(&mut self, from: i64, to: i64) -> Result<(), Error> {
        self.log.retain_in(from.max(0) as u64..=to.max(0) as u64, |_, _| false).map_err(backend)?;
        Ok(())
    }
}

// Watchers hold only the shared state, not the writer's channel: the writer
// stops when the last store handle goes, whatever watches are still open.
impl HistorySource for Shared {
    fn history(&self, prefix: &[u8], from: i64) -> Result<(Vec<WatchBatch>, i64), Error> {
        read_snapshot(&self.db, |e| mvcc::history(e, prefix, from))
    }

    fn current_revision(&self) -> Result<i64, Error> {
        Ok(self.current.load(Ordering::Acquire))
    }
}

#[async_trait]
impl Store for RedbStore {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, Error> {
        self.read(move |e| mvcc::range(e, &req)).await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse, Error> {
        self.request(|reply| Request::Txn(txn, reply)).await
    }

    async fn watch(&self, prefix: Vec<u8>, start: i64) -> Result<WatchStream, Error> {
        self.shared.hub.clone().watch(self.shared.clone(), prefix, start).await
    }

    async fn compact(&self, revision: i64) -> Result<(), Error> {
        self.request(|reply| Request::Compact(revision, reply)).await
    }

    async fn revisions(&self) -> Result<Revisions, Error> {
        Ok(Revisions {
            current: self.shared.current.load(Ordering::Acquire),
            compacted: self.shared.compacted.load(Ordering::Acquire),
        })
    }
}
