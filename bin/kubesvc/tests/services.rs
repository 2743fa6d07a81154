//! Service address allocation end to end: cluster IPs and node ports as a
//! real cluster hands them out, refuses them and gives them back, the
//! built-in Services, and the repair of allocations after a crash.
#![allow(clippy::unwrap_used)] // Tests: a failed step is a failed test.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use kubesvc_api::kinds::service::ServiceView;
use kubesvc_api::net::Cidr;
use kubesvc_store::{RangeRequest, Store};
use kubesvc_testsupport::{Cluster, NODE_IP, Options};
use serde_json::{Value, json};

fn apply(c: &Cluster, yaml: &str) -> kubesvc_testsupport::Run {
    c.kubectl_stdin(&["apply", "-f", "-"], Some(yaml))
}

fn get(c: &Cluster, what: &str, ns: &str) -> Value {
    serde_json::from_str(&c.kubectl(&["get", what, "-n", ns, "-o", "json"]).ok()).unwrap()
}

fn service(name: &str, spec: Value) -> Service {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

/// The allocation keys in the store, and what the stored Services hold, read
/// at one revision: of the in-process server's store, or from the database of
/// a stopped server process.
fn store_contents(c: &Cluster) -> (BTreeMap<String, String>, BTreeSet<String>) {
    if !c.is_process() {
        return c.rt.block_on(allocations(&*c.store()));
    }
    let store = kubesvc_store::redb::RedbStore::open(&c.dir.path().join("kubesvc.redb")).unwrap();
    let contents = c.rt.block_on(allocations(&store));
    store.close();
    contents
}

async fn allocations(store: &dyn Store) -> (BTreeMap<String, String>, BTreeSet<String>) {
    let services = store.range(RangeRequest::prefix(b"/registry/services/")).await.unwrap();
    let mut at = RangeRequest::prefix(b"/allocations/");
    at.revision = services.revision;
    let keys = store.range(at).await.unwrap();
    let held = keys
        .kvs
        .iter()
        .map(|kv| {
            let owner: Value = serde_json::from_slice(&kv.value).unwrap();
            let key = String::from_utf8_lossy(&kv.key).to_string();
            (key, format!("{}/{}", owner["namespace"].as_str().unwrap(), owner["name"].as_str().unwrap()))
        })
        .collect();
    let mut wanted = BTreeSet::new();
    for kv in &services.kvs {
        let svc: Value = serde_json::from_slice(&kv.value).unwrap();
        let v = ServiceView::new(&svc);
        for ip in v.allocated_ips() {
            wanted.insert(format!("/allocations/serviceips/{ip}"));
        }
        for p in v.held_node_ports() {
            wanted.insert(format!("/allocations/nodeports/{p}"));
        }
        if v.needs_health_check() {
            wanted.insert(format!("/allocations/nodeports/{}", v.health_check_node_port));
        }
    }
    (held, wanted)
}

#[test]
fn concurrent_creates_never_share_an_address() {
    let c = common::cluster();
    let (ips, ports) = c.rt.block_on(async {
        let api: Api<Service> = Api::default_namespaced(c.client().await.unwrap());
        let creates = (0..100).map(|i| {
            let api = api.clone();
            async move {
                let ty = if i % 2 == 0 { "ClusterIP" } else { "NodePort" };
                let spec =
                    json!({"type": ty, "selector": {"app": "a"}, "ports": [{"port": 80}, {"name": "b", "port": 81}]});
                let mut spec = spec;
                spec["ports"][0]["name"] = json!("a");
                api.create(&PostParams::default(), &service(&format!("s{i:03}"), spec)).await.unwrap()
            }
        });
        let created = futures::future::join_all(creates).await;
        let mut ips = Vec::new();
        let mut ports = Vec::new();
        for s in created {
            let spec = s.spec.unwrap();
            ips.push(spec.cluster_ip.unwrap());
            for p in spec.ports.unwrap() {
                if let Some(np) = p.node_port {
                    ports.push(np);
                }
            }
        }
        (ips, ports)
    });
    let range = Cidr::parse("10.96.0.0/12").unwrap();
    let distinct: BTreeSet<&String> = ips.iter().collect();
    assert_eq!(distinct.len(), 100, "100 services, 100 addresses");
    for ip in &ips {
        let addr: IpAddr = ip.parse().unwrap();
        assert!(range.contains(&addr), "{ip} is in the service range");
        assert!(ip != "10.96.0.1" && ip != "10.96.0.10", "{ip} is not a built-in's");
        // Automatic addresses come from the dynamic band, above the first 256.
        assert!(range.offset(&addr).unwrap() > 256, "{ip} is in the dynamic band");
    }
    let distinct: BTreeSet<&i32> = ports.iter().collect();
    assert_eq!((ports.len(), distinct.len()), (100, 100), "50 NodePort services with two ports each");
    assert!(ports.iter().all(|p| (30086..=32767).contains(p)), "node ports from the dynamic band: {ports:?}");

    // Every address is recorded once, for its own Service, and nothing else is.
    let (held, wanted) = store_contents(&c);
    assert_eq!(held.keys().cloned().collect::<BTreeSet<_>>(), wanted);
    assert_eq!(held.len(), 2 + 100 + 100);
}

#[test]
fn a_full_range_gives_kubernetes_errors_and_failed_creates_leak_nothing() {
    // 14 usable addresses: kubernetes takes .1 and kube-dns .10; five node ports.
    let c = common::cluster_with(Options {
        service_cidr: "10.0.0.0/28",
        node_port_range: "30000-30004",
        ..Default::default()
    });
    for i in 0..5 {
        c.kubectl(&["create", "service", "nodeport", &format!("np{i}"), "--tcp=80"]).ok();
    }
    assert_eq!(
        c.kubectl(&["create", "service", "nodeport", "np5", "--tcp=80"]).err().trim(),
        "error: failed to create NodePort service: Internal error occurred: failed to allocate a nodePort: range is full"
    );
    // That create had taken an address before it failed: it must not have kept it.
    for i in 0..7 {
        c.kubectl(&["create", "service", "clusterip", &format!("ip{i}"), "--tcp=80"]).ok();
    }
    assert_eq!(
        c.kubectl(&["create", "service", "clusterip", "ip7", "--tcp=80"]).err().trim(),
        "error: failed to create ClusterIP service: Internal error occurred: failed to allocate a serviceIP: range is full"
    );
    let ips: BTreeSet<String> = get(&c, "services", "default")["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["spec"]["clusterIP"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ips.len(), 1 + 5 + 7);
    // Deleting gives the address and ports back.
    c.kubectl(&["delete", "service", "np0"]).ok();
    c.kubectl(&["create", "service", "nodeport", "np5", "--tcp=80"]).ok();
    c.kubectl(&["delete", "service", "ip0"]).ok();
    c.kubectl(&["create", "service", "clusterip", "ip7", "--tcp=80"]).ok();
    // Headless and ExternalName services need no address.
    c.kubectl(&["create", "service", "clusterip", "hl", "--clusterip=None"]).ok();
    c.kubectl(&["create", "service", "externalname", "en", "--external-name=db.example.com"]).ok();
}

#[test]
fn requested_addresses_and_ports() {
    let c = common::cluster();
    let svc =
        |name: &str, spec: &str| format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n{spec}");
    apply(&c, &svc("fixed", "  type: NodePort\n  clusterIP: 10.96.5.5\n  ports:\n  - port: 80\n    nodePort: 30080\n"))
        .ok();
    let fixed = get(&c, "service/fixed", "default");
    assert_eq!(fixed["spec"]["clusterIP"], "10.96.5.5");
    assert_eq!(fixed["spec"]["clusterIPs"], json!(["10.96.5.5"]));
    assert_eq!(fixed["spec"]["ports"][0]["nodePort"], 30080);

    let cases = [
        (
            svc("a", "  clusterIP: 10.96.5.5\n  ports:\n  - port: 80\n"),
            r#"The Service "a" is invalid: spec.clusterIPs: Invalid value: ["10.96.5.5"]: failed to allocate IP 10.96.5.5: provided IP is already allocated"#,
        ),
        (
            svc("b", "  clusterIP: 192.168.1.5\n  ports:\n  - port: 80\n"),
            r#"The Service "b" is invalid: spec.clusterIPs: Invalid value: ["192.168.1.5"]: failed to allocate IP 192.168.1.5: the provided network does not match the current range"#,
        ),
        (
            svc("c", "  type: NodePort\n  ports:\n  - port: 80\n    nodePort: 30080\n"),
            r#"The Service "c" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"#,
        ),
        (
            svc("d", "  type: NodePort\n  ports:\n  - port: 80\n    nodePort: 80\n"),
            r#"The Service "d" is invalid: spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767"#,
        ),
        (
            svc(
                "e",
                "  type: LoadBalancer\n  externalTrafficPolicy: Local\n  healthCheckNodePort: 30080\n  ports:\n  - port: 80\n",
            ),
            r#"Error from server (InternalError): error when creating "STDIN": Internal error occurred: failed to allocate requested HealthCheck NodePort 30080: provided port is already allocated"#,
        ),
        (
            svc("f", "  ipFamilyPolicy: RequireDualStack\n  ports:\n  - port: 80\n"),
            r#"The Service "f" is invalid: spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for dual-stack services"#,
        ),
        (
            svc("g", "  ipFamilies: [IPv6]\n  ports:\n  - port: 80\n"),
            r#"The Service "g" is invalid: spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster"#,
        ),
    ];
    for (yaml, want) in cases {
        assert_eq!(apply(&c, &yaml).err().trim(), want);
    }
    // Nothing those refusals allocated was kept: the ports and the address are still free.
    apply(&c, &svc("h", "  type: NodePort\n  clusterIP: 10.96.5.6\n  ports:\n  - port: 80\n    nodePort: 30081\n"))
        .ok();

    // 53/UDP and 53/TCP share one node port, as in Kubernetes.
    let dns = "  type: NodePort\n  ports:\n  - {name: dns, port: 53, protocol: UDP}\n  - {name: dns-tcp, port: 53, protocol: TCP}\n";
    apply(&c, &svc("dns", dns)).ok();
    let ports = get(&c, "service/dns", "default")["spec"]["ports"].clone();
    assert_eq!(ports[0]["nodePort"], ports[1]["nodePort"]);
    let shown = c.kubectl(&["get", "service", "dns", "--no-headers"]).ok();
    let np = ports[0]["nodePort"].as_i64().unwrap();
    assert!(shown.contains(&format!("53:{np}/UDP,53:{np}/TCP")), "{shown}");

    // A LoadBalancer with externalTrafficPolicy Local gets a health check port.
    apply(&c, &svc("lb", "  type: LoadBalancer\n  externalTrafficPolicy: Local\n  ports:\n  - port: 80\n")).ok();
    let lb = get(&c, "service/lb", "default");
    assert!(lb["spec"]["healthCheckNodePort"].as_i64().is_some_and(|p| (30000..=32767).contains(&p)));
    assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
    let row = c.kubectl(&["get", "service", "lb", "--no-headers"]).ok();
    assert!(row.split_whitespace().nth(3) == Some("<pending>"), "{row}");
}

fn node_port_of(c: &Cluster, name: &str) -> i64 {
    get(c, &format!("service/{name}"), "default")["spec"]["ports"][0]["nodePort"].as_i64().unwrap_or(0)
}

#[test]
fn type_changes_release_what_the_old_type_held() {
    let c = common::cluster();
    let svc =
        |name: &str, spec: &str| format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n{spec}");
    // NodePort -> ClusterIP releases the node port, keeps the address.
    apply(&c, &svc("np", "  type: NodePort\n  clusterIP: 10.96.7.7\n  ports:\n  - port: 80\n    nodePort: 30070\n"))
        .ok();
    c.kubectl(&["patch", "service", "np", "-p", r#"{"spec":{"type":"ClusterIP"}}"#]).ok();
    let np = get(&c, "service/np", "default");
    assert_eq!(np["spec"]["clusterIP"], "10.96.7.7");
    assert!(np["spec"]["ports"][0].get("nodePort").is_none());
    assert!(np["spec"].get("externalTrafficPolicy").is_none());
    apply(&c, &svc("np2", "  type: NodePort\n  ports:\n  - port: 80\n    nodePort: 30070\n")).ok();

    // ClusterIP -> ExternalName releases the address and clears every IP field.
    c.kubectl(&["patch", "service", "np", "-p", r#"{"spec":{"type":"ExternalName","externalName":"a.example.com"}}"#])
        .ok();
    let en = get(&c, "service/np", "default");
    for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy"] {
        assert!(en["spec"].get(f).is_none(), "{f} is gone: {}", en["spec"]);
    }
    apply(&c, &svc("reuse", "  clusterIP: 10.96.7.7\n  ports:\n  - port: 80\n")).ok();

    // ExternalName -> NodePort allocates an address and a node port.
    c.kubectl(&["patch", "service", "np", "-p", r#"{"spec":{"type":"NodePort","externalName":null}}"#]).ok();
    let back = get(&c, "service/np", "default");
    assert!(back["spec"]["clusterIP"].as_str().is_some_and(|ip| ip.starts_with("10.")));
    assert!(node_port_of(&c, "np") >= 30000);

    // LoadBalancer with Local -> Cluster releases the health check port.
    apply(&c, &svc("lb", "  type: LoadBalancer\n  externalTrafficPolicy: Local\n  healthCheckNodePort: 30090\n  ports:\n  - port: 80\n")).ok();
    c.kubectl(&["patch", "service", "lb", "-p", r#"{"spec":{"externalTrafficPolicy":"Cluster"}}"#]).ok();
    assert!(get(&c, "service/lb", "default")["spec"].get("healthCheckNodePort").is_none());
    apply(&c, &svc("hc", "  type: NodePort\n  ports:\n  - port: 80\n    nodePort: 30090\n")).ok();

    // LoadBalancer -> NodePort keeps the node ports and drops the LoadBalancer fields.
    let lb_port = node_port_of(&c, "lb");
    c.kubectl(&["patch", "service", "lb", "-p", r#"{"spec":{"type":"NodePort"}}"#]).ok();
    let lb = get(&c, "service/lb", "default");
    assert_eq!(lb["spec"]["ports"][0]["nodePort"], lb_port);
    assert!(lb["spec"].get("allocateLoadBalancerNodePorts").is_none());

    // An ExternalName Service may list node ports but holds none; becoming a NodePort it claims them.
    apply(
        &c,
        &svc(
            "en",
            "  type: ExternalName\n  externalName: b.example.com\n  ports:\n  - port: 80\n    nodePort: 30095\n",
        ),
    )
    .ok();
    apply(&c, &svc("en-np", "  type: NodePort\n  ports:\n  - port: 80\n    nodePort: 30095\n")).ok();
    c.kubectl(&["delete", "service", "en-np"]).ok();
    c.kubectl(&["patch", "service", "en", "-p", r#"{"spec":{"type":"NodePort","externalName":null}}"#]).ok();
    assert_eq!(node_port_of(&c, "en"), 30095);
    let taken = apply(&c, &svc("en-np", "  type: NodePort\n  ports:\n  - port: 80\n    nodePort: 30095\n")).err();
    assert!(taken.contains("provided port is already allocated"), "{taken}");

    // Changing a node port takes the new one and gives the old one back.
    c.kubectl(&["patch", "service", "np2", "-p", r#"{"spec":{"ports":[{"port":80,"nodePort":30071}]}}"#]).ok();
    apply(&c, &svc("np3", "  type: NodePort\n  ports:\n  - port: 80\n    nodePort: 30070\n")).ok();
    // Re-applying a manifest without the allocated values keeps them.
    let ip = get(&c, "service/np3", "default")["spec"]["clusterIP"].clone();
    apply(&c, &svc("np3", "  type: NodePort\n  ports:\n  - port: 80\n    nodePort: 30070\n")).ok();
    assert_eq!(get(&c, "service/np3", "default")["spec"]["clusterIP"], ip);

    // Deleting releases everything: the store holds exactly what the Services hold.
    c.kubectl(&["delete", "service", "np", "lb", "en"]).ok();
    let (held, wanted) = store_contents(&c);
    assert_eq!(held.keys().cloned().collect::<BTreeSet<_>>(), wanted);
}

#[test]
fn builtin_services_and_their_endpoints() {
    let c = common::cluster();
    let port = c.api_port().unwrap();
    let k = get(&c, "service/kubernetes", "default");
    assert_eq!(k["metadata"]["labels"], json!({"component": "apiserver", "provider": "kubernetes"}));
    assert_eq!(k["spec"]["clusterIP"], "10.96.0.1");
    assert_eq!(k["spec"]["ports"], json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]));
    assert!(k["spec"].get("selector").is_none());
    let ep = get(&c, "endpoints/kubernetes", "default");
    assert_eq!(
        ep["subsets"],
        json!([{"addresses": [{"ip": NODE_IP}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}])
    );
    let slice = get(&c, "endpointslice/kubernetes", "default");
    assert_eq!(slice["metadata"]["labels"], json!({"kubernetes.io/service-name": "kubernetes"}));
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(slice["endpoints"], json!([{"addresses": [NODE_IP], "conditions": {"ready": true}}]));

    let dns = c.kubectl(&["get", "service", "kube-dns", "-n", "kube-system", "--no-headers"]).ok();
    let cols: Vec<&str> = dns.split_whitespace().collect();
    assert_eq!(cols[..5], ["kube-dns", "ClusterIP", "10.96.0.10", "<none>", "53/UDP,53/TCP,9153/TCP"]);

    // Edited endpoints are restored; a deleted kubernetes Service (whose Endpoints the
    // endpoints controller then deletes, as in Kubernetes) comes back on the same address.
    c.kubectl(&[
        "patch",
        "endpoints",
        "kubernetes",
        "--type=merge",
        "-p",
        r#"{"subsets":[{"addresses":[{"ip":"10.1.1.1"}],"ports":[{"name":"https","port":1}]}]}"#,
    ])
    .ok();
    c.kubectl(&["delete", "service", "kubernetes"]).ok();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let svc = c.kubectl(&["get", "service", "kubernetes", "-o", "jsonpath={.spec.clusterIP}"]);
        let ep = c.kubectl(&["get", "endpoints", "kubernetes", "-o", "jsonpath={.subsets[0].addresses[0].ip}"]);
        if svc.success && svc.stdout == "10.96.0.1" && ep.stdout == NODE_IP {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the built-ins were not restored");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn dual_stack_services() {
    let c = common::cluster_with(Options { service_cidr: "10.96.0.0/16,fd00:10:96::/112", ..Default::default() });
    let svc =
        |name: &str, spec: &str| format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n{spec}");
    apply(&c, &svc("both", "  ipFamilyPolicy: PreferDualStack\n  ports:\n  - port: 80\n")).ok();
    let both = get(&c, "service/both", "default");
    assert_eq!(both["spec"]["ipFamilies"], json!(["IPv4", "IPv6"]));
    let ips = both["spec"]["clusterIPs"].as_array().unwrap();
    assert!(ips[0].as_str().unwrap().starts_with("10.96."));
    assert!(ips[1].as_str().unwrap().starts_with("fd00:10:96::"));
    assert_eq!(both["spec"]["clusterIP"], ips[0]);

    apply(&c, &svc("six", "  ipFamilies: [IPv6]\n  ports:\n  - port: 80\n")).ok();
    let six = get(&c, "service/six", "default");
    assert_eq!(six["spec"]["ipFamilyPolicy"], "SingleStack");
    assert!(six["spec"]["clusterIP"].as_str().unwrap().starts_with("fd00:10:96::"));

    // Upgrading a single-stack service allocates the secondary; downgrading releases it.
    apply(&c, &svc("up", "  ports:\n  - port: 80\n")).ok();
    c.kubectl(&["patch", "service", "up", "-p", r#"{"spec":{"ipFamilyPolicy":"RequireDualStack"}}"#]).ok();
    let up = get(&c, "service/up", "default");
    assert_eq!(up["spec"]["clusterIPs"].as_array().unwrap().len(), 2);
    let secondary = up["spec"]["clusterIPs"][1].as_str().unwrap().to_string();
    c.kubectl(&["patch", "service", "up", "-p", r#"{"spec":{"ipFamilyPolicy":"SingleStack"}}"#]).ok();
    let down = get(&c, "service/up", "default");
    assert_eq!(down["spec"]["clusterIPs"].as_array().unwrap().len(), 1);
    assert_eq!(down["spec"]["ipFamilies"], json!(["IPv4"]));
    apply(&c, &svc("reuse", &format!("  ipFamilies: [IPv6]\n  clusterIP: {secondary}\n  ports:\n  - port: 80\n"))).ok();

    // Headless services without a selector are dual-stack on any cluster.
    apply(&c, &svc("hl", "  clusterIP: None\n  ports:\n  - port: 80\n")).ok();
    let hl = get(&c, "service/hl", "default");
    assert_eq!(hl["spec"]["ipFamilyPolicy"], "RequireDualStack");
    assert_eq!(hl["spec"]["clusterIPs"], json!(["None"]));
}

#[test]
fn repair_after_a_crash_and_a_damaged_store() {
    let mut c = common::process();
    // Killed in the middle of concurrent creates: whatever was written is whole.
    let api_creates = c.rt.block_on(async {
        let api: Api<Service> = Api::default_namespaced(c.client().await.unwrap());
        for i in 0..10 {
            let spec = json!({"type": "NodePort", "ports": [{"port": 80}]});
            api.create(&PostParams::default(), &service(&format!("before{i}"), spec)).await.unwrap();
        }
        let mut handles = Vec::new();
        for i in 0..40 {
            let api = api.clone();
            let spec = json!({"type": "NodePort", "ports": [{"port": 80}]});
            handles.push(tokio::spawn(async move {
                api.create(&PostParams::default(), &service(&format!("k{i:02}"), spec)).await.is_ok()
            }));
        }
        handles
    });
    std::thread::sleep(std::time::Duration::from_millis(30));
    c.kill().unwrap();
    c.rt.block_on(async {
        for h in api_creates {
            let _ = h.await;
        }
    });
    let (held, wanted) = store_contents(&c);
    assert_eq!(held.keys().cloned().collect::<BTreeSet<_>>(), wanted, "every write was whole");

    // Damage the store as a crash of a less careful writer, or a hand edit, could.
    let victim =
        wanted.iter().find(|k| k.contains("serviceips") && !k.ends_with("10.96.0.1") && !k.ends_with("10.96.0.10"));
    let victim = victim.expect("at least one service was created").clone();
    {
        let store = kubesvc_store::redb::RedbStore::open(&c.dir.path().join("kubesvc.redb")).unwrap();
        c.rt.block_on(async {
            let mut txn = kubesvc_store::Txn::default();
            txn.ops.push(kubesvc_store::Op::Delete { key: victim.clone().into_bytes() });
            for leak in ["/allocations/serviceips/10.96.9.9", "/allocations/nodeports/30999"] {
                let owner = br#"{"namespace":"default","name":"gone","uid":"x"}"#;
                txn.ops.push(kubesvc_store::Op::Put { key: leak.as_bytes().to_vec(), value: owner.to_vec().into() });
            }
            assert!(store.txn(txn).await.unwrap().committed());
        });
        store.close();
    }
    c.start_again().unwrap();

    // The leaked address and port are free again; the lost one is recorded again.
    let svc =
        |name: &str, spec: &str| format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n{spec}");
    apply(
        &c,
        &svc("leaked", "  type: NodePort\n  clusterIP: 10.96.9.9\n  ports:\n  - port: 80\n    nodePort: 30999\n"),
    )
    .ok();
    let lost_ip = victim.rsplit('/').next().unwrap();
    let refused = apply(&c, &svc("lost", &format!("  clusterIP: {lost_ip}\n  ports:\n  - port: 80\n"))).err();
    assert!(refused.contains("provided IP is already allocated"), "{refused}");
    let events = get(&c, "events", "default");
    let repaired = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["reason"] == "ClusterIPNotAllocated")
        .expect("a ClusterIPNotAllocated event");
    assert_eq!(repaired["type"], "Warning");
    assert_eq!(repaired["message"], format!("Cluster IP [IPv4]: {lost_ip} is not allocated; repairing"));
    assert_eq!(repaired["involvedObject"]["kind"], "Service");

    c.stop().unwrap();
    let (held, wanted) = store_contents(&c);
    assert_eq!(held.keys().cloned().collect::<BTreeSet<_>>(), wanted);
}

#[test]
fn deleting_a_service_and_namespace_releases_addresses() {
    let c = common::cluster();
    c.kubectl(&["create", "namespace", "gone"]).ok();
    let svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  namespace: gone\nspec:\n  type: NodePort\n  clusterIP: 10.96.8.8\n  ports:\n  - port: 80\n    nodePort: 30088\n";
    apply(&c, svc).ok();
    c.kubectl(&["delete", "namespace", "gone", "--wait=true", "--timeout=60s"]).ok();
    let again = "apiVersion: v1\nkind: Service\nmetadata:\n  name: b\nspec:\n  type: NodePort\n  clusterIP: 10.96.8.8\n  ports:\n  - port: 80\n    nodePort: 30088\n";
    apply(&c, again).ok();
    c.rt.block_on(async {
        let api: Api<Service> = Api::default_namespaced(c.client().await.unwrap());
        api.delete("b", &DeleteParams::default()).await.unwrap();
    });
    apply(&c, again).ok();
}

/// A Service deleted the moment it was created gives its address back at
/// once: the same requested address and node port can be taken again and again.
#[test]
fn create_delete_recreate_in_quick_succession() {
    let c = common::cluster();
    c.rt.block_on(async {
        let api: Api<Service> = Api::default_namespaced(c.client().await.unwrap());
        let spec = json!({"type": "NodePort", "clusterIP": "10.96.6.6", "ports": [{"port": 80, "nodePort": 30066}]});
        for i in 0..30 {
            let name = format!("churn{}", i % 3);
            let created = api.create(&PostParams::default(), &service(&name, spec.clone())).await;
            let created = created.unwrap_or_else(|e| panic!("round {i}: {e}"));
            assert_eq!(created.spec.unwrap().cluster_ip.as_deref(), Some("10.96.6.6"));
            api.delete(&name, &DeleteParams::default()).await.unwrap();
        }
    });
}

/// A server-side dry run checks what it can and keeps nothing; the values it
/// shows for what it would allocate are Kubernetes' placeholders.
#[test]
fn dry_runs_allocate_nothing() {
    let c = common::cluster();
    let svc =
        |name: &str, spec: &str| format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n{spec}");
    let out = c
        .kubectl_stdin(
            &["create", "--dry-run=server", "-o", "json", "-f", "-"],
            Some(&svc("d", "  type: NodePort\n  ports:\n  - port: 80\n")),
        )
        .ok();
    let d: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(d["spec"]["clusterIP"], "10.96.0.0");
    assert_eq!(d["spec"]["ports"][0]["nodePort"], 32769);
    let fixed = svc("f", "  type: NodePort\n  clusterIP: 10.96.4.4\n  ports:\n  - port: 80\n    nodePort: 30044\n");
    c.kubectl_stdin(&["create", "--dry-run=server", "-f", "-"], Some(&fixed)).ok();
    c.kubectl_stdin(&["create", "--dry-run=server", "-f", "-"], Some(&fixed)).ok();
    c.kubectl_stdin(&["create", "-f", "-"], Some(&fixed)).ok();
    assert_eq!(
        c.kubectl_stdin(
            &["create", "--dry-run=server", "-f", "-"],
            Some(&svc("g", "  clusterIP: 192.168.1.5\n  ports:\n  - port: 80\n"))
        )
        .err()
        .trim(),
        r#"The Service "g" is invalid: spec.clusterIPs: Invalid value: ["192.168.1.5"]: failed to allocate IP 192.168.1.5: the provided IP (192.168.1.5) is not in the valid range. The range of valid IPs is 10.96.0.0/12"#
    );
    assert_eq!(rows_of(&c), 2, "kubernetes and f");
}

fn rows_of(c: &Cluster) -> usize {
    get(c, "services", "default")["items"].as_array().unwrap().len()
}
