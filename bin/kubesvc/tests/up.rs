//! `kubesvc up` for real, in a network namespace the test made: nodes in
//! namespaces of their own with their own certificates, pods that reach each
//! other within and across nodes, a second `up` that resumes the cluster, and
//! nothing left behind once it stops. Needs root and kubectl; fails without.
#![allow(clippy::unwrap_used)] // Tests: a failed step is a failed test.

mod common;

use std::process::Command;

use common::{eventually, json, running_pods};
use kubesvc_testsupport::Cluster;

/// What the machine has that a cluster named `name` could have made: named
/// namespaces, links in the test's namespace, mounts, processes.
#[derive(Debug, PartialEq)]
struct Footprint {
    netns: Vec<String>,
    links: Vec<String>,
    mounts: Vec<String>,
    processes: Vec<String>,
}

fn footprint(name: &str, dir: &std::path::Path, pod_uids: &[String]) -> Footprint {
    // The cluster's node namespaces are `<name>-node-<i>`; `name` itself is the test's.
    let prefix = format!("{name}-");
    let ours = |s: &str| s.contains(&prefix) || pod_uids.iter().any(|u| s.contains(u.as_str()));
    let netns = std::fs::read_dir("/run/netns")
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| ours(n)).collect())
        .unwrap_or_default();
    let out = Command::new("ip").args(["-o", "link"]).output().unwrap();
    let mut links: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1).map(|n| n.split('@').next().unwrap_or(n).to_string()))
        .collect();
    links.sort();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| ours(l) || l.contains(&*dir.to_string_lossy()))
        .map(str::to_string)
        .collect();
    let dir = dir.to_string_lossy().into_owned();
    let mut processes = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(&dir) {
                processes.push(cmd);
            }
        }
    }
    Footprint { netns, links, mounts, processes }
}

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
        command: ["KUBESVC", "tool", "serve-hostname", "--port", "8080"]
"#;

/// An HTTP GET from inside pod `from`.
fn http_from(c: &Cluster, from: &str, ip: &str) -> String {
    try_http_from(c, from, ip).unwrap_or_else(|e| panic!("GET {ip} from {from}: {e}"))
}

