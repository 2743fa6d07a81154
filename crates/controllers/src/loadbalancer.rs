//! A load-balancer controller for local clusters (what MetalLB in layer-2
//! mode or kind's cloud provider do elsewhere): each LoadBalancer Service of
//! no class, or of ours, gets an address from a pool (`--lb-pool`), shown in
//! `status.loadBalancer.ingress`. Requested addresses are honoured
//! (`spec.loadBalancerIP`, deprecated but used, and [`IPS_ANNOTATION`] for
//! several); an address goes back to the pool when its Service is deleted or
//! stops being one of ours. Which node answers for the address on the
//! network is the node agent's part.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client};
use kubesvc_runtime::events::{EventType, Recorder, reference};
use kubesvc_runtime::{Informer, ObjectKey, WorkQueue, key_of};
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::watch;

use crate::Error;

/// The `loadBalancerClass` this controller serves (besides Services with none).
pub const CLASS: &str = "kubesvc.io/load-balancer";
/// Several requested addresses, comma-separated (one per family, or more).
pub const IPS_ANNOTATION: &str = "kubesvc.io/load-balancer-ips";

/// An inclusive range of addresses, e.g. `10.250.0.200-10.250.0.250`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpRange {
    pub first: IpAddr,
    pub last: IpAddr,
}

fn num(ip: &IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(*v4)),
        IpAddr::V6(v6) => u128::from(*v6),
    }
}

impl IpRange {
    /// `a-b`, or a CIDR (all of it), or one address.
    pub fn parse(s: &str) -> Result<IpRange, String> {
        let s = s.trim();
        if let Some((a, b)) = s.split_once('-') {
            let first: IpAddr = a.trim().parse().map_err(|_| format!("invalid address range {s:?}"))?;
            let last: IpAddr = b.trim().parse().map_err(|_| format!("invalid address range {s:?}"))?;
            if first.is_ipv4() != last.is_ipv4() || num(&first) > num(&last) {
                return Err(format!(
                    "invalid address range {s:?}: the first address must come before the last, in one family"
                ));
            }
            return Ok(IpRange { first, last });
        }
        if s.contains('/') {
            let c = kubesvc_api::net::Cidr::parse(s)?;
            let last = c.nth(c.len().saturating_sub(1)).ok_or_else(|| format!("invalid range {s:?}"))?;
            return Ok(IpRange { first: c.network, last });
        }
        let ip: IpAddr = s.parse().map_err(|_| format!("invalid address {s:?}"))?;
        Ok(IpRange { first: ip, last: ip })
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        ip.is_ipv4() == self.first.is_ipv4() && (num(&self.first)..=num(&self.last)).contains(&num(ip))
    }

    fn iter(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let v4 = self.first.is_ipv4();
        (num(&self.first)..=num(&self.last)).map(move |n| {
            if v4 {
                IpAddr::from(std::net::Ipv4Addr::from(n as u32))
            } else {
                IpAddr::from(std::net::Ipv6Addr::from(n))
            }
        })
    }
}

/// The pool and who holds what.
#[derive(Debug, Default)]
pub struct Pool {
    ranges: Vec<IpRange>,
    owners: HashMap<IpAddr, ObjectKey>,
}

impl Pool {
    pub fn new(ranges: Vec<IpRange>) -> Pool {
        Pool { ranges, owners: HashMap::new() }
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.ranges.iter().any(|r| r.contains(ip))
    }

    pub fn owner(&self, ip: &IpAddr) -> Option<&ObjectKey> {
        self.owners.get(ip)
    }

    pub fn held_by(&self, key: &ObjectKey) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = self.owners.iter().filter(|(_, k)| *k == key).map(|(ip, _)| *ip).collect();
        v.sort();
        v
    }

    pub fn take(&mut self, ip: IpAddr, key: &ObjectKey) {
        self.owners.insert(ip, key.clone());
    }

    pub fn release_all(&mut self, key: &ObjectKey) {
        self.owners.retain(|_, k| k != key);
    }

    /// The first free address of a family (ranges in order).
    pub fn first_free(&self, v4: bool) -> Option<IpAddr> {
        self.ranges
            .iter()
            .filter(|r| r.first.is_ipv4() == v4)
            .flat_map(|r| r.iter())
            .find(|ip| !self.owners.contains_key(ip))
    }
}

/// A Service this controller serves: type LoadBalancer, no class or ours.
pub fn is_ours(svc: &Service) -> bool {
    let Some(spec) = svc.spec.as_ref() else { return false };
    spec.type_.as_deref() == Some("LoadBalancer") && spec.load_balancer_class.as_deref().is_none_or(|c| c == CLASS)
}

