//! Kubernetes' TestValidateServiceExternalTrafficPolicy cases, ported; `errs` counts only that function's errors.
//!
//! Source read: `pkg/apis/core/validation/validation_test.go` of the GitHub
//! fork `zongruxie4/kubernetes` (it tracks kubernetes master during the v1.36
//! cycle) at commit 926e9fc8b2627b351e7713d4db8afd27c8903f00.
//!
//! How upstream runs each case: the Service starts as `makeValidService()`
//! (`base()` here), the case tweaks it, and only
//! `validateServiceExternalTrafficPolicy` is called; its errors are counted.
//! No feature gate is set by this test, so nothing is skipped.

use serde_json::json;

use super::cases::{Case, case, set};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case("valid loadBalancer service with externalTrafficPolicy and healthCheckNodePort set", 0, |s| {
            set(s, "/spec/type", json!("LoadBalancer"));
            set(s, "/spec/allocateLoadBalancerNodePorts", json!(true));
            set(s, "/spec/externalTrafficPolicy", json!("Local"));
            set(s, "/spec/healthCheckNodePort", json!(34567));
        }),
        case("valid nodePort service with externalTrafficPolicy set", 0, |s| {
            set(s, "/spec/type", json!("NodePort"));
            set(s, "/spec/externalTrafficPolicy", json!("Local"));
        }),
        case("valid clusterIP service with none of externalTrafficPolicy and healthCheckNodePort set", 0, |s| {
            set(s, "/spec/type", json!("ClusterIP"));
        }),
        case(
            "cannot set healthCheckNodePort field on loadBalancer service with externalTrafficPolicy!=Local",
            1,
            |s| {
                set(s, "/spec/type", json!("LoadBalancer"));
                set(s, "/spec/allocateLoadBalancerNodePorts", json!(true));
                set(s, "/spec/externalTrafficPolicy", json!("Cluster"));
                set(s, "/spec/healthCheckNodePort", json!(34567));
            },
        ),
        case("cannot set healthCheckNodePort field on nodePort service", 1, |s| {
            set(s, "/spec/type", json!("NodePort"));
            set(s, "/spec/externalTrafficPolicy", json!("Local"));
            set(s, "/spec/healthCheckNodePort", json!(34567));
        }),
        case("cannot set externalTrafficPolicy or healthCheckNodePort fields on clusterIP service", 2, |s| {
            set(s, "/spec/type", json!("ClusterIP"));
            set(s, "/spec/externalTrafficPolicy", json!("Local"));
            set(s, "/spec/healthCheckNodePort", json!(34567));
        }),
        case("cannot set externalTrafficPolicy field on ExternalName service", 1, |s| {
            set(s, "/spec/type", json!("ExternalName"));
            set(s, "/spec/externalTrafficPolicy", json!("Local"));
        }),
        case("externalTrafficPolicy is required on NodePort service", 1, |s| {
            set(s, "/spec/type", json!("NodePort"));
        })
        .also(&["spec.externalTrafficPolicy"]),
        case("externalTrafficPolicy is required on LoadBalancer service", 1, |s| {
            set(s, "/spec/type", json!("LoadBalancer"));
        })
        .also(&["spec.externalTrafficPolicy"]),
        case("externalTrafficPolicy is required on ClusterIP service with externalIPs", 1, |s| {
            set(s, "/spec/type", json!("ClusterIP"));
            // Upstream's address has a comma ("1.2.3,4"); only the traffic-policy
            // check runs here, so its validity does not matter.
            set(s, "/spec/externalIPs", json!(["1.2.3,4"]));
        })
        .also(&["spec.externalTrafficPolicy"]),
    ]
}
