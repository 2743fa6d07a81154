//! The codec against k8s-pb's prost types: what we encode, prost decodes to
//! the same values; what prost (like Go) encodes, we decode to the same JSON.
#![allow(clippy::unwrap_used)] // Tests: a failed step is a failed test.

use k8s_pb::api::{apps::v1 as apps, coordination::v1 as coord, core::v1 as core, discovery::v1 as disc};
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use kubesvc_api::schema::{canonicalize, def};
use kubesvc_wire::{decode_envelope, decode_object, encode_object, envelope};
use prost::Message;
use serde_json::{Value, json};

fn canonical(mut v: Value, d: &str) -> Value {
    canonicalize(def(d).unwrap(), &mut v).unwrap();
    v
}

/// Encodes with our codec, decodes with prost, re-encodes with prost, decodes
/// with ours again: the JSON must come back unchanged.
fn roundtrip<M: Message + Default>(obj: Value, d: &str, api_version: &str, kind: &str) -> M {
    let obj = canonical(obj, d);
    let ours = encode_object(&obj, def(d).unwrap(), api_version, kind);
    let (tm, raw) = decode_envelope(&ours).unwrap();
    assert_eq!((tm.api_version.as_str(), tm.kind.as_str()), (api_version, kind));
    let typed = M::decode(raw).expect("prost decodes what we encode");
    let theirs = envelope(api_version, kind, &typed.encode_to_vec());
    let (_, back) = decode_object(&theirs, def(d).unwrap()).unwrap();
    assert_eq!(canonical(back, d), obj, "JSON survives our encoder, prost, and our decoder");
    typed
}

#[test]
fn service() {
    let svc: core::Service = roundtrip(
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}, "annotations": {"a": ""},
                         "creationTimestamp": "2024-05-01T10:00:00Z", "resourceVersion": "42",
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Foo", "name": "f", "uid": "u1", "controller": true}]},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "selector": {"app": "web", "tier": "fe"},
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"},
                               {"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"}],
                     "allocateLoadBalancerNodePorts": false, "sessionAffinity": "ClientIP",
                     "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}}, "ipFamilies": ["IPv4"]},
            "status": {"loadBalancer": {}}}),
        "io.k8s.api.core.v1.Service",
        "v1",
        "Service",
    );
    let spec = svc.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.10"));
    assert_eq!(spec.ports[0].port, Some(80));
    assert_eq!(spec.ports[0].target_port.as_ref().unwrap().int_val, Some(8080));
    assert_eq!(spec.ports[1].target_port.as_ref().unwrap().str_val.as_deref(), Some("dns"));
    assert_eq!(spec.ports[1].target_port.as_ref().unwrap().r#type, Some(1));
    assert_eq!(spec.allocate_load_balancer_node_ports, Some(false), "a pointer to false survives");
    assert_eq!(spec.selector.get("tier").map(String::as_str), Some("fe"));
    let m = svc.metadata.unwrap();
    assert_eq!(m.creation_timestamp.unwrap().seconds, Some(1714557600));
    assert_eq!(m.owner_references[0].controller, Some(true));
}

