//! The legacy Endpoints controller (core/v1 Endpoints of selector Services,
//! capped at 1000 addresses) and the EndpointSlice mirroring controller
//! (slices for the Endpoints users write by hand for Services without a
//! selector), rule for rule with Kubernetes'.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service};
use k8s_openapi::api::discovery::v1::{self as discovery, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::podindex::{PodIndex, ServiceKey};
use crate::podutil::{self, find_port, format_trigger_time, hostname_for};
use crate::slices::{LABEL_MANAGED_BY, LABEL_SERVICE_NAME, Slices};
use crate::trigger::TriggerTimes;
use crate::{Informers, Options};
use kubesvc_runtime::events::{EventType, Recorder, reference};
use kubesvc_runtime::pod::{self, is_headless, parse_ip_lenient};
use kubesvc_runtime::{Change, WorkQueue, key_of};

pub use kubesvc_runtime::wellknown::{
    ANNOTATION_LAST_APPLIED, ANNOTATION_OVER_CAPACITY, ANNOTATION_TRIGGER_TIME, LABEL_ENDPOINTS_MANAGED_BY,
    LABEL_HEADLESS, LABEL_SKIP_MIRROR,
};
const ANNOTATION_LEADER: &str = "control-plane.alpha.kubernetes.io/leader";
/// The most addresses an Endpoints object holds.
pub const MAX_CAPACITY: usize = 1000;
pub const MIRRORING_MANAGER: &str = "endpointslicemirroring-controller.k8s.io";

// ---------------------------------------------------------------------------
// Subsets in canonical form

type AddressKey = (String, Option<String>);
type PortSortKey = (String, i32, String, Option<String>);
/// Per port: its addresses and whether each is ready.
type ByPort = BTreeMap<PortSortKey, (Option<EndpointPort>, BTreeMap<AddressKey, (EndpointAddress, bool)>)>;
/// Per set of (address, ready): the ports they serve, and the addresses.
type Groups = BTreeMap<Vec<(AddressKey, bool)>, (Vec<Option<EndpointPort>>, Vec<(EndpointAddress, bool)>)>;
/// A mirrored slice's content: its ports and endpoints.
type MirrorContent = (Vec<discovery::EndpointPort>, Vec<discovery::Endpoint>);

fn address_key(a: &EndpointAddress) -> AddressKey {
    (a.ip.clone(), a.target_ref.as_ref().and_then(|t| t.uid.clone()))
}

fn port_sort_key(p: &Option<EndpointPort>) -> PortSortKey {
    match p {
        Some(p) => {
            (p.name.clone().unwrap_or_default(), p.port, p.protocol.clone().unwrap_or_default(), p.app_protocol.clone())
        }
        None => (String::new(), -1, String::new(), None),
    }
}

/// `RepackSubsets`: the same addresses and ports, one subset per group of
/// ports served by the same addresses; not-ready wins over ready for one
/// address and port; everything sorted.
pub fn repack(facts: Vec<(EndpointAddress, Option<EndpointPort>, bool)>) -> Vec<EndpointSubset> {
    // Port -> address -> (address, ready).
    let mut by_port: ByPort = BTreeMap::new();
    for (addr, port, ready) in facts {
        let entry = by_port.entry(port_sort_key(&port)).or_insert_with(|| (port.clone(), BTreeMap::new()));
        let slot = entry.1.entry(address_key(&addr)).or_insert((addr, ready));
        slot.1 &= ready;
    }
    // Group ports by the exact (address, ready) set they are served by.
    let mut groups: Groups = BTreeMap::new();
    for (_, (port, addrs)) in by_port {
        let sig: Vec<(AddressKey, bool)> = addrs.iter().map(|(k, (_, r))| (k.clone(), *r)).collect();
        let g = groups.entry(sig).or_insert_with(|| (Vec::new(), addrs.into_values().collect()));
        g.0.push(port);
    }
    groups
        .into_values()
        .map(|(ports, addrs)| {
            let (ready, not_ready): (Vec<_>, Vec<_>) = addrs.into_iter().partition(|(_, r)| *r);
            let ports: Vec<EndpointPort> = ports.into_iter().flatten().collect();
            EndpointSubset {
                addresses: (!ready.is_empty()).then(|| ready.into_iter().map(|(a, _)| a).collect()),
                not_ready_addresses: (!not_ready.is_empty()).then(|| not_ready.into_iter().map(|(a, _)| a).collect()),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect()
}

fn count_addresses(subsets: &[EndpointSubset]) -> (usize, usize) {
    subsets.iter().fold((0, 0), |(r, n), s| {
        (r + s.addresses.as_ref().map_or(0, Vec::len), n + s.not_ready_addresses.as_ref().map_or(0, Vec::len))
    })
}

/// Keeps at most [`MAX_CAPACITY`] addresses, ready ones first, shared among
/// subsets in proportion (rounded up), as Kubernetes truncates. True if cut.
pub fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let (ready, not_ready) = count_addresses(subsets);
    if ready + not_ready <= MAX_CAPACITY {
        return false;
    }
    let share = |sizes: Vec<usize>, total: usize, budget: usize| -> Vec<usize> {
        let mut left = budget;
        sizes
            .into_iter()
            .map(|n| {
                let want = (n * budget).div_ceil(total.max(1)).min(left);
                left -= want;
                want
            })
            .collect()
    };
    if ready <= MAX_CAPACITY {
        let keep = share(
            subsets.iter().map(|s| s.not_ready_addresses.as_ref().map_or(0, Vec::len)).collect(),
            not_ready,
            MAX_CAPACITY - ready,
        );
        for (s, k) in subsets.iter_mut().zip(keep) {
            if let Some(a) = s.not_ready_addresses.as_mut() {
                a.truncate(k);
            }
        }
    } else {
        let keep =
            share(subsets.iter().map(|s| s.addresses.as_ref().map_or(0, Vec::len)).collect(), ready, MAX_CAPACITY);
        for (s, k) in subsets.iter_mut().zip(keep) {
            s.not_ready_addresses = None;
            if let Some(a) = s.addresses.as_mut() {
                a.truncate(k);
            }
        }
    }
    true
}

/// Subsets compared as Kubernetes compares them (a targetRef's resourceVersion does not count).
fn same_subsets(a: &[EndpointSubset], b: &[EndpointSubset]) -> bool {
    let strip = |v: &[EndpointSubset]| -> Vec<EndpointSubset> {
        let mut v = v.to_vec();
        for s in &mut v {
            for a in s.addresses.iter_mut().flatten().chain(s.not_ready_addresses.iter_mut().flatten()) {
                if let Some(t) = a.target_ref.as_mut() {
                    t.resource_version = None;
                }
            }
        }
        v
    };
    strip(a) == strip(b)
}

// ---------------------------------------------------------------------------
// The Endpoints controller

pub struct Controller {
    client: Client,
    informers: Arc<Informers>,
    index: Arc<PodIndex>,
    queue: Arc<WorkQueue<ServiceKey>>,
    triggers: Mutex<TriggerTimes>,
    recorder: Recorder,
}

impl Controller {
    pub fn new(client: Client, informers: Arc<Informers>, index: Arc<PodIndex>) -> Arc<Self> {
        let c = Arc::new(Controller {
            recorder: Recorder::new(client.clone(), "endpoint-controller"),
            client,
            informers: informers.clone(),
            index: index.clone(),
            queue: WorkQueue::new(),
            triggers: Mutex::new(TriggerTimes::default()),
        });
        let q = c.queue.clone();
        informers.services.on_change(move |change| q.add(key_of(change.object())));
        let q = c.queue.clone();
        index.subscribe(move |k| q.add(k.clone()));
        // A deleted Endpoints of a selector Service is made again; on the first
        // list (only), every Endpoints is checked once, so orphans of deleted
        // Services go. Later adds are users' business (a hand-written one may
        // come before its Service).
        let q = c.queue.clone();
        let endpoints = Arc::downgrade(&informers.endpoints);
        informers.endpoints.on_change(move |change| match change {
            Change::Deleted(o) => q.add(key_of(o)),
            Change::Added(n)
                if endpoints.upgrade().is_some_and(|i| !i.is_synced())
                    && !n.annotations().contains_key(ANNOTATION_LEADER) =>
            {
                q.add(key_of(n))
            }
            _ => {}
        });
        c
    }

    pub fn spawn(self: &Arc<Self>, workers: usize, stop: watch::Receiver<bool>) {
        let me = self.clone();
        kubesvc_runtime::run_workers(self.queue.clone(), workers, stop, move |key| {
            let me = me.clone();
            async move { me.sync(&key).await }
        });
    }

    /// The Endpoints the Service should have: subsets, whether truncated.
    fn desired(&self, svc: &Service) -> (Vec<EndpointSubset>, bool) {
        let (ns, name) = (svc.namespace().unwrap_or_default(), svc.name_any());
        let spec = svc.spec.as_ref();
        let pnra = spec.and_then(|s| s.publish_not_ready_addresses).unwrap_or(false);
        let ports = spec.and_then(|s| s.ports.clone()).unwrap_or_default();
        let headless = is_headless(svc);
        let family: Option<bool> =
            spec.and_then(|s| s.ip_families.as_ref()).and_then(|f| f.first()).map(|f| f == "IPv6").or_else(|| {
                spec.and_then(|s| s.cluster_ip.as_deref()).and_then(parse_ip_lenient).map(|ip| ip.is_ipv6())
            });
        let mut facts = Vec::new();
        for pod in self.index.pods_of(&ns, &name) {
            if !podutil::should_be_in_endpoints(&pod, pnra) {
                continue;
            }
            let ips = pod::pod_ips(&pod);
            // The primary family only; a headless Service of unknown family follows the pod.
            let want_v6 = family.or_else(|| ips.first().map(IpAddr::is_ipv6));
            let Some(ip) = ips.iter().find(|ip| Some(ip.is_ipv6()) == want_v6) else { continue };
            let addr = EndpointAddress {
                ip: ip.to_string(),
                hostname: hostname_for(&pod, svc),
                node_name: Some(pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default()),
                target_ref: Some(podutil::pod_ref(&pod)),
            };
            let ready = pnra || pod::is_ready(&pod);
            if ports.is_empty() {
                if headless {
                    facts.push((addr, None, ready));
                }
                continue;
            }
            for sp in &ports {
                if let Some(number) = find_port(&pod, sp) {
                    let port = EndpointPort {
                        name: sp.name.clone(),
                        port: number,
                        protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                        app_protocol: sp.app_protocol.clone(),
                    };
                    facts.push((addr.clone(), Some(port), ready));
                }
            }
        }
        let mut subsets = repack(facts);
        let truncated = truncate(&mut subsets);
        (subsets, truncated)
    }

    async fn sync(&self, key: &ServiceKey) -> Result<(), crate::Error> {
        let (ns, name) = key;
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), ns);
        let Some(svc) = self.informers.services.store().get(&ObjectRef::new(name).within(ns)) else {
            self.triggers.lock().forget(key);
            return match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                Err(e) => Err(e.into()),
            };
        };
        let spec = svc.spec.as_ref();
        if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName")
            || spec.and_then(|s| s.selector.as_ref()).is_none()
        {
            return Ok(());
        }
        let (subsets, truncated) = self.desired(&svc);
        let pods = self.index.pods_of(ns, name);
        let trigger = self.triggers.lock().observe(key, &svc, &pods);
        let mut labels: BTreeMap<String, String> = svc.labels().clone();
        labels.remove(LABEL_HEADLESS);
        if is_headless(&svc) {
            labels.insert(LABEL_HEADLESS.into(), String::new());
        }
        labels.insert(LABEL_ENDPOINTS_MANAGED_BY.into(), "endpoint-controller".into());
        let current = self.informers.endpoints.store().get(&ObjectRef::new(name).within(ns));
        if let Some(cur) = &current {
            let capacity_ok = cur.annotations().contains_key(ANNOTATION_OVER_CAPACITY) == truncated;
            if same_subsets(cur.subsets.as_deref().unwrap_or_default(), &subsets)
                && cur.labels() == &labels
                && capacity_ok
            {
                return Ok(());
            }
        }
        let mut ep = current.as_deref().cloned().unwrap_or_else(|| Endpoints {
            metadata: ObjectMeta { name: Some(name.clone()), namespace: Some(ns.clone()), ..Default::default() },
            subsets: None,
        });
        ep.subsets = (!subsets.is_empty()).then_some(subsets);
        ep.metadata.labels = Some(labels);
        let ann = ep.metadata.annotations.get_or_insert_with(Default::default);
        match &trigger {
            Some(t) => ann.insert(ANNOTATION_TRIGGER_TIME.into(), format_trigger_time(t)),
            None => ann.remove(ANNOTATION_TRIGGER_TIME),
        };
        if truncated {
            ann.insert(ANNOTATION_OVER_CAPACITY.into(), "truncated".into());
        } else {
            ann.remove(ANNOTATION_OVER_CAPACITY);
        }
        let result = if current.is_some() {
            api.replace(name, &PostParams::default(), &ep).await.map(|_| ())
        } else {
            api.create(&PostParams::default(), &ep).await.map(|_| ())
        };
        match result {
            Ok(()) => Ok(()),
            // The namespace is going away: nothing to keep.
            Err(kube::Error::Api(e)) if e.code == 403 && current.is_none() => Ok(()),
            Err(e) => {
                let (reason, msg) = if current.is_some() {
                    ("FailedToUpdateEndpoint", format!("Failed to update endpoint {ns}/{name}: {e}"))
                } else {
                    ("FailedToCreateEndpoint", format!("Failed to create endpoint for service {ns}/{name}: {e}"))
                };
                self.recorder.record(&reference(&ep), EventType::Warning, reason, &msg).await;
                Err(e.into())
            }
        }
    }
}

