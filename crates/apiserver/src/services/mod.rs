//! Services' cluster IPs and node ports: allocated in the same store
//! transaction as the Service (a failed write leaks nothing, a delete or type
//! change releases exactly what it held), with Kubernetes' dual-stack rules,
//! static/dynamic bands and error messages; plus the built-in `kubernetes`
//! and `kube-dns` Services and the repair pass that reconciles allocations
//! with Services after a crash.

pub mod builtin;
pub mod ranges;
pub mod repair;

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use kubesvc_api::kinds::service::{
    ClusterFamilies, ServiceView, TYPE_CLUSTER_IP, TYPE_EXTERNAL_NAME, TYPE_LOAD_BALANCER, TYPE_NODE_PORT,
    init_ip_family_fields, normalize_cluster_ips, patch_allocated_values, unchanged_prefer_dual_stack,
};
use kubesvc_api::meta;
use kubesvc_api::net::{Cidr, Family, PortRange};
use kubesvc_api::resources::Resource;
use kubesvc_api::status::{GroupKind, StatusError};
use kubesvc_api::validation::ip::parse_ip_sloppy;
use kubesvc_api::validation::{ErrorList, FieldError, go_quote};
use kubesvc_store::{Compare, Op, Store};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::registry::{Admission, TxnAppend};
use ranges::{IpRange, Owner, Ranges, ip_key, port_key};

/// The service network: one or two IP ranges (primary first) and the node port range.
#[derive(Clone, Debug)]
pub struct ServiceNetwork {
    pub cidrs: Vec<Cidr>,
    pub node_ports: PortRange,
}

impl Default for ServiceNetwork {
    fn default() -> Self {
        ServiceNetwork {
            cidrs: vec![Cidr::parse("10.96.0.0/12").expect("a valid CIDR")],
            node_ports: PortRange { low: 30000, high: 32767 },
        }
    }
}

impl ServiceNetwork {
    /// From `--service-cidr` (one CIDR, or two of different families, comma-separated)
    /// and `--service-node-port-range`, with kube-apiserver's startup errors.
    pub fn parse(cidrs: &str, node_ports: &str) -> Result<ServiceNetwork, NetworkError> {
        let parts: Vec<&str> = cidrs.split(',').map(str::trim).collect();
        if parts.len() > 2 {
            return Err(NetworkError::TooManyCidrs);
        }
        let mut out = Vec::new();
        for (index, p) in parts.iter().enumerate() {
            let c = Cidr::parse(p).map_err(|r| NetworkError::InvalidCidr { index, reason: Reason(r) })?;
            IpRange::new(c)?;
            out.push(c);
        }
        if out.len() == 2 && out[0].family() == out[1].family() {
            return Err(NetworkError::SameFamily);
        }
        Ok(ServiceNetwork { cidrs: out, node_ports: PortRange::parse(node_ports).map_err(NetworkError::NodePorts)? })
    }

    pub fn families(&self) -> ClusterFamilies {
        ClusterFamilies { primary: self.cidrs[0].family(), secondary: self.cidrs.get(1).map(Cidr::family) }
    }
}

/// Why `--service-cidr` or `--service-node-port-range` cannot be used, in kube-apiserver's words.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("--service-cidr must not contain more than two entries")]
    TooManyCidrs,
    #[error("service-cidr[{index}] is not a valid cidr")]
    InvalidCidr {
        index: usize,
        #[source]
        reason: Reason,
    },
    #[error("--service-cidr[0] and --service-cidr[1] must be of different IP family")]
    SameFamily,
    #[error("the service cluster IP range {0} must be at least 8 IP addresses")]
    RangeTooSmall(Cidr),
    #[error("shortest allowed prefix length for service CIDR is 64, got {0}")]
    PrefixTooShort(u8),
    #[error("--service-node-port-range: {0}")]
    NodePorts(String),
}

/// What the parser said, kept as an error's source.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Reason(pub String);

/// Why the allocator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error("loading the allocated addresses")]
    Store(#[from] kubesvc_store::Error),
}

