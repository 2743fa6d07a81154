//! Kubernetes' TestValidateServiceUpdate cases, ported: `tweak(old, new)` turns two copies of the valid base Service into the case; `errs` is how many errors update validation must report.
//!
//! Source read: `pkg/apis/core/validation/validation_test.go` of the GitHub
//! fork `zongruxie4/kubernetes` (it tracks kubernetes master during the v1.36
//! cycle) at commit 926e9fc8b2627b351e7713d4db8afd27c8903f00, together with
//! `makeValidService()` from the same file and the feature gates in
//! `pkg/features/kube_features.go` at commit 044f65ca5c2f21af4e431f9d34aaf6826bcf9dcf.
//!
//! How upstream runs each case: both objects start as `makeValidService()`
//! (resourceVersion "1" on both, no defaulting applied), the case tweaks them,
//! then `ValidateServiceUpdate(new, old)` is called and its errors counted.
//! Upstream pins two gates for every case:
//! - `StrictIPCIDRValidation=true`: Beta and on by default since 1.36, so this
//!   is the default for 1.37 and nothing is skipped for it.
//! - `RelaxedServiceNameValidation=false`: Beta and on by default since 1.36.
//!   No count below depends on it: every name used ("valid", "valid2",
//!   "1-test-service") is a valid DNS-1123 label, and upstream expects no
//!   name-format error for "1-test-service" even with the gate off.
//!
//! Upstream mutates the internal Go type; here the same changes are made to
//! the v1 JSON. A Go field set to its zero value ("" or nil) is a key removed
//! here, as the JSON encoding of that object would omit it.

use serde_json::json;

use super::cases::{UpdateCase, del, push, set, touch, update_case};

// Annotation keys hold '/', so they are set by indexing rather than by a JSON pointer.
const TOPOLOGY_AWARE_HINTS: &str = "service.kubernetes.io/topology-aware-hints";
const TOPOLOGY_MODE: &str = "service.kubernetes.io/topology-mode";
const LB_SOURCE_RANGES_ANNOTATION: &str = "service.beta.kubernetes.io/load-balancer-source-ranges";

/// `metadata.annotations[key] = value`.
fn annotate(s: &mut serde_json::Value, key: &str, value: &str) {
    touch("/metadata/annotations");
    s["metadata"]["annotations"][key] = json!(value);
}

/// `spec.type`.
fn ty(s: &mut serde_json::Value, t: &str) {
    set(s, "/spec/type", json!(t));
}

/// `spec.clusterIP` and `spec.clusterIPs`; "" and an empty list remove the key.
fn ips(s: &mut serde_json::Value, cluster_ip: &str, cluster_ips: &[&str]) {
    if cluster_ip.is_empty() {
        del(s, "/spec/clusterIP");
    } else {
        set(s, "/spec/clusterIP", json!(cluster_ip));
    }
    if cluster_ips.is_empty() {
        del(s, "/spec/clusterIPs");
    } else {
        set(s, "/spec/clusterIPs", json!(cluster_ips));
    }
}

/// `spec.ipFamilies`; an empty list removes the key.
fn families(s: &mut serde_json::Value, fams: &[&str]) {
    if fams.is_empty() {
        del(s, "/spec/ipFamilies");
    } else {
        set(s, "/spec/ipFamilies", json!(fams));
    }
}

/// `spec.ipFamilyPolicy`.
fn policy(s: &mut serde_json::Value, p: &str) {
    set(s, "/spec/ipFamilyPolicy", json!(p));
}

/// `spec.externalTrafficPolicy: Cluster`.
fn etp_cluster(s: &mut serde_json::Value) {
    set(s, "/spec/externalTrafficPolicy", json!("Cluster"));
}

/// `spec.allocateLoadBalancerNodePorts`.
fn alloc_node_ports(s: &mut serde_json::Value, v: bool) {
    set(s, "/spec/allocateLoadBalancerNodePorts", json!(v));
}

/// The old side of most LoadBalancer cases: type LoadBalancer, allocateLoadBalancerNodePorts true.
fn old_lb(s: &mut serde_json::Value) {
    ty(s, "LoadBalancer");
    alloc_node_ports(s, true);
}

/// The new side of most LoadBalancer cases: also externalTrafficPolicy Cluster.
fn new_lb(s: &mut serde_json::Value) {
    ty(s, "LoadBalancer");
    etp_cluster(s);
    alloc_node_ports(s, true);
}

/// Type NodePort with externalTrafficPolicy Cluster.
fn new_node_port(s: &mut serde_json::Value) {
    ty(s, "NodePort");
    etp_cluster(s);
}

/// `metadata.labels.foo: bar` (an unrelated change).
fn label_foo(s: &mut serde_json::Value) {
    set(s, "/metadata/labels/foo", json!("bar"));
}

