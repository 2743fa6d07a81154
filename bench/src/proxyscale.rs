//! `kubesvc-bench proxy-scale [--services 10000] [--endpoints 5] [--changes 200]
//! [--writer both|netlink|nft]`: the proxy core at scale, programming a real
//! kernel (a network namespace of the benchmark's own, fresh for each writer),
//! written over netlink and with `nft -f` side by side:
//!
//! - a full sync of every Service (render and write), and the kernel's
//!   view listed back;
//! - one endpoint changed (ready flipped), `--changes` times, to the kernel:
//!   incremental transactions against rebuilding the whole table each time;
//! - one Service added;
//! - the process's memory with the tracker and applied state loaded.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kubesvc_api::net::{Cidr, Family};
use kubesvc_proxy::model::Protocol;
use kubesvc_proxy::model::ServiceName;
use kubesvc_proxy::nft::apply::Nft;
use kubesvc_proxy::nft::ir::{Key, Op, Verdict};
use kubesvc_proxy::nft::netlink::Netlink;
use kubesvc_proxy::nft::render::{self, NftConfig};
use kubesvc_proxy::nft::{Table, Writer};
use kubesvc_proxy::tracker::Tracker;
use serde_json::json;

use crate::{percentile, rss_mib};

struct Args {
    services: usize,
    endpoints: usize,
    changes: usize,
    writers: Vec<&'static str>,
}

fn parse(argv: &[String]) -> Result<Args> {
    let mut a = Args { services: 10_000, endpoints: 5, changes: 200, writers: vec!["netlink", "nft"] };
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let v = it.next().context("flag without value")?;
        match flag.as_str() {
            "--services" => a.services = v.parse()?,
            "--endpoints" => a.endpoints = v.parse()?,
            "--changes" => a.changes = v.parse()?,
            "--writer" => {
                a.writers = match v.as_str() {
                    "both" => vec!["netlink", "nft"],
                    "netlink" => vec!["netlink"],
                    "nft" => vec!["nft"],
                    _ => bail!("--writer: both, netlink or nft"),
                }
            }
            _ => bail!("unknown flag {flag}"),
        }
    }
    Ok(a)
}

/// A network namespace held by a `sleep` of ours; killed (and so removed) on drop.
struct Scratch(std::process::Child);