fn try_http_from(c: &Cluster, from: &str, ip: &str) -> Result<String, String> {
    let get =
        format!("import urllib.request;print(urllib.request.urlopen('http://{ip}:8080/',timeout=5).read().decode())");
    let out = c.in_pod("default", from, "python3").map_err(|e| e.to_string())?.args(["-c", &get]).output();
    let out = out.map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn up_runs_two_nodes_whose_pods_reach_each_other_and_leaves_nothing_behind() {
    let bin = env!("CARGO_BIN_EXE_kubesvc");
    let mut c = Cluster::up(bin, 2).unwrap();
    let name = c.netns_name().to_string();
    let dir = c.dir.path().to_path_buf();
    // What the test's namespace held before `up` is what it holds after.
    let before_links = {
        let f = footprint(&name, &dir, &[]);
        f.links.into_iter().filter(|l| !l.starts_with("kubesvc0")).collect::<Vec<_>>()
    };

    // Two nodes, Ready, each with its own address and its own certificate.
    let nodes = json(&c, &["get", "nodes", "-o", "json"]);
    let mut seen = Vec::new();
    for n in nodes["items"].as_array().unwrap() {
        let node = n["metadata"]["name"].as_str().unwrap().to_string();
        let ready =
            n["status"]["conditions"].as_array().unwrap().iter().any(|c| c["type"] == "Ready" && c["status"] == "True");
        assert!(ready, "{node} is Ready");
        let ip = n["status"]["addresses"][0]["address"].as_str().unwrap().to_string();
        seen.push((node.clone(), ip, n["spec"]["podCIDR"].as_str().unwrap().to_string()));
        let kubeconfig = std::fs::read_to_string(dir.join("nodes").join(&node).join("kubeconfig")).unwrap();
        let pem = kubeconfig.lines().find_map(|l| l.trim().strip_prefix("client-certificate-data: ")).unwrap();
        let decoded = Command::new("sh")
            .args(["-c", &format!("echo {pem} | base64 -d | openssl x509 -noout -subject -nameopt RFC2253")])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&decoded.stdout).trim(),
            format!("subject=O=system:nodes,CN=system:node:{node}")
        );
    }
    seen.sort();
    let (ips, cidrs): (Vec<&str>, Vec<&str>) = seen.iter().map(|(_, ip, cidr)| (ip.as_str(), cidr.as_str())).unzip();
    assert_eq!([seen[0].0.as_str(), seen[1].0.as_str()], ["node-1", "node-2"]);
    assert_eq!(ips, ["10.250.0.2", "10.250.0.3"]);
    assert!(
        cidrs[0] != cidrs[1] && cidrs.iter().all(|c| c.starts_with("10.244.") && c.ends_with(".0/24")),
        "{cidrs:?}"
    );
    // The agents serve the API server's identity only, not a node's (the same CA signs both).
    let ca = kubesvc_apiserver::pki::Ca::load(&dir).unwrap();
    for (cn, group, served) in
        [("system:node:node-1", "system:nodes", false), ("kube-apiserver-kubelet-client", "system:masters", true)]
    {
        let cert = ca.issue_client(cn, group).unwrap();
        let (crt, key) = (dir.join("probe.crt"), dir.join("probe.key"));
        std::fs::write(&crt, &cert.cert_pem).unwrap();
        std::fs::write(&key, &cert.key_pem).unwrap();
        let out = Command::new("curl")
            .args(["-sk", "--max-time", "5", "--cert"])
            .arg(&crt)
            .arg("--key")
            .arg(&key)
            .arg("https://10.250.0.3:10250/healthz")
            .output()
            .unwrap();
        assert_eq!(out.status.success() && out.stdout == b"ok", served, "{cn}: {out:?}");
    }

    // The node's own namespace holds its address.
    let addr = c.in_node(1, "ip").args(["-o", "-4", "addr", "show", "eth0"]).output().unwrap();
    assert!(String::from_utf8_lossy(&addr.stdout).contains("10.250.0.2/24"));

    // Four pods over two nodes; each answers every other, within its node and across.
    c.kubectl_stdin(&["apply", "-f", "-"], Some(&WEB.replace("KUBESVC", bin))).ok();
    let pods = running_pods(&c, "app=web", 4);
    let on = |node: &str| pods.iter().filter(|p| p.2 == node).count();
    assert!(on("node-1") >= 1 && on("node-2") >= 1, "the scheduler spreads the pods: {pods:?}");
    for (from, _, _) in &pods {
        for (to, ip, _) in &pods {
            assert_eq!(http_from(&c, from, ip), *to, "{from} → {to} at {ip}");
        }
    }
    // A pod's own namespace holds exactly its address.
    let (p0, ip0, _) = &pods[0];
    let out = c.in_pod("default", p0, "ip").unwrap().args(["-o", "-4", "addr", "show", "eth0"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("{ip0}/32")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A second `up` on the same data directory resumes the same cluster: the pods run again.
    let uids: Vec<String> = json(&c, &["get", "pods", "-o", "json"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["uid"].as_str().unwrap().to_string())
        .collect();
    c.stop().unwrap();
    let after = footprint(&name, &dir, &uids);
    assert_eq!(
        after,
        Footprint { netns: vec![], links: before_links.clone(), mounts: vec![], processes: vec![] },
        "after `up` stopped"
    );
    c.start_again().unwrap();
    let again = running_pods(&c, "app=web", 4);
    let names = |p: &[(String, String, String)]| {
        let mut n: Vec<String> = p.iter().map(|p| p.0.clone()).collect();
        n.sort();
        n
    };
    assert_eq!(names(&again), names(&pods), "the same pods run after the second up");
    // Until the new agents report, the pods' status still shows the last run's addresses.
    eventually("the pods answer at their new addresses", || {
        let again = running_pods(&c, "app=web", 4);
        let (p1, ip1, _) = &again[1];
        (try_http_from(&c, &again[0].0, ip1).ok().as_deref() == Some(p1.as_str())).then_some(())
    });
    c.stop().unwrap();
    assert_eq!(
        footprint(&name, &dir, &uids),
        Footprint { netns: vec![], links: before_links, mounts: vec![], processes: vec![] },
        "after the second `up` stopped"
    );
}

#[test]
fn probes_flip_readiness_endpoints_follow_and_failed_liveness_restarts() {
    let bin = env!("CARGO_BIN_EXE_kubesvc");
    let c = Cluster::up(bin, 1).unwrap();
    // Pods see the node's filesystem: a file the test makes is the readiness switch.
    let flag = c.dir.path().join("ready-flag");
    let manifest = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: gated, labels: {{app: gated}}}}
spec:
  containers:
  - name: web
    image: agnhost
    command: ["{bin}", "tool", "serve-hostname", "--port", "8080"]
    ports: [{{name: http, containerPort: 8080}}]
    readinessProbe:
      exec: {{command: ["test", "-f", "{flag}"]}}
      periodSeconds: 1
      failureThreshold: 1
    startupProbe:
      tcpSocket: {{port: http}}
      periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: gated}}
