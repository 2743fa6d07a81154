//! Who a request comes from and what they may do: users from client
//! certificates (CN is the name, each O a group, as Kubernetes reads them)
//! or the admin bearer token, and an [`Authorizer`] asked before every
//! request is served.

use kubesvc_api::resources::Resource;
use kubesvc_api::status::{GroupResource, StatusError};
use kubesvc_api::validation::go_quote;

/// Kubernetes' superuser group.
pub const GROUP_MASTERS: &str = "system:masters";
/// Every node agent's group; its user is `system:node:<node name>`.
pub const GROUP_NODES: &str = "system:nodes";
pub const NODE_USER_PREFIX: &str = "system:node:";
/// Every authenticated user is in this group.
pub const GROUP_AUTHENTICATED: &str = "system:authenticated";

/// An authenticated user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn new(name: impl Into<String>, groups: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let mut groups: Vec<String> = groups.into_iter().map(Into::into).collect();
        if !groups.iter().any(|g| g == GROUP_AUTHENTICATED) {
            groups.push(GROUP_AUTHENTICATED.into());
        }
        User { name: name.into(), groups }
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// The node a `system:node:<name>` user speaks for.
    pub fn node_name(&self) -> Option<&str> {
        self.name.strip_prefix(NODE_USER_PREFIX).filter(|_| self.in_group(GROUP_NODES))
    }
}

/// Who made a request, before the bearer token is looked at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// A client certificate signed by the cluster CA.
    Certificate(User),
    Anonymous,
}

/// What a request asks to do, in Kubernetes' authorization attributes.
#[derive(Clone, Debug)]
pub enum Request<'a> {
    Resource {
        /// get, list, watch, create, update, patch, delete, deletecollection.
        verb: &'a str,
        resource: &'static Resource,
        subresource: Option<&'a str>,
        namespace: &'a str,
        name: Option<&'a str>,
    },
    /// A path outside the resource API (discovery, OpenAPI, health, version).
    Path { verb: &'a str, path: &'a str },
}

/// Decides whether a user may do what a request asks.
pub trait Authorizer: Send + Sync {
    fn authorize(&self, user: &User, req: &Request<'_>) -> Decision;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Why not (appended to Kubernetes' "User ... cannot ..." message).
    Deny(Option<String>),
}

/// kubesvc's authorizer until RBAC: the admin (system:masters) and node
/// agents (system:nodes, before a node restriction exists) may do anything;
/// any other authenticated user may read discovery, OpenAPI, health and
/// version, as Kubernetes' default `system:discovery` role allows.
pub struct DefaultAuthorizer;

impl Authorizer for DefaultAuthorizer {
    fn authorize(&self, user: &User, req: &Request<'_>) -> Decision {
        if user.in_group(GROUP_MASTERS) || user.in_group(GROUP_NODES) {
            return Decision::Allow;
        }
        match req {
            Request::Path { verb: "get", .. } => Decision::Allow,
            _ => Decision::Deny(None),
        }
    }
}

/// The 403 Kubernetes returns for a denied request.
pub fn forbidden(user: &User, req: &Request<'_>, reason: Option<&str>) -> StatusError {
    let why = reason.map(|r| format!(": {r}")).unwrap_or_default();
    match req {
        Request::Resource { verb, resource, subresource, namespace, name } => {
            let full = match subresource {
                Some(s) => format!("{}/{s}", resource.plural),
                None => resource.plural.to_string(),
            };
            let scope = if namespace.is_empty() {
                "at the cluster scope".to_string()
            } else {
                format!("in the namespace {}", go_quote(namespace))
            };
            let message = format!(
                "User {} cannot {verb} resource {} in API group {} {scope}{why}",
                go_quote(&user.name),
                go_quote(&full),
                go_quote(resource.group)
            );
            // The subresource is in the message only; the prefix and details name the resource.
            let gr = GroupResource { group: resource.group, resource: resource.plural };
            StatusError::forbidden(gr, name.unwrap_or_default(), &message)
        }
        Request::Path { verb, path } => {
            let message = format!("User {} cannot {verb} path {}{why}", go_quote(&user.name), go_quote(path));
            StatusError::forbidden(GroupResource { group: "", resource: "" }, "", &message)
        }
    }
}

