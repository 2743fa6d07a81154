//! The controllers end to end, with real kubectl, on nodes whose kubelet is
//! stood in for by `testsupport::kubelet` (it writes pod status as a kubelet
//! would): deployments become ready pods, pods become endpoints, endpoints
//! follow readiness, termination and node health; deletion cascades.
#![allow(clippy::unwrap_used)] // Tests: a failed step is a failed test.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{SEED_003, eventually, row, rows};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kubesvc_testsupport::kubelet::FakeKubelet;
use kubesvc_testsupport::{Cluster, Options};
use serde_json::{Value, json};

/// A cluster whose nodes are declared dead three seconds after their last heartbeat.
fn cluster() -> Cluster {
    common::cluster_with(Options { node_monitor_grace_period: Duration::from_secs(3), ..Default::default() })
}

/// Two nodes in two zones, Ready and schedulable.
fn nodes(c: &Cluster) -> Vec<FakeKubelet> {
    let kubelets = c.rt.block_on(async {
        let client = c.client().await.unwrap();
        let mut out = Vec::new();
        for (i, zone) in [(1u8, "zone-a"), (2, "zone-b")] {
            let name = format!("node-{i}");
            let labels = json!({"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": zone});
            out.push(FakeKubelet::start(client.clone(), &name, i, labels).await.unwrap());
        }
        out
    });
    // The node controller lifts the not-ready taint once it sees them Ready.
    eventually("schedulable nodes", || {
        let out = c.kubectl(&["get", "nodes", "-o", "jsonpath={.items[*].spec.taints}"]).ok();
        (!out.contains("not-ready")).then_some(())
    });
    kubelets
}

fn json_of(c: &Cluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&c.kubectl(&all).ok()).unwrap()
}

/// The service's endpoints by pod: (ready, serving, terminating, node, zone).
fn slice_endpoints(c: &Cluster, service: &str) -> BTreeMap<String, (bool, bool, bool, String, String)> {
    let slices = json_of(c, &["get", "endpointslices", "-l", &format!("kubernetes.io/service-name={service}")]);
    let mut out = BTreeMap::new();
    for s in slices["items"].as_array().unwrap() {
        for e in s["endpoints"].as_array().into_iter().flatten() {
            let cond = &e["conditions"];
            let flag = |k: &str| cond[k].as_bool().unwrap_or(false);
            out.insert(
                e["targetRef"]["name"].as_str().unwrap_or_default().to_string(),
                (
                    flag("ready"),
                    flag("serving"),
                    flag("terminating"),
                    e["nodeName"].as_str().unwrap_or_default().to_string(),
                    e["zone"].as_str().unwrap_or_default().to_string(),
                ),
            );
        }
    }
    out
}

fn pod_names(c: &Cluster, selector: &str) -> Vec<String> {
    let out = c.kubectl(&["get", "pods", "-l", selector, "-o", "jsonpath={.items[*].metadata.name}"]).ok();
    out.split_whitespace().map(String::from).collect()
}

