//! Runs Kubernetes' Service validation tables (ported in `create_cases`,
//! `update_cases`, `etp_cases`) and checks exact messages for the shapes
//! users meet most.

use serde_json::{Value, json};

use super::cases::{base, related, set, take_touched};
use super::*;
use crate::validation::{validate_object_meta, validate_object_meta_update};

fn create_errors(s: &Value) -> ErrorList {
    let mut errs = validate_object_meta(&s["metadata"], true, NameRule::Dns1123Label, true);
    errs.extend(validate_service(s, None));
    errs
}

fn update_errors(new: &Value, old: &Value) -> ErrorList {
    let mut errs = validate_object_meta(&new["metadata"], true, NameRule::Dns1123Label, true);
    errs.extend(validate_object_meta_update(&new["metadata"], &old["metadata"]));
    errs.extend(validate_service_update(new, old));
    errs
}

/// A case's mismatch: not as many errors as upstream counts, or an error at a
/// field the case did not touch (upstream compares counts only).
fn report(name: &str, want: usize, got: &ErrorList, touched: &[String], also: &[&str]) -> Option<String> {
    let list = || got.iter().map(|e| format!("    {e}")).collect::<Vec<_>>().join("\n");
    if got.len() != want {
        return Some(format!("{name}: want {want} errors, got {}\n{}", got.len(), list()));
    }
    let stray: Vec<&str> =
        got.iter().map(|e| e.field.as_str()).filter(|f| !related(f, touched) && !also.contains(f)).collect();
    (!stray.is_empty())
        .then(|| format!("{name}: errors at {stray:?}, which the case did not touch ({touched:?})\n{}", list()))
}

