//! Endpoints (core/v1) and EndpointSlices (discovery.k8s.io/v1): defaults,
//! and validation in Kubernetes' order and words.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::{Generation, Rules, str_at};
use crate::meta;
use crate::validation::ip::{endpoint_ip, is_ipv6_string, legacy_ip, parse_ip_sloppy, strict_ip};
use crate::validation::{
    ErrorList, FieldError, is_dns1123_label, is_dns1123_subdomain, is_label_value, is_qualified_name, port_num_error,
    validate_labels,
};

const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

fn items<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

fn protocol_errors(protocol: Option<&str>, path: &str, errs: &mut ErrorList) {
    match protocol {
        None | Some("") => errs.push(FieldError::required(path, "")),
        Some(p) if !PROTOCOLS.contains(&p) => errs.push(FieldError::not_supported(path, p, PROTOCOLS)),
        Some(_) => {}
    }
}

fn app_protocol_errors(port: &Value, path: &str, errs: &mut ErrorList) {
    if let Some(app) = port.get("appProtocol").and_then(Value::as_str) {
        errs.invalid_each(path, app, is_qualified_name(app));
    }
}

pub struct EndpointsRules;

fn validate_endpoint_address(a: &Value, path: &str, errs: &mut ErrorList) {
    let ip = str_at(a, &["ip"]);
    let ip_path = format!("{path}.ip");
    errs.extend(legacy_ip(&ip_path, ip, &[]));
    let hostname = str_at(a, &["hostname"]);
    if !hostname.is_empty() {
        errs.invalid_each(&format!("{path}.hostname"), hostname, is_dns1123_label(hostname));
    }
    if let Some(node) = a.get("nodeName").and_then(Value::as_str) {
        errs.invalid_each(&format!("{path}.nodeName"), node, is_dns1123_subdomain(node));
    }
    errs.extend(endpoint_ip(&ip_path, ip));
}

/// `ValidateEndpoints` without the metadata.
fn validate_subsets(obj: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    for (i, ss) in items(obj, "subsets").iter().enumerate() {
        let path = format!("subsets[{i}]");
        let (ready, not_ready) = (items(ss, "addresses"), items(ss, "notReadyAddresses"));
        if ready.is_empty() && not_ready.is_empty() {
            errs.push(FieldError::required(&path, "must specify `addresses` or `notReadyAddresses`"));
        }
        for (j, a) in ready.iter().enumerate() {
            validate_endpoint_address(a, &format!("{path}.addresses[{j}]"), &mut errs);
        }
        for (j, a) in not_ready.iter().enumerate() {
            validate_endpoint_address(a, &format!("{path}.notReadyAddresses[{j}]"), &mut errs);
        }
        let ports = items(ss, "ports");
        for (k, p) in ports.iter().enumerate() {
            let at = format!("{path}.ports[{k}]");
            let name = str_at(p, &["name"]);
            if ports.len() > 1 && name.is_empty() {
                errs.push(FieldError::required(format!("{at}.name"), ""));
            } else if !name.is_empty() {
                errs.invalid_each(&format!("{at}.name"), name, is_dns1123_label(name));
            }
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            if let Some(m) = port_num_error(port) {
                errs.push(FieldError::invalid(format!("{at}.port"), port, m));
            }
            protocol_errors(p.get("protocol").and_then(Value::as_str), &format!("{at}.protocol"), &mut errs);
            app_protocol_errors(p, &format!("{at}.appProtocol"), &mut errs);
        }
    }
    errs
}

impl Rules for EndpointsRules {
    fn default(&self, obj: &mut Value) {
        for subset in obj.get_mut("subsets").and_then(Value::as_array_mut).into_iter().flatten() {
            for p in subset.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
                meta::default_at(p, &[], "protocol", "TCP");
            }
        }
    }

    fn validate(&self, obj: &Value) -> ErrorList {
        validate_subsets(obj)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> ErrorList {
        // Subsets stored before a rule tightened stay writable as they are.
        if new.get("subsets") == old.get("subsets") { ErrorList::new() } else { validate_subsets(new) }
    }

    fn allow_create_on_update(&self) -> bool {
        true
    }

    fn warnings(&self, _obj: &Value) -> Vec<String> {
        vec!["v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice".into()]
    }
}

pub struct EndpointSliceRules;

const ADDRESS_TYPES: &[&str] = &["FQDN", "IPv4", "IPv6"];
const MAX_PORTS: usize = 20000;
const MAX_ENDPOINTS: usize = 1000;
const MAX_ADDRESSES: usize = 100;
const MAX_TOPOLOGY_LABELS: usize = 16;
const MAX_HINTS: usize = 8;
use crate::wellknown::{
    LABEL_ENDPOINTSLICE_MANAGED_BY as MANAGED_BY, LABEL_HOSTNAME, LABEL_TOPOLOGY_ZONE as LABEL_ZONE,
};