impl Scratch {
    fn new() -> Result<Scratch> {
        let child = std::process::Command::new("unshare").args(["--net", "--", "sleep", "3600"]).spawn()?;
        let mine = std::fs::read_link("/proc/self/ns/net")?;
        for _ in 0..200 {
            if std::fs::read_link(format!("/proc/{}/ns/net", child.id())).ok().is_some_and(|n| n != mine) {
                return Ok(Scratch(child));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        bail!("unshare --net did not give a namespace (root needed)")
    }

    fn nft(&self) -> Nft {
        Nft::with_argv(["nsenter", "-t", &self.0.id().to_string(), "-n", "nft"].map(String::from).to_vec())
    }

    fn writer(&self, kind: &str) -> Result<Writer> {
        Ok(match kind {
            "netlink" => {
                let ns = std::fs::File::open(format!("/proc/{}/ns/net", self.0.id()))?;
                Writer::Netlink(Netlink::open_in(std::os::fd::AsFd::as_fd(&ns))?)
            }
            _ => Writer::Nft(self.nft()),
        })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn service(i: usize) -> Service {
    let ip = format!("10.96.{}.{}", 1 + i / 250, 1 + i % 250);
    serde_json::from_value(json!({"metadata": {"namespace": "bench", "name": format!("svc-{i}")},
        "spec": {"clusterIP": ip, "clusterIPs": [ip], "type": if i.is_multiple_of(10) { "NodePort" } else { "ClusterIP" },
            "ports": [{"name": "http", "port": 80, "nodePort": if i.is_multiple_of(10) { 30000 + (i / 10) as i32 % 2768 } else { 0 }}]}}))
    .expect("a valid Service")
}

fn slice(i: usize, endpoints: usize, flipped: Option<usize>) -> EndpointSlice {
    let eps: Vec<_> = (0..endpoints)
        .map(|e| {
            let n = i * endpoints + e;
            json!({"addresses": [format!("10.{}.{}.{}", 128 + n / 65536, (n / 256) % 256, n % 256)],
                "nodeName": if e == 0 { "node-a" } else { "node-b" },
                "conditions": {"ready": flipped != Some(e)}})
        })
        .collect();
    serde_json::from_value(json!({"metadata": {"namespace": "bench", "name": format!("svc-{i}-abc"),
            "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}], "endpoints": eps}))
    .expect("a valid EndpointSlice")
}

fn name(i: usize) -> ServiceName {
    ServiceName { namespace: "bench".into(), name: format!("svc-{i}") }
}

struct Synced {
    render: Duration,
    apply: Duration,
    bytes: usize,
}

async fn sync(tracker: &mut Tracker, table: &mut Table, writer: &Writer) -> Result<Synced> {
    let t0 = Instant::now();
    if table.needs_full() {
        tracker.mark_all();
    }
    let (dirty, _) = tracker.take_dirty();
    let changes =
        dirty.into_iter().map(|s| (s.clone(), render::render_service(table.config(), &tracker.ports(&s)))).collect();
    let plan = table.plan(changes, Instant::now());
    let render = t0.elapsed();
    if let Some(path) = std::env::var_os("KUBESVC_BENCH_DUMP").filter(|_| plan.full) {
        std::fs::write(path, plan.text())?;
    }
    let t1 = Instant::now();
    writer.apply(&plan).await?;
    Ok(Synced { render, apply: t1.elapsed(), bytes: plan.text().len() })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn main(argv: &[String]) -> Result<()> {
    let a = parse(argv)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    for kind in &a.writers {
        println!("-- written with {kind}");
        rt.block_on(run(&a, kind))?;
    }
    Ok(())
}

async fn run(a: &Args, kind: &str) -> Result<()> {
    let scratch = Scratch::new()?;
    let nft = scratch.nft();
    let writer = scratch.writer(kind)?;
    let cfg = NftConfig {
        family: Family::IPv4,
        table: "kubesvc".into(),
        service_cidrs: vec![Cidr::parse("10.96.0.0/12").map_err(anyhow::Error::msg)?],
        pod_cidrs: vec![Cidr::parse("10.128.0.0/9").map_err(anyhow::Error::msg)?],
        node_port_cidrs: None,
        node: "node-a".into(),
        zone: None,
    };
    let rss0 = rss_mib(std::process::id());
    let mut tracker = Tracker::new("node-a", vec![Family::IPv4]);
    for i in 0..a.services {
        tracker.service(name(i), Some(&service(i)));
        tracker.slice(&slice(i, a.endpoints, None), false);
    }
    let rss_tracker = rss_mib(std::process::id());
    let mut table = Table::new(cfg.clone());
    eprintln!("full sync of {} services, {} endpoints...", a.services, a.services * a.endpoints);
    let full = sync(&mut tracker, &mut table, &writer).await?;
    let rss = rss_mib(std::process::id());
    // What stays: the tracker and the applied state, once the transaction's memory is handed back.
    kubesvc_host::memory::release_free_memory();
    let rss_kept = rss_mib(std::process::id());
    let t = Instant::now();
    let listed = nft.command(&["list", "table", "ip", "kubesvc"]).await?;
    let list_ms = ms(t.elapsed());
    let chains = listed.lines().filter(|l| l.trim_start().starts_with("chain ")).count();

    // One endpoint's readiness flipped per change, to the kernel, incrementally.
    let mut incremental = Vec::new();
    let mut rng_state: u64 = 0x9e3779b97f4a7c15;
    let mut next = || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state as usize
    };
    let mut text_bytes = Vec::new();
    for _ in 0..a.changes {
        let i = next() % a.services;
        let t = Instant::now();
        tracker.slice(&slice(i, a.endpoints, Some(next() % a.endpoints)), false);
        let s = sync(&mut tracker, &mut table, &writer).await?;
        incremental.push(ms(t.elapsed()));
        text_bytes.push(s.bytes as f64);
        // And back, so the next change starts from all ready.
        tracker.slice(&slice(i, a.endpoints, None), false);
        sync(&mut tracker, &mut table, &writer).await?;
    }
    // The kernel's part: a transaction with nothing to validate (a plain set element
    // added, then deleted) against one adding a jump (a map element going to an existing
    // chain): nf_tables walks every jump in the table again when a transaction adds one.
    let vip: std::net::IpAddr = "10.111.255.254".parse()?;
    let key = Key::AddrProtoPort(vip, Protocol::Tcp, 80);
    let (mut plain, mut jump) = (Vec::new(), Vec::new());
    let goto = Verdict::Goto("mark-for-masquerade".into());
    for _ in 0..20 {
        let t = Instant::now();
        writer.apply(&table.raw_plan(vec![Op::AddSetElement { set: render::CLUSTER_IPS, addr: vip }])).await?;
        plain.push(ms(t.elapsed()));
        writer.apply(&table.raw_plan(vec![Op::DeleteSetElement { set: render::CLUSTER_IPS, addr: vip }])).await?;
        let t = Instant::now();
        writer
            .apply(&table.raw_plan(vec![Op::AddElement { map: render::SERVICE_IPS, key, verdict: goto.clone() }]))
            .await?;
        jump.push(ms(t.elapsed()));
        writer.apply(&table.raw_plan(vec![Op::DeleteElement { map: render::SERVICE_IPS, key }])).await?;
    }
    plain.sort_by(f64::total_cmp);
    jump.sort_by(f64::total_cmp);

    // One Service added.
    let t = Instant::now();
    tracker.service(name(a.services), Some(&service(a.services)));
    tracker.slice(&slice(a.services, a.endpoints, None), false);
    sync(&mut tracker, &mut table, &writer).await?;
    let add_ms = ms(t.elapsed());

    // The same change with the whole table rebuilt each time (what a proxy without
    // incremental transactions does), a few times: each costs a full sync.
    let mut rebuilt = Vec::new();
    for _ in 0..5.min(a.changes) {
        let i = next() % a.services;
        let t = Instant::now();
        tracker.slice(&slice(i, a.endpoints, Some(0)), false);
        table.reset();
        sync(&mut tracker, &mut table, &writer).await?;
        rebuilt.push(ms(t.elapsed()));
    }
    incremental.sort_by(f64::total_cmp);
    rebuilt.sort_by(f64::total_cmp);
    text_bytes.sort_by(f64::total_cmp);
    println!("services {}  endpoints {}  chains in the kernel {chains}", a.services, a.services * a.endpoints);
    println!(
        "full sync: render {:.0} ms + {kind} {:.0} ms = {:.0} ms ({:.1} MB of rules as nft text); nft list {list_ms:.0} ms",
        ms(full.render),
        ms(full.apply),
        ms(full.render + full.apply),
        full.bytes as f64 / 1e6
    );
    println!(
        "one endpoint change to the kernel, incremental: p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  ({} changes; transaction p50 {:.0} bytes as nft text)",
        percentile(&incremental, 0.5),
        percentile(&incremental, 0.99),
        incremental.last().copied().unwrap_or(f64::NAN),
        incremental.len(),
        percentile(&text_bytes, 0.5)
    );
    println!(
        "one endpoint change, whole table rebuilt: p50 {:.0} ms  max {:.0} ms ({} changes)",
        percentile(&rebuilt, 0.5),
        rebuilt.last().copied().unwrap_or(f64::NAN),
        rebuilt.len()
    );
    println!("one service added: {add_ms:.1} ms");
    println!(
        "kernel commit, nothing to validate (a set element): p50 {:.1} ms; adding one jump (a map element): p50 {:.1} ms",
        percentile(&plain, 0.5),
        percentile(&jump, 0.5)
    );
    println!(
        "memory: {rss_kept:.0} MiB RSS holding the state ({rss_tracker:.0} MiB with the tracker alone, {rss0:.0} MiB before it; {rss:.0} MiB right after the full sync, before freed memory went back)"
    );
    drop(scratch);
    Ok(())
}
