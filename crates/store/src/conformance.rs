//! The conformance suite every [`Store`] backend must pass.
//!
//! Each case takes a fresh, empty store. Backends instantiate the whole suite
//! with [`conformance_tests!`](crate::conformance_tests), one test per case;
//! durable backends also run [`restart_keeps_everything`] and [`soak_steps`] with a reopen.
#![allow(clippy::unwrap_used)] // A test suite: a failed step is a failed test.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::{Compare, Error, EventKind, KeyValue, Op, RangeRequest, Store, Txn, TxnResponse, WatchBatch, WatchStream};

/// Instantiates every conformance case for a backend: `conformance_tests!(|| async { MyStore::new() });`
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@cases $make;
            create_get_update_delete, failed_compare_changes_nothing, multi_key_txn_is_atomic,
            range_prefix_limit_count, range_at_past_revision, watch_from_now, watch_replays_history,
            watch_filters_prefix, watch_compacted_start_fails, lagging_watcher_catches_up,
            compaction_keeps_live_values, compaction_of_deleted_keys, concurrent_creates_get_distinct_revisions,
            concurrent_cas_one_winner, soak_in_memory, no_op_txn_takes_no_revision, watch_from_future_revision,
            inverted_ranges_are_empty);
    };
    (@cases $make:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let store = ($make)().await;
                $crate::conformance::$case(&store).await;
            }
        )*
    };
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn commit(store: &dyn Store, txn: Txn) -> i64 {
    match store.txn(txn).await.expect("txn") {
        TxnResponse::Committed { revision, .. } => revision,
        TxnResponse::Failed { .. } => panic!("expected the transaction to commit"),
    }
}

async fn put(store: &dyn Store, key: &str, value: &str) -> i64 {
    let cur = store.get(key.as_bytes()).await.expect("get").map_or(0, |kv| kv.mod_revision);
    commit(store, Txn::update(key, cur, b(value))).await
}

async fn next_batch(w: &mut WatchStream) -> WatchBatch {
    tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("watch event within 10s")
        .expect("watch stream open")
        .expect("watch batch")
}

/// Next batch that has events (skipping progress notifications).
async fn next_events(w: &mut WatchStream) -> WatchBatch {
    loop {
        let batch = next_batch(w).await;
        if !batch.events.is_empty() {
            return batch;
        }
    }
}

pub async fn create_get_update_delete(store: &dyn Store) {
    let start = store.revisions().await.unwrap().current;
    let r1 = commit(store, Txn::create("/a", b("one"))).await;
    assert_eq!(r1, start + 1, "each transaction takes the next revision");
    let kv = store.get(b"/a").await.unwrap().expect("created key");
    assert_eq!(kv, KeyValue { key: b("/a"), value: b("one"), create_revision: r1, mod_revision: r1, version: 1 });
    // Creating again fails and reports what is there.
    match store.txn(Txn::create("/a", b("again"))).await.unwrap() {
        TxnResponse::Failed { current, revision } => {
            assert_eq!(current, vec![Some(kv.clone())]);
            assert_eq!(revision, r1);
        }
        other => panic!("create of an existing key must fail, got {other:?}"),
    }
    let r2 = commit(store, Txn::update("/a", r1, b("two"))).await;
    let kv2 = store.get(b"/a").await.unwrap().unwrap();
    assert_eq!((kv2.create_revision, kv2.mod_revision, kv2.version), (r1, r2, 2));
    assert_eq!(kv2.value, b("two"));
    // Stale update is refused.
    assert!(!store.txn(Txn::update("/a", r1, b("stale"))).await.unwrap().committed());
    let r3 = commit(store, Txn::delete("/a", r2)).await;
    assert_eq!(r3, r2 + 1);
    assert_eq!(store.get(b"/a").await.unwrap(), None);
    // Re-creating starts a new life: new create revision, version 1.
    let r4 = commit(store, Txn::create("/a", b("reborn"))).await;
    let kv4 = store.get(b"/a").await.unwrap().unwrap();
    assert_eq!((kv4.create_revision, kv4.version), (r4, 1));
    assert_eq!(store.revisions().await.unwrap().current, r4);
}

