//! The API below kubectl: raw requests (auth, limits, formats, errors) and
//! kube-rs (watches, paging, deletion semantics), each test on its own
//! in-process API server without controllers, whose writes would race the
//! very fields these tests check.
#![allow(clippy::unwrap_used)] // Tests: a failed step is a failed test.

mod common;

use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client};
use kubesvc_testsupport::{Cluster, Options};
use serde_json::{Value, json};

/// A raw request: (status, headers, body).
async fn raw(
    client: &Client,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> (StatusCode, http::HeaderMap, Bytes) {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(kube::client::Body::from(body.into())).unwrap();
    let resp = client.send(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    (parts.status, parts.headers, body.collect_bytes().await.unwrap())
}

fn json_of(b: &Bytes) -> Value {
    serde_json::from_slice(b).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(b)))
}

fn svc(name: &str) -> Service {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"ports": [{"port": 80}]}})).unwrap()
}

/// A client with no credentials at all, trusting the cluster CA.
async fn anonymous(c: &Cluster) -> Client {
    let mut kc = kube::config::Kubeconfig::read_from(&c.kubeconfig).unwrap();
    for u in &mut kc.auth_infos {
        if let Some(a) = u.auth_info.as_mut() {
            a.client_certificate_data = None;
            a.client_key_data = None;
        }
    }
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap();
    Client::try_from(cfg).unwrap()
}

