//! A container's environment as kubelet builds it: the service variables
//! (Docker-link style), `envFrom`, `env` with `$(VAR)` expansion and
//! downward-API / ConfigMap / Secret references, and the expansion of
//! `command` and `args`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};

/// Why a container's environment cannot be made (its waiting message, as kubelet words it).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("configmap {0:?} not found")]
    ConfigMapNotFound(String),
    #[error("secret {0:?} not found")]
    SecretNotFound(String),
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKey { key: String, namespace: String, name: String },
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKey { key: String, namespace: String, name: String },
    #[error("{0}")]
    FieldPath(String),
}

/// `{SVC}_SERVICE_HOST` and the Docker-link variables for one Service, in kubelet's order.
fn service_vars(svc: &Service, out: &mut Vec<(String, String)>) {
    let Some(spec) = svc.spec.as_ref() else { return };
    let Some(ip) = spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty() && *ip != "None") else { return };
    let name = mangle(svc.metadata.name.as_deref().unwrap_or_default());
    let ports = spec.ports.as_deref().unwrap_or_default();
    let Some(first) = ports.first() else { return };
    out.push((format!("{name}_SERVICE_HOST"), ip.to_string()));
    out.push((format!("{name}_SERVICE_PORT"), first.port.to_string()));
    for p in ports {
        if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
            out.push((format!("{name}_SERVICE_PORT_{}", mangle(pn)), p.port.to_string()));
        }
    }
    let addr = |port: i32| match ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => format!("[{ip}]:{port}"),
        _ => format!("{ip}:{port}"),
    };
    let proto = |p: &k8s_openapi::api::core::v1::ServicePort| p.protocol.clone().unwrap_or_else(|| "TCP".into());
    out.push((format!("{name}_PORT"), format!("{}://{}", proto(first).to_lowercase(), addr(first.port))));
    for p in ports {
        let (upper, lower) = (proto(p).to_uppercase(), proto(p).to_lowercase());
        let prefix = format!("{name}_PORT_{}_{upper}", p.port);
        out.push((prefix.clone(), format!("{lower}://{}", addr(p.port))));
        out.push((format!("{prefix}_PROTO"), lower));
        out.push((format!("{prefix}_PORT"), p.port.to_string()));
        out.push((format!("{prefix}_ADDR"), ip.to_string()));
    }
}

/// Kubelet's `makeEnvVariableName`: '-' to '_', upper case.
fn mangle(name: &str) -> String {
    name.replace('-', "_").to_uppercase()
}

/// The service variables a pod in `namespace` gets: the `kubernetes` Service
/// always, the namespace's own Services when `enable_service_links`.
pub fn service_env<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    namespace: &str,
    enable_service_links: bool,
) -> Vec<(String, String)> {
    let mut chosen: BTreeMap<String, &Service> = BTreeMap::new();
    for svc in services {
        let (ns, name) =
            (svc.metadata.namespace.as_deref().unwrap_or_default(), svc.metadata.name.as_deref().unwrap_or_default());
        if ns == "default" && name == "kubernetes" {
            chosen.entry(name.to_string()).or_insert(svc);
        } else if enable_service_links && ns == namespace {
            chosen.insert(name.to_string(), svc);
        }
    }
    let mut out = Vec::new();
    for svc in chosen.values() {
        service_vars(svc, &mut out);
    }
    out
}

/// Kubernetes' `$(VAR)` expansion: defined names are replaced, undefined ones
/// left as written, `$$` is a literal `$`.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    let mut start = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'$' => {
                    out.push_str(&input[start..i]);
                    out.push('$');
                    i += 2;
                    start = i;
                    continue;
                }
                b'(' => {
                    if let Some(end) = input[i + 2..].find(')') {
                        let name = &input[i + 2..i + 2 + end];
                        out.push_str(&input[start..i]);
                        match lookup(name) {
                            Some(v) => out.push_str(&v),
                            None => out.push_str(&input[i..i + 3 + end]),
                        }
                        i += 3 + end;
                        start = i;
                        continue;
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    out.push_str(&input[start..]);
    out
}

/// Where a container's references are looked up.
pub trait Sources {
    fn config_map(&self, namespace: &str, name: &str) -> Option<ConfigMap>;
    fn secret(&self, namespace: &str, name: &str) -> Option<Secret>;
}

/// A downward-API field of the pod, as `env[].valueFrom.fieldRef` reads it.
pub fn field_ref(pod: &Pod, path: &str, host_ips: &[IpAddr]) -> Result<String, EnvError> {
    let m = &pod.metadata;
    let status = pod.status.as_ref();
    let subscript = |prefix: &str| path.strip_prefix(prefix).and_then(|r| r.strip_suffix("']")).map(str::to_string);
    let joined = |ips: Vec<String>| ips.join(",");
    Ok(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "spec.nodeName" => pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.hostIP" => host_ips.first().map(IpAddr::to_string).unwrap_or_default(),
        "status.hostIPs" => joined(host_ips.iter().map(IpAddr::to_string).collect()),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
        "status.podIPs" => {
            joined(status.and_then(|s| s.pod_ips.clone()).unwrap_or_default().into_iter().map(|p| p.ip).collect())
        }
        _ => {
            if let Some(k) = subscript("metadata.labels['") {
                m.labels.as_ref().and_then(|l| l.get(&k).cloned()).unwrap_or_default()
            } else if let Some(k) = subscript("metadata.annotations['") {
                m.annotations.as_ref().and_then(|a| a.get(&k).cloned()).unwrap_or_default()
            } else {
                return Err(EnvError::FieldPath(format!("unsupported fieldPath: {path}")));
            }
        }
    })
}