pub async fn failed_compare_changes_nothing(store: &dyn Store) {
    let r1 = commit(store, Txn::create("/k", b("v"))).await;
    let before = store.revisions().await.unwrap();
    let txn = Txn {
        compares: vec![Compare::ModRevision(b"/k".to_vec(), r1 + 100)],
        ops: vec![Op::Put { key: b"/k".to_vec(), value: b("x") }, Op::Put { key: b"/other".to_vec(), value: b("y") }],
    };
    assert!(!store.txn(txn).await.unwrap().committed());
    assert_eq!(store.revisions().await.unwrap(), before, "a failed transaction takes no revision");
    assert_eq!(store.get(b"/k").await.unwrap().unwrap().value, b("v"));
    assert_eq!(store.get(b"/other").await.unwrap(), None);
    // Writing a key twice in one transaction is refused.
    let dup = Txn {
        compares: vec![],
        ops: vec![Op::Put { key: b"/d".to_vec(), value: b("1") }, Op::Delete { key: b"/d".to_vec() }],
    };
    assert!(matches!(store.txn(dup).await, Err(Error::InvalidTxn(_))));
}

pub async fn multi_key_txn_is_atomic(store: &dyn Store) {
    let mut w = store.watch(b"/m/".to_vec(), 0).await.unwrap();
    commit(store, Txn::create("/m/gone", b("x"))).await;
    let txn = Txn {
        compares: vec![Compare::ModRevision(b"/m/a".to_vec(), 0), Compare::ModRevision(b"/m/b".to_vec(), 0)],
        ops: vec![
            Op::Put { key: b"/m/a".to_vec(), value: b("A") },
            Op::Put { key: b"/m/b".to_vec(), value: b("B") },
            Op::Delete { key: b"/m/gone".to_vec() },
            Op::Delete { key: b"/m/never-existed".to_vec() },
        ],
    };
    let resp = store.txn(txn).await.unwrap();
    let TxnResponse::Committed { revision, prev } = resp else { panic!("expected commit") };
    assert_eq!(prev.len(), 4);
    assert!(prev[0].is_none() && prev[1].is_none() && prev[3].is_none());
    assert_eq!(prev[2].as_ref().unwrap().value, b("x"));
    let a = store.get(b"/m/a").await.unwrap().unwrap();
    let bb = store.get(b"/m/b").await.unwrap().unwrap();
    assert_eq!((a.mod_revision, bb.mod_revision), (revision, revision));
    assert_eq!(store.get(b"/m/gone").await.unwrap(), None);
    next_events(&mut w).await; // the create of /m/gone
    let batch = next_events(&mut w).await;
    assert_eq!(batch.revision, revision);
    let kinds: Vec<_> = batch.events.iter().map(|e| (e.kind.clone(), e.kv.key.clone())).collect();
    assert_eq!(
        kinds,
        vec![(EventKind::Put, b("/m/a")), (EventKind::Put, b("/m/b")), (EventKind::Delete, b("/m/gone"))],
        "one batch per transaction, deleting a missing key is no event"
    );
    assert_eq!(batch.events[2].prev.as_ref().unwrap().value, b("x"));
    assert_eq!(batch.events[2].kv.mod_revision, revision);
}