spec:
  selector: {{app: gated}}
  ports: [{{port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: grpc}}
spec:
  containers:
  - name: health
    image: agnhost
    command: ["{bin}", "tool", "grpc-health", "--port", "9000"]
    readinessProbe:
      grpc: {{port: 9000}}
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata: {{name: doomed}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: agnhost
    command: ["{bin}", "tool", "serve-hostname", "--port", "8080"]
    livenessProbe:
      httpGet: {{path: /healthz, port: 9999}}
      periodSeconds: 1
      failureThreshold: 2
"#,
        flag = flag.display()
    );
    c.kubectl_stdin(&["apply", "-f", "-"], Some(&manifest)).ok();
    let endpoint_ready = || -> Option<bool> {
        let slices = json(&c, &["get", "endpointslices", "-l", "kubernetes.io/service-name=gated", "-o", "json"]);
        slices["items"][0]["endpoints"][0]["conditions"]["ready"].as_bool()
    };
    let pod_ready = || {
        let p = json(&c, &["get", "pod", "gated", "-o", "json"]);
        let cs = &p["status"]["containerStatuses"][0];
        (p["status"]["phase"] == "Running").then(|| (cs["started"].as_bool(), cs["ready"].as_bool()))
    };
    // Started (the TCP startup probe passed) but not ready: the flag is missing.
    eventually("the pod runs, started but unready", || (pod_ready() == Some((Some(true), Some(false)))).then_some(()));
    eventually("its endpoint is not ready", || (endpoint_ready() == Some(false)).then_some(()));
    let events = c.kubectl(&["get", "events", "--field-selector", "involvedObject.name=gated", "-o", "json"]).ok();
    assert!(events.contains("Readiness probe failed: "), "{events}");
    std::fs::write(&flag, "").unwrap();
    eventually("the pod turns ready", || (pod_ready() == Some((Some(true), Some(true)))).then_some(()));
    eventually("its endpoint turns ready", || (endpoint_ready() == Some(true)).then_some(()));
    std::fs::remove_file(&flag).unwrap();
    eventually("the pod turns unready again", || (pod_ready() == Some((Some(true), Some(false)))).then_some(()));
    eventually("its endpoint follows", || (endpoint_ready() == Some(false)).then_some(()));

    // A gRPC health server passes its gRPC readiness probe.
    eventually("the gRPC pod turns ready", || {
        let p = json(&c, &["get", "pod", "grpc", "-o", "json"]);
        (p["status"]["containerStatuses"][0]["ready"] == true).then_some(())
    });

    // A liveness probe that cannot connect: kubelet's events, then a restart.
    let ip = eventually("doomed has an IP", || {
        json(&c, &["get", "pod", "doomed", "-o", "json"])["status"]["podIP"].as_str().map(str::to_string)
    });
    eventually("doomed restarts", || {
        let p = json(&c, &["get", "pod", "doomed", "-o", "json"]);
        (p["status"]["containerStatuses"][0]["restartCount"].as_i64() >= Some(1)).then_some(())
    });
    let events = c.kubectl(&["get", "events", "--field-selector", "involvedObject.name=doomed"]).ok();
    assert!(
        events.contains(&format!(
            "Liveness probe failed: Get \"http://{ip}:9999/healthz\": dial tcp {ip}:9999: connect: connection refused"
        )),
        "{events}"
    );
    assert!(events.contains("Container web failed liveness probe, will be restarted"), "{events}");
    // The run before the restart keeps its own log, and a crash-looping pod is still Running, as kubelet says.
    let previous = c.kubectl(&["logs", "doomed", "--previous"]).ok();
    assert!(previous.contains("serving the host name on port 8080"), "{previous}");
    assert_eq!(json(&c, &["get", "pod", "doomed", "-o", "json"])["status"]["phase"], "Running");
}

