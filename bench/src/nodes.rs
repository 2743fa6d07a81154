//! `kubesvc-bench nodes [--nodes 1,2] [--replicas 100] [--boots 5]`: the
//! node agent and `kubesvc up`, side by side at each node count:
//!
//! - `up` to every node Ready (spawn to `up`'s "is up" line), `--boots` times;
//! - a `--replicas` deployment of `kubesvc tool serve-hostname` behind a
//!   Service (no readiness probe: a running container is ready, as in
//!   kubelet): creation to every pod Ready, and to every pod a ready endpoint
//!   in the Service's EndpointSlices;
//! - each pod's start latency (first seen by a watch to Ready), p50/p99;
//! - memory with the pods running: `up` (server and controllers), each agent,
//!   the shims and the pods' own processes.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use kubesvc_testsupport::Cluster;
use serde_json::json;

use crate::{percentile, rss_mib};

struct Args {
    nodes: Vec<u8>,
    replicas: usize,
    boots: usize,
}

fn parse(argv: &[String]) -> Result<Args> {
    let mut a = Args { nodes: vec![1, 2], replicas: 100, boots: 5 };
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let v = it.next().context("flag without value")?;
        match flag.as_str() {
            "--nodes" => a.nodes = v.split(',').map(str::parse).collect::<Result<_, _>>()?,
            "--replicas" => a.replicas = v.parse()?,
            "--boots" => a.boots = v.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

/// A process's proportional set size (shared pages split among their users), MiB.
fn pss_mib(pid: u32) -> f64 {
    crate::proc_mib(pid, "smaps_rollup", "Pss:")
}

/// Processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
        let ppid =
            stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1)).and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(p);
        }
    }
    out
}

struct Run {
    nodes: u8,
    boot_ms: Vec<f64>,
    all_ready: Duration,
    all_endpoints: Duration,
    start_p50: f64,
    start_p99: f64,
    up_rss: f64,
    agent_rss: f64,
    shims_rss: f64,
    shims_pss: f64,
    pods_rss: f64,
    pods_pss: f64,
}

fn one(bin: &Path, nodes: u8, a: &Args) -> Result<Run> {
    let mut boot_ms = Vec::new();
    for _ in 0..a.boots {
        let c = Cluster::up(bin, nodes)?;
        boot_ms.push(c.boot_time().as_secs_f64() * 1000.0);
    }
    let c = Cluster::up(bin, nodes)?;
    let client = c.rt.block_on(c.client())?;
    let replicas = a.replicas;
    let binary = bin.to_string_lossy().into_owned();
    let (all_ready, all_endpoints, mut latencies) = c.rt.block_on(async move {
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
        let mut pod_events = watcher(pods.clone(), watcher::Config::default().labels("app=bench")).boxed();
        let mut slice_events =
            watcher(slices, watcher::Config::default().labels("kubernetes.io/service-name=bench")).boxed();
        let svc: Service = serde_json::from_value(json!({"metadata": {"name": "bench"},
            "spec": {"selector": {"app": "bench"}, "ports": [{"port": 80, "targetPort": 8080}]}}))?;
        Api::<Service>::namespaced(client.clone(), "default").create(&PostParams::default(), &svc).await?;
        let deploy: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(json!({
            "metadata": {"name": "bench"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "bench"}},
                "template": {"metadata": {"labels": {"app": "bench"}}, "spec": {"containers": [{
                    "name": "web", "image": "agnhost",
                    "command": [binary, "tool", "serve-hostname", "--port", "8080"]}]}}}}))?;
        let started = Instant::now();
        Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client.clone(), "default")
            .create(&PostParams::default(), &deploy)
            .await?;
        let mut first_seen: HashMap<String, Instant> = HashMap::new();
        let mut ready_at: HashMap<String, Duration> = HashMap::new();
        let mut slice_ready: HashMap<String, usize> = HashMap::new();
        let (mut all_ready, mut all_endpoints) = (None, None);
        let deadline = tokio::time::sleep(Duration::from_secs(300));
        tokio::pin!(deadline);
        while all_ready.is_none() || all_endpoints.is_none() {
            tokio::select! {
                Some(ev) = pod_events.next() => {
                    let pods: Vec<Pod> = match ev {
                        Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => vec![p],
                        _ => continue,
                    };
                    for p in pods {
                        let name = p.metadata.name.clone().unwrap_or_default();
                        let seen = *first_seen.entry(name.clone()).or_insert_with(Instant::now);
                        let ready = p.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| {
                            cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        });
                        if ready && !ready_at.contains_key(&name) {
                            ready_at.insert(name, seen.elapsed());
                        }
                    }
                    if ready_at.len() == replicas && all_ready.is_none() {
                        all_ready = Some(started.elapsed());
                    }
                }
                Some(ev) = slice_events.next() => {
                    match ev {
                        Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => {
                            let n = s.endpoints.iter().flatten().filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true)).count();
                            slice_ready.insert(s.metadata.name.clone().unwrap_or_default(), n);
                        }
                        Ok(watcher::Event::Delete(s)) => {
                            slice_ready.remove(&s.metadata.name.clone().unwrap_or_default());
                        }
                        _ => {}
                    }
                    if slice_ready.values().sum::<usize>() == replicas && all_endpoints.is_none() {
                        all_endpoints = Some(started.elapsed());
                    }
                }
                _ = &mut deadline => bail!("{replicas} pods were not ready within 300s ({} ready)", ready_at.len()),
            }
        }
        let latencies: Vec<f64> = ready_at.values().map(|d| d.as_secs_f64() * 1000.0).collect();
        anyhow::Ok((all_ready.unwrap_or_default(), all_endpoints.unwrap_or_default(), latencies))
    })?;
    latencies.sort_by(f64::total_cmp);
    let up = c.pid().context("no up process")?;
    let agents = children(up);
    let shims: Vec<u32> = agents.iter().flat_map(|a| children(*a)).collect();
    let commands: Vec<u32> = shims.iter().flat_map(|s| children(*s)).collect();
    let sum = |ps: &[u32]| ps.iter().map(|p| rss_mib(*p)).filter(|r| r.is_finite()).sum::<f64>();
    let pss = |ps: &[u32]| ps.iter().map(|p| pss_mib(*p)).filter(|r| r.is_finite()).sum::<f64>();
    if shims.len() != replicas {
        bail!("expected {replicas} shims under the agents, found {}", shims.len());
    }
    Ok(Run {
        nodes,
        boot_ms,
        all_ready,
        all_endpoints,
        start_p50: percentile(&latencies, 0.5),
        start_p99: percentile(&latencies, 0.99),
        up_rss: rss_mib(up),
        agent_rss: sum(&agents) / agents.len().max(1) as f64,
        shims_rss: sum(&shims),
        shims_pss: pss(&shims),
        pods_rss: sum(&commands),
        pods_pss: pss(&commands),
    })
}