/// `IsFullyQualifiedDomainName`: every problem in one message, as Kubernetes joins them.
fn fqdn_errors(path: &str, name: &str, errs: &mut ErrorList) {
    if name.is_empty() {
        errs.push(FieldError::required(path, ""));
        return;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    let msgs = is_dns1123_subdomain(name);
    if !msgs.is_empty() {
        errs.push(FieldError::invalid(path, name, msgs.join(",")));
    } else if !name.contains('.') {
        errs.push(FieldError::invalid(path, name, "should be a domain with at least two segments separated by dots"));
    } else if let Some((label, msgs)) =
        name.split('.').map(|l| (l, is_dns1123_label(l))).find(|(_, msgs)| !msgs.is_empty())
    {
        errs.push(FieldError::invalid(path, label, msgs.join(",")));
    }
}

fn validate_slice_address(address_type: &str, address: &str, list_path: &str, j: usize, errs: &mut ErrorList) {
    let path = format!("{list_path}[{j}]");
    let (ip_errs, want_v6) = match address_type {
        "IPv4" => (legacy_ip(&path, address, &[]), false),
        "IPv6" => (strict_ip(&path, address), true),
        "FQDN" => return fqdn_errors(&path, address, errs),
        _ => return,
    };
    if !ip_errs.is_empty() {
        errs.extend(ip_errs);
        return;
    }
    if is_ipv6_string(address) != want_v6 {
        let family = if want_v6 { "IPv6" } else { "IPv4" };
        errs.push(FieldError::invalid(list_path, address, format!("must be an {family} address")));
    }
    errs.extend(endpoint_ip(&path, address));
}

fn validate_hints(hints: &Value, path: &str, errs: &mut ErrorList) {
    for (key, check) in [("forZones", true), ("forNodes", false)] {
        let list = items(hints, key);
        let at = format!("{path}.{key}");
        if list.len() > MAX_HINTS {
            errs.push(FieldError::too_many(at, list.len(), MAX_HINTS));
            return;
        }
        let mut seen = HashSet::new();
        for (k, h) in list.iter().enumerate() {
            let name = str_at(h, &["name"]);
            let name_path = format!("{at}[{k}].name");
            if !seen.insert(name) {
                errs.push(FieldError::duplicate(&name_path, name));
            }
            let msgs = if check { is_label_value(name) } else { is_dns1123_subdomain(name) };
            errs.invalid_each(&name_path, name, msgs);
        }
    }
}

fn validate_slice_endpoints(obj: &Value, late: &mut ErrorList, errs: &mut ErrorList) {
    let address_type = str_at(obj, &["addressType"]);
    let endpoints = items(obj, "endpoints");
    if endpoints.len() > MAX_ENDPOINTS {
        errs.push(FieldError::too_many("endpoints", endpoints.len(), MAX_ENDPOINTS));
        return;
    }
    for (i, ep) in endpoints.iter().enumerate() {
        let path = format!("endpoints[{i}]");
        let addresses = items(ep, "addresses");
        let list_path = format!("{path}.addresses");
        // Declarative validation owns these two rules in 1.37, and reports them last.
        if addresses.is_empty() {
            late.push(FieldError::required(&list_path, ""));
        } else if addresses.len() > MAX_ADDRESSES {
            late.push(FieldError::too_many(&list_path, addresses.len(), MAX_ADDRESSES));
        }
        for (j, a) in addresses.iter().enumerate() {
            validate_slice_address(address_type, a.as_str().unwrap_or_default(), &list_path, j, errs);
        }
        if let Some(node) = ep.get("nodeName").and_then(Value::as_str) {
            errs.invalid_each(&format!("{path}.nodeName"), node, is_dns1123_subdomain(node));
        }
        let topology = ep.get("deprecatedTopology").and_then(Value::as_object);
        let topo_path = format!("{path}.deprecatedTopology");
        if let Some(t) = topology {
            if t.len() > MAX_TOPOLOGY_LABELS {
                errs.push(FieldError::too_many(&topo_path, t.len(), MAX_TOPOLOGY_LABELS));
            }
            errs.extend(validate_labels(Some(t), &topo_path));
            if t.contains_key(LABEL_ZONE) {
                errs.push(FieldError::internal(
                    format!("{topo_path}[{LABEL_ZONE}]"),
                    "reserved key was not removed in conversion",
                ));
            }
        }
        if let Some(h) = ep.get("hostname").and_then(Value::as_str) {
            errs.invalid_each(&format!("{path}.hostname"), h, is_dns1123_label(h));
        }
        if let Some(hints) = ep.get("hints").filter(|h| h.is_object()) {
            validate_hints(hints, &format!("{path}.hints"), errs);
        }
    }
}

fn validate_slice_ports(obj: &Value, errs: &mut ErrorList) {
    let ports = items(obj, "ports");
    if ports.len() > MAX_PORTS {
        errs.push(FieldError::too_many("ports", ports.len(), MAX_PORTS));
        return;
    }
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let at = format!("ports[{i}]");
        let name = str_at(p, &["name"]);
        if !name.is_empty() {
            errs.invalid_each(&format!("{at}.name"), name, is_dns1123_label(name));
        }
        if !names.insert(name) {
            errs.push(FieldError::duplicate(format!("{at}.name"), name));
        }
        protocol_errors(p.get("protocol").and_then(Value::as_str), &format!("{at}.protocol"), errs);
        app_protocol_errors(p, &format!("{at}.appProtocol"), errs);
    }
}

