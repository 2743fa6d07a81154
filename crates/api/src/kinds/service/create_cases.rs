//! Kubernetes' TestValidateServiceCreate cases (v1.3x), ported: each case tweaks the valid base Service; `errs` is how many errors validation must report.
//!
//! Read from pkg/apis/core/validation/validation_test.go at commit
//! 926e9fc8b2627b351e7713d4db8afd27c8903f00 (the zongruxie4/kubernetes fork,
//! ≈ v1.36 development); gate defaults from pkg/features/kube_features.go at
//! 044f65ca5c2f21af4e431f9d34aaf6826bcf9dcf (1.36 table).
//!
//! Upstream runs each case with three gates set explicitly: PreferSameTrafficDistribution
//! (off, at emulated version 1.34, unless the case asks for it), RelaxedServiceNameValidation
//! (off unless asked for) and StrictIPCIDRValidation (on unless the case asks for legacy
//! validation). For Kubernetes 1.37 all three are on by default (GA since 1.35, beta-on since
//! 1.36, beta-on since 1.36), so the cases whose result depends on one of them being off are
//! skipped below; cases whose result does not depend on those gates are kept as they are.

use serde_json::json;

use super::cases::{Case, case, del, push, set, touch};

/// The `service.beta.kubernetes.io/load-balancer-source-ranges` annotation.
const LB_SOURCE_RANGES: &str = "service.beta.kubernetes.io/load-balancer-source-ranges";
/// The deprecated `service.kubernetes.io/topology-aware-hints` annotation.
const TOPOLOGY_AWARE_HINTS: &str = "service.kubernetes.io/topology-aware-hints";
/// The `service.kubernetes.io/topology-mode` annotation.
const TOPOLOGY_MODE: &str = "service.kubernetes.io/topology-mode";

/// Sets an annotation (keys with `/` can't go through a JSON pointer unescaped).
fn annotate(s: &mut serde_json::Value, key: &str, val: &str) {
    touch("/metadata/annotations");
    s["metadata"]["annotations"][key] = json!(val);
}

/// type LoadBalancer, externalTrafficPolicy Cluster, allocateLoadBalancerNodePorts true.
fn lb(s: &mut serde_json::Value) {
    set(s, "/spec/type", json!("LoadBalancer"));
    set(s, "/spec/externalTrafficPolicy", json!("Cluster"));
    set(s, "/spec/allocateLoadBalancerNodePorts", json!(true));
}

/// type NodePort, externalTrafficPolicy Cluster.
fn node_port(s: &mut serde_json::Value) {
    set(s, "/spec/type", json!("NodePort"));
    set(s, "/spec/externalTrafficPolicy", json!("Cluster"));
}