// ---------------------------------------------------------------------------
// EndpointSlice mirroring

pub struct Mirroring {
    client: Client,
    informers: Arc<Informers>,
    queue: Arc<WorkQueue<ServiceKey>>,
    slices: Arc<Slices>,
    max_per_subset: usize,
    recorder: Recorder,
}

fn should_mirror(e: &Endpoints) -> bool {
    e.labels().get(LABEL_SKIP_MIRROR).map(String::as_str) != Some("true")
        && !e.annotations().contains_key(ANNOTATION_LEADER)
}

impl Mirroring {
    pub fn new(client: Client, informers: Arc<Informers>, _opts: &Options) -> Arc<Self> {
        let queue = WorkQueue::new();
        let q = queue.clone();
        let slices = Slices::attach(&informers.slices, MIRRORING_MANAGER, move |k| q.add(k));
        let m = Arc::new(Mirroring {
            recorder: Recorder::new(client.clone(), "endpoint-slice-mirroring-controller"),
            client,
            informers: informers.clone(),
            queue,
            slices,
            max_per_subset: MAX_CAPACITY,
        });
        let q = m.queue.clone();
        informers.endpoints.on_change(move |change| {
            if change.before().is_some_and(should_mirror) || change.after().is_some_and(should_mirror) {
                q.add(key_of(change.object()));
            }
        });
        let q = m.queue.clone();
        informers.services.on_change(move |change| {
            let selectorless = |s: &Service| s.spec.as_ref().and_then(|sp| sp.selector.as_ref()).is_none();
            let relevant = match change {
                Change::Added(s) | Change::Deleted(s) => selectorless(s),
                Change::Modified { old, new } => selectorless(old) != selectorless(new),
            };
            if relevant {
                q.add(key_of(change.object()));
            }
        });
        m
    }