/// Allocates Services' addresses and ports as an admission step of the registry.
pub struct ServiceAllocator {
    store: Arc<dyn Store>,
    pub ranges: Arc<Ranges>,
    families: ClusterFamilies,
}

const SERVICE: GroupKind = GroupKind { group: "", kind: "Service" };

fn invalid(name: &str, errs: ErrorList) -> StatusError {
    StatusError::invalid(SERVICE, name, &errs)
}

fn invalid_one(
    name: &str,
    field: String,
    value: impl Into<kubesvc_api::validation::BadValue>,
    why: String,
) -> StatusError {
    let mut errs = ErrorList::new();
    errs.push(FieldError::invalid(field, value, why));
    invalid(name, errs)
}

/// Why a requested address or port cannot be had.
enum Refused {
    OutOfRange,
    /// A dry run's check: the address is outside the range of its family (shown).
    NotInValidRange(String),
    Taken,
}

/// The allocations and releases of one request, added to its transaction at the end.
struct Claims<'a> {
    alloc: &'a ServiceAllocator,
    owner: Owner,
    claimed: Vec<String>,
    released: Vec<(String, i64)>,
    /// A dry run checks what it can and allocates nothing: dynamic values are
    /// placeholders, as Kubernetes' dry-run allocators return.
    dry_run: bool,
    dry_ports: u16,
}

impl<'a> Claims<'a> {
    fn new(alloc: &'a ServiceAllocator, owner: Owner, dry_run: bool) -> Self {
        Claims { alloc, owner, claimed: Vec::new(), released: Vec::new(), dry_run, dry_ports: 0 }
    }

    /// Whether `key` is free in the store (not in the mirror, which may lag).
    async fn free(&self, key: &str) -> Result<bool, StatusError> {
        if self.claimed.iter().any(|k| k == key) {
            return Ok(false);
        }
        let held = self.alloc.store.get(key.as_bytes()).await.map_err(StatusError::internal)?;
        Ok(held.is_none())
    }

    async fn claim_ip(&mut self, ip: &IpAddr) -> Result<Result<(), Refused>, StatusError> {
        if self.dry_run {
            // A dry run only checks the range, and words it differently.
            if self.alloc.ranges.locate_ip(ip).is_some() {
                return Ok(Ok(()));
            }
            let family = Family::of(ip);
            let range = self.alloc.ranges.range_of(family).unwrap_or(0);
            return Ok(Err(Refused::NotInValidRange(self.alloc.ranges.ip_ranges[range].cidr.to_string())));
        }
        if self.alloc.ranges.locate_ip(ip).is_none() {
            return Ok(Err(Refused::OutOfRange));
        }
        let key = ip_key(ip);
        if !self.free(&key).await? {
            return Ok(Err(Refused::Taken));
        }
        self.claimed.push(key);
        Ok(Ok(()))
    }

    async fn claim_port(&mut self, port: i64) -> Result<Result<(), Refused>, StatusError> {
        if self.dry_run {
            // A dry run checks only that the port is not taken.
            let Ok(p) = u16::try_from(port) else { return Ok(Ok(())) };
            let key = port_key(p);
            if !self.free(&key).await? {
                return Ok(Err(Refused::Taken));
            }
            self.claimed.push(key);
            return Ok(Ok(()));
        }
        if !self.alloc.ranges.node_ports.contains(port) {
            return Ok(Err(Refused::OutOfRange));
        }
        let key = port_key(port as u16);
        if !self.free(&key).await? {
            return Ok(Err(Refused::Taken));
        }
        self.claimed.push(key);
        Ok(Ok(()))
    }

    fn next_ip(&mut self, family: Family) -> Option<IpAddr> {
        let range = self.alloc.ranges.range_of(family)?;
        if self.dry_run {
            return Some(self.alloc.ranges.ip_ranges[range].cidr.network);
        }
        let ip = self.alloc.ranges.pick_ip(range, &self.claimed)?;
        self.claimed.push(ip_key(&ip));
        Some(ip)
    }

