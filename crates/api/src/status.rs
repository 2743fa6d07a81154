//! Kubernetes `Status` errors, with the codes, reasons and messages
//! kube-apiserver gives, so that kubectl prints what users know.

use serde_json::{Value, json};

use crate::validation::ErrorList;

/// A resource type as errors name it: `pods`, `deployments.apps`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupResource<'a> {
    pub group: &'a str,
    pub resource: &'a str,
}

impl std::fmt::Display for GroupResource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() { f.write_str(self.resource) } else { write!(f, "{}.{}", self.resource, self.group) }
    }
}

/// A kind as errors name it: `Service`, `Deployment.apps`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupKind<'a> {
    pub group: &'a str,
    pub kind: &'a str,
}

impl std::fmt::Display for GroupKind<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() { f.write_str(self.kind) } else { write!(f, "{}.{}", self.kind, self.group) }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Details {
    pub name: String,
    pub group: String,
    pub kind: String,
    pub uid: String,
    pub causes: Vec<Cause>,
    pub retry_after_seconds: i32,
}

/// A failed request, as a Kubernetes `Status`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StatusError {
    pub code: u16,
    /// Empty for errors Kubernetes reports without a reason (plain 500s).
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Box<Details>>,
    /// `metadata.continue` of the Status, set on an expired continue token.
    pub continue_token: Option<String>,
}

fn details(name: &str, group: &str, kind: &str) -> Option<Box<Details>> {
    Some(Box::new(Details { name: name.into(), group: group.into(), kind: kind.into(), ..Default::default() }))
}

