//! The service proxy for real, inside namespaced `kubesvc up` clusters:
//! cluster IPs from pods on each node, node ports from the machine's side of
//! the bridge, external IPs, multi-port and TCP beside UDP, affinity, hairpin,
//! no endpoints refused at once, `externalTrafficPolicy: Local` with its
//! health-check port, scaling to zero and back, and `kubesvc proxy` alone.
//! Needs root, kubectl and nftables; fails without.
#![allow(clippy::unwrap_used)] // Tests: a failed step is a failed test.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::{eventually, running_pods};
use kubesvc_testsupport::Cluster;
use serde_json::Value;

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: agnhost
        command: ["KUBESVC", "tool", "serve-hostname", "--port", "8080", "--udp"]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: udp, port: 80, targetPort: 8080, protocol: UDP}
---
apiVersion: v1
kind: Pod
metadata: {name: solo, labels: {app: solo}}
spec:
  containers:
  - name: solo
    image: agnhost
    command: ["KUBESVC", "tool", "serve-hostname", "--port", "8080"]
---
apiVersion: v1
kind: Service
metadata: {name: solo}
spec:
  selector: {app: solo}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: local}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: solo}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: nothing}
spec:
  type: NodePort
  selector: {app: nothing}
  ports: [{port: 80, targetPort: 8080}]
"#;

/// A Python snippet's output, run inside pod `pod`.
fn python_in(c: &Cluster, pod: &str, code: &str) -> Result<String, String> {
    let out = c.in_pod("default", pod, "python3").unwrap().args(["-c", code]).output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// GET `url` from pod `pod`: the body, or why not.
fn get_from(c: &Cluster, pod: &str, url: &str) -> Result<String, String> {
    python_in(
        c,
        pod,
        &format!("import urllib.request;print(urllib.request.urlopen('{url}',timeout=3).read().decode())"),
    )
}

/// curl from the test's namespace (the machine's side of the bridge): body, or curl's exit code.
fn curl(args: &[&str]) -> Result<String, i32> {
    let out = Command::new("curl").args(["-s", "--max-time", "2"]).args(args).output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(out.status.code().unwrap_or(-1))
    }
}

/// How many of `n` new connections from `pod` to `url` each backend answered.
fn spread(c: &Cluster, pod: &str, url: &str, n: usize) -> BTreeMap<String, usize> {
    try_spread(c, pod, url, n).unwrap()
}

/// The same, or why a connection failed (while endpoints are still being programmed).
fn try_spread(c: &Cluster, pod: &str, url: &str, n: usize) -> Result<BTreeMap<String, usize>, String> {
    let code = format!(
        "import urllib.request,collections,json\n\
         c=collections.Counter(urllib.request.urlopen('{url}',timeout=3).read().decode() for _ in range({n}))\n\
         print(json.dumps(c))"
    );
    Ok(serde_json::from_str(&python_in(c, pod, &code)?).unwrap())
}

fn cluster_ip(c: &Cluster, svc: &str) -> String {
    c.kubectl(&["get", "svc", svc, "-o", "jsonpath={.spec.clusterIP}"]).ok()
}

fn node_port(c: &Cluster, svc: &str) -> String {
    c.kubectl(&["get", "svc", svc, "-o", "jsonpath={.spec.ports[0].nodePort}"]).ok()
}

/// Node i's InternalIP under `up` (the bridge has .1).
fn node_ip(i: u8) -> String {
    format!("10.250.0.{}", i + 1)
}

