//! `kubesvc shim` for real: a container in a network namespace the test
//! makes, with its own hostname and files over the node's, its output in the
//! CRI log and its exit recorded. Needs root; fails without it.
#![allow(clippy::unwrap_used)] // Tests: a failed step is a failed test.

use std::process::Command;

use kubesvc_agent::shim::{BindMount, ShimResult, ShimSpec};
use kubesvc_host::NetNs;

struct Scoped(Option<NetNs>);

impl Drop for Scoped {
    fn drop(&mut self) {
        if let Some(ns) = self.0.take() {
            let _ = ns.delete();
        }
    }
}

fn spec(dir: &std::path::Path, netns: &NetNs, argv: &[&str]) -> ShimSpec {
    std::fs::write(dir.join("hostname"), "pod-a\n").unwrap();
    std::fs::write(dir.join("hosts"), "127.0.0.1\tlocalhost\n10.244.1.5\tpod-a\n").unwrap();
    ShimSpec {
        netns: Some(netns.path().to_path_buf()),
        hostname: Some("pod-a".into()),
        mounts: vec![
            BindMount { source: dir.join("hostname"), target: "/etc/hostname".into(), read_only: false },
            BindMount { source: dir.join("hosts"), target: "/etc/hosts".into(), read_only: true },
        ],
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: vec![("GREETING".into(), "hi".into()), ("PATH".into(), "/usr/bin:/bin".into())],
        working_dir: Some("/tmp".into()),
        uid: None,
        gid: None,
        cgroups: Vec::new(),
        log: dir.join("0.log"),
        result: dir.join("result.json"),
        die_with_agent: true,
    }
}

fn run(dir: &std::path::Path, s: &ShimSpec) -> (i32, ShimResult, String) {
    std::fs::write(dir.join("spec.json"), serde_json::to_vec(s).unwrap()).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_kubesvc")).arg("shim").arg(dir.join("spec.json")).status().unwrap();
    let result: ShimResult = serde_json::from_slice(&std::fs::read(&s.result).unwrap()).unwrap();
    let log = std::fs::read_to_string(&s.log).unwrap_or_default();
    (status.code().unwrap_or(-1), result, log)
}

#[test]
fn a_container_sees_its_own_network_hostname_and_files() {
    assert!(nix::unistd::geteuid().is_root(), "the shim tests need root for network namespaces");
    let ns = Scoped(Some(NetNs::create(&format!("ksvc-shim-{}", std::process::id())).unwrap()));
    let dir = tempfile::tempdir().unwrap();
    let s = spec(
        dir.path(),
        ns.0.as_ref().unwrap(),
        &["sh", "-c", "hostname; cat /etc/hosts; echo $GREETING; pwd; ls /sys/class/net; echo oops >&2; exit 3"],
    );
    let (code, result, log) = run(dir.path(), &s);
    assert_eq!(code, 3);
    assert_eq!((result.exit_code, result.signal, result.start_error.as_deref()), (3, None, None));
    let lines: Vec<(String, String)> = log
        .lines()
        .map(|l| {
            let mut parts = l.splitn(4, ' ');
            let (_ts, stream, tag, text) =
                (parts.next(), parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap_or(""));
            assert_eq!(tag, "F");
            (stream.to_string(), text.to_string())
        })
        .collect();
    let out: Vec<&str> = lines.iter().filter(|(s, _)| s == "stdout").map(|(_, t)| t.as_str()).collect();
    assert_eq!(out, ["pod-a", "127.0.0.1\tlocalhost", "10.244.1.5\tpod-a", "hi", "/tmp", "lo"], "{log}");
    assert!(lines.contains(&("stderr".into(), "oops".into())), "{log}");
    // The node's own files and hostname are untouched.
    assert_ne!(std::fs::read_to_string("/etc/hosts").unwrap(), "127.0.0.1\tlocalhost\n10.244.1.5\tpod-a\n");
}

#[test]
fn a_command_that_does_not_exist_is_a_start_error() {
    assert!(nix::unistd::geteuid().is_root(), "the shim tests need root for network namespaces");
    let ns = Scoped(Some(NetNs::create(&format!("ksvc-shim2-{}", std::process::id())).unwrap()));
    let dir = tempfile::tempdir().unwrap();
    let s = spec(dir.path(), ns.0.as_ref().unwrap(), &["no-such-command-here"]);
    let (code, result, _) = run(dir.path(), &s);
    assert_eq!((code, result.exit_code), (128, 128));
    assert_eq!(
        result.start_error.as_deref(),
        Some("exec: \"no-such-command-here\": executable file not found in $PATH")
    );
}