pub async fn range_prefix_limit_count(store: &dyn Store) {
    for i in 0..10 {
        commit(store, Txn::create(format!("/r/{i:02}"), b(&format!("v{i}")))).await;
    }
    commit(store, Txn::create("/r0", b("outside"))).await;
    commit(store, Txn::create("/q", b("outside"))).await;
    let all = store.range(RangeRequest::prefix(b"/r/")).await.unwrap();
    assert_eq!(all.kvs.len(), 10);
    assert_eq!(all.count, 10);
    assert!(!all.more);
    let keys: Vec<_> = all.kvs.iter().map(|kv| kv.key.clone()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "range returns keys in order");
    let page = store.range(RangeRequest { limit: 3, ..RangeRequest::prefix(b"/r/") }).await.unwrap();
    assert_eq!(page.kvs.len(), 3);
    assert_eq!(page.count, 10, "count covers the whole range");
    assert!(page.more);
    // Continue after the last key of the page.
    let mut next_start = page.kvs[2].key.to_vec();
    next_start.push(0);
    let rest = store
        .range(RangeRequest { start: next_start, end: crate::prefix_end(b"/r/"), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(rest.kvs.len(), 7);
    assert_eq!(rest.kvs[0].key, b("/r/03"));
    let open =
        store.range(RangeRequest { start: b"/r/05".to_vec(), end: vec![0], ..Default::default() }).await.unwrap();
    assert_eq!(open.kvs.len(), 5 + 1, "an end of [0] is open-ended");
}

pub async fn range_at_past_revision(store: &dyn Store) {
    let r1 = commit(store, Txn::create("/p/a", b("1"))).await;
    let r2 = put(store, "/p/a", "2").await;
    let r3 = commit(store, Txn::create("/p/b", b("b"))).await;
    let r4 = commit(store, Txn::delete("/p/a", r2)).await;
    let at = |rev| RangeRequest { revision: rev, ..RangeRequest::prefix(b"/p/") };
    let vals = |r: crate::RangeResponse| r.kvs.into_iter().map(|kv| kv.value).collect::<Vec<_>>();
    assert_eq!(vals(store.range(at(r1)).await.unwrap()), vec![b("1")]);
    assert_eq!(vals(store.range(at(r2)).await.unwrap()), vec![b("2")]);
    assert_eq!(vals(store.range(at(r3)).await.unwrap()), vec![b("2"), b("b")]);
    assert_eq!(vals(store.range(at(r4)).await.unwrap()), vec![b("b")]);
    let resp = store.range(at(r3)).await.unwrap();
    assert_eq!(resp.revision, r3);
    assert!(matches!(store.range(at(r4 + 10)).await, Err(Error::FutureRevision { .. })));
    let single = store.range(RangeRequest { revision: r1, ..RangeRequest::key(b"/p/a") }).await.unwrap();
    assert_eq!(single.kvs[0].mod_revision, r1);
}

pub async fn watch_from_now(store: &dyn Store) {
    commit(store, Txn::create("/w/old", b("x"))).await;
    let mut w = store.watch(b"/w/".to_vec(), 0).await.unwrap();
    let r = commit(store, Txn::create("/w/new", b("y"))).await;
    let batch = next_events(&mut w).await;
    assert_eq!(batch.revision, r);
    assert_eq!(batch.events.len(), 1);
    assert_eq!(batch.events[0].kv.key, b("/w/new"));
    assert_eq!(batch.events[0].prev, None);
}

pub async fn watch_replays_history(store: &dyn Store) {
    let r1 = commit(store, Txn::create("/h/a", b("1"))).await;
    let r2 = put(store, "/h/a", "2").await;
    let r3 = commit(store, Txn::delete("/h/a", r2)).await;
    let mut w = store.watch(b"/h/".to_vec(), r1).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        for e in next_events(&mut w).await.events {
            seen.push((e.kind, e.kv.mod_revision, e.prev.map(|p| p.value)));
        }
    }
    assert_eq!(
        seen,
        vec![(EventKind::Put, r1, None), (EventKind::Put, r2, Some(b("1"))), (EventKind::Delete, r3, Some(b("2"))),]
    );
    // Then live, with no gap or duplicate.
    let r4 = commit(store, Txn::create("/h/a", b("3"))).await;
    let batch = next_events(&mut w).await;
    assert_eq!(batch.revision, r4);
}

pub async fn watch_filters_prefix(store: &dyn Store) {
    let mut w = store.watch(b"/f/in/".to_vec(), 0).await.unwrap();
    commit(store, Txn::create("/f/out/x", b("no"))).await;
    let r = commit(store, Txn::create("/f/in/x", b("yes"))).await;
    let batch = next_events(&mut w).await;
    assert_eq!(batch.revision, r);
    assert!(batch.events.iter().all(|e| e.kv.key.starts_with(b"/f/in/")));
}

pub async fn watch_compacted_start_fails(store: &dyn Store) {
    let r1 = commit(store, Txn::create("/c/a", b("1"))).await;
    let r2 = put(store, "/c/a", "2").await;
    store.compact(r2).await.unwrap();
    match store.watch(b"/c/".to_vec(), r1).await {
        Err(Error::Compacted { requested, compacted }) => assert_eq!((requested, compacted), (r1, r2)),
        Err(e) => panic!("expected Compacted, got {e}"),
        Ok(_) => panic!("expected Compacted, got a stream"),
    }
    assert!(store.watch(b"/c/".to_vec(), r2).await.is_err(), "the compacted revision itself is gone");
    let mut w = store.watch(b"/c/".to_vec(), r2 + 1).await.unwrap();
    let r3 = put(store, "/c/a", "3").await;
    assert_eq!(next_events(&mut w).await.revision, r3);
}

pub async fn lagging_watcher_catches_up(store: &dyn Store) {
    let mut w = store.watch(b"/lag/".to_vec(), 0).await.unwrap();
    let n = 6000; // more than the live buffer and the output buffer together
    let first = commit(store, Txn::create("/lag/k", b("0"))).await;
    let mut rev = first;
    for i in 1..n {
        rev = commit(store, Txn::update("/lag/k", rev, b(&i.to_string()))).await;
    }
    let mut expect = first;
    while expect <= rev {
        let batch = next_batch(&mut w).await;
        if batch.events.is_empty() {
            continue;
        }
        assert_eq!(batch.revision, expect, "no gap and no duplicate");
        expect += 1;
    }
}

pub async fn compaction_keeps_live_values(store: &dyn Store) {
    let mut model = BTreeMap::new();
    for i in 0..20 {
        let key = format!("/live/{i:02}");
        commit(store, Txn::create(key.clone(), b("v0"))).await;
        model.insert(key, "v0".to_string());
    }
    for round in 1..4 {
        for i in (0..20).step_by(round) {
            let key = format!("/live/{i:02}");
            let v = format!("v{round}");
            put(store, &key, &v).await;
            model.insert(key, v);
        }
    }
    let compact_at = store.revisions().await.unwrap().current;
    put(store, "/live/00", "after").await;
    model.insert("/live/00".into(), "after".into());
    store.compact(compact_at).await.unwrap();
    let got = store.range(RangeRequest::prefix(b"/live/")).await.unwrap();
    let got: BTreeMap<_, _> = got
        .kvs
        .iter()
        .map(|kv| (String::from_utf8_lossy(&kv.key).into_owned(), String::from_utf8_lossy(&kv.value).into_owned()))
        .collect();
    assert_eq!(got, model, "compaction removes no live value");
    // The state at the compacted revision itself is still readable, older ones are not.
    let at = store.range(RangeRequest { revision: compact_at, ..RangeRequest::prefix(b"/live/") }).await.unwrap();
    assert_eq!(at.kvs.len(), 20);
    assert!(at.kvs.iter().any(|kv| kv.key == b("/live/00") && kv.value == b("v3")));
    assert!(matches!(
        store.range(RangeRequest { revision: compact_at - 1, ..RangeRequest::prefix(b"/live/") }).await,
        Err(Error::Compacted { .. })
    ));
    assert!(matches!(store.compact(compact_at).await, Err(Error::Compacted { .. })));
    // Bookkeeping survives: versions keep counting.
    let kv = store.get(b"/live/00").await.unwrap().unwrap();
    assert_eq!(kv.version, 5);
}

pub async fn compaction_of_deleted_keys(store: &dyn Store) {
    let r1 = commit(store, Txn::create("/del/a", b("1"))).await;
    commit(store, Txn::create("/del/b", b("2"))).await;
    let r3 = commit(store, Txn::delete("/del/a", r1)).await;
    store.compact(r3).await.unwrap();
    let got = store.range(RangeRequest::prefix(b"/del/")).await.unwrap();
    assert_eq!(got.kvs.len(), 1);
    assert_eq!(got.kvs[0].key, b("/del/b"));
    let r4 = commit(store, Txn::create("/del/a", b("again"))).await;
    let kv = store.get(b"/del/a").await.unwrap().unwrap();
    assert_eq!((kv.create_revision, kv.version), (r4, 1));
}

pub async fn concurrent_creates_get_distinct_revisions(store: &dyn Store) {
    let futs = (0..100).map(|i| store.txn(Txn::create(format!("/cc/{i:03}"), b("v"))));
    let revs: Vec<i64> = futures::future::join_all(futs)
        .await
        .into_iter()
        .map(|r| match r.unwrap() {
            TxnResponse::Committed { revision, .. } => revision,
            TxnResponse::Failed { .. } => panic!("distinct keys must all be created"),
        })
        .collect();
    let mut sorted = revs.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 100, "every transaction gets its own revision");
    assert_eq!(store.range(RangeRequest::prefix(b"/cc/")).await.unwrap().count, 100);
}

