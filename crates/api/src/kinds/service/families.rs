//! What Kubernetes' Service REST layer does to the IP fields before it
//! allocates: fill `clusterIPs` from `clusterIP`, keep what an update left
//! out, and settle `ipFamilyPolicy` and `ipFamilies` for this cluster.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::validate::validate_cluster_ips_related_fields;
use super::view::ServiceView;
use super::{CLUSTER_IP_NONE, TYPE_CLUSTER_IP, TYPE_EXTERNAL_NAME, TYPE_LOAD_BALANCER, TYPE_NODE_PORT};
use crate::net::Family;
use crate::validation::ip::is_ipv6_string;
use crate::validation::{ErrorList, FieldError};

/// The service IP families this cluster serves: the primary range's, and the secondary's if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterFamilies {
    pub primary: Family,
    pub secondary: Option<Family>,
}

impl ClusterFamilies {
    pub fn has(&self, f: Family) -> bool {
        self.primary == f || self.secondary == Some(f)
    }

    fn dual(&self) -> bool {
        self.secondary.is_some()
    }
}

fn other(f: Family) -> Family {
    match f {
        Family::IPv4 => Family::IPv6,
        Family::IPv6 => Family::IPv4,
    }
}

fn family_of(ip: &str) -> Family {
    if is_ipv6_string(ip) { Family::IPv6 } else { Family::IPv4 }
}

fn spec(obj: &mut Value) -> &mut Map<String, Value> {
    crate::meta::object_at(obj, &["spec"])
}

/// `normalizeClusterIPs`: reconciles `clusterIP` and `clusterIPs` as old and new clients use them.
pub fn normalize_cluster_ips(new: &mut Value, old: Option<&Value>) {
    let n = ServiceView::new(new);
    let (ip, ips) = (n.cluster_ip.to_string(), n.cluster_ips().iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let Some(old) = old else {
        // An old client sets only the singular field.
        if !ip.is_empty() && ips.is_empty() {
            spec(new).insert("clusterIPs".into(), json!([ip]));
        }
        return;
    };
    let o = ServiceView::new(old);
    let same_plural = o.cluster_ips() == ips.as_slice();
    if o.cluster_ip == ip {
        if ips.is_empty() && !o.cluster_ips().is_empty() {
            let kept = o.cluster_ips_json();
            spec(new).insert("clusterIPs".into(), kept);
        }
        return;
    }
    if !same_plural {
        return;
    }
    if ip.is_empty() {
        spec(new).remove("clusterIPs");
    } else {
        spec(new).insert("clusterIPs".into(), json!([ip]));
    }
}

/// `patchAllocatedValues`: an update that leaves out allocated values (a
/// re-applied manifest) keeps the old ones.
pub fn patch_allocated_values(new: &mut Value, old: &Value) {
    let (n, o) = (ServiceView::new(new), ServiceView::new(old));
    let both_ips = n.needs_cluster_ip() && o.needs_cluster_ip();
    let fill_ip = both_ips && n.cluster_ip.is_empty() && !o.cluster_ip.is_empty();
    let fill_ips = both_ips && n.cluster_ips().is_empty() && !o.cluster_ips().is_empty();
    let mut node_ports: Vec<Option<i64>> = vec![None; n.ports.len()];
    if n.needs_node_ports() && o.needs_node_ports() {
        let new_used: HashSet<i64> = n.node_ports().into_iter().collect();
        let used: HashSet<i64> = o.node_ports().into_iter().filter(|p| new_used.contains(p)).collect();
        for (i, p) in n.ports.iter().enumerate() {
            if p.node_port != 0 {
                continue;
            }
            // The last old port of that name wins, as a Go map fills.
            let old_val = o.ports.iter().rev().find(|q| q.name == p.name).map_or(0, |q| q.node_port);
            if old_val != 0 && !used.contains(&old_val) {
                node_ports[i] = Some(old_val);
            }
        }
    }
    let hcnp = (n.needs_health_check() && o.needs_health_check() && n.health_check_node_port == 0)
        .then_some(o.health_check_node_port)
        .filter(|&p| p != 0);
    let (old_ip, old_ips) = (o.cluster_ip.to_string(), o.cluster_ips_json());

    let spec = spec(new);
    if fill_ip {
        spec.insert("clusterIP".into(), json!(old_ip));
    }
    if fill_ips {
        spec.insert("clusterIPs".into(), old_ips);
    }
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for (p, np) in ports.iter_mut().zip(node_ports) {
            if let (Some(np), Some(p)) = (np, p.as_object_mut()) {
                p.insert("nodePort".into(), json!(np));
            }
        }
    }
    if let Some(h) = hcnp {
        spec.insert("healthCheckNodePort".into(), json!(h));
    }
}