    fn next_port(&mut self) -> Option<u16> {
        if self.dry_run {
            self.dry_ports += 1;
            return Some(32768 + self.dry_ports);
        }
        let port = self.alloc.ranges.pick_port(&self.claimed)?;
        self.claimed.push(port_key(port));
        Some(port)
    }

    /// Gives back `key` if this Service holds it (anything else is the repair
    /// pass's business). The store is asked, not the mirror, which may not
    /// have seen a Service created a moment ago.
    async fn release(&mut self, key: String) -> Result<(), StatusError> {
        if self.released.iter().any(|(k, _)| *k == key) {
            return Ok(());
        }
        let Some(kv) = self.alloc.store.get(key.as_bytes()).await.map_err(StatusError::internal)? else {
            return Ok(());
        };
        let holder: Option<Owner> = serde_json::from_slice(&kv.value).ok();
        if holder.is_some_and(|o| o.namespace == self.owner.namespace && o.name == self.owner.name) {
            self.released.push((key, kv.mod_revision));
        }
        Ok(())
    }

    async fn release_ip(&mut self, ip: &str) -> Result<(), StatusError> {
        match parse_ip_sloppy(ip) {
            Some(ip) => self.release(ip_key(&ip)).await,
            None => Ok(()),
        }
    }

    async fn release_port(&mut self, port: i64) -> Result<(), StatusError> {
        match u16::try_from(port) {
            Ok(p) if p != 0 => self.release(port_key(p)).await,
            _ => Ok(()),
        }
    }

    /// Claims as creates that must not find the key; releases as deletes at the revision seen.
    fn finish(self, txn: &mut TxnAppend) -> Result<(), StatusError> {
        if self.dry_run {
            return Ok(());
        }
        let value = Bytes::from(serde_json::to_vec(&self.owner).map_err(StatusError::internal)?);
        for key in self.claimed {
            txn.compare(Compare::ModRevision(key.clone().into_bytes(), 0));
            txn.op(Op::Put { key: key.into_bytes(), value: value.clone() });
        }
        for (key, rev) in self.released {
            txn.compare(Compare::ModRevision(key.clone().into_bytes(), rev));
            txn.op(Op::Delete { key: key.into_bytes() });
        }
        Ok(())
    }
}

fn owner_of(obj: &Value) -> Owner {
    Owner {
        namespace: meta::namespace(obj).to_string(),
        name: meta::name(obj).to_string(),
        uid: meta::uid(obj).to_string(),
    }
}

fn spec(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    meta::object_at(obj, &["spec"])
}

fn set_node_port(obj: &mut Value, i: usize, port: i64) {
    if let Some(p) = obj.pointer_mut(&format!("/spec/ports/{i}")).and_then(Value::as_object_mut) {
        p.insert("nodePort".into(), json!(port));
    }
}

fn port_refusal(why: Refused, range: &PortRange) -> String {
    match why {
        Refused::OutOfRange | Refused::NotInValidRange(_) => {
            format!("provided port is not in the valid range. The range of valid ports is {range}")
        }
        Refused::Taken => "provided port is already allocated".into(),
    }
}

fn refused_port(name: &str, i: usize, port: i64, why: Refused, range: &PortRange) -> StatusError {
    let msg = port_refusal(why, range);
    invalid_one(name, format!("spec.ports[{i}].nodePort"), port, msg)
}

impl ServiceAllocator {
    /// Loads what is allocated and follows the store until `stop`.
    pub async fn start(
        store: Arc<dyn Store>,
        network: &ServiceNetwork,
        stop: watch::Receiver<bool>,
    ) -> Result<Arc<ServiceAllocator>, StartError> {
        let ip_ranges = network.cidrs.iter().map(|c| IpRange::new(*c)).collect::<Result<Vec<_>, _>>()?;
        let ranges = Arc::new(Ranges::new(ip_ranges, network.node_ports));
        let rev = ranges.load_all(&*store).await?;
        let follower: Arc<dyn crate::follow::Follower> = ranges.clone();
        tokio::spawn(crate::follow::follow(follower, store.clone(), ranges::PREFIX.as_bytes(), rev, stop));
        Ok(Arc::new(ServiceAllocator { store, ranges, families: network.families() }))
    }