/// clusterIP and clusterIPs together.
fn cluster_ips(s: &mut serde_json::Value, first: &str, all: serde_json::Value) {
    set(s, "/spec/clusterIP", json!(first));
    set(s, "/spec/clusterIPs", all);
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        case("default", 0, |_s| {}),
        // Upstream runs this one with StrictIPCIDRValidation off; the base Service has no
        // IPs, so the result is the same with the 1.37 default (on).
        case("default, with legacy IP validation", 0, |_s| {}),
        case("missing namespace", 1, |s| set(s, "/metadata/namespace", json!(""))),
        case("invalid namespace", 1, |s| set(s, "/metadata/namespace", json!("-123"))),
        case("missing name", 1, |s| set(s, "/metadata/name", json!(""))),
        case("invalid name", 1, |s| set(s, "/metadata/name", json!("-123"))),
        case("too long name", 1, |s| set(s, "/metadata/name", json!("a".repeat(64)))),
        case("invalid generateName", 1, |s| set(s, "/metadata/generateName", json!("-123"))),
        case("too long generateName", 1, |s| set(s, "/metadata/generateName", json!("a".repeat(64)))),
        case("invalid label", 1, |s| {
            touch("/metadata/labels");
            s["metadata"]["labels"]["NoUppercaseOrSpecialCharsLike=Equals"] = json!("bar");
        }),
        case("invalid annotation", 1, |s| annotate(s, "NoSpecialCharsLike=Equals", "bar")),
        case("nil selector", 0, |s| del(s, "/spec/selector")),
        case("invalid selector", 1, |s| {
            touch("/spec/selector");
            s["spec"]["selector"]["NoSpecialCharsLike=Equals"] = json!("bar");
        }),
        case("missing session affinity", 1, |s| set(s, "/spec/sessionAffinity", json!(""))),
        case("missing type", 1, |s| set(s, "/spec/type", json!(""))),
        case("missing ports", 1, |s| del(s, "/spec/ports")),
        case("missing ports but headless", 0, |s| {
            del(s, "/spec/ports");
            cluster_ips(s, "None", json!(["None"]));
        }),
        case("empty port[0] name", 0, |s| set(s, "/spec/ports/0/name", json!(""))),
        case("empty port[1] name", 1, |s| {
            push(s, "/spec/ports", json!({"name": "", "protocol": "TCP", "port": 12345, "targetPort": 12345}));
        }),
        case("empty multi-port port[0] name", 1, |s| {
            set(s, "/spec/ports/0/name", json!(""));
            push(s, "/spec/ports", json!({"name": "p", "protocol": "TCP", "port": 12345, "targetPort": 12345}));
        }),
        case("invalid port name", 1, |s| set(s, "/spec/ports/0/name", json!("INVALID"))),
        case("missing protocol", 1, |s| set(s, "/spec/ports/0/protocol", json!(""))),
        case("invalid protocol", 1, |s| set(s, "/spec/ports/0/protocol", json!("INVALID"))),
        case("invalid cluster ip", 1, |s| cluster_ips(s, "invalid", json!(["invalid"]))),
        // skipped: valid legacy cluster ip with legacy validation: needs StrictIPCIDRValidation=false
        case("invalid legacy cluster ip with strict validation", 1, |s| {
            cluster_ips(s, "001.002.003.004", json!(["001.002.003.004"]));
        }),
        case("missing port", 1, |s| set(s, "/spec/ports/0/port", json!(0))),
        case("invalid port", 1, |s| set(s, "/spec/ports/0/port", json!(65536))),
        case("invalid TargetPort int", 1, |s| set(s, "/spec/ports/0/targetPort", json!(65536))),
        case("valid port headless", 0, |s| {
            set(s, "/spec/ports/0/port", json!(11722));
            set(s, "/spec/ports/0/targetPort", json!(11722));
            cluster_ips(s, "None", json!(["None"]));
        }),
        // In the v1 API, targetPorts on headless Services are tolerated (upstream keeps 0).
        case("invalid port headless 1", 0, |s| {
            set(s, "/spec/ports/0/port", json!(11722));
            set(s, "/spec/ports/0/targetPort", json!(11721));
            cluster_ips(s, "None", json!(["None"]));
        }),
        case("invalid port headless 2", 0, |s| {
            set(s, "/spec/ports/0/port", json!(11722));
            set(s, "/spec/ports/0/targetPort", json!("target"));
            cluster_ips(s, "None", json!(["None"]));
        }),
        case("invalid externalIPs localhost", 1, |s| {
            set(s, "/spec/externalTrafficPolicy", json!("Cluster"));
            set(s, "/spec/externalIPs", json!(["127.0.0.1"]));
        }),
        case("invalid externalIPs unspecified", 1, |s| {
            set(s, "/spec/externalTrafficPolicy", json!("Cluster"));
            set(s, "/spec/externalIPs", json!(["0.0.0.0"]));
        }),
        case("invalid externalIPs loopback", 1, |s| {
            set(s, "/spec/externalTrafficPolicy", json!("Cluster"));
            set(s, "/spec/externalIPs", json!(["127.0.0.1"]));
        }),
        case("invalid externalIPs host", 1, |s| {
            set(s, "/spec/externalTrafficPolicy", json!("Cluster"));
            set(s, "/spec/externalIPs", json!(["myhost.mydomain"]));
        }),
        // skipped: valid legacy externalIPs with legacy validation: needs StrictIPCIDRValidation=false
        case("invalid legacy externalIPs with strict validation", 1, |s| {
            set(s, "/spec/externalTrafficPolicy", json!("Cluster"));
            set(s, "/spec/externalIPs", json!(["001.002.003.004"]));
        }),
        case("valid externalIPs", 0, |s| {
            set(s, "/spec/externalTrafficPolicy", json!("Cluster"));
            set(s, "/spec/externalIPs", json!(["1.2.3.4"]));
        }),
        case("dup port name", 1, |s| {
            set(s, "/spec/ports/0/name", json!("p"));
            push(s, "/spec/ports", json!({"name": "p", "port": 12345, "protocol": "TCP", "targetPort": 12345}));
        }),
        case("valid load balancer protocol UDP 1", 0, |s| {
            lb(s);
            set(s, "/spec/ports/0/protocol", json!("UDP"));
        }),
        case("valid load balancer protocol UDP 2", 0, |s| {
            lb(s);
            set(s, "/spec/ports/0", json!({"name": "q", "port": 12345, "protocol": "UDP", "targetPort": 12345}));
        }),
        case("load balancer with mix protocol", 0, |s| {
            lb(s);
            push(s, "/spec/ports", json!({"name": "q", "port": 12345, "protocol": "UDP", "targetPort": 12345}));
        }),
        case("valid 1", 0, |_s| {}),
        case("valid 2", 0, |s| {
            set(s, "/spec/ports/0/protocol", json!("UDP"));
            set(s, "/spec/ports/0/targetPort", json!(12345));
        }),
        case("valid 3", 0, |s| set(s, "/spec/ports/0/targetPort", json!("http"))),
        case("valid cluster ip - none ", 0, |s| cluster_ips(s, "None", json!(["None"]))),
        case("valid cluster ip - empty", 0, |s| {
            del(s, "/spec/clusterIPs");
            set(s, "/spec/ports/0/targetPort", json!("http"));
        }),
        case("valid type - clusterIP", 0, |s| set(s, "/spec/type", json!("ClusterIP"))),
        case("valid type - loadbalancer", 0, lb),
        case("valid type - loadbalancer with allocateLoadBalancerNodePorts=false", 0, |s| {
            set(s, "/spec/type", json!("LoadBalancer"));
            set(s, "/spec/externalTrafficPolicy", json!("Cluster"));
            set(s, "/spec/allocateLoadBalancerNodePorts", json!(false));
        }),
        // Kubernetes names this field without its `spec.` parent.
        case("invalid type - missing AllocateLoadBalancerNodePorts for loadbalancer type", 1, |s| {
            set(s, "/spec/type", json!("LoadBalancer"));
            set(s, "/spec/externalTrafficPolicy", json!("Cluster"));
        })
        .also(&["allocateLoadBalancerNodePorts"]),
        case("valid type loadbalancer 2 ports", 0, |s| {
            lb(s);
            push(s, "/spec/ports", json!({"name": "q", "port": 12345, "protocol": "TCP", "targetPort": 12345}));
        }),
        case("valid external load balancer 2 ports", 0, |s| {
            lb(s);
            push(s, "/spec/ports", json!({"name": "q", "port": 12345, "protocol": "TCP", "targetPort": 12345}));
        }),
        case("duplicate nodeports", 1, |s| {
            node_port(s);
            push(s, "/spec/ports", json!({"name": "q", "port": 1, "protocol": "TCP", "nodePort": 1, "targetPort": 1}));
            push(s, "/spec/ports", json!({"name": "r", "port": 2, "protocol": "TCP", "nodePort": 1, "targetPort": 2}));
        }),
        case("duplicate nodeports (different protocols)", 0, |s| {
            node_port(s);
            push(s, "/spec/ports", json!({"name": "q", "port": 1, "protocol": "TCP", "nodePort": 1, "targetPort": 1}));
            push(s, "/spec/ports", json!({"name": "r", "port": 2, "protocol": "UDP", "nodePort": 1, "targetPort": 2}));
            push(s, "/spec/ports", json!({"name": "s", "port": 3, "protocol": "SCTP", "nodePort": 1, "targetPort": 3}));
        }),
        case("invalid duplicate ports (with same protocol)", 1, |s| {
            set(s, "/spec/type", json!("ClusterIP"));
            push(s, "/spec/ports", json!({"name": "q", "port": 12345, "protocol": "TCP", "targetPort": 8080}));
            push(s, "/spec/ports", json!({"name": "r", "port": 12345, "protocol": "TCP", "targetPort": 80}));
        }),
        case("valid duplicate ports (with different protocols)", 0, |s| {
            set(s, "/spec/type", json!("ClusterIP"));
            push(s, "/spec/ports", json!({"name": "q", "port": 12345, "protocol": "TCP", "targetPort": 8080}));
            push(s, "/spec/ports", json!({"name": "r", "port": 12345, "protocol": "UDP", "targetPort": 80}));
            push(s, "/spec/ports", json!({"name": "s", "port": 12345, "protocol": "SCTP", "targetPort": 8088}));
        }),
        case("valid type - cluster", 0, |s| set(s, "/spec/type", json!("ClusterIP"))),
        case("valid type - nodeport", 0, node_port),
        case("valid type - loadbalancer with allocateLoadBalancerNodePorts=true", 0, lb),
        case("valid type loadbalancer 2 ports", 0, |s| {
            lb(s);
            push(s, "/spec/ports", json!({"name": "q", "port": 12345, "protocol": "TCP", "targetPort": 12345}));
        }),
        case("valid type loadbalancer with NodePort", 0, |s| {
            lb(s);
            push(
                s,
                "/spec/ports",
                json!({"name": "q", "port": 12345, "protocol": "TCP", "nodePort": 12345, "targetPort": 12345}),
            );
        }),
        case("valid type=NodePort service with NodePort", 0, |s| {
            node_port(s);
            push(
                s,
                "/spec/ports",
                json!({"name": "q", "port": 12345, "protocol": "TCP", "nodePort": 12345, "targetPort": 12345}),
            );
        }),
        case("valid type=NodePort service without NodePort", 0, |s| {
            node_port(s);
            push(s, "/spec/ports", json!({"name": "q", "port": 12345, "protocol": "TCP", "targetPort": 12345}));
        }),
        case("valid cluster service without NodePort", 0, |s| {
            set(s, "/spec/type", json!("ClusterIP"));
            push(s, "/spec/ports", json!({"name": "q", "port": 12345, "protocol": "TCP", "targetPort": 12345}));
        }),
        case("invalid cluster service with NodePort", 1, |s| {
            set(s, "/spec/type", json!("ClusterIP"));
            push(
                s,
                "/spec/ports",
                json!({"name": "q", "port": 12345, "protocol": "TCP", "nodePort": 12345, "targetPort": 12345}),
            );
        }),
        case("invalid public service with duplicate NodePort", 1, |s| {
            node_port(s);
            push(s, "/spec/ports", json!({"name": "p1", "port": 1, "protocol": "TCP", "nodePort": 1, "targetPort": 1}));
            push(s, "/spec/ports", json!({"name": "p2", "port": 2, "protocol": "TCP", "nodePort": 1, "targetPort": 2}));
        }),
        case("valid type=LoadBalancer", 0, |s| {
            lb(s);
            push(s, "/spec/ports", json!({"name": "q", "port": 12345, "protocol": "TCP", "targetPort": 12345}));
        }),
        // Port 10250 may be exposed externally.
        case("valid port type=LoadBalancer", 0, |s| {
            lb(s);
            push(s, "/spec/ports", json!({"name": "kubelet", "port": 10250, "protocol": "TCP", "targetPort": 12345}));
        }),
        case("valid LoadBalancer source range annotation", 0, |s| {
            lb(s);
            annotate(s, LB_SOURCE_RANGES, "1.2.3.0/24,  5.6.0.0/16");
        }),
        case("valid empty LoadBalancer source range annotation", 0, |s| {
            lb(s);
            annotate(s, LB_SOURCE_RANGES, "");
        }),
        case("valid whitespace-only LoadBalancer source range annotation", 0, |s| {
            lb(s);
            annotate(s, LB_SOURCE_RANGES, "  ");
        }),
        case("invalid LoadBalancer source range annotation (hostname)", 1, |s| {
            lb(s);
            annotate(s, LB_SOURCE_RANGES, "foo.bar");
        }),
        case("invalid LoadBalancer source range annotation (invalid CIDR)", 1, |s| {
            lb(s);
            annotate(s, LB_SOURCE_RANGES, "1.2.3.4/33");
        }),
        case("invalid LoadBalancer source range annotation for non LoadBalancer type service", 1, |s| {
            annotate(s, LB_SOURCE_RANGES, "1.2.3.0/24");
        }),
        case("invalid empty-but-set LoadBalancer source range annotation for non LoadBalancer type service", 1, |s| {
            annotate(s, LB_SOURCE_RANGES, "");
        }),
        // skipped: valid legacy LoadBalancer source range with legacy validation: needs StrictIPCIDRValidation=false
        case("invalid legacy LoadBalancer source range with strict validation", 1, |s| {
            lb(s);
            set(s, "/spec/loadBalancerSourceRanges", json!(["001.002.003.000/24"]));
        }),
        case("invalid legacy LoadBalancer source range annotation with strict validation", 1, |s| {
            lb(s);
            annotate(s, LB_SOURCE_RANGES, "001.002.003.000/24");
        }),
        case("valid LoadBalancer source range", 0, |s| {
            lb(s);
            set(s, "/spec/loadBalancerSourceRanges", json!(["1.2.3.0/24", "5.6.0.0/16"]));
        }),
        case("valid LoadBalancer source range with whitespace", 0, |s| {
            lb(s);
            set(s, "/spec/loadBalancerSourceRanges", json!(["1.2.3.0/24  ", " 5.6.0.0/16"]));
        }),
        case("invalid empty LoadBalancer source range", 1, |s| {
            lb(s);
            set(s, "/spec/loadBalancerSourceRanges", json!(["   "]));
        }),
        case("invalid LoadBalancer source range (hostname)", 1, |s| {
            lb(s);
            set(s, "/spec/loadBalancerSourceRanges", json!(["foo.bar"]));
        }),
        case("invalid LoadBalancer source range (invalid CIDR)", 1, |s| {
            lb(s);
            set(s, "/spec/loadBalancerSourceRanges", json!(["1.2.3.4/33"]));
        }),
        case("invalid source range for non LoadBalancer type service", 1, |s| {
            set(s, "/spec/loadBalancerSourceRanges", json!(["1.2.3.0/24", "5.6.0.0/16"]));
        }),
        case("invalid source range annotation ignored with valid source range field", 0, |s| {
            lb(s);
            annotate(s, LB_SOURCE_RANGES, "foo.bar");
            set(s, "/spec/loadBalancerSourceRanges", json!(["1.2.3.0/24", "5.6.0.0/16"]));
        }),
        case("valid ExternalName", 0, |s| {
            set(s, "/spec/type", json!("ExternalName"));
            set(s, "/spec/externalName", json!("foo.bar.example.com"));
        }),
        case("valid ExternalName (trailing dot)", 0, |s| {
            set(s, "/spec/type", json!("ExternalName"));
            set(s, "/spec/externalName", json!("foo.bar.example.com."));
        }),
        case("invalid ExternalName clusterIP (valid IP)", 1, |s| {
            set(s, "/spec/type", json!("ExternalName"));
            cluster_ips(s, "1.2.3.4", json!(["1.2.3.4"]));
            set(s, "/spec/externalName", json!("foo.bar.example.com"));
        }),
        case("invalid ExternalName clusterIP (None)", 1, |s| {
            set(s, "/spec/type", json!("ExternalName"));
            cluster_ips(s, "None", json!(["None"]));
            set(s, "/spec/externalName", json!("foo.bar.example.com"));
        }),
        case("invalid ExternalName (not a DNS name)", 1, |s| {
            set(s, "/spec/type", json!("ExternalName"));
            set(s, "/spec/externalName", json!("-123"));
        }),
        case("LoadBalancer type cannot have None ClusterIP", 1, |s| {
            cluster_ips(s, "None", json!(["None"]));
            lb(s);
        }),
        case("invalid node port with clusterIP None", 1, |s| {
            node_port(s);
            push(s, "/spec/ports", json!({"name": "q", "port": 1, "protocol": "TCP", "nodePort": 1, "targetPort": 1}));
            cluster_ips(s, "None", json!(["None"]));
        }),
        // ESIPP section begins.
        case("invalid externalTraffic field", 1, |s| {
            set(s, "/spec/type", json!("LoadBalancer"));
            set(s, "/spec/allocateLoadBalancerNodePorts", json!(true));
            set(s, "/spec/externalTrafficPolicy", json!("invalid"));
        }),
        case("nil internalTraffic field when feature gate is on", 1, |s| del(s, "/spec/internalTrafficPolicy")),
        case("internalTrafficPolicy field nil when type is ExternalName", 0, |s| {
            del(s, "/spec/internalTrafficPolicy");
            set(s, "/spec/type", json!("ExternalName"));
            set(s, "/spec/externalName", json!("foo.bar.com"));
        }),
        // Tolerated for compatibility with clusters that allowed it (v1.22).
        case("internalTrafficPolicy field is set when type is ExternalName", 0, |s| {
            set(s, "/spec/internalTrafficPolicy", json!("Cluster"));
            set(s, "/spec/type", json!("ExternalName"));
            set(s, "/spec/externalName", json!("foo.bar.com"));
        }),
        case("invalid internalTraffic field", 1, |s| set(s, "/spec/internalTrafficPolicy", json!("invalid"))),
        case("internalTrafficPolicy field set to Cluster", 0, |s| {
            set(s, "/spec/internalTrafficPolicy", json!("Cluster"))
        }),
        case("internalTrafficPolicy field set to Local", 0, |s| set(s, "/spec/internalTrafficPolicy", json!("Local"))),
        case("negative healthCheckNodePort field", 1, |s| {
            set(s, "/spec/type", json!("LoadBalancer"));
            set(s, "/spec/allocateLoadBalancerNodePorts", json!(true));
            set(s, "/spec/externalTrafficPolicy", json!("Local"));
            set(s, "/spec/healthCheckNodePort", json!(-1));
        }),
        // Upstream reuses the name for the valid counterpart.
        case("negative healthCheckNodePort field", 0, |s| {
            set(s, "/spec/type", json!("LoadBalancer"));
            set(s, "/spec/allocateLoadBalancerNodePorts", json!(true));
            set(s, "/spec/externalTrafficPolicy", json!("Local"));
            set(s, "/spec/healthCheckNodePort", json!(31100));
        }),
        // ESIPP section ends.
        case("invalid timeoutSeconds field", 1, |s| {
            set(s, "/spec/type", json!("ClusterIP"));
            set(s, "/spec/sessionAffinity", json!("ClientIP"));
            set(s, "/spec/sessionAffinityConfig/clientIP/timeoutSeconds", json!(-1));
        }),
        case("sessionAffinityConfig can't be set when session affinity is None", 1, |s| {
            lb(s);
            set(s, "/spec/sessionAffinity", json!("None"));
            set(s, "/spec/sessionAffinityConfig/clientIP/timeoutSeconds", json!(90));
        }),
        // ip families validation
        case("invalid, service with invalid ipFamilies", 1, |s| {
            set(s, "/spec/ipFamilies", json!(["not-a-valid-ip-family"]));
        }),
        case("invalid, service with invalid ipFamilies (2nd)", 1, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("RequireDualStack"));
            set(s, "/spec/ipFamilies", json!(["IPv4", "not-a-valid-ip-family"]));
        }),
        // Validated in the allocation code, not here.
        case("IPFamilyPolicy(singleStack) is set for two families", 0, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("SingleStack"));
            set(s, "/spec/ipFamilies", json!(["IPv4", "IPv6"]));
        }),
        case("valid, IPFamilyPolicy(preferDualStack) is set for two families (note: alloc sets families)", 0, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("PreferDualStack"));
            set(s, "/spec/ipFamilies", json!(["IPv4", "IPv6"]));
        }),
        case("invalid, service with 2+ ipFamilies", 1, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("RequireDualStack"));
            set(s, "/spec/ipFamilies", json!(["IPv4", "IPv6", "IPv4"]));
        }),
        case("invalid, service with same ip families", 1, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("RequireDualStack"));
            set(s, "/spec/ipFamilies", json!(["IPv6", "IPv6"]));
        }),
        case("valid, nil service ipFamilies", 0, |s| del(s, "/spec/ipFamilies")),
        case("valid, service with valid ipFamilies (v4)", 0, |s| set(s, "/spec/ipFamilies", json!(["IPv4"]))),
        case("valid, service with valid ipFamilies (v6)", 0, |s| set(s, "/spec/ipFamilies", json!(["IPv6"]))),
        case("valid, service with valid ipFamilies(v4,v6)", 0, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("RequireDualStack"));
            set(s, "/spec/ipFamilies", json!(["IPv4", "IPv6"]));
        }),
        case("valid, service with valid ipFamilies(v6,v4)", 0, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("RequireDualStack"));
            set(s, "/spec/ipFamilies", json!(["IPv6", "IPv4"]));
        }),
        case("valid, service preferred dual stack with single family", 0, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("PreferDualStack"));
            set(s, "/spec/ipFamilies", json!(["IPv6"]));
        }),
        // cluster IPs (some cases are redundant upstream too)
        case("invalid, garbage single ip", 1, |s| cluster_ips(s, "garbage-ip", json!(["garbage-ip"]))),
        case("invalid, garbage ips", 2, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("RequireDualStack"));
            cluster_ips(s, "garbage-ip", json!(["garbage-ip", "garbage-second-ip"]));
        }),
        case("invalid, garbage first ip", 1, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("RequireDualStack"));
            cluster_ips(s, "garbage-ip", json!(["garbage-ip", "2001::1"]));
        }),
        case("invalid, garbage second ip", 1, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("RequireDualStack"));
            cluster_ips(s, "2001::1", json!(["2001::1", "garbage-ip"]));
        }),
        case("invalid, NONE + IP", 1, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("RequireDualStack"));
            cluster_ips(s, "None", json!(["None", "2001::1"]));
        }),
        case("invalid, IP + NONE", 1, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("RequireDualStack"));
            cluster_ips(s, "2001::1", json!(["2001::1", "None"]));
        }),
        case("invalid, EMPTY STRING + IP", 2, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("RequireDualStack"));
            cluster_ips(s, "", json!(["", "2001::1"]));
        }),
        case("invalid, IP + EMPTY STRING", 1, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("RequireDualStack"));
            cluster_ips(s, "2001::1", json!(["2001::1", ""]));
        }),
        case("invalid, same ip family (v6)", 2, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("RequireDualStack"));
            cluster_ips(s, "2001::1", json!(["2001::1", "2001::4"]));
            set(s, "/spec/ipFamilies", json!(["IPv4", "IPv6"]));
        }),
        case("invalid, same ip family (v4)", 2, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("RequireDualStack"));
            cluster_ips(s, "10.0.0.1", json!(["10.0.0.1", "10.0.0.10"]));
            set(s, "/spec/ipFamilies", json!(["IPv4", "IPv6"]));
        }),
        case("invalid, more than two ips", 1, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("RequireDualStack"));
            cluster_ips(s, "10.0.0.1", json!(["10.0.0.1", "2001::1", "10.0.0.10"]));
            set(s, "/spec/ipFamilies", json!(["IPv4", "IPv6"]));
        }),
        case(" multi ip, dualstack not set (request for downgrade)", 0, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("SingleStack"));
            cluster_ips(s, "10.0.0.1", json!(["10.0.0.1", "2001::1"]));
            set(s, "/spec/ipFamilies", json!(["IPv4", "IPv6"]));
        }),
        case("valid, headless-no-selector + multi family + gate off", 0, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("RequireDualStack"));
            cluster_ips(s, "None", json!(["None"]));
            set(s, "/spec/ipFamilies", json!(["IPv4", "IPv6"]));
            del(s, "/spec/selector");
        }),
        case("valid, multi ip, single ipfamilies preferDualStack", 0, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("PreferDualStack"));
            cluster_ips(s, "10.0.0.1", json!(["10.0.0.1", "2001::1"]));
            set(s, "/spec/ipFamilies", json!(["IPv4"]));
        }),
        case("valid, multi ip, single ipfamilies (must match when provided) + requireDualStack", 0, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("RequireDualStack"));
            cluster_ips(s, "10.0.0.1", json!(["10.0.0.1", "2001::1"]));
            set(s, "/spec/ipFamilies", json!(["IPv4"]));
        }),
        case("invalid, families don't match (v4=>v6)", 1, |s| {
            cluster_ips(s, "10.0.0.1", json!(["10.0.0.1"]));
            set(s, "/spec/ipFamilies", json!(["IPv6"]));
        }),
        case("invalid, families don't match (v6=>v4)", 1, |s| {
            cluster_ips(s, "2001::1", json!(["2001::1"]));
            set(s, "/spec/ipFamilies", json!(["IPv4"]));
        }),
        case("valid. no field set", 0, |_s| {}),
        case("valid, single ip", 0, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("SingleStack"));
            cluster_ips(s, "10.0.0.1", json!(["10.0.0.1"]));
        }),
        case("valid, single family", 0, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("SingleStack"));
            set(s, "/spec/ipFamilies", json!(["IPv6"]));
        }),
        case("valid, single ip + single family", 0, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("SingleStack"));
            cluster_ips(s, "2001::1", json!(["2001::1"]));
            set(s, "/spec/ipFamilies", json!(["IPv6"]));
        }),
        case("valid, single ip + single family (dual stack requested)", 0, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("PreferDualStack"));
            cluster_ips(s, "2001::1", json!(["2001::1"]));
            set(s, "/spec/ipFamilies", json!(["IPv6"]));
        }),
        case("valid, single ip, multi ipfamilies", 0, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("RequireDualStack"));
            cluster_ips(s, "10.0.0.1", json!(["10.0.0.1"]));
            set(s, "/spec/ipFamilies", json!(["IPv4", "IPv6"]));
        }),
        case("valid, multi ips, multi ipfamilies (4,6)", 0, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("RequireDualStack"));
            cluster_ips(s, "10.0.0.1", json!(["10.0.0.1", "2001::1"]));
            set(s, "/spec/ipFamilies", json!(["IPv4", "IPv6"]));
        }),
        case("valid, ips, multi ipfamilies (6,4)", 0, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("RequireDualStack"));
            cluster_ips(s, "2001::1", json!(["2001::1", "10.0.0.1"]));
            set(s, "/spec/ipFamilies", json!(["IPv6", "IPv4"]));
        }),
        case("valid, multi ips (6,4)", 0, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("RequireDualStack"));
            cluster_ips(s, "2001::1", json!(["2001::1", "10.0.0.1"]));
        }),
        case("valid, multi ipfamilies (6,4)", 0, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("RequireDualStack"));
            set(s, "/spec/ipFamilies", json!(["IPv6", "IPv4"]));
        }),
        case("valid, multi ips (4,6)", 0, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("RequireDualStack"));
            cluster_ips(s, "10.0.0.1", json!(["10.0.0.1", "2001::1"]));
        }),
        case("valid,  multi ipfamilies (4,6)", 0, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("RequireDualStack"));
            set(s, "/spec/ipFamilies", json!(["IPv4", "IPv6"]));
        }),
        case("valid, dual stack", 0, |s| set(s, "/spec/ipFamilyPolicy", json!("RequireDualStack"))),
        case("valid appProtocol", 0, |s| {
            set(
                s,
                "/spec/ports",
                json!([{"port": 12345, "targetPort": 12345, "protocol": "TCP", "appProtocol": "HTTP"}]),
            );
        }),
        case("valid custom appProtocol", 0, |s| {
            set(
                s,
                "/spec/ports",
                json!([{"port": 12345, "targetPort": 12345, "protocol": "TCP", "appProtocol": "example.com/protocol"}]),
            );
        }),
        case("invalid appProtocol", 1, |s| {
            set(
                s,
                "/spec/ports",
                json!([{"port": 12345, "targetPort": 12345, "protocol": "TCP", "appProtocol": "example.com/protocol_with{invalid}[characters]"}]),
            );
        }),
        case("invalid cluster ip != clusterIP in multi ip service", 1, |s| {
            set(s, "/spec/ipFamilyPolicy", json!("RequireDualStack"));
            cluster_ips(s, "10.0.0.10", json!(["10.0.0.1", "2001::1"]));
        }),
        case("invalid cluster ip != clusterIP in single ip service", 1, |s| {
            cluster_ips(s, "10.0.0.10", json!(["10.0.0.1"]));
        }),
        case("Use AllocateLoadBalancerNodePorts when type is not LoadBalancer", 1, |s| {
            set(s, "/spec/allocateLoadBalancerNodePorts", json!(true));
        }),
        case("valid LoadBalancerClass when type is LoadBalancer", 0, |s| {
            lb(s);
            set(s, "/spec/loadBalancerClass", json!("test.com/test-load-balancer-class"));
        }),
        case("invalid LoadBalancerClass", 1, |s| {
            lb(s);
            set(s, "/spec/loadBalancerClass", json!("Bad/LoadBalancerClass"));
        }),
        case("invalid: set LoadBalancerClass when type is not LoadBalancer", 1, |s| {
            set(s, "/spec/type", json!("ClusterIP"));
            set(s, "/spec/loadBalancerClass", json!("test.com/test-load-balancer-class"));
        }),
        case("topology annotations are mismatched", 1, |s| {
            annotate(s, TOPOLOGY_AWARE_HINTS, "original");
            annotate(s, TOPOLOGY_MODE, "different");
        }),
        case("valid: trafficDistribution field set to PreferClose", 0, |s| {
            set(s, "/spec/trafficDistribution", json!("PreferClose"));
        }),
        case("valid: trafficDistribution field set to PreferSameZone with feature gate", 0, |s| {
            set(s, "/spec/trafficDistribution", json!("PreferSameZone"));
        }),
        case("valid: trafficDistribution field set to PreferSameNode with feature gate", 0, |s| {
            set(s, "/spec/trafficDistribution", json!("PreferSameNode"));
        }),
        case("invalid: trafficDistribution field set to Random", 1, |s| {
            set(s, "/spec/trafficDistribution", json!("Random"));
        }),
        // skipped: invalid: trafficDistribution field set to PreferSameZone without feature gate: needs PreferSameTrafficDistribution=false
        // skipped: invalid: trafficDistribution field set to PreferSameNode without feature gate: needs PreferSameTrafficDistribution=false
        case("valid: service name begins with a digit feature gate enabled", 0, |s| {
            set(s, "/metadata/name", json!("1-test-service"));
        }),
        // skipped: invalid: service name begins with a digit feature gate disabled: needs RelaxedServiceNameValidation=false
    ]
}
