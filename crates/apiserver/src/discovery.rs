//! Discovery (`/api`, `/apis`, per group version resource lists) and `/version`,
//! in the unaggregated form every client understands.

use kubesvc_api::resources::{self, Subresource};
use serde_json::{Value, json};

/// The Kubernetes version whose API kubesvc serves.
use kubesvc_api::wellknown::{KUBE_MAJOR, KUBE_MINOR, git_version};

pub fn version() -> Value {
    json!({
        "major": KUBE_MAJOR,
        "minor": KUBE_MINOR,
        "gitVersion": git_version(),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
    })
}

pub fn api_versions(advertise: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
           "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": advertise}]})
}

fn group_json(group: &str) -> Value {
    let versions: Vec<Value> = resources::group_versions()
        .iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": versions, "preferredVersion": versions.first()})
}

pub fn api_group_list() -> Value {
    let mut groups: Vec<&str> = Vec::new();
    for (g, _) in resources::group_versions() {
        if !g.is_empty() && !groups.contains(&g) {
            groups.push(g);
        }
    }
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups.iter().map(|g| group_json(g)).collect::<Vec<_>>()})
}

pub fn api_group(group: &str) -> Value {
    let mut g = group_json(group);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    g
}

const ALL_VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

pub fn resource_list(group: &str, version: &str) -> Value {
    let mut out = Vec::new();
    for r in resources::all().iter().filter(|r| r.group == group && r.version == version) {
        let mut entry = json!({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind, "verbs": ALL_VERBS});
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        out.push(entry);
        for sub in r.subresources {
            let name = format!("{}/{}", r.plural, sub.name());
            let entry = match sub {
                Subresource::Status => {
                    json!({"name": name, "singularName": "", "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]})
                }
                Subresource::Scale => {
                    json!({"name": name, "singularName": "", "namespaced": r.namespaced, "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]})
                }
                Subresource::Binding => {
                    json!({"name": name, "singularName": "", "namespaced": r.namespaced, "kind": "Binding", "verbs": ["create"]})
                }
                Subresource::Finalize => {
                    json!({"name": name, "singularName": "", "namespaced": r.namespaced, "kind": r.kind, "verbs": ["update"]})
                }
                Subresource::Log => {
                    json!({"name": name, "singularName": "", "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get"]})
                }
                Subresource::Exec | Subresource::Attach => {
                    json!({"name": name, "singularName": "", "namespaced": r.namespaced, "kind": "PodExecOptions", "verbs": ["create", "get"]})
                }
                Subresource::PortForward => {
                    json!({"name": name, "singularName": "", "namespaced": r.namespaced, "kind": "PodPortForwardOptions", "verbs": ["create", "get"]})
                }
            };
            out.push(entry);
        }
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out})
}
