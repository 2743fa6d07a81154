//! What Kubernetes fills in and wipes on a Service: the v1 scheme defaults
//! (every decode) and the type-dependent fields an update leaves behind.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::view::ServiceView;
use super::{TYPE_CLUSTER_IP, TYPE_EXTERNAL_NAME, TYPE_LOAD_BALANCER, TYPE_NODE_PORT};

const DEFAULT_AFFINITY_SECONDS: i64 = 10800;

fn spec(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    obj.get_mut("spec").and_then(Value::as_object_mut)
}

fn is_unset(v: Option<&Value>) -> bool {
    v.is_none_or(|v| v.is_null() || v.as_str() == Some(""))
}

/// `SetDefaults_Service`, in its order.
pub fn scheme_defaults(obj: &mut Value) {
    if obj.get("spec").is_none_or(|s| !s.is_object()) {
        obj["spec"] = json!({});
    }
    let Some(spec) = spec(obj) else { return };
    if is_unset(spec.get("sessionAffinity")) {
        spec.insert("sessionAffinity".into(), json!("None"));
    }
    match spec.get("sessionAffinity").and_then(Value::as_str) {
        Some("None") => {
            spec.remove("sessionAffinityConfig");
        }
        Some("ClientIP") => {
            let has_timeout = spec
                .get("sessionAffinityConfig")
                .and_then(|c| c.get("clientIP"))
                .and_then(|c| c.get("timeoutSeconds"))
                .is_some_and(|t| !t.is_null());
            if !has_timeout {
                spec.insert(
                    "sessionAffinityConfig".into(),
                    json!({"clientIP": {"timeoutSeconds": DEFAULT_AFFINITY_SECONDS}}),
                );
            }
        }
        _ => {}
    }
    if is_unset(spec.get("type")) {
        spec.insert("type".into(), json!(TYPE_CLUSTER_IP));
    }
    for p in spec.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
        let Some(p) = p.as_object_mut() else { continue };
        if is_unset(p.get("protocol")) {
            p.insert("protocol".into(), json!("TCP"));
        }
        if p.get("targetPort").is_none_or(|t| t.is_null() || t == &json!(0) || t == &json!("")) {
            let port = p.get("port").cloned().unwrap_or(json!(0));
            p.insert("targetPort".into(), port);
        }
    }
    let ty = spec.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
    let has_external_ips = spec.get("externalIPs").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
    let accessible = ty == TYPE_NODE_PORT || ty == TYPE_LOAD_BALANCER || (ty == TYPE_CLUSTER_IP && has_external_ips);
    if accessible && is_unset(spec.get("externalTrafficPolicy")) {
        spec.insert("externalTrafficPolicy".into(), json!("Cluster"));
    }
    if matches!(ty.as_str(), TYPE_CLUSTER_IP | TYPE_NODE_PORT | TYPE_LOAD_BALANCER)
        && spec.get("internalTrafficPolicy").is_none_or(Value::is_null)
    {
        spec.insert("internalTrafficPolicy".into(), json!("Cluster"));
    }
    if ty == TYPE_LOAD_BALANCER {
        if spec.get("allocateLoadBalancerNodePorts").is_none_or(Value::is_null) {
            spec.insert("allocateLoadBalancerNodePorts".into(), json!(true));
        }
        let ingress = obj.pointer_mut("/status/loadBalancer/ingress").and_then(Value::as_array_mut);
        for ing in ingress.into_iter().flatten().filter_map(Value::as_object_mut) {
            let has_ip = ing.get("ip").and_then(Value::as_str).is_some_and(|ip| !ip.is_empty());
            if has_ip && ing.get("ipMode").is_none_or(Value::is_null) {
                ing.insert("ipMode".into(), json!("VIP"));
            }
        }
    }
}

/// Kubernetes hides `internalTrafficPolicy` of ExternalName services on every
/// read; we do not store a valid one instead (an invalid one stays, for
/// validation to refuse).
pub fn hide_external_name_fields(obj: &mut Value) {
    if obj.pointer("/spec/type").and_then(Value::as_str) == Some(TYPE_EXTERNAL_NAME)
        && let Some(spec) = spec(obj)
        && matches!(spec.get("internalTrafficPolicy").and_then(Value::as_str), Some("Cluster" | "Local"))
    {
        spec.remove("internalTrafficPolicy");
    }
}

/// `dropTypeDependentFields`: on a type change, wipes what the old type had
/// (and the server may have allocated) unless the user changed it too, in
/// which case validation has the last word.
pub fn drop_type_dependent_fields(new: &mut Value, old: &Value) {
    let (o, n) = (ServiceView::new(old), ServiceView::new(new));
    let same_ips = o.cluster_ip == n.cluster_ip && o.cluster_ips() == n.cluster_ips();
    let wipe_ips = o.needs_cluster_ip() && !n.needs_cluster_ip();
    let drop_ips = wipe_ips && same_ips;
    let drop_families = wipe_ips && o.ip_families() == n.ip_families();
    let drop_policy = wipe_ips && o.ip_family_policy.unwrap_or_default() == n.ip_family_policy.unwrap_or_default();
    let old_node_ports: HashSet<i64> = o.node_ports().into_iter().collect();
    let drop_node_ports =
        o.needs_node_ports() && !n.needs_node_ports() && n.node_ports().iter().all(|p| old_node_ports.contains(p));
    let drop_hcnp =
        o.needs_health_check() && !n.needs_health_check() && o.health_check_node_port == n.health_check_node_port;
    let drop_allocate = o.ty == TYPE_LOAD_BALANCER
        && n.ty != TYPE_LOAD_BALANCER
        && n.allocate_lb_node_ports.is_some()
        && n.allocate_lb_node_ports == o.allocate_lb_node_ports;
    let drop_class = o.ty == TYPE_LOAD_BALANCER && n.ty != TYPE_LOAD_BALANCER && o.lb_class == n.lb_class;
    let drop_etp = o.externally_accessible()
        && !n.externally_accessible()
        && o.external_traffic_policy == n.external_traffic_policy;
    let not_lb = n.ty != TYPE_LOAD_BALANCER;

    let Some(spec) = spec(new) else { return };
    let dropped = [
        (drop_ips, "clusterIP"),
        (drop_ips, "clusterIPs"),
        (drop_families, "ipFamilies"),
        (drop_policy, "ipFamilyPolicy"),
        (drop_hcnp, "healthCheckNodePort"),
        (drop_allocate, "allocateLoadBalancerNodePorts"),
        (drop_class, "loadBalancerClass"),
        (drop_etp, "externalTrafficPolicy"),
    ];
    for (drop, field) in dropped {
        if drop {
            spec.remove(field);
        }
    }
    if drop_node_ports {
        for p in spec.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
            if let Some(p) = p.as_object_mut() {
                p.remove("nodePort");
            }
        }
    }
    if not_lb {
        crate::meta::object_at(new, &["status"]).insert("loadBalancer".into(), json!({}));
    }
}