pub async fn concurrent_cas_one_winner(store: &dyn Store) {
    let r = commit(store, Txn::create("/cas", b("0"))).await;
    let futs = (0..50).map(|i| store.txn(Txn::update("/cas", r, b(&format!("w{i}")))));
    let wins = futures::future::join_all(futs).await.into_iter().filter(|r| r.as_ref().unwrap().committed()).count();
    assert_eq!(wins, 1, "compare-and-swap on one revision has one winner");
    assert_eq!(store.get(b"/cas").await.unwrap().unwrap().version, 2);
}

pub async fn no_op_txn_takes_no_revision(store: &dyn Store) {
    let r = commit(store, Txn::create("/noop/a", b("1"))).await;
    let mut w = store.watch(b"/noop/".to_vec(), 0).await.unwrap();
    let resp =
        store.txn(Txn { compares: vec![], ops: vec![Op::Delete { key: b"/noop/missing".to_vec() }] }).await.unwrap();
    assert_eq!(
        resp,
        TxnResponse::Committed { revision: r, prev: vec![None] },
        "as in etcd, nothing changed, no revision"
    );
    assert_eq!(store.revisions().await.unwrap().current, r);
    let r2 = commit(store, Txn::create("/noop/b", b("2"))).await;
    assert_eq!(r2, r + 1);
    assert_eq!(next_events(&mut w).await.revision, r2);
}