    /// Allocates every cluster IP the Service's families call for, keeping requested ones.
    async fn alloc_cluster_ips(&self, obj: &mut Value, c: &mut Claims<'_>) -> Result<(), StatusError> {
        let v = ServiceView::new(obj);
        if v.ty == TYPE_EXTERNAL_NAME || v.cluster_ips().first() == Some(&"None") {
            return Ok(());
        }
        let name = meta::name(obj).to_string();
        let families: Vec<String> = v.ip_families().iter().map(|s| s.to_string()).collect();
        let requested: Vec<String> = v.cluster_ips().iter().map(|s| s.to_string()).collect();
        let shown = v.cluster_ips_json();
        let mut ips = Vec::with_capacity(families.len());
        for (i, family) in families.iter().enumerate() {
            match requested.get(i).filter(|r| !r.is_empty()) {
                Some(req) => {
                    self.claim_requested_ip(req, &name, &shown, c).await?;
                    ips.push(req.clone());
                }
                None => {
                    let family = Family::parse(family).unwrap_or(self.families.primary);
                    let ip = c
                        .next_ip(family)
                        .ok_or_else(|| StatusError::internal("failed to allocate a serviceIP: range is full"))?;
                    ips.push(ip.to_string());
                }
            }
        }
        if let Some(first) = ips.first() {
            let first = first.clone();
            let spec = spec(obj);
            spec.insert("clusterIPs".into(), json!(ips));
            spec.insert("clusterIP".into(), json!(first));
        }
        Ok(())
    }

    async fn claim_requested_ip(
        &self,
        req: &str,
        name: &str,
        shown: &Value,
        c: &mut Claims<'_>,
    ) -> Result<(), StatusError> {
        let refused = |why: &str| {
            invalid_one(name, "spec.clusterIPs".into(), shown.clone(), format!("failed to allocate IP {req}: {why}"))
        };
        let Some(ip) = parse_ip_sloppy(req) else {
            return Err(StatusError::internal(format!("failed to parse service IP {}", go_quote(req))));
        };
        match c.claim_ip(&ip).await? {
            Ok(()) => Ok(()),
            Err(Refused::OutOfRange) => Err(refused("the provided network does not match the current range")),
            Err(Refused::NotInValidRange(cidr)) => Err(refused(&format!(
                "the provided IP ({ip}) is not in the valid range. The range of valid IPs is {cidr}"
            ))),
            Err(Refused::Taken) => Err(refused("provided IP is already allocated")),
        }
    }

