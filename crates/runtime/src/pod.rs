//! What every role asks of a pod and a Service, answered as Kubernetes'
//! shared helpers answer it.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Pod, PodCondition, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

fn ready_condition(pod: &Pod) -> Option<&PodCondition> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")
}

/// The pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// When the pod's readiness last changed.
pub fn ready_since(pod: &Pod) -> Option<Time> {
    ready_condition(pod)?.last_transition_time.clone()
}

/// The pod finished for good (Succeeded or Failed).
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

/// The node the pod is bound to, if any.
pub fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref().filter(|n| !n.is_empty())
}

/// The pod's IPs, parsed.
pub fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
    let Some(status) = pod.status.as_ref() else { return Vec::new() };
    let listed: Vec<&str> = match status.pod_ips.as_ref().filter(|l| !l.is_empty()) {
        Some(ips) => ips.iter().map(|i| i.ip.as_str()).collect(),
        None => status.pod_ip.iter().map(String::as_str).collect(),
    };
    listed.iter().filter_map(|s| parse_ip_lenient(s)).collect()
}

/// Parses an address as Kubernetes' lenient parser does (IPv4 octets with
/// leading zeros included); IPv4-mapped IPv6 addresses are IPv4.
pub fn parse_ip_lenient(s: &str) -> Option<IpAddr> {
    kubesvc_api::validation::ip::parse_ip_sloppy(s).map(|ip| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    })
}

/// A Service is headless when its cluster IP is `None` (or missing).
pub fn is_headless(svc: &Service) -> bool {
    matches!(svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()), None | Some("None") | Some(""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn readiness_phase_and_addresses() {
        let p = pod(json!({"metadata": {"name": "a"}, "spec": {"containers": [], "nodeName": "n1"},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}],
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}));
        assert!(is_ready(&p));
        assert!(!is_terminal(&p));
        assert_eq!(node_name(&p), Some("n1"));
        assert_eq!(ready_since(&p).map(|t| t.0.to_string()), Some("2026-01-01T00:00:00Z".into()));
        assert_eq!(pod_ips(&p), vec!["10.0.0.1".parse::<IpAddr>().unwrap(), "fd00::1".parse().unwrap()]);
        let done = pod(json!({"metadata": {"name": "a"}, "status": {"phase": "Failed", "podIP": "10.0.0.2"}}));
        assert!(is_terminal(&done) && !is_ready(&done));
        assert_eq!(pod_ips(&done), vec!["10.0.0.2".parse::<IpAddr>().unwrap()]);
        assert_eq!(parse_ip_lenient("010.000.000.001"), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(parse_ip_lenient("::ffff:10.0.0.1"), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(parse_ip_lenient("10.0.0"), None);
    }

    #[test]
    fn headless_services() {
        let svc = |ip: serde_json::Value| -> Service {
            serde_json::from_value(json!({"metadata": {"name": "s"}, "spec": {"clusterIP": ip}})).unwrap()
        };
        assert!(is_headless(&svc(json!("None"))));
        assert!(!is_headless(&svc(json!("10.96.0.5"))));
    }
}
