//! Pods: scheme defaults for pod specs (shared with pod templates), QoS class,
//! graceful deletion, spec immutability, the validation services rely on, and
//! binding to a node.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::{Generation, Rules, keep_status, str_at};
use crate::meta;
use crate::quantity;
use crate::status::{GroupKind, GroupResource, StatusError};
use crate::validation::{ErrorList, FieldError, is_dns1123_label, is_dns1123_subdomain, port_num_error};
use crate::wellknown::{TAINT_NODE_NOT_READY, TAINT_NODE_UNREACHABLE};

pub struct PodRules;

const DEFAULT_GRACE_SECONDS: i64 = 30;

fn is_latest(image: &str) -> bool {
    // The tag is after the last ':' that follows the last '/'; a digest pins the image.
    if image.contains('@') {
        return false;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) => tag == "latest",
        None => true,
    }
}

fn default_probe(p: &mut Value) {
    if !p.is_object() {
        return;
    }
    meta::default_at(p, &[], "timeoutSeconds", 1);
    meta::default_at(p, &[], "periodSeconds", 10);
    meta::default_at(p, &[], "successThreshold", 1);
    meta::default_at(p, &[], "failureThreshold", 3);
    if p.get("httpGet").is_some() {
        meta::default_at(p, &["httpGet"], "scheme", "HTTP");
    }
}

fn default_container(c: &mut Value) {
    meta::default_at(c, &[], "terminationMessagePath", "/dev/termination-log");
    meta::default_at(c, &[], "terminationMessagePolicy", "File");
    let image = c.get("image").and_then(Value::as_str).unwrap_or_default().to_string();
    meta::default_at(c, &[], "imagePullPolicy", if is_latest(&image) { "Always" } else { "IfNotPresent" });
    let resources = meta::object_at(c, &["resources"]);
    // Requests default to limits, resource by resource.
    if let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() {
        let requests = resources.entry("requests").or_insert_with(|| json!({}));
        if let Some(req) = requests.as_object_mut() {
            for (k, v) in limits {
                req.entry(k).or_insert(v);
            }
        }
    }
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            meta::default_at(p, &[], "protocol", "TCP");
        }
    }
    if let Some(env) = c.get_mut("env").and_then(Value::as_array_mut) {
        for e in env {
            if meta::get(e, &["valueFrom", "fieldRef"]).is_some() {
                meta::default_at(e, &["valueFrom", "fieldRef"], "apiVersion", "v1");
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe) {
            default_probe(p);
        }
    }
    for hook in ["postStart", "preStop"] {
        if meta::get(c, &["lifecycle", hook, "httpGet"]).is_some() {
            meta::default_at(c, &["lifecycle", hook, "httpGet"], "scheme", "HTTP");
        }
    }
}

const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

fn default_volume(v: &mut Value) {
    if !VOLUME_SOURCES.iter().any(|s| v.get(*s).is_some()) {
        meta::object_at(v, &["emptyDir"]);
    }
    for src in ["configMap", "secret", "downwardAPI", "projected"] {
        if v.get(src).is_some() {
            meta::default_at(v, &[src], "defaultMode", 420);
        }
    }
    if v.get("hostPath").is_some() {
        meta::default_at(v, &["hostPath"], "type", "");
    }
}

/// Kubernetes' scheme defaults for a pod spec (pods and pod templates alike).
pub fn default_pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    meta::default_at(spec, &[], "restartPolicy", "Always");
    meta::default_at(spec, &[], "terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS);
    meta::default_at(spec, &[], "dnsPolicy", "ClusterFirst");
    meta::object_at(spec, &["securityContext"]);
    meta::default_at(spec, &[], "schedulerName", "default-scheduler");
    meta::default_at(spec, &[], "enableServiceLinks", true);
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            cs.iter_mut().for_each(default_container);
        }
    }
    if let Some(vs) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
        vs.iter_mut().for_each(default_volume);
    }
}