#[test]
fn a_deployment_becomes_ready_endpoints_that_follow_its_pods() {
    let c = cluster();
    let kubelets = nodes(&c);
    let out = c.kubectl(&["apply", "-f", &format!("{SEED_003}/4-apache-deployment.yaml")]).ok();
    assert_eq!(out.trim(), "deployment.apps/apache-deployment created");
    c.kubectl(&[
        "expose",
        "deployment",
        "apache-deployment",
        "--name=apache-http-service",
        "--port=8080",
        "--target-port=80",
    ])
    .ok();

    // As in the article: READY 4/4, UP-TO-DATE 4, AVAILABLE 4.
    let rollout = c.kubectl(&["rollout", "status", "deployment/apache-deployment", "--timeout=60s"]).ok();
    assert!(rollout.trim_end().ends_with("deployment \"apache-deployment\" successfully rolled out"), "{rollout}");
    let deploy = rows(&c.kubectl(&["get", "deployment", "apache-deployment"]).ok());
    assert_eq!(row(&deploy, "apache-deployment")[1..4], ["4/4", "4", "4"]);
    let rs = rows(&c.kubectl(&["get", "rs", "-l", "app=webserver"]).ok());
    assert_eq!(rs[1][1..4], ["4", "4", "4"], "DESIRED CURRENT READY");
    assert!(rs[1][0].starts_with("apache-deployment-"), "{rs:?}");

    // Four ready endpoints, spread over both nodes, with their zones.
    let eps = eventually("4 ready endpoints", || {
        let eps = slice_endpoints(&c, "apache-http-service");
        (eps.len() == 4 && eps.values().all(|e| e.0)).then_some(eps)
    });
    let on = |n: &str| eps.values().filter(|e| e.3 == n).count();
    assert_eq!((on("node-1"), on("node-2")), (2, 2), "spread: {eps:?}");
    assert!(eps.values().all(|e| (e.3 == "node-1" && e.4 == "zone-a") || (e.3 == "node-2" && e.4 == "zone-b")));
    let slice =
        &json_of(&c, &["get", "endpointslices", "-l", "kubernetes.io/service-name=apache-http-service"])["items"][0];
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
    assert_eq!(slice["ports"], json!([{"name": "", "port": 80, "protocol": "TCP"}]));
    assert!(slice["metadata"]["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"].as_str().is_some());
    let ep = json_of(&c, &["get", "endpoints", "apache-http-service"]);
    assert_eq!(ep["subsets"][0]["addresses"].as_array().map(Vec::len), Some(4), "{ep}");

    // A pod turning unready leaves: not ready, not serving.
    let pods = pod_names(&c, "app=webserver");
    let first = pods[0].clone();
    let node_of = |p: &str| c.kubectl(&["get", "pod", p, "-o", "jsonpath={.spec.nodeName}"]).ok();
    let kubelet = |p: &str| kubelets.iter().find(|k| k.name == node_of(p)).unwrap();
    c.rt.block_on(kubelet(&first).set_ready("default", &first, false)).unwrap();
    eventually("the unready pod out of service", || {
        let e = slice_endpoints(&c, "apache-http-service");
        (e.get(&first).map(|e| (e.0, e.1)) == Some((false, false))).then_some(())
    });
    let not_ready = json_of(&c, &["get", "endpoints", "apache-http-service"]);
    assert_eq!(not_ready["subsets"][0]["notReadyAddresses"].as_array().map(Vec::len), Some(1));
    eventually("3/4 ready", || {
        (rows(&c.kubectl(&["get", "deployment", "apache-deployment"]).ok())[1][1] == "3/4").then_some(())
    });
    c.rt.block_on(kubelet(&first).set_ready("default", &first, true)).unwrap();

    // A terminating pod is marked terminating (and still serving) until its kubelet finishes it.
    let second = pods[1].clone();
    kubelet(&second).finish_deletions(false);
    c.kubectl(&["delete", "pod", &second, "--wait=false"]).ok();
    eventually("a terminating endpoint", || {
        let e = slice_endpoints(&c, "apache-http-service");
        (e.get(&second).map(|e| (e.0, e.1, e.2)) == Some((false, true, true))).then_some(())
    });
    // Its replacement comes up meanwhile: four active pods again.
    eventually("a replacement pod", || {
        let e = slice_endpoints(&c, "apache-http-service");
        (e.values().filter(|e| e.0).count() == 4).then_some(())
    });
    kubelet(&second).finish_deletions(true);
    c.kubectl(&["delete", "pod", &second, "--grace-period=0", "--force"]).ok();

    // Scaling to zero empties the slices; back to four fills them.
    c.kubectl(&["scale", "deployment", "apache-deployment", "--replicas=0"]).ok();
    eventually("no endpoints", || slice_endpoints(&c, "apache-http-service").is_empty().then_some(()));
    let placeholder = json_of(&c, &["get", "endpointslices", "-l", "kubernetes.io/service-name=apache-http-service"]);
    assert_eq!(placeholder["items"].as_array().unwrap().len(), 1, "one empty slice remains");
    c.kubectl(&["scale", "deployment", "apache-deployment", "--replicas=4"]).ok();
    eventually("4 ready endpoints again", || {
        let e = slice_endpoints(&c, "apache-http-service");
        (e.len() == 4 && e.values().all(|e| e.0)).then_some(())
    });
    let events = c.kubectl(&["describe", "deployment", "apache-deployment"]).ok();
    assert!(events.contains("ScalingReplicaSet"), "{events}");
    assert!(events.contains("from 4 to 0"), "{events}");
}

