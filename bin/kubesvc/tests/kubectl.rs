//! The real kubectl against kubesvc, each test on its own in-process cluster.
#![allow(clippy::unwrap_used)] // Tests: a failed step is a failed test.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{SEED_003, cluster, eventually, row, rows};
use serde_json::{Value, json};

#[test]
fn generators_create_what_kubectl_asks() {
    let c = cluster();
    // These generators send protobuf bodies.
    assert_eq!(c.kubectl(&["create", "namespace", "shop"]).ok().trim(), "namespace/shop created");
    assert_eq!(
        c.kubectl(&["create", "deployment", "web", "--image=nginx:1.25", "--replicas=4", "-n", "shop"]).ok().trim(),
        "deployment.apps/web created"
    );
    assert_eq!(
        c.kubectl(&["create", "deployment", "zero", "--image=nginx", "--replicas=0", "-n", "shop"]).ok().trim(),
        "deployment.apps/zero created"
    );
    assert_eq!(
        c.kubectl(&["create", "service", "clusterip", "web", "--tcp=80:8080", "-n", "shop"]).ok().trim(),
        "service/web created"
    );
    assert_eq!(
        c.kubectl(&["create", "service", "nodeport", "np", "--tcp=80:80", "-n", "shop"]).ok().trim(),
        "service/np created"
    );
    assert_eq!(
        c.kubectl(&["create", "service", "loadbalancer", "lb", "--tcp=443:8443", "-n", "shop"]).ok().trim(),
        "service/lb created"
    );
    assert_eq!(
        c.kubectl(&["create", "service", "externalname", "db", "--external-name=db.example.com", "-n", "shop"])
            .ok()
            .trim(),
        "service/db created"
    );
    assert_eq!(
        c.kubectl(&["create", "service", "clusterip", "hl", "--clusterip=None", "-n", "shop"]).ok().trim(),
        "service/hl created"
    );

    let ns = rows(&c.kubectl(&["get", "namespaces"]).ok());
    assert_eq!(ns[0], ["NAME", "STATUS", "AGE"]);
    for n in ["default", "kube-system", "kube-public", "kube-node-lease", "shop"] {
        assert_eq!(row(&ns, n)[1], "Active");
    }

    // The deployment controller makes 4 pods; no node runs them, so none is ready.
    let deploy = eventually("4 up-to-date replicas", || {
        let deploy = rows(&c.kubectl(&["get", "deployments", "-n", "shop"]).ok());
        (row(&deploy, "web")[2] == "4").then_some(deploy)
    });
    assert_eq!(deploy[0], ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert_eq!(row(&deploy, "web")[1..4], ["0/4", "4", "0"]);
    assert_eq!(row(&deploy, "zero")[1], "0/0", "replicas: 0 survives protobuf decoding");
    let wide = rows(&c.kubectl(&["get", "deploy", "web", "-n", "shop", "-o", "wide"]).ok());
    assert_eq!(wide[0], ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]);
    assert_eq!(wide[1][5..], ["nginx", "nginx:1.25", "app=web"]);

    let svc = rows(&c.kubectl(&["get", "svc", "-n", "shop", "-o", "wide"]).ok());
    assert_eq!(svc[0], ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]);
    assert_eq!(row(&svc, "web")[1], "ClusterIP");
    assert_eq!(row(&svc, "web")[4], "80/TCP");
    assert_eq!(row(&svc, "web")[6], "app=web");
    assert_eq!(row(&svc, "lb")[1], "LoadBalancer");
    assert_eq!(row(&svc, "lb")[3], "<pending>");
    assert_eq!(row(&svc, "db")[1..4], ["ExternalName", "<none>", "db.example.com"]);
    assert_eq!(row(&svc, "hl")[2..5], ["None", "<none>", "<none>"]);
    assert_service_ip(&row(&svc, "web")[2]);
    for (name, port) in [("np", "80"), ("lb", "443")] {
        let shown = &row(&svc, name)[4];
        let node_port: u16 = shown
            .strip_prefix(&format!("{port}:"))
            .and_then(|p| p.strip_suffix("/TCP"))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{shown} is port:nodePort/TCP"));
        assert!((30000..=32767).contains(&node_port), "{shown}");
    }

    // -o json and -o yaml carry the defaults Kubernetes sets.
    let d: Value =
        serde_json::from_str(&c.kubectl(&["get", "deploy", "web", "-n", "shop", "-o", "json"]).ok()).unwrap();
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"], "IfNotPresent");
    assert_eq!(d["metadata"]["generation"], 1);
    assert!(d["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap() > 0);
    let y = c.kubectl(&["get", "svc", "web", "-n", "shop", "-o", "yaml"]).ok();
    assert!(
        y.contains("kind: Service") && y.contains("targetPort: 8080") && y.contains("sessionAffinity: None"),
        "{y}"
    );
}

#[test]
fn apply_describe_patch_edit_delete() {
    let c = cluster();
    let svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: api\n  labels:\n    tier: backend\nspec:\n  selector:\n    app: api\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n";
    assert_eq!(c.kubectl_stdin(&["apply", "-f", "-"], Some(svc)).ok().trim(), "service/api created");
    assert_eq!(c.kubectl_stdin(&["apply", "-f", "-"], Some(svc)).ok().trim(), "service/api unchanged");
    let changed = svc.replace("targetPort: 8080", "targetPort: 9090");
    assert_eq!(c.kubectl_stdin(&["apply", "-f", "-"], Some(&changed)).ok().trim(), "service/api configured");
    assert_eq!(c.kubectl(&["get", "svc", "api", "-o", "jsonpath={.spec.ports[0].targetPort}"]).ok(), "9090");

    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: api-1\n  labels:\n    app: api\nspec:\n  containers:\n  - name: app\n    image: busybox:1.36\n    ports:\n    - name: http\n      containerPort: 8080\n";
    assert_eq!(c.kubectl_stdin(&["apply", "-f", "-"], Some(pod)).ok().trim(), "pod/api-1 created");
    let pods = rows(&c.kubectl(&["get", "pods", "-o", "wide"]).ok());
    assert_eq!(
        pods[0],
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE", "READINESS", "GATES"]
    );
    assert_eq!(row(&pods, "api-1")[1..4], ["0/1", "Pending", "0"]);

    let described = c.kubectl(&["describe", "service", "api"]).ok();
    for want in ["Name:", "api", "Selector:", "app=api", "TargetPort:", "9090/TCP", "Labels:", "tier=backend"] {
        assert!(described.contains(want), "describe lacks {want}:\n{described}");
    }
    let described = c.kubectl(&["describe", "pod", "api-1"]).ok();
    assert!(described.contains("busybox:1.36") && described.contains("Pending"), "{described}");

    // Strategic merge patch: a new port merges by port number.
    let out = c.kubectl(&["patch", "svc", "api", "-p", r#"{"spec":{"ports":[{"name":"metrics","port":9100}]}}"#]).ok();
    assert_eq!(out.trim(), "service/api patched");
    let ports = c.kubectl(&["get", "svc", "api", "-o", "jsonpath={.spec.ports[*].port}"]).ok();
    assert_eq!(ports, "80 9100");
    assert_eq!(
        c.kubectl(&["patch", "svc", "api", "--type=merge", "-p", r#"{"metadata":{"labels":{"tier":null}}}"#])
            .ok()
            .trim(),
        "service/api patched"
    );
    assert_eq!(
        c.kubectl(&[
            "patch",
            "svc",
            "api",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/ports/1/port","value":9200}]"#
        ])
        .ok()
        .trim(),
        "service/api patched"
    );
    assert_eq!(c.kubectl(&["get", "svc", "api", "-o", "jsonpath={.spec.ports[1].port}"]).ok(), "9200");
    assert_eq!(
        c.kubectl(&["patch", "svc", "api", "-p", r#"{"spec":{"selector":{"app":"api"}}}"#]).ok().trim(),
        "service/api patched (no change)"
    );

    // kubectl edit, with an editor that rewrites the file (kubectl then sends a strategic merge patch).
    c.kubectl(&["create", "deployment", "web", "--image=nginx:1.25", "--replicas=4"]).ok();
    let edited = c
        .kubectl_with(&["edit", "deployment", "web"], None, &[("KUBE_EDITOR", "sed -i s/replicas:\\ 4/replicas:\\ 2/")])
        .ok();
    assert_eq!(edited.trim(), "deployment.apps/web edited");
    let d: Value = serde_json::from_str(&c.kubectl(&["get", "deploy", "web", "-o", "json"]).ok()).unwrap();
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["metadata"]["generation"], 2, "a spec change bumps the generation");
    assert_eq!(c.kubectl(&["scale", "deployment", "web", "--replicas=3"]).ok().trim(), "deployment.apps/web scaled");
    assert_eq!(c.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]).ok(), "3");

    assert_eq!(c.kubectl(&["delete", "service", "api"]).ok().trim(), "service \"api\" deleted");
    assert_eq!(c.kubectl(&["delete", "pod", "api-1"]).ok().trim(), "pod \"api-1\" deleted");
    assert_eq!(c.kubectl(&["delete", "deployment", "web"]).ok().trim(), "deployment.apps \"web\" deleted");
    assert_eq!(
        c.kubectl(&["get", "svc", "api"]).err().trim(),
        "Error from server (NotFound): services \"api\" not found"
    );
    assert_eq!(c.kubectl(&["get", "pods"]).ok(), "");
}

/// A cluster IP from the default service range, 10.96.0.0/12, as in the article's `10.101.0.133`.
#[track_caller]
fn assert_service_ip(shown: &str) {
    let ip: std::net::Ipv4Addr = shown.parse().unwrap_or_else(|_| panic!("{shown:?} is not an address"));
    assert_eq!(u32::from(ip) >> 20, u32::from(std::net::Ipv4Addr::new(10, 96, 0, 0)) >> 20, "{ip} is in 10.96.0.0/12");
}

#[test]
fn seed_manifests_apply_and_list() {
    let c = cluster();
    // Each of the article's examples in a namespace of its own: they share a name.
    let steps = [
        ("ex1", "1-service-with-selector.yaml", vec!["service/nginx-service created"]),
        ("ex2", "2-multi-port-service.yaml", vec!["service/nginx-service created"]),
        (
            "ex3",
            "3-service-without-selector.yaml",
            vec!["service/nginx-service created", "endpoints/nginx-service created"],
        ),
        ("ex4", "4-apache-deployment.yaml", vec!["deployment.apps/apache-deployment created"]),
    ];
    for (ns, file, want) in &steps {
        c.kubectl(&["create", "namespace", ns]).ok();
        let out = c.kubectl(&["apply", "-n", ns, "-f", &format!("{SEED_003}/{file}")]).ok();
        assert_eq!(out.lines().collect::<Vec<_>>(), *want, "{file}");
    }
    let one = rows(&c.kubectl(&["get", "service", "nginx-service", "-n", "ex1"]).ok());
    assert_eq!(one[0], ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]);
    assert_eq!(one[1][1], "ClusterIP");
    assert_service_ip(&one[1][2]);
    assert_eq!(one[1][3], "<none>");
    assert_eq!(one[1][4], "80/TCP");
    let multi = rows(&c.kubectl(&["get", "svc", "-n", "ex2", "-o", "wide"]).ok());
    assert_eq!(row(&multi, "nginx-service")[4], "80/TCP,443/TCP");
    assert_eq!(row(&multi, "nginx-service")[6], "app=webserver-nginx-multiport");
    assert_service_ip(&row(&multi, "nginx-service")[2]);
    let manual = rows(&c.kubectl(&["get", "svc,endpoints", "-n", "ex3", "-o", "wide"]).ok());
    assert!(manual.iter().any(|r| r[0] == "service/nginx-service" && r[6] == "<none>"), "{manual:?}");
    let ep = rows(&c.kubectl(&["get", "endpoints", "nginx-service", "-n", "ex3"]).ok());
    assert_eq!(ep[0], ["NAME", "ENDPOINTS", "AGE"]);
    assert_eq!(ep[1][1], "192.10.0.1:8080");

    let deploy = rows(&c.kubectl(&["get", "deployment", "apache-deployment", "-n", "ex4"]).ok());
    assert_eq!(deploy[0], ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert_eq!(deploy[1][1], "0/4", "no node runs the pods: nothing is ready");
    let exposed = c.kubectl(&[
        "expose",
        "deployment",
        "apache-deployment",
        "--name=apache-http-service",
        "--type=ClusterIP",
        "--port=8080",
        "--target-port=8080",
        "-n",
        "ex4",
    ]);
    assert_eq!(exposed.ok().trim(), "service/apache-http-service exposed");
    let svc = rows(&c.kubectl(&["get", "service", "apache-http-service", "-n", "ex4", "-o", "wide"]).ok());
    assert_eq!(svc[1][1], "ClusterIP");
    assert_service_ip(&svc[1][2]);
    assert_eq!(svc[1][3], "<none>");
    assert_eq!(svc[1][4], "8080/TCP");
    assert_eq!(svc[1][6], "app=webserver");
    let exposed_ip = svc[1][2].clone();
    // The same service from the article's manifest, applied over the exposed one.
    let out = c.kubectl(&["apply", "-n", "ex4", "-f", &format!("{SEED_003}/5-apache-http-service.yaml")]);
    let out = out.stdout + &out.stderr;
    assert!(out.contains("service/apache-http-service configured"), "{out}");
    let svc = rows(&c.kubectl(&["get", "service", "apache-http-service", "-n", "ex4"]).ok());
    assert_eq!(svc[1][2], exposed_ip, "re-applying without a clusterIP keeps the allocated one");
    // Everything at once, across namespaces.
    let all = rows(&c.kubectl(&["get", "services", "-A"]).ok());
    assert_eq!(all[0], ["NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]);
    assert_eq!(all.len(), 1 + 4 + 2, "ours and the built-in kubernetes and kube-dns");
}

#[test]
fn label_and_field_selectors() {
    let c = cluster();
    for (name, app, tier) in [("a", "web", "front"), ("b", "web", "back"), ("c", "db", "back")] {
        c.kubectl(&["run", name, "--image=busybox", &format!("--labels=app={app},tier={tier}")]).ok();
    }
    let names = |args: &[&str]| -> Vec<String> {
        let mut full = vec!["get", "pods", "-o", "name"];
        full.extend_from_slice(args);
        c.kubectl(&full).ok().lines().map(|l| l.trim_start_matches("pod/").to_string()).collect()
    };
    assert_eq!(names(&["-l", "app=web"]), ["a", "b"]);
    assert_eq!(names(&["-l", "app=web,tier=back"]), ["b"]);
    assert_eq!(names(&["-l", "tier in (front,middle)"]), ["a"]);
    assert_eq!(names(&["-l", "app notin (web)"]), ["c"]);
    assert_eq!(names(&["-l", "app!=db"]), ["a", "b"]);
    assert_eq!(names(&["-l", "!tier"]), Vec::<String>::new());
    assert_eq!(names(&["--field-selector", "metadata.name=c"]), ["c"]);
    assert_eq!(names(&["--field-selector", "status.phase=Pending,metadata.name!=a"]), ["b", "c"]);
    let shown = rows(&c.kubectl(&["get", "pods", "-L", "app", "--show-labels"]).ok());
    assert_eq!(shown[0], ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "APP", "LABELS"]);
    assert_eq!(row(&shown, "a")[6], "app=web,tier=front");
    let err = c.kubectl(&["get", "pods", "-l", "app in web"]).err();
    assert!(err.contains("unable to parse requirement: found 'web' expected: '('"), "{err}");
    let err = c.kubectl(&["get", "pods", "--field-selector", "spec.bogus=1"]).err();
    assert_eq!(
        err.trim(),
        "Error from server (BadRequest): Unable to find \"/v1, Resource=pods\" that match label selector \"\", field selector \"spec.bogus=1\": field label not supported: spec.bogus"
    );
    let err = c.kubectl(&["get", "deployments", "--field-selector", "spec.replicas=1"]).err();
    assert!(
        err.contains("\"spec.replicas\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""),
        "{err}"
    );
    assert_eq!(c.kubectl(&["delete", "pods", "-l", "app=web"]).ok().lines().count(), 2);
    assert_eq!(names(&[]), ["c"]);
}

/// `kubectl get -w` prints the list, then each change as it happens.
#[test]
fn watch_sees_added_modified_deleted() {
    let c = cluster();
    c.kubectl(&["create", "service", "clusterip", "before", "--tcp=80"]).ok();
    let mut child = c
        .kubectl_command(&["get", "services", "-w", "--output-watch-events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl get -w");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut lines = Vec::new();
    let mut wait_for = |pred: &dyn Fn(&str) -> bool, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(l) = lines.iter().find(|l: &&String| pred(l)) {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => lines.push(l),
                Err(_) => panic!("no {what} in kubectl get -w output: {lines:?}"),
            }
        }
    };
    let header = wait_for(&|l| l.starts_with("EVENT"), "header");
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["EVENT", "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    );
    wait_for(&|l| l.starts_with("ADDED") && l.contains("before"), "the existing service");
    c.kubectl(&["create", "service", "nodeport", "live", "--tcp=80"]).ok();
    let added = wait_for(&|l| l.starts_with("ADDED") && l.contains("live"), "ADDED live");
    assert!(added.contains("NodePort"));
    c.kubectl(&["label", "service", "live", "x=y"]).ok();
    wait_for(&|l| l.starts_with("MODIFIED") && l.contains("live"), "MODIFIED live");
    c.kubectl(&["delete", "service", "live"]).ok();
    wait_for(&|l| l.starts_with("DELETED") && l.contains("live"), "DELETED live");
    assert_eq!(lines.iter().filter(|l| l.contains("before")).count(), 1, "no duplicate events: {lines:?}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn errors_read_as_kubernetes_prints_them() {
    let c = cluster();
    // A user the authorizer knows nothing of.
    let alice = c.kubeconfig_as("alice", "devs").unwrap();
    let alice = alice.to_str().unwrap();
    assert_eq!(
        c.kubectl(&["--kubeconfig", alice, "get", "pods"]).err().trim(),
        r#"Error from server (Forbidden): pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default""#
    );
    assert_eq!(
        c.kubectl(&["--kubeconfig", alice, "delete", "node", "n1"]).err().trim(),
        r#"Error from server (Forbidden): nodes "n1" is forbidden: User "alice" cannot delete resource "nodes" in API group "" at the cluster scope"#
    );
    assert_eq!(
        c.kubectl(&["get", "svc", "nope"]).err().trim(),
        "Error from server (NotFound): services \"nope\" not found"
    );
    assert_eq!(
        c.kubectl(&["get", "deploy", "nope"]).err().trim(),
        "Error from server (NotFound): deployments.apps \"nope\" not found"
    );
    c.kubectl(&["create", "service", "clusterip", "dup", "--tcp=80"]).ok();
    assert_eq!(
        c.kubectl(&["create", "service", "clusterip", "dup", "--tcp=80"]).err().trim(),
        "error: failed to create ClusterIP service: services \"dup\" already exists"
    );
    let bad_name = "apiVersion: v1\nkind: Service\nmetadata:\n  name: Bad_Name\nspec:\n  ports:\n  - port: 80\n";
    assert_eq!(
        c.kubectl_stdin(&["create", "-f", "-"], Some(bad_name)).err().trim(),
        "The Service \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
    );
    let unknown =
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: strict\nspec:\n  bogus: 1\n  ports:\n  - port: 80\n";
    assert_eq!(
        c.kubectl_stdin(&["create", "-f", "-"], Some(unknown)).err().trim(),
        "Error from server (BadRequest): error when creating \"STDIN\": Service in version \"v1\" cannot be handled as a Service: strict decoding error: unknown field \"spec.bogus\""
    );
    // With --validate=false, the unknown field is dropped and the object created.
    assert_eq!(
        c.kubectl_stdin(&["create", "--validate=false", "-f", "-"], Some(unknown)).ok().trim(),
        "service/strict created"
    );
    assert!(!c.kubectl(&["get", "svc", "strict", "-o", "yaml"]).ok().contains("bogus"));
    let missing_ns =
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n  namespace: nowhere\nspec:\n  ports:\n  - port: 80\n";
    assert_eq!(
        c.kubectl_stdin(&["create", "-f", "-"], Some(missing_ns)).err().trim(),
        "Error from server (NotFound): error when creating \"STDIN\": namespaces \"nowhere\" not found"
    );
    let deploy = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  selector:\n    matchLabels:\n      app: a\n  template:\n    metadata:\n      labels:\n        app: b\n    spec:\n      containers:\n      - name: c\n        image: i\n";
    let err = c.kubectl_stdin(&["create", "-f", "-"], Some(deploy)).err();
    assert!(
        err.contains("The Deployment \"d\" is invalid: spec.template.metadata.labels: Invalid value:")
            && err.contains("`selector` does not match template `labels`"),
        "{err}"
    );
    let stale = c.kubectl(&["get", "svc", "dup", "-o", "json"]).ok();
    let mut obj: Value = serde_json::from_str(&stale).unwrap();
    c.kubectl(&["label", "svc", "dup", "a=b"]).ok();
    obj["metadata"]["labels"] = serde_json::json!({"c": "d"});
    let err = c.kubectl_stdin(&["replace", "-f", "-"], Some(&obj.to_string())).err();
    assert!(
        err.contains("Operation cannot be fulfilled on services \"dup\": the object has been modified; please apply your changes to the latest version and try again"),
        "{err}"
    );
}

#[test]
fn namespace_deletion_deletes_its_contents() {
    let c = cluster();
    c.kubectl(&["create", "namespace", "gone"]).ok();
    c.kubectl(&["create", "deployment", "d", "--image=x", "-n", "gone"]).ok();
    c.kubectl(&["create", "service", "clusterip", "s", "--tcp=80", "-n", "gone"]).ok();
    c.kubectl(&["run", "p", "--image=x", "-n", "gone"]).ok();
    assert_eq!(c.kubectl(&["delete", "namespace", "gone"]).ok().trim(), "namespace \"gone\" deleted");
    assert_eq!(
        c.kubectl(&["get", "namespace", "gone"]).err().trim(),
        "Error from server (NotFound): namespaces \"gone\" not found"
    );
    assert_eq!(c.kubectl(&["get", "all", "-n", "gone"]).ok(), "");
    // The namespace can come back, empty.
    c.kubectl(&["create", "namespace", "gone"]).ok();
    assert_eq!(c.kubectl(&["get", "deploy,svc,pods", "-n", "gone", "-o", "name"]).ok(), "");
    assert!(
        c.kubectl(&["delete", "namespace", "default"])
            .err()
            .contains("namespaces \"default\" is forbidden: this namespace may not be deleted")
    );
}

/// The Table columns of the other kinds, as kubectl shows them.
#[test]
fn tables_of_every_kind() {
    // Hand-made objects only: no controller may add to them.
    let c = common::api_server();
    let objects = r#"
apiVersion: v1
kind: Node
metadata:
  name: node-1
  labels:
    node-role.kubernetes.io/control-plane: ""
status:
  conditions:
  - type: Ready
    status: "True"
  addresses:
  - type: InternalIP
    address: 10.0.0.11
  nodeInfo:
    kubeletVersion: v1.37.0
    osImage: Debian GNU/Linux 12 (bookworm)
    kernelVersion: "6.1.0"
    containerRuntimeVersion: kubesvc://0.1.0
    machineID: m
    systemUUID: s
    bootID: b
    kubeProxyVersion: ""
    operatingSystem: linux
    architecture: amd64
---
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web-abc
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-xyz
  labels:
    kubernetes.io/service-name: web
addressType: IPv4
ports:
- name: http
  port: 8080
endpoints:
- addresses: ["10.1.0.5"]
  conditions: {ready: true}
- addresses: ["10.1.0.6"]
  conditions: {ready: false}
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata:
  name: node-1
  namespace: kube-node-lease
spec:
  holderIdentity: node-1
  leaseDurationSeconds: 40
---
apiVersion: v1
kind: Event
metadata:
  name: web.1
involvedObject:
  kind: Deployment
  name: web
  namespace: default
reason: ScalingReplicaSet
message: Scaled up replica set web-abc to 3
type: Normal
source:
  component: deployment-controller
count: 1
"#;
    let created = c.kubectl_stdin(&["create", "-f", "-"], Some(objects)).ok();
    assert_eq!(created.lines().count(), 5, "{created}");

    let nodes = rows(&c.kubectl(&["get", "nodes", "-o", "wide"]).ok());
    assert_eq!(
        nodes[0],
        [
            "NAME",
            "STATUS",
            "ROLES",
            "AGE",
            "VERSION",
            "INTERNAL-IP",
            "EXTERNAL-IP",
            "OS-IMAGE",
            "KERNEL-VERSION",
            "CONTAINER-RUNTIME"
        ]
    );
    assert_eq!(nodes[1][..3], ["node-1", "Ready", "control-plane"]);
    assert_eq!(nodes[1][4..7], ["v1.37.0", "10.0.0.11", "<none>"]);
    assert_eq!(nodes[1].last().unwrap(), "kubesvc://0.1.0");

    let rs = rows(&c.kubectl(&["get", "rs", "-o", "wide"]).ok());
    assert_eq!(rs[0], ["NAME", "DESIRED", "CURRENT", "READY", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]);
    assert_eq!(rs[1][..4], ["web-abc", "3", "0", "0"]);
    assert_eq!(rs[1][5..], ["nginx", "nginx:1.25", "app=web"]);

    let slices = rows(&c.kubectl(&["get", "endpointslices"]).ok());
    assert_eq!(slices[0], ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]);
    assert_eq!(row(&slices, "web-xyz")[..4], ["web-xyz", "IPv4", "8080", "10.1.0.5,10.1.0.6"]);
    let port = c.api_port().unwrap().to_string();
    assert_eq!(row(&slices, "kubernetes")[..4], ["kubernetes", "IPv4", port.as_str(), kubesvc_testsupport::NODE_IP]);
    assert_eq!(
        c.kubectl(&["get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o", "name"]).ok().trim(),
        "endpointslice.discovery.k8s.io/web-xyz"
    );

    let leases = rows(&c.kubectl(&["get", "leases", "-n", "kube-node-lease"]).ok());
    assert_eq!(leases[0], ["NAME", "HOLDER", "AGE"]);
    assert_eq!(leases[1][..2], ["node-1", "node-1"]);

    let events = c.kubectl(&["get", "events"]).ok();
    let ev = rows(&events);
    assert_eq!(ev[0], ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]);
    assert!(
        events.contains("Normal   ScalingReplicaSet   deployment/web   Scaled up replica set web-abc to 3"),
        "{events}"
    );

    // describe finds a deployment's events (by field selector) and its replica sets (by label selector).
    c.kubectl(&["create", "deployment", "web", "--image=nginx:1.25"]).ok();
    let uid = c.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.metadata.uid}"]).ok();
    c.kubectl(&[
        "patch",
        "event",
        "web.1",
        "--type=merge",
        "-p",
        &format!(r#"{{"involvedObject":{{"uid":"{uid}"}}}}"#),
    ])
    .ok();
    let described = c.kubectl(&["describe", "deployment", "web"]).ok();
    assert!(described.contains("Scaled up replica set web-abc to 3"), "{described}");
    assert!(described.contains("StrategyType:           RollingUpdate"), "{described}");
    assert!(described.contains("RollingUpdateStrategy:  25% max unavailable, 25% max surge"), "{described}");
}

/// Invalid Services of the shapes users write, refused with the words kubectl
/// prints against a real cluster; nothing refused is stored.
#[test]
fn invalid_services_are_refused_as_kubernetes_refuses_them() {
    let c = cluster();
    let svc =
        |name: &str, spec: &str| format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n{spec}");
    let label_msg = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
    let cases: Vec<(String, String)> = vec![
        (
            svc("multi", "  selector: {app: web}\n  ports:\n  - {name: http, port: 80}\n  - {port: 443}\n"),
            r#"The Service "multi" is invalid: spec.ports[1].name: Required value"#.into(),
        ),
        (
            svc("upper", "  ports:\n  - {name: HTTP, port: 80}\n"),
            format!(r#"The Service "upper" is invalid: spec.ports[0].name: Invalid value: "HTTP": {label_msg}"#),
        ),
        (
            svc("dupname", "  ports:\n  - {name: http, port: 80}\n  - {name: http, port: 81}\n"),
            r#"The Service "dupname" is invalid: spec.ports[1].name: Duplicate value: "http""#.into(),
        ),
        (
            svc("bigport", "  ports:\n  - {port: 70000}\n"),
            "The Service \"bigport\" is invalid: \n* spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive\n* spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive".into(),
        ),
        (
            svc("longname", "  ports:\n  - {port: 80, targetPort: http-alternative}\n"),
            r#"The Service "longname" is invalid: spec.ports[0].targetPort: Invalid value: "http-alternative": must be no more than 15 characters"#.into(),
        ),
        (
            svc("proto", "  ports:\n  - {port: 80, protocol: HTTP}\n"),
            r#"The Service "proto" is invalid: spec.ports[0].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP""#.into(),
        ),
        (
            svc("dupport", "  ports:\n  - {name: a, port: 80}\n  - {name: b, port: 80, targetPort: 8080}\n"),
            r#"The Service "dupport" is invalid: spec.ports[1]: Duplicate value: {"Name":"","Protocol":"TCP","AppProtocol":null,"Port":80,"TargetPort":0,"NodePort":0}"#.into(),
        ),
        (
            svc("noports", "  selector: {app: web}\n"),
            r#"The Service "noports" is invalid: spec.ports: Required value"#.into(),
        ),
        (
            svc("cname", "  type: ExternalName\n"),
            r#"The Service "cname" is invalid: spec.externalName: Required value"#.into(),
        ),
        (
            svc("cnameip", "  type: ExternalName\n  externalName: db.example.com\n  clusterIP: 10.96.3.3\n"),
            r#"The Service "cnameip" is invalid: spec.clusterIPs: Forbidden: may not be set for ExternalName services"#.into(),
        ),
        (
            svc("npnone", "  type: NodePort\n  clusterIP: None\n  ports:\n  - {port: 80}\n"),
            r#"The Service "npnone" is invalid: spec.clusterIPs[0]: Invalid value: "None": may not be set to 'None' for NodePort services"#.into(),
        ),
        (
            svc("badip", "  clusterIP: 10.96.300.1\n  ports:\n  - {port: 80}\n"),
            r#"The Service "badip" is invalid: spec.clusterIPs[0]: Invalid value: "10.96.300.1": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"#.into(),
        ),
        (
            svc("cipnp", "  ports:\n  - {port: 80, nodePort: 30080}\n"),
            "The Service \"cipnp\" is invalid: spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'".into(),
        ),
        (
            svc("affinity", "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 90000}}\n  ports:\n  - {port: 80}\n"),
            r#"The Service "affinity" is invalid: spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 90000: must be greater than 0 and less than 86400"#.into(),
        ),
        (
            svc("loop", "  externalIPs: [127.0.0.1]\n  ports:\n  - {port: 80}\n"),
            r#"The Service "loop" is invalid: spec.externalIPs[0]: Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)"#.into(),
        ),
        (
            svc("ranges", "  loadBalancerSourceRanges: [10.0.0.0/8]\n  ports:\n  - {port: 80}\n"),
            "The Service \"ranges\" is invalid: spec.LoadBalancerSourceRanges: Forbidden: may only be used when `type` is 'LoadBalancer'".into(),
        ),
        (
            svc("etp", "  externalTrafficPolicy: Local\n  ports:\n  - {port: 80}\n"),
            r#"The Service "etp" is invalid: spec.externalTrafficPolicy: Invalid value: "Local": may only be set for externally-accessible services"#.into(),
        ),
        (
            svc("type", "  type: Internal\n  ports:\n  - {port: 80}\n"),
            r#"The Service "type" is invalid: spec.type: Unsupported value: "Internal": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort""#.into(),
        ),
        (
            svc("enitp", "  type: ExternalName\n  externalName: a.example.com\n  internalTrafficPolicy: Nearby\n"),
            r#"The Service "enitp" is invalid: spec.internalTrafficPolicy: Unsupported value: "Nearby": supported values: "Cluster", "Local""#.into(),
        ),
        (
            svc("Web_1", "  ports:\n  - {port: 80}\n"),
            format!(r#"The Service "Web_1" is invalid: metadata.name: Invalid value: "Web_1": {label_msg}"#),
        ),
    ];
    for (yaml, want) in &cases {
        assert_eq!(c.kubectl_stdin(&["apply", "-f", "-"], Some(yaml)).err().trim(), want);
    }
    let names = rows(&c.kubectl(&["get", "services"]).ok());
    assert_eq!(names.len(), 2, "only the built-in kubernetes Service: {names:?}");

    // Updates: the cluster IP is immutable; the message names the list.
    c.kubectl_stdin(&["apply", "-f", "-"], Some(&svc("web", "  clusterIP: 10.96.3.4\n  ports:\n  - {port: 80}\n")))
        .ok();
    assert_eq!(
        c.kubectl_stdin(&["apply", "-f", "-"], Some(&svc("web", "  clusterIP: 10.96.3.5\n  ports:\n  - {port: 80}\n")))
            .err()
            .trim(),
        r#"The Service "web" is invalid: spec.clusterIPs[0]: Invalid value: ["10.96.3.5"]: may not change once set"#
    );
    assert_eq!(
        c.kubectl(&["patch", "service", "web", "-p", r#"{"spec":{"ports":[{"port":80,"name":"a"},{"port":81}]}}"#])
            .err()
            .trim(),
        r#"The Service "web" is invalid: spec.ports[1].name: Required value"#
    );
}

/// Endpoints and EndpointSlices written by hand are validated as Kubernetes does.
#[test]
fn invalid_endpoints_are_refused() {
    let c = cluster();
    let ep = "apiVersion: v1\nkind: Endpoints\nmetadata:\n  name: manual\nsubsets:\n- addresses:\n  - ip: 127.0.0.1\n  ports:\n  - port: 8080\n";
    assert_eq!(
        c.kubectl_stdin(&["apply", "-f", "-"], Some(ep)).err().trim(),
        r#"The Endpoints "manual" is invalid: subsets[0].addresses[0].ip: Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)"#
    );
    let slice = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: manual-1\naddressType: IPv4\nendpoints:\n- addresses: [\"fd00::1\"]\nports:\n- {name: http, port: 80}\n- {name: http, port: 81}\n";
    assert_eq!(
        c.kubectl_stdin(&["apply", "-f", "-"], Some(slice)).err().trim(),
        "The EndpointSlice \"manual-1\" is invalid: \n* ports[1].name: Duplicate value: \"http\"\n* endpoints[0].addresses: Invalid value: \"fd00::1\": must be an IPv4 address"
    );
}

/// ConfigMaps and Secrets as kubectl makes them (protobuf bodies), lists them and is refused.
#[test]
fn configmaps_and_secrets() {
    let c = cluster();
    let dir = c.dir.path().join("files");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("app.properties"), "color=blue\n").unwrap();
    std::fs::write(dir.join("blob.bin"), [0xff, 0xfe, 0x00]).unwrap();
    let file = |n: &str| format!("--from-file={}", dir.join(n).display());
    assert_eq!(
        c.kubectl(&[
            "create",
            "configmap",
            "web",
            "--from-literal=mode=fast",
            &file("app.properties"),
            &file("blob.bin")
        ])
        .ok()
        .trim(),
        "configmap/web created"
    );
    let cm: Value = serde_json::from_str(&c.kubectl(&["get", "cm", "web", "-o", "json"]).ok()).unwrap();
    assert_eq!(cm["data"], json!({"app.properties": "color=blue\n", "mode": "fast"}));
    assert_eq!(cm["binaryData"], json!({"blob.bin": "//4A"}));
    let table = rows(&c.kubectl(&["get", "configmaps"]).ok());
    assert_eq!(table[0], ["NAME", "DATA", "AGE"]);
    assert_eq!(row(&table, "web")[1], "3");

    assert_eq!(
        c.kubectl(&["create", "secret", "generic", "db", "--from-literal=user=admin", "--from-literal=pass=s3cret"])
            .ok()
            .trim(),
        "secret/db created"
    );
    let s: Value = serde_json::from_str(&c.kubectl(&["get", "secret", "db", "-o", "json"]).ok()).unwrap();
    assert_eq!(s["type"], "Opaque");
    assert_eq!(s["data"], json!({"pass": "czNjcmV0", "user": "YWRtaW4="}));
    let table = rows(&c.kubectl(&["get", "secrets"]).ok());
    assert_eq!(table[0], ["NAME", "TYPE", "DATA", "AGE"]);
    assert_eq!(row(&table, "db")[1..3], ["Opaque", "2"]);
    assert_eq!(
        c.kubectl(&["get", "secrets", "--field-selector", "type=Opaque", "-o", "name"]).ok().trim(),
        "secret/db"
    );

    // stringData is merged into data and never stored.
    let manifest = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: tokens\nstringData:\n  token: abc\n";
    c.kubectl_stdin(&["apply", "-f", "-"], Some(manifest)).ok();
    let t: Value = serde_json::from_str(&c.kubectl(&["get", "secret", "tokens", "-o", "json"]).ok()).unwrap();
    assert_eq!(t["data"], json!({"token": "YWJj"}));
    assert!(t.get("stringData").is_none());

    // Refused as Kubernetes refuses them; nothing is stored.
    let bad = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\ndata:\n  ok: x\n  \"no/slash\": z\n";
    assert_eq!(
        c.kubectl_stdin(&["apply", "-f", "-"], Some(bad)).err().trim(),
        "The ConfigMap \"bad\" is invalid: data[no/slash]: Invalid value: \"no/slash\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
    );
    let tls =
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: cert\ntype: kubernetes.io/tls\ndata:\n  tls.crt: \"\"\n";
    assert_eq!(
        c.kubectl_stdin(&["apply", "-f", "-"], Some(tls)).err().trim(),
        "The Secret \"cert\" is invalid: data[tls.key]: Required value"
    );
    let frozen = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: frozen\nimmutable: true\ndata:\n  a: \"1\"\n";
    c.kubectl_stdin(&["apply", "-f", "-"], Some(frozen)).ok();
    let err = c.kubectl(&["patch", "cm", "frozen", "-p", r#"{"data":{"a":"2"}}"#]).err();
    assert!(err.contains("data: Forbidden: field is immutable when `immutable` is set"), "{err}");
    assert_eq!(
        c.kubectl(&["get", "cm", "bad", "frozen", "-o", "name", "--ignore-not-found"]).ok().trim(),
        "configmap/frozen"
    );
    let err = c.kubectl(&["patch", "secret", "db", "-p", r#"{"type":"kubernetes.io/tls"}"#]).err();
    assert!(err.contains(r#"type: Invalid value: "kubernetes.io/tls": field is immutable"#), "{err}");
}