/// The addresses a Service asks for, or why they cannot be read.
pub fn requested(svc: &Service) -> Result<Vec<IpAddr>, String> {
    let annotated =
        svc.metadata.annotations.as_ref().and_then(|a| a.get(IPS_ANNOTATION)).filter(|v| !v.trim().is_empty());
    let list: Vec<&str> = match annotated {
        Some(v) => v.split(',').map(str::trim).collect(),
        None => svc
            .spec
            .as_ref()
            .and_then(|s| s.load_balancer_ip.as_deref())
            .filter(|s| !s.is_empty())
            .into_iter()
            .collect(),
    };
    list.into_iter().map(|s| s.parse::<IpAddr>().map_err(|_| format!("{s:?} is not an IP address"))).collect()
}

fn ingress_ips(svc: &Service) -> Vec<IpAddr> {
    let ingress = svc.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|l| l.ingress.as_ref());
    ingress.into_iter().flatten().filter_map(|i| i.ip.as_deref()?.parse().ok()).collect()
}

/// What a Service should hold: its requested addresses (each in the pool and free or its
/// own), else what it holds already, else one free address per family it uses.
pub fn decide(pool: &Pool, key: &ObjectKey, svc: &Service) -> Result<Vec<IpAddr>, String> {
    let asked = requested(svc)?;
    if !asked.is_empty() {
        for ip in &asked {
            if !pool.contains(ip) {
                return Err(format!("{ip} is not in the load-balancer pool"));
            }
            if let Some(owner) = pool.owner(ip).filter(|o| *o != key) {
                return Err(format!("{ip} is already in use by {}/{}", owner.0, owner.1));
            }
        }
        return Ok(asked);
    }
    let held = pool.held_by(key);
    if !held.is_empty() {
        return Ok(held);
    }
    let families: Vec<String> =
        svc.spec.as_ref().and_then(|s| s.ip_families.clone()).unwrap_or_else(|| vec!["IPv4".into()]);
    let mut out = Vec::new();
    for f in families {
        if let Some(ip) = pool.first_free(f == "IPv4") {
            out.push(ip);
        }
    }
    if out.is_empty() {
        return Err("no available IPs in the load-balancer pool".to_string());
    }
    Ok(out)
}

pub struct Controller {
    client: Client,
    services: Arc<Informer<Service>>,
    pool: Mutex<Pool>,
    queue: Arc<WorkQueue<ObjectKey>>,
    recorder: Recorder,
}

impl Controller {
    /// `None` without a pool (the controller is off).
    pub fn new(client: Client, services: &Arc<Informer<Service>>, pool: &[IpRange]) -> Option<Arc<Controller>> {
        if pool.is_empty() {
            return None;
        }
        let c = Arc::new(Controller {
            recorder: Recorder::new(client.clone(), "kubesvc-load-balancer"),
            client,
            services: services.clone(),
            pool: Mutex::new(Pool::new(pool.to_vec())),
            queue: WorkQueue::new(),
        });
        let q = c.queue.clone();
        services.on_change(move |change| q.add(key_of(change.object())));
        Some(c)
    }

    /// Takes the addresses our Services hold already, then serves. Call once services synced.
    pub fn spawn(self: &Arc<Self>, stop: watch::Receiver<bool>) {
        {
            let mut pool = self.pool.lock();
            for svc in self.services.store().state() {
                if is_ours(&svc) {
                    let key = key_of(svc.as_ref());
                    for ip in ingress_ips(&svc) {
                        if pool.contains(&ip) && pool.owner(&ip).is_none() {
                            pool.take(ip, &key);
                        }
                    }
                }
            }
        }
        let me = self.clone();
        kubesvc_runtime::run_workers(self.queue.clone(), 1, stop, move |key| {
            let me = me.clone();
            async move { me.sync(&key).await }
        });
    }