#[test]
fn a_rolling_update_keeps_enough_pods_ready_and_can_be_undone() {
    let c = cluster();
    let _kubelets = nodes(&c);
    c.kubectl(&["create", "deployment", "web", "--image=nginx:1.25", "--replicas=4"]).ok();
    c.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]).ok();

    // Watch every pod change through the update and count ready, active pods at each.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let watcher = {
        let client = c.rt.block_on(c.client()).unwrap();
        c.rt.spawn(async move {
            use futures::StreamExt;
            let api: Api<Pod> = Api::namespaced(client, "default");
            let mut pods: BTreeMap<String, bool> = BTreeMap::new();
            let mut least = usize::MAX;
            let mut listed = false;
            let mut stream = std::pin::pin!(kube::runtime::watcher(api, Default::default()));
            loop {
                tokio::select! {
                    ev = stream.next() => {
                        let Some(Ok(ev)) = ev else { continue };
                        let (p, gone) = match ev {
                            kube::runtime::watcher::Event::Apply(p) | kube::runtime::watcher::Event::InitApply(p) => (p, false),
                            kube::runtime::watcher::Event::Delete(p) => (p, true),
                            kube::runtime::watcher::Event::InitDone => {
                                listed = true;
                                least = least.min(pods.values().filter(|r| **r).count());
                                continue;
                            }
                            _ => continue,
                        };
                        let name = p.metadata.name.clone().unwrap_or_default();
                        let ready = !gone && p.metadata.deletion_timestamp.is_none()
                            && p.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                        pods.insert(name, ready);
                        if listed {
                            least = least.min(pods.values().filter(|r| **r).count());
                        }
                    }
                    _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {
                        if rx.try_recv().is_ok() { return least; }
                    }
                }
            }
        })
    };
    c.kubectl(&["set", "image", "deployment/web", "nginx=nginx:1.26"]).ok();
    c.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]).ok();
    tx.send(()).unwrap();
    let least = c.rt.block_on(watcher).unwrap();
    // 4 replicas, maxUnavailable 25% = 1.
    assert!(least >= 3, "at some point only {least} pods were ready");
    eventually("only new pods", || {
        let images =
            c.kubectl(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].spec.containers[0].image}"]).ok();
        (images.split_whitespace().count() == 4 && images.split_whitespace().all(|i| i == "nginx:1.26")).then_some(())
    });
    let events = c.kubectl(&["describe", "deployment", "web"]).ok();
    assert!(events.contains("Scaled down replica set"), "{events}");

    let history = c.kubectl(&["rollout", "history", "deployment/web"]).ok();
    let revisions: Vec<&str> = history.lines().skip(2).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    assert_eq!(c.kubectl(&["rollout", "undo", "deployment/web"]).ok().trim(), "deployment.apps/web rolled back");
    c.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]).ok();
    assert_eq!(
        c.kubectl(&["get", "deployment", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]).ok(),
        "nginx:1.25"
    );
    let history = c.kubectl(&["rollout", "history", "deployment/web"]).ok();
    let revisions: Vec<&str> = history.lines().skip(2).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(revisions, ["2", "3"], "the undone revision is renumbered: {history}");
}

