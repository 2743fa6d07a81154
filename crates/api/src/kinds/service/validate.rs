//! Service validation (`ValidateService`, `ValidateServiceUpdate`,
//! `ValidateServiceStatusUpdate`) and warnings, in Kubernetes' order and words.
//! Metadata is checked by the caller, as for every kind.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::view::{ServiceView, TargetPort};
use super::{
    ANNOTATION_LB_SOURCE_RANGES, ANNOTATION_TOPOLOGY_AWARE_HINTS, ANNOTATION_TOPOLOGY_MODE, CLUSTER_IP_NONE,
    TYPE_CLUSTER_IP, TYPE_EXTERNAL_NAME, TYPE_LOAD_BALANCER, TYPE_NODE_PORT,
};
use crate::kinds::pod::is_valid_port_name;
use crate::validation::ip::{cidr_warnings, endpoint_ip, ip_warnings, is_ipv6_string, legacy_cidr, legacy_ip};
use crate::validation::{
    ErrorList, FieldError, is_dns1123_label, is_dns1123_subdomain, is_qualified_name, port_num_error, validate_labels,
};

const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const TYPES: &[&str] = &[TYPE_CLUSTER_IP, TYPE_EXTERNAL_NAME, TYPE_LOAD_BALANCER, TYPE_NODE_PORT];
const AFFINITIES: &[&str] = &["ClientIP", "None"];
const FAMILIES: &[&str] = &["IPv4", "IPv6"];
const FAMILY_POLICIES: &[&str] = &["PreferDualStack", "RequireDualStack", "SingleStack"];
const TRAFFIC_POLICIES: &[&str] = &["Cluster", "Local"];
const TRAFFIC_DISTRIBUTIONS: &[&str] = &["PreferClose", "PreferSameZone", "PreferSameNode"];
const MAX_AFFINITY_SECONDS: i64 = 86400;
const ONLY_LB: &str = "may only be used when `type` is 'LoadBalancer'";

/// A port given as a number or an IANA service name (targetPort, probes).
pub fn validate_port_num_or_name(port: TargetPort, path: &str, errs: &mut ErrorList) {
    match port {
        TargetPort::Int(n) => {
            if let Some(m) = port_num_error(n) {
                errs.push(FieldError::invalid(path, n, m));
            }
        }
        TargetPort::Str(name) => {
            errs.invalid_each(path, name, is_valid_port_name(name));
        }
    }
}

