//! What the endpoint controllers ask of a pod and a Service, as Kubernetes'
//! endpoint helpers answer it.

use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kubesvc_runtime::pod::is_terminal;

/// Whether a pod can be an endpoint at all: not finished, and it has an IP;
/// a terminating pod only if `include_terminating`.
pub fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    let status = pod.status.as_ref();
    if is_terminal(pod) {
        return false;
    }
    let has_ip = status.is_some_and(|s| {
        s.pod_ip.as_ref().is_some_and(|ip| !ip.is_empty()) || s.pod_ips.as_ref().is_some_and(|ips| !ips.is_empty())
    });
    has_ip && (include_terminating || pod.metadata.deletion_timestamp.is_none())
}

/// A pod's hostname names its endpoint when its subdomain is the Service.
pub fn hostname_for(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    let same = spec.subdomain.as_deref() == Some(svc.name_any().as_str()) && pod.namespace() == svc.namespace();
    same.then(|| hostname.to_string())
}

/// `FindPort`: the number a Service port's targetPort means on this pod. A
/// name is looked up among the containers' ports of the same protocol (and
/// sidecar init containers'); `None` if the pod has no such port.
pub fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match &port.target_port {
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            let spec = pod.spec.as_ref()?;
            let sidecars =
                spec.init_containers.iter().flatten().filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| p.name.as_deref() == Some(name) && p.protocol.as_deref().unwrap_or("TCP") == protocol)
                .map(|p| p.container_port)
        }
        // Defaulting sets targetPort to port; an old object may lack it.
        None => Some(port.port),
    }
}

/// How an endpoint names its pod (kind, namespace, name, uid).
pub fn pod_ref(pod: &Pod) -> k8s_openapi::api::core::v1::ObjectReference {
    k8s_openapi::api::core::v1::ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.namespace(),
        name: Some(pod.name_any()),
        uid: pod.uid(),
        ..Default::default()
    }
}

/// The time format of `endpoints.kubernetes.io/last-change-trigger-time`: RFC 3339, UTC, fractional seconds trimmed.
pub fn format_trigger_time(t: &Time) -> String {
    let s = t.0.strftime("%Y-%m-%dT%H:%M:%S%.f").to_string();
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    format!("{s}Z")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn ports_by_name_per_pod() {
        let p = pod(json!({"metadata": {"name": "a"}, "spec": {"containers": [
            {"name": "c", "ports": [{"name": "http", "containerPort": 8080}, {"name": "dns", "containerPort": 53, "protocol": "UDP"}]}],
            "initContainers": [{"name": "side", "restartPolicy": "Always", "ports": [{"name": "metrics", "containerPort": 9090}]}]}}));
        let sp = |target: serde_json::Value, protocol: &str| -> ServicePort {
            serde_json::from_value(json!({"port": 80, "targetPort": target, "protocol": protocol})).unwrap()
        };
        assert_eq!(find_port(&p, &sp(json!("http"), "TCP")), Some(8080));
        assert_eq!(find_port(&p, &sp(json!("dns"), "TCP")), None, "protocol must match");
        assert_eq!(find_port(&p, &sp(json!("dns"), "UDP")), Some(53));
        assert_eq!(find_port(&p, &sp(json!("metrics"), "TCP")), Some(9090), "sidecars count");
        assert_eq!(find_port(&p, &sp(json!(9000), "TCP")), Some(9000));
    }

    #[test]
    fn eligibility() {
        let running = pod(json!({"metadata": {"name": "a"}, "status": {"phase": "Running", "podIP": "10.0.0.1"}}));
        assert!(should_be_in_endpoints(&running, false));
        let done = pod(json!({"metadata": {"name": "a"}, "status": {"phase": "Succeeded", "podIP": "10.0.0.1"}}));
        assert!(!should_be_in_endpoints(&done, true));
        let no_ip = pod(json!({"metadata": {"name": "a"}, "status": {"phase": "Pending"}}));
        assert!(!should_be_in_endpoints(&no_ip, true));
        let going = pod(json!({"metadata": {"name": "a", "deletionTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"phase": "Running", "podIP": "10.0.0.1"}}));
        assert!(should_be_in_endpoints(&going, true));
        assert!(!should_be_in_endpoints(&going, false));
        let t = Time("2026-08-04T13:01:58.100Z".parse().unwrap());
        assert_eq!(format_trigger_time(&t), "2026-08-04T13:01:58.1Z");
        let t = Time("2026-08-04T13:01:58Z".parse().unwrap());
        assert_eq!(format_trigger_time(&t), "2026-08-04T13:01:58Z");
    }
}
