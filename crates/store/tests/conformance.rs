//! The store conformance suite, run against every backend.
#![allow(clippy::unwrap_used)] // Tests: a failed step is a failed test.

mod memory {
    kubesvc_store::conformance_tests!(|| async { kubesvc_store::memory::MemoryStore::new() });
}

mod redb {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use kubesvc_store::redb::RedbStore;

    /// Opens `path`, waiting for a previous instance's writer to release the file.
    pub fn open(path: &Path) -> RedbStore {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match RedbStore::open(path) {
                Ok(s) => return s,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("opening {}: {e}", path.display()),
            }
        }
    }

    kubesvc_store::conformance_tests!(|| async {
        // Leaked on purpose: the store outlives the test body's borrow of it.
        let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
        open(&dir.path().join("db.redb"))
    });

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn restart_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        kubesvc_store::conformance::restart_keeps_everything(|| open(&path)).await;
    }
}
