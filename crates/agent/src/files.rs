//! The files kubelet writes for a pod, byte for byte: `/etc/hosts`,
//! `/etc/resolv.conf` and the hostname, from the pod spec and the node's
//! DNS settings.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod;

/// The cluster's DNS as the agent knows it (kubelet's `--cluster-dns`, `--cluster-domain`).
#[derive(Clone, Debug)]
pub struct ClusterDns {
    pub servers: Vec<IpAddr>,
    pub domain: String,
}

/// A host's resolv.conf, parsed as kubelet parses it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl ResolvConf {
    /// Comment lines skipped; nameservers accumulate; the last `search` and `options` lines win.
    pub fn parse(text: &str) -> ResolvConf {
        let mut out = ResolvConf::default();
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.first() {
                Some(f) if f.starts_with('#') || f.starts_with(';') => {}
                Some(&"nameserver") if fields.len() > 1 => out.nameservers.push(fields[1].to_string()),
                Some(&"search") => {
                    out.searches = fields[1..].iter().map(|s| s.trim_end_matches('.').to_string()).collect()
                }
                Some(&"options") => out.options = fields[1..].iter().map(|s| s.to_string()).collect(),
                _ => {}
            }
        }
        out
    }

    /// The file, as container runtimes write it (`search`, `nameserver`s, `options`).
    pub fn render(&self) -> String {
        let mut s = String::new();
        if !self.searches.is_empty() {
            s.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        for n in &self.nameservers {
            s.push_str(&format!("nameserver {n}\n"));
        }
        if !self.options.is_empty() {
            s.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        s
    }
}

/// Kubernetes' limits on what a pod's resolv.conf may hold.
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;
const MAX_SEARCH_CHARS: usize = 2048;

fn dedup(list: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    list.into_iter().filter(|s| seen.insert(s.clone())).collect()
}

/// The pod's resolv.conf: its dnsPolicy over the cluster's DNS and the host's
/// file, then its dnsConfig, within Kubernetes' limits.
pub fn resolv_conf(pod: &Pod, cluster: &ClusterDns, host: &ResolvConf) -> ResolvConf {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let policy = spec.and_then(|s| s.dns_policy.as_deref()).unwrap_or("ClusterFirst");
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let cluster_mode = match policy {
        "None" => None,
        "Default" => Some(false),
        "ClusterFirstWithHostNet" => Some(true),
        // ClusterFirst on the host network falls back to the host's, as kubelet does.
        _ => Some(!host_network),
    };
    let mut out = match cluster_mode {
        None => ResolvConf::default(),
        Some(true) if !cluster.servers.is_empty() => {
            let d = &cluster.domain;
            let mut searches =
                if d.is_empty() { Vec::new() } else { vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()] };
            searches.extend(host.searches.iter().cloned());
            ResolvConf {
                nameservers: cluster.servers.iter().map(IpAddr::to_string).collect(),
                searches: dedup(searches),
                options: vec!["ndots:5".into()],
            }
        }
        Some(_) => host.clone(),
    };
    if let Some(cfg) = spec.and_then(|s| s.dns_config.as_ref()) {
        out.nameservers.extend(cfg.nameservers.iter().flatten().cloned());
        out.nameservers = dedup(std::mem::take(&mut out.nameservers));
        out.searches.extend(cfg.searches.iter().flatten().cloned());
        out.searches = dedup(std::mem::take(&mut out.searches));
        // Options merge by name; a later value wins, an empty value is dropped.
        let mut merged: Vec<(String, Option<String>)> = Vec::new();
        let mut put = |name: String, value: Option<String>| match merged.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => merged.push((name, value)),
        };
        for o in &out.options {
            match o.split_once(':') {
                Some((n, v)) => put(n.to_string(), Some(v.to_string())),
                None => put(o.clone(), None),
            }
        }
        for o in cfg.options.iter().flatten() {
            put(o.name.clone().unwrap_or_default(), o.value.clone().filter(|v| !v.is_empty()));
        }
        out.options = merged
            .into_iter()
            .filter(|(n, _)| !n.is_empty())
            .map(|(n, v)| match v {
                Some(v) => format!("{n}:{v}"),
                None => n,
            })
            .collect();
    }
    out.nameservers.truncate(MAX_NAMESERVERS);
    out.searches.retain(|s| s.len() <= 253);
    out.searches.truncate(MAX_SEARCHES);
    while out.searches.join(" ").len() > MAX_SEARCH_CHARS {
        out.searches.pop();
    }
    out
}

/// The pod's hostname (spec.hostname or its name, at most 63 characters) and,
/// with a subdomain, its domain `<subdomain>.<ns>.svc.<cluster domain>`.
pub fn hostname_and_domain(pod: &Pod, cluster_domain: &str) -> (String, Option<String>) {
    let spec = pod.spec.as_ref();
    let name = spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
    let truncated: String = name.chars().take(63).collect();
    let hostname = truncated.trim_end_matches(['-', '.']).to_string();
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let domain = spec
        .and_then(|s| s.subdomain.as_deref())
        .filter(|s| !s.is_empty())
        .map(|sub| format!("{sub}.{ns}.svc.{cluster_domain}"));
    (hostname, domain)
}