/// The pod's QoS class from its containers' CPU and memory requests and limits.
pub fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|k| spec.get(*k).and_then(Value::as_array))
        .flatten()
        .collect();
    let get = |c: &Value, kind: &str, res: &str| -> Option<i128> {
        meta::get(c, &["resources", kind, res]).and_then(Value::as_str).and_then(quantity::milli_value)
    };
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        for res in ["cpu", "memory"] {
            let (req, lim) = (get(c, "requests", res), get(c, "limits", res));
            any |= req.is_some_and(|q| q != 0) || lim.is_some_and(|q| q != 0);
            match (req.or(lim), lim) {
                (Some(r), Some(l)) if r == l => {}
                _ => guaranteed = false,
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// An IANA service name, as container port names and named target ports must be.
pub fn is_valid_port_name(name: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if name.len() > 15 {
        errs.push(crate::validation::max_len_error(15));
    }
    if !name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-') || name.is_empty() {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !name.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".into());
    }
    if name.contains("--") {
        errs.push("must not contain consecutive hyphens (-)".into());
    }
    if name.starts_with('-') || name.ends_with('-') {
        errs.push("must not begin or end with a hyphen (-)".into());
    }
    errs
}

fn validate_ports(ports: &[Value], path: &str, errs: &mut ErrorList) {
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let name = str_at(p, &["name"]);
        if !name.is_empty() {
            let msgs = is_valid_port_name(name);
            // Names are only compared once they are valid.
            if msgs.is_empty() && !names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(format!("{at}.name"), name));
            }
            errs.invalid_each(&format!("{at}.name"), name, msgs);
        }
        let cp = p.get("containerPort").and_then(Value::as_i64).unwrap_or(0);
        if cp == 0 {
            errs.push(FieldError::required(format!("{at}.containerPort"), ""));
        } else if let Some(m) = port_num_error(cp) {
            errs.push(FieldError::invalid(format!("{at}.containerPort"), cp, m));
        }
        let hp = p.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
        if hp != 0
            && let Some(m) = port_num_error(hp)
        {
            errs.push(FieldError::invalid(format!("{at}.hostPort"), hp, m));
        }
        match p.get("protocol").and_then(Value::as_str) {
            None => errs.push(FieldError::required(format!("{at}.protocol"), "")),
            Some("TCP" | "UDP" | "SCTP") => {}
            Some(other) => {
                errs.push(FieldError::not_supported(format!("{at}.protocol"), other, &["SCTP", "TCP", "UDP"]))
            }
        }
    }
}

/// Two ports of the pod's containers may not claim the same protocol, host IP and host port.
fn validate_host_ports(containers: &[Value], path: &str, errs: &mut ErrorList) {
    let mut seen = HashSet::new();
    for (i, c) in containers.iter().enumerate() {
        for (j, p) in c.get("ports").and_then(Value::as_array).into_iter().flatten().enumerate() {
            let hp = p.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
            if hp == 0 {
                continue;
            }
            let key = format!("{}/{}/{hp}", str_at(p, &["protocol"]), str_at(p, &["hostIP"]));
            if !seen.insert(key.clone()) {
                errs.push(FieldError::duplicate(format!("{path}[{i}].ports[{j}].hostPort"), key));
            }
        }
    }
}

fn validate_containers(
    list: &[Value],
    path: &str,
    seen: &mut HashSet<String>,
    volumes: &HashSet<String>,
    errs: &mut ErrorList,
) {
    for (i, c) in list.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let name = str_at(c, &["name"]);
        if name.is_empty() {
            errs.push(FieldError::required(format!("{at}.name"), ""));
        } else {
            errs.invalid_each(&format!("{at}.name"), name, is_dns1123_label(name));
            if !seen.insert(name.to_string()) {
                errs.push(FieldError::duplicate(format!("{at}.name"), name));
            }
        }
        if str_at(c, &["image"]).trim().is_empty() {
            errs.push(FieldError::required(format!("{at}.image"), ""));
        }
        if let Some(ports) = c.get("ports").and_then(Value::as_array) {
            validate_ports(ports, &format!("{at}.ports"), errs);
        }
        for (j, m) in c.get("volumeMounts").and_then(Value::as_array).into_iter().flatten().enumerate() {
            let vname = str_at(m, &["name"]);
            if vname.is_empty() {
                errs.push(FieldError::required(format!("{at}.volumeMounts[{j}].name"), ""));
            } else if !volumes.contains(vname) {
                errs.push(FieldError::not_found(format!("{at}.volumeMounts[{j}].name"), vname));
            }
            if str_at(m, &["mountPath"]).is_empty() {
                errs.push(FieldError::required(format!("{at}.volumeMounts[{j}].mountPath"), ""));
            }
        }
        match c.get("imagePullPolicy").and_then(Value::as_str) {
            None | Some("Always" | "IfNotPresent" | "Never") => {}
            Some(other) => errs.push(FieldError::not_supported(
                format!("{at}.imagePullPolicy"),
                other,
                &["Always", "IfNotPresent", "Never"],
            )),
        }
    }
}

