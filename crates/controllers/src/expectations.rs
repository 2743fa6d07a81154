//! Controller expectations, as Kubernetes keeps them: after asking for N pod
//! creations (or these deletions) a controller does not act again on the
//! same owner until its informer has seen them, so a lagging cache cannot
//! make it create twice. Expectations older than five minutes lapse.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

const TTL: Duration = Duration::from_secs(300);

struct Expected {
    adds: i64,
    dels: HashSet<String>,
    at: Instant,
}

#[derive(Default)]
pub struct Expectations {
    map: Mutex<HashMap<String, Expected>>,
}

impl Expectations {
    /// Whether the owner `key` may act: nothing is pending (or what is pending lapsed).
    pub fn satisfied(&self, key: &str) -> bool {
        self.map.lock().get(key).is_none_or(|e| (e.adds <= 0 && e.dels.is_empty()) || e.at.elapsed() > TTL)
    }

    pub fn expect_creations(&self, key: &str, n: i64) {
        self.map.lock().insert(key.into(), Expected { adds: n, dels: HashSet::new(), at: Instant::now() });
    }

    pub fn expect_deletions(&self, key: &str, pods: impl IntoIterator<Item = String>) {
        self.map.lock().insert(key.into(), Expected { adds: 0, dels: pods.into_iter().collect(), at: Instant::now() });
    }

    pub fn creation_observed(&self, key: &str) {
        if let Some(e) = self.map.lock().get_mut(key) {
            e.adds -= 1;
        }
    }

    /// Creations that were never attempted (or failed) are not waited for.
    pub fn lower_creations(&self, key: &str, n: i64) {
        if let Some(e) = self.map.lock().get_mut(key) {
            e.adds -= n;
        }
    }

    pub fn deletion_observed(&self, key: &str, pod: &str) {
        if let Some(e) = self.map.lock().get_mut(key) {
            e.dels.remove(pod);
        }
    }

    pub fn forget(&self, key: &str) {
        self.map.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_until_seen() {
        let e = Expectations::default();
        assert!(e.satisfied("rs"));
        e.expect_creations("rs", 2);
        assert!(!e.satisfied("rs"));
        e.creation_observed("rs");
        e.lower_creations("rs", 1);
        assert!(e.satisfied("rs"));
        e.expect_deletions("rs", ["ns/a".to_string()]);
        assert!(!e.satisfied("rs"));
        e.deletion_observed("rs", "ns/b");
        assert!(!e.satisfied("rs"));
        e.deletion_observed("rs", "ns/a");
        assert!(e.satisfied("rs"));
    }
}
