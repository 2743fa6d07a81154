//! `kubesvc-bench proxy [--seconds 10] [--services 10000] [--rounds 3]`: the data path,
//! side by side in one run, inside a `kubesvc up --nodes 1` cluster the
//! benchmark makes: `wrk` in a client pod against one server pod
//! (`kubesvc tool serve-hostname`), straight to the pod's IP and through its
//! ClusterIP (as a pod connects, balanced at the socket, and from the pod's
//! network namespace outside its cgroup, by the nftables DNAT alone), with
//! keep-alive and with a new connection per request; then
//! the same with `--services` more Services (each with an endpoint) present,
//! to show the cost per packet does not grow with them.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use kubesvc_testsupport::Cluster;
use serde_json::json;

struct Args {
    seconds: u64,
    services: usize,
    rounds: usize,
}

fn parse(argv: &[String]) -> Result<Args> {
    let mut a = Args { seconds: 10, services: 10_000, rounds: 3 };
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let v = it.next().context("flag without value")?;
        match flag.as_str() {
            "--seconds" => a.seconds = v.parse()?,
            "--services" => a.services = v.parse()?,
            "--rounds" => a.rounds = v.parse::<usize>()?.max(1),
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

const APP: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: server, labels: {app: server}}
spec:
  containers:
  - {name: server, image: agnhost, command: ["KUBESVC", "tool", "serve-hostname", "--port", "8080"]}
---
apiVersion: v1
kind: Service
metadata: {name: server}
spec:
  selector: {app: server}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  containers:
  - {name: client, image: agnhost, command: ["sleep", "100000"]}
"#;

/// One wrk run's figures.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

/// wrk's "50% 1.23ms" style latency into milliseconds.
fn wrk_ms(s: &str) -> Option<f64> {
    let (n, unit) = s.find(|c: char| c.is_ascii_alphabetic()).map(|i| s.split_at(i))?;
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        _ => return None,
    })
}

/// wrk from the client pod: as the pod runs (socket load balancing on), or `dnat_only`
/// from its network namespace outside the pod cgroup (the nftables rules alone).
fn wrk(c: &Cluster, url: &str, seconds: u64, close: bool, dnat_only: bool) -> Result<Run> {
    let mut cmd =
        if dnat_only { c.in_pod_netns("default", "client", "wrk")? } else { c.in_pod("default", "client", "wrk")? };
    cmd.args(["-t", "2", "-c", "32", "-d", &format!("{seconds}s"), "--latency"]);
    if close {
        cmd.args(["-H", "Connection: close"]);
    }
    let out = cmd.arg(url).output().context("running wrk (apt install wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("wrk failed: {text} {}", String::from_utf8_lossy(&out.stderr));
    }
    parse_wrk(&text)
}

/// wrk's report: requests per second, p50 and p99 latency, socket errors and non-2xx answers.
pub fn parse_wrk(text: &str) -> Result<Run> {
    let field = |prefix: &str| text.lines().find_map(|l| l.trim().strip_prefix(prefix).map(|r| r.trim().to_string()));
    let rps: f64 = field("Requests/sec:").context("no Requests/sec in wrk's output")?.parse()?;
    let p50 = field("50%").and_then(|v| wrk_ms(&v)).unwrap_or(f64::NAN);
    let p99 = field("99%").and_then(|v| wrk_ms(&v)).unwrap_or(f64::NAN);
    let errors = text
        .lines()
        .find(|l| l.trim().starts_with("Socket errors:"))
        .map(|l| l.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse::<u64>().ok()).sum())
        .unwrap_or(0)
        + field("Non-2xx or 3xx responses:").and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok(Run { rps, p50_ms: p50, p99_ms: p99, errors })
}

fn table_row(label: &str, direct: Run, lb: Run, nat: Run) {
    let cell = |r: Run| format!("{:.0} req/s, p50 {:.2} ms, p99 {:.2} ms", r.rps, r.p50_ms, r.p99_ms);
    println!(
        "| {label} | {} | {} | {:.3} | {} | {:.3} | {} / {} / {} |",
        cell(direct),
        cell(lb),
        lb.rps / direct.rps,
        cell(nat),
        nat.rps / direct.rps,
        direct.errors,
        lb.errors,
        nat.errors
    );
}