/// kubectl run with `args`, its output once it exits or `wait` passed (then it is killed).
fn kubectl_for(c: &Cluster, args: &[&str], wait: std::time::Duration) -> String {
    let mut child = c
        .kubectl_command(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + wait;
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// An HTTP GET of `url` from the test's namespace (where kubectl port-forward listens).
fn get(url: &str) -> Option<String> {
    let out = Command::new("python3")
        .args([
            "-c",
            &format!("import urllib.request;print(urllib.request.urlopen('{url}',timeout=5).read().decode())"),
        ])
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn logs_exec_attach_cp_and_port_forward_go_through_the_api_server_to_the_agent() {
    let bin = env!("CARGO_BIN_EXE_kubesvc");
    let c = Cluster::up(bin, 2).unwrap();
    let talker = r#"
apiVersion: v1
kind: Pod
metadata: {name: talker}
spec:
  containers:
  - name: c
    image: busybox
    command: ["sh", "-c", "echo hello; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done"]
"#;
    c.kubectl_stdin(&["apply", "-f", "-"], Some(talker)).ok();
    c.kubectl_stdin(&["apply", "-f", "-"], Some(&WEB.replace("KUBESVC", bin).replace("replicas: 4", "replicas: 2")))
        .ok();
    running_pods(&c, "app=web", 2);
    eventually("talker talks", || c.kubectl(&["logs", "talker"]).stdout.contains("tick 3").then_some(()));

    // logs: all, --tail, --timestamps, -f, --previous, a container that is not there.
    let all = c.kubectl(&["logs", "talker"]).ok();
    assert!(all.starts_with("hello\ntick 1\ntick 2\n"), "{all}");
    let tail = c.kubectl(&["logs", "talker", "--tail", "1"]).ok();
    assert_eq!(tail.lines().count(), 1, "{tail}");
    assert!(tail.starts_with("tick "), "{tail}");
    let stamped = c.kubectl(&["logs", "talker", "--tail", "1", "--timestamps"]).ok();
    let (ts, text) = stamped.trim_end().split_once(' ').unwrap();
    assert!(ts.starts_with("20") && ts.contains('T') && ts.ends_with('Z') && text.starts_with("tick "), "{stamped}");
    let followed = kubectl_for(&c, &["logs", "-f", "talker", "--tail", "1"], std::time::Duration::from_secs(2));
    assert!(followed.lines().filter(|l| l.starts_with("tick ")).count() >= 3, "-f keeps streaming: {followed}");
    let err = c.kubectl(&["logs", "talker", "--previous"]).err();
    assert_eq!(
        err.trim(),
        "Error from server (BadRequest): previous terminated container \"c\" in pod \"talker\" not found"
    );
    let err = c.kubectl(&["logs", "talker", "-c", "nope"]).err();
    assert!(err.contains("container nope is not valid for pod talker"), "{err}");
    let deploy_logs = c.kubectl(&["logs", "deploy/web"]).ok();
    assert!(deploy_logs.contains("serving the host name on port 8080"), "{deploy_logs}");

    // exec: output, exit codes, stdin, and a terminal with -t.
    assert_eq!(c.kubectl(&["exec", "talker", "--", "sh", "-c", "hostname; echo $HOSTNAME"]).ok(), "talker\ntalker\n");
    let failed = c.kubectl(&["exec", "talker", "--", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert!(!failed.success);
    assert_eq!(failed.stdout, "out\n");
    assert!(
        failed.stderr.contains("err\n") && failed.stderr.contains("command terminated with exit code 3"),
        "{failed:?}"
    );
    assert_eq!(
        c.kubectl_stdin(&["exec", "-i", "talker", "--", "cat"], Some("through stdin\n")).ok(),
        "through stdin\n"
    );
    // kubectl wants a terminal of its own for -t: script(1) gives it one.
    let tty = Command::new("script")
        .args(["-qec", "kubectl exec -it talker -- sh -c 'tty; stty size; exit 0'", "/dev/null"])
        .env("KUBECONFIG", &c.kubeconfig)
        .env("KUBECACHEDIR", c.dir.path().join("kubectl-cache"))
        .stdin(std::process::Stdio::piped())
        .output()
        .unwrap();
    let tty = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.contains("/dev/pts/"), "{tty}");

    // attach: what the container prints from now on.
    let attached = kubectl_for(&c, &["attach", "talker"], std::time::Duration::from_secs(2));
    assert!(attached.lines().any(|l| l.starts_with("tick ")), "{attached}");

    // cp both ways (tar through exec); the pod sees the node's files, so a fresh path under the test's directory.
    let src = c.dir.path().join("cp-src.txt");
    std::fs::write(&src, "copied\n").unwrap();
    let inside = c.dir.path().join("cp-inside.txt");
    c.kubectl(&["cp", &src.to_string_lossy(), &format!("talker:{}", inside.display())]).ok();
    assert_eq!(std::fs::read_to_string(&inside).unwrap(), "copied\n");
    let back = c.dir.path().join("cp-back.txt");
    c.kubectl(&["cp", &format!("talker:{}", inside.display()), &back.to_string_lossy()]).ok();
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "copied\n");

    // port-forward to a pod, and to a service (a ready pod behind it, as kubectl picks one).
    c.kubectl(&["expose", "deployment", "web", "--port", "80", "--target-port", "8080"]).ok();
    let pods: Vec<String> = running_pods(&c, "app=web", 2).into_iter().map(|p| p.0).collect();
    let mut pf = c.kubectl_command(&["port-forward", &format!("pod/{}", pods[0]), "18080:8080"]).spawn().unwrap();
    let answer = eventually("the pod answers through port-forward", || get("http://127.0.0.1:18080/"));
    assert_eq!(answer, pods[0]);
    let _ = pf.kill();
    let _ = pf.wait();
    let mut pf = c.kubectl_command(&["port-forward", "service/web", "18081:80"]).spawn().unwrap();
    let answer = eventually("a pod answers through the service's port-forward", || get("http://127.0.0.1:18081/"));
    assert!(pods.contains(&answer), "{answer} is one of {pods:?}");
    let _ = pf.kill();
    let _ = pf.wait();

    // kubectl before 1.31 (and kube-apiserver, to kubelet) speak plain SPDY: the same forward.
    let mut pf = c
        .kubectl_command(&["port-forward", &format!("pod/{}", pods[1]), "18083:8080"])
        .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")
        .spawn()
        .unwrap();
    let answer = eventually("the pod answers through SPDY port-forward", || get("http://127.0.0.1:18083/"));
    assert_eq!(answer, pods[1]);
    let _ = pf.kill();
    let _ = pf.wait();

    // A port nothing listens on: kubelet's error, from kubectl.
    let pf = c
        .kubectl_command(&["port-forward", "pod/talker", "18082:9999"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    eventually("port-forward listens", || std::net::TcpStream::connect("127.0.0.1:18082").ok().map(|_| ()));
    let out = pf.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error forwarding port 9999 to pod talker_default")
            && stderr.contains("dial tcp4 127.0.0.1:9999: connect: connection refused"),
        "{stderr}"
    );

    // runAsUser/runAsGroup: the command and what exec runs beside it.
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Pod\nmetadata: {name: nobody}\nspec:\n  securityContext: {runAsUser: 65534, runAsGroup: 65534}\n  containers:\n  - {name: c, image: x, command: [\"sh\", \"-c\", \"id -u; id -g; sleep 3600\"]}\n"),
    )
    .ok();
    eventually("nobody runs", || (c.kubectl(&["logs", "nobody"]).stdout == "65534\n65534\n").then_some(()));
    assert_eq!(c.kubectl(&["exec", "nobody", "--", "id", "-u"]).ok(), "65534\n");

    // exec into a container that has finished.
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Pod\nmetadata: {name: done}\nspec:\n  restartPolicy: Never\n  containers:\n  - {name: c, image: x, command: [\"true\"]}\n"),
    )
    .ok();
    eventually("done is done", || {
        (json(&c, &["get", "pod", "done", "-o", "json"])["status"]["phase"] == "Succeeded").then_some(())
    });
    let err = c.kubectl(&["exec", "done", "--", "true"]).err();
    assert_eq!(err.trim(), "error: cannot exec into a container in a completed pod; current phase is Succeeded");
}

/// Seed 003's walkthrough, typed as the article types it, from `kubesvc up`
/// (one node, as `up` defaults) to the page on http://localhost:8090.
#[test]
fn seed_003_walkthrough_from_up_to_the_page_on_localhost_8090() {
    let bin = env!("CARGO_BIN_EXE_kubesvc");
    let c = Cluster::up(bin, 1).unwrap();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let deployment = examples.join("apache-deployment.yaml");
    let out = c.kubectl(&["apply", "-f", &deployment.to_string_lossy()]).ok();
    assert_eq!(out, "deployment.apps/apache-deployment created\n");

    let table = eventually("4/4 ready", || {
        let t = c.kubectl(&["get", "deployment", "apache-deployment"]).ok();
        t.lines()
            .nth(1)
            .is_some_and(|l| l.split_whitespace().take(4).eq(["apache-deployment", "4/4", "4", "4"]))
            .then_some(t)
    });
    assert!(table.starts_with("NAME                READY   UP-TO-DATE   AVAILABLE   AGE\n"), "{table}");

    let out = c
        .kubectl(&[
            "expose",
            "deployment",
            "apache-deployment",
            "--name=apache-http-service",
            "--type=ClusterIP",
            "--port=8080",
            "--target-port=8080",
        ])
        .ok();
    assert_eq!(out, "service/apache-http-service exposed\n");
    let svc = c.kubectl(&["get", "service", "apache-http-service"]).ok();
    let row: Vec<&str> = svc.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        svc.lines().next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    );
    assert_eq!((row[0], row[1], row[3], row[4]), ("apache-http-service", "ClusterIP", "<none>", "8080/TCP"));
    assert!(row[2].starts_with("10."), "a cluster IP from 10.96.0.0/12: {svc}");

    let mut pf = c
        .kubectl_command(&["port-forward", "service/apache-http-service", "8090:8080"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let page = eventually("the page on localhost:8090", || get("http://localhost:8090"));
    assert!(page.contains("<h1>It works!</h1>"), "{page}");
    assert!(page.contains("Served by apache-deployment-"), "{page}");
    let _ = pf.kill();
    let out = pf.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("Forwarding from 127.0.0.1:8090 -> 8080\nForwarding from [::1]:8090 -> 8080\n"), "{said}");

    // The hand-written Service of the article selects the same pods.
    c.kubectl(&["delete", "service", "apache-http-service"]).ok();
    let service = examples.join("apache-http-service.yaml");
    assert_eq!(c.kubectl(&["apply", "-f", &service.to_string_lossy()]).ok(), "service/apache-http-service created\n");
    let eps = eventually("its endpoints", || {
        let s =
            json(&c, &["get", "endpointslices", "-l", "kubernetes.io/service-name=apache-http-service", "-o", "json"]);
        let n = s["items"][0]["endpoints"].as_array().map_or(0, |e| e.len());
        (n == 4).then_some(n)
    });
    assert_eq!(eps, 4);
}

#[test]
fn init_containers_run_in_order_before_the_app_and_pre_stop_runs_before_sigterm() {
    let bin = env!("CARGO_BIN_EXE_kubesvc");
    let c = Cluster::up(bin, 1).unwrap();
    let dir = c.dir.path().display().to_string();
    let manifest = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: initialized}}
spec:
  initContainers:
  - {{name: first, image: x, command: ["sh", "-c", "echo first > {dir}/order"]}}
  - {{name: second, image: x, command: ["sh", "-c", "echo second >> {dir}/order"]}}
  containers:
  - {{name: main, image: x, command: ["sh", "-c", "cat {dir}/order; sleep 3600"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: stuck}}
spec:
  initContainers:
  - {{name: fail, image: x, command: ["sh", "-c", "exit 1"]}}
  containers:
  - {{name: main, image: x, command: ["sleep", "3600"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: hooked}}
spec:
  terminationGracePeriodSeconds: 10
  containers:
  - name: main
    image: x
    command: ["sh", "-c", "trap 'echo TERM >> {dir}/hook; exit 0' TERM; while true; do sleep 0.1; done"]
    lifecycle:
      preStop:
        exec: {{command: ["sh", "-c", "echo prestop >> {dir}/hook; sleep 1"]}}
"#
    );
    c.kubectl_stdin(&["apply", "-f", "-"], Some(&manifest)).ok();
    eventually("the app container runs after both init containers", || {
        let logs = c.kubectl(&["logs", "initialized", "-c", "main"]);
        (logs.success && logs.stdout == "first\nsecond\n").then_some(())
    });
    let p = json(&c, &["get", "pod", "initialized", "-o", "json"]);
    let inits = p["status"]["initContainerStatuses"].as_array().unwrap();
    assert_eq!(inits.len(), 2);
    for s in inits {
        assert_eq!(s["state"]["terminated"]["reason"], "Completed", "{s}");
        assert_eq!(s["ready"], true);
    }
    let conditions = p["status"]["conditions"].as_array().unwrap();
    assert!(conditions.iter().any(|c| c["type"] == "Initialized" && c["status"] == "True"));

    // A failing init container holds the pod in Pending and backs off; the app never starts.
    let stuck = eventually("the failing init container backs off", || {
        let p = json(&c, &["get", "pod", "stuck", "-o", "json"]);
        (p["status"]["initContainerStatuses"][0]["restartCount"].as_i64() >= Some(1)).then_some(p)
    });
    assert_eq!(stuck["status"]["phase"], "Pending");
    let init =
        stuck["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Initialized").cloned().unwrap();
    assert_eq!(init["status"], "False");
    assert_eq!(init["message"], "containers with incomplete status: [fail]");
    assert_eq!(stuck["status"]["containerStatuses"][0]["state"]["waiting"]["reason"], "PodInitializing");
    let table = c.kubectl(&["get", "pod", "stuck"]).ok();
    assert!(table.contains("Init:"), "{table}");

    // preStop, then SIGTERM: the hook's line comes first.
    eventually("hooked runs", || {
        (json(&c, &["get", "pod", "hooked", "-o", "json"])["status"]["phase"] == "Running").then_some(())
    });
    let started = std::time::Instant::now();
    c.kubectl(&["delete", "pod", "hooked"]).ok();
    assert!(started.elapsed() >= std::time::Duration::from_secs(1), "the hook's second passed before SIGTERM");
    assert_eq!(std::fs::read_to_string(c.dir.path().join("hook")).unwrap(), "prestop\nTERM\n");
}
