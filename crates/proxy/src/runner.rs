//! The sync runner: informers feed the tracker; a sync renders the Services
//! changed since the last one and applies one transaction per family, no
//! sooner than `min_sync_period` after the previous sync (so bursts batch),
//! with back-off retries; the first sync, and any after a refusal, rebuilds
//! the tables from every Service.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use kubesvc_api::net::{Cidr, Family};
use kubesvc_runtime::Informer;
use kubesvc_runtime::events::{EventType, Recorder, reference};
use parking_lot::Mutex;
use tokio::sync::{Notify, watch};

use crate::metrics::Metrics;
use crate::model::ServiceName;
use crate::nft::render::{self, NftConfig};
use crate::nft::{Plan, Table, Writer};
use crate::tracker::Tracker;

/// kube-proxy's informer selector: Services another proxy owns, and headless ones, are not ours.
pub const SELECTOR: &str = "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless";

#[derive(Clone, Debug)]
pub struct Config {
    pub node: String,
    pub families: Vec<Family>,
    /// The Service CIDRs (`--service-cluster-ip-range`); unknown: no drop rule for unallocated addresses.
    pub service_cidrs: Vec<Cidr>,
    /// Pods' CIDRs (`--cluster-cidr`); empty: the node's podCIDRs.
    pub cluster_cidrs: Vec<Cidr>,
    /// `--nodeport-addresses`; `None`: every local address but loopback.
    pub node_port_cidrs: Option<Vec<Cidr>>,
    pub min_sync_period: Duration,
    /// How transactions reach the kernel.
    pub writer: Writer,
    /// Hold load-balancer addresses on the node network (under `kubesvc up`).
    pub announce: Option<crate::announce::Announce>,
    /// The pods' cgroup (v2 directory): their connections to cluster IPs are balanced
    /// at the socket when eBPF programs can be attached there.
    pub socket_lb: Option<std::path::PathBuf>,
}

struct Shared {
    tracker: Mutex<Tracker>,
    /// The node's zone and pod CIDRs, as last seen.
    node: Mutex<(Option<String>, Vec<Cidr>)>,
    changed: Notify,
}

fn node_facts(node: &Node) -> (Option<String>, Vec<Cidr>) {
    let zone = node.labels().get("topology.kubernetes.io/zone").cloned();
    let spec = node.spec.as_ref();
    let mut cidrs: Vec<Cidr> =
        spec.and_then(|s| s.pod_cidrs.as_ref()).into_iter().flatten().filter_map(|c| Cidr::parse(c).ok()).collect();
    if cidrs.is_empty() {
        cidrs.extend(spec.and_then(|s| s.pod_cidr.as_deref()).and_then(|c| Cidr::parse(c).ok()));
    }
    (zone, cidrs)
}

