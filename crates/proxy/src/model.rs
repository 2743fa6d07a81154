//! What the proxy knows about a Service port and its endpoints, taken from
//! Service and EndpointSlice objects the way kube-proxy reads them.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kubesvc_api::net::Family;
use kubesvc_runtime::pod::parse_ip_lenient;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn parse(s: Option<&str>) -> Option<Protocol> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// nft's name (also `meta l4proto`'s).
    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// A Service's namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceName {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One port of a Service: kube-proxy's `ServicePortName` (`ns/name:port` and the protocol).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServicePortName {
    pub service: ServiceName,
    pub port: String,
    pub protocol: Protocol,
}

impl fmt::Display for ServicePortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.service, self.port)
    }
}

/// Load-balancer ingress, with `ipMode` (a `Proxy` address is the balancer's own, not programmed here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ingress {
    pub ip: IpAddr,
    pub proxy_mode: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrafficDistribution {
    /// `PreferClose` and `PreferSameZone`.
    PreferSameZone,
    PreferSameNode,
}

/// What the proxy programs for one Service port in one IP family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    pub name: ServicePortName,
    pub family: Family,
    pub cluster_ip: Option<IpAddr>,
    pub port: u16,
    pub node_port: Option<u16>,
    pub external_ips: Vec<IpAddr>,
    pub load_balancer: Vec<Ingress>,
    pub load_balancer_source_ranges: Vec<String>,
    /// ClientIP affinity's timeout.
    pub affinity_seconds: Option<u32>,
    /// externalTrafficPolicy Local (only meaningful when externally accessible).
    pub external_local: bool,
    pub internal_local: bool,
    pub health_check_node_port: Option<u16>,
    pub traffic_distribution: Option<TrafficDistribution>,
    /// NodePort or LoadBalancer.
    pub node_port_type: bool,
}

impl ServicePort {
    /// Reachable from outside the cluster: node ports, external IPs or load-balancer addresses.
    pub fn externally_accessible(&self) -> bool {
        self.node_port_type || !self.external_ips.is_empty() || !self.load_balancer.is_empty()
    }

    pub fn external_policy_local(&self) -> bool {
        self.externally_accessible() && self.external_local
    }

    /// Some traffic goes to endpoints anywhere in the cluster. External traffic always may:
    /// a pod reaching an external address of a `Local` Service is short-circuited to them.
    pub fn uses_cluster_endpoints(&self) -> bool {
        !self.internal_local || self.externally_accessible()
    }

    /// Some traffic goes to this node's endpoints only.
    pub fn uses_local_endpoints(&self) -> bool {
        self.internal_local || self.external_policy_local()
    }

    /// The load-balancer addresses programmed here (not those in `Proxy` mode).
    pub fn load_balancer_vips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.load_balancer.iter().filter(|i| !i.proxy_mode).map(|i| i.ip)
    }
}

/// One endpoint of one Service port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// On this proxy's node.
    pub local: bool,
    /// The node it is on, if the slice says.
    pub node: Option<String>,
    pub zone_hints: BTreeSet<String>,
    pub node_hints: BTreeSet<String>,
}

impl Endpoint {
    /// `ip:port`, as kube-proxy keys endpoints.
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::new(self.ip, self.port)
    }
}

/// Why a Service gives no ports: for the log.
pub fn skip_reason(svc: &Service) -> Option<&'static str> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return Some("type ExternalName");
    }
    if kubesvc_runtime::pod::is_headless(svc) {
        return Some("headless");
    }
    None
}

