//! `kubesvc-bench controllers`: the endpoint controllers at two scales side
//! by side (so work that grows faster than the cluster shows): S Services
//! over 10 pods each on 10 nodes, the controllers in a process of their own
//! (`kubesvc controllers`) against a server without any. Measured: the first
//! full sync, then the time from a pod's readiness change (its status write
//! acknowledged) to the EndpointSlice event that shows it, one at a time and
//! in a burst, and the controllers' CPU and memory.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kubesvc_testsupport::Cluster;
use kubesvc_testsupport::kubelet::running_status;
use serde_json::json;
use tokio::sync::Notify;

use crate::{percentile, rss_mib};

const NS: &str = "bench";
const PODS_PER_SERVICE: usize = 10;
const NODES: usize = 10;

pub struct Scale {
    pub services: usize,
    pub flips: usize,
    pub burst: usize,
}

#[derive(Default)]
pub struct Figures {
    pub services: usize,
    pub pods: usize,
    pub sync: Duration,
    pub seq_p50: f64,
    pub seq_p99: f64,
    pub burst_p50: f64,
    pub burst_p99: f64,
    pub burst_total: Duration,
    pub cpu_ms_per_flip: f64,
    pub rss_synced: f64,
    pub rss_peak: f64,
}

/// Seconds of CPU a process has used (user + system).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Each pod's endpoint readiness as the slices last showed it, and when.
#[derive(Default)]
struct Seen {
    ready: HashMap<String, (bool, Instant)>,
}

fn watch_slices(
    client: Client,
    seen: Arc<parking_lot::Mutex<Seen>>,
    changed: Arc<Notify>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<EndpointSlice> = Api::namespaced(client, NS);
        let mut stream = std::pin::pin!(kube::runtime::watcher(api, Default::default()));
        while let Some(ev) = stream.next().await {
            let slices = match ev {
                Ok(kube::runtime::watcher::Event::Apply(s)) | Ok(kube::runtime::watcher::Event::InitApply(s)) => {
                    vec![s]
                }
                _ => continue,
            };
            let at = Instant::now();
            let mut s = seen.lock();
            for slice in slices {
                for e in slice.endpoints.iter().flatten() {
                    let Some(pod) = e.target_ref.as_ref().and_then(|t| t.name.clone()) else { continue };
                    let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false);
                    let entry = s.ready.entry(pod).or_insert((ready, at));
                    if entry.0 != ready {
                        *entry = (ready, at);
                    }
                }
            }
            drop(s);
            changed.notify_waiters();
        }
    })
}

/// Waits until the slices show `pod` with `ready`; when they first did.
async fn seen_as(seen: &parking_lot::Mutex<Seen>, changed: &Notify, pod: &str, ready: bool) -> Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let notified = changed.notified();
        if let Some((r, at)) = seen.lock().ready.get(pod)
            && *r == ready
        {
            return Ok(*at);
        }
        if Instant::now() > deadline {
            bail!("pod {pod} never showed ready={ready} in the slices");
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
    }
}

/// The InternalIP of bench node `n`.
fn node_ip(n: usize) -> String {
    format!("192.168.240.{}", 10 + n)
}

fn pod_name(svc: usize, i: usize) -> String {
    format!("svc-{svc:04}-pod-{i}")
}

async fn populate(client: &Client, services: usize) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    for n in 0..NODES {
        let name = format!("node-{n}");
        let node: Node = serde_json::from_value(json!({"metadata": {"name": name,
            "labels": {"topology.kubernetes.io/zone": format!("zone-{}", n % 3)}}}))?;
        nodes.create(&PostParams::default(), &node).await?;
        let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "addresses": [{"type": "InternalIP", "address": node_ip(n)}]}});
        nodes.patch_status(&name, &PatchParams::default(), &Patch::Merge(status)).await?;
    }
    let svcs: Api<Service> = Api::namespaced(client.clone(), NS);
    crate::create_many(&svcs, services, |s| {
        json!({"metadata": {"name": format!("svc-{s:04}")},
            "spec": {"selector": {"app": format!("svc-{s:04}")}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})
    })
    .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    futures::stream::iter(0..services * PODS_PER_SERVICE)
        .map(|k| {
            let pods = pods.clone();
            async move {
                let (s, i) = (k / PODS_PER_SERVICE, k % PODS_PER_SERVICE);
                let name = pod_name(s, i);
                let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name, "labels": {"app": format!("svc-{s:04}")}},
                    "spec": {"nodeName": format!("node-{}", k % NODES),
                        "containers": [{"name": "c", "image": "nginx", "ports": [{"name": "http", "containerPort": 8080}]}]}}))?;
                pods.create(&PostParams::default(), &pod).await?;
                let ip = format!("10.{}.{}.{}", 64 + k / 65536, (k / 256) % 256, k % 256);
                let status = running_status(&ip, &node_ip(k % NODES), true);
                pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({ "status": status }))).await?;
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    Ok(())
}