#[test]
fn services_reach_ready_pods_from_every_node_and_from_the_machine() {
    let bin = env!("CARGO_BIN_EXE_kubesvc");
    let c = Cluster::up(bin, 2).unwrap();
    c.kubectl_stdin(&["apply", "-f", "-"], Some(&WEB.replace("KUBESVC", bin))).ok();
    let pods = running_pods(&c, "app=web", 4);
    let solo = running_pods(&c, "app=solo", 1).remove(0);
    let on = |node: &str| {
        pods.iter().find(|p| p.2 == node).unwrap_or_else(|| panic!("a web pod on {node}: {pods:?}")).0.clone()
    };
    let (a, b) = (on("node-1"), on("node-2"));
    let web = cluster_ip(&c, "web");
    let url = format!("http://{web}/");

    // From a pod on each node, the cluster IP reaches every ready pod; 1,000 new connections
    // spread over the four (each between 15% and 35%).
    eventually("all four endpoints are programmed", || (try_spread(&c, &a, &url, 40).ok()?.len() == 4).then_some(()));
    let counts = spread(&c, &a, &url, 1000);
    assert_eq!(counts.len(), 4, "{counts:?}");
    for (pod, n) in &counts {
        assert!((150..=350).contains(n), "{pod} got {n} of 1000: {counts:?}");
    }
    assert_eq!(spread(&c, &b, &url, 40).len(), 4);
    // Balanced at the socket: the kernel's socket is connected to a pod itself (no NAT), while
    // the program sees the address it asked for.
    let socket = format!(
        "import socket\ns=socket.create_connection(('{web}',80),timeout=3)\nport=s.getsockname()[1]\n\
         for l in open('/proc/net/tcp').readlines()[1:]:\n  f=l.split()\n  if int(f[1].split(':')[1],16)==port:\n    \
         h,p=f[2].split(':');print(s.getpeername()[0],s.getpeername()[1],'%d.%d.%d.%d:%d'%(tuple(bytes.fromhex(h)[::-1])+(int(p,16),)))"
    );
    let got = python_in(&c, &a, &socket).unwrap();
    let (peer, remote) = got.rsplit_once(' ').unwrap();
    assert_eq!(peer, format!("{web} 80"), "{got}");
    let pod_ips = c.kubectl(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].status.podIP}"]).ok();
    assert!(
        remote.ends_with(":8080") && pod_ips.split(' ').any(|ip| remote == format!("{ip}:8080")),
        "connected to {remote}, not one of {pod_ips}"
    );
    // The same port over UDP reaches the same pods.
    let udp = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(3)\n\
         names=set()\nfor i in range(40):\n  s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(3)\n  s.sendto(b'x',('{web}',80));names.add(s.recv(100).decode())\nprint(len(names))"
    );
    assert_eq!(python_in(&c, &a, &udp).unwrap(), "4");
    // A port the Service does not have is refused at once, not timed out.
    let refused = get_from(&c, &a, &format!("http://{web}:81/")).unwrap_err();
    assert!(refused.contains("Connection refused"), "{refused}");

    // Hairpin: the one pod behind `solo` reaches itself through its Service.
    let solo_ip = cluster_ip(&c, "solo");
    assert_eq!(get_from(&c, &solo.0, &format!("http://{solo_ip}/")).unwrap(), "solo");

    // No endpoints: refused at once, at the cluster IP and at the node port.
    let nothing = cluster_ip(&c, "nothing");
    let refused = get_from(&c, &a, &format!("http://{nothing}/")).unwrap_err();
    assert!(refused.contains("Connection refused"), "{refused}");
    assert_eq!(curl(&[&format!("http://{}:{}/", node_ip(1), node_port(&c, "nothing"))]), Err(7));

    // Node ports: the machine reaches the Service through every node; Cluster policy masquerades.
    c.kubectl(&["patch", "svc", "web", "-p", r#"{"spec":{"type":"NodePort"}}"#]).ok();
    let np = node_port(&c, "web");
    for i in [1, 2] {
        let names: std::collections::BTreeSet<String> = eventually("the node port answers", || {
            let got: Vec<String> =
                (0..40).filter_map(|_| curl(&[&format!("http://{}:{np}/", node_ip(i))]).ok()).collect();
            (got.len() == 40).then_some(got.into_iter().collect())
        });
        assert_eq!(names.len(), 4, "via node-{i}: {names:?}");
        let seen = curl(&[&format!("http://{}:{np}/clientip", node_ip(i))]).unwrap();
        assert!(!seen.starts_with("10.250.0.1:"), "Cluster policy masquerades the client: {seen}");
    }

    // externalTrafficPolicy Local: only the node with the pod serves, keeping the client's
    // address; its health-check node port says 200 with one local endpoint, the other 503.
    let solo_node: u8 = solo.2.trim_start_matches("node-").parse().unwrap();
    let other = 3 - solo_node;
    let np = node_port(&c, "local");
    let seen = eventually("the Local node port answers", || {
        curl(&[&format!("http://{}:{np}/clientip", node_ip(solo_node))]).ok()
    });
    assert!(seen.starts_with("10.250.0.1:"), "the client's own address: {seen}");
    assert_eq!(
        curl(&[&format!("http://{}:{np}/", node_ip(other))]),
        Err(28),
        "dropped where there is no local endpoint"
    );
    let hc = c.kubectl(&["get", "svc", "local", "-o", "jsonpath={.spec.healthCheckNodePort}"]).ok();
    let health = |i: u8| {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "2", "-w", "\n%{http_code}"])
            .arg(format!("http://{}:{hc}/", node_ip(i)))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.to_string(), serde_json::from_str::<Value>(body).unwrap_or(Value::Null))
    };
    let (code, body) = health(solo_node);
    assert_eq!(code, "200");
    assert_eq!(
        body,
        serde_json::json!({"service": {"namespace": "default", "name": "local"}, "localEndpoints": 1, "serviceProxyHealthy": true})
    );
    let (code, body) = health(other);
    assert_eq!((code.as_str(), &body["localEndpoints"]), ("503", &serde_json::json!(0)));

    // External IPs: routed to node-1 from the machine, answered by the Service.
    c.kubectl(&["patch", "svc", "web", "-p", r#"{"spec":{"externalIPs":["10.250.0.100"]}}"#]).ok();
    Command::new("ip").args(["route", "add", "10.250.0.100/32", "via", &node_ip(1)]).status().unwrap();
    let name = eventually("the external IP answers", || curl(&["http://10.250.0.100/"]).ok());
    assert!(name.starts_with("web-"), "{name}");

    // LoadBalancer: an address from the pool on the bridge, shown as EXTERNAL-IP, reached from
    // the machine; under the Local policy only the node with the pod answers for it, keeping
    // the client's address.
    let external =
        |svc: &str| c.kubectl(&["get", "svc", svc, "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"]).ok();
    let local_lb =
        eventually("the Local Service gets an address", || Some(external("local")).filter(|ip| !ip.is_empty()));
    assert!(local_lb.starts_with("10.250.0.2"), "from the pool at the top of the node network: {local_lb}");
    let seen = eventually("the Local address answers", || curl(&[&format!("http://{local_lb}/clientip")]).ok());
    assert!(seen.starts_with("10.250.0.1:"), "the client's own address: {seen}");
    c.kubectl(&["patch", "svc", "web", "-p", r#"{"spec":{"type":"LoadBalancer"}}"#]).ok();
    let lb = eventually("web gets an address", || Some(external("web")).filter(|ip| !ip.is_empty()));
    assert_ne!(lb, local_lb);
    assert!(c.kubectl(&["get", "svc", "web"]).ok().contains(&lb), "EXTERNAL-IP shows it");
    let names: std::collections::BTreeSet<String> = eventually("the address answers", || {
        let got: Vec<String> = (0..40).filter_map(|_| curl(&[&format!("http://{lb}/")]).ok()).collect();
        (got.len() == 40).then_some(got.into_iter().collect())
    });
    assert_eq!(names.len(), 4, "{names:?}");
    // A requested address is given; a Service of another class is left alone; a type change
    // gives the address back.
    let more = r#"
apiVersion: v1
kind: Service
metadata: {name: asked}
spec: {type: LoadBalancer, loadBalancerIP: 10.250.0.240, selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: foreign}
spec: {type: LoadBalancer, loadBalancerClass: example.com/other, selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
"#;
    c.kubectl_stdin(&["apply", "-f", "-"], Some(more)).ok();
    eventually("the requested address is given", || (external("asked") == "10.250.0.240").then_some(()));
    eventually("it answers", || curl(&["http://10.250.0.240/"]).ok());
    assert_eq!(external("foreign"), "");
    c.kubectl(&["patch", "svc", "asked", "-p", r#"{"spec":{"type":"ClusterIP"}}"#]).ok();
    eventually("the address goes back", || external("asked").is_empty().then_some(()));
    eventually("and stops answering", || curl(&["http://10.250.0.240/"]).err());

    // ClientIP affinity: one client, one pod.
    c.kubectl(&["patch", "svc", "web", "-p", r#"{"spec":{"sessionAffinity":"ClientIP"}}"#]).ok();
    eventually("affinity holds", || (try_spread(&c, &a, &url, 30).ok()?.len() == 1).then_some(()));
    assert_eq!(spread(&c, &b, &url, 30).len(), 1);

    // Scaled to zero: refused at once; back to two: both serve.
    c.kubectl(&["scale", "deploy", "web", "--replicas", "0"]).ok();
    eventually("no endpoints refuse", || {
        get_from(&c, &solo.0, &url).err().filter(|e| e.contains("Connection refused"))
    });
    c.kubectl(&["patch", "svc", "web", "-p", r#"{"spec":{"sessionAffinity":"None"}}"#]).ok();
    c.kubectl(&["scale", "deploy", "web", "--replicas", "2"]).ok();
    running_pods(&c, "app=web", 2);
    eventually("two endpoints serve", || (try_spread(&c, &solo.0, &url, 40).ok()?.len() == 2).then_some(()));
}

#[test]
fn kubesvc_proxy_alone_stands_in_for_the_agents_proxy() {
    let bin = env!("CARGO_BIN_EXE_kubesvc");
    let c = Cluster::up(bin, 1).unwrap();
    c.kubectl_stdin(&["apply", "-f", "-"], Some(&WEB.replace("KUBESVC", bin))).ok();
    running_pods(&c, "app=web", 4);
    // The test's namespace is the machine here: it reaches the pods through the node.
    Command::new("ip").args(["route", "add", "10.244.0.0/16", "via", &node_ip(1)]).status().unwrap();
    // Service addresses go towards a gateway that is not there (as a default route would).
    Command::new("ip").args(["route", "add", "10.96.0.0/12", "via", "10.250.0.254"]).status().unwrap();
    let web = cluster_ip(&c, "web");
    assert_eq!(curl(&[&format!("http://{web}/")]), Err(28), "nothing programs this namespace yet");

    let log = std::fs::File::create(c.dir.path().join("proxy.log")).unwrap();
    let mut proxy = Command::new(bin)
        .args(["proxy", "--hostname-override", "machine", "--cluster-cidr", "10.244.0.0/16"])
        .args(["--service-cluster-ip-range", "10.96.0.0/12", "--healthz-bind-address", "127.0.0.1:10256"])
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let names: std::collections::BTreeSet<String> = eventually("the proxy programs the Service", || {
        let got: Vec<String> = (0..40).filter_map(|_| curl(&[&format!("http://{web}/")]).ok()).collect();
        (got.len() == 40).then_some(got.into_iter().collect())
    });
    assert_eq!(names.len(), 4, "{names:?}");
    let health: Value = serde_json::from_str(&curl(&["http://127.0.0.1:10256/healthz"]).unwrap()).unwrap();
    assert_eq!(health["nodeEligible"], true);
    let metrics = curl(&["http://127.0.0.1:10249/metrics"]).unwrap();
    for name in [
        "kubeproxy_sync_proxy_rules_duration_seconds_count",
        "kubeproxy_network_programming_duration_seconds_count",
        "kubesvc_proxy_services 6",
    ] {
        assert!(metrics.contains(name), "{name} in {metrics}");
    }
    assert_eq!(curl(&["http://127.0.0.1:10249/nope", "-o", "/dev/null", "-w", "%{http_code}"]), Ok("404".into()));

    // Its rules stay when it stops (as kube-proxy's do) and go with --cleanup.
    proxy.kill().unwrap();
    proxy.wait().unwrap();
    assert!(curl(&[&format!("http://{web}/")]).is_ok());
    let out = Command::new(bin).args(["proxy", "--cleanup"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let tables = Command::new("nft").args(["list", "tables"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&tables.stdout).contains("kubesvc"), "{tables:?}");
    assert_eq!(curl(&[&format!("http://{web}/")]), Err(28));
}

#[test]
fn proxy_modes_that_cannot_work_here_say_why() {
    let bin = env!("CARGO_BIN_EXE_kubesvc");
    let out =
        Command::new(bin).args(["proxy", "--proxy-mode", "ipvs", "--kubeconfig", "/nonexistent"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("this kernel has no IPVS"), "{err}");
}

const ROLLING: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  strategy: {rollingUpdate: {maxUnavailable: 0, maxSurge: 1}}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
      - name: web
        image: agnhost
        command: ["KUBESVC", "tool", "serve-hostname", "--port", "8080"]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
        # As Kubernetes advises: keep serving while the proxies take the pod out.
        lifecycle: {preStop: {sleep: {seconds: 2}}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  containers:
  - {name: client, image: agnhost, command: ["sleep", "3600"]}
"#;

#[test]
fn a_rolling_update_under_continuous_load_fails_no_request() {
    let bin = env!("CARGO_BIN_EXE_kubesvc");
    let c = Cluster::up(bin, 2).unwrap();
    c.kubectl_stdin(&["apply", "-f", "-"], Some(&ROLLING.replace("KUBESVC", bin))).ok();
    running_pods(&c, "app=web", 3);
    eventually("the client runs", || {
        (c.kubectl(&["get", "pod", "client", "-o", "jsonpath={.status.phase}"]).ok() == "Running").then_some(())
    });
    let url = format!("http://{}/", cluster_ip(&c, "web"));
    eventually("the Service answers", || get_from(&c, "client", &url).ok());
    // New connections, one after another, from before the update until after it.
    let stop = c.dir.path().join("stop-load");
    let code = format!(
        "import urllib.request,os,json,collections\n\
         ok=collections.Counter();failed=[]\n\
         while not os.path.exists('{stop}'):\n  \
           try: ok[urllib.request.urlopen('{url}',timeout=3).read().decode()]+=1\n  \
           except Exception as e: failed.append(str(e))\n\
         print(json.dumps({{'ok':ok,'failed':failed}}))",
        stop = stop.display()
    );
    let load = c
        .in_pod("default", "client", "python3")
        .unwrap()
        .args(["-c", &code])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(1));
    c.kubectl(&["rollout", "restart", "deploy/web"]).ok();
    let status = c.kubectl(&["rollout", "status", "deploy/web", "--timeout=90s"]);
    assert!(status.success, "{}", status.stderr);
    std::thread::sleep(std::time::Duration::from_secs(1));
    std::fs::write(&stop, "").unwrap();
    let out = load.wait_with_output().unwrap();
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    let served: u64 = result["ok"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(result["failed"], serde_json::json!([]), "{result}");
    // Both generations answered: the old pods, then the new ones.
    assert!(result["ok"].as_object().unwrap().len() >= 6, "{result}");
    assert!(served > 100, "{served} requests in the whole update");
}

#[test]
fn a_udp_client_follows_its_replaced_endpoint() {
    let bin = env!("CARGO_BIN_EXE_kubesvc");
    let c = Cluster::up(bin, 1).unwrap();
    let manifest = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: udp}
spec:
  replicas: 1
  selector: {matchLabels: {app: udp}}
  template:
    metadata: {labels: {app: udp}}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
      - name: udp
        image: agnhost
        command: ["KUBESVC", "tool", "serve-hostname", "--port", "8080", "--udp"]
        # The old pod keeps its address (and answers) while the new one starts elsewhere.
        lifecycle: {preStop: {sleep: {seconds: 5}}}
---
apiVersion: v1
kind: Service
metadata: {name: udp}
spec:
  selector: {app: udp}
  ports: [{port: 53, targetPort: 8080, protocol: UDP}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  containers:
  - {name: client, image: agnhost, command: ["sleep", "3600"]}
"#;
    c.kubectl_stdin(&["apply", "-f", "-"], Some(&manifest.replace("KUBESVC", bin))).ok();
    let first = running_pods(&c, "app=udp", 1).remove(0).0;
    eventually("the client runs", || {
        (c.kubectl(&["get", "pod", "client", "-o", "jsonpath={.status.phase}"]).ok() == "Running").then_some(())
    });
    let ip = cluster_ip(&c, "udp");
    // One socket (one source port, so one conntrack entry), a datagram every 50 ms; each answer
    // (or silence) on a line of its own.
    let code = format!(
        "import socket,sys,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(0.2)\n\
         while True:\n  s.sendto(b'x',('{ip}',53))\n  \
           try: print(s.recv(100).decode(),flush=True)\n  \
           except OSError: print('-',flush=True)\n  time.sleep(0.05)"
    );
    let mut client = c
        .in_pod("default", "client", "python3")
        .unwrap()
        .args(["-c", &code])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(client.stdout.take().unwrap()));
    // The bound is for liveness (a stuck flow fails the test), not speed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut next_answer = |want: &dyn Fn(&str) -> bool| loop {
        let line = lines.next().expect("the client stopped").unwrap();
        if want(&line) {
            return line;
        }
        assert!(std::time::Instant::now() < deadline, "the flow never reached the new pod");
    };
    next_answer(&|l| l == first);
    c.kubectl(&["delete", "pod", &first, "--wait=false"]).ok();
    let deleted = std::time::Instant::now();
    // The same flow is answered by the new pod once it is ready, though the old one still
    // serves while it terminates: the entry to the old one was deleted. (Without that, a
    // client that keeps sending keeps its entry, and its datagrams, on the old pod, and then
    // on nothing once it is gone.)
    let second = next_answer(&|l| l != "-" && l != first);
    assert!(second.starts_with("udp-"), "{second}");
    eprintln!("the UDP flow moved to {second} {:?} after the old pod's deletion", deleted.elapsed());
    let _ = client.kill();
    let _ = client.wait();
}