fn secret_value(s: &Secret, key: &str) -> Option<String> {
    s.data.as_ref()?.get(key).map(|b| String::from_utf8_lossy(&b.0).into_owned())
}

/// The container's environment, in the order it is handed to the process:
/// envFrom and env first (env wins over envFrom), then the service variables
/// they do not name.
pub fn container_env(
    pod: &Pod,
    container: &Container,
    service_vars: &[(String, String)],
    host_ips: &[IpAddr],
    sources: &dyn Sources,
) -> Result<Vec<(String, String)>, EnvError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, k: String, v: String| match env.iter_mut().find(|(n, _)| *n == k) {
        Some(slot) => slot.1 = v,
        None => env.push((k, v)),
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match sources.config_map(&ns, &r.name) {
                Some(cm) => {
                    for (k, v) in cm.data.iter().flatten() {
                        set(&mut env, format!("{prefix}{k}"), v.clone());
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(EnvError::ConfigMapNotFound(r.name.clone())),
            }
        }
        if let Some(r) = &from.secret_ref {
            match sources.secret(&ns, &r.name) {
                Some(s) => {
                    for k in s.data.iter().flatten().map(|(k, _)| k.clone()).collect::<Vec<_>>() {
                        set(&mut env, format!("{prefix}{k}"), secret_value(&s, &k).unwrap_or_default());
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(EnvError::SecretNotFound(r.name.clone())),
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            None => {
                let lookup = |name: &str| {
                    env.iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                        .or_else(|| service_vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
                };
                expand(var.value.as_deref().unwrap_or_default(), &lookup)
            }
            Some(from) => {
                if let Some(f) = &from.field_ref {
                    field_ref(pod, &f.field_path, host_ips)?
                } else if let Some(r) = &from.config_map_key_ref {
                    match sources.config_map(&ns, &r.name) {
                        Some(cm) => match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                            Some(v) => v.clone(),
                            None if r.optional == Some(true) => continue,
                            None => {
                                return Err(EnvError::ConfigMapKey {
                                    key: r.key.clone(),
                                    namespace: ns.clone(),
                                    name: r.name.clone(),
                                });
                            }
                        },
                        None if r.optional == Some(true) => continue,
                        None => return Err(EnvError::ConfigMapNotFound(r.name.clone())),
                    }
                } else if let Some(r) = &from.secret_key_ref {
                    match sources.secret(&ns, &r.name) {
                        Some(s) => match secret_value(&s, &r.key) {
                            Some(v) => v,
                            None if r.optional == Some(true) => continue,
                            None => {
                                return Err(EnvError::SecretKey {
                                    key: r.key.clone(),
                                    namespace: ns.clone(),
                                    name: r.name.clone(),
                                });
                            }
                        },
                        None if r.optional == Some(true) => continue,
                        None => return Err(EnvError::SecretNotFound(r.name.clone())),
                    }
                } else {
                    // resourceFieldRef: not modelled yet; kubelet would default to allocatable.
                    String::new()
                }
            }
        };
        set(&mut env, var.name.clone(), value);
    }
    for (k, v) in service_vars {
        if !env.iter().any(|(n, _)| n == k) {
            env.push((k.clone(), v.clone()));
        }
    }
    Ok(env)
}

/// The container's argv: command and args with `$(VAR)` expanded from its final environment.
pub fn argv(container: &Container, env: &[(String, String)]) -> Vec<String> {
    let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    container.command.iter().flatten().chain(container.args.iter().flatten()).map(|a| expand(a, &lookup)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct None_;
    impl Sources for None_ {
        fn config_map(&self, _: &str, name: &str) -> Option<ConfigMap> {
            (name == "cfg").then(|| {
                serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"MODE": "fast", "LEVEL": "3"}}))
                    .unwrap()
            })
        }
        fn secret(&self, _: &str, name: &str) -> Option<Secret> {
            (name == "db").then(|| {
                serde_json::from_value(json!({"metadata": {"name": "db"}, "data": {"pass": "czNjcmV0"}})).unwrap()
            })
        }
    }

    fn svc(ns: &str, name: &str, ip: &str, ports: serde_json::Value) -> Service {
        serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": ns}, "spec": {"clusterIP": ip, "ports": ports}}),
        )
        .unwrap()
    }

    #[test]
    fn service_variables_as_kubelet_writes_them() {
        let services = vec![
            svc("default", "kubernetes", "10.96.0.1", json!([{"name": "https", "port": 443, "protocol": "TCP"}])),
            svc(
                "shop",
                "web-api",
                "10.96.5.5",
                json!([{"name": "http", "port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]),
            ),
            svc("shop", "headless", "None", json!([{"port": 80}])),
            svc("other", "elsewhere", "10.96.9.9", json!([{"port": 80}])),
        ];
        let vars = service_env(&services, "shop", true);
        let names: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "KUBERNETES_SERVICE_HOST",
                "KUBERNETES_SERVICE_PORT",
                "KUBERNETES_SERVICE_PORT_HTTPS",
                "KUBERNETES_PORT",
                "KUBERNETES_PORT_443_TCP",
                "KUBERNETES_PORT_443_TCP_PROTO",
                "KUBERNETES_PORT_443_TCP_PORT",
                "KUBERNETES_PORT_443_TCP_ADDR",
                "WEB_API_SERVICE_HOST",
                "WEB_API_SERVICE_PORT",
                "WEB_API_SERVICE_PORT_HTTP",
                "WEB_API_PORT",
                "WEB_API_PORT_80_TCP",
                "WEB_API_PORT_80_TCP_PROTO",
                "WEB_API_PORT_80_TCP_PORT",
                "WEB_API_PORT_80_TCP_ADDR",
                "WEB_API_PORT_53_UDP",
                "WEB_API_PORT_53_UDP_PROTO",
                "WEB_API_PORT_53_UDP_PORT",
                "WEB_API_PORT_53_UDP_ADDR",
            ]
        );
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("KUBERNETES_PORT"), Some("tcp://10.96.0.1:443"));
        assert_eq!(get("WEB_API_PORT_53_UDP"), Some("udp://10.96.5.5:53"));
        assert_eq!(get("WEB_API_PORT_53_UDP_PROTO"), Some("udp"));
        assert_eq!(service_env(&services, "shop", false).len(), 8, "without links only the kubernetes Service");
        let v6 = service_env(&[svc("default", "kubernetes", "fd00::1", json!([{"port": 443}]))], "x", true);
        assert_eq!(
            v6.iter().find(|(k, _)| k == "KUBERNETES_PORT").map(|(_, v)| v.as_str()),
            Some("tcp://[fd00::1]:443")
        );
    }

    #[test]
    fn expansion() {
        let lookup = |n: &str| (n == "A").then(|| "x".to_string());
        assert_eq!(expand("$(A)-$(B)-$$(A)-$x-$(", &lookup), "x-$(B)-$(A)-$x-$(");
        assert_eq!(expand("trailing $", &lookup), "trailing $");
    }

    #[test]
    fn a_containers_environment() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "shop", "uid": "u1", "labels": {"app": "web"}},
            "spec": {"nodeName": "node-1", "containers": []}, "status": {"podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}]}})).unwrap();
        let c: Container = serde_json::from_value(json!({"name": "c",
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
            "env": [
                {"name": "MY_POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pass"}}},
                {"name": "CFG_MODE", "value": "slow-$(CFG_LEVEL)"},
                {"name": "URL", "value": "http://$(KUBERNETES_SERVICE_HOST)"}
            ],
            "command": ["echo", "$(MY_POD)", "$(NOPE)"]}))
        .unwrap();
        let services = vec![("KUBERNETES_SERVICE_HOST".to_string(), "10.96.0.1".to_string())];
        let env = container_env(&pod, &c, &services, &["192.168.240.10".parse().unwrap()], &None_).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("CFG_MODE"), Some("slow-3"), "env wins over envFrom, and sees it");
        assert_eq!(get("MY_POD"), Some("p"));
        assert_eq!(get("APP"), Some("web"));
        assert_eq!(get("IP"), Some("10.244.1.5"));
        assert_eq!(get("PASS"), Some("s3cret"));
        assert_eq!(get("URL"), Some("http://10.96.0.1"));
        assert_eq!(argv(&c, &env), ["echo", "p", "$(NOPE)"]);
        let missing: Container = serde_json::from_value(json!({"name": "c", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nope"}}}]})).unwrap();
        assert_eq!(
            container_env(&pod, &missing, &[], &[], &None_).unwrap_err().to_string(),
            "couldn't find key nope in ConfigMap shop/cfg"
        );
        let gone: Container =
            serde_json::from_value(json!({"name": "c", "envFrom": [{"configMapRef": {"name": "absent"}}]})).unwrap();
        assert_eq!(
            container_env(&pod, &gone, &[], &[], &None_).unwrap_err().to_string(),
            "configmap \"absent\" not found"
        );
    }
}