impl StatusError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        StatusError { code, reason, message: message.into(), details: None, continue_token: None }
    }

    pub fn not_found(gr: GroupResource, name: &str) -> Self {
        StatusError {
            details: details(name, gr.group, gr.resource),
            ..Self::new(404, "NotFound", format!("{gr} {name:?} not found"))
        }
    }

    /// A path inside a served group version that names nothing.
    pub fn no_such_resource() -> Self {
        StatusError {
            details: Some(Box::default()),
            ..Self::new(404, "NotFound", "the server could not find the requested resource")
        }
    }

    pub fn already_exists(gr: GroupResource, name: &str) -> Self {
        StatusError {
            details: details(name, gr.group, gr.resource),
            ..Self::new(409, "AlreadyExists", format!("{gr} {name:?} already exists"))
        }
    }

    /// A precondition the storage layer checks, failed: `what` (UID or
    /// ResourceVersion) was `want` in the request and is `have` on the object.
    pub fn precondition_failed(gr: GroupResource, name: &str, what: &str, want: &str, have: &str) -> Self {
        Self::conflict(
            gr,
            name,
            &format!("Precondition failed: {what} in precondition: {want}, {what} in object meta: {have}"),
        )
    }

    pub fn conflict(gr: GroupResource, name: &str, why: &str) -> Self {
        StatusError {
            details: details(name, gr.group, gr.resource),
            ..Self::new(409, "Conflict", format!("Operation cannot be fulfilled on {gr} {name:?}: {why}"))
        }
    }

    /// The optimistic-concurrency conflict of an update with a stale resourceVersion.
    pub fn stale(gr: GroupResource, name: &str) -> Self {
        Self::conflict(
            gr,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn forbidden(gr: GroupResource, name: &str, why: &str) -> Self {
        let message = match (gr.resource.is_empty(), name.is_empty()) {
            (true, _) => format!("forbidden: {why}"),
            (false, true) => format!("{gr} is forbidden: {why}"),
            (false, false) => format!("{gr} {name:?} is forbidden: {why}"),
        };
        StatusError { details: details(name, gr.group, gr.resource), ..Self::new(403, "Forbidden", message) }
    }

    /// 422 with one cause per field error.
    pub fn invalid(gk: GroupKind, name: &str, errors: &ErrorList) -> Self {
        let message = match errors.len() {
            0 => format!("{gk} {name:?} is invalid"),
            _ => format!("{gk} {name:?} is invalid: {}", errors.aggregate()),
        };
        let causes = errors
            .iter()
            .map(|e| Cause { reason: e.ty.reason().into(), message: e.body(), field: e.field.clone() })
            .collect();
        StatusError {
            details: Some(Box::new(Details {
                name: name.into(),
                group: gk.group.into(),
                kind: gk.kind.into(),
                causes,
                ..Default::default()
            })),
            ..Self::new(422, "Invalid", message)
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn method_not_allowed() -> Self {
        StatusError {
            details: Some(Box::default()),
            ..Self::new(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        }
    }

    pub fn not_supported(action: &str, gr: GroupResource) -> Self {
        StatusError {
            details: details("", gr.group, gr.resource),
            ..Self::new(
                405,
                "MethodNotAllowed",
                format!("{action} is not supported on resources of kind {:?}", gr.to_string()),
            )
        }
    }

    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, "NotAcceptable", message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(413, "RequestEntityTooLarge", format!("Request entity too large: limit is {limit}"))
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        StatusError {
            details: Some(Box::new(Details {
                causes: vec![Cause { message: message.to_string(), ..Default::default() }],
                ..Default::default()
            })),
            ..Self::new(500, "InternalError", format!("Internal error occurred: {message}"))
        }
    }

    /// A 500 with no reason, as Kubernetes returns for plain errors.
    pub fn plain(message: impl Into<String>) -> Self {
        Self::new(500, "", message)
    }

    pub fn timeout(message: impl Into<String>, retry_after: i32) -> Self {
        StatusError {
            details: Some(Box::new(Details { retry_after_seconds: retry_after, ..Default::default() })),
            ..Self::new(504, "Timeout", format!("Timeout: {}", message.into()))
        }
    }

    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    /// The `Status` object, field for field as kube-apiserver writes it.
    pub fn to_json(&self) -> Value {
        let mut v =
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": self.message});
        if let Some(token) = &self.continue_token {
            v["metadata"]["continue"] = json!(token);
        }
        if !self.reason.is_empty() {
            v["reason"] = json!(self.reason);
        }
        if let Some(d) = &self.details {
            v["details"] = details_json(d);
        }
        v["code"] = json!(self.code);
        v
    }
}

fn details_json(d: &Details) -> Value {
    let mut out = serde_json::Map::new();
    let mut put = |k: &str, s: &str| {
        if !s.is_empty() {
            out.insert(k.into(), json!(s));
        }
    };
    put("name", &d.name);
    put("group", &d.group);
    put("kind", &d.kind);
    put("uid", &d.uid);
    if !d.causes.is_empty() {
        let causes = d
            .causes
            .iter()
            .map(|c| {
                let mut m = serde_json::Map::new();
                for (k, v) in [("reason", &c.reason), ("message", &c.message), ("field", &c.field)] {
                    if !v.is_empty() {
                        m.insert(k.into(), json!(v));
                    }
                }
                Value::Object(m)
            })
            .collect();
        out.insert("causes".into(), Value::Array(causes));
    }
    if d.retry_after_seconds != 0 {
        out.insert("retryAfterSeconds".into(), json!(d.retry_after_seconds));
    }
    Value::Object(out)
}

/// The body of a successful delete of a kind that does not return the object.
pub fn delete_success(gr: GroupResource, name: &str, uid: &str) -> Value {
    let d = Details {
        name: name.into(),
        group: gr.group.into(),
        kind: gr.resource.into(),
        uid: uid.into(),
        ..Default::default()
    };
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details_json(&d)})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::FieldError;

    const SVC: GroupResource = GroupResource { group: "", resource: "services" };
    const DEPLOY: GroupResource = GroupResource { group: "apps", resource: "deployments" };

    #[test]
    fn messages() {
        assert_eq!(StatusError::not_found(SVC, "foo").message, r#"services "foo" not found"#);
        assert_eq!(StatusError::not_found(DEPLOY, "web").message, r#"deployments.apps "web" not found"#);
        assert_eq!(
            StatusError::stale(SVC, "foo").message,
            r#"Operation cannot be fulfilled on services "foo": the object has been modified; please apply your changes to the latest version and try again"#
        );
        let v = StatusError::not_found(DEPLOY, "web").to_json();
        assert_eq!(
            v,
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"deployments.apps \"web\" not found",
                   "reason":"NotFound","details":{"name":"web","group":"apps","kind":"deployments"},"code":404})
        );
    }

    #[test]
    fn invalid_aggregates() {
        let gk = GroupKind { group: "", kind: "Service" };
        let mut errs = ErrorList::new();
        errs.push(FieldError::required("spec.ports[1].name", ""));
        let e = StatusError::invalid(gk, "x", &errs);
        assert_eq!(e.message, r#"Service "x" is invalid: spec.ports[1].name: Required value"#);
        errs.push(FieldError::not_supported("spec.type", "Foo", &["ClusterIP", "NodePort"]));
        let e = StatusError::invalid(gk, "x", &errs);
        assert_eq!(
            e.message,
            r#"Service "x" is invalid: [spec.ports[1].name: Required value, spec.type: Unsupported value: "Foo": supported values: "ClusterIP", "NodePort"]"#
        );
        let causes = &e.details.unwrap().causes;
        assert_eq!(causes[1].reason, "FieldValueNotSupported");
        assert_eq!(causes[1].message, r#"Unsupported value: "Foo": supported values: "ClusterIP", "NodePort""#);
        assert_eq!(causes[1].field, "spec.type");
    }
}