/// The hostname the pod's UTS namespace gets (the FQDN with setHostnameAsFQDN).
pub fn uts_hostname(pod: &Pod, cluster_domain: &str) -> String {
    let (hostname, domain) = hostname_and_domain(pod, cluster_domain);
    let fqdn = pod.spec.as_ref().and_then(|s| s.set_hostname_as_fqdn).unwrap_or(false);
    match domain {
        Some(d) if fqdn => format!("{hostname}.{d}"),
        _ => hostname,
    }
}

/// `/etc/hosts` as kubelet writes it for a pod with its own network.
pub fn hosts_file(pod: &Pod, pod_ips: &[IpAddr], cluster_domain: &str) -> String {
    let (hostname, domain) = hostname_and_domain(pod, cluster_domain);
    let mut s = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    for ip in pod_ips {
        match &domain {
            Some(d) => s.push_str(&format!("{ip}\t{hostname}.{d}\t{hostname}\n")),
            None => s.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    let aliases = pod.spec.as_ref().and_then(|s| s.host_aliases.as_ref()).filter(|a| !a.is_empty());
    if let Some(aliases) = aliases {
        s.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases {
            s.push_str(&format!(
                "{}\t{}\n",
                a.ip,
                a.hostnames.iter().flatten().cloned().collect::<Vec<_>>().join("\t")
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn cluster() -> ClusterDns {
        ClusterDns { servers: vec!["10.96.0.10".parse().unwrap()], domain: "cluster.local".into() }
    }

    #[test]
    fn hosts_as_kubelet_writes_them() {
        let p = pod(json!({"metadata": {"name": "web-0", "namespace": "shop"},
            "spec": {"containers": [], "subdomain": "nginx", "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["foo", "bar"]}]}}));
        let text = hosts_file(&p, &["10.244.1.5".parse().unwrap()], "cluster.local");
        assert_eq!(
            text,
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n10.244.1.5\tweb-0.nginx.shop.svc.cluster.local\tweb-0\n\n# Entries added by HostAliases.\n10.1.2.3\tfoo\tbar\n"
        );
        let plain = pod(json!({"metadata": {"name": "api"}, "spec": {"containers": []}}));
        assert!(hosts_file(&plain, &["10.244.1.6".parse().unwrap()], "cluster.local").ends_with("\n10.244.1.6\tapi\n"));
    }

    #[test]
    fn resolv_conf_per_policy() {
        let host = ResolvConf::parse("# x\nnameserver 1.1.1.1\nsearch example.com. corp\noptions rotate\n");
        assert_eq!(host.searches, ["example.com", "corp"]);
        let first = pod(json!({"metadata": {"name": "a", "namespace": "shop"}, "spec": {"containers": []}}));
        assert_eq!(
            resolv_conf(&first, &cluster(), &host).render(),
            "search shop.svc.cluster.local svc.cluster.local cluster.local example.com corp\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
        let default = pod(json!({"metadata": {"name": "a"}, "spec": {"containers": [], "dnsPolicy": "Default"}}));
        assert_eq!(resolv_conf(&default, &cluster(), &host), host);
        let hostnet = pod(json!({"metadata": {"name": "a"}, "spec": {"containers": [], "hostNetwork": true}}));
        assert_eq!(resolv_conf(&hostnet, &cluster(), &host), host, "ClusterFirst on the host network is Default");
        let none = pod(json!({"metadata": {"name": "a"}, "spec": {"containers": [], "dnsPolicy": "None",
            "dnsConfig": {"nameservers": ["8.8.8.8"], "searches": ["a.b"], "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}}}));
        assert_eq!(
            resolv_conf(&none, &cluster(), &host).render(),
            "search a.b\nnameserver 8.8.8.8\noptions ndots:2 edns0\n"
        );
        let merged = pod(json!({"metadata": {"name": "a", "namespace": "x"}, "spec": {"containers": [],
            "dnsConfig": {"options": [{"name": "ndots", "value": "1"}]}}}));
        assert_eq!(resolv_conf(&merged, &cluster(), &ResolvConf::default()).options, ["ndots:1"]);
    }

    #[test]
    fn hostnames() {
        let long = pod(json!({"metadata": {"name": format!("{}-x", "a".repeat(62))}, "spec": {"containers": []}}));
        assert_eq!(
            hostname_and_domain(&long, "cluster.local").0,
            "a".repeat(62),
            "63 characters, trailing '-' trimmed"
        );
        let fqdn = pod(json!({"metadata": {"name": "p", "namespace": "n"}, "spec": {"containers": [],
            "hostname": "h", "subdomain": "s", "setHostnameAsFQDN": true}}));
        assert_eq!(uts_hostname(&fqdn, "cluster.local"), "h.s.n.svc.cluster.local");
    }
}
