//! The MVCC algorithms (transactions, reads at a revision, history, compaction),
//! written once over the few primitives each backend provides.
//!
//! A backend keeps, per key, its versions in revision order (a deletion is a
//! version with no value, a *tombstone*), a log of which keys each revision
//! changed, and the current and compacted revisions.

use bytes::Bytes;

use crate::{
    Error, Event, EventKind, KeyValue, Op, RangeRequest, RangeResponse, Revisions, Txn, TxnResponse, WatchBatch,
};

/// One version of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Version {
    pub rev: i64,
    pub create_rev: i64,
    pub version: i64,
    /// `None` for a deletion.
    pub value: Option<Bytes>,
}

impl Version {
    pub fn into_kv(self, key: &[u8]) -> Option<KeyValue> {
        let value = self.value?;
        Some(KeyValue {
            key: Bytes::copy_from_slice(key),
            value,
            create_revision: self.create_rev,
            mod_revision: self.rev,
            version: self.version,
        })
    }

    /// Binary form for backends that store bytes: flag, create_rev, version, value.
    pub fn encode(&self) -> Vec<u8> {
        let value = self.value.as_deref().unwrap_or_default();
        let mut out = Vec::with_capacity(17 + value.len());
        out.push(u8::from(self.value.is_some()));
        out.extend_from_slice(&self.create_rev.to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(value);
        out
    }

    pub fn decode(key: &[u8], rev: i64, bytes: &[u8]) -> Result<Version, Error> {
        let corrupt =
            |reason: &str| Error::Corrupt { key: String::from_utf8_lossy(key).into_owned(), reason: reason.into() };
        if bytes.len() < 17 {
            return Err(corrupt("short version record"));
        }
        let live = match bytes[0] {
            0 => false,
            1 => true,
            _ => return Err(corrupt("bad version flag")),
        };
        let i64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            i64::from_be_bytes(b)
        };
        Ok(Version {
            rev,
            create_rev: i64_at(1),
            version: i64_at(9),
            value: live.then(|| Bytes::copy_from_slice(&bytes[17..])),
        })
    }
}

/// Read access to a backend's versions.
pub(crate) trait ReadEngine {
    fn revisions(&self) -> Result<Revisions, Error>;
    /// The newest version of `key` at or below `rev` (tombstones included).
    fn version_at(&self, key: &[u8], rev: i64) -> Result<Option<Version>, Error>;
    /// Visits each key in `[start, end)` (`end == [0]`: no end) with its newest
    /// version at or below `rev`, in key order, until `visit` returns false.
    fn scan_at(
        &self,
        start: &[u8],
        end: &[u8],
        rev: i64,
        visit: &mut dyn FnMut(&[u8], Version) -> bool,
    ) -> Result<(), Error>;
    /// The keys revision `rev` changed, in the order the transaction wrote them.
    fn log_at(&self, rev: i64) -> Result<Vec<Vec<u8>>, Error>;
}

/// Write access to a backend's versions, inside one atomic backend transaction.
pub(crate) trait WriteEngine: ReadEngine {
    fn put_version(&mut self, key: &[u8], version: &Version) -> Result<(), Error>;
    fn put_log(&mut self, rev: i64, keys: &[&[u8]]) -> Result<(), Error>;
    fn set_revisions(&mut self, revs: Revisions) -> Result<(), Error>;
    /// Removes the versions of `key` with a revision below `rev`, and the one
    /// at `rev` too when `including` is set.
    fn remove_versions(&mut self, key: &[u8], rev: i64, including: bool) -> Result<(), Error>;
    /// Removes the change log of revisions `from..=to`.
    fn remove_log(&mut self, from: i64, to: i64) -> Result<(), Error>;
}

fn latest(engine: &dyn ReadEngine, key: &[u8]) -> Result<Option<KeyValue>, Error> {
    Ok(engine.version_at(key, i64::MAX)?.and_then(|v| v.into_kv(key)))
}

/// Applies `txn` if its compares hold. Returns the response and, when it
/// committed, the events to publish.
pub(crate) fn apply_txn(engine: &mut dyn WriteEngine, txn: &Txn) -> Result<(TxnResponse, Option<WatchBatch>), Error> {
    txn.validate()?;
    let revs = engine.revisions()?;
    let mut current = Vec::with_capacity(txn.compares.len());
    let mut ok = true;
    for cmp in &txn.compares {
        let kv = latest(engine, cmp.key())?;
        ok &= cmp.holds(kv.as_ref());
        current.push(kv);
    }
    if !ok {
        return Ok((TxnResponse::Failed { revision: revs.current, current }, None));
    }
    let rev = revs.current + 1;
    let mut prev = Vec::with_capacity(txn.ops.len());
    let mut events = Vec::with_capacity(txn.ops.len());
    let mut changed: Vec<&[u8]> = Vec::with_capacity(txn.ops.len());
    for op in &txn.ops {
        let key = op.key();
        let before = latest(engine, key)?;
        match op {
            Op::Put { value, .. } => {
                let v = Version {
                    rev,
                    create_rev: before.as_ref().map_or(rev, |kv| kv.create_revision),
                    version: before.as_ref().map_or(1, |kv| kv.version + 1),
                    value: Some(value.clone()),
                };
                engine.put_version(key, &v)?;
                let kv = v.into_kv(key).expect("a put has a value");
                events.push(Event { kind: EventKind::Put, kv, prev: before.clone() });
                changed.push(key);
            }
            Op::Delete { .. } => {
                if let Some(old) = &before {
                    let v = Version { rev, create_rev: old.create_revision, version: 0, value: None };
                    engine.put_version(key, &v)?;
                    events.push(Event { kind: EventKind::Delete, kv: tombstone_kv(key, rev), prev: before.clone() });
                    changed.push(key);
                }
            }
        }
        prev.push(before);
    }
    if changed.is_empty() {
        // As in etcd, a transaction that changed nothing (its deletes all missed) takes no revision.
        return Ok((TxnResponse::Committed { revision: revs.current, prev }, None));
    }
    engine.put_log(rev, &changed)?;
    engine.set_revisions(Revisions { current: rev, compacted: revs.compacted })?;
    Ok((TxnResponse::Committed { revision: rev, prev }, Some(WatchBatch { revision: rev, events })))
}