/// The ports of `svc` for `family`, as kube-proxy's `newBaseServiceInfo` reads them.
/// Fields that fail to parse are skipped (and logged), never the whole Service.
pub fn service_ports(svc: &Service, family: Family) -> Vec<Arc<ServicePort>> {
    let Some(spec) = svc.spec.as_ref() else { return Vec::new() };
    if skip_reason(svc).is_some() {
        return Vec::new();
    }
    let name = ServiceName {
        namespace: svc.metadata.namespace.clone().unwrap_or_default(),
        name: svc.metadata.name.clone().unwrap_or_default(),
    };
    let of_family = |s: &String| parse_ip_lenient(s).filter(|ip| Family::of(ip) == family);
    let cluster_ip = match &spec.cluster_ips {
        Some(ips) if !ips.is_empty() => ips.iter().find_map(of_family),
        _ => spec.cluster_ip.as_ref().and_then(of_family),
    };
    let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
    let node_port_type = ty == "NodePort" || ty == "LoadBalancer";
    let external_ips: Vec<IpAddr> = spec.external_ips.iter().flatten().filter_map(of_family).collect();
    let load_balancer: Vec<Ingress> = if ty == "LoadBalancer" {
        let ingress = svc.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|l| l.ingress.as_ref());
        ingress
            .into_iter()
            .flatten()
            .filter_map(|i| {
                let ip = i.ip.as_ref().and_then(of_family)?;
                Some(Ingress { ip, proxy_mode: i.ip_mode.as_deref() == Some("Proxy") })
            })
            .collect()
    } else {
        Vec::new()
    };
    let affinity_seconds = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        let timeout =
            spec.session_affinity_config.as_ref().and_then(|c| c.client_ip.as_ref()).and_then(|c| c.timeout_seconds);
        timeout.and_then(|t| u32::try_from(t).ok()).filter(|t| *t > 0).unwrap_or(10800)
    });
    let traffic_distribution = match spec.traffic_distribution.as_deref() {
        Some("PreferClose") | Some("PreferSameZone") => Some(TrafficDistribution::PreferSameZone),
        Some("PreferSameNode") => Some(TrafficDistribution::PreferSameNode),
        _ => None,
    };
    let port16 = |p: i32| u16::try_from(p).ok().filter(|p| *p != 0);
    let mut out = Vec::new();
    for p in spec.ports.iter().flatten() {
        let (Some(protocol), Some(port)) = (Protocol::parse(p.protocol.as_deref()), port16(p.port)) else {
            tracing::warn!(service = %name, port = p.port, "skipping a service port with an unusable protocol or number");
            continue;
        };
        out.push(Arc::new(ServicePort {
            name: ServicePortName { service: name.clone(), port: p.name.clone().unwrap_or_default(), protocol },
            family,
            cluster_ip,
            port,
            node_port: p.node_port.and_then(port16).filter(|_| node_port_type),
            external_ips: external_ips.clone(),
            load_balancer: load_balancer.clone(),
            load_balancer_source_ranges: spec.load_balancer_source_ranges.clone().unwrap_or_default(),
            affinity_seconds,
            external_local: spec.external_traffic_policy.as_deref() == Some("Local"),
            internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
            health_check_node_port: spec.health_check_node_port.and_then(port16),
            traffic_distribution,
            node_port_type,
        }));
    }
    out
}

/// The Service an EndpointSlice belongs to (its `kubernetes.io/service-name` label).
pub fn slice_service(slice: &EndpointSlice) -> Option<ServiceName> {
    let name = slice.metadata.labels.as_ref()?.get("kubernetes.io/service-name")?;
    Some(ServiceName { namespace: slice.metadata.namespace.clone().unwrap_or_default(), name: name.clone() })
}

/// The endpoints a slice gives each of its ports, as kube-proxy's endpoint slice cache reads them
/// (the first address of each endpoint; ready and serving unless said otherwise).
pub fn slice_endpoints(slice: &EndpointSlice, node: &str) -> Vec<(String, Protocol, Vec<Endpoint>)> {
    let family = match slice.address_type.as_str() {
        "IPv4" => Family::IPv4,
        "IPv6" => Family::IPv6,
        _ => return Vec::new(),
    };
    let mut out = Vec::new();
    for p in slice.ports.iter().flatten() {
        let (Some(protocol), Some(port)) =
            (Protocol::parse(p.protocol.as_deref()), p.port.and_then(|n| u16::try_from(n).ok()).filter(|n| *n != 0))
        else {
            continue;
        };
        let mut eps = Vec::new();
        for e in slice.endpoints.iter().flatten() {
            let Some(ip) = e.addresses.first().and_then(|a| parse_ip_lenient(a)).filter(|ip| Family::of(ip) == family)
            else {
                continue;
            };
            let c = e.conditions.as_ref();
            let ready = c.and_then(|c| c.ready).unwrap_or(true);
            let hints = e.hints.as_ref();
            eps.push(Endpoint {
                ip,
                port,
                ready,
                serving: c.and_then(|c| c.serving).unwrap_or(true),
                terminating: c.and_then(|c| c.terminating).unwrap_or(false),
                local: e.node_name.as_deref() == Some(node),
                node: e.node_name.clone(),
                zone_hints: hints
                    .and_then(|h| h.for_zones.as_ref())
                    .into_iter()
                    .flatten()
                    .map(|z| z.name.clone())
                    .collect(),
                node_hints: hints
                    .and_then(|h| h.for_nodes.as_ref())
                    .into_iter()
                    .flatten()
                    .map(|z| z.name.clone())
                    .collect(),
            });
        }
        out.push((p.name.clone().unwrap_or_default(), protocol, eps));
    }
    out
}
