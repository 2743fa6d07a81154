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
    let (cn, orgs) = der::subject(der)?;
    Some(User::new(cn.filter(|cn| !cn.is_empty())?, orgs))
}

/// Just enough DER to read a certificate's subject; the TLS verifier has
/// already checked the certificate, so nothing here is trusted for more.
mod der {
    const SEQUENCE: u8 = 0x30;
    const SET: u8 = 0x31;
    const OID: u8 = 0x06;
    /// The `[0]` EXPLICIT version of a v3 certificate.
    const VERSION: u8 = 0xa0;
    /// 2.5.4.3 and 2.5.4.10.
    const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
    const OID_O: &[u8] = &[0x55, 0x04, 0x0a];

    /// Splits one TLV off the front: (tag, contents, rest).
    fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, &rest[n..])
        };
        if rest.len() < len {
            return None;
        }
        Some((tag, &rest[..len], &rest[len..]))
    }

    fn expect(input: &[u8], want: u8) -> Option<(&[u8], &[u8])> {
        let (tag, body, rest) = tlv(input)?;
        (tag == want).then_some((body, rest))
    }

    /// The text of a DirectoryString: UTF8String, PrintableString, IA5String and
    /// T61String as bytes, BMPString as UTF-16BE; `None` for anything else.
    fn decode_string(tag: u8, bytes: &[u8]) -> Option<String> {
        match tag {
            0x0c | 0x13 | 0x16 | 0x14 => String::from_utf8(bytes.to_vec()).ok(),
            0x1e if bytes.len().is_multiple_of(2) => {
                let units: Vec<u16> = bytes.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
                String::from_utf16(&units).ok()
            }
            _ => None,
        }
    }

    /// The subject's CN and O values (those that decode).
    pub fn subject(cert: &[u8]) -> Option<(Option<String>, Vec<String>)> {
        let (cert, _) = expect(cert, SEQUENCE)?;
        let (tbs, _) = expect(cert, SEQUENCE)?;
        let mut rest = tbs;
        if rest.first() == Some(&VERSION) {
            rest = tlv(rest)?.2;
        }
        // serialNumber, signature, issuer, validity, then the subject.
        for _ in 0..4 {
            rest = tlv(rest)?.2;
        }
        let (mut name, _) = expect(rest, SEQUENCE)?;
        let (mut cn, mut orgs) = (None, Vec::new());
        while !name.is_empty() {
            let (mut rdn, next) = expect(name, SET)?;
            name = next;
            while !rdn.is_empty() {
                let (attr, next) = expect(rdn, SEQUENCE)?;
                rdn = next;
                let (oid, value) = expect(attr, OID)?;
                if oid != OID_CN && oid != OID_O {
                    continue;
                }
                let (tag, text, _) = tlv(value)?;
                let Some(text) = decode_string(tag, text) else { continue };
                if oid == OID_CN {
                    cn = Some(text);
                } else {
                    orgs.push(text);
                }
            }
        }
        Some((cn, orgs))
    }
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