#[test]
fn authentication() {
    let c = common::api_server();
    c.rt.block_on(async {
        let anon = anonymous(&c).await;
        let (status, _, body) = raw(&anon, Method::GET, "/api/v1/namespaces", &[], Bytes::new()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(json_of(&body), json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized", "code": 401}));
        let (status, _, _) = raw(&anon, Method::GET, "/api/v1/namespaces", &[("Authorization", "Bearer wrong")], Bytes::new()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let token = format!("Bearer {}", c.token());
        let (status, _, body) = raw(&anon, Method::GET, "/api/v1/namespaces", &[("Authorization", &token)], Bytes::new()).await;
        assert_eq!(status, StatusCode::OK, "{body:?}");
        // Health and version are public, as in Kubernetes.
        let (status, _, body) = raw(&anon, Method::GET, "/readyz", &[], Bytes::new()).await;
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
        let (status, _, body) = raw(&anon, Method::GET, "/version", &[], Bytes::new()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json_of(&body)["major"], "1");
        let (status, _, _) = raw(&anon, Method::POST, "/api/v1/namespaces/default/services", &[], Bytes::from_static(b"{}")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    });
}

/// Users come from client certificates (CN and O); the authorizer lets the
/// admin and node agents do anything and anyone else only discovery.
#[test]
fn certificate_users_and_authorization() {
    let c = common::api_server();
    c.rt.block_on(async {
        let node = c.client_as("system:node:n1", "system:nodes").await.unwrap();
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(node.clone());
        let n: k8s_openapi::api::core::v1::Node = serde_json::from_value(json!({"metadata": {"name": "n1"}})).unwrap();
        nodes.create(&PostParams::default(), &n).await.expect("a node agent registers its node");

        let alice = c.client_as("alice", "devs").await.unwrap();
        let pods: Api<Pod> = Api::default_namespaced(alice.clone());
        let err = pods.list(&ListParams::default()).await.unwrap_err();
        let kube::Error::Api(status) = err else { panic!("not a Status: {err}") };
        assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
        assert_eq!(
            status.message,
            r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default""#
        );
        let svcs: Api<Service> = Api::default_namespaced(alice.clone());
        let err = svcs.create(&PostParams::default(), &svc("s")).await.unwrap_err();
        assert!(err.to_string().contains(r#"User "alice" cannot create resource "services""#), "{err}");
        // Discovery is every authenticated user's.
        let (status, _, _) = raw(&alice, Method::GET, "/apis", &[], Bytes::new()).await;
        assert_eq!(status, StatusCode::OK);
        // Nothing alice asked for was written.
        let admin: Api<Service> = Api::default_namespaced(c.client().await.unwrap());
        assert!(admin.get_opt("s").await.unwrap().is_none());
    });
}

#[test]
fn bad_bodies_change_nothing() {
    // The API server alone: no controller writes, so the revision must not move.
    let c = common::api_server();
    c.rt.block_on(async {
        let client = c.client().await.unwrap();
        let path = "/api/v1/namespaces/default/services";
        let json_ct = [("Content-Type", "application/json")];
        let before = json_of(&raw(&client, Method::GET, path, &[], Bytes::new()).await.2);
        let rv_before = before["metadata"]["resourceVersion"].clone();

        let huge = format!(r#"{{"metadata":{{"name":"big","annotations":{{"a":"{}"}}}}}}"#, "x".repeat(3 * 1024 * 1024 + 10));
        let (status, _, body) = raw(&client, Method::POST, path, &json_ct, huge).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(json_of(&body)["message"], "Request entity too large: limit is 3145728");

        let (status, _, body) = raw(&client, Method::POST, path, &json_ct, "{\"metadata\": ").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let msg = json_of(&body)["message"].as_str().unwrap().to_string();
        assert!(msg.starts_with("the object provided is unrecognized (must be of type Service): couldn't get version/kind; json parse error: unexpected end of JSON input"), "{msg}");

        let (status, _, body) = raw(&client, Method::POST, path, &[("Content-Type", "application/yaml")], "metadata: [unclosed").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
        assert!(json_of(&body)["message"].as_str().unwrap().contains("error converting YAML to JSON"));

        let (status, _, body) = raw(&client, Method::POST, path, &json_ct, r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"}}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            json_of(&body)["message"],
            "Pod in version \"v1\" cannot be handled as a Service: converting (v1.Pod) to (core.Service): unknown conversion"
        );
        let (status, _, body) = raw(&client, Method::POST, path, &json_ct, r#"{"apiVersion":"v2","kind":"Service","metadata":{"name":"p"}}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(json_of(&body)["message"].as_str().unwrap().contains("no kind \"Service\" is registered for version \"v2\""));

        let (status, _, body) = raw(&client, Method::POST, path, &json_ct, r#"{"metadata":{"name":"p"},"spec":{"ports":[{"port":"http"}]}}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            json_of(&body)["message"],
            "Service in version \"v1\" cannot be handled as a Service: json: cannot unmarshal string into Go struct field ServicePort.spec.ports.port of type int32"
        );

        let (status, _, _) = raw(&client, Method::POST, path, &[("Content-Type", "text/plain")], "hello").await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let (status, _, body) = raw(&client, Method::POST, "/api/v1/namespaces/nowhere/services", &json_ct, r#"{"metadata":{"name":"x"}}"#).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(json_of(&body)["message"], "namespaces \"nowhere\" not found");
        let (status, _, body) = raw(&client, Method::POST, path, &json_ct, r#"{"metadata":{"name":"x","namespace":"kube-system"}}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(json_of(&body)["message"], "the namespace of the provided object does not match the namespace sent on the request");
        let (status, _, body) = raw(&client, Method::GET, "/api/v1/namespaces/default/widgets", &[], Bytes::new()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(json_of(&body)["message"], "the server could not find the requested resource");
        let (status, _, _) = raw(&client, Method::GET, "/api/v1/namespaces/default/services", &[("Accept", "text/html")], Bytes::new()).await;
        assert_eq!(status, StatusCode::NOT_ACCEPTABLE);

        let after = json_of(&raw(&client, Method::GET, path, &[], Bytes::new()).await.2);
        assert_eq!(after["items"], before["items"], "nothing was written");
        assert_eq!(after["metadata"]["resourceVersion"], rv_before);
    });
}

#[test]
fn field_validation_modes() {
    let c = common::api_server();
    c.rt.block_on(async {
        let client = c.client().await.unwrap();
        let body = r#"{"metadata":{"name":"w"},"spec":{"ports":[{"port":80,"extra":1}],"bogus":true}}"#;
        let ct = [("Content-Type", "application/json")];
        let (status, headers, _) = raw(&client, Method::POST, "/api/v1/namespaces/default/services?fieldValidation=Warn", &ct, body).await;
        assert_eq!(status, StatusCode::CREATED);
        let warnings: Vec<&str> = headers.get_all("warning").iter().map(|v| v.to_str().unwrap()).collect();
        // In document order, as Go's strict decoder finds them.
        assert_eq!(warnings, vec![r#"299 - "unknown field \"spec.ports[0].extra\"""#, r#"299 - "unknown field \"spec.bogus\"""#]);
        let (status, _, b) = raw(&client, Method::POST, "/api/v1/namespaces/default/services?fieldValidation=Strict", &ct, body.replace("\"w\"", "\"s\"")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            json_of(&b)["message"],
            "Service in version \"v1\" cannot be handled as a Service: strict decoding error: unknown field \"spec.ports[0].extra\", unknown field \"spec.bogus\""
        );
        let (status, headers, _) = raw(&client, Method::POST, "/api/v1/namespaces/default/services?fieldValidation=Ignore", &ct, body.replace("\"w\"", "\"i\"")).await;
        assert_eq!(status, StatusCode::CREATED);
        assert!(headers.get("warning").is_none());
        let (status, _, b) = raw(&client, Method::POST, "/api/v1/namespaces/default/services?fieldValidation=Loud", &ct, body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(json_of(&b)["message"].as_str().unwrap().contains("fieldValidation: Unsupported value: \"Loud\""));
        // Strict on a patch is a 422.
        let (status, _, b) = raw(
            &client,
            Method::PATCH,
            "/api/v1/namespaces/default/services/w?fieldValidation=Strict",
            &[("Content-Type", "application/merge-patch+json")],
            r#"{"spec":{"nope":1}}"#,
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(json_of(&b)["message"].as_str().unwrap().contains("strict decoding error: unknown field \"spec.nope\""));
    });
}

#[test]
fn protobuf_responses_and_watch_frames() {
    let c = common::api_server();
    c.kubectl(&["create", "service", "clusterip", "web", "--tcp=80:8080"]).ok();
    c.rt.block_on(async {
        let client = c.client().await.unwrap();
        let pb = [("Accept", "application/vnd.kubernetes.protobuf,application/json")];
        let def = kubesvc_api::schema::def("io.k8s.api.core.v1.Service").unwrap();
        let (status, headers, body) =
            raw(&client, Method::GET, "/api/v1/namespaces/default/services/web", &pb, Bytes::new()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "application/vnd.kubernetes.protobuf");
        let (tm, obj) = kubesvc_wire::decode_object(&body, def).unwrap();
        assert_eq!((tm.api_version.as_str(), tm.kind.as_str()), ("v1", "Service"));
        assert_eq!(obj["spec"]["ports"][0]["targetPort"], 8080);
        let (_, _, body) = raw(&client, Method::GET, "/api/v1/namespaces/default/services", &pb, Bytes::new()).await;
        let (tm, meta, items) = kubesvc_wire::decode_list(&body, def).unwrap();
        assert_eq!(tm.kind, "ServiceList");
        assert!(meta["resourceVersion"].as_str().is_some());
        let names: Vec<&str> = items.iter().map(|i| i["metadata"]["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["kubernetes", "web"], "the built-in kubernetes Service, and ours");

        let req = Request::builder()
            .uri("/api/v1/namespaces/default/services?watch=1&resourceVersion=0")
            .header("Accept", "application/vnd.kubernetes.protobuf,application/json")
            .body(kube::client::Body::empty())
            .unwrap();
        let resp = client.send(req).await.unwrap();
        assert_eq!(resp.headers()["content-type"], "application/vnd.kubernetes.protobuf;stream=watch");
        let mut body = resp.into_body();
        let mut buf = Vec::new();
        let mut events = Vec::new();
        let api: Api<Service> = Api::default_namespaced(client.clone());
        let mut created = false;
        while events.len() < 3 {
            let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
                .await
                .expect("a watch frame in time")
                .unwrap()
                .unwrap();
            if let Ok(data) = frame.into_data() {
                buf.extend_from_slice(&data);
            }
            while let Some((frame, rest)) = kubesvc_wire::decode_watch_frame(&buf).unwrap() {
                let (_, obj) = kubesvc_wire::decode_object(&frame.object, def).unwrap();
                events.push((frame.event_type, obj["metadata"]["name"].as_str().unwrap().to_string()));
                buf = rest.to_vec();
            }
            if !created && !events.is_empty() {
                api.create(&PostParams::default(), &svc("second")).await.unwrap();
                created = true;
            }
        }
        let added = |n: &str| ("ADDED".to_string(), n.to_string());
        assert_eq!(events, vec![added("kubernetes"), added("web"), added("second")]);
    });
}

#[test]
fn lists_page_consistently_and_watches_resume() {
    let c = common::cluster_with(Options { watch_cache_size: 20, controllers: false, ..Default::default() });
    c.kubectl(&["create", "namespace", "paging"]).ok();
    c.rt.block_on(async {
        let client = c.client().await.unwrap();
        let api: Api<Service> = Api::namespaced(client.clone(), "paging");
        for i in 0..5 {
            api.create(&PostParams::default(), &svc(&format!("s{i}"))).await.unwrap();
        }
        let page = api.list(&ListParams::default().limit(2)).await.unwrap();
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.metadata.remaining_item_count, Some(3));
        let token = page.metadata.continue_.clone().unwrap();
        let page_rv = page.metadata.resource_version.clone().unwrap();
        // Changes after the first page do not show in the later pages.
        api.delete("s3", &DeleteParams::default()).await.unwrap();
        api.create(&PostParams::default(), &svc("s9")).await.unwrap();
        let mut names: Vec<String> = page.items.iter().map(|s| s.metadata.name.clone().unwrap()).collect();
        let mut next = Some(token);
        while let Some(t) = next {
            let p = api.list(&ListParams::default().limit(2).continue_token(&t)).await.unwrap();
            assert_eq!(
                p.metadata.resource_version.as_deref(),
                Some(page_rv.as_str()),
                "every page at the first page's revision"
            );
            names.extend(p.items.iter().map(|s| s.metadata.name.clone().unwrap()));
            next = p.metadata.continue_.filter(|c| !c.is_empty());
        }
        assert_eq!(names, ["s0", "s1", "s2", "s3", "s4"]);

        // A watch from an old resourceVersion replays what followed it.
        let mut w = api.watch(&WatchParams::default().timeout(5), &page_rv).await.unwrap().boxed();
        let mut seen = Vec::new();
        while seen.len() < 2 {
            match w.try_next().await.unwrap().expect("events") {
                WatchEvent::Added(s) => seen.push(format!("ADDED {}", s.metadata.name.unwrap())),
                WatchEvent::Deleted(s) => seen.push(format!("DELETED {}", s.metadata.name.unwrap())),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(seen, ["DELETED s3", "ADDED s9"]);

        // Past the watch cache's window, the watch says 410 Gone.
        for i in 0..30 {
            api.patch(
                &format!("s{}", i % 3),
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"i": i.to_string()}}})),
            )
            .await
            .unwrap();
        }
        let mut w = api.watch(&WatchParams::default(), &page_rv).await.unwrap().boxed();
        match w.try_next().await.unwrap() {
            Some(WatchEvent::Error(e)) => {
                assert_eq!(e.code, 410);
                assert_eq!(e.reason, "Expired");
                assert!(e.message.starts_with(&format!("too old resource version: {page_rv} (")), "{}", e.message);
            }
            other => panic!("expected a 410 error event, got {other:?}"),
        }
    });
}

#[test]
fn initial_events_end_with_a_bookmark() {
    let c = common::api_server();
    c.kubectl(&["create", "namespace", "w"]).ok();
    c.kubectl(&["create", "service", "clusterip", "a", "--tcp=80", "-n", "w"]).ok();
    c.kubectl(&["create", "service", "clusterip", "b", "--tcp=80", "-n", "w"]).ok();
    c.rt.block_on(async {
        let client = c.client().await.unwrap();
        let req = Request::builder()
            .uri("/api/v1/namespaces/w/services?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true")
            .body(kube::client::Body::empty())
            .unwrap();
        let mut body = client.send(req).await.unwrap().into_body();
        let mut text = String::new();
        while text.lines().count() < 3 {
            let frame = tokio::time::timeout(Duration::from_secs(10), body.frame()).await.unwrap().unwrap().unwrap();
            text.push_str(&String::from_utf8_lossy(&frame.into_data().unwrap()));
        }
        let events: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(events[0]["type"], "ADDED");
        assert_eq!(events[1]["type"], "ADDED");
        assert_eq!(events[2]["type"], "BOOKMARK");
        assert_eq!(events[2]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"], "true");
        assert_eq!(events[2]["object"]["kind"], "Service");
    });
}

#[test]
fn deletion_finalizers_and_grace() {
    let c = common::api_server();
    c.rt.block_on(async {
        let client = c.client().await.unwrap();
        let api: Api<Service> = Api::default_namespaced(client.clone());
        let mut s = svc("held");
        s.metadata.finalizers = Some(vec!["example.com/hold".into()]);
        api.create(&PostParams::default(), &s).await.unwrap();
        let pending = api.delete("held", &DeleteParams::default()).await.unwrap();
        let held = pending.left().expect("the object stays while finalizers remain");
        assert!(held.metadata.deletion_timestamp.is_some());
        let err = api
            .patch(
                "held",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold", "example.com/more"]}})),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no new finalizers can be added if the object is being deleted"), "{err}");
        api.patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
            .await
            .unwrap();
        assert!(api.get_opt("held").await.unwrap().is_none(), "gone with its last finalizer");

        // A pod on a node is deleted gracefully: it stays, terminating, until deleted with grace 0.
        let pods: Api<Pod> = Api::default_namespaced(client.clone());
        let pod: Pod = serde_json::from_value(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}),
        )
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
        let (status, _, body) = raw(
            &client,
            Method::POST,
            "/api/v1/namespaces/default/pods/p/binding",
            &[("Content-Type", "application/json")],
            r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"p"},"target":{"kind":"Node","name":"node-1"}}"#,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body:?}");
        let bound = pods.get("p").await.unwrap();
        assert_eq!(bound.spec.as_ref().unwrap().node_name.as_deref(), Some("node-1"));
        let (status, _, _) = raw(
            &client,
            Method::POST,
            "/api/v1/namespaces/default/pods/p/binding",
            &[("Content-Type", "application/json")],
            r#"{"metadata":{"name":"p"},"target":{"kind":"Node","name":"node-2"}}"#,
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "a pod binds once");
        let terminating = pods.delete("p", &DeleteParams::default()).await.unwrap().left().expect("graceful");
        assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(30));
        assert!(pods.get_opt("p").await.unwrap().is_some());
        pods.delete("p", &DeleteParams::default().grace_period(0)).await.unwrap();
        assert!(pods.get_opt("p").await.unwrap().is_none());

        // Preconditions.
        api.create(&PostParams::default(), &svc("pre")).await.unwrap();
        let err = api
            .delete(
                "pre",
                &DeleteParams {
                    preconditions: Some(kube::api::Preconditions {
                        uid: Some("not-it".into()),
                        resource_version: None,
                    }),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("the UID in the precondition (not-it) does not match the UID in record"),
            "{err}"
        );

        // deletecollection with a selector.
        for (n, l) in [("x1", "x"), ("x2", "x"), ("y1", "y")] {
            let mut s = svc(n);
            s.metadata.labels = Some([("grp".to_string(), l.to_string())].into());
            api.create(&PostParams::default(), &s).await.unwrap();
        }
        api.delete_collection(&DeleteParams::default(), &ListParams::default().labels("grp=x")).await.unwrap();
        let left: Vec<String> = api
            .list(&ListParams::default().labels("grp"))
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|s| s.metadata.name.unwrap())
            .collect();
        assert_eq!(left, ["y1"]);
    });
}

#[test]
fn generations_status_and_leases() {
    let c = common::api_server();
    c.kubectl(&["create", "deployment", "web", "--image=nginx"]).ok();
    c.rt.block_on(async {
        let client = c.client().await.unwrap();
        let deploys: Api<Deployment> = Api::default_namespaced(client.clone());
        let d = deploys
            .patch("web", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})))
            .await
            .unwrap();
        assert_eq!(d.metadata.generation, Some(1), "a label change is not a spec change");
        let d = deploys
            .patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 3}})))
            .await
            .unwrap();
        assert_eq!(d.metadata.generation, Some(2));
        // Writes to the object ignore status; writes to /status ignore spec.
        let before = d.status.as_ref().and_then(|s| s.replicas);
        let d = deploys
            .patch("web", &PatchParams::default(), &Patch::Merge(json!({"status": {"replicas": 7}})))
            .await
            .unwrap();
        assert_eq!(d.status.as_ref().and_then(|s| s.replicas), before, "the patch's status.replicas is ignored");
        assert_eq!(d.metadata.generation, Some(2), "and moves no generation");
        let d = deploys
            .patch_status(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 9}, "status": {"replicas": 3, "observedGeneration": 2}})),
            )
            .await
            .unwrap();
        assert_eq!(d.status.as_ref().and_then(|s| s.replicas), Some(3));
        assert_eq!(d.spec.replicas, Some(3));
        assert_eq!(d.metadata.generation, Some(2));

        // A lease must be updated with its resourceVersion.
        let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
        let l: Lease = serde_json::from_value(
            json!({"metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40}}),
        )
        .unwrap();
        let created = leases.create(&PostParams::default(), &l).await.unwrap();
        let mut without_rv = created.clone();
        without_rv.metadata.resource_version = None;
        let err = leases.replace("n1", &PostParams::default(), &without_rv).await.unwrap_err();
        assert!(
            err.to_string().contains("metadata.resourceVersion: Invalid value: 0: must be specified for an update"),
            "{err}"
        );
        let mut renewed = created.clone();
        renewed.spec.as_mut().unwrap().renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
            "2026-01-01T00:00:00.123456Z".parse().unwrap(),
        ));
        let renewed = leases.replace("n1", &PostParams::default(), &renewed).await.unwrap();
        assert_eq!(renewed.spec.unwrap().renew_time.unwrap().0.to_string(), "2026-01-01T00:00:00.123456Z");
    });
}