pub(super) fn cases() -> Vec<UpdateCase> {
    vec![
        update_case("no change", 0, |_old, _new| {}),
        update_case("change name", 1, |_old, new| {
            set(new, "/metadata/name", json!("valid2"));
        }),
        update_case("change namespace", 1, |_old, new| {
            set(new, "/metadata/namespace", json!("valid2"));
        }),
        update_case("change label valid", 0, |_old, new| {
            set(new, "/metadata/labels/key", json!("other-value"));
        }),
        update_case("add label", 0, |_old, new| {
            set(new, "/metadata/labels/key2", json!("value2"));
        }),
        update_case("change cluster IP", 1, |old, new| {
            ips(old, "1.2.3.4", &["1.2.3.4"]);
            ips(new, "8.6.7.5", &["8.6.7.5"]);
        }),
        update_case("remove cluster IP", 1, |old, new| {
            ips(old, "1.2.3.4", &["1.2.3.4"]);
            ips(new, "", &[]);
        }),
        update_case("change affinity", 0, |_old, new| {
            set(new, "/spec/sessionAffinity", json!("ClientIP"));
            set(new, "/spec/sessionAffinityConfig", json!({"clientIP": {"timeoutSeconds": 90}}));
        }),
        update_case("remove affinity", 1, |_old, new| {
            del(new, "/spec/sessionAffinity");
        }),
        update_case("change type", 0, |_old, new| {
            new_lb(new);
        }),
        update_case("remove type", 1, |_old, new| {
            del(new, "/spec/type");
        }),
        update_case("change type -> nodeport", 0, |_old, new| {
            new_node_port(new);
        }),
        update_case("add loadBalancerSourceRanges", 0, |old, new| {
            old_lb(old);
            new_lb(new);
            set(new, "/spec/loadBalancerSourceRanges", json!(["10.0.0.0/8"]));
        }),
        update_case("update loadBalancerSourceRanges", 0, |old, new| {
            old_lb(old);
            set(old, "/spec/loadBalancerSourceRanges", json!(["10.0.0.0/8"]));
            new_lb(new);
            set(new, "/spec/loadBalancerSourceRanges", json!(["10.100.0.0/16"]));
        }),
        update_case("LoadBalancer type cannot have None ClusterIP", 1, |_old, new| {
            ips(new, "None", &["None"]);
            new_lb(new);
        }),
        update_case("`None` ClusterIP can NOT be changed", 1, |old, new| {
            ty(old, "ClusterIP");
            ty(new, "ClusterIP");
            ips(old, "None", &["None"]);
            ips(new, "1.2.3.4", &["1.2.3.4"]);
        }),
        update_case("`None` ClusterIP can NOT be removed", 1, |old, new| {
            ips(old, "None", &["None"]);
            ips(new, "", &[]);
        }),
        update_case("ClusterIP can NOT be changed to None", 1, |old, new| {
            ips(old, "1.2.3.4", &["1.2.3.4"]);
            ips(new, "None", &["None"]);
        }),
        update_case("Service with ClusterIP type cannot change its set ClusterIP", 1, |old, new| {
            ty(old, "ClusterIP");
            ty(new, "ClusterIP");
            ips(old, "1.2.3.4", &["1.2.3.4"]);
            ips(new, "1.2.3.5", &["1.2.3.5"]);
        }),
        update_case("Service with ClusterIP type can change its empty ClusterIP", 0, |old, new| {
            ty(old, "ClusterIP");
            ty(new, "ClusterIP");
            ips(old, "", &[]);
            ips(new, "1.2.3.5", &["1.2.3.5"]);
        }),
        update_case(
            "Service with ClusterIP type cannot change its set ClusterIP when changing type to NodePort",
            1,
            |old, new| {
                ty(old, "ClusterIP");
                new_node_port(new);
                ips(old, "1.2.3.4", &["1.2.3.4"]);
                ips(new, "1.2.3.5", &["1.2.3.5"]);
            },
        ),
        update_case(
            "Service with ClusterIP type can change its empty ClusterIP when changing type to NodePort",
            0,
            |old, new| {
                ty(old, "ClusterIP");
                new_node_port(new);
                ips(old, "", &[]);
                ips(new, "1.2.3.5", &["1.2.3.5"]);
            },
        ),
        update_case(
            "Service with ClusterIP type cannot change its ClusterIP when changing type to LoadBalancer",
            1,
            |old, new| {
                ty(old, "ClusterIP");
                new_lb(new);
                ips(old, "1.2.3.4", &["1.2.3.4"]);
                ips(new, "1.2.3.5", &["1.2.3.5"]);
            },
        ),
        update_case(
            "Service with ClusterIP type can change its empty ClusterIP when changing type to LoadBalancer",
            0,
            |old, new| {
                ty(old, "ClusterIP");
                new_lb(new);
                ips(old, "", &[]);
                ips(new, "1.2.3.5", &["1.2.3.5"]);
            },
        ),
        update_case(
            "Service with LoadBalancer type can change its AllocateLoadBalancerNodePorts from true to false",
            0,
            |old, new| {
                old_lb(old);
                ty(new, "LoadBalancer");
                etp_cluster(new);
                alloc_node_ports(new, false);
            },
        ),
        update_case(
            "Service with LoadBalancer type can change its AllocateLoadBalancerNodePorts from false to true",
            0,
            |old, new| {
                ty(old, "LoadBalancer");
                alloc_node_ports(old, false);
                new_lb(new);
            },
        ),
        update_case("Service with NodePort type cannot change its set ClusterIP", 1, |old, new| {
            ty(old, "NodePort");
            new_node_port(new);
            ips(old, "1.2.3.4", &["1.2.3.4"]);
            ips(new, "1.2.3.5", &["1.2.3.5"]);
        }),
        update_case("Service with NodePort type can change its empty ClusterIP", 0, |old, new| {
            ty(old, "NodePort");
            new_node_port(new);
            ips(old, "", &[]);
            ips(new, "1.2.3.5", &["1.2.3.5"]);
        }),
        update_case(
            "Service with NodePort type cannot change its set ClusterIP when changing type to ClusterIP",
            1,
            |old, new| {
                ty(old, "NodePort");
                ty(new, "ClusterIP");
                ips(old, "1.2.3.4", &["1.2.3.4"]);
                ips(new, "1.2.3.5", &["1.2.3.5"]);
            },
        ),
        update_case(
            "Service with NodePort type can change its empty ClusterIP when changing type to ClusterIP",
            0,
            |old, new| {
                ty(old, "NodePort");
                ty(new, "ClusterIP");
                ips(old, "", &[]);
                ips(new, "1.2.3.5", &["1.2.3.5"]);
            },
        ),
        update_case(
            "Service with NodePort type cannot change its set ClusterIP when changing type to LoadBalancer",
            1,
            |old, new| {
                ty(old, "NodePort");
                new_lb(new);
                ips(old, "1.2.3.4", &["1.2.3.4"]);
                ips(new, "1.2.3.5", &["1.2.3.5"]);
            },
        ),
        update_case(
            "Service with NodePort type can change its empty ClusterIP when changing type to LoadBalancer",
            0,
            |old, new| {
                ty(old, "NodePort");
                new_lb(new);
                ips(old, "", &[]);
                ips(new, "1.2.3.5", &["1.2.3.5"]);
            },
        ),
        update_case("Service with LoadBalancer type cannot change its set ClusterIP", 1, |old, new| {
            old_lb(old);
            new_lb(new);
            ips(old, "1.2.3.4", &["1.2.3.4"]);
            ips(new, "1.2.3.5", &["1.2.3.5"]);
        }),
        update_case("Service with LoadBalancer type can change its empty ClusterIP", 0, |old, new| {
            old_lb(old);
            new_lb(new);
            ips(old, "", &[]);
            ips(new, "1.2.3.5", &["1.2.3.5"]);
        }),
        update_case(
            "Service with LoadBalancer type cannot change its set ClusterIP when changing type to ClusterIP",
            1,
            |old, new| {
                old_lb(old);
                ty(new, "ClusterIP");
                ips(old, "1.2.3.4", &["1.2.3.4"]);
                ips(new, "1.2.3.5", &["1.2.3.5"]);
            },
        ),
        update_case(
            "Service with LoadBalancer type can change its empty ClusterIP when changing type to ClusterIP",
            0,
            |old, new| {
                old_lb(old);
                ty(new, "ClusterIP");
                ips(old, "", &[]);
                ips(new, "1.2.3.5", &["1.2.3.5"]);
            },
        ),
        update_case(
            "Service with LoadBalancer type cannot change its set ClusterIP when changing type to NodePort",
            1,
            |old, new| {
                old_lb(old);
                new_node_port(new);
                ips(old, "1.2.3.4", &["1.2.3.4"]);
                ips(new, "1.2.3.5", &["1.2.3.5"]);
            },
        ),
        update_case(
            "Service with LoadBalancer type can change its empty ClusterIP when changing type to NodePort",
            0,
            |old, new| {
                old_lb(old);
                new_node_port(new);
                ips(old, "", &[]);
                ips(new, "1.2.3.5", &["1.2.3.5"]);
            },
        ),
        update_case(
            "Service with ExternalName type can change its empty ClusterIP when changing type to ClusterIP",
            0,
            |old, new| {
                ty(old, "ExternalName");
                ty(new, "ClusterIP");
                ips(old, "", &[]);
                ips(new, "1.2.3.5", &["1.2.3.5"]);
            },
        ),
        update_case(
            "Service with ExternalName type can change its set ClusterIP when changing type to ClusterIP",
            0,
            |old, new| {
                ty(old, "ExternalName");
                ty(new, "ClusterIP");
                ips(old, "1.2.3.4", &["1.2.3.4"]);
                ips(new, "1.2.3.5", &["1.2.3.5"]);
            },
        ),
        update_case("invalid node port with clusterIP None", 1, |old, new| {
            ty(old, "NodePort");
            new_node_port(new);
            let q = json!({"name": "q", "port": 1, "protocol": "TCP", "nodePort": 1, "targetPort": 1});
            push(old, "/spec/ports", q.clone());
            push(new, "/spec/ports", q);
            ips(old, "", &[]);
            ips(new, "None", &["None"]);
        }),
        // Service IP family
        update_case("convert from ExternalName", 0, |old, new| {
            ty(old, "ExternalName");
            ty(new, "ClusterIP");
        }),
        update_case("invalid: convert to ExternalName", 3, |old, new| {
            ty(old, "ClusterIP");
            ips(old, "10.0.0.10", &["10.0.0.10"]);
            families(old, &["IPv4"]);
            policy(old, "SingleStack");
            ty(new, "ExternalName");
            set(new, "/spec/externalName", json!("foo"));
            // Not clearing these is the error (the strategy would, but it
            // is not part of validation).
            ips(new, "10.0.0.10", &["10.0.0.10"]);
            families(new, &["IPv4"]);
            policy(new, "SingleStack");
        }),
        update_case("valid: convert to ExternalName", 0, |old, new| {
            ty(old, "ClusterIP");
            ips(old, "10.0.0.10", &["10.0.0.10"]);
            families(old, &["IPv4"]);
            policy(old, "SingleStack");
            ty(new, "ExternalName");
            set(new, "/spec/externalName", json!("foo"));
        }),
        update_case("same ServiceIPFamily", 0, |old, new| {
            ty(old, "ClusterIP");
            families(old, &["IPv4"]);
            ty(new, "ClusterIP");
            families(new, &["IPv4"]);
        }),
        update_case("same ServiceIPFamily, change IPFamilyPolicy to singleStack", 0, |old, new| {
            ty(old, "ClusterIP");
            del(old, "/spec/ipFamilyPolicy");
            families(old, &["IPv4"]);
            policy(new, "SingleStack");
            ty(new, "ClusterIP");
            families(new, &["IPv4"]);
        }),
        update_case("same ServiceIPFamily, change IPFamilyPolicy singleStack => requireDualStack", 0, |old, new| {
            ty(old, "ClusterIP");
            policy(old, "SingleStack");
            families(old, &["IPv4"]);
            policy(new, "RequireDualStack");
            ty(new, "ClusterIP");
            families(new, &["IPv4"]);
        }),
        update_case("add a new ServiceIPFamily", 0, |old, new| {
            policy(old, "RequireDualStack");
            ty(old, "ClusterIP");
            families(old, &["IPv4"]);
            policy(new, "RequireDualStack");
            ty(new, "ClusterIP");
            families(new, &["IPv4", "IPv6"]);
        }),
        update_case("ExternalName while changing Service IPFamily", 0, |old, new| {
            set(old, "/spec/externalName", json!("somename"));
            ty(old, "ExternalName");
            set(new, "/spec/externalName", json!("somename"));
            ty(new, "ExternalName");
        }),
        update_case("setting ipfamily from nil to v4", 0, |old, new| {
            families(old, &[]);
            set(new, "/spec/externalName", json!("somename"));
            families(new, &["IPv4"]);
        }),
        update_case("setting ipfamily from nil to v6", 0, |old, new| {
            families(old, &[]);
            set(new, "/spec/externalName", json!("somename"));
            families(new, &["IPv6"]);
        }),
        update_case("change primary ServiceIPFamily", 2, |old, new| {
            ips(old, "1.2.3.4", &["1.2.3.4"]);
            ty(old, "ClusterIP");
            families(old, &["IPv4"]);
            ty(new, "ClusterIP");
            ips(new, "1.2.3.4", &["1.2.3.4"]);
            families(new, &["IPv6"]);
        }),
        // upgrade + downgrade from/to dual stack
        update_case("valid: upgrade to dual stack with requiredDualStack", 0, |old, new| {
            ips(old, "1.2.3.4", &["1.2.3.4"]);
            ty(old, "ClusterIP");
            policy(old, "SingleStack");
            families(old, &["IPv4"]);
            ty(new, "ClusterIP");
            ips(new, "1.2.3.4", &["1.2.3.4"]);
            // Upstream sets the policy on the old object here, not the new one.
            policy(old, "RequireDualStack");
            families(new, &["IPv4"]);
        }),
        update_case("valid: upgrade to dual stack with preferDualStack", 0, |old, new| {
            ips(old, "1.2.3.4", &["1.2.3.4"]);
            ty(old, "ClusterIP");
            policy(old, "SingleStack");
            families(old, &["IPv4"]);
            ty(new, "ClusterIP");
            ips(new, "1.2.3.4", &["1.2.3.4"]);
            policy(new, "PreferDualStack");
            families(new, &["IPv4"]);
        }),
        update_case("valid: upgrade to dual stack, no specific secondary ip", 0, |old, new| {
            ips(old, "1.2.3.4", &["1.2.3.4"]);
            ty(old, "ClusterIP");
            policy(old, "SingleStack");
            families(old, &["IPv4"]);
            ty(new, "ClusterIP");
            ips(new, "1.2.3.4", &["1.2.3.4"]);
            policy(new, "RequireDualStack");
            families(new, &["IPv4", "IPv6"]);
        }),
        update_case("valid: upgrade to dual stack, with specific secondary ip", 0, |old, new| {
            ips(old, "1.2.3.4", &["1.2.3.4"]);
            ty(old, "ClusterIP");
            policy(old, "SingleStack");
            families(old, &["IPv4"]);
            ty(new, "ClusterIP");
            ips(new, "1.2.3.4", &["1.2.3.4", "2001::1"]);
            policy(new, "RequireDualStack");
            families(new, &["IPv4", "IPv6"]);
        }),
        update_case("valid: downgrade from dual to single", 0, |old, new| {
            ips(old, "1.2.3.4", &["1.2.3.4", "2001::1"]);
            ty(old, "ClusterIP");
            policy(old, "RequireDualStack");
            families(old, &["IPv4", "IPv6"]);
            ty(new, "ClusterIP");
            ips(new, "1.2.3.4", &["1.2.3.4"]);
            policy(new, "SingleStack");
            families(new, &["IPv4"]);
        }),
        update_case("valid: change families for a headless service", 0, |old, new| {
            ips(old, "None", &["None"]);
            ty(old, "ClusterIP");
            policy(old, "RequireDualStack");
            families(old, &["IPv4", "IPv6"]);
            ty(new, "ClusterIP");
            ips(new, "None", &["None"]);
            policy(new, "RequireDualStack");
            families(new, &["IPv6", "IPv4"]);
        }),
        update_case("valid: upgrade a headless service", 0, |old, new| {
            ips(old, "None", &["None"]);
            ty(old, "ClusterIP");
            policy(old, "SingleStack");
            families(old, &["IPv4"]);
            ty(new, "ClusterIP");
            ips(new, "None", &["None"]);
            policy(new, "RequireDualStack");
            families(new, &["IPv6", "IPv4"]);
        }),
        update_case("valid: downgrade a headless service", 0, |old, new| {
            ips(old, "None", &["None"]);
            ty(old, "ClusterIP");
            policy(old, "RequireDualStack");
            families(old, &["IPv4", "IPv6"]);
            ty(new, "ClusterIP");
            ips(new, "None", &["None"]);
            policy(new, "SingleStack");
            families(new, &["IPv6"]);
        }),
        update_case("invalid flip families", 4, |old, new| {
            // Upstream's old clusterIP ("1.2.3.40") differs from its clusterIPs[0].
            ips(old, "1.2.3.40", &["1.2.3.4", "2001::1"]);
            ty(old, "ClusterIP");
            policy(old, "RequireDualStack");
            families(old, &["IPv4", "IPv6"]);
            ty(new, "ClusterIP");
            ips(new, "2001::1", &["2001::1", "1.2.3.5"]);
            policy(new, "RequireDualStack");
            families(new, &["IPv6", "IPv4"]);
        }),
        update_case("invalid change first ip, in dualstack service", 1, |old, new| {
            ips(old, "1.2.3.4", &["1.2.3.4", "2001::1"]);
            ty(old, "ClusterIP");
            policy(old, "RequireDualStack");
            families(old, &["IPv4", "IPv6"]);
            ty(new, "ClusterIP");
            ips(new, "1.2.3.5", &["1.2.3.5", "2001::1"]);
            policy(new, "RequireDualStack");
            families(new, &["IPv4", "IPv6"]);
        }),
        update_case("invalid, change second ip in dualstack service", 1, |old, new| {
            ips(old, "1.2.3.4", &["1.2.3.4", "2001::1"]);
            ty(old, "ClusterIP");
            policy(old, "RequireDualStack");
            families(old, &["IPv4", "IPv6"]);
            ty(new, "ClusterIP");
            ips(new, "1.2.3.4", &["1.2.3.4", "2002::1"]);
            policy(new, "RequireDualStack");
            families(new, &["IPv4", "IPv6"]);
        }),
        update_case("downgrade keeping the families", 0, |old, new| {
            // families and ips are trimmed in the strategy, not validation
            ips(old, "1.2.3.4", &["1.2.3.4", "2001::1"]);
            ty(old, "ClusterIP");
            policy(old, "RequireDualStack");
            families(old, &["IPv4", "IPv6"]);
            ty(new, "ClusterIP");
            ips(new, "1.2.3.4", &["1.2.3.4"]);
            policy(new, "SingleStack");
            families(new, &["IPv4", "IPv6"]);
        }),
        update_case("invalid, downgrade without changing to singleStack", 2, |old, new| {
            ips(old, "1.2.3.4", &["1.2.3.4", "2001::1"]);
            ty(old, "ClusterIP");
            policy(old, "RequireDualStack");
            families(old, &["IPv4", "IPv6"]);
            ty(new, "ClusterIP");
            ips(new, "1.2.3.4", &["1.2.3.4"]);
            policy(new, "RequireDualStack");
            families(new, &["IPv4"]);
        }),
        update_case("invalid, downgrade and change primary ip", 1, |old, new| {
            ips(old, "1.2.3.4", &["1.2.3.4", "2001::1"]);
            ty(old, "ClusterIP");
            policy(old, "RequireDualStack");
            families(old, &["IPv4", "IPv6"]);
            ty(new, "ClusterIP");
            ips(new, "1.2.3.5", &["1.2.3.5"]);
            policy(new, "SingleStack");
            families(new, &["IPv4"]);
        }),
        update_case("invalid: upgrade to dual stack and change primary", 1, |old, new| {
            ips(old, "1.2.3.4", &["1.2.3.4"]);
            ty(old, "ClusterIP");
            policy(old, "SingleStack");
            families(old, &["IPv4"]);
            ty(new, "ClusterIP");
            ips(new, "1.2.3.5", &["1.2.3.5"]);
            policy(new, "RequireDualStack");
            families(new, &["IPv4", "IPv6"]);
        }),
        update_case("update to valid app protocol", 0, |old, new| {
            set(old, "/spec/ports", json!([{"name": "a", "port": 443, "targetPort": 3000, "protocol": "TCP"}]));
            set(
                new,
                "/spec/ports",
                json!([{"name": "a", "port": 443, "targetPort": 3000, "protocol": "TCP", "appProtocol": "https"}]),
            );
        }),
        update_case("update to invalid app protocol", 1, |old, new| {
            set(old, "/spec/ports", json!([{"name": "a", "port": 443, "targetPort": 3000, "protocol": "TCP"}]));
            set(
                new,
                "/spec/ports",
                json!([{"name": "a", "port": 443, "targetPort": 3000, "protocol": "TCP", "appProtocol": "~https"}]),
            );
        }),
        update_case("Set AllocateLoadBalancerNodePorts when type is not LoadBalancer", 1, |_old, new| {
            alloc_node_ports(new, true);
        }),
        update_case("update LoadBalancer type of service without change LoadBalancerClass", 0, |old, new| {
            old_lb(old);
            set(old, "/spec/loadBalancerClass", json!("test.com/test-old"));
            new_lb(new);
            set(new, "/spec/loadBalancerClass", json!("test.com/test-old"));
        }),
        update_case("invalid: change LoadBalancerClass when update service", 1, |old, new| {
            old_lb(old);
            set(old, "/spec/loadBalancerClass", json!("test.com/test-old"));
            new_lb(new);
            set(new, "/spec/loadBalancerClass", json!("test.com/test-new"));
        }),
        update_case("invalid: unset LoadBalancerClass when update service", 1, |old, new| {
            old_lb(old);
            set(old, "/spec/loadBalancerClass", json!("test.com/test-old"));
            new_lb(new);
            del(new, "/spec/loadBalancerClass");
        }),
        update_case("invalid: set LoadBalancerClass when update service", 1, |old, new| {
            old_lb(old);
            del(old, "/spec/loadBalancerClass");
            new_lb(new);
            set(new, "/spec/loadBalancerClass", json!("test.com/test-new"));
        }),
        update_case("update to LoadBalancer type of service with valid LoadBalancerClass", 0, |old, new| {
            ty(old, "ClusterIP");
            new_lb(new);
            set(new, "/spec/loadBalancerClass", json!("test.com/test-load-balancer-class"));
        }),
        update_case("update to LoadBalancer type of service without LoadBalancerClass", 0, |old, new| {
            ty(old, "ClusterIP");
            new_lb(new);
            del(new, "/spec/loadBalancerClass");
        }),
        update_case("invalid: set invalid LoadBalancerClass when update service to LoadBalancer", 2, |old, new| {
            ty(old, "ClusterIP");
            new_lb(new);
            set(new, "/spec/loadBalancerClass", json!("Bad/LoadBalancerclass"));
        }),
        update_case(
            "invalid: set LoadBalancerClass when update service to non LoadBalancer type of service",
            2,
            |old, new| {
                ty(old, "ClusterIP");
                ty(new, "ClusterIP");
                set(new, "/spec/loadBalancerClass", json!("test.com/test-load-balancer-class"));
            },
        ),
        update_case(
            "invalid: set LoadBalancerClass when update service to non LoadBalancer type of service",
            3,
            |old, new| {
                ty(old, "ExternalName");
                ty(new, "ExternalName");
                set(new, "/spec/loadBalancerClass", json!("test.com/test-load-balancer-class"));
            },
        )
        .also(&["spec.externalName"]),
        update_case(
            "invalid: set LoadBalancerClass when update service to non LoadBalancer type of service",
            2,
            |old, new| {
                ty(old, "NodePort");
                new_node_port(new);
                set(new, "/spec/loadBalancerClass", json!("test.com/test-load-balancer-class"));
            },
        ),
        update_case(
            "invalid: set LoadBalancerClass when update from LoadBalancer service to non LoadBalancer type of service",
            2,
            |old, new| {
                old_lb(old);
                set(old, "/spec/loadBalancerClass", json!("test.com/test-load-balancer-class"));
                ty(new, "ClusterIP");
                set(new, "/spec/loadBalancerClass", json!("test.com/test-load-balancer-class"));
            },
        ),
        update_case(
            "invalid: set LoadBalancerClass when update from LoadBalancer service to non LoadBalancer type of service",
            3,
            |old, new| {
                old_lb(old);
                set(old, "/spec/loadBalancerClass", json!("test.com/test-load-balancer-class"));
                ty(new, "ExternalName");
                set(new, "/spec/loadBalancerClass", json!("test.com/test-load-balancer-class"));
            },
        )
        .also(&["spec.externalName"]),
        update_case(
            "invalid: set LoadBalancerClass when update from LoadBalancer service to non LoadBalancer type of service",
            2,
            |old, new| {
                old_lb(old);
                set(old, "/spec/loadBalancerClass", json!("test.com/test-load-balancer-class"));
                new_node_port(new);
                set(new, "/spec/loadBalancerClass", json!("test.com/test-load-balancer-class"));
            },
        ),
        update_case("update internalTrafficPolicy from Cluster to Local", 0, |old, new| {
            set(old, "/spec/internalTrafficPolicy", json!("Cluster"));
            set(new, "/spec/internalTrafficPolicy", json!("Local"));
        }),
        update_case("update internalTrafficPolicy from Local to Cluster", 0, |old, new| {
            set(old, "/spec/internalTrafficPolicy", json!("Local"));
            set(new, "/spec/internalTrafficPolicy", json!("Cluster"));
        }),
        update_case("topology annotations are mismatched", 1, |_old, new| {
            annotate(new, TOPOLOGY_AWARE_HINTS, "original");
            annotate(new, TOPOLOGY_MODE, "different");
        }),
        // IP validation ratcheting (StrictIPCIDRValidation on, its 1.37 default).
        update_case("pre-existing invalid clusterIP ignored when updating other fields", 0, |old, new| {
            ips(old, "1.2.3.04", &["1.2.3.04"]);
            ips(new, "1.2.3.04", &["1.2.3.04"]);
            label_foo(new);
        }),
        update_case("pre-existing invalid clusterIP ignored when adding clusterIPs", 0, |old, new| {
            ips(old, "1.2.3.04", &["1.2.3.04"]);
            policy(old, "SingleStack");
            families(old, &["IPv4"]);
            ips(new, "1.2.3.04", &["1.2.3.04", "2001:db8::4"]);
            policy(new, "RequireDualStack");
            families(new, &["IPv4", "IPv6"]);
        }),
        update_case("pre-existing invalid clusterIP ignored when removing clusterIPs", 0, |old, new| {
            ips(old, "1.2.3.04", &["1.2.3.04", "2001:db::4"]);
            policy(old, "RequireDualStack");
            families(old, &["IPv4", "IPv6"]);
            ips(new, "1.2.3.04", &["1.2.3.04"]);
            policy(new, "SingleStack");
            families(new, &["IPv4"]);
        }),
        update_case("pre-existing invalid externalIP ignored", 0, |old, new| {
            etp_cluster(old);
            set(old, "/spec/externalIPs", json!(["1.2.3.04"]));
            etp_cluster(new);
            set(new, "/spec/externalIPs", json!(["1.2.3.04"]));
            label_foo(new);
        }),
        update_case("pre-existing invalid externalIP ignored when adding externalIPs", 0, |old, new| {
            etp_cluster(old);
            set(old, "/spec/externalIPs", json!(["1.2.3.04"]));
            etp_cluster(new);
            set(new, "/spec/externalIPs", json!(["5.6.7.8", "1.2.3.04"]));
        }),
        update_case("pre-existing invalid externalIP ignored when removing externalIPs", 0, |old, new| {
            etp_cluster(old);
            set(old, "/spec/externalIPs", json!(["5.6.7.8", "1.2.3.04"]));
            etp_cluster(new);
            set(new, "/spec/externalIPs", json!(["1.2.3.04"]));
        }),
        update_case("can fix invalid externalIP", 0, |old, new| {
            etp_cluster(old);
            set(old, "/spec/externalIPs", json!(["1.2.3.04"]));
            etp_cluster(new);
            set(new, "/spec/externalIPs", json!(["1.2.3.4"]));
        }),
        update_case("can't add invalid externalIP", 1, |old, new| {
            etp_cluster(old);
            etp_cluster(new);
            set(new, "/spec/externalIPs", json!(["1.2.3.04"]));
        }),
        update_case(
            "pre-existing invalid loadBalancerSourceRanges ignored when updating other fields",
            0,
            |old, new| {
                old_lb(old);
                set(old, "/spec/loadBalancerSourceRanges", json!(["010.0.0.0/8"]));
                new_lb(new);
                set(new, "/spec/loadBalancerSourceRanges", json!(["010.0.0.0/8"]));
                label_foo(new);
            },
        ),
        update_case(
            "pre-existing invalid loadBalancerSourceRanges ignored when adding source ranges",
            0,
            |old, new| {
                old_lb(old);
                set(old, "/spec/loadBalancerSourceRanges", json!(["010.0.0.0/8"]));
                new_lb(new);
                set(new, "/spec/loadBalancerSourceRanges", json!(["1.2.3.0/24", "010.0.0.0/8"]));
            },
        ),
        update_case(
            "pre-existing invalid loadBalancerSourceRanges ignored when removing source ranges",
            0,
            |old, new| {
                old_lb(old);
                set(old, "/spec/loadBalancerSourceRanges", json!(["1.2.3.0/24", "010.0.0.0/8"]));
                new_lb(new);
                // Upstream's last line overwrites the old object's ranges; the new one has none.
                set(old, "/spec/loadBalancerSourceRanges", json!(["010.0.0.0/8"]));
            },
        ),
        update_case("can fix invalid loadBalancerSourceRanges", 0, |old, new| {
            old_lb(old);
            set(old, "/spec/loadBalancerSourceRanges", json!(["010.0.0.0/8"]));
            new_lb(new);
            set(new, "/spec/loadBalancerSourceRanges", json!(["10.0.0.0/8"]));
        }),
        update_case("can't add invalid loadBalancerSourceRanges", 1, |old, new| {
            old_lb(old);
            new_lb(new);
            set(new, "/spec/loadBalancerSourceRanges", json!(["010.0.0.0/8"]));
        }),
        update_case("pre-existing invalid source ranges ignored when updating other fields", 0, |old, new| {
            old_lb(old);
            annotate(old, LB_SOURCE_RANGES_ANNOTATION, "010.0.0.0/8");
            new_lb(new);
            annotate(new, LB_SOURCE_RANGES_ANNOTATION, "010.0.0.0/8");
            label_foo(new);
        }),
        update_case("can fix invalid source ranges annotation", 0, |old, new| {
            old_lb(old);
            annotate(old, LB_SOURCE_RANGES_ANNOTATION, "010.0.0.0/8");
            new_lb(new);
            annotate(new, LB_SOURCE_RANGES_ANNOTATION, "10.0.0.0/8");
        }),
        update_case("can't modify pre-existing invalid source ranges annotation without fixing it", 1, |old, new| {
            old_lb(old);
            annotate(old, LB_SOURCE_RANGES_ANNOTATION, "010.0.0.0/8");
            new_lb(new);
            annotate(new, LB_SOURCE_RANGES_ANNOTATION, "010.0.0.0/8, 1.2.3.0/24");
        }),
        update_case("can't add invalid source ranges annotation", 1, |old, new| {
            old_lb(old);
            new_lb(new);
            annotate(new, LB_SOURCE_RANGES_ANNOTATION, "010.0.0.0/8, 1.2.3.0/24");
        }),
        // Upstream runs this one with RelaxedServiceNameValidation off; the
        // count is the same with it on (its 1.37 default).
        update_case("can modify a pre-existing relaxed service name without error", 0, |old, new| {
            set(old, "/metadata/name", json!("1-test-service"));
            set(new, "/metadata/name", json!("1-test-service"));
            label_foo(new);
        }),
    ]
}
