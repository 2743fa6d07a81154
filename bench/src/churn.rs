//! `kubesvc-bench churn [--seconds 30]`: new-connection churn through a
//! ClusterIP against straight to the pod, side by side in one run, inside a
//! `kubesvc up --nodes 1` cluster the benchmark makes. `wrk -H 'Connection:
//! close'` (a new connection per request; the server closes first, so its
//! TIME_WAIT sockets pile up and client ports wrap within seconds) for each
//! case the proxy issue measured: one client, two clients at once, a client
//! that also reaches the pod directly at the same time, and hairpin (a pod
//! reaching itself through its Service). Each case runs with socket load
//! balancing (the client in the node's pod cgroup, as a pod runs) and with
//! nftables DNAT alone (the same client outside the cgroup), every phase
//! from a client address of its own so no phase meets another's TIME_WAIT.

use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kubesvc_testsupport::Cluster;

use crate::proxy::{Run, parse_wrk};

struct Args {
    seconds: u64,
}

fn parse(argv: &[String]) -> Result<Args> {
    let mut a = Args { seconds: 30 };
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let v = it.next().context("flag without value")?;
        match flag.as_str() {
            "--seconds" => a.seconds = v.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

/// The clients of every phase; `hp-N` are servers behind Services of their own, for hairpin.
const CLIENTS: &[&str] =
    &["one-a", "one-b", "one-c", "two-a", "two-b", "two-c", "two-d", "two-e", "two-f", "mix-a", "mix-b"];
const HAIRPIN: &[&str] = &["hp-1", "hp-2", "hp-3"];

fn manifests(bin: &str) -> String {
    let mut out = String::from(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: server, labels: {app: server}}\nspec:\n  containers:\n  \
         - {name: server, image: agnhost, command: [\"KUBESVC\", \"tool\", \"serve-hostname\", \"--port\", \"8080\"]}\n\
         ---\napiVersion: v1\nkind: Service\nmetadata: {name: server}\nspec:\n  selector: {app: server}\n  \
         ports: [{port: 80, targetPort: 8080}]\n",
    );
    for c in CLIENTS {
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {c}}}\nspec:\n  containers:\n  \
             - {{name: c, image: agnhost, command: [\"sleep\", \"100000\"]}}\n"
        ));
    }
    for h in HAIRPIN {
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {h}, labels: {{hp: {h}}}}}\nspec:\n  containers:\n  \
             - {{name: s, image: agnhost, command: [\"KUBESVC\", \"tool\", \"serve-hostname\", \"--port\", \"8080\"]}}\n\
             ---\napiVersion: v1\nkind: Service\nmetadata: {{name: {h}}}\nspec:\n  selector: {{hp: {h}}}\n  \
             ports: [{{port: 80, targetPort: 8080}}]\n"
        ));
    }
    out.replace("KUBESVC", bin)
}

/// How a phase's client runs: as a pod does (in the pod cgroup: socket load balancing)
/// or in the pod's network namespace alone (nftables DNAT only).
#[derive(Clone, Copy, PartialEq)]
enum Path {
    Pod,
    DnatOnly,
}

fn start_wrk(c: &Cluster, pod: &str, path: Path, url: &str, seconds: u64, threads: u32, conns: u32) -> Result<Child> {
    let mut cmd = match path {
        Path::Pod => c.in_pod("default", pod, "wrk")?,
        Path::DnatOnly => c.in_pod_netns("default", pod, "wrk")?,
    };
    cmd.args(["-t", &threads.to_string(), "-c", &conns.to_string(), "-d", &format!("{seconds}s"), "--latency"]);
    cmd.args(["-H", "Connection: close", url]);
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    cmd.spawn().context("running wrk (apt install wrk)")
}

/// Runs every (pod, path, url) at once, 2 threads and 32 connections shared among them;
/// their results in order.
fn together(c: &Cluster, runs: &[(&str, Path, &str)], seconds: u64) -> Result<Vec<Run>> {
    let conns = 32 / runs.len() as u32;
    let threads = (2 / runs.len() as u32).max(1);
    let children = runs
        .iter()
        .map(|(pod, path, url)| start_wrk(c, pod, *path, url, seconds, threads, conns))
        .collect::<Result<Vec<_>>>()?;
    children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output()?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if !out.status.success() {
                bail!("wrk failed: {text} {}", String::from_utf8_lossy(&out.stderr));
            }
            parse_wrk(&text)
        })
        .collect()
}

fn sum(runs: &[Run]) -> Run {
    Run {
        rps: runs.iter().map(|r| r.rps).sum(),
        p50_ms: runs.iter().map(|r| r.p50_ms).fold(f64::NAN, f64::max),
        p99_ms: runs.iter().map(|r| r.p99_ms).fold(f64::NAN, f64::max),
        errors: runs.iter().map(|r| r.errors).sum(),
    }
}