pub async fn watch_from_future_revision(store: &dyn Store) {
    let r = commit(store, Txn::create("/fut/a", b("1"))).await;
    let mut w = store.watch(b"/fut/".to_vec(), r + 3).await.unwrap();
    commit(store, Txn::create("/fut/b", b("2"))).await;
    commit(store, Txn::create("/fut/c", b("3"))).await;
    let r3 = commit(store, Txn::create("/fut/d", b("4"))).await;
    let batch = next_events(&mut w).await;
    assert_eq!(batch.revision, r3, "nothing before the requested start is delivered");
    assert_eq!(batch.events[0].kv.key, b("/fut/d"));
}

pub async fn inverted_ranges_are_empty(store: &dyn Store) {
    commit(store, Txn::create("/inv/a", b("1"))).await;
    let resp = store
        .range(RangeRequest { start: b"/inv/z".to_vec(), end: b"/inv/b".to_vec(), ..Default::default() })
        .await
        .unwrap();
    assert!(resp.kvs.is_empty() && resp.count == 0);
}

/// Random creates, updates, deletes and compactions checked against a model after every step.
pub async fn soak_in_memory(store: &dyn Store) {
    soak_steps(store, &mut BTreeMap::new(), 0xC0FFEE, 600).await;
}

/// One soak phase: `steps` random operations on keys under `/soak/`, checking `model` throughout.
pub async fn soak_steps(store: &dyn Store, model: &mut BTreeMap<String, (String, i64)>, seed: u64, steps: usize) {
    let mut rng = seed;
    let mut next = move || {
        // xorshift: deterministic, so a failure reproduces.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for step in 0..steps {
        let key = format!("/soak/{:03}", next() % 150);
        match (next() % 10, model.get(&key).cloned()) {
            (0..=3, None) => {
                let v = format!("c{step}");
                let rev = commit(store, Txn::create(key.clone(), b(&v))).await;
                model.insert(key, (v, rev));
            }
            (0..=6, Some((_, rev))) => {
                let v = format!("u{step}");
                let rev = commit(store, Txn::update(key.clone(), rev, b(&v))).await;
                model.insert(key, (v, rev));
            }
            (7..=8, Some((_, rev))) => {
                commit(store, Txn::delete(key.clone(), rev)).await;
                model.remove(&key);
            }
            (9, _) => {
                let revs = store.revisions().await.unwrap();
                let target = revs.compacted + 1 + (next() as i64).rem_euclid((revs.current - revs.compacted).max(1));
                if target > revs.compacted && target <= revs.current {
                    store.compact(target).await.unwrap();
                }
            }
            _ => {}
        }
        if step % 50 == 49 {
            check_model(store, model).await;
        }
    }
    check_model(store, model).await;
}

pub async fn check_model(store: &dyn Store, model: &BTreeMap<String, (String, i64)>) {
    let got = store.range(RangeRequest::prefix(b"/soak/")).await.unwrap();
    let got: BTreeMap<String, (String, i64)> = got
        .kvs
        .into_iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                (String::from_utf8_lossy(&kv.value).into_owned(), kv.mod_revision),
            )
        })
        .collect();
    assert_eq!(&got, model, "every live object, and only those, with its last revision");
}

/// For durable backends: every acknowledged write survives closing and reopening.
pub async fn restart_keeps_everything<S: Store>(open: impl Fn() -> S) {
    let mut model = BTreeMap::new();
    let mut revs = None;
    for phase in 0..4u64 {
        let store = open();
        if let Some(r) = revs {
            assert_eq!(store.revisions().await.unwrap(), r, "revisions survive a restart");
        }
        check_model(&store, &model).await;
        soak_steps(&store, &mut model, 0xBADC0DE + phase, 300).await;
        revs = Some(store.revisions().await.unwrap());
        drop(store);
        // Let the writer thread notice its channel closed and release the file.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
