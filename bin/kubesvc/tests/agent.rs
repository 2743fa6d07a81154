//! The node agent for real: `kubesvc agent` beside `kubesvc server` in a
//! network namespace the test made, running pods as processes with their own
//! network, files and environment, restarting them with back-off and
//! deleting them gracefully. Needs root; fails (never skips) without it.
#![allow(clippy::unwrap_used)] // Tests: a failed step is a failed test.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::eventually;
use kubesvc_testsupport::{Cluster, NODE_IP};
use serde_json::Value;

/// `kubesvc agent` for node `name`, stopped (and what it left removed, by name) on drop.
struct Agent {
    child: Option<Child>,
    dir: std::path::PathBuf,
    pod_uids: Vec<String>,
}

impl Agent {
    fn start(c: &Cluster, name: &str) -> Agent {
        Self::start_with(c, name, &[])
    }

    fn start_with(c: &Cluster, name: &str, extra: &[&str]) -> Agent {
        let dir = c.dir.path().join(format!("agent-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::File::create(dir.join("agent.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kubesvc"))
            .args(["agent", "--node-name", name, "--node-ip", NODE_IP, "--node-lease-duration-seconds", "4"])
            .arg("--kubeconfig")
            .arg(&c.kubeconfig)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Agent { child: Some(child), dir, pod_uids: Vec::new() }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// SIGTERM, and the agent's exit code.
    fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM);
        for _ in 0..300 {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait().ok().and_then(|s| s.code())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- agent log ----\n{}", self.log());
        }
        self.stop();
        for uid in &self.pod_uids {
            if let Ok(ns) = kubesvc_host::NetNs::open(&format!("kubesvc-pod-{uid}")) {
                let _ = ns.delete();
            }
        }
    }
}

fn json(c: &Cluster, args: &[&str]) -> Value {
    serde_json::from_str(&c.kubectl(args).ok()).unwrap()
}

fn apply(c: &Cluster, yaml: &str) {
    c.kubectl_stdin(&["apply", "-f", "-"], Some(yaml)).ok();
}

fn pod_yaml(name: &str, script: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    app: {name}\nspec:\n{extra}  containers:\n  - name: main\n    image: busybox\n    command: [\"sh\", \"-c\", {script:?}]\n"
    )
}

/// Waits for the pod to be Running with an address; returns its status.
fn running(c: &Cluster, name: &str) -> Value {
    eventually(&format!("pod {name} running"), || {
        let p = json(c, &["get", "pod", name, "-o", "json"]);
        (p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string()).then(|| p["status"].clone())
    })
}

fn http_get(ip: &str, port: u16) -> String {
    let mut s = TcpStream::connect_timeout(&format!("{ip}:{port}").parse().unwrap(), Duration::from_secs(5)).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn pods_run_as_processes_with_their_own_network_files_and_environment() {
    let c = Cluster::start(env!("CARGO_BIN_EXE_kubesvc")).unwrap();
    let mut agent = Agent::start(&c, "node-1");
    eventually("node-1 Ready", || {
        let n =
            c.kubectl(&["get", "node", "node-1", "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]);
        (n.success && n.stdout == "True").then_some(())
    });
    let node = json(&c, &["get", "node", "node-1", "-o", "json"]);
    assert_eq!(node["spec"]["podCIDR"], "10.244.0.0/24");
    assert_eq!(node["status"]["addresses"][0], serde_json::json!({"type": "InternalIP", "address": NODE_IP}));
    assert_eq!(node["metadata"]["labels"]["kubernetes.io/hostname"], "node-1");
    assert_eq!(node["status"]["capacity"]["pods"], "110");

    // A web server in a pod, reached at the pod's own address from the node.
    apply(&c, &pod_yaml("web", "echo started; exec python3 -m http.server 8080 --bind 0.0.0.0", ""));
    let status = running(&c, "web");
    let ip = status["podIP"].as_str().unwrap().to_string();
    assert!(ip.starts_with("10.244.0."), "{ip}");
    assert_eq!(status["hostIP"], NODE_IP);
    let page = eventually("the pod answers HTTP", || {
        std::panic::catch_unwind(|| http_get(&ip, 8080)).ok().filter(|p| p.starts_with("HTTP/1.0 200"))
    });
    assert!(page.contains("Directory listing"), "{page}");
    let uid = c.kubectl(&["get", "pod", "web", "-o", "jsonpath={.metadata.uid}"]).ok();
    agent.pod_uids.push(uid.clone());
    let log_file = agent.dir.join("state/pods").join(&uid).join("main/0.log");
    let log =
        eventually("the container log", || std::fs::read_to_string(&log_file).ok().filter(|l| l.contains("started")));
    assert!(log.lines().next().unwrap().ends_with(" stdout F started"), "{log}");

    // What a pod sees: its hostname, hosts, resolv.conf and the service variables.
    apply(&c, &pod_yaml("look", "hostname; cat /etc/hosts; cat /etc/resolv.conf; env | sort; sleep 3600", ""));
    running(&c, "look");
    let look_uid = c.kubectl(&["get", "pod", "look", "-o", "jsonpath={.metadata.uid}"]).ok();
    agent.pod_uids.push(look_uid.clone());
    let look_ip = c.kubectl(&["get", "pod", "look", "-o", "jsonpath={.status.podIP}"]).ok();
    let look_log = agent.dir.join("state/pods").join(&look_uid).join("main/0.log");
    let out = eventually("look's output", || {
        let l = std::fs::read_to_string(&look_log).ok()?;
        l.contains("KUBERNETES_SERVICE_HOST").then_some(l)
    });
    let text: Vec<&str> = out.lines().map(|l| l.splitn(4, ' ').nth(3).unwrap_or("")).collect();
    let text = text.join("\n");
    assert!(text.starts_with("look\n# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"), "{text}");
    assert!(text.contains(&format!("\n{look_ip}\tlook\n")), "{text}");
    assert!(text.contains("search default.svc.cluster.local svc.cluster.local cluster.local"), "{text}");
    assert!(text.contains("nameserver 10.96.0.10\noptions ndots:5\n"), "{text}");
    assert!(text.contains("KUBERNETES_SERVICE_HOST=10.96.0.1\n"), "{text}");
    assert!(text.contains("KUBERNETES_PORT_443_TCP=tcp://10.96.0.1:443\n"), "{text}");
    // What a runtime adds: HOSTNAME, and PATH as an image without one gets it.
    assert!(text.contains("\nHOSTNAME=look\n"), "{text}");
    assert!(text.contains("\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"), "{text}");

    // A crashing container restarts with kubelet's back-off.
    apply(&c, &pod_yaml("crash", "echo once; exit 3", ""));
    let crash_uid = c.kubectl(&["get", "pod", "crash", "-o", "jsonpath={.metadata.uid}"]).ok();
    agent.pod_uids.push(crash_uid);
    let waiting = eventually("CrashLoopBackOff", || {
        let p = json(&c, &["get", "pod", "crash", "-o", "json"]);
        let cs = p["status"]["containerStatuses"][0].clone();
        (cs["state"]["waiting"]["reason"] == "CrashLoopBackOff").then_some(cs)
    });
    assert!(
        waiting["state"]["waiting"]["message"]
            .as_str()
            .unwrap()
            .starts_with("back-off 10s restarting failed container=main pod=crash_default("),
        "{waiting}"
    );
    assert_eq!(waiting["lastState"]["terminated"]["exitCode"], 3);
    assert_eq!(waiting["lastState"]["terminated"]["reason"], "Error");
    assert!(waiting["restartCount"].as_i64().unwrap() >= 1);

    // Graceful deletion: SIGTERM, the pod's grace, then it is gone with its network.
    let started = std::time::Instant::now();
    c.kubectl(&["delete", "pod", "web", "--grace-period=5"]).ok();
    assert!(started.elapsed() < Duration::from_secs(5), "python exits on SIGTERM, well within the grace period");
    assert!(!kubesvc_host::NetNs::exists(&format!("kubesvc-pod-{uid}")), "the pod's namespace went with it");
    assert!(TcpStream::connect_timeout(&format!("{ip}:8080").parse().unwrap(), Duration::from_millis(300)).is_err());
    let events = c
        .kubectl(&["get", "events", "--field-selector", "involvedObject.name=web", "-o", "jsonpath={.items[*].reason}"])
        .ok();
    for reason in ["Created", "Started", "Killing"] {
        assert!(events.contains(reason), "{events}");
    }

    // The agent stopping takes everything it started with it.
    assert_eq!(agent.stop(), Some(0), "{}", agent.log());
    assert!(!kubesvc_host::NetNs::exists(&format!("kubesvc-pod-{look_uid}")), "{}", agent.log());
}

#[test]
fn an_agent_asked_to_keep_pods_hands_them_running_to_the_next_agent() {
    let c = Cluster::start(env!("CARGO_BIN_EXE_kubesvc")).unwrap();
    let mut first = Agent::start_with(&c, "node-1", &["--keep-pods-on-exit"]);
    apply(&c, &pod_yaml("kept", "echo up; exec sleep 3600", ""));
    let status = running(&c, "kept");
    let ip = status["podIP"].as_str().unwrap().to_string();
    let uid = c.kubectl(&["get", "pod", "kept", "-o", "jsonpath={.metadata.uid}"]).ok();
    first.pod_uids.push(uid.clone());
    let record = first.dir.join("state/pods").join(&uid).join("main/0.running");
    let pid: i32 = eventually("the shim's record of the command", || {
        let r: Value = serde_json::from_slice(&std::fs::read(&record).ok()?).ok()?;
        r["pid"].as_i64().map(|p| p as i32)
    });
    let alive = |pid: i32| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();

    // The first agent goes; the pod's process and network stay.
    assert_eq!(first.stop(), Some(0), "{}", first.log());
    assert!(alive(pid), "the container outlives an agent asked to keep pods");
    assert!(kubesvc_host::NetNs::exists(&format!("kubesvc-pod-{uid}")));

    // The next agent adopts it: same process, same address, no restart, no second run.
    let mut second = Agent::start_with(&c, "node-1", &["--keep-pods-on-exit"]);
    second.pod_uids.push(uid.clone());
    eventually("the next agent adopts the container", || {
        second.log().contains("adopted a running container").then_some(())
    });
    let status = running(&c, "kept");
    assert_eq!(status["podIP"], ip.as_str());
    assert_eq!(status["containerStatuses"][0]["restartCount"], 0);
    assert!(status["containerStatuses"][0]["state"]["running"].is_object(), "{status}");
    assert!(alive(pid));
    assert!(!second.dir.join("state/pods").join(&uid).join("main/1.log").exists(), "no second run was started");

    // And stops it when the pod is deleted.
    c.kubectl(&["delete", "pod", "kept", "--grace-period=2"]).ok();
    eventually("the adopted process is gone", || (!alive(pid)).then_some(()));
    assert!(!kubesvc_host::NetNs::exists(&format!("kubesvc-pod-{uid}")));
    assert_eq!(second.stop(), Some(0), "{}", second.log());
}