fn invalid(errs: ErrorList) -> Result<(), ErrorList> {
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

/// A PreferDualStack service whose IP fields and type did not change is left
/// as it is, whatever the cluster became since.
pub fn unchanged_prefer_dual_stack(n: &ServiceView, o: Option<&ServiceView>) -> bool {
    let Some(o) = o else { return false };
    let ip_type = |t: &str| matches!(t, TYPE_CLUSTER_IP | TYPE_NODE_PORT | TYPE_LOAD_BALANCER);
    n.ip_family_policy == Some("PreferDualStack")
        && o.ip_family_policy.is_none_or(|p| p == "PreferDualStack")
        && n.ty == o.ty
        && ip_type(n.ty)
        && n.cluster_ip == o.cluster_ip
        && n.cluster_ips() == o.cluster_ips()
        && n.ip_families() == o.ip_families()
}

/// `initIPFamilyFields`: defaults `ipFamilyPolicy` and `ipFamilies` and checks
/// them against the cluster. Errors are the whole answer (a 422 on their own).
pub fn init_ip_family_fields(new: &mut Value, old: Option<&Value>, cluster: ClusterFamilies) -> Result<(), ErrorList> {
    {
        let n = ServiceView::new(new);
        if n.ty == TYPE_EXTERNAL_NAME {
            return Ok(());
        }
        let o = old.map(ServiceView::new);
        if unchanged_prefer_dual_stack(&n, o.as_ref()) {
            return Ok(());
        }
    }

    // The policy, when not given: the old one, else single-stack (dual for headless selectorless services).
    if ServiceView::new(new).ip_family_policy.is_none() {
        let n = ServiceView::new(new);
        let policy = match old.and_then(|o| ServiceView::new(o).ip_family_policy.map(String::from)) {
            Some(p) => p,
            None if n.cluster_ip == CLUSTER_IP_NONE && n.selector.is_none_or(|s| s.is_empty()) => {
                "RequireDualStack".into()
            }
            None => "SingleStack".into(),
        };
        spec(new).insert("ipFamilyPolicy".into(), json!(policy));
    }

    invalid(validate_cluster_ips_related_fields(new, old))?;

    let n = ServiceView::new(new);
    let policy = n.ip_family_policy.unwrap_or_default().to_string();
    let mut ips: Vec<String> = n.cluster_ips().iter().map(|s| s.to_string()).collect();
    let mut families: Vec<String> = n.ip_families().iter().map(|s| s.to_string()).collect();
    let headless_selectorless = n.cluster_ip == CLUSTER_IP_NONE && n.selector.is_none_or(|s| s.is_empty());
    let ips_json = n.cluster_ips_json();
    let policy_json = json!(policy);

    let mut errs = ErrorList::new();
    if let Some(old) = old {
        let o = ServiceView::new(old);
        if policy == "SingleStack" {
            // Single-stack with the lists untouched is how a user drops the secondary family.
            if o.cluster_ips() == n.cluster_ips() && ips.len() > 1 {
                ips.truncate(1);
            }
            if o.ip_families() == n.ip_families() && families.len() > 1 {
                families.truncate(1);
            }
        } else {
            if !ips.is_empty() && ips.len() < o.cluster_ips().len() {
                errs.push(FieldError::invalid(
                    "spec.ipFamilyPolicy",
                    policy_json.clone(),
                    "must be 'SingleStack' to release the secondary cluster IP",
                ));
            }
            if !families.is_empty() && families.len() < o.ip_families().len() {
                errs.push(FieldError::invalid(
                    "spec.ipFamilyPolicy",
                    policy_json.clone(),
                    "must be 'SingleStack' to release the secondary IP family",
                ));
            }
        }
    }

    if policy == "SingleStack" {
        if ips.len() > 1 {
            errs.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                policy_json.clone(),
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified",
            ));
        }
        if families.len() > 1 {
            errs.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                policy_json.clone(),
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified",
            ));
        }
    }
    for (i, ip) in ips.iter().enumerate() {
        if ip == CLUSTER_IP_NONE {
            break;
        }
        if i >= families.len() {
            let fam = family_of(ip);
            if !cluster.has(fam) {
                errs.push(FieldError::invalid(
                    format!("spec.clusterIPs[{i}]"),
                    ips_json.clone(),
                    format!("{} is not configured on this cluster", fam.as_str()),
                ));
                break;
            }
            families.push(fam.as_str().into());
        }
    }
    invalid(errs)?;

    let write = |new: &mut Value, ips: &[String], families: &[String]| {
        let spec = spec(new);
        if !ips.is_empty() {
            spec.insert("clusterIPs".into(), json!(ips));
        }
        spec.insert("ipFamilies".into(), json!(families));
    };

    if headless_selectorless {
        if families.is_empty() {
            families.push(cluster.primary.as_str().into());
        }
        if families.len() < 2 && policy != "SingleStack" {
            let first = Family::parse(&families[0]).unwrap_or(cluster.primary);
            families.push(other(first).as_str().into());
        }
        write(new, &ips, &families);
        return Ok(());
    }

    let mut errs = ErrorList::new();
    if policy == "RequireDualStack" && !cluster.dual() {
        errs.push(FieldError::invalid(
            "spec.ipFamilyPolicy",
            policy_json,
            "this cluster is not configured for dual-stack services",
        ));
    }
    for (i, f) in families.iter().enumerate() {
        if Family::parse(f).is_none_or(|f| !cluster.has(f)) {
            errs.push(FieldError::invalid(
                format!("spec.ipFamilies[{i}]"),
                f.as_str(),
                "not configured on this cluster",
            ));
        }
    }
    invalid(errs)?;

    if families.is_empty() {
        families.push(cluster.primary.as_str().into());
    }
    if policy != "SingleStack"
        && families.len() == 1
        && let Some(secondary) = cluster.secondary
    {
        let first = Family::parse(&families[0]).unwrap_or(cluster.primary);
        let add = if first == cluster.primary { secondary } else { cluster.primary };
        families.push(add.as_str().into());
    }
    write(new, &ips, &families);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: ClusterFamilies = ClusterFamilies { primary: Family::IPv4, secondary: None };
    const DUAL: ClusterFamilies = ClusterFamilies { primary: Family::IPv4, secondary: Some(Family::IPv6) };

    fn svc(spec: Value) -> Value {
        json!({"metadata": {"name": "s"}, "spec": spec})
    }

    fn init(mut s: Value, cluster: ClusterFamilies) -> Result<Value, Vec<String>> {
        init_ip_family_fields(&mut s, None, cluster)
            .map_err(|e| e.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
        Ok(s["spec"].clone())
    }

    #[test]
    fn single_stack_defaults() {
        let s = init(svc(json!({"type": "ClusterIP", "selector": {"a": "b"}})), V4).unwrap();
        assert_eq!(s["ipFamilyPolicy"], "SingleStack");
        assert_eq!(s["ipFamilies"], json!(["IPv4"]));
        let s = init(svc(json!({"type": "ClusterIP", "ipFamilyPolicy": "PreferDualStack"})), V4).unwrap();
        assert_eq!(s["ipFamilies"], json!(["IPv4"]));
        let err = init(svc(json!({"type": "ClusterIP", "ipFamilyPolicy": "RequireDualStack"})), V4).unwrap_err();
        assert_eq!(
            err,
            [
                r#"spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for dual-stack services"#
            ]
        );
        let err =
            init(svc(json!({"type": "ClusterIP", "clusterIP": "fd00::1", "clusterIPs": ["fd00::1"]})), V4).unwrap_err();
        assert_eq!(err, [r#"spec.clusterIPs[0]: Invalid value: ["fd00::1"]: IPv6 is not configured on this cluster"#]);
    }

    #[test]
    fn headless_selectorless_is_dual_everywhere() {
        let s = init(svc(json!({"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"]})), V4).unwrap();
        assert_eq!(s["ipFamilyPolicy"], "RequireDualStack");
        assert_eq!(s["ipFamilies"], json!(["IPv4", "IPv6"]));
        let s = init(
            svc(json!({"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"], "selector": {"a": "b"}})),
            V4,
        )
        .unwrap();
        assert_eq!(s["ipFamilyPolicy"], "SingleStack");
        assert_eq!(s["ipFamilies"], json!(["IPv4"]));
    }

    #[test]
    fn dual_stack() {
        let s = init(svc(json!({"type": "ClusterIP", "ipFamilyPolicy": "PreferDualStack"})), DUAL).unwrap();
        assert_eq!(s["ipFamilies"], json!(["IPv4", "IPv6"]));
        let s =
            init(svc(json!({"type": "ClusterIP", "ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6"]})), DUAL)
                .unwrap();
        assert_eq!(s["ipFamilies"], json!(["IPv6", "IPv4"]));
        let err = init(
            svc(json!({"type": "ClusterIP", "clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1", "fd00::1"]})),
            DUAL,
        )
        .unwrap_err();
        assert_eq!(
            err,
            [
                r#"spec.ipFamilyPolicy: Invalid value: "SingleStack": must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified"#
            ]
        );
    }

    #[test]
    fn releasing_a_family_needs_single_stack() {
        let old = svc(json!({"type": "ClusterIP", "ipFamilyPolicy": "PreferDualStack", "clusterIP": "10.0.0.1",
            "clusterIPs": ["10.0.0.1", "fd00::1"], "ipFamilies": ["IPv4", "IPv6"]}));
        let mut new = svc(json!({"type": "ClusterIP", "ipFamilyPolicy": "PreferDualStack", "clusterIP": "10.0.0.1",
            "clusterIPs": ["10.0.0.1"], "ipFamilies": ["IPv4"]}));
        let errs = init_ip_family_fields(&mut new, Some(&old), DUAL).unwrap_err();
        let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            msgs,
            [
                r#"spec.ipFamilyPolicy: Invalid value: "PreferDualStack": must be 'SingleStack' to release the secondary cluster IP"#,
                r#"spec.ipFamilyPolicy: Invalid value: "PreferDualStack": must be 'SingleStack' to release the secondary IP family"#,
            ]
        );
        let mut new = old.clone();
        new["spec"]["ipFamilyPolicy"] = json!("SingleStack");
        init_ip_family_fields(&mut new, Some(&old), DUAL).unwrap();
        assert_eq!(new["spec"]["clusterIPs"], json!(["10.0.0.1"]));
        assert_eq!(new["spec"]["ipFamilies"], json!(["IPv4"]));
    }

    #[test]
    fn normalize_and_patch() {
        let mut s = svc(json!({"clusterIP": "10.0.0.1"}));
        normalize_cluster_ips(&mut s, None);
        assert_eq!(s["spec"]["clusterIPs"], json!(["10.0.0.1"]));

        let old = svc(json!({"type": "NodePort", "clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"],
            "ports": [{"name": "a", "port": 80, "nodePort": 30001}, {"name": "b", "port": 81, "nodePort": 30002}]}));
        let mut new = svc(json!({"type": "NodePort", "ports": [{"name": "b", "port": 81}, {"name": "c", "port": 82}]}));
        patch_allocated_values(&mut new, &old);
        assert_eq!(new["spec"]["clusterIP"], "10.0.0.1");
        assert_eq!(new["spec"]["clusterIPs"], json!(["10.0.0.1"]));
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30002);
        assert!(new["spec"]["ports"][1].get("nodePort").is_none());

        // Changing only the singular field changes the plural with it (and validation refuses it).
        let mut new = svc(json!({"clusterIP": "10.0.0.2", "clusterIPs": ["10.0.0.1"]}));
        normalize_cluster_ips(&mut new, Some(&old));
        assert_eq!(new["spec"]["clusterIPs"], json!(["10.0.0.2"]));
    }
}