#[test]
fn pod_with_flattened_embeddings() {
    let pod: core::Pod = roundtrip(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "nginx",
                        "ports": [{"containerPort": 80, "name": "http", "protocol": "TCP"}],
                        "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}},
                                {"name": "CM", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k", "optional": false}}}],
                        "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
                        "readinessProbe": {"httpGet": {"path": "/", "port": "http", "scheme": "HTTP"}, "periodSeconds": 5},
                        "livenessProbe": {"tcpSocket": {"port": 80}},
                        "securityContext": {"runAsUser": 0, "privileged": false}}],
                     "volumes": [{"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 420, "items": [{"key": "a", "path": "b"}]}},
                                 {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
                     "terminationGracePeriodSeconds": 0, "enableServiceLinks": false},
            "status": {"phase": "Running", "podIP": "10.1.0.5", "podIPs": [{"ip": "10.1.0.5"}],
                       "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-05-01T10:00:00Z"}],
                       "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0, "image": "nginx", "imageID": "",
                                              "started": true, "state": {"running": {"startedAt": "2024-05-01T10:00:01Z"}}}]}}),
        "io.k8s.api.core.v1.Pod",
        "v1",
        "Pod",
    );
    let spec = pod.spec.unwrap();
    let vol = &spec.volumes[0];
    assert_eq!(vol.volume_source.as_ref().unwrap().config_map.as_ref().unwrap().default_mode, Some(420));
    assert_eq!(
        vol.volume_source
            .as_ref()
            .unwrap()
            .config_map
            .as_ref()
            .unwrap()
            .local_object_reference
            .as_ref()
            .unwrap()
            .name
            .as_deref(),
        Some("cfg"),
        "ConfigMapVolumeSource.name lives in the embedded LocalObjectReference"
    );
    let c = &spec.containers[0];
    let probe = c.readiness_probe.as_ref().unwrap();
    assert_eq!(
        probe.handler.as_ref().unwrap().http_get.as_ref().unwrap().port.as_ref().unwrap().str_val.as_deref(),
        Some("http")
    );
    assert_eq!(c.security_context.as_ref().unwrap().run_as_user, Some(0), "a pointer to 0 survives");
    assert_eq!(c.resources.as_ref().unwrap().limits.get("cpu").unwrap().string.as_deref(), Some("500m"));
    assert_eq!(spec.termination_grace_period_seconds, Some(0));
    assert_eq!(spec.enable_service_links, Some(false));
}

#[test]
fn deployment_slice_lease_event() {
    let d: apps::Deployment = roundtrip(
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "generation": 3},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}},
            "status": {"observedGeneration": 3, "conditions": [{"type": "Available", "status": "True",
                       "lastUpdateTime": "2024-05-01T10:00:00Z", "lastTransitionTime": "2024-05-01T10:00:00Z"}]}}),
        "io.k8s.api.apps.v1.Deployment",
        "apps/v1",
        "Deployment",
    );
    assert_eq!(d.spec.as_ref().unwrap().replicas, Some(0), "replicas: 0 must not become the default 1");
    let ru = d.spec.unwrap().strategy.unwrap().rolling_update.unwrap();
    assert_eq!(ru.max_surge.unwrap().str_val.as_deref(), Some("25%"));
    assert_eq!(ru.max_unavailable.unwrap().int_val, Some(0));

    let s: disc::EndpointSlice = roundtrip(
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}}, "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.1.0.5"], "conditions": {"ready": false, "serving": true, "terminating": false},
                           "nodeName": "n1", "targetRef": {"kind": "Pod", "name": "p", "namespace": "default"}}],
            "ports": [{"name": "", "port": 80, "protocol": "TCP"}]}),
        "io.k8s.api.discovery.v1.EndpointSlice",
        "discovery.k8s.io/v1",
        "EndpointSlice",
    );
    assert_eq!(s.endpoints[0].conditions.as_ref().unwrap().ready, Some(false), "ready: false is not unknown");
    assert_eq!(s.ports[0].name.as_deref(), Some(""));

    let l: coord::Lease = roundtrip(
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "n1", "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40, "renewTime": "2024-05-01T10:00:00.123456Z"}}),
        "io.k8s.api.coordination.v1.Lease",
        "coordination.k8s.io/v1",
        "Lease",
    );
    assert_eq!(l.spec.unwrap().renew_time.unwrap().nanos, Some(123_456_000));

    let _: core::Event = roundtrip(
        json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "p"}, "reason": "Started", "count": 2,
            "firstTimestamp": "2024-05-01T10:00:00Z", "eventTime": "2024-05-01T10:00:00.000001Z", "type": "Normal",
            "series": {"count": 3, "lastObservedTime": "2024-05-01T10:00:05.500000Z"}}),
        "io.k8s.api.core.v1.Event",
        "v1",
        "Event",
    );
}