    pub fn spawn(self: &Arc<Self>, workers: usize, stop: watch::Receiver<bool>) {
        let me = self.clone();
        kubesvc_runtime::run_workers(self.queue.clone(), workers, stop, move |key| {
            let me = me.clone();
            async move { me.sync(&key).await }
        });
    }

    async fn sync(&self, key: &ServiceKey) -> Result<(), crate::Error> {
        let (ns, name) = key;
        if self.slices.stale(key) {
            return Err(crate::Error::Other("EndpointSlice informer cache is out of date".into()));
        }
        let existing = self.slices.of(key);
        let ep = self.informers.endpoints.store().get(&ObjectRef::new(name).within(ns));
        let svc = self.informers.services.store().get(&ObjectRef::new(name).within(ns));
        let mirror = match (&ep, &svc) {
            (Some(ep), Some(svc)) => should_mirror(ep) && svc.spec.as_ref().and_then(|s| s.selector.as_ref()).is_none(),
            _ => false,
        };
        let Some(ep) = ep.filter(|_| mirror) else {
            let delete: Vec<String> = existing.iter().map(|s| s.name_any()).collect();
            self.slices.write(&self.client, key, Vec::new(), Vec::new(), delete).await?;
            return Ok(());
        };
        let (desired, invalid, skipped) = self.desired(&ep);
        if invalid > 0 {
            let msg = format!("Skipped {invalid} invalid IP addresses when mirroring to EndpointSlices");
            self.recorder.record(&reference(&*ep), EventType::Warning, "InvalidIPAddress", &msg).await;
        }
        if skipped > invalid {
            let msg = format!(
                "A max of {} addresses can be mirrored to EndpointSlices per Endpoints subset. {skipped} addresses were skipped",
                self.max_per_subset
            );
            self.recorder.record(&reference(&*ep), EventType::Warning, "TooManyAddressesToMirror", &msg).await;
        }
        let (create, update, delete) = plan_mirror(&ep, desired, &existing);
        let creating = ep.metadata.deletion_timestamp.is_none();
        self.slices.write(&self.client, key, if creating { create } else { Vec::new() }, update, delete).await?;
        Ok(())
    }

