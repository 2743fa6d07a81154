//! Durability: objects and resourceVersions survive a clean restart and a kill -9.
#![allow(clippy::unwrap_used)] // Tests: a failed step is a failed test.

mod common;

use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;

fn svc(name: &str) -> Service {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"n": name}}, "spec": {"ports": [{"port": 80}]}}),
    )
    .unwrap()
}

/// (name, uid, resourceVersion) of every service in default, sorted.
async fn snapshot(c: &kubesvc_testsupport::Cluster) -> Vec<(String, String, String)> {
    let api: Api<Service> = Api::default_namespaced(c.client().await.unwrap());
    let mut out: Vec<_> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| (s.metadata.name.unwrap(), s.metadata.uid.unwrap(), s.metadata.resource_version.unwrap()))
        .filter(|(name, _, _)| name != "kubernetes")
        .collect();
    out.sort();
    out
}

#[test]
fn objects_and_resource_versions_survive_restart_and_kill() {
    let mut c = common::process();
    let before = c.rt.block_on(async {
        let api: Api<Service> = Api::default_namespaced(c.client().await.unwrap());
        for i in 0..50 {
            api.create(&PostParams::default(), &svc(&format!("s{i:02}"))).await.unwrap();
        }
        snapshot(&c).await
    });
    assert_eq!(before.len(), 50);

    c.restart().expect("clean restart");
    let after = c.rt.block_on(snapshot(&c));
    assert_eq!(after, before, "a clean restart keeps every object and its resourceVersion");

    // Every acknowledged write survives kill -9, up to the last one.
    let last_rv = c.rt.block_on(async {
        let api: Api<Service> = Api::default_namespaced(c.client().await.unwrap());
        let mut last = String::new();
        for i in 50..80 {
            last = api
                .create(&PostParams::default(), &svc(&format!("s{i:02}")))
                .await
                .unwrap()
                .metadata
                .resource_version
                .unwrap();
        }
        last
    });
    c.kill().expect("kill -9");
    c.start_again().expect("start after kill");
    let after_kill = c.rt.block_on(snapshot(&c));
    assert_eq!(after_kill.len(), 80, "every acknowledged create is there");
    assert!(after_kill.iter().any(|(_, _, rv)| *rv == last_rv), "the last write's resourceVersion is kept");
    assert_eq!(&after_kill[..50], &before[..], "older objects are untouched");

    // New writes continue the revision sequence.
    c.rt.block_on(async {
        let api: Api<Service> = Api::default_namespaced(c.client().await.unwrap());
        let next = api.create(&PostParams::default(), &svc("after")).await.unwrap();
        let rv: i64 = next.metadata.resource_version.unwrap().parse().unwrap();
        assert!(rv > last_rv.parse::<i64>().unwrap());
    });
}