/// The DefaultTolerationSeconds admission plugin: a pod stays 300 s on a node
/// that turned not-ready or unreachable, unless it says otherwise.
fn default_toleration_seconds(obj: &mut Value) {
    let tolerations = meta::object_at(obj, &["spec"]).entry("tolerations").or_insert_with(|| json!([]));
    let Some(list) = tolerations.as_array_mut() else { return };
    for key in [TAINT_NODE_NOT_READY, TAINT_NODE_UNREACHABLE] {
        let tolerated = list.iter().any(|t| {
            let key_ok = t.get("key").and_then(Value::as_str).is_none_or(|k| k.is_empty() || k == key);
            let effect_ok = t.get("effect").and_then(Value::as_str).is_none_or(|e| e.is_empty() || e == "NoExecute");
            key_ok && effect_ok
        });
        if !tolerated {
            list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
}

/// Validation of a pod spec at `path` (`spec` or `spec.template.spec`).
pub fn validate_pod_spec(spec: &Value, path: &str) -> ErrorList {
    let mut errs = ErrorList::new();
    let mut volumes = HashSet::new();
    for (i, v) in spec.get("volumes").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let name = str_at(v, &["name"]);
        let at = format!("{path}.volumes[{i}].name");
        if name.is_empty() {
            errs.push(FieldError::required(at, ""));
        } else {
            errs.invalid_each(&at, name, is_dns1123_label(name));
            if !volumes.insert(name.to_string()) {
                errs.push(FieldError::duplicate(at, name));
            }
        }
    }
    let containers = spec.get("containers").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut names = HashSet::new();
    if containers.is_empty() {
        errs.push(FieldError::required(format!("{path}.containers"), ""));
    }
    if let Some(init) = spec.get("initContainers").and_then(Value::as_array) {
        validate_containers(init, &format!("{path}.initContainers"), &mut names, &volumes, &mut errs);
    }
    validate_containers(&containers, &format!("{path}.containers"), &mut names, &volumes, &mut errs);
    validate_host_ports(&containers, &format!("{path}.containers"), &mut errs);
    match spec.get("restartPolicy").and_then(Value::as_str) {
        None => errs.push(FieldError::required(format!("{path}.restartPolicy"), "")),
        Some("Always" | "OnFailure" | "Never") => {}
        Some(other) => errs.push(FieldError::not_supported(
            format!("{path}.restartPolicy"),
            other,
            &["Always", "OnFailure", "Never"],
        )),
    }
    match spec.get("dnsPolicy").and_then(Value::as_str) {
        None => errs.push(FieldError::required(format!("{path}.dnsPolicy"), "")),
        Some("ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None") => {}
        Some(other) => errs.push(FieldError::not_supported(
            format!("{path}.dnsPolicy"),
            other,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        )),
    }
    for field in ["hostname", "subdomain"] {
        let v = str_at(spec, &[field]);
        if !v.is_empty() {
            errs.invalid_each(&format!("{path}.{field}"), v, is_dns1123_label(v));
        }
    }
    let node = str_at(spec, &["nodeName"]);
    if !node.is_empty() {
        errs.invalid_each(&format!("{path}.nodeName"), node, is_dns1123_subdomain(node));
    }
    if let Some(g) = spec.get("terminationGracePeriodSeconds").and_then(Value::as_i64)
        && g < 0
    {
        errs.push(FieldError::invalid(
            format!("{path}.terminationGracePeriodSeconds"),
            g,
            "must be greater than or equal to 0",
        ));
    }
    errs
}

const MUTABLE_SPEC_MSG: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// The spec with the fields an update may change copied from `from`.
fn without_mutable(spec: &Value, from: &Value) -> Value {
    let mut s = spec.clone();
    for list in ["containers", "initContainers"] {
        if let (Some(cs), Some(src)) =
            (s.get_mut(list).and_then(Value::as_array_mut), from.get(list).and_then(Value::as_array))
        {
            for (c, o) in cs.iter_mut().zip(src) {
                if let (Some(m), Some(img)) = (c.as_object_mut(), o.get("image")) {
                    m.insert("image".into(), img.clone());
                }
            }
        }
    }
    for k in ["activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds", "schedulingGates"] {
        meta::keep_field(&mut s, from, k);
    }
    s
}

impl Rules for PodRules {
    fn generation(&self) -> Generation {
        Generation::Spec
    }

    fn has_status(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec") {
            default_pod_spec(spec);
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        default_toleration_seconds(obj);
        let qos = qos_class(obj.get("spec").unwrap_or(&Value::Null));
        let mut status = Map::new();
        status.insert("phase".into(), json!("Pending"));
        status.insert("qosClass".into(), json!(qos));
        obj["status"] = Value::Object(status);
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
    }

    fn prepare_for_status_update(&self, new: &mut Value, old: &Value) {
        meta::keep_field(new, old, "spec");
        match meta::meta(old).get("ownerReferences") {
            Some(r) => meta::set(new, "ownerReferences", r.clone()),
            None => {
                meta::remove(new, "ownerReferences");
            }
        }
        if meta::get(new, &["status", "qosClass"]).is_none()
            && let Some(q) = meta::get(old, &["status", "qosClass"]).cloned()
        {
            meta::object_at(new, &["status"]).insert("qosClass".into(), q);
        }
    }

    fn validate(&self, obj: &Value) -> ErrorList {
        validate_pod_spec(obj.get("spec").unwrap_or(&Value::Null), "spec")
    }

    fn validate_update(&self, new: &Value, old: &Value) -> ErrorList {
        let mut errs = self.validate(new);
        let (ns, os) = (new.get("spec").unwrap_or(&Value::Null), old.get("spec").unwrap_or(&Value::Null));
        if without_mutable(ns, os) != *os {
            errs.push(FieldError::forbidden("spec", MUTABLE_SPEC_MSG));
        }
        errs
    }

    fn return_deleted_object(&self) -> bool {
        true
    }

    fn grace_period(&self, obj: &Value, requested: Option<i64>) -> Option<i64> {
        let spec_grace = meta::get(obj, &["spec", "terminationGracePeriodSeconds"]).and_then(Value::as_i64);
        let mut grace = requested.or(spec_grace).unwrap_or(DEFAULT_GRACE_SECONDS);
        if grace < 0 {
            grace = 1;
        }
        let unscheduled = str_at(obj, &["spec", "nodeName"]).is_empty();
        let finished = matches!(str_at(obj, &["status", "phase"]), "Succeeded" | "Failed");
        if unscheduled || finished {
            grace = 0;
        }
        Some(grace)
    }

    fn field_labels(&self) -> (&'static [&'static str], bool) {
        (
            &[
                "spec.nodeName",
                "spec.host",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.podIPs",
                "status.nominatedNodeName",
            ],
            true,
        )
    }

    fn field_value(&self, obj: &Value, label: &str) -> Option<String> {
        Some(match label {
            "spec.nodeName" | "spec.host" => str_at(obj, &["spec", "nodeName"]).into(),
            "spec.restartPolicy" => str_at(obj, &["spec", "restartPolicy"]).into(),
            "spec.schedulerName" => str_at(obj, &["spec", "schedulerName"]).into(),
            "spec.serviceAccountName" => str_at(obj, &["spec", "serviceAccountName"]).into(),
            "spec.hostNetwork" => {
                meta::get(obj, &["spec", "hostNetwork"]).and_then(Value::as_bool).unwrap_or(false).to_string()
            }
            "status.phase" => str_at(obj, &["status", "phase"]).into(),
            "status.podIP" => {
                let ip = str_at(obj, &["status", "podIP"]);
                if ip.is_empty() {
                    meta::get(obj, &["status", "podIPs"])
                        .and_then(Value::as_array)
                        .and_then(|a| a.first())
                        .map(|p| str_at(p, &["ip"]).to_string())
                        .unwrap_or_default()
                } else {
                    ip.into()
                }
            }
            "status.nominatedNodeName" => str_at(obj, &["status", "nominatedNodeName"]).into(),
            _ => return None,
        })
    }

    fn warnings(&self, obj: &Value) -> Vec<String> {
        let name = meta::name(obj);
        let msgs = is_dns1123_label(name);
        if name.is_empty() || msgs.is_empty() {
            return Vec::new();
        }
        vec![format!(
            "metadata.name: this is used in the Pod's hostname, which can result in surprising behavior; a DNS label is recommended: [{}]",
            msgs.join(" ")
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_qos() {
        let mut spec = json!({"containers": [
            {"name": "a", "image": "nginx", "ports": [{"containerPort": 80}], "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}},
            {"name": "b", "image": "nginx:1.25", "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}, "requests": {"cpu": "0.5"}}}
        ], "volumes": [{"name": "v"}]});
        default_pod_spec(&mut spec);
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(spec["containers"][1]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(spec["containers"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(spec["containers"][0]["resources"]["requests"]["cpu"], "1");
        assert_eq!(spec["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(qos_class(&spec), "Guaranteed", "0.5 equals 500m");
        assert_eq!(qos_class(&json!({"containers": [{"name": "a"}]})), "BestEffort");
        assert_eq!(qos_class(&json!({"containers": [{"resources": {"requests": {"cpu": "1"}}}]})), "Burstable");
    }

    #[test]
    fn validation() {
        let mut spec = json!({"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80, "name": "http"}]}]});
        default_pod_spec(&mut spec);
        assert!(validate_pod_spec(&spec, "spec").is_empty());
        let bad = json!({"containers": [{"name": "Web", "ports": [{"containerPort": 0, "name": "http--x", "protocol": "TCP"}]}],
                         "restartPolicy": "Sometimes", "dnsPolicy": "ClusterFirst"});
        let errs = validate_pod_spec(&bad, "spec");
        let text = errs.aggregate();
        assert!(text.contains("spec.containers[0].name: Invalid value: \"Web\""), "{text}");
        assert!(text.contains("spec.containers[0].image: Required value"), "{text}");
        assert!(
            text.contains(
                "spec.containers[0].ports[0].name: Invalid value: \"http--x\": must not contain consecutive hyphens (-)"
            ),
            "{text}"
        );
        assert!(text.contains("spec.containers[0].ports[0].containerPort: Required value"), "{text}");
        assert!(text.contains("spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""), "{text}");
        assert_eq!(is_valid_port_name("8080"), vec!["must contain at least one letter (a-z)"]);

        // What Services lean on: port names unique per container, host ports per pod, DNS-label hostnames.
        let mut spec = json!({"hostname": "my.host", "subdomain": "web", "containers": [
            {"name": "a", "image": "x", "ports": [{"containerPort": 80, "name": "http", "hostPort": 8080},
                                                   {"containerPort": 81, "name": "http"}]},
            {"name": "b", "image": "x", "ports": [{"containerPort": 82, "name": "http", "hostPort": 8080}]}]});
        default_pod_spec(&mut spec);
        let msgs: Vec<String> = validate_pod_spec(&spec, "spec").iter().map(|e| e.to_string()).collect();
        assert_eq!(
            msgs,
            [
                r#"spec.containers[0].ports[1].name: Duplicate value: "http""#,
                r#"spec.containers[1].ports[0].hostPort: Duplicate value: "TCP//8080""#,
                r#"spec.hostname: Invalid value: "my.host": must not contain dots"#,
            ]
        );
    }

    #[test]
    fn graceful_delete() {
        let r = PodRules;
        let scheduled =
            json!({"spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 5}, "status": {"phase": "Running"}});
        assert_eq!(r.grace_period(&scheduled, None), Some(5));
        assert_eq!(r.grace_period(&scheduled, Some(0)), Some(0));
        assert_eq!(r.grace_period(&json!({"spec": {}}), None), Some(0), "unscheduled pods go at once");
        let done = json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Succeeded"}});
        assert_eq!(r.grace_period(&done, None), Some(0));
    }

    #[test]
    fn spec_is_mostly_immutable() {
        let r = PodRules;
        let old = json!({"spec": {"containers": [{"name": "a", "image": "x:1"}], "restartPolicy": "Always", "dnsPolicy": "ClusterFirst"}});
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("x:2");
        assert!(r.validate_update(&new, &old).is_empty());
        new["spec"]["restartPolicy"] = json!("Never");
        assert!(
            r.validate_update(&new, &old).aggregate().starts_with("spec: Forbidden: pod updates may not change fields")
        );
    }
}

/// A `pods/binding` request: the node a pod is assigned to, once.
#[derive(Debug)]
pub struct Binding {
    pub node: String,
    /// Annotations the binding adds to the pod.
    pub annotations: Option<Map<String, Value>>,
    /// The pod's uid, as a precondition, if given.
    pub uid: String,
}

/// The `GroupResource` of pods, as binding errors name it.
const PODS: GroupResource = GroupResource { group: "", resource: "pods" };

impl Binding {
    /// Reads a decoded core/v1 Binding for pod `name`.
    pub fn parse(binding: &Value, name: &str) -> Result<Binding, StatusError> {
        let node = str_at(binding, &["target", "name"]).to_string();
        if node.is_empty() {
            let mut errs = ErrorList::new();
            errs.push(FieldError::required("target.name", ""));
            return Err(StatusError::invalid(GroupKind { group: "", kind: "Binding" }, name, &errs));
        }
        Ok(Binding {
            node,
            annotations: meta::get(binding, &["metadata", "annotations"]).and_then(Value::as_object).cloned(),
            uid: meta::uid(binding).to_string(),
        })
    }

    /// Binds `pod` as stored: refused if it is another pod, already assigned, or
    /// being deleted; else it gets the node, the annotations and PodScheduled=True.
    pub fn apply(&self, pod: &mut Value) -> Result<(), StatusError> {
        let name = meta::name(pod).to_string();
        if !self.uid.is_empty() && self.uid != meta::uid(pod) {
            return Err(StatusError::precondition_failed(PODS, &name, "UID", &self.uid, meta::uid(pod)));
        }
        let assigned = str_at(pod, &["spec", "nodeName"]);
        if !assigned.is_empty() {
            return Err(StatusError::conflict(
                PODS,
                &name,
                &format!("pod {name} is already assigned to node {assigned:?}"),
            ));
        }
        if meta::deletion_timestamp(pod).is_some() {
            return Err(StatusError::conflict(
                PODS,
                &name,
                &format!("pod {name} is being deleted, cannot be assigned to a host"),
            ));
        }
        meta::object_at(pod, &["spec"]).insert("nodeName".into(), json!(self.node));
        if let Some(a) = &self.annotations {
            let m = meta::object_at(pod, &["metadata", "annotations"]);
            for (k, v) in a {
                m.insert(k.clone(), v.clone());
            }
        }
        let status = meta::object_at(pod, &["status"]);
        let conditions = status.entry("conditions").or_insert_with(|| json!([]));
        if let Some(list) = conditions.as_array_mut() {
            list.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
            list.push(
                json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": crate::time::now_string()}),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod binding_tests {
    use super::*;

    #[test]
    fn a_pod_binds_once() {
        let b = Binding::parse(&json!({"target": {"name": "node-1"}, "metadata": {"annotations": {"a": "b"}}}), "p")
            .unwrap();
        let mut pod = json!({"metadata": {"name": "p", "uid": "u1"}, "spec": {"containers": []},
            "status": {"conditions": [{"type": "PodScheduled", "status": "False"}]}});
        b.apply(&mut pod).unwrap();
        assert_eq!(pod["spec"]["nodeName"], "node-1");
        assert_eq!(pod["metadata"]["annotations"]["a"], "b");
        let scheduled: Vec<&Value> = pod["status"]["conditions"].as_array().unwrap().iter().collect();
        assert_eq!(scheduled.len(), 1);
        assert_eq!(scheduled[0]["status"], "True");
        let again = b.apply(&mut pod).unwrap_err();
        assert_eq!(again.code, 409);
        assert_eq!(
            again.message,
            "Operation cannot be fulfilled on pods \"p\": pod p is already assigned to node \"node-1\""
        );
        let err = Binding::parse(&json!({"target": {}}), "p").unwrap_err();
        assert_eq!(err.code, 422);
        let wrong = Binding { node: "n".into(), annotations: None, uid: "other".into() };
        let mut fresh = json!({"metadata": {"name": "p", "uid": "u1"}, "spec": {}});
        assert_eq!(wrong.apply(&mut fresh).unwrap_err().code, 409);
    }
}
