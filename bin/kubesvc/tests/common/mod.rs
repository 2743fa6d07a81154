//! Helpers shared by the integration tests.
#![allow(dead_code)]

use kubesvc_testsupport::{Cluster, Options};

/// A fresh kubesvc (API server and controllers) in this process.
pub fn cluster() -> Cluster {
    Cluster::in_process().expect("starting kubesvc")
}

/// A fresh in-process kubesvc set up as `opts` says.
pub fn cluster_with(opts: Options) -> Cluster {
    Cluster::in_process_with(opts).expect("starting kubesvc")
}

/// A fresh API server without controllers, in this process.
pub fn api_server() -> Cluster {
    cluster_with(Options { controllers: false, ..Default::default() })
}

/// `kubesvc server` as a process in a network namespace of its own, for what
/// needs a process (restarts, kill -9, its database file).
pub fn process() -> Cluster {
    Cluster::start(env!("CARGO_BIN_EXE_kubesvc")).expect("starting kubesvc")
}

/// A table's rows, split on whitespace (cells here never contain spaces).
pub fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .filter(|r: &Vec<String>| !r.is_empty())
        .collect()
}

/// The row whose first cell is `name`.
#[track_caller]
pub fn row<'a>(table: &'a [Vec<String>], name: &str) -> &'a Vec<String> {
    table.iter().find(|r| r.first().is_some_and(|c| c == name)).unwrap_or_else(|| panic!("no row {name} in {table:?}"))
}

pub const SEED_003: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/manifests/seed-003");

/// Polls `check` until it gives `Some`, for what controllers do asynchronously.
/// The bound is for liveness (a stuck controller fails the test), not speed.
#[track_caller]
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `kubectl <args>` (with `-o json`) parsed.
pub fn json(c: &Cluster, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&c.kubectl(args).ok()).unwrap()
}

/// The name, IP and node of the pods `selector` picks, once exactly `want` are Running with an IP.
pub fn running_pods(c: &Cluster, selector: &str, want: usize) -> Vec<(String, String, String)> {
    eventually("the pods run", || {
        let list = json(c, &["get", "pods", "-l", selector, "-o", "json"]);
        let pods: Vec<(String, String, String)> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string())
            .map(|p| {
                let s = |v: &serde_json::Value| v.as_str().unwrap().to_string();
                (s(&p["metadata"]["name"]), s(&p["status"]["podIP"]), s(&p["spec"]["nodeName"]))
            })
            .collect();
        (pods.len() == want).then_some(pods)
    })
}
