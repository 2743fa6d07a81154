//! kubesvc benchmarks. Each run starts servers in network namespaces of their
//! own and compares them side by side; the output is a Markdown table for
//! BENCHMARKS.md.
//!
//! `kubesvc-bench apiserver [--services N] [--clients C] [--watchers W] [--updates U]`
//! runs the API server scenario against the durable (redb) and the in-memory
//! store: N concurrent creates, full lists in three formats, W watchers
//! receiving U updates, and the server's memory.
//!
//! `kubesvc-bench controllers [--services S1,S2] [--flips N] [--burst N]`
//! measures the endpoint controllers at two scales side by side (see
//! `controllers.rs`).
//!
//! `kubesvc-bench nodes [--nodes 1,2] [--replicas 100] [--boots 5]` measures
//! `kubesvc up` and the node agent (see `nodes.rs`).
//!
//! Build everything first (`cargo build --release --workspace`): the benchmark
//! runs the `kubesvc` binary next to its own.

mod churn;
mod controllers;
mod nodes;
mod proxy;
mod proxyscale;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Request};
use http_body_util::BodyExt;
use kube::Client;
use kubesvc_testsupport::Cluster;
use serde_json::json;

struct Args {
    services: usize,
    clients: usize,
    watchers: usize,
    updates: usize,
}

fn parse_args(argv: &[String]) -> Result<Args> {
    let mut a = Args { services: 10_000, clients: 64, watchers: 100, updates: 1_000 };
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let v: usize = it.next().context("flag without value")?.parse()?;
        match flag.as_str() {
            "--services" => a.services = v,
            "--clients" => a.clients = v,
            "--watchers" => a.watchers = v,
            "--updates" => a.updates = v,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

fn kubesvc_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.parent().context("no parent dir")?.join("kubesvc");
    if !bin.exists() {
        bail!("{} not found: run `cargo build --release --workspace` first", bin.display());
    }
    Ok(bin)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

/// A `Key:  N kB` line of a /proc file, in MiB (NaN if the process is gone).
fn proc_mib(pid: u32, file: &str, key: &str) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn rss_mib(pid: u32) -> f64 {
    proc_mib(pid, "status", "VmRSS:")
}

async fn send(
    client: &Client,
    method: Method,
    path: &str,
    accept: &str,
    ct: &str,
    body: Vec<u8>,
) -> Result<(http::StatusCode, Bytes)> {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("Accept", accept)
        .header("Content-Type", ct)
        .body(kube::client::Body::from(body))?;
    let resp = client.send(req).await?;
    let status = resp.status();
    Ok((status, resp.into_body().collect_bytes().await?))
}

#[derive(Default)]
struct Results {
    boot_ms: f64,
    restart_ms: f64,
    create_total: Duration,
    create_p50_ms: f64,
    create_p99_ms: f64,
    list_json_ms: f64,
    list_pb_ms: f64,
    list_table_ms: f64,
    list_bytes: usize,
    update_p50_ms: f64,
    fanout_p50_ms: f64,
    fanout_p99_ms: f64,
    deliveries: usize,
    rss_after_create: f64,
    rss_peak: f64,
    headless_total: Duration,
}

const NS: &str = "bench";
/// Where the allocation-free baseline goes: the same Services, headless.
const NS_HEADLESS: &str = "bench-headless";

/// The benchmark's Service `i`: one in five is a NodePort (2,000 of the 2,768
/// node ports for 10,000), the rest ClusterIP; `headless` asks for no address.
fn bench_service(i: usize, headless: bool) -> serde_json::Value {
    let mut spec = json!({"selector": {"app": format!("app-{}", i % 100)},
        "ports": [{"name": "http", "port": 80, "targetPort": 8080}]});
    if headless {
        spec["clusterIP"] = json!("None");
    } else if i.is_multiple_of(5) {
        spec["type"] = json!("NodePort");
    }
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("svc-{i:05}"), "labels": {"app": format!("app-{}", i % 100), "bench": "yes"}},
        "spec": spec})
}

/// Creates `n` Services in `ns` from `clients` concurrent requests; the total time and each latency (ms).
async fn create_services(
    client: &Client,
    ns: &str,
    n: usize,
    clients: usize,
    headless: bool,
) -> Result<(Duration, Vec<f64>)> {
    let path = format!("/api/v1/namespaces/{ns}/services");
    let start = Instant::now();
    let latencies: Vec<f64> = futures::stream::iter(0..n)
        .map(|i| {
            let (client, path) = (client.clone(), path.clone());
            async move {
                let body = bench_service(i, headless);
                let t = Instant::now();
                let (status, resp) = send(
                    &client,
                    Method::POST,
                    &path,
                    "application/json",
                    "application/json",
                    serde_json::to_vec(&body)?,
                )
                .await?;
                if status != http::StatusCode::CREATED {
                    bail!("create failed: {status} {}", String::from_utf8_lossy(&resp));
                }
                Ok::<f64, anyhow::Error>(t.elapsed().as_secs_f64() * 1000.0)
            }
        })
        .buffer_unordered(clients)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    Ok((start.elapsed(), latencies))
}