/// kube-runtime's watcher (list, then watch with bookmarks) sees changes as they happen.
#[test]
fn kube_runtime_watcher() {
    let c = common::api_server();
    c.kubectl(&["create", "namespace", "w"]).ok();
    c.rt.block_on(async {
        let client = c.client().await.unwrap();
        let api: Api<Service> = Api::namespaced(client.clone(), "w");
        api.create(&PostParams::default(), &svc("before")).await.unwrap();
        let mut stream = kube::runtime::watcher(api.clone(), kube::runtime::watcher::Config::default()).boxed();
        let mut names = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), stream.try_next()).await.unwrap().unwrap().unwrap() {
                kube::runtime::watcher::Event::InitApply(s) => names.push(s.metadata.name.unwrap()),
                kube::runtime::watcher::Event::InitDone => break,
                _ => {}
            }
        }
        assert_eq!(names, ["before"]);
        api.create(&PostParams::default(), &svc("after")).await.unwrap();
        loop {
            if let kube::runtime::watcher::Event::Apply(s) =
                tokio::time::timeout(Duration::from_secs(10), stream.try_next()).await.unwrap().unwrap().unwrap()
            {
                assert_eq!(s.metadata.name.as_deref(), Some("after"));
                break;
            }
        }
    });
}

/// Edge cases of deletion, binding and scale that must not misbehave.
#[test]
fn deletion_binding_and_scale_edges() {
    let c = common::api_server();
    c.rt.block_on(async {
        let client = c.client().await.unwrap();
        let pods: Api<Pod> = Api::default_namespaced(client.clone());
        let pod = |name: &str| -> Pod {
            serde_json::from_value(
                json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "i"}]}}),
            )
            .unwrap()
        };
        let bind = |name: &'static str, node: &'static str| {
            let client = client.clone();
            async move {
                raw(
                    &client,
                    Method::POST,
                    &format!("/api/v1/namespaces/default/pods/{name}/binding"),
                    &[("Content-Type", "application/json")],
                    format!(r#"{{"metadata":{{"name":"{name}"}},"target":{{"kind":"Node","name":"{node}"}}}}"#),
                )
                .await
                .0
            }
        };

        // Racing binders: exactly one wins.
        pods.create(&PostParams::default(), &pod("race")).await.unwrap();
        let (a, b) = tokio::join!(bind("race", "node-a"), bind("race", "node-b"));
        let mut statuses = [a, b];
        statuses.sort();
        assert_eq!(statuses, [StatusCode::CREATED, StatusCode::CONFLICT]);

        // An absurd grace period is refused, not overflowed.
        let (status, _, body) = raw(
            &client,
            Method::DELETE,
            "/api/v1/namespaces/default/pods/race?gracePeriodSeconds=300000000000",
            &[],
            Bytes::new(),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body:?}");
        assert!(pods.get_opt("race").await.unwrap().is_some());

        // Graceful delete, then delete now, then the last finalizer goes: the pod is gone.
        let mut held = pod("held");
        held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
        pods.create(&PostParams::default(), &held).await.unwrap();
        assert_eq!(bind("held", "node-a").await, StatusCode::CREATED);
        pods.delete("held", &DeleteParams::default()).await.unwrap();
        pods.delete("held", &DeleteParams::default().grace_period(0)).await.unwrap();
        assert_eq!(pods.get("held").await.unwrap().metadata.deletion_grace_period_seconds, Some(0));
        pods.patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
            .await
            .unwrap();
        assert!(pods.get_opt("held").await.unwrap().is_none());

        // Scale with dryRun changes nothing.
        c.kubectl(&["create", "deployment", "web", "--image=nginx", "--replicas=2"]).ok();
        let (status, _, body) = raw(
            &client,
            Method::PATCH,
            "/apis/apps/v1/namespaces/default/deployments/web/scale?dryRun=All",
            &[("Content-Type", "application/merge-patch+json")],
            r#"{"spec":{"replicas":9}}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json_of(&body)["spec"]["replicas"], 9);
        let deploys: Api<Deployment> = Api::default_namespaced(client.clone());
        assert_eq!(deploys.get("web").await.unwrap().spec.replicas, Some(2));

        // Cluster-scoped resources do not live under a namespace.
        let (status, _, _) = raw(
            &client,
            Method::POST,
            "/api/v1/nodes",
            &[("Content-Type", "application/json")],
            r#"{"metadata":{"name":"n1"}}"#,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, _, _) = raw(&client, Method::GET, "/api/v1/nodes/n1", &[], Bytes::new()).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _, _) = raw(&client, Method::GET, "/api/v1/namespaces/default/nodes/n1", &[], Bytes::new()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    });
}

#[test]
fn list_and_watch_edges() {
    let c = common::api_server();
    c.kubectl(&["create", "namespace", "a"]).ok();
    c.kubectl(&["create", "namespace", "b"]).ok();
    c.rt.block_on(async {
        let client = c.client().await.unwrap();
        let in_a: Api<Service> = Api::namespaced(client.clone(), "a");
        let in_b: Api<Service> = Api::namespaced(client.clone(), "b");
        for i in 0..3 {
            in_a.create(&PostParams::default(), &svc(&format!("s{i}"))).await.unwrap();
            in_b.create(&PostParams::default(), &svc(&format!("s{i}"))).await.unwrap();
        }
        // A continue token is only good for the list it came from.
        let page = in_b.list(&ListParams::default().limit(1)).await.unwrap();
        let token = page.metadata.continue_.unwrap();
        let (status, _, body) =
            raw(&client, Method::GET, &format!("/api/v1/namespaces/a/services?limit=1&continue={token}"), &[], Bytes::new()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");

        // An object leaving a watch's selector is DELETED for it, as the watcher last saw it.
        in_a.patch("s0", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"tier": "web"}}}))).await.unwrap();
        let rv = in_a.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
        let mut w = in_a.watch(&WatchParams::default().labels("tier=web").timeout(10), &rv).await.unwrap().boxed();
        in_a.patch("s0", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"tier": "db"}}}))).await.unwrap();
        match w.try_next().await.unwrap() {
            Some(WatchEvent::Deleted(s)) => {
                assert_eq!(s.metadata.labels.unwrap()["tier"], "web", "the state the watcher could see");
                assert!(s.metadata.resource_version.unwrap().parse::<i64>().unwrap() > rv.parse::<i64>().unwrap());
            }
            other => panic!("expected DELETED, got {other:?}"),
        }

        // sendInitialEvents=false without a resourceVersion: only what changes from now on.
        let req = Request::builder()
            .uri("/api/v1/namespaces/a/services?watch=1&sendInitialEvents=false&resourceVersionMatch=NotOlderThan&timeoutSeconds=5")
            .body(kube::client::Body::empty())
            .unwrap();
        let mut body = client.send(req).await.unwrap().into_body();
        in_a.create(&PostParams::default(), &svc("fresh")).await.unwrap();
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame()).await.unwrap().unwrap().unwrap();
        let ev: Value = serde_json::from_slice(&frame.into_data().unwrap()).unwrap();
        assert_eq!((ev["type"].as_str(), ev["object"]["metadata"]["name"].as_str()), (Some("ADDED"), Some("fresh")));
    });
}