fn tombstone_kv(key: &[u8], rev: i64) -> KeyValue {
    KeyValue {
        key: Bytes::copy_from_slice(key),
        value: Bytes::new(),
        create_revision: 0,
        mod_revision: rev,
        version: 0,
    }
}

fn check_readable(revs: Revisions, rev: i64) -> Result<i64, Error> {
    if rev == 0 {
        return Ok(revs.current);
    }
    if rev > revs.current {
        return Err(Error::FutureRevision { requested: rev, current: revs.current });
    }
    if rev < revs.compacted {
        return Err(Error::Compacted { requested: rev, compacted: revs.compacted });
    }
    Ok(rev)
}

pub(crate) fn range(engine: &dyn ReadEngine, req: &RangeRequest) -> Result<RangeResponse, Error> {
    let revs = engine.revisions()?;
    let rev = check_readable(revs, req.revision)?;
    let mut resp = RangeResponse { revision: rev, ..Default::default() };
    if req.end.is_empty() {
        if let Some(kv) = engine.version_at(&req.start, rev)?.and_then(|v| v.into_kv(&req.start)) {
            resp.kvs.push(kv);
            resp.count = 1;
        }
        return Ok(resp);
    }
    if req.end != [0] && req.start.as_slice() >= req.end.as_slice() {
        return Ok(resp);
    }
    let limit = if req.limit == 0 { usize::MAX } else { req.limit };
    engine.scan_at(&req.start, &req.end, rev, &mut |key, v| {
        if v.value.is_some() {
            resp.count += 1;
            if resp.kvs.len() < limit {
                resp.kvs.extend(v.into_kv(key));
            } else {
                resp.more = true;
            }
        }
        true
    })?;
    Ok(resp)
}

/// The batches of revisions `from..=current` for keys under `prefix`, ending
/// with a progress batch for the current revision if it changed nothing there.
pub(crate) fn history(engine: &dyn ReadEngine, prefix: &[u8], from: i64) -> Result<(Vec<WatchBatch>, i64), Error> {
    let revs = engine.revisions()?;
    if from <= revs.compacted {
        return Err(Error::Compacted { requested: from, compacted: revs.compacted });
    }
    let mut batches = Vec::new();
    for rev in from..=revs.current {
        let mut events = Vec::new();
        for key in engine.log_at(rev)? {
            if !key.starts_with(prefix) {
                continue;
            }
            let Some(now) = engine.version_at(&key, rev)? else {
                continue;
            };
            let prev = engine.version_at(&key, rev - 1)?.and_then(|v| v.into_kv(&key));
            let event = match now.value {
                Some(_) => Event { kind: EventKind::Put, kv: now.into_kv(&key).expect("live"), prev },
                None => Event { kind: EventKind::Delete, kv: tombstone_kv(&key, rev), prev },
            };
            events.push(event);
        }
        if !events.is_empty() {
            batches.push(WatchBatch { revision: rev, events });
        }
    }
    if batches.last().is_none_or(|b| b.revision != revs.current) && revs.current >= from {
        batches.push(WatchBatch { revision: revs.current, events: Vec::new() });
    }
    Ok((batches, revs.current))
}

/// Forgets history at and below `rev`: log entries, superseded versions and
/// tombstones. The newest live version of every key at `rev` stays.
pub(crate) fn compact(engine: &mut dyn WriteEngine, rev: i64) -> Result<(), Error> {
    let revs = engine.revisions()?;
    if rev > revs.current {
        return Err(Error::FutureRevision { requested: rev, current: revs.current });
    }
    if rev <= revs.compacted {
        return Err(Error::Compacted { requested: rev, compacted: revs.compacted });
    }
    // Only keys written since the last compaction can have superseded versions.
    let mut touched: Vec<Vec<u8>> = Vec::new();
    for r in (revs.compacted + 1)..=rev {
        touched.extend(engine.log_at(r)?);
    }
    touched.sort_unstable();
    touched.dedup();
    for key in &touched {
        if let Some(keep) = engine.version_at(key, rev)? {
            engine.remove_versions(key, keep.rev, keep.value.is_none())?;
        }
    }
    engine.remove_log(revs.compacted + 1, rev)?;
    engine.set_revisions(Revisions { current: revs.current, compacted: rev })
}
