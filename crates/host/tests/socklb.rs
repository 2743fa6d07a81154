//! Socket load balancing for real: the programs attached to a cgroup this test
//! makes, and a client process of ours in it, in a network namespace of its
//! own that has only loopback, so a virtual address is reachable only if the
//! programs rewrite it. Needs root, cgroup v2 and python3; fails without.
#![allow(clippy::unwrap_used)] // Tests: a failed step is a failed test.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::Command;

use kubesvc_host::socklb::{Proto, SocketLb, cgroup2_mount};
use serde_json::Value;

/// A cgroup of this test's own, removed when it ends (its processes have exited by then).
struct Cgroup(PathBuf);

impl Cgroup {
    fn new(tag: &str) -> Cgroup {
        assert!(nix::unistd::geteuid().is_root(), "this test needs root (cgroups, BPF)");
        let root = cgroup2_mount().expect("a cgroup v2 hierarchy is mounted");
        let dir = root.join(format!("kubesvc-test-{}-{tag}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        Cgroup(dir)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Servers on loopback (TCP answering their port, UDP echoing), then `connects` TCP
/// connections and one unconnected UDP exchange with the virtual address, and
/// `connect()`ed UDP sent to it, all from inside `cgroup`.
const CLIENT: &str = r#"
import json, socket, sys, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port)); s.listen(512)
    def loop():
        while True:
            c, _ = s.accept(); c.sendall(str(port).encode()); c.close()
    threading.Thread(target=loop, daemon=True).start()
for p in (8081, 8082): serve(p)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 5353))
def echo():
    while True:
        d, a = u.recvfrom(100); u.sendto(d + b" from 5353", a)
threading.Thread(target=echo, daemon=True).start()
out = {"tcp": {}, "errors": []}
for _ in range(int(sys.argv[1])):
    try:
        c = socket.create_connection(("10.96.0.10", 80), timeout=2)
        out["peer"] = list(c.getpeername())
        got = c.recv(10).decode(); c.close()
        out["tcp"][got] = out["tcp"].get(got, 0) + 1
    except OSError as e:
        out["errors"].append(str(e))
q = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); q.settimeout(2)
try:
    q.sendto(b"hi", ("10.96.0.10", 53)); d, a = q.recvfrom(100)
    out["udp"] = [d.decode(), list(a)]
except OSError as e:
    out["udp"] = str(e)
print(json.dumps(out))
"#;

fn run_client(cg: &Cgroup, connects: usize) -> Value {
    // Join the cgroup, then a namespace with loopback only.
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec unshare --net sh -c 'ip link set lo up && exec python3 -c \"$0\" {connects}' \"$CLIENT\"",
        cg.0.display()
    );
    let out = Command::new("sh").args(["-c", &script]).env("CLIENT", CLIENT).output().unwrap();
    assert!(out.status.success(), "client: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn ep(s: &str) -> SocketAddrV4 {
    s.parse().unwrap()
}

#[test]
fn connects_and_datagrams_to_a_virtual_address_reach_its_backends_and_show_it() {
    let cg = Cgroup::new("balance");
    let vip = Ipv4Addr::new(10, 96, 0, 10);
    // Nothing attached: the address is unreachable from the client's namespace.
    let before = run_client(&cg, 1);
    assert_eq!(before["tcp"], serde_json::json!({}), "{before}");
    assert!(before["errors"][0].as_str().unwrap().contains("unreachable"), "{before}");

    let lb = SocketLb::attach(&cg.0).unwrap();
    lb.set(vip, 80, Proto::Tcp, &[ep("127.0.0.1:8081"), ep("127.0.0.1:8082")], 0).unwrap();
    lb.set(vip, 53, Proto::Udp, &[ep("127.0.0.1:5353")], 0).unwrap();
    let spread = run_client(&cg, 200);
    assert_eq!(spread["errors"], serde_json::json!([]), "{spread}");
    let (a, b) = (spread["tcp"]["8081"].as_u64().unwrap_or(0), spread["tcp"]["8082"].as_u64().unwrap_or(0));
    assert_eq!(a + b, 200, "{spread}");
    // Random choice: each of two backends gets a fair share of 200 (p of missing 30%: ~1e-8).
    assert!(a >= 60 && b >= 60, "{spread}");
    // The client sees the address it asked for, as peer and as the datagram's source.
    assert_eq!(spread["peer"], serde_json::json!(["10.96.0.10", 80]), "{spread}");
    assert_eq!(spread["udp"], serde_json::json!(["hi from 5353", ["10.96.0.10", 53]]), "{spread}");

    // Fewer backends: the dropped one is never chosen.
    lb.set(vip, 80, Proto::Tcp, &[ep("127.0.0.1:8082")], 2).unwrap();
    let one = run_client(&cg, 50);
    assert_eq!(one["tcp"], serde_json::json!({"8082": 50}), "{one}");
    // Removed: unreachable again (the packet path's business, and there is none here).
    lb.remove(vip, 80, Proto::Tcp, 1).unwrap();
    let gone = run_client(&cg, 1);
    assert_eq!(gone["tcp"], serde_json::json!({}), "{gone}");

    // Dropping the balancer detaches its programs.
    lb.set(vip, 80, Proto::Tcp, &[ep("127.0.0.1:8081")], 0).unwrap();
    drop(lb);
    let detached = run_client(&cg, 1);
    assert_eq!(detached["tcp"], serde_json::json!({}), "{detached}");
    assert!(detached["udp"].as_str().is_some(), "{detached}");
}