    /// The mirrored slices' contents, by (address type, ports); invalid and skipped address counts.
    fn desired(&self, ep: &Endpoints) -> (BTreeMap<MirrorKey, MirrorContent>, usize, usize) {
        let mut facts = Vec::new();
        for s in ep.subsets.iter().flatten() {
            let ports: Vec<Option<EndpointPort>> = match s.ports.as_ref().filter(|p| !p.is_empty()) {
                Some(p) => p.iter().cloned().map(Some).collect(),
                None => vec![None],
            };
            for (list, ready) in [(&s.addresses, true), (&s.not_ready_addresses, false)] {
                for a in list.iter().flatten() {
                    for p in &ports {
                        facts.push((a.clone(), p.clone(), ready));
                    }
                }
            }
        }
        let mut desired: BTreeMap<MirrorKey, MirrorContent> = BTreeMap::new();
        let (mut invalid, mut skipped) = (0, 0);
        for subset in repack(facts) {
            let ports: Vec<discovery::EndpointPort> = subset
                .ports
                .iter()
                .flatten()
                .map(|p| discovery::EndpointPort {
                    name: Some(p.name.clone().unwrap_or_default()),
                    port: Some(p.port),
                    protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: p.app_protocol.clone(),
                })
                .collect();
            let pkey = mirror_port_key(&ports);
            let mut mirrored = 0;
            for (list, ready) in [(&subset.addresses, true), (&subset.not_ready_addresses, false)] {
                for a in list.iter().flatten() {
                    if mirrored >= self.max_per_subset {
                        skipped += 1;
                        continue;
                    }
                    let Some(ip) = parse_ip_lenient(&a.ip) else {
                        invalid += 1;
                        skipped += 1;
                        continue;
                    };
                    mirrored += 1;
                    let address_type = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
                    let e = discovery::Endpoint {
                        addresses: vec![ip.to_string()],
                        conditions: Some(discovery::EndpointConditions {
                            ready: Some(ready),
                            serving: None,
                            terminating: None,
                        }),
                        target_ref: a.target_ref.clone(),
                        node_name: a.node_name.clone().filter(|n| !n.is_empty()),
                        hostname: a.hostname.clone().filter(|h| !h.is_empty()),
                        ..Default::default()
                    };
                    desired
                        .entry((address_type, pkey.clone()))
                        .or_insert_with(|| (ports.clone(), Vec::new()))
                        .1
                        .push(e);
                }
            }
        }
        (desired, invalid, skipped)
    }
}