#[test]
fn deletion_cascades_as_asked() {
    let c = cluster();
    let _kubelets = nodes(&c);
    for name in ["bg", "fg", "orphan"] {
        c.kubectl(&["create", "deployment", name, "--image=nginx", "--replicas=2"]).ok();
        c.kubectl(&["rollout", "status", &format!("deployment/{name}"), "--timeout=60s"]).ok();
    }
    // A ConfigMap and a Secret the deployment owns go with it.
    let uid = c.kubectl(&["get", "deployment", "bg", "-o", "jsonpath={.metadata.uid}"]).ok();
    for kind in ["ConfigMap", "Secret"] {
        let owned = format!(
            "apiVersion: v1\nkind: {kind}\nmetadata:\n  name: bg-owned\n  ownerReferences:\n  - apiVersion: apps/v1\n    kind: Deployment\n    name: bg\n    uid: {uid}\n"
        );
        c.kubectl_stdin(&["apply", "-f", "-"], Some(&owned)).ok();
    }
    // Background: the deployment goes at once, its replica sets and pods after.
    assert_eq!(c.kubectl(&["delete", "deployment", "bg"]).ok().trim(), "deployment.apps \"bg\" deleted");
    eventually("bg's pods gone", || pod_names(&c, "app=bg").is_empty().then_some(()));
    eventually("bg's ConfigMap and Secret gone", || {
        c.kubectl(&["get", "cm,secret", "bg-owned", "-o", "name", "--ignore-not-found"])
            .ok()
            .trim()
            .is_empty()
            .then_some(())
    });
    assert!(c.kubectl(&["get", "rs", "-l", "app=bg", "-o", "name"]).ok().trim().is_empty());

    // Foreground: kubectl waits until the dependents are gone, then the deployment.
    c.kubectl(&["delete", "deployment", "fg", "--cascade=foreground", "--timeout=60s"]).ok();
    assert!(pod_names(&c, "app=fg").is_empty(), "foreground deletion removed the pods first");
    assert!(c.kubectl(&["get", "rs", "-l", "app=fg", "-o", "name"]).ok().trim().is_empty());

    // Orphan: the replica set and its pods stay, without an owner.
    c.kubectl(&["delete", "deployment", "orphan", "--cascade=orphan"]).ok();
    let rs = json_of(&c, &["get", "rs", "-l", "app=orphan"]);
    let rs = &rs["items"][0];
    assert!(rs["metadata"].get("ownerReferences").is_none_or(|o| o.as_array().is_some_and(|a| a.is_empty())), "{rs}");
    assert_eq!(pod_names(&c, "app=orphan").len(), 2);
}

#[test]
fn hand_written_endpoints_are_mirrored() {
    let c = cluster();
    c.kubectl(&["apply", "-f", &format!("{SEED_003}/3-service-without-selector.yaml")]).ok();
    let slice = eventually("a mirrored slice", || {
        let s = json_of(&c, &["get", "endpointslices", "-l", "kubernetes.io/service-name=nginx-service"]);
        s["items"].as_array().and_then(|a| a.first().cloned())
    });
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslicemirroring-controller.k8s.io"
    );
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Endpoints");
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(slice["endpoints"], json!([{"addresses": ["192.10.0.1"], "conditions": {"ready": true}}]));
    assert_eq!(slice["ports"], json!([{"name": "", "port": 8080, "protocol": "TCP"}]));
    // The Endpoints changes, the slice follows; the Endpoints goes, the slice goes.
    c.kubectl(&[
        "patch",
        "endpoints",
        "nginx-service",
        "--type=merge",
        "-p",
        r#"{"subsets":[{"addresses":[{"ip":"192.10.0.2"}],"ports":[{"port":8080}]}]}"#,
    ])
    .ok();
    eventually("the new address mirrored", || {
        let s = json_of(&c, &["get", "endpointslices", "-l", "kubernetes.io/service-name=nginx-service"]);
        (s["items"][0]["endpoints"][0]["addresses"][0] == "192.10.0.2").then_some(())
    });
    c.kubectl(&["delete", "endpoints", "nginx-service"]).ok();
    eventually("the slice gone", || {
        c.kubectl(&["get", "endpointslices", "-l", "kubernetes.io/service-name=nginx-service", "-o", "name"])
            .ok()
            .trim()
            .is_empty()
            .then_some(())
    });
}

