//! A read-only view of a v1 Service's JSON with Go's zero values for what is
//! missing, so that the rules read as Kubernetes states them.

use serde_json::{Map, Value};

use super::{CLUSTER_IP_NONE, TYPE_CLUSTER_IP, TYPE_EXTERNAL_NAME, TYPE_LOAD_BALANCER, TYPE_NODE_PORT};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetPort<'a> {
    Int(i64),
    Str(&'a str),
}

#[derive(Clone, Debug)]
pub struct PortView<'a> {
    pub name: &'a str,
    pub protocol: &'a str,
    pub port: i64,
    pub target_port: TargetPort<'a>,
    pub node_port: i64,
    pub app_protocol: Option<&'a str>,
}

#[derive(Clone, Debug)]
pub struct ServiceView<'a> {
    pub annotations: Option<&'a Map<String, Value>>,
    pub ty: &'a str,
    pub cluster_ip: &'a str,
    /// `None` when the list is absent (Go's nil), as opposed to empty.
    pub cluster_ips: Option<Vec<&'a str>>,
    pub ip_families: Option<Vec<&'a str>>,
    pub ip_family_policy: Option<&'a str>,
    pub selector: Option<&'a Map<String, Value>>,
    pub ports: Vec<PortView<'a>>,
    pub external_ips: Vec<&'a str>,
    pub external_name: &'a str,
    pub session_affinity: &'a str,
    pub session_affinity_config: Option<&'a Value>,
    pub load_balancer_ip: &'a str,
    pub lb_source_ranges: Vec<&'a str>,
    pub allocate_lb_node_ports: Option<bool>,
    pub lb_class: Option<&'a str>,
    pub external_traffic_policy: &'a str,
    pub internal_traffic_policy: Option<&'a str>,
    pub health_check_node_port: i64,
    pub traffic_distribution: Option<&'a str>,
}

fn non_null(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

fn s<'a>(m: &'a Value, k: &str) -> &'a str {
    m.get(k).and_then(Value::as_str).unwrap_or_default()
}

fn opt_s<'a>(m: &'a Value, k: &str) -> Option<&'a str> {
    non_null(m.get(k)).map(|v| v.as_str().unwrap_or_default())
}

fn int(m: &Value, k: &str) -> i64 {
    m.get(k).and_then(Value::as_i64).unwrap_or_default()
}

fn strs<'a>(m: &'a Value, k: &str) -> Option<Vec<&'a str>> {
    non_null(m.get(k)).map(|v| v.as_array().into_iter().flatten().map(|x| x.as_str().unwrap_or_default()).collect())
}

impl<'a> ServiceView<'a> {
    pub fn new(obj: &'a Value) -> Self {
        static NULL: Value = Value::Null;
        let spec = obj.get("spec").unwrap_or(&NULL);
        let ports = spec
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|p| PortView {
                name: s(p, "name"),
                protocol: s(p, "protocol"),
                port: int(p, "port"),
                target_port: match p.get("targetPort") {
                    Some(Value::String(t)) => TargetPort::Str(t),
                    Some(v) => TargetPort::Int(v.as_i64().unwrap_or_default()),
                    None => TargetPort::Int(0),
                },
                node_port: int(p, "nodePort"),
                app_protocol: opt_s(p, "appProtocol"),
            })
            .collect();
        ServiceView {
            annotations: obj.pointer("/metadata/annotations").and_then(Value::as_object),
            ty: s(spec, "type"),
            cluster_ip: s(spec, "clusterIP"),
            cluster_ips: strs(spec, "clusterIPs"),
            ip_families: strs(spec, "ipFamilies"),
            ip_family_policy: opt_s(spec, "ipFamilyPolicy"),
            selector: spec.get("selector").and_then(Value::as_object),
            ports,
            external_ips: strs(spec, "externalIPs").unwrap_or_default(),
            external_name: s(spec, "externalName"),
            session_affinity: s(spec, "sessionAffinity"),
            session_affinity_config: non_null(spec.get("sessionAffinityConfig")),
            load_balancer_ip: s(spec, "loadBalancerIP"),
            lb_source_ranges: strs(spec, "loadBalancerSourceRanges").unwrap_or_default(),
            allocate_lb_node_ports: spec.get("allocateLoadBalancerNodePorts").and_then(Value::as_bool),
            lb_class: opt_s(spec, "loadBalancerClass"),
            external_traffic_policy: s(spec, "externalTrafficPolicy"),
            internal_traffic_policy: opt_s(spec, "internalTrafficPolicy"),
            health_check_node_port: int(spec, "healthCheckNodePort"),
            traffic_distribution: opt_s(spec, "trafficDistribution"),
        }
    }

    pub fn cluster_ips(&self) -> &[&'a str] {
        self.cluster_ips.as_deref().unwrap_or_default()
    }

    pub fn ip_families(&self) -> &[&'a str] {
        self.ip_families.as_deref().unwrap_or_default()
    }

    /// `clusterIPs` as the JSON Kubernetes prints in errors (`null` when absent).
    pub fn cluster_ips_json(&self) -> Value {
        self.cluster_ips.as_ref().map_or(Value::Null, |v| Value::from(v.clone()))
    }

    pub fn ip_families_json(&self) -> Value {
        self.ip_families.as_ref().map_or(Value::Null, |v| Value::from(v.clone()))
    }

    pub fn annotation(&self, key: &str) -> Option<&'a str> {
        self.annotations.and_then(|a| a.get(key)).map(|v| v.as_str().unwrap_or_default())
    }

    /// One cluster IP, and it is `None`.
    pub fn is_headless(&self) -> bool {
        self.cluster_ips() == [CLUSTER_IP_NONE]
    }

    /// Reachable from outside the cluster: NodePort, LoadBalancer, or ClusterIP with externalIPs.
    pub fn externally_accessible(&self) -> bool {
        self.ty == TYPE_LOAD_BALANCER
            || self.ty == TYPE_NODE_PORT
            || (self.ty == TYPE_CLUSTER_IP && !self.external_ips.is_empty())
    }

    pub fn needs_health_check(&self) -> bool {
        self.ty == TYPE_LOAD_BALANCER && self.external_traffic_policy == "Local"
    }

    pub fn needs_cluster_ip(&self) -> bool {
        self.ty != TYPE_EXTERNAL_NAME
    }

    pub fn needs_node_ports(&self) -> bool {
        self.ty == TYPE_NODE_PORT || self.ty == TYPE_LOAD_BALANCER
    }

    /// Whether ports without a nodePort get one allocated.
    pub fn allocates_node_ports(&self) -> bool {
        self.ty == TYPE_NODE_PORT || (self.ty == TYPE_LOAD_BALANCER && self.allocate_lb_node_ports != Some(false))
    }

    /// Every nodePort in use, without zeros.
    pub fn node_ports(&self) -> Vec<i64> {
        self.ports.iter().map(|p| p.node_port).filter(|&n| n != 0).collect()
    }

    /// The node ports the Service holds: those of a NodePort or LoadBalancer
    /// Service (an ExternalName Service may list some, and holds none).
    pub fn held_node_ports(&self) -> Vec<i64> {
        if self.needs_node_ports() { self.node_ports() } else { Vec::new() }
    }

    /// The cluster IPs that are addresses (not `None`).
    pub fn allocated_ips(&self) -> Vec<&'a str> {
        if !self.needs_cluster_ip() {
            return Vec::new();
        }
        self.cluster_ips().iter().copied().filter(|ip| !ip.is_empty() && *ip != CLUSTER_IP_NONE).collect()
    }
}