    async fn sync(&self, key: &ObjectKey) -> Result<(), Error> {
        let svc = self.services.store().get(&ObjectRef::new(&key.1).within(&key.0));
        let api: Api<Service> = Api::namespaced(self.client.clone(), &key.0);
        let Some(svc) = svc.filter(|s| is_ours(s)) else {
            // Gone, or no longer ours: its addresses go back, and it stops showing ours.
            let held = {
                let mut pool = self.pool.lock();
                let held = pool.held_by(key);
                pool.release_all(key);
                held
            };
            let svc = self.services.store().get(&ObjectRef::new(&key.1).within(&key.0));
            if let Some(svc) = svc
                && !held.is_empty()
                && ingress_ips(&svc).iter().any(|ip| held.contains(ip))
            {
                let patch = json!({"status": {"loadBalancer": {"ingress": null}}});
                match api.patch_status(&key.1, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(());
        };
        let decided = {
            let pool = self.pool.lock();
            decide(&pool, key, &svc)
        };
        let ips = match decided {
            Ok(ips) => ips,
            Err(why) => {
                let msg = format!("Failed to allocate IP for \"{}/{}\": {why}", key.0, key.1);
                self.recorder.record(&reference(svc.as_ref()), EventType::Warning, "AllocationFailed", &msg).await;
                return Ok(());
            }
        };
        {
            let mut pool = self.pool.lock();
            pool.release_all(key);
            for ip in &ips {
                pool.take(*ip, key);
            }
        }
        if ingress_ips(&svc) == ips {
            return Ok(());
        }
        let ingress: Vec<_> = ips.iter().map(|ip| json!({"ip": ip.to_string(), "ipMode": "VIP"})).collect();
        let patch = json!({"status": {"loadBalancer": {"ingress": ingress}}});
        match api.patch_status(&key.1, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let quoted: Vec<String> = ips.iter().map(|ip| format!("\"{ip}\"")).collect();
        let msg = format!("Assigned IP [{}]", quoted.join(","));
        self.recorder.record(&reference(svc.as_ref()), EventType::Normal, "IPAllocated", &msg).await;
        tracing::info!(service = %format!("{}/{}", key.0, key.1), ips = ?ips, "assigned load-balancer addresses");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    fn key(n: &str) -> ObjectKey {
        ("default".into(), n.into())
    }

    #[test]
    fn ranges_parse_and_allocation_takes_the_first_free_address() {
        let r = IpRange::parse("10.250.0.200-10.250.0.202").unwrap();
        assert!(r.contains(&"10.250.0.201".parse().unwrap()) && !r.contains(&"10.250.0.203".parse().unwrap()));
        assert!(IpRange::parse("10.0.0.9-10.0.0.1").is_err());
        assert_eq!(IpRange::parse("10.1.0.0/30").unwrap().last, "10.1.0.3".parse::<IpAddr>().unwrap());
        let mut pool = Pool::new(vec![r]);
        let lb = svc(json!({"metadata": {"name": "a"}, "spec": {"type": "LoadBalancer"}}));
        let ips = decide(&pool, &key("a"), &lb).unwrap();
        assert_eq!(ips, vec!["10.250.0.200".parse::<IpAddr>().unwrap()]);
        pool.take(ips[0], &key("a"));
        // It keeps what it has; the next Service gets the next address.
        assert_eq!(decide(&pool, &key("a"), &lb).unwrap(), ips);
        assert_eq!(decide(&pool, &key("b"), &lb).unwrap(), vec!["10.250.0.201".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn requested_addresses_are_honoured_or_refused_with_a_reason() {
        let mut pool = Pool::new(vec![IpRange::parse("10.250.0.200-10.250.0.210").unwrap()]);
        let asking =
            |ip: &str| svc(json!({"metadata": {"name": "x"}, "spec": {"type": "LoadBalancer", "loadBalancerIP": ip}}));
        assert_eq!(
            decide(&pool, &key("x"), &asking("10.250.0.205")).unwrap(),
            vec!["10.250.0.205".parse::<IpAddr>().unwrap()]
        );
        pool.take("10.250.0.205".parse().unwrap(), &key("other"));
        assert_eq!(
            decide(&pool, &key("x"), &asking("10.250.0.205")).unwrap_err(),
            "10.250.0.205 is already in use by default/other"
        );
        assert_eq!(
            decide(&pool, &key("x"), &asking("10.9.9.9")).unwrap_err(),
            "10.9.9.9 is not in the load-balancer pool"
        );
        let several =
            svc(json!({"metadata": {"name": "x", "annotations": {IPS_ANNOTATION: "10.250.0.201, 10.250.0.202"}},
            "spec": {"type": "LoadBalancer"}}));
        assert_eq!(decide(&pool, &key("x"), &several).unwrap().len(), 2);
        let bad = svc(
            json!({"metadata": {"name": "x", "annotations": {IPS_ANNOTATION: "nope"}}, "spec": {"type": "LoadBalancer"}}),
        );
        assert_eq!(decide(&pool, &key("x"), &bad).unwrap_err(), "\"nope\" is not an IP address");
    }

    #[test]
    fn only_load_balancers_of_no_class_or_ours() {
        assert!(is_ours(&svc(json!({"spec": {"type": "LoadBalancer"}}))));
        assert!(is_ours(&svc(json!({"spec": {"type": "LoadBalancer", "loadBalancerClass": CLASS}}))));
        assert!(!is_ours(&svc(json!({"spec": {"type": "LoadBalancer", "loadBalancerClass": "example.com/other"}}))));
        assert!(!is_ours(&svc(json!({"spec": {"type": "NodePort"}}))));
    }
}