    /// `initNodePorts`: ports with the same port number share one node port.
    async fn init_node_ports(&self, obj: &mut Value, c: &mut Claims<'_>) -> Result<(), StatusError> {
        let v = ServiceView::new(obj);
        if !v.needs_node_ports() {
            return Ok(());
        }
        let name = meta::name(obj).to_string();
        let allocate = v.allocates_node_ports();
        let ports: Vec<(i64, i64)> = v.ports.iter().map(|p| (p.port, p.node_port)).collect();
        let mut by_port: std::collections::HashMap<i64, i64> = std::collections::HashMap::new();
        let range = self.ranges.node_ports;
        for (i, &(port, node_port)) in ports.iter().enumerate() {
            if node_port == 0 && !allocate {
                continue;
            }
            match by_port.get(&port).copied() {
                None => {
                    let requested = ports.iter().find(|(p, n)| *p == port && *n != 0).map_or(0, |(_, n)| *n);
                    let chosen = if requested != 0 {
                        if let Err(why) = c.claim_port(requested).await? {
                            return Err(refused_port(&name, i, requested, why, &range));
                        }
                        requested
                    } else {
                        let p = c
                            .next_port()
                            .ok_or_else(|| StatusError::internal("failed to allocate a nodePort: range is full"))?;
                        i64::from(p)
                    };
                    set_node_port(obj, i, chosen);
                    by_port.insert(port, chosen);
                }
                Some(shared) if node_port != shared => {
                    if node_port == 0 {
                        set_node_port(obj, i, shared);
                    } else if let Err(why) = c.claim_port(node_port).await? {
                        return Err(refused_port(&name, i, node_port, why, &range));
                    }
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// A health check node port for LoadBalancer services with externalTrafficPolicy Local; errors are 500s.
    async fn alloc_health_check(&self, obj: &mut Value, c: &mut Claims<'_>) -> Result<(), StatusError> {
        let requested = ServiceView::new(obj).health_check_node_port;
        let range = self.ranges.node_ports;
        if requested != 0 {
            if let Err(why) = c.claim_port(requested).await? {
                let why = port_refusal(why, &range);
                return Err(StatusError::internal(format!(
                    "failed to allocate requested HealthCheck NodePort {requested}: {why}"
                )));
            }
        } else {
            // Kubernetes prints 0 here: the port it names is a shadowed variable.
            let p = c
                .next_port()
                .ok_or_else(|| StatusError::internal("failed to allocate a HealthCheck NodePort 0: range is full"))?;
            spec(obj).insert("healthCheckNodePort".into(), json!(p));
        }
        Ok(())
    }

    /// `updateClusterIPs`: to and from ExternalName, and dual-stack upgrades and downgrades.
    async fn update_cluster_ips(&self, new: &mut Value, old: &Value, c: &mut Claims<'_>) -> Result<(), StatusError> {
        let (n, o) = (ServiceView::new(new), ServiceView::new(old));
        if unchanged_prefer_dual_stack(&n, Some(&o)) {
            return Ok(());
        }
        if o.ty == TYPE_EXTERNAL_NAME && n.ty != TYPE_EXTERNAL_NAME {
            return self.alloc_cluster_ips(new, c).await;
        }
        if o.cluster_ips().first() == Some(&"None") {
            return Ok(());
        }
        if o.ty != TYPE_EXTERNAL_NAME && n.ty == TYPE_EXTERNAL_NAME {
            for ip in o.allocated_ips() {
                c.release_ip(ip).await?;
            }
            return Ok(());
        }
        let (old_fams, new_fams) = (o.ip_families().len(), n.ip_families().len());
        if old_fams == 1 && new_fams == 2 {
            let family = Family::parse(n.ip_families()[1]).unwrap_or(self.families.primary);
            let requested = n.cluster_ips().get(1).map(|s| s.to_string()).filter(|s| !s.is_empty());
            let mut ips: Vec<String> = n.cluster_ips().iter().take(1).map(|s| s.to_string()).collect();
            let name = meta::name(new).to_string();
            let shown = n.cluster_ips_json();
            let second = match requested {
                Some(req) => {
                    self.claim_requested_ip(&req, &name, &shown, c).await?;
                    req
                }
                None => c
                    .next_ip(family)
                    .ok_or_else(|| StatusError::internal("failed to allocate a serviceIP: range is full"))?
                    .to_string(),
            };
            ips.push(second);
            spec(new).insert("clusterIPs".into(), json!(ips));
        } else if old_fams == 2
            && new_fams == 1
            && let Some(secondary) = o.cluster_ips().get(1)
        {
            c.release_ip(secondary).await?;
        }
        Ok(())
    }

    /// `updateNodePorts`: new values are allocated, values no longer used released.
    async fn update_node_ports(&self, new: &mut Value, old: &Value, c: &mut Claims<'_>) -> Result<(), StatusError> {
        let name = meta::name(new).to_string();
        let (n, o) = (ServiceView::new(new), ServiceView::new(old));
        let allocate = n.allocates_node_ports();
        let old_numbers: HashSet<i64> = o.held_node_ports().into_iter().collect();
        let ports: Vec<(String, i64)> = n.ports.iter().map(|p| (p.protocol.to_string(), p.node_port)).collect();
        let range = self.ranges.node_ports;
        let mut claimed_here = HashSet::new();
        let mut seen: HashSet<(String, i64)> = HashSet::new();
        for (i, (protocol, node_port)) in ports.into_iter().enumerate() {
            if node_port == 0 && !allocate {
                continue;
            }
            let chosen = if node_port != 0 {
                if !old_numbers.contains(&node_port)
                    && claimed_here.insert(node_port)
                    && let Err(why) = c.claim_port(node_port).await?
                {
                    return Err(refused_port(&name, i, node_port, why, &range));
                }
                node_port
            } else {
                let p = i64::from(
                    c.next_port()
                        .ok_or_else(|| StatusError::internal("failed to allocate a nodePort: range is full"))?,
                );
                set_node_port(new, i, p);
                p
            };
            if !seen.insert((protocol.clone(), chosen)) {
                return Err(StatusError::internal(format!("duplicate nodePort: {{{protocol} {chosen}}}")));
            }
        }
        let new_numbers: HashSet<i64> = ServiceView::new(new).node_ports().into_iter().collect();
        for p in old_numbers.difference(&new_numbers) {
            c.release_port(*p).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Admission for ServiceAllocator {
    fn handles(&self, r: &Resource) -> bool {
        r.group.is_empty() && r.plural == "services"
    }

    async fn create(
        &self,
        _r: &'static Resource,
        obj: &mut Value,
        txn: &mut TxnAppend,
        dry_run: bool,
    ) -> Result<(), StatusError> {
        let name = meta::name(obj).to_string();
        normalize_cluster_ips(obj, None);
        init_ip_family_fields(obj, None, self.families).map_err(|e| invalid(&name, e))?;
        let mut c = Claims::new(self, owner_of(obj), dry_run);
        self.alloc_cluster_ips(obj, &mut c).await?;
        self.init_node_ports(obj, &mut c).await?;
        if ServiceView::new(obj).needs_health_check() {
            self.alloc_health_check(obj, &mut c).await?;
        }
        c.finish(txn)
    }

    async fn update(
        &self,
        _r: &'static Resource,
        new: &mut Value,
        old: &Value,
        txn: &mut TxnAppend,
        dry_run: bool,
    ) -> Result<(), StatusError> {
        let name = meta::name(new).to_string();
        patch_allocated_values(new, old);
        normalize_cluster_ips(new, Some(old));
        init_ip_family_fields(new, Some(old), self.families).map_err(|e| invalid(&name, e))?;
        let mut c = Claims::new(self, owner_of(old), dry_run);
        self.update_cluster_ips(new, old, &mut c).await?;
        let (new_ty, old_ty) = (ServiceView::new(new).ty.to_string(), ServiceView::new(old).ty.to_string());
        let with_ports = |t: &str| t == TYPE_NODE_PORT || t == TYPE_LOAD_BALANCER;
        if with_ports(&new_ty) {
            self.update_node_ports(new, old, &mut c).await?;
        } else if with_ports(&old_ty) && (new_ty == TYPE_CLUSTER_IP || new_ty == TYPE_EXTERNAL_NAME) {
            for p in ServiceView::new(old).held_node_ports() {
                c.release_port(p).await?;
            }
        }
        let (needed, needs) = (ServiceView::new(old).needs_health_check(), ServiceView::new(new).needs_health_check());
        if !needed && needs {
            self.alloc_health_check(new, &mut c).await?;
        } else if needed && !needs {
            c.release_port(ServiceView::new(old).health_check_node_port).await?;
        }
        c.finish(txn)
    }

    async fn delete(&self, _r: &'static Resource, old: &Value, txn: &mut TxnAppend) -> Result<(), StatusError> {
        let mut c = Claims::new(self, owner_of(old), false);
        let v = ServiceView::new(old);
        for ip in v.allocated_ips() {
            c.release_ip(ip).await?;
        }
        for p in v.held_node_ports() {
            c.release_port(p).await?;
        }
        if v.needs_health_check() {
            c.release_port(v.health_check_node_port).await?;
        }
        c.finish(txn)
    }
}