pub fn main(bin: &Path, argv: &[String]) -> Result<()> {
    let a = parse(argv)?;
    let runs: Vec<Run> = a.nodes.iter().map(|n| one(bin, *n, &a)).collect::<Result<_>>()?;
    let col = |f: &dyn Fn(&Run) -> String| runs.iter().map(f).collect::<Vec<_>>().join(" | ");
    println!("| | {} |", col(&|r| format!("{} node{}", r.nodes, if r.nodes == 1 { "" } else { "s" })));
    println!("|---|{}|", runs.iter().map(|_| "---").collect::<Vec<_>>().join("|"));
    println!(
        "| `up` to nodes Ready, median of {} (min–max) | {} |",
        a.boots,
        col(&|r| {
            let mut b = r.boot_ms.clone();
            b.sort_by(f64::total_cmp);
            format!("{:.0} ms ({:.0}–{:.0})", percentile(&b, 0.5), b[0], b[b.len() - 1])
        })
    );
    println!(
        "| {} replicas: all pods Ready | {} |",
        a.replicas,
        col(&|r| format!("{:.2} s", r.all_ready.as_secs_f64()))
    );
    println!(
        "| {} replicas: all in the Service's endpoints | {} |",
        a.replicas,
        col(&|r| format!("{:.2} s", r.all_endpoints.as_secs_f64()))
    );
    println!("| pod start latency p50 / p99 | {} |", col(&|r| format!("{:.0} / {:.0} ms", r.start_p50, r.start_p99)));
    println!("| `up` process RSS (server, controllers) | {} |", col(&|r| format!("{:.0} MiB", r.up_rss)));
    println!("| agent RSS, per node | {} |", col(&|r| format!("{:.0} MiB", r.agent_rss)));
    println!(
        "| shims, all {}: RSS (PSS) | {} |",
        a.replicas,
        col(&|r| format!("{:.0} MiB ({:.0} MiB)", r.shims_rss, r.shims_pss))
    );
    println!(
        "| the pods' own processes, all {}: RSS (PSS) | {} |",
        a.replicas,
        col(&|r| format!("{:.0} MiB ({:.0} MiB)", r.pods_rss, r.pods_pss))
    );
    Ok(())
}