/// `ValidateEndpointSlice` without the metadata; endpoints an update leaves alone are not checked again.
fn validate_slice(obj: &Value, old: Option<&Value>) -> ErrorList {
    let mut errs = ErrorList::new();
    let mut late = ErrorList::new();
    let address_type = str_at(obj, &["addressType"]);
    if address_type.is_empty() {
        late.push(FieldError::required("addressType", ""));
    } else if !ADDRESS_TYPES.contains(&address_type) {
        late.push(FieldError::not_supported("addressType", address_type, ADDRESS_TYPES));
    }
    validate_slice_ports(obj, &mut errs);
    if old.is_none_or(|o| o.get("endpoints") != obj.get("endpoints")) {
        validate_slice_endpoints(obj, &mut late, &mut errs);
    }
    if let Some(old) = old
        && str_at(old, &["addressType"]) != address_type
    {
        late.push(FieldError::invalid("addressType", Value::Null, "field is immutable"));
    }
    errs.extend(late);
    errs
}

/// Writes through v1 drop `deprecatedTopology`; a node name it carried moves
/// to `nodeName` when the old slice already knew that node.
fn drop_topology(new: &mut Value, old: Option<&Value>) {
    if let Some(old) = old
        && old.get("endpoints") == new.get("endpoints")
    {
        return;
    }
    let known: HashSet<String> = old
        .map(|o| items(o, "endpoints"))
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e.pointer("/deprecatedTopology/kubernetes.io~1hostname").and_then(Value::as_str))
        .map(String::from)
        .collect();
    for ep in new.get_mut("endpoints").and_then(Value::as_array_mut).into_iter().flatten() {
        let Some(ep) = ep.as_object_mut() else { continue };
        let Some(topology) = ep.remove("deprecatedTopology") else { continue };
        let host = topology.get(LABEL_HOSTNAME).and_then(Value::as_str).unwrap_or_default();
        if ep.get("nodeName").is_none_or(Value::is_null)
            && known.contains(host)
            && is_dns1123_subdomain(host).is_empty()
        {
            ep.insert("nodeName".into(), json!(host));
        }
    }
}

impl Rules for EndpointSliceRules {
    fn generation(&self) -> Generation {
        Generation::ContentOrLabels
    }

    fn default(&self, obj: &mut Value) {
        for p in obj.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
            meta::default_at(p, &[], "protocol", "TCP");
            meta::default_at(p, &[], "name", "");
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        drop_topology(obj, None);
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        drop_topology(new, Some(old));
    }