type MirrorKey = (&'static str, Vec<PortSortKey>);

fn mirror_port_key(ports: &[discovery::EndpointPort]) -> Vec<PortSortKey> {
    let mut k: Vec<_> = ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or_default(),
                p.protocol.clone().unwrap_or_default(),
                p.app_protocol.clone(),
            )
        })
        .collect();
    k.sort();
    k
}

fn mirrored_meta(ep: &Endpoints) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut labels = ep.labels().clone();
    labels.insert(LABEL_SERVICE_NAME.into(), ep.name_any());
    labels.insert(LABEL_MANAGED_BY.into(), MIRRORING_MANAGER.into());
    let mut annotations = ep.annotations().clone();
    annotations.remove(ANNOTATION_TRIGGER_TIME);
    annotations.remove(ANNOTATION_LAST_APPLIED);
    (labels, annotations)
}

/// One slice per (address type, ports): the first existing one is kept (and
/// rewritten if it differs), the others deleted; creates and deletes of the
/// same family pair up into updates.
fn plan_mirror(
    ep: &Endpoints,
    desired: BTreeMap<MirrorKey, MirrorContent>,
    existing: &[Arc<EndpointSlice>],
) -> (Vec<EndpointSlice>, Vec<EndpointSlice>, Vec<String>) {
    let (labels, annotations) = mirrored_meta(ep);
    let mut by_key: BTreeMap<MirrorKey, Vec<&EndpointSlice>> = BTreeMap::new();
    for s in existing {
        let t: &'static str = if s.address_type == "IPv6" { "IPv6" } else { "IPv4" };
        by_key.entry((t, mirror_port_key(s.ports.as_deref().unwrap_or_default()))).or_default().push(s);
    }
    let build = |name: Option<String>, t: &str, ports: Vec<discovery::EndpointPort>, eps: Vec<discovery::Endpoint>| {
        let generate_name = name.is_none().then(|| {
            let n = ep.name_any();
            if n.len() < 63 - 5 { format!("{n}-") } else { n }
        });
        EndpointSlice {
            metadata: ObjectMeta {
                name,
                generate_name,
                namespace: ep.namespace(),
                labels: Some(labels.clone()),
                annotations: (!annotations.is_empty()).then(|| annotations.clone()),
                owner_references: Some(vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Endpoints".into(),
                    name: ep.name_any(),
                    uid: ep.uid().unwrap_or_default(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]),
                ..Default::default()
            },
            address_type: t.into(),
            ports: Some(ports),
            endpoints: Some(eps),
        }
    };
    let (mut create, mut update, mut delete): (Vec<EndpointSlice>, Vec<EndpointSlice>, Vec<(String, &'static str)>) =
        (Vec::new(), Vec::new(), Vec::new());
    for (key, (ports, eps)) in desired {
        let mut found = by_key.remove(&key).unwrap_or_default().into_iter();
        match found.next() {
            Some(first) => {
                let same = first.endpoints.as_deref().unwrap_or_default() == eps.as_slice()
                    && first.labels() == &labels
                    && first.annotations() == &annotations;
                if !same {
                    update.push(build(first.metadata.name.clone(), key.0, ports, eps));
                }
            }
            None => create.push(build(None, key.0, ports, eps)),
        }
        delete.extend(found.map(|s| (s.name_any(), key.0)));
    }
    for (key, slices) in by_key {
        delete.extend(slices.into_iter().map(|s| (s.name_any(), key.0)));
    }
    // Recycle deletes into creates of the same family.
    let mut kept_creates = Vec::new();
    for mut c in create {
        match delete.iter().position(|(_, t)| *t == c.address_type) {
            Some(i) => {
                let (name, _) = delete.remove(i);
                c.metadata.name = Some(name);
                c.metadata.generate_name = None;
                update.push(c);
            }
            None => kept_creates.push(c),
        }
    }
    (kept_creates, update, delete.into_iter().map(|(n, _)| n).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(ip: &str, uid: &str) -> EndpointAddress {
        EndpointAddress {
            ip: ip.into(),
            target_ref: Some(k8s_openapi::api::core::v1::ObjectReference {
                uid: Some(uid.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn port(name: &str, n: i32) -> Option<EndpointPort> {
        Some(EndpointPort { name: Some(name.into()), port: n, protocol: Some("TCP".into()), app_protocol: None })
    }

    #[test]
    fn repacking_groups_ports_by_their_addresses() {
        let subsets = repack(vec![
            (addr("10.0.0.2", "b"), port("http", 80), true),
            (addr("10.0.0.1", "a"), port("http", 80), true),
            (addr("10.0.0.1", "a"), port("https", 443), true),
            (addr("10.0.0.2", "b"), port("https", 443), true),
            (addr("10.0.0.3", "c"), port("http", 8080), false),
            // The same address and port twice: not ready wins.
            (addr("10.0.0.1", "a"), port("metrics", 9090), true),
            (addr("10.0.0.1", "a"), port("metrics", 9090), false),
        ]);
        assert_eq!(subsets.len(), 3);
        let both = subsets.iter().find(|s| s.ports.as_ref().is_some_and(|p| p.len() == 2)).unwrap();
        let ips: Vec<&str> = both.addresses.iter().flatten().map(|a| a.ip.as_str()).collect();
        assert_eq!(ips, ["10.0.0.1", "10.0.0.2"]);
        let metrics = subsets.iter().find(|s| s.ports.as_ref().unwrap()[0].port == 9090).unwrap();
        assert!(metrics.addresses.is_none());
        assert_eq!(metrics.not_ready_addresses.as_ref().unwrap().len(), 1);
    }

    #[test]
    fn truncation_keeps_ready_first_in_proportion() {
        let many = |n: usize, base: &str| -> Vec<EndpointAddress> {
            (0..n).map(|i| addr(&format!("{base}.{}.{}", i / 250, i % 250), &format!("{base}{i}"))).collect()
        };
        let mut subsets = vec![
            EndpointSubset {
                addresses: Some(many(600, "10.1")),
                not_ready_addresses: Some(many(300, "10.2")),
                ports: None,
            },
            EndpointSubset {
                addresses: Some(many(200, "10.3")),
                not_ready_addresses: Some(many(100, "10.4")),
                ports: None,
            },
        ];
        assert!(truncate(&mut subsets));
        assert_eq!(count_addresses(&subsets), (800, 200));
        assert_eq!(subsets[0].not_ready_addresses.as_ref().unwrap().len(), 150);
        assert_eq!(subsets[1].not_ready_addresses.as_ref().unwrap().len(), 50);
        let mut ready = vec![
            EndpointSubset {
                addresses: Some(many(900, "10.5")),
                not_ready_addresses: Some(many(5, "10.6")),
                ports: None,
            },
            EndpointSubset { addresses: Some(many(300, "10.7")), not_ready_addresses: None, ports: None },
        ];
        assert!(truncate(&mut ready));
        assert_eq!(count_addresses(&ready), (1000, 0));
        assert_eq!(ready[0].addresses.as_ref().unwrap().len(), 750);
    }
}