#[test]
fn a_stopped_node_takes_its_endpoints_with_it() {
    let c = cluster();
    let kubelets = nodes(&c);
    c.kubectl(&["create", "deployment", "web", "--image=nginx", "--replicas=4", "--port=80"]).ok();
    c.kubectl(&["expose", "deployment", "web", "--port=80"]).ok();
    c.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]).ok();
    eventually("4 ready endpoints", || {
        let e = slice_endpoints(&c, "web");
        (e.len() == 4 && e.values().all(|e| e.0)).then_some(())
    });
    kubelets[1].stop();
    // Three seconds without a heartbeat: NotReady, and its pods' endpoints leave.
    eventually("node-2 NotReady", || {
        let nodes = rows(&c.kubectl(&["get", "nodes"]).ok());
        (row(&nodes, "node-2")[1] == "NotReady").then_some(())
    });
    let status = json_of(&c, &["get", "node", "node-2"]);
    let ready =
        status["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap().clone();
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("Unknown"), Some("NodeStatusUnknown")));
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");
    eventually("node-2's endpoints out of service", || {
        let e = slice_endpoints(&c, "web");
        let (two, one): (Vec<_>, Vec<_>) = e.values().partition(|e| e.3 == "node-2");
        (!two.is_empty() && two.iter().all(|e| !e.0) && one.iter().all(|e| e.0)).then_some(())
    });
    let taints = c.kubectl(&["get", "node", "node-2", "-o", "jsonpath={.spec.taints[*].key}"]).ok();
    assert!(taints.contains("node.kubernetes.io/unreachable"), "{taints}");
    let pod_events = c
        .kubectl(&["get", "events", "--field-selector", "reason=NodeNotReady", "-o", "jsonpath={.items[*].message}"])
        .ok();
    assert!(pod_events.contains("Node is not ready"), "{pod_events}");
}

#[test]
fn a_pod_that_fits_nowhere_says_why() {
    let c = cluster();
    let _kubelets = nodes(&c);
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: picky\nspec:\n  nodeSelector:\n    disktype: ssd\n  containers:\n  - name: c\n    image: nginx\n";
    c.kubectl_stdin(&["apply", "-f", "-"], Some(pod)).ok();
    let want = "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. no new claims to deallocate, preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.";
    let event = eventually("a FailedScheduling event", || {
        let out = c
            .kubectl(&[
                "get",
                "events",
                "--field-selector",
                "reason=FailedScheduling,involvedObject.name=picky",
                "-o",
                "jsonpath={.items[0].message}",
            ])
            .ok();
        (!out.is_empty()).then_some(out)
    });
    assert_eq!(event, want);
    let cond = c
        .kubectl(&["get", "pod", "picky", "-o", "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].reason}"])
        .ok();
    assert_eq!(cond, "Unschedulable");
    // A node that matches arrives: the pod is placed there.
    c.kubectl(&["label", "node", "node-2", "disktype=ssd"]).ok();
    eventually("picky bound to node-2", || {
        (c.kubectl(&["get", "pod", "picky", "-o", "jsonpath={.spec.nodeName}"]).ok() == "node-2").then_some(())
    });
    let scheduled = c
        .kubectl(&[
            "get",
            "events",
            "--field-selector",
            "reason=Scheduled,involvedObject.name=picky",
            "-o",
            "jsonpath={.items[0].message}",
        ])
        .ok();
    assert_eq!(scheduled, "Successfully assigned default/picky to node-2");
}

#[test]
fn endpoints_written_before_their_service_are_kept_and_mirrored() {
    let c = cluster();
    let ep = "apiVersion: v1\nkind: Endpoints\nmetadata:\n  name: db\nsubsets:\n- addresses:\n  - ip: 192.10.0.9\n  ports:\n  - port: 5432\n";
    c.kubectl_stdin(&["apply", "-f", "-"], Some(ep)).ok();
    std::thread::sleep(std::time::Duration::from_millis(500));
    c.kubectl(&["get", "endpoints", "db"]).ok();
    let svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: db\nspec:\n  ports:\n  - port: 5432\n";
    c.kubectl_stdin(&["apply", "-f", "-"], Some(svc)).ok();
    eventually("the mirrored slice", || {
        let s = json_of(&c, &["get", "endpointslices", "-l", "kubernetes.io/service-name=db"]);
        (s["items"][0]["endpoints"][0]["addresses"][0] == "192.10.0.9").then_some(())
    });
}