fn start_controllers(bin: &Path, kubeconfig: &Path, log: &Path) -> Result<Child> {
    let log = std::fs::File::create(log)?;
    Ok(Command::new(bin)
        .args(["controllers", "--kubeconfig"])
        .arg(kubeconfig)
        // No kubelets here: nodes must not be declared dead during the run.
        .args(["--node-monitor-grace-period", "100000"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?)
}

async fn flip(pods: &Api<Pod>, pod: &str, ip: &str, ready: bool) -> Result<Instant> {
    // Which node does not matter to the endpoint controllers' work.
    let status = running_status(ip, &node_ip(0), ready);
    pods.patch_status(pod, &PatchParams::default(), &Patch::Merge(json!({ "status": status }))).await?;
    Ok(Instant::now())
}

pub fn run(bin: &Path, scale: &Scale) -> Result<Figures> {
    let c = Cluster::start_with(bin, &["--controllers=false", "--watch-cache-size", "100000"])?;
    let mut f = Figures { services: scale.services, pods: scale.services * PODS_PER_SERVICE, ..Default::default() };
    let client = c.rt.block_on(c.client())?;
    c.rt.block_on(async {
        let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        ns.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": NS}}))?).await?;
        populate(&client, scale.services).await
    })?;
    let seen = Arc::new(parking_lot::Mutex::new(Seen::default()));
    let changed = Arc::new(Notify::new());
    // Spawned on the cluster's runtime (its threads are in the cluster's namespace).
    let _watch = {
        let _guard = c.rt.enter();
        watch_slices(client.clone(), seen.clone(), changed.clone())
    };

    // The first sync: every pod an endpoint.
    let started = Instant::now();
    let mut child = start_controllers(bin, &c.kubeconfig, &c.dir.path().join("controllers.log"))?;
    let pid = child.id();
    let total = f.pods;
    loop {
        if seen.lock().ready.len() == total {
            break;
        }
        if started.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            let log = std::fs::read_to_string(c.dir.path().join("controllers.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            bail!(
                "only {} of {total} endpoints after 300 s; controllers said:\n{}",
                seen.lock().ready.len(),
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    f.sync = started.elapsed();
    f.rss_synced = rss_mib(pid);
    let mut peak = f.rss_synced;
    std::thread::sleep(Duration::from_millis(500));
    let cpu_before = cpu_seconds(pid);

    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let ip_of = |k: usize| format!("10.{}.{}.{}", 64 + k / 65536, (k / 256) % 256, k % 256);
    // One at a time: a random pod flips; how long until the slice shows it.
    let mut state: HashMap<usize, bool> = HashMap::new();
    let mut seq = Vec::new();
    for _ in 0..scale.flips {
        let k = rand::random::<u32>() as usize % total;
        let ready = !*state.get(&k).unwrap_or(&true);
        let name = pod_name(k / PODS_PER_SERVICE, k % PODS_PER_SERVICE);
        let acked = c.rt.block_on(flip(&pods, &name, &ip_of(k), ready))?;
        let shown = c.rt.block_on(seen_as(&seen, &changed, &name, ready))?;
        seq.push(shown.saturating_duration_since(acked).as_secs_f64() * 1000.0);
        state.insert(k, ready);
        peak = peak.max(rss_mib(pid));
    }
    // A burst: distinct pods flipped by 32 concurrent writers.
    let mut chosen: Vec<usize> = Vec::new();
    while chosen.len() < scale.burst.min(total) {
        let k = rand::random::<u32>() as usize % total;
        if !chosen.contains(&k) {
            chosen.push(k);
        }
    }
    let burst_start = Instant::now();
    let burst: Vec<f64> = c.rt.block_on(async {
        futures::stream::iter(chosen.iter().copied())
            .map(|k| {
                let (pods, seen, changed) = (pods.clone(), seen.clone(), changed.clone());
                let ready = !*state.get(&k).unwrap_or(&true);
                let ip = ip_of(k);
                async move {
                    let name = pod_name(k / PODS_PER_SERVICE, k % PODS_PER_SERVICE);
                    let acked = flip(&pods, &name, &ip, ready).await?;
                    let shown = seen_as(&seen, &changed, &name, ready).await?;
                    Ok::<f64, anyhow::Error>(shown.saturating_duration_since(acked).as_secs_f64() * 1000.0)
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<_>>>()
    })?;
    f.burst_total = burst_start.elapsed();
    let cpu_after = cpu_seconds(pid);
    f.rss_peak = peak.max(rss_mib(pid));
    f.cpu_ms_per_flip = (cpu_after - cpu_before) * 1000.0 / (scale.flips + burst.len()) as f64;
    seq.sort_by(f64::total_cmp);
    let mut burst = burst;
    burst.sort_by(f64::total_cmp);
    f.seq_p50 = percentile(&seq, 0.5);
    f.seq_p99 = percentile(&seq, 0.99);
    f.burst_p50 = percentile(&burst, 0.5);
    f.burst_p99 = percentile(&burst, 0.99);
    let _ = child.kill();
    let _ = child.wait();
    Ok(f)
}

pub fn main(bin: &Path, args: &[String]) -> Result<()> {
    let mut flips = 1000;
    let mut burst = 1000;
    let mut scales = vec![100, 1000];
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let v = it.next().context("flag without value")?;
        match flag.as_str() {
            "--flips" => flips = v.parse()?,
            "--burst" => burst = v.parse()?,
            "--services" => scales = v.split(',').map(str::parse).collect::<Result<_, _>>()?,
            other => bail!("unknown flag {other}"),
        }
    }
    let mut rows = Vec::new();
    for services in scales {
        eprintln!("running the controllers scenario with {services} services...");
        rows.push(run(bin, &Scale { services, flips, burst })?);
    }
    println!(
        "| services / pods | first sync | {flips} flips one at a time: p50 / p99 | {burst} flips, 32 at once: p50 / p99 (total) | controllers' CPU per flip | controllers' RSS synced / peak |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for f in rows {
        println!(
            "| {} / {} | {:.2} s | {:.2} / {:.2} ms | {:.2} / {:.2} ms ({:.2} s) | {:.2} ms | {:.0} / {:.0} MiB |",
            f.services,
            f.pods,
            f.sync.as_secs_f64(),
            f.seq_p50,
            f.seq_p99,
            f.burst_p50,
            f.burst_p99,
            f.burst_total.as_secs_f64(),
            f.cpu_ms_per_flip,
            f.rss_synced,
            f.rss_peak
        );
    }
    Ok(())
}