/// Bookmarks come with every event at or below their resourceVersion already sent.
#[test]
fn bookmarks_never_overtake_events() {
    let c = common::cluster_with(Options {
        bookmark_interval: Duration::from_secs(1),
        controllers: false,
        ..Default::default()
    });
    c.rt.block_on(async {
        let client = c.client().await.unwrap();
        let api: Api<Service> = Api::default_namespaced(client.clone());
        let rv = api.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
        let req = Request::builder()
            .uri(format!("/api/v1/namespaces/default/services?watch=1&allowWatchBookmarks=true&resourceVersion={rv}&timeoutSeconds=4"))
            .body(kube::client::Body::empty())
            .unwrap();
        let mut body = client.send(req).await.unwrap().into_body();
        let writer = {
            let api = api.clone();
            tokio::spawn(async move {
                for i in 0..300 {
                    api.create(&PostParams::default(), &svc(&format!("b{i:03}"))).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(8)).await;
                }
            })
        };
        let mut text = String::new();
        while let Ok(Some(Ok(frame))) = tokio::time::timeout(Duration::from_secs(10), body.frame()).await {
            text.push_str(&String::from_utf8_lossy(&frame.into_data().unwrap_or_default()));
        }
        writer.await.unwrap();
        let mut last = 0i64;
        let (mut bookmarks, mut events) = (0, 0);
        for line in text.lines() {
            let ev: Value = serde_json::from_str(line).unwrap();
            let rv: i64 = ev["object"]["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
            if ev["type"] == "BOOKMARK" {
                bookmarks += 1;
                assert!(rv >= last, "a bookmark never goes back: {rv} after {last}");
            } else {
                events += 1;
                assert!(rv > last, "an event at {rv} after a bookmark or event at {last}");
            }
            last = rv;
        }
        assert!(bookmarks >= 2, "{bookmarks} bookmarks in {events} events");
        assert!(events > 100);
    });
}