/// Runs the proxy until `stop`.
pub async fn run(client: Client, config: Config, metrics: Arc<Metrics>, mut stop: watch::Receiver<bool>) {
    let shared = Arc::new(Shared {
        tracker: Mutex::new(Tracker::new(&config.node, config.families.clone())),
        node: Mutex::new((None, Vec::new())),
        changed: Notify::new(),
    });
    let selected = || watcher::Config::default().labels(SELECTOR);
    let services: Arc<Informer<Service>> = Informer::with_config(Api::all(client.clone()), selected());
    let slices: Arc<Informer<EndpointSlice>> = Informer::with_config(Api::all(client.clone()), selected());
    let nodes: Arc<Informer<Node>> = Informer::with_config(
        Api::all(client.clone()),
        watcher::Config::default().fields(&format!("metadata.name={}", config.node)),
    );
    {
        let s = shared.clone();
        services.on_change(move |c| {
            let svc = c.object();
            let name = ServiceName { namespace: svc.namespace().unwrap_or_default(), name: svc.name_any() };
            s.tracker.lock().service(name, c.after());
            s.changed.notify_one();
        });
        let s = shared.clone();
        slices.on_change(move |c| {
            s.tracker.lock().slice(c.object(), c.is_deleted());
            s.changed.notify_one();
        });
        let s = shared.clone();
        nodes.on_change(move |c| {
            let facts = c.after().map(node_facts).unwrap_or_default();
            let mut node = s.node.lock();
            if *node != facts {
                *node = facts;
                s.changed.notify_one();
            }
        });
    }
    services.start(stop.clone());
    slices.start(stop.clone());
    nodes.start(stop.clone());
    tokio::select! {
        _ = async { services.synced().await; slices.synced().await; nodes.synced().await } => {}
        _ = stop.wait_for(|s| *s) => return,
    }
    tracing::info!(node = %config.node, "proxy: informers synced, programming nftables");
    let recorder = Recorder::new(client.clone(), "kube-proxy").on_host(&config.node);

    let mut health = crate::health::ServiceHealth::new();
    let mut held = crate::announce::Held::default();
    // Each Service's UDP addresses as last programmed, to find flows to ones it no longer has.
    let mut udp_addrs: std::collections::HashMap<ServiceName, Vec<std::net::SocketAddr>> = Default::default();
    let netlink = match &config.announce {
        Some(_) => match kubesvc_host::Netlink::connect() {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::error!(error = %e, "proxy: no netlink for load-balancer addresses; not announcing them");
                None
            }
        },
        None => None,
    };
    let mut balancer = config.socket_lb.as_deref().and_then(|cgroup| match kubesvc_host::socklb::SocketLb::attach(cgroup) {
        Ok(lb) => {
            tracing::info!(cgroup = %cgroup.display(), "proxy: socket load balancing on: pods' connections to cluster IPs go straight to endpoints");
            Some(crate::socketlb::Balancer::new(lb))
        }
        Err(e) => {
            tracing::warn!(cgroup = %cgroup.display(), error = %e, "proxy: socket load balancing unavailable; pods reach cluster IPs through the nftables rules alone");
            None
        }
    });
    let mut tables: Vec<Table> = Vec::new();
    let mut applied_node: Option<(Option<String>, Vec<Cidr>)> = None;
    let mut last_sync: Option<Instant> = None;
    let mut failures: u32 = 0;
    loop {
        // Configuration from the node: a change rebuilds the tables.
        let node = shared.node.lock().clone();
        if applied_node.as_ref() != Some(&node) {
            tables = config.families.iter().map(|f| Table::new(nft_config(&config, *f, &node))).collect();
            applied_node = Some(node);
        }
        if let Some(t) = last_sync {
            let next = t + config.min_sync_period;
            if Instant::now() < next {
                tokio::select! {
                    _ = tokio::time::sleep_until(next.into()) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
        last_sync = Some(Instant::now());
        let started = Instant::now();
        let full = tables.iter().any(|t| t.needs_full());
        // The changed Services' ports, read once: every table and every follow-up below
        // works from the state that was programmed.
        let (changed, triggers) = {
            let mut tracker = shared.tracker.lock();
            if full {
                tracker.mark_all();
            }
            let (dirty, triggers) = tracker.take_dirty();
            let changed: Vec<(ServiceName, Vec<crate::tracker::PortState>)> = dirty
                .into_iter()
                .map(|s| {
                    let ports = tracker.ports(&s);
                    (s, ports)
                })
                .collect();
            (changed, triggers)
        };
        let mut ok = true;
        for table in &mut tables {
            let changes =
                changed.iter().map(|(s, ports)| (s.clone(), render::render_service(table.config(), ports))).collect();
            let plan = table.plan(changes, Instant::now());
            report_conflicts(&recorder, &services, &plan).await;
            if let Err(e) = config.writer.apply(&plan).await {
                tracing::error!(error = %e, family = ?table.config().family, full = plan.full, "proxy: nftables sync failed; the next sync rebuilds the table");
                table.reset();
                ok = false;
            }
        }
        let elapsed = started.elapsed();
        metrics.synced(elapsed, ok, full);
        if full {
            // A full sync built and dropped the whole rule set: give that memory back.
            kubesvc_host::memory::release_free_memory();
        }
        let mut retry_at = None;
        if ok {
            failures = 0;
            let now = SystemTime::now();
            for t in triggers {
                metrics.programmed(now.duration_since(t).unwrap_or_default());
            }
            let mut targets = crate::conntrack::Targets::default();
            for (s, ports) in &changed {
                let now: Vec<std::net::SocketAddr> = crate::conntrack::udp_addresses(ports);
                let before =
                    if now.is_empty() { udp_addrs.remove(s) } else { udp_addrs.insert(s.clone(), now.clone()) };
                targets.add(ports);
                targets.add_gone(before.unwrap_or_default().into_iter().filter(|a| !now.contains(a)));
            }
            if !targets.is_empty() {
                match tokio::task::spawn_blocking(move || crate::conntrack::clean(&targets)).await {
                    Ok(Ok(0)) => {}
                    Ok(Ok(n)) => {
                        tracing::info!(flows = n, "proxy: deleted UDP conntrack entries to endpoints that went")
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "proxy: cleaning UDP conntrack entries failed"),
                    Err(e) => tracing::warn!(error = %e, "proxy: the conntrack cleaner panicked"),
                }
            }
            let mut moves = Vec::new();
            {
                let tracker = shared.tracker.lock();
                metrics.counts(tracker.service_count(), tracker.endpoint_count());
            }
            let zone = shared.node.lock().0.clone();
            if let Some(a) = &config.announce {
                for (s, ports) in &changed {
                    moves.push((s.clone(), held.set(s, crate::announce::held_here(a, &config.node, ports))));
                }
            }
            if let Some(b) = &mut balancer {
                for (s, ports) in &changed {
                    let want = crate::socketlb::desired(ports, &config.node, zone.as_deref());
                    if let Err(e) = b.sync(s, want) {
                        tracing::warn!(service = %s, error = %e, "proxy: socket load balancing update failed; retried on the Service's next change");
                    }
                }
            }
            let checks: Vec<(ServiceName, Option<(u16, usize)>)> = changed
                .iter()
                .map(|(s, ports)| (s.clone(), health_check(ports, &config.node, zone.as_deref())))
                .collect();
            if let (Some(a), Some(nl)) = (&config.announce, &netlink) {
                for (svc, (add, remove)) in moves {
                    for ip in add {
                        let prefix = if ip.is_ipv4() { 32 } else { 128 };
                        match nl.add_address(&a.interface, ip, prefix).await {
                            Ok(()) => {
                                tracing::info!(service = %svc, %ip, "proxy: this node answers for the load-balancer address")
                            }
                            Err(e) => {
                                tracing::warn!(service = %svc, %ip, error = %e, "proxy: cannot take the load-balancer address")
                            }
                        }
                    }
                    for ip in remove {
                        if let Err(e) = nl.delete_address(&a.interface, ip).await {
                            tracing::warn!(service = %svc, %ip, error = %e, "proxy: cannot release the load-balancer address");
                        }
                    }
                }
            }
            for (name, want) in checks {
                if let Err(e) = health.update(&name, want).await {
                    tracing::warn!(service = %name, error = %e, "proxy: cannot serve the Service's health check node port");
                }
            }
            tracing::debug!(services = changed.len(), full, ?elapsed, "proxy: synced");
        } else {
            // Back off 1 s doubling to 30 s; everything is rebuilt on the retry.
            failures += 1;
            let delay = Duration::from_secs(1 << failures.min(5).saturating_sub(1)).min(Duration::from_secs(30));
            retry_at = Some(Instant::now() + delay);
        }
        let cleanup = tables.iter().filter_map(|t| t.next_cleanup()).min();
        let wake = [cleanup, retry_at].into_iter().flatten().min();
        tokio::select! {
            _ = shared.changed.notified() => {}
            _ = async {
                match wake {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            } => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

fn nft_config(config: &Config, family: Family, node: &(Option<String>, Vec<Cidr>)) -> NftConfig {
    let of = |c: &[Cidr]| c.iter().filter(|c| c.family() == family).copied().collect::<Vec<_>>();
    let pod_cidrs = if config.cluster_cidrs.is_empty() { of(&node.1) } else { of(&config.cluster_cidrs) };
    NftConfig {
        family,
        table: "kubesvc".to_string(),
        service_cidrs: of(&config.service_cidrs),
        pod_cidrs,
        node_port_cidrs: config.node_port_cidrs.as_ref().map(|c| of(c)),
        node: config.node.clone(),
        zone: node.0.clone(),
    }
}

async fn report_conflicts(recorder: &Recorder, services: &Informer<Service>, plan: &Plan) {
    for c in &plan.conflicts {
        tracing::warn!(service = %c.service, owner = %c.owner, address = %c.what, "proxy: address and port already taken by another Service; not programmed");
        let key = kube::runtime::reflector::ObjectRef::<Service>::new(&c.service.name).within(&c.service.namespace);
        if let Some(svc) = services.store().get(&key) {
            let msg = format!(
                "{} is already used by Service {}; kube-proxy programs it for that Service only",
                c.what, c.owner
            );
            recorder.record(&reference(svc.as_ref()), EventType::Warning, "AddressConflict", &msg).await;
        }
    }
}

/// A `Local` Service's health-check node port and this node's endpoint count for it.
fn health_check(ports: &[crate::tracker::PortState], node: &str, zone: Option<&str>) -> Option<(u16, usize)> {
    let port = ports.iter().find_map(|p| p.port.health_check_node_port.filter(|_| p.port.external_policy_local()))?;
    // kube-proxy counts the node's endpoints across the Service's ports (by address).
    let mut local: Vec<std::net::IpAddr> = ports
        .iter()
        .flat_map(|p| crate::topology::categorize(&p.port, &p.endpoints, node, zone).local.into_iter().map(|e| e.ip))
        .collect();
    local.sort();
    local.dedup();
    Some((port, local.len()))
}