#[test]
fn a_rollout_that_cannot_progress_exceeds_its_deadline() {
    let c = cluster();
    let kubelets = nodes(&c);
    for k in &kubelets {
        // The new pods never become ready.
        k.ready_on_start(false);
    }
    let deploy = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: stuck\nspec:\n  replicas: 2\n  progressDeadlineSeconds: 2\n  selector:\n    matchLabels: {app: stuck}\n  template:\n    metadata:\n      labels: {app: stuck}\n    spec:\n      containers:\n      - {name: c, image: nginx}\n";
    c.kubectl_stdin(&["apply", "-f", "-"], Some(deploy)).ok();
    let out = c.kubectl(&["rollout", "status", "deployment/stuck", "--timeout=60s"]).err();
    assert_eq!(out.trim(), "error: deployment \"stuck\" exceeded its progress deadline");
    let cond = c
        .kubectl(&[
            "get",
            "deployment",
            "stuck",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Progressing\")].message}",
        ])
        .ok();
    assert!(cond.ends_with("has timed out progressing."), "{cond}");
}

/// Node IPAM: each node gets the next /24 of --cluster-cidr; a full range says so.
#[test]
fn nodes_get_pod_cidrs_until_the_range_is_full() {
    let c = common::cluster_with(Options { cluster_cidr: "10.244.0.0/23", ..Default::default() });
    let _kubelets = nodes(&c);
    let cidrs = eventually("both nodes have a pod CIDR", || {
        let out = c
            .kubectl(&[
                "get",
                "nodes",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name}={.spec.podCIDR},{.spec.podCIDRs[0]} {end}",
            ])
            .ok();
        let pairs: BTreeMap<String, String> = out
            .split_whitespace()
            .filter_map(|p| p.split_once('='))
            .filter(|(_, c)| !c.starts_with(','))
            .map(|(n, c)| (n.to_string(), c.to_string()))
            .collect();
        (pairs.len() == 2).then_some(pairs)
    });
    let got: std::collections::BTreeSet<&str> = cidrs.values().map(String::as_str).collect();
    assert_eq!(
        got,
        std::collections::BTreeSet::from(["10.244.0.0/24,10.244.0.0/24", "10.244.1.0/24,10.244.1.0/24"]),
        "{cidrs:?}"
    );
    // A third node finds the range full.
    c.kubectl_stdin(&["apply", "-f", "-"], Some("apiVersion: v1\nkind: Node\nmetadata:\n  name: node-3\n")).ok();
    let event = eventually("a CIDRNotAvailable event", || {
        let out = c.kubectl(&["get", "events", "--field-selector", "involvedObject.name=node-3", "-o", "json"]).ok();
        let v: Value = serde_json::from_str(&out).unwrap();
        v["items"].as_array().unwrap().iter().find(|e| e["reason"] == "CIDRNotAvailable").cloned()
    });
    assert_eq!(event["message"], "Node node-3 status is now: CIDRNotAvailable");
    assert_eq!(event["type"], "Normal");
    assert_eq!(event["source"]["component"], "cidrAllocator");
    // Deleting a node frees its CIDR for the waiting one.
    c.kubectl(&["delete", "node", "node-1"]).ok();
    let freed = eventually("node-3 gets the freed CIDR", || {
        let out = c.kubectl(&["get", "node", "node-3", "-o", "jsonpath={.spec.podCIDR}"]).ok();
        (!out.is_empty()).then_some(out)
    });
    assert_eq!(Some(freed.as_str()), cidrs.get("node-1").and_then(|c| c.split(',').next()));
}