/// `ValidateServiceCreate` without the metadata, or the shared part of an update (`old` set).
pub fn validate_service(obj: &Value, old: Option<&Value>) -> ErrorList {
    let svc = ServiceView::new(obj);
    let old_view = old.map(ServiceView::new);
    let mut errs = ErrorList::new();

    if let (Some(mode), Some(hints)) =
        (svc.annotation(ANNOTATION_TOPOLOGY_MODE), svc.annotation(ANNOTATION_TOPOLOGY_AWARE_HINTS))
        && mode != hints
    {
        errs.push(FieldError::invalid(
            format!("metadata.annotations[{ANNOTATION_TOPOLOGY_MODE}]"),
            mode,
            format!("must match annotations[{ANNOTATION_TOPOLOGY_AWARE_HINTS}] when both are specified"),
        ));
    }

    let headless = svc.is_headless();
    if svc.ports.is_empty() && !headless && svc.ty != TYPE_EXTERNAL_NAME {
        errs.push(FieldError::required("spec.ports", ""));
    }
    match svc.ty {
        TYPE_LOAD_BALANCER | TYPE_NODE_PORT if headless => {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                CLUSTER_IP_NONE,
                format!("may not be set to 'None' for {} services", svc.ty),
            ));
        }
        TYPE_EXTERNAL_NAME => {
            if !svc.cluster_ips().is_empty() {
                errs.push(FieldError::forbidden("spec.clusterIPs", "may not be set for ExternalName services"));
            }
            if !svc.ip_families().is_empty() {
                errs.push(FieldError::forbidden("spec.ipFamilies", "may not be set for ExternalName services"));
            }
            if svc.ip_family_policy.is_some() {
                errs.push(FieldError::forbidden("spec.ipFamilyPolicy", "may not be set for ExternalName services"));
            }
            // A trailing dot marks the name as fully qualified.
            let cname = svc.external_name.strip_suffix('.').unwrap_or(svc.external_name);
            if cname.is_empty() {
                errs.push(FieldError::required("spec.externalName", ""));
            } else {
                errs.invalid_each("spec.externalName", cname, is_dns1123_subdomain(cname));
            }
        }
        _ => {}
    }

    let require_name = svc.ports.len() > 1;
    let mut names = HashSet::new();
    for (i, p) in svc.ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        if require_name && p.name.is_empty() {
            errs.push(FieldError::required(format!("{path}.name"), ""));
        } else if !p.name.is_empty() {
            errs.invalid_each(&format!("{path}.name"), p.name, is_dns1123_label(p.name));
            if !names.insert(p.name) {
                errs.push(FieldError::duplicate(format!("{path}.name"), p.name));
            }
        }
        if let Some(m) = port_num_error(p.port) {
            errs.push(FieldError::invalid(format!("{path}.port"), p.port, m));
        }
        if p.protocol.is_empty() {
            errs.push(FieldError::required(format!("{path}.protocol"), ""));
        } else if !PROTOCOLS.contains(&p.protocol) {
            errs.push(FieldError::not_supported(format!("{path}.protocol"), p.protocol, PROTOCOLS));
        }
        validate_port_num_or_name(p.target_port, &format!("{path}.targetPort"), &mut errs);
        if let Some(app) = p.app_protocol {
            errs.invalid_each(&format!("{path}.appProtocol"), app, is_qualified_name(app));
        }
    }

    if svc.selector.is_some() {
        errs.extend(validate_labels(svc.selector, "spec.selector"));
    }

    if svc.session_affinity.is_empty() {
        errs.push(FieldError::required("spec.sessionAffinity", ""));
    } else if !AFFINITIES.contains(&svc.session_affinity) {
        errs.push(FieldError::not_supported("spec.sessionAffinity", svc.session_affinity, AFFINITIES));
    }
    match svc.session_affinity {
        "ClientIP" => validate_client_ip_affinity(svc.session_affinity_config, &mut errs),
        "None" if svc.session_affinity_config.is_some() => {
            errs.push(FieldError::forbidden(
                "spec.sessionAffinityConfig",
                "must not be set when session affinity is None",
            ));
        }
        _ => {}
    }

    errs.extend(cluster_ips_related(&svc, old_view.as_ref()));

    let old_external: Vec<&str> = old_view.as_ref().map(|o| o.external_ips.clone()).unwrap_or_default();
    for (i, ip) in svc.external_ips.iter().enumerate() {
        let path = format!("spec.externalIPs[{i}]");
        let e = legacy_ip(&path, ip, &old_external);
        if e.is_empty() {
            errs.extend(endpoint_ip(&path, ip));
        } else {
            errs.extend(e);
        }
    }

    if svc.ty.is_empty() {
        errs.push(FieldError::required("spec.type", ""));
    } else if !TYPES.contains(&svc.ty) {
        errs.push(FieldError::not_supported("spec.type", svc.ty, TYPES));
    }

    if svc.ty == TYPE_CLUSTER_IP {
        for (i, p) in svc.ports.iter().enumerate() {
            if p.node_port != 0 {
                errs.push(FieldError::forbidden(
                    format!("spec.ports[{i}].nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }

    let mut node_ports = HashSet::new();
    for (i, p) in svc.ports.iter().enumerate() {
        if p.node_port != 0 && !node_ports.insert((p.protocol, p.node_port)) {
            errs.push(FieldError::duplicate(format!("spec.ports[{i}].nodePort"), p.node_port));
        }
    }
    let mut ports = HashSet::new();
    for (i, p) in svc.ports.iter().enumerate() {
        if !ports.insert((p.protocol, p.port)) {
            // Kubernetes shows the internal ServicePort key it compared.
            let key = json!({"Name": "", "Protocol": p.protocol, "AppProtocol": null, "Port": p.port,
                "TargetPort": 0, "NodePort": 0});
            errs.push(FieldError::duplicate(format!("spec.ports[{i}]"), key));
        }
    }

    validate_source_ranges(&svc, old_view.as_ref(), &mut errs);

    if svc.allocate_lb_node_ports.is_some() && svc.ty != TYPE_LOAD_BALANCER {
        errs.push(FieldError::forbidden("spec.allocateLoadBalancerNodePorts", ONLY_LB));
    }
    if svc.ty == TYPE_LOAD_BALANCER && svc.allocate_lb_node_ports.is_none() {
        // Kubernetes' path really lacks `spec.` here.
        errs.push(FieldError::required("allocateLoadBalancerNodePorts", ""));
    }

    errs.extend(validate_lb_class(&svc, None));
    errs.extend(external_traffic_policy(&svc));

    match svc.internal_traffic_policy {
        None if matches!(svc.ty, TYPE_CLUSTER_IP | TYPE_NODE_PORT | TYPE_LOAD_BALANCER) => {
            errs.push(FieldError::required("spec.internalTrafficPolicy", ""));
        }
        Some(p) if !TRAFFIC_POLICIES.contains(&p) => {
            errs.push(FieldError::not_supported("spec.internalTrafficPolicy", p, TRAFFIC_POLICIES));
        }
        _ => {}
    }
    if let Some(d) = svc.traffic_distribution
        && !TRAFFIC_DISTRIBUTIONS.contains(&d)
    {
        errs.push(FieldError::not_supported("spec.trafficDistribution", d, TRAFFIC_DISTRIBUTIONS));
    }
    errs
}

fn validate_client_ip_affinity(config: Option<&Value>, errs: &mut ErrorList) {
    const WHY: &str = "when session affinity type is ClientIP";
    let Some(config) = config else {
        errs.push(FieldError::required("spec.sessionAffinityConfig", WHY));
        return;
    };
    let Some(client_ip) = config.get("clientIP").filter(|v| !v.is_null()) else {
        errs.push(FieldError::required("spec.sessionAffinityConfig.clientIP", WHY));
        return;
    };
    let path = "spec.sessionAffinityConfig.clientIP.timeoutSeconds";
    match client_ip.get("timeoutSeconds").and_then(Value::as_i64) {
        None => errs.push(FieldError::required(path, WHY)),
        Some(t) if t <= 0 || t > MAX_AFFINITY_SECONDS => {
            errs.push(FieldError::invalid(
                path,
                t,
                format!("must be greater than 0 and less than {MAX_AFFINITY_SECONDS}"),
            ));
        }
        Some(_) => {}
    }
}

fn validate_source_ranges(svc: &ServiceView, old: Option<&ServiceView>, errs: &mut ErrorList) {
    if !svc.lb_source_ranges.is_empty() {
        // The capital L is Kubernetes' own.
        let path = "spec.LoadBalancerSourceRanges";
        if svc.ty != TYPE_LOAD_BALANCER {
            errs.push(FieldError::forbidden(path, ONLY_LB));
        }
        let old_ranges: Vec<&str> =
            old.map(|o| o.lb_source_ranges.iter().map(|r| r.trim()).collect()).unwrap_or_default();
        for (i, r) in svc.lb_source_ranges.iter().enumerate() {
            errs.extend(legacy_cidr(&format!("{path}[{i}]"), r.trim(), &old_ranges));
        }
    } else if let Some(val) = svc.annotation(ANNOTATION_LB_SOURCE_RANGES) {
        let path = format!("metadata.annotations[{ANNOTATION_LB_SOURCE_RANGES}]");
        if svc.ty != TYPE_LOAD_BALANCER {
            errs.push(FieldError::forbidden(&path, ONLY_LB));
        }
        if old.is_none_or(|o| o.annotation(ANNOTATION_LB_SOURCE_RANGES) != Some(val)) {
            let val = val.trim();
            if !val.is_empty() {
                for cidr in val.split(',') {
                    errs.extend(legacy_cidr(&path, cidr.trim(), &[]));
                }
            }
        }
    }
}

/// `validateLoadBalancerClassField`: immutable between LoadBalancer versions, a qualified name, LoadBalancer only.
fn validate_lb_class(svc: &ServiceView, old: Option<&ServiceView>) -> ErrorList {
    let mut errs = ErrorList::new();
    if let Some(old) = old
        && old.ty == TYPE_LOAD_BALANCER
        && svc.ty == TYPE_LOAD_BALANCER
        && old.lb_class != svc.lb_class
    {
        let value = svc.lb_class.map_or(Value::Null, Value::from);
        errs.push(FieldError::invalid("spec.loadBalancerClass", value, "may not change once set"));
    }
    if let Some(class) = svc.lb_class {
        if svc.ty == TYPE_LOAD_BALANCER {
            errs.invalid_each("spec.loadBalancerClass", class, is_qualified_name(class));
        } else {
            errs.push(FieldError::forbidden("spec.loadBalancerClass", ONLY_LB));
        }
    }
    errs
}

fn external_traffic_policy(svc: &ServiceView) -> ErrorList {
    let mut errs = ErrorList::new();
    let etp = svc.external_traffic_policy;
    if !svc.externally_accessible() {
        if !etp.is_empty() {
            errs.push(FieldError::invalid(
                "spec.externalTrafficPolicy",
                etp,
                "may only be set for externally-accessible services",
            ));
        }
    } else if etp.is_empty() {
        errs.push(FieldError::required("spec.externalTrafficPolicy", ""));
    } else if !TRAFFIC_POLICIES.contains(&etp) {
        errs.push(FieldError::not_supported("spec.externalTrafficPolicy", etp, TRAFFIC_POLICIES));
    }
    let hcnp = svc.health_check_node_port;
    if !svc.needs_health_check() {
        if hcnp != 0 {
            errs.push(FieldError::invalid(
                "spec.healthCheckNodePort",
                hcnp,
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ));
        }
    } else if hcnp == 0 {
        errs.push(FieldError::required("spec.healthCheckNodePort", ""));
    } else if let Some(m) = port_num_error(hcnp) {
        errs.push(FieldError::invalid("spec.healthCheckNodePort", hcnp, m));
    }
    errs
}

/// `validateServiceExternalTrafficPolicy` on its own (externalTrafficPolicy and healthCheckNodePort).
pub fn validate_external_traffic_policy(obj: &Value) -> ErrorList {
    external_traffic_policy(&ServiceView::new(obj))
}

/// `ValidateServiceClusterIPsRelatedFields`, which the allocator also runs before it allocates.
pub fn validate_cluster_ips_related_fields(obj: &Value, old: Option<&Value>) -> ErrorList {
    cluster_ips_related(&ServiceView::new(obj), old.map(ServiceView::new).as_ref())
}

fn cluster_ips_related(svc: &ServiceView, old: Option<&ServiceView>) -> ErrorList {
    let mut errs = ErrorList::new();
    if svc.ty == TYPE_EXTERNAL_NAME {
        return errs;
    }
    let ips = svc.cluster_ips();
    let ips_json = svc.cluster_ips_json();
    if !svc.cluster_ip.is_empty() {
        if ips.is_empty() {
            errs.push(FieldError::required("spec.clusterIPs", ""));
        } else if ips[0] != svc.cluster_ip {
            errs.push(FieldError::invalid("spec.clusterIPs", ips_json.clone(), "first value must match `clusterIP`"));
        }
    } else if !ips.is_empty() {
        errs.push(FieldError::invalid(
            "spec.clusterIPs",
            ips_json.clone(),
            "must be empty when `clusterIP` is not specified",
        ));
    }

    let mut seen = HashSet::new();
    for (i, f) in svc.ip_families().iter().enumerate() {
        if !FAMILIES.contains(f) {
            errs.push(FieldError::not_supported(format!("spec.ipFamilies[{i}]"), *f, FAMILIES));
        }
        if !seen.insert(*f) {
            errs.push(FieldError::duplicate(format!("spec.ipFamilies[{i}]"), *f));
        }
    }
    if let Some(p) = svc.ip_family_policy
        && !FAMILY_POLICIES.contains(&p)
    {
        errs.push(FieldError::not_supported("spec.ipFamilyPolicy", p, FAMILY_POLICIES));
    }

    let old_ips: Vec<&str> = old.map(|o| o.cluster_ips().to_vec()).unwrap_or_default();
    let mut invalid_ips = false;
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && *ip == CLUSTER_IP_NONE {
            if ips.len() > 1 {
                invalid_ips = true;
                errs.push(FieldError::invalid(
                    "spec.clusterIPs",
                    ips_json.clone(),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        let e = legacy_ip(&format!("spec.clusterIPs[{i}]"), ip, &old_ips);
        if !e.is_empty() {
            invalid_ips = true;
            errs.extend(e);
        }
    }
    if ips.len() > 2 {
        errs.push(FieldError::invalid("spec.clusterIPs", ips_json.clone(), "may only hold up to 2 values"));
    }
    // Family checks on bad addresses would only add noise.
    if invalid_ips {
        return errs;
    }
    if ips.len() > 1 {
        let v6 = ips.iter().filter(|ip| is_ipv6_string(ip)).count();
        if v6 == 0 || v6 == ips.len() {
            errs.push(FieldError::invalid(
                "spec.clusterIPs",
                ips_json,
                "may specify no more than one IP for each IP family",
            ));
        }
    }
    let families = svc.ip_families();
    if !svc.is_headless() && !ips.is_empty() && !families.is_empty() {
        for (i, (ip, family)) in ips.iter().zip(families).enumerate() {
            let v6 = is_ipv6_string(ip);
            let expected = match *family {
                "IPv4" if v6 => "IPv4",
                "IPv6" if !v6 => "IPv6",
                _ => continue,
            };
            errs.push(FieldError::invalid(
                format!("spec.clusterIPs[{i}]"),
                *ip,
                format!("expected an {expected} value as indicated by `ipFamilies[{i}]`"),
            ));
        }
    }
    errs
}

/// `ValidateServiceUpdate` without the metadata.
pub fn validate_service_update(new: &Value, old: &Value) -> ErrorList {
    let svc = ServiceView::new(new);
    let prev = ServiceView::new(old);
    let mut errs = ErrorList::new();
    upgrade_downgrade_cluster_ips(&prev, &svc, &mut errs);
    upgrade_downgrade_families(&prev, &svc, &mut errs);
    errs.extend(validate_lb_class(&svc, Some(&prev)));
    if prev.needs_health_check()
        && svc.needs_health_check()
        && prev.health_check_node_port != svc.health_check_node_port
    {
        errs.push(FieldError::forbidden("spec.healthCheckNodePort", "field is immutable"));
    }
    errs.extend(validate_service(new, Some(old)));
    errs
}

fn policy_json(svc: &ServiceView) -> Value {
    svc.ip_family_policy.map_or(Value::Null, Value::from)
}

fn upgrade_downgrade_cluster_ips(old: &ServiceView, svc: &ServiceView, errs: &mut ErrorList) {
    if svc.ty == TYPE_EXTERNAL_NAME || old.ty == TYPE_EXTERNAL_NAME || (old.is_headless() && svc.is_headless()) {
        return;
    }
    let (o, n) = (old.cluster_ips(), svc.cluster_ips());
    let changed = "may not change once set";
    if o.len() == n.len() {
        for (i, ip) in o.iter().enumerate() {
            if *ip != n[i] {
                errs.push(FieldError::invalid(format!("spec.clusterIPs[{i}]"), svc.cluster_ips_json(), changed));
            }
        }
    } else if o.len() > n.len() {
        if n.is_empty() {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                svc.cluster_ips_json(),
                "primary clusterIP can not be unset",
            ));
        }
        if !o.is_empty() && !n.is_empty() && n[0] != o[0] {
            errs.push(FieldError::invalid("spec.clusterIPs[0]", svc.cluster_ips_json(), changed));
        }
        if n.len() == 1 && svc.ip_family_policy != Some("SingleStack") {
            errs.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                policy_json(svc),
                "must be set to 'SingleStack' when releasing the secondary clusterIP",
            ));
        }
    } else if !o.is_empty() && n[0] != o[0] {
        errs.push(FieldError::invalid("spec.clusterIPs[0]", svc.cluster_ips_json(), changed));
    }
}

fn upgrade_downgrade_families(old: &ServiceView, svc: &ServiceView, errs: &mut ErrorList) {
    if svc.ty == TYPE_EXTERNAL_NAME || old.ty == TYPE_EXTERNAL_NAME || old.is_headless() || svc.is_headless() {
        return;
    }
    let (o, n) = (old.ip_families(), svc.ip_families());
    let changed = "may not change once set";
    if o.len() == n.len() {
        for (i, f) in o.iter().enumerate() {
            if *f != n[i] {
                errs.push(FieldError::invalid("spec.ipFamilies[0]", svc.ip_families_json(), changed));
            }
        }
    } else if o.len() > n.len() {
        // Kubernetes tests clusterIPs here, and shows clusterIPs below; kept as it is.
        if svc.cluster_ips().is_empty() {
            errs.push(FieldError::invalid(
                "spec.ipFamilies[0]",
                svc.ip_families_json(),
                "primary ipFamily can not be unset",
            ));
        }
        if !n.is_empty() && n[0] != o[0] {
            errs.push(FieldError::invalid("spec.ipFamilies[0]", svc.cluster_ips_json(), changed));
        }
        if n.len() == 1 && svc.ip_family_policy != Some("SingleStack") {
            errs.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                policy_json(svc),
                "must be set to 'SingleStack' when releasing the secondary ipFamily",
            ));
        }
    } else if !o.is_empty() && !n.is_empty() && n[0] != o[0] {
        errs.push(FieldError::invalid("spec.ipFamilies[0]", svc.cluster_ips_json(), changed));
    }
}

/// `ValidateServiceStatusUpdate` without the metadata: the load balancer ingress points.
pub fn validate_status_update(new: &Value, old: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    let ingress = |v: &Value| -> Vec<Value> {
        v.pointer("/status/loadBalancer/ingress").and_then(Value::as_array).cloned().unwrap_or_default()
    };
    let (items, old_items) = (ingress(new), ingress(old));
    let ty = new.pointer("/spec/type").and_then(Value::as_str).unwrap_or_default();
    if !items.is_empty() && ty != TYPE_LOAD_BALANCER {
        errs.push(FieldError::forbidden(
            "status.loadBalancer.ingress",
            "may only be used when `spec.type` is 'LoadBalancer'",
        ));
    }
    let old_ips: Vec<&str> = old_items.iter().filter_map(|i| i.get("ip").and_then(Value::as_str)).collect();
    for (i, ing) in items.iter().enumerate() {
        let path = format!("status.loadBalancer.ingress[{i}]");
        let ip = ing.get("ip").and_then(Value::as_str).unwrap_or_default();
        let mode = ing.get("ipMode").and_then(Value::as_str);
        if !ip.is_empty() {
            errs.extend(legacy_ip(&format!("{path}.ip"), ip, &old_ips));
        }
        match (ip.is_empty(), mode) {
            (false, None) => {
                errs.push(FieldError::required(format!("{path}.ipMode"), "must be specified when `ip` is set"))
            }
            (true, Some(_)) => {
                errs.push(FieldError::forbidden(format!("{path}.ipMode"), "may not be specified when `ip` is not set"))
            }
            (false, Some(m)) if !["Proxy", "VIP"].contains(&m) => {
                errs.push(FieldError::not_supported(format!("{path}.ipMode"), m, &["Proxy", "VIP"]));
            }
            _ => {}
        }
        let host = ing.get("hostname").and_then(Value::as_str).unwrap_or_default();
        if !host.is_empty() {
            errs.invalid_each(&format!("{path}.hostname"), host, is_dns1123_subdomain(host));
            if crate::validation::ip::parse_ip_sloppy(host).is_some() {
                errs.push(FieldError::invalid(
                    format!("{path}.hostname"),
                    host,
                    "must be a DNS name, not an IP address",
                ));
            }
        }
    }
    errs
}

/// `GetWarningsForService`.
pub fn warnings(obj: &Value) -> Vec<String> {
    let svc = ServiceView::new(obj);
    let mut w = Vec::new();
    if svc.annotation(ANNOTATION_TOPOLOGY_AWARE_HINTS).is_some() {
        w.push(format!(
            "annotation {ANNOTATION_TOPOLOGY_AWARE_HINTS} is deprecated, please use {ANNOTATION_TOPOLOGY_MODE} instead"
        ));
    }
    if svc.needs_cluster_ip() && !svc.cluster_ip.is_empty() && svc.cluster_ip != CLUSTER_IP_NONE {
        for (i, ip) in svc.cluster_ips().iter().enumerate() {
            w.extend(ip_warnings(&format!("spec.clusterIPs[{i}]"), ip));
        }
    }
    let headless = svc.ty == TYPE_CLUSTER_IP && svc.cluster_ip == CLUSTER_IP_NONE;
    if headless {
        if !svc.load_balancer_ip.is_empty() {
            w.push("spec.loadBalancerIP is ignored for headless services".into());
        }
        if !svc.external_ips.is_empty() {
            w.push("spec.externalIPs is ignored for headless services".into());
        }
        if svc.session_affinity != "None" {
            w.push("spec.SessionAffinity is ignored for headless services".into());
        }
    }
    for (i, ip) in svc.external_ips.iter().enumerate() {
        w.extend(ip_warnings(&format!("spec.externalIPs[{i}]"), ip));
    }
    if !svc.external_ips.is_empty() && !headless && svc.ty != TYPE_EXTERNAL_NAME {
        w.push("spec.externalIPs is deprecated and may no longer be implemented in some clusters".into());
    }
    if !svc.load_balancer_ip.is_empty() {
        w.extend(ip_warnings("spec.loadBalancerIP", svc.load_balancer_ip));
    }
    for (i, cidr) in svc.lb_source_ranges.iter().enumerate() {
        w.extend(cidr_warnings(&format!("spec.loadBalancerSourceRanges[{i}]"), cidr));
    }
    if svc.ty == TYPE_EXTERNAL_NAME && !svc.external_ips.is_empty() {
        w.push("spec.externalIPs is ignored when spec.type is \"ExternalName\"".into());
    }
    if svc.ty != TYPE_EXTERNAL_NAME && !svc.external_name.is_empty() {
        w.push("spec.externalName is ignored when spec.type is not \"ExternalName\"".into());
    }
    if svc.traffic_distribution == Some("PreferClose") {
        w.push("spec.trafficDistribution: \"PreferClose\" is deprecated; use \"PreferSameZone\"".into());
    }
    w
}