/// Straight to the pod, through the ClusterIP balanced at the socket, and through it by
/// DNAT: `rounds` rounds taking the three in turn (so drift on a shared machine hits
/// each alike), each column the round with its median rate.
fn three(c: &Cluster, direct: &str, through: &str, a: &Args, close: bool) -> Result<(Run, Run, Run)> {
    let mut cols: [Vec<Run>; 3] = Default::default();
    for _ in 0..a.rounds {
        cols[0].push(wrk(c, direct, a.seconds, close, false)?);
        cols[1].push(wrk(c, through, a.seconds, close, false)?);
        cols[2].push(wrk(c, through, a.seconds, close, true)?);
    }
    let median = |mut v: Vec<Run>| {
        v.sort_by(|x, y| x.rps.total_cmp(&y.rps));
        v[v.len() / 2]
    };
    let [d, lb, nat] = cols;
    Ok((median(d), median(lb), median(nat)))
}

pub fn main(bin: &std::path::Path, argv: &[String]) -> Result<()> {
    let a = parse(argv)?;
    eprintln!("starting kubesvc up --nodes 1...");
    let c = Cluster::up(bin, 1)?;
    let ok = c.kubectl_stdin(&["apply", "-f", "-"], Some(&APP.replace("KUBESVC", &bin.to_string_lossy())));
    if !ok.success {
        bail!("kubectl apply: {}", ok.stderr);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let (pod_ip, svc_ip) = loop {
        let ip = c.kubectl(&["get", "pod", "server", "-o", "jsonpath={.status.podIP}"]).stdout;
        let svc = c.kubectl(&["get", "svc", "server", "-o", "jsonpath={.spec.clusterIP}"]).stdout;
        let client = c.kubectl(&["get", "pod", "client", "-o", "jsonpath={.status.phase}"]).stdout;
        if !ip.is_empty() && client == "Running" {
            let probe =
                c.in_pod("default", "client", "curl")?.args(["-s", "-m", "2", &format!("http://{svc}/")]).output()?;
            if probe.status.success() {
                break (ip, svc);
            }
        }
        if Instant::now() > deadline {
            bail!("the server pod and its Service never answered");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let direct = format!("http://{pod_ip}:8080/");
    let through = format!("http://{svc_ip}/");
    let mut rows = Vec::new();
    for close in [false, true] {
        let (d, lb, nat) = three(&c, &direct, &through, &a, close)?;
        rows.push((if close { "new connection per request" } else { "keep-alive" }, d, lb, nat));
    }
    if a.services > 0 {
        eprintln!("creating {} more Services on the same pod...", a.services);
        let client = c.rt.block_on(c.client())?;
        let t = Instant::now();
        let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
        c.rt.block_on(crate::create_many(&svcs, a.services, |i| {
            json!({"metadata": {"name": format!("extra-{i:05}")},
                "spec": {"selector": {"app": "server"}, "ports": [{"port": 80, "targetPort": 8080}]}})
        }))?;
        // Programmed when the last one answers through its cluster IP.
        let last = c
            .kubectl(&["get", "svc", &format!("extra-{:05}", a.services - 1), "-o", "jsonpath={.spec.clusterIP}"])
            .stdout;
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let probe =
                c.in_pod("default", "client", "curl")?.args(["-s", "-m", "2", &format!("http://{last}/")]).output()?;
            if probe.status.success() {
                break;
            }
            if Instant::now() > deadline {
                bail!("the last Service never answered");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!("{} Services created and programmed in {:.1} s", a.services, t.elapsed().as_secs_f64());
        for close in [false, true] {
            let (d, lb, nat) = three(&c, &direct, &through, &a, close)?;
            let label = if close { "new connection per request, +Services" } else { "keep-alive, +Services" };
            rows.push((label, d, lb, nat));
        }
    }
    println!(
        "| wrk -t2 -c32, {} s, median of {} | straight to the pod | ClusterIP, socket LB | ratio | ClusterIP, nftables DNAT alone | ratio | errors (direct / LB / DNAT) |",
        a.seconds, a.rounds
    );
    println!("|---|---|---|---|---|---|---|");
    for (label, d, lb, nat) in rows {
        let label = label.replace("+Services", &format!("{} more Services", a.services));
        table_row(&label, d, lb, nat);
    }
    Ok(())
}