async fn create_namespace(client: &Client, name: &str) -> Result<()> {
    let body = serde_json::to_vec(&json!({"metadata": {"name": name}}))?;
    send(client, Method::POST, "/api/v1/namespaces", "application/json", "application/json", body).await?;
    Ok(())
}

async fn run_scenario(c: &Cluster, a: &Args) -> Result<Results> {
    let client = c.client().await?;
    let pid = c.pid().context("server pid")?;
    let mut r = Results::default();
    create_namespace(&client, NS).await?;

    // 1. Creates from many concurrent clients (one HTTP/2 connection, as client-go does),
    //    with validation and cluster IP / node port allocation in the path.
    let path = format!("/api/v1/namespaces/{NS}/services");
    let (total, latencies) = create_services(&client, NS, a.services, a.clients, false).await?;
    r.create_total = total;
    let mut sorted = latencies;
    sorted.sort_by(f64::total_cmp);
    r.create_p50_ms = percentile(&sorted, 0.5);
    r.create_p99_ms = percentile(&sorted, 0.99);
    r.rss_after_create = rss_mib(pid);

    // 2. Full lists: the median of 7, in each format.
    for (accept, slot) in [
        ("application/json", &mut r.list_json_ms),
        ("application/vnd.kubernetes.protobuf", &mut r.list_pb_ms),
        ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json", &mut r.list_table_ms),
    ] {
        let mut times = Vec::new();
        for _ in 0..7 {
            let t = Instant::now();
            let (status, body) = send(&client, Method::GET, &path, accept, "application/json", Vec::new()).await?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            if !status.is_success() {
                bail!("list failed: {status}");
            }
            if accept == "application/json" {
                r.list_bytes = body.len();
                let v: serde_json::Value = serde_json::from_slice(&body)?;
                let items = v["items"].as_array().cloned().unwrap_or_default();
                if items.len() != a.services {
                    bail!("list returned {} items, not {}", items.len(), a.services);
                }
                // Allocation is checked, not assumed: every address and node port is distinct.
                let ips: std::collections::HashSet<&str> =
                    items.iter().filter_map(|s| s["spec"]["clusterIP"].as_str()).collect();
                let ports: std::collections::HashSet<i64> =
                    items.iter().filter_map(|s| s["spec"]["ports"][0]["nodePort"].as_i64()).collect();
                if ips.len() != a.services || ports.len() != a.services.div_ceil(5) {
                    bail!(
                        "{} distinct addresses and {} node ports for {} services",
                        ips.len(),
                        ports.len(),
                        a.services
                    );
                }
            }
        }
        times.sort_by(f64::total_cmp);
        *slot = percentile(&times, 0.5);
    }

    // 3. Watchers: each sees every update; latency from the write's acknowledgement to each delivery.
    let epoch = Instant::now();
    let acks: Arc<std::sync::Mutex<Vec<Option<f64>>>> = Arc::new(std::sync::Mutex::new(vec![None; a.updates]));
    let rv = {
        let (_, body) =
            send(&client, Method::GET, &format!("{path}?limit=1"), "application/json", "application/json", Vec::new())
                .await?;
        serde_json::from_slice::<serde_json::Value>(&body)?["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("0")
            .to_string()
    };
    let mut watchers = Vec::new();
    for _ in 0..a.watchers {
        let client = client.clone();
        let url = format!("{path}?watch=1&resourceVersion={rv}&fieldSelector=metadata.name%3Dsvc-00000");
        let updates = a.updates;
        watchers.push(tokio::spawn(async move {
            let req = Request::builder().uri(url).body(kube::client::Body::empty())?;
            let mut body = client.send(req).await?.into_body();
            let mut buf = Vec::new();
            let mut got: Vec<(usize, f64)> = Vec::new();
            while got.len() < updates {
                let Some(frame) = tokio::time::timeout(Duration::from_secs(60), body.frame()).await?.transpose()?
                else {
                    break;
                };
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                buf.extend_from_slice(&data);
                while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let at = epoch.elapsed().as_secs_f64() * 1000.0;
                    let ev: serde_json::Value = serde_json::from_slice(&line)?;
                    if let Some(seq) = ev["object"]["metadata"]["annotations"]["bench/seq"]
                        .as_str()
                        .and_then(|s| s.parse::<usize>().ok())
                    {
                        got.push((seq, at));
                    }
                }
            }
            Ok::<_, anyhow::Error>(got)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut update_lat = Vec::new();
    let mut peak = rss_mib(pid);
    for seq in 0..a.updates {
        let patch = json!({"metadata": {"annotations": {"bench/seq": seq.to_string()}}});
        let t = Instant::now();
        let (status, _) = send(
            &client,
            Method::PATCH,
            &format!("{path}/svc-00000"),
            "application/json",
            "application/merge-patch+json",
            serde_json::to_vec(&patch)?,
        )
        .await?;
        if !status.is_success() {
            bail!("patch failed: {status}");
        }
        update_lat.push(t.elapsed().as_secs_f64() * 1000.0);
        acks.lock().expect("not poisoned")[seq] = Some(epoch.elapsed().as_secs_f64() * 1000.0);
        if seq % 100 == 0 {
            peak = peak.max(rss_mib(pid));
        }
    }
    let mut fanout = Vec::new();
    for w in watchers {
        for (seq, at) in w.await?? {
            if let Some(Some(ack)) = acks.lock().expect("not poisoned").get(seq) {
                fanout.push((at - ack).max(0.0));
            }
        }
    }
    r.deliveries = fanout.len();
    fanout.sort_by(f64::total_cmp);
    update_lat.sort_by(f64::total_cmp);
    r.update_p50_ms = percentile(&update_lat, 0.5);
    r.fanout_p50_ms = percentile(&fanout, 0.5);
    r.fanout_p99_ms = percentile(&fanout, 0.99);
    r.rss_peak = peak.max(rss_mib(pid));

    // 4. The baseline: the same creates without an address to allocate (headless).
    create_namespace(&client, NS_HEADLESS).await?;
    r.headless_total = create_services(&client, NS_HEADLESS, a.services, a.clients, true).await?.0;
    Ok(r)
}

/// Creates `n` objects made by `make` (from their index), 32 requests in flight.
async fn create_many<K, F>(api: &kube::Api<K>, n: usize, make: F) -> Result<()>
where
    K: kube::Resource
        + Clone
        + k8s_openapi::serde::de::DeserializeOwned
        + k8s_openapi::serde::Serialize
        + std::fmt::Debug,
    F: Fn(usize) -> serde_json::Value,
{
    use futures::StreamExt;
    futures::stream::iter(0..n)
        .map(|i| {
            let (api, obj) = (api.clone(), make(i));
            async move {
                let obj: K = serde_json::from_value(obj)?;
                api.create(&kube::api::PostParams::default(), &obj).await?;
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    Ok(())
}

const USAGE: &str = "usage: kubesvc-bench apiserver [--services N] [--clients C] [--watchers W] [--updates U]
       kubesvc-bench controllers [--services S1,S2] [--flips N] [--burst N]
       kubesvc-bench nodes [--nodes 1,2] [--replicas 100] [--boots 5]
       kubesvc-bench proxy [--seconds 10] [--services 10000] [--rounds 3]
       kubesvc-bench churn [--seconds 30]
       kubesvc-bench proxy-scale [--services 10000] [--endpoints 5] [--changes 200] [--writer both|netlink|nft]";

fn main() -> Result<()> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let bin = kubesvc_binary()?;
    match argv.first().map(String::as_str) {
        Some("apiserver") => apiserver(&bin, &parse_args(&argv[1..])?),
        Some("controllers") => controllers::main(&bin, &argv[1..]),
        Some("nodes") => nodes::main(&bin, &argv[1..]),
        Some("proxy") => proxy::main(&bin, &argv[1..]),
        Some("churn") => churn::main(&bin, &argv[1..]),
        Some("proxy-scale") => proxyscale::main(&argv[1..]),
        _ => bail!("{USAGE}"),
    }
}

fn apiserver(bin: &std::path::Path, a: &Args) -> Result<()> {
    let mut rows = Vec::new();
    for storage in ["redb", "memory"] {
        eprintln!("running the API server scenario on {storage} storage...");
        // The API server alone: this scenario measures it, not the controllers.
        let mut c =
            Cluster::start_with(bin, &["--storage", storage, "--watch-cache-size", "20000", "--controllers=false"])?;
        let boot = c.boot_time();
        let mut r = c.rt.block_on(run_scenario(&c, a))?;
        r.boot_ms = boot.as_secs_f64() * 1000.0;
        // A restart loads every object back into the cache (for redb, from disk).
        c.restart()?;
        r.restart_ms = c.boot_time().as_secs_f64() * 1000.0;
        rows.push((storage, r));
    }
    println!(
        "| storage | start empty / restart with {n} | {n} creates ({cl} clients) | create p50 / p99 | same, headless (no allocation) | list JSON | list protobuf | list Table | {w} watchers × {u} updates: fan-out p50 / p99 | update p50 | RSS after creates / peak |",
        n = a.services,
        cl = a.clients,
        w = a.watchers,
        u = a.updates
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (storage, r) in &rows {
        println!(
            "| {storage} | {:.0} / {:.0} ms | {:.2} s ({:.0}/s) | {:.1} / {:.1} ms | {:.2} s | {:.0} ms ({:.1} MiB) | {:.0} ms | {:.0} ms | {:.2} / {:.2} ms ({} deliveries) | {:.2} ms | {:.0} / {:.0} MiB |",
            r.boot_ms,
            r.restart_ms,
            r.create_total.as_secs_f64(),
            a.services as f64 / r.create_total.as_secs_f64(),
            r.create_p50_ms,
            r.create_p99_ms,
            r.headless_total.as_secs_f64(),
            r.list_json_ms,
            r.list_bytes as f64 / 1048576.0,
            r.list_pb_ms,
            r.list_table_ms,
            r.fanout_p50_ms,
            r.fanout_p99_ms,
            r.deliveries,
            r.update_p50_ms,
            r.rss_after_create,
            r.rss_peak,
        );
    }
    Ok(())
}