/// The subject of an X.509 certificate (DER) as a user: the common name and
/// every organization. `None` if the certificate cannot be read or its CN is
/// missing or empty (Kubernetes authenticates no user from those).
pub fn user_from_certificate(der: &[u8]) -> Option<User> {
    let (cn, orgs) = kubesvc_api::x509::subject(der)?;
    Some(User::new(cn.filter(|cn| !cn.is_empty())?, orgs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubesvc_api::resources;
    use rcgen::{CertificateParams, DnType, KeyPair};

    fn cert(cn: Option<&str>, orgs: &[&str]) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            p.distinguished_name.push(DnType::CommonName, cn);
        }
        for o in orgs {
            p.distinguished_name.push(DnType::OrganizationName, *o);
        }
        p.distinguished_name.push(DnType::CountryName, "NL");
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn users_come_from_the_subject() {
        let u = user_from_certificate(&cert(Some("system:node:n1"), &["system:nodes"])).unwrap();
        assert_eq!(u.name, "system:node:n1");
        assert_eq!(u.groups, ["system:nodes", GROUP_AUTHENTICATED]);
        assert_eq!(u.node_name(), Some("n1"));
        let alice = user_from_certificate(&cert(Some("alice"), &[])).unwrap();
        assert_eq!(alice.groups, [GROUP_AUTHENTICATED]);
        assert_eq!(alice.node_name(), None);
        assert_eq!(user_from_certificate(&cert(None, &["devs"])), None, "no CN, no user");
        assert_eq!(user_from_certificate(&cert(Some(""), &["system:masters"])), None, "an empty CN, no user");
        // Whatever the bytes, no panic: every prefix, every byte flipped, every length-like
        // byte set to the awkward values (the outer length stays valid, so the inner
        // structures are what gets read).
        let good = cert(Some("bob"), &["devs"]);
        for n in 0..good.len() {
            let _ = user_from_certificate(&good[..n]);
        }
        for i in 4..good.len() {
            for v in [good[i] ^ 0xff, 0x00, 0x7f, 0x80, 0x81, 0x84, 0xff] {
                let mut bad = good.clone();
                bad[i] = v;
                let _ = user_from_certificate(&bad);
            }
        }
        assert_eq!(user_from_certificate(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }

    #[test]
    fn the_default_authorizer_and_its_refusals() {
        let pods = resources::find("", "v1", "pods").unwrap();
        let nodes = resources::find("", "v1", "nodes").unwrap();
        let list =
            Request::Resource { verb: "list", resource: pods, subresource: None, namespace: "default", name: None };
        let admin = User::new("kubesvc-admin", [GROUP_MASTERS]);
        let node = User::new("system:node:n1", [GROUP_NODES]);
        let alice = User::new("alice", ["devs"]);
        let a = DefaultAuthorizer;
        assert_eq!(a.authorize(&admin, &list), Decision::Allow);
        assert_eq!(a.authorize(&node, &list), Decision::Allow);
        assert_eq!(a.authorize(&alice, &list), Decision::Deny(None));
        assert_eq!(a.authorize(&alice, &Request::Path { verb: "get", path: "/apis" }), Decision::Allow);
        assert_eq!(a.authorize(&alice, &Request::Path { verb: "post", path: "/apis" }), Decision::Deny(None));

        let e = forbidden(&alice, &list, None);
        assert_eq!((e.code, e.reason), (403, "Forbidden"));
        assert_eq!(
            e.message,
            r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default""#
        );
        let get = Request::Resource {
            verb: "get",
            resource: nodes,
            subresource: Some("status"),
            namespace: "",
            name: Some("n1"),
        };
        let e = forbidden(&alice, &get, None);
        assert_eq!(
            e.message,
            r#"nodes "n1" is forbidden: User "alice" cannot get resource "nodes/status" in API group "" at the cluster scope"#
        );
        assert_eq!(e.details.as_ref().map(|d| d.kind.as_str()), Some("nodes"));
        assert_eq!(
            forbidden(&alice, &Request::Path { verb: "post", path: "/apis" }, Some("no")).message,
            r#"forbidden: User "alice" cannot post path "/apis": no"#
        );
    }
}