#[test]
fn kubernetes_create_cases() {
    let cases = super::create_cases::cases();
    assert!(cases.len() > 150, "the table has {} cases", cases.len());
    let mut failures = Vec::new();
    for c in cases {
        let mut s = base();
        take_touched();
        (c.tweak)(&mut s);
        failures.extend(report(c.name, c.errs, &create_errors(&s), &take_touched(), c.also));
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn kubernetes_update_cases() {
    let cases = super::update_cases::cases();
    assert!(cases.len() > 100, "the table has {} cases", cases.len());
    let mut failures = Vec::new();
    for c in cases {
        let (mut old, mut new) = (base(), base());
        take_touched();
        (c.tweak)(&mut old, &mut new);
        failures.extend(report(c.name, c.errs, &update_errors(&new, &old), &take_touched(), c.also));
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn kubernetes_external_traffic_policy_cases() {
    let mut failures = Vec::new();
    for c in super::etp_cases::cases() {
        let mut s = base();
        take_touched();
        (c.tweak)(&mut s);
        failures.extend(report(c.name, c.errs, &validate_external_traffic_policy(&s), &take_touched(), c.also));
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

fn messages(s: &Value) -> Vec<String> {
    create_errors(s).iter().map(|e| e.to_string()).collect()
}

#[test]
fn exact_messages() {
    let two_ports = json!([{"port": 80, "protocol": "TCP", "targetPort": 80, "name": "http"},
        {"port": 443, "protocol": "TCP", "targetPort": 443}]);
    let mut s = base();
    set(&mut s, "/spec/ports", two_ports);
    assert_eq!(messages(&s), ["spec.ports[1].name: Required value"]);

    let mut s = base();
    set(&mut s, "/spec/ports/0/protocol", json!("HTTP"));
    assert_eq!(
        messages(&s),
        [r#"spec.ports[0].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP""#]
    );

    let mut s = base();
    set(&mut s, "/spec/ports/0/targetPort", json!("http_alt"));
    assert_eq!(
        messages(&s),
        [
            r#"spec.ports[0].targetPort: Invalid value: "http_alt": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"#
        ]
    );

    let mut s = base();
    set(&mut s, "/spec/ports/1", json!({"name": "q", "port": 8675, "protocol": "TCP", "targetPort": 1}));
    assert_eq!(
        messages(&s),
        [
            r#"spec.ports[1]: Duplicate value: {"Name":"","Protocol":"TCP","AppProtocol":null,"Port":8675,"TargetPort":0,"NodePort":0}"#
        ]
    );

    let mut s = base();
    set(&mut s, "/spec/type", json!("ExternalName"));
    assert_eq!(messages(&s), ["spec.externalName: Required value"]);
    set(&mut s, "/spec/externalName", json!("Foo_Bar"));
    assert_eq!(messages(&s).len(), 1);
    assert!(
        messages(&s)[0].starts_with(r#"spec.externalName: Invalid value: "Foo_Bar": a lowercase RFC 1123 subdomain"#)
    );

    let mut s = base();
    set(&mut s, "/spec/type", json!("NodePort"));
    set(&mut s, "/spec/externalTrafficPolicy", json!("Cluster"));
    set(&mut s, "/spec/clusterIP", json!("None"));
    set(&mut s, "/spec/clusterIPs", json!(["None"]));
    assert_eq!(
        messages(&s),
        [r#"spec.clusterIPs[0]: Invalid value: "None": may not be set to 'None' for NodePort services"#]
    );

    let mut s = base();
    set(&mut s, "/spec/clusterIP", json!("10.0.0.1"));
    set(&mut s, "/spec/clusterIPs", json!(["10.0.0.2"]));
    assert_eq!(messages(&s), [r#"spec.clusterIPs: Invalid value: ["10.0.0.2"]: first value must match `clusterIP`"#]);

    let mut s = base();
    set(&mut s, "/spec/sessionAffinity", json!("ClientIP"));
    set(&mut s, "/spec/sessionAffinityConfig", json!({"clientIP": {"timeoutSeconds": 0}}));
    assert_eq!(
        messages(&s),
        [
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 and less than 86400"
        ]
    );

    let mut s = base();
    set(&mut s, "/spec/externalIPs", json!(["127.0.0.1"]));
    set(&mut s, "/spec/externalTrafficPolicy", json!("Cluster"));
    assert_eq!(
        messages(&s),
        [r#"spec.externalIPs[0]: Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)"#]
    );

    let mut s = base();
    set(&mut s, "/metadata/name", json!("1-digit-first"));
    assert_eq!(messages(&s), Vec::<String>::new());
}

#[test]
fn exact_update_messages() {
    let mut old = base();
    set(&mut old, "/spec/clusterIP", json!("10.0.0.1"));
    set(&mut old, "/spec/clusterIPs", json!(["10.0.0.1"]));
    let mut new = old.clone();
    set(&mut new, "/spec/clusterIP", json!("10.0.0.2"));
    set(&mut new, "/spec/clusterIPs", json!(["10.0.0.2"]));
    let msgs: Vec<String> = update_errors(&new, &old).iter().map(|e| e.to_string()).collect();
    assert_eq!(msgs, [r#"spec.clusterIPs[0]: Invalid value: ["10.0.0.2"]: may not change once set"#]);
}

#[test]
fn scheme_defaults_as_kubernetes() {
    let mut s = json!({"spec": {"ports": [{"port": 80}], "sessionAffinity": "ClientIP"}});
    ServiceRules.default(&mut s);
    assert_eq!(
        s["spec"],
        json!({"ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}], "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}}, "type": "ClusterIP",
            "internalTrafficPolicy": "Cluster"})
    );
    let mut s = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 53, "targetPort": "dns"}],
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 5}}}});
    ServiceRules.default(&mut s);
    assert_eq!(s["spec"]["externalTrafficPolicy"], "Cluster");
    assert_eq!(s["spec"]["allocateLoadBalancerNodePorts"], true);
    assert_eq!(s["spec"]["ports"][0]["targetPort"], "dns");
    assert!(s["spec"].get("sessionAffinityConfig").is_none());
    let mut s = json!({"spec": {"externalIPs": ["1.2.3.4"], "ports": [{"port": 1}]}});
    ServiceRules.default(&mut s);
    assert_eq!(s["spec"]["externalTrafficPolicy"], "Cluster");
    let mut s = json!({"spec": {"type": "ExternalName", "externalName": "a.b"}});
    ServiceRules.default(&mut s);
    assert!(s["spec"].get("internalTrafficPolicy").is_none());
}

#[test]
fn type_change_wipes_what_the_old_type_had() {
    let old = json!({"spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"],
        "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "externalTrafficPolicy": "Local",
        "healthCheckNodePort": 30500, "allocateLoadBalancerNodePorts": true,
        "ports": [{"port": 80, "nodePort": 30080}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}});
    let mut new = old.clone();
    new["spec"]["type"] = json!("ExternalName");
    new["spec"]["externalName"] = json!("example.com");
    ServiceRules.prepare_for_update(&mut new, &old);
    assert_eq!(new["spec"], json!({"type": "ExternalName", "ports": [{"port": 80}], "externalName": "example.com"}));
    assert_eq!(new["status"], json!({"loadBalancer": {}}));

    // A nodePort the user added is theirs to lose through validation, not ours to drop.
    let mut new = old.clone();
    new["spec"]["type"] = json!("ClusterIP");
    new["spec"]["ports"][0]["nodePort"] = json!(30081);
    ServiceRules.prepare_for_update(&mut new, &old);
    assert_eq!(new["spec"]["ports"][0]["nodePort"], 30081);
    assert!(new["spec"].get("externalTrafficPolicy").is_none());
}

#[test]
fn warnings_in_kubernetes_order() {
    let s = json!({"metadata": {"annotations": {"service.kubernetes.io/topology-aware-hints": "auto"}},
        "spec": {"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"], "externalIPs": ["1.2.3.4"],
        "sessionAffinity": "None", "externalName": "x"}});
    assert_eq!(
        warnings(&s),
        [
            "annotation service.kubernetes.io/topology-aware-hints is deprecated, please use service.kubernetes.io/topology-mode instead",
            "spec.externalIPs is ignored for headless services",
            "spec.externalName is ignored when spec.type is not \"ExternalName\"",
        ]
    );
}

#[test]
fn status_validation() {
    let old = json!({"spec": {"type": "ClusterIP"}, "status": {"loadBalancer": {}}});
    let new = json!({"spec": {"type": "ClusterIP"}, "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}});
    let msgs: Vec<String> = validate_status_update(&new, &old).iter().map(|e| e.to_string()).collect();
    assert_eq!(
        msgs,
        [
            "status.loadBalancer.ingress: Forbidden: may only be used when `spec.type` is 'LoadBalancer'",
            "status.loadBalancer.ingress[0].ipMode: Required value: must be specified when `ip` is set",
        ]
    );
}