/// Go writes every non-pointer field, zero or not; canonical JSON drops the unset ones.
#[test]
fn go_style_zero_fields_are_dropped() {
    let ns = core::Namespace {
        metadata: Some(meta::ObjectMeta {
            name: Some("demo".into()),
            generate_name: Some(String::new()),
            namespace: Some(String::new()),
            uid: Some(String::new()),
            resource_version: Some(String::new()),
            generation: Some(0),
            creation_timestamp: Some(meta::Time { seconds: Some(0), nanos: Some(0) }),
            ..Default::default()
        }),
        spec: Some(core::NamespaceSpec::default()),
        status: Some(core::NamespaceStatus { phase: Some(String::new()), ..Default::default() }),
    };
    let body = envelope("v1", "Namespace", &ns.encode_to_vec());
    let (tm, obj) = decode_object(&body, def("io.k8s.api.core.v1.Namespace").unwrap()).unwrap();
    assert_eq!(tm.kind, "Namespace");
    assert_eq!(
        canonical(obj, "io.k8s.api.core.v1.Namespace"),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}, "spec": {}, "status": {}})
    );
}

#[test]
fn bad_bodies_are_errors() {
    let d = def("io.k8s.api.core.v1.Service").unwrap();
    assert!(decode_object(b"{\"json\": true}", d).is_err());
    assert!(decode_object(b"k8s\0", d).is_err());
    assert!(decode_object(b"k8s\0\x0a\xff", d).is_err(), "truncated length");
    let mut garbage = b"k8s\0".to_vec();
    garbage.extend_from_slice(&[0x12, 0x03, 0x0a, 0x05, 0x01]);
    assert!(decode_object(&garbage, d).is_err(), "inner message longer than its field");
}

#[test]
fn watch_frames() {
    let inner = envelope("v1", "Namespace", b"");
    let mut stream = kubesvc_wire::encode_watch_frame("ADDED", &inner);
    stream.extend(kubesvc_wire::encode_watch_frame("DELETED", &inner));
    let (frame, rest) = kubesvc_wire::decode_watch_frame(&stream).unwrap().unwrap();
    assert_eq!((frame.event_type.as_str(), frame.object.as_slice()), ("ADDED", inner.as_slice()));
    let ev = meta::WatchEvent::decode(&stream[4..4 + (stream.len() - rest.len() - 4)]).unwrap();
    assert_eq!(ev.r#type.as_deref(), Some("ADDED"));
    let (frame, rest) = kubesvc_wire::decode_watch_frame(rest).unwrap().unwrap();
    assert_eq!(frame.event_type, "DELETED");
    assert!(rest.is_empty());
}

/// Truncated, bit-flipped and random bodies decode to an error or a value, never a panic.
#[test]
fn mangled_bodies_never_panic() {
    let d = def("io.k8s.api.core.v1.Pod").unwrap();
    let pod = canonical(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}},
               "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}],
                        "resources": {"limits": {"cpu": "1"}}}], "volumes": [{"name": "v", "emptyDir": {}}]},
               "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}}),
        "io.k8s.api.core.v1.Pod",
    );
    let good = encode_object(&pod, d, "v1", "Pod");
    let mut rng: u64 = 0x9E3779B97F4A7C15;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for len in 0..good.len() {
        let _ = decode_object(&good[..len], d);
    }
    for _ in 0..20_000 {
        let mut b = good.clone();
        for _ in 0..(1 + next() % 4) {
            let i = (next() as usize) % b.len();
            b[i] ^= 1 << (next() % 8);
        }
        let _ = decode_object(&b, d);
        let _ = kubesvc_wire::decode_list(&b, d);
        let _ = kubesvc_wire::decode_watch_frame(&b);
    }
    for _ in 0..5_000 {
        let mut b = b"k8s\0".to_vec();
        b.extend((0..(next() % 64)).map(|_| next() as u8));
        let _ = decode_object(&b, d);
    }
}