    fn validate(&self, obj: &Value) -> ErrorList {
        validate_slice(obj, None)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> ErrorList {
        validate_slice(new, Some(old))
    }

    fn warnings(&self, obj: &Value) -> Vec<String> {
        let mut w = Vec::new();
        let address_type = str_at(obj, &["addressType"]);
        if address_type == "FQDN" {
            w.push("spec.addressType: FQDN endpoints are deprecated".into());
        }
        let managed = obj
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .and_then(|l: &Map<String, Value>| l.get(MANAGED_BY).and_then(Value::as_str));
        let ours =
            matches!(managed, Some("endpointslice-controller.k8s.io" | "endpointslicemirroring-controller.k8s.io"));
        if !ours && address_type != "FQDN" {
            for (i, ep) in items(obj, "endpoints").iter().enumerate() {
                for (j, a) in items(ep, "addresses").iter().enumerate() {
                    let a = a.as_str().unwrap_or_default();
                    if parse_ip_sloppy(a).is_some() {
                        w.extend(crate::validation::ip::ip_warnings(&format!("endpoints[{i}].addresses[{j}]"), a));
                    }
                }
            }
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(errs: ErrorList) -> Vec<String> {
        errs.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn endpoints_validation() {
        let e = json!({"subsets": [
            {"addresses": [{"ip": "foo"}, {"ip": "10.0.0.1", "hostname": "a.b"}],
             "ports": [{"port": 80, "protocol": "TCP"}, {"name": "b", "port": 0, "protocol": "HTTP"}]},
            {}
        ]});
        assert_eq!(
            msgs(EndpointsRules.validate(&e)),
            [
                r#"subsets[0].addresses[0].ip: Invalid value: "foo": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"#,
                r#"subsets[0].addresses[0].ip: Invalid value: "foo": must be a valid IP address"#,
                r#"subsets[0].addresses[1].hostname: Invalid value: "a.b": must not contain dots"#,
                "subsets[0].ports[0].name: Required value",
                "subsets[0].ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                r#"subsets[0].ports[1].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP""#,
                "subsets[1]: Required value: must specify `addresses` or `notReadyAddresses`",
            ]
        );
        // Unchanged subsets are not judged again.
        assert!(EndpointsRules.validate_update(&e, &e).is_empty());
    }

    #[test]
    fn slice_validation() {
        let s = json!({"addressType": "IPv4",
            "ports": [{"name": "http", "protocol": "TCP", "port": 80}, {"name": "http", "protocol": "TCP"}],
            "endpoints": [{"addresses": ["fd00::1"]}, {"addresses": []}, {"addresses": ["10.0.0.1"], "hostname": "x.y"}]});
        assert_eq!(
            msgs(EndpointSliceRules.validate(&s)),
            [
                r#"ports[1].name: Duplicate value: "http""#,
                r#"endpoints[0].addresses: Invalid value: "fd00::1": must be an IPv4 address"#,
                r#"endpoints[2].hostname: Invalid value: "x.y": must not contain dots"#,
                "endpoints[1].addresses: Required value",
            ]
        );
        let bad_type = json!({"addressType": "IP", "endpoints": [{"addresses": ["10.0.0.1"]}]});
        assert_eq!(
            msgs(EndpointSliceRules.validate(&bad_type)),
            [r#"addressType: Unsupported value: "IP": supported values: "FQDN", "IPv4", "IPv6""#]
        );
        let v6 = json!({"addressType": "IPv6", "endpoints": [{"addresses": ["FD00::1", "fe80::1"]}]});
        assert_eq!(
            msgs(EndpointSliceRules.validate(&v6)),
            [
                r#"endpoints[0].addresses[0]: Invalid value: "FD00::1": must be in canonical form ("fd00::1")"#,
                r#"endpoints[0].addresses[1]: Invalid value: "fe80::1": may not be in the link-local range (169.254.0.0/16, fe80::/10)"#,
            ]
        );
        let fqdn = json!({"addressType": "FQDN", "endpoints": [{"addresses": ["example.com.", "single"]}]});
        assert_eq!(
            msgs(EndpointSliceRules.validate(&fqdn)),
            [
                r#"endpoints[0].addresses[1]: Invalid value: "single": should be a domain with at least two segments separated by dots"#
            ]
        );
        let mut changed = s.clone();
        changed["addressType"] = json!("IPv6");
        changed["endpoints"] = json!([{"addresses": ["fd00::1"]}]);
        changed["ports"] = json!([]);
        assert_eq!(
            msgs(EndpointSliceRules.validate_update(&changed, &s)),
            ["addressType: Invalid value: null: field is immutable"]
        );
    }

    #[test]
    fn v1_writes_drop_topology() {
        let mut s =
            json!({"endpoints": [{"addresses": ["10.0.0.1"], "deprecatedTopology": {"kubernetes.io/hostname": "n1"}}]});
        EndpointSliceRules.prepare_for_create(&mut s);
        assert_eq!(s["endpoints"][0], json!({"addresses": ["10.0.0.1"]}));
        let old =
            json!({"endpoints": [{"addresses": ["10.0.0.2"], "deprecatedTopology": {"kubernetes.io/hostname": "n1"}}]});
        let mut s =
            json!({"endpoints": [{"addresses": ["10.0.0.1"], "deprecatedTopology": {"kubernetes.io/hostname": "n1"}}]});
        EndpointSliceRules.prepare_for_update(&mut s, &old);
        assert_eq!(s["endpoints"][0], json!({"addresses": ["10.0.0.1"], "nodeName": "n1"}));
    }
}
