//! The change tracker: Service and EndpointSlice events into the proxy's
//! view of each Service, and the set of Services changed since the last sync
//! (so a sync renders only those).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kubesvc_api::net::Family;

use crate::model::{self, Endpoint, Protocol, ServiceName, ServicePort};

/// One slice's endpoints per (port name, protocol).
type SliceEndpoints = Vec<(String, Protocol, Vec<Endpoint>)>;

/// The annotation the EndpointSlice controller sets to when the change that led to a slice happened.
pub const TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";

#[derive(Default)]
pub struct Tracker {
    node: String,
    families: Vec<Family>,
    services: HashMap<ServiceName, Vec<Arc<ServicePort>>>,
    slices: HashMap<ServiceName, BTreeMap<String, SliceEndpoints>>,
    dirty: HashSet<ServiceName>,
    /// Trigger times of changes not yet programmed, for the network programming latency.
    triggers: Vec<SystemTime>,
}

/// One Service port with the endpoints every slice gives it (deduplicated by address and port).
#[derive(Clone, Debug)]
pub struct PortState {
    pub port: Arc<ServicePort>,
    pub endpoints: Vec<Endpoint>,
}

impl Tracker {
    pub fn new(node: &str, families: Vec<Family>) -> Tracker {
        Tracker { node: node.to_string(), families, ..Tracker::default() }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Records a Service's new state (`None`: deleted).
    pub fn service(&mut self, name: ServiceName, svc: Option<&Service>) {
        let ports: Vec<Arc<ServicePort>> = match svc {
            Some(s) => self.families.iter().flat_map(|f| model::service_ports(s, *f)).collect(),
            None => Vec::new(),
        };
        let old =
            if ports.is_empty() { self.services.remove(&name) } else { self.services.insert(name.clone(), ports) };
        let changed = match (old, self.services.get(&name)) {
            (None, None) => false,
            (Some(a), Some(b)) => a != *b,
            _ => true,
        };
        if changed {
            self.dirty.insert(name);
        }
    }

    /// Records a slice's new state (`None`: deleted).
    pub fn slice(&mut self, slice: &EndpointSlice, deleted: bool) {
        let Some(service) = model::slice_service(slice) else { return };
        let name = slice.metadata.name.clone().unwrap_or_default();
        let eps = if deleted { Vec::new() } else { model::slice_endpoints(slice, &self.node) };
        let slices = self.slices.entry(service.clone()).or_default();
        let changed = if eps.is_empty() && deleted {
            slices.remove(&name).is_some()
        } else {
            slices.insert(name, eps.clone()).as_ref() != Some(&eps)
        };
        if slices.is_empty() {
            self.slices.remove(&service);
        }
        if changed {
            if let Some(t) = trigger_time(slice) {
                self.triggers.push(t);
            }
            self.dirty.insert(service);
        }
    }

    /// Services changed since the last call, and the trigger times of those changes.
    pub fn take_dirty(&mut self) -> (HashSet<ServiceName>, Vec<SystemTime>) {
        (std::mem::take(&mut self.dirty), std::mem::take(&mut self.triggers))
    }

    /// Marks every Service changed (a full sync).
    pub fn mark_all(&mut self) {
        self.dirty.extend(self.services.keys().cloned());
    }

    pub fn service_names(&self) -> impl Iterator<Item = &ServiceName> {
        self.services.keys()
    }

    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    pub fn endpoint_count(&self) -> usize {
        self.slices.values().flat_map(|s| s.values()).flatten().map(|(_, _, e)| e.len()).sum()
    }

    /// The ports of one Service with their endpoints; empty when the Service is gone.
    pub fn ports(&self, name: &ServiceName) -> Vec<PortState> {
        let Some(ports) = self.services.get(name) else { return Vec::new() };
        let slices = self.slices.get(name);
        ports
            .iter()
            .map(|port| {
                // Slices in name order; a duplicate address keeps its first entry unless a later one is local.
                let mut endpoints: Vec<Endpoint> = Vec::new();
                let mut seen: HashMap<std::net::SocketAddr, usize> = HashMap::new();
                for eps in slices.into_iter().flat_map(|s| s.values()) {
                    for (pname, proto, list) in eps {
                        if *pname != port.name.port || *proto != port.name.protocol {
                            continue;
                        }
                        for e in list.iter().filter(|e| Family::of(&e.ip) == port.family) {
                            match seen.get(&e.addr()) {
                                Some(&i) => {
                                    if e.local && !endpoints[i].local {
                                        endpoints[i] = e.clone();
                                    }
                                }
                                None => {
                                    seen.insert(e.addr(), endpoints.len());
                                    endpoints.push(e.clone());
                                }
                            }
                        }
                    }
                }
                endpoints.sort_by_key(|e| e.addr());
                PortState { port: port.clone(), endpoints }
            })
            .collect()
    }
}

fn trigger_time(slice: &EndpointSlice) -> Option<SystemTime> {
    let s = slice.metadata.annotations.as_ref()?.get(TRIGGER_TIME)?;
    let ts: jiff::Timestamp = s.parse().ok()?;
    Some(SystemTime::from(ts))
}