fn get(c: &Cluster, what: &[&str]) -> String {
    c.kubectl(what).stdout
}

pub fn main(bin: &std::path::Path, argv: &[String]) -> Result<()> {
    let a = parse(argv)?;
    let s = a.seconds;
    eprintln!("starting kubesvc up --nodes 1...");
    let c = Cluster::up(bin, 1)?;
    let ok = c.kubectl_stdin(&["apply", "-f", "-"], Some(&manifests(&bin.to_string_lossy())));
    if !ok.success {
        bail!("kubectl apply: {}", ok.stderr);
    }
    let ip = |pod: &str| get(&c, &["get", "pod", pod, "-o", "jsonpath={.status.podIP}"]);
    let svc = |name: &str| get(&c, &["get", "svc", name, "-o", "jsonpath={.spec.clusterIP}"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    for name in CLIENTS.iter().chain(HAIRPIN).chain(&["server"]) {
        while get(&c, &["get", "pod", name, "-o", "jsonpath={.status.phase}"]) != "Running" {
            if Instant::now() > deadline {
                bail!("pod {name} never ran");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let server = format!("http://{}:8080/", ip("server"));
    let via = format!("http://{}/", svc("server"));
    // Every Service answers before anything is measured.
    for (pod, url) in [("one-a", via.clone()), ("hp-1", format!("http://{}/", svc("hp-1")))] {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !c.in_pod("default", pod, "curl")?.args(["-s", "-m", "2", &url]).output()?.status.success() {
            if Instant::now() > deadline {
                bail!("{url} never answered");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    eprintln!("measuring: 11 phases of {s} s...");
    let mut rows: Vec<(&str, Run, Run, Run, Run)> = Vec::new();
    // One client.
    let d = together(&c, &[("one-a", Path::Pod, &server)], s)?;
    let lb = together(&c, &[("one-b", Path::Pod, &via)], s)?;
    let nat = together(&c, &[("one-c", Path::DnatOnly, &via)], s)?;
    rows.push(("one client", d[0], lb[0], d[0], nat[0]));
    // Two clients at once.
    let d = together(&c, &[("two-a", Path::Pod, &server), ("two-b", Path::Pod, &server)], s)?;
    let lb = together(&c, &[("two-c", Path::Pod, &via), ("two-d", Path::Pod, &via)], s)?;
    let nat = together(&c, &[("two-e", Path::DnatOnly, &via), ("two-f", Path::DnatOnly, &via)], s)?;
    rows.push(("two clients at once", sum(&d), sum(&lb), sum(&d), sum(&nat)));
    // One client reaching the pod directly and through the Service at the same time: the
    // Service's half against the direct half of the same run.
    let lb = together(&c, &[("mix-a", Path::Pod, &server), ("mix-a", Path::Pod, &via)], s)?;
    let nat = together(&c, &[("mix-b", Path::DnatOnly, &server), ("mix-b", Path::DnatOnly, &via)], s)?;
    rows.push(("a client also reaching the pod directly (its direct half)", lb[0], lb[1], nat[0], nat[1]));
    // Hairpin: a pod reaching itself, each phase its own pod and Service.
    let own = |pod: &str| format!("http://{}:8080/", ip(pod));
    let hp = |pod: &str| format!("http://{}/", svc(pod));
    let d = together(&c, &[("hp-1", Path::Pod, &own("hp-1"))], s)?;
    let lb = together(&c, &[("hp-2", Path::Pod, &hp("hp-2"))], s)?;
    let nat = together(&c, &[("hp-3", Path::DnatOnly, &hp("hp-3"))], s)?;
    rows.push(("hairpin", d[0], lb[0], d[0], nat[0]));

    println!(
        "| wrk, Connection: close, 2 threads, 32 connections, {s} s | straight to the pod | ClusterIP, socket LB | ratio | ClusterIP, nftables DNAT alone | ratio | errors (LB / DNAT) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (label, d, lb, d_nat, nat) in rows {
        let direct = if d.rps == d_nat.rps {
            format!("{:.0} req/s", d.rps)
        } else {
            format!("{:.0} / {:.0} req/s", d.rps, d_nat.rps)
        };
        println!(
            "| {label} | {direct} | {:.0} req/s, p99 {:.2} ms | {:.3} | {:.0} req/s | {:.3} | {} / {} |",
            lb.rps,
            lb.p99_ms,
            lb.rps / d.rps,
            nat.rps,
            nat.rps / d_nat.rps,
            lb.errors,
            nat.errors
        );
    }
    Ok(())
}
