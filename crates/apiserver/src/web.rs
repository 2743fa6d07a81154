//! HTTP plumbing: routing a path to its target, query parameters, request
//! bodies (size limit, JSON/YAML/protobuf), content negotiation and responses.

use std::collections::HashMap;
use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use kubesvc_api::resources::{self, Resource, Subresource};
use kubesvc_api::status::StatusError;
use serde_json::Value;

pub type Body = BoxBody<Bytes, Infallible>;

/// Kubernetes' limit on request bodies.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

pub const JSON: &str = "application/json";
pub const YAML: &str = "application/yaml";

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// What a request path names.
#[derive(Debug)]
pub enum Target {
    Api,
    Apis,
    Group(String),
    GroupVersion(String, String),
    Version,
    Health(String),
    OpenApiV2,
    OpenApiV3Root,
    OpenApiV3(String),
    Resource(ResourcePath),
    Unknown,
    /// Inside a served group version, but naming no resource.
    NoSuchResource,
}

#[derive(Debug)]
pub struct ResourcePath {
    pub resource: &'static Resource,
    /// Empty for cluster-scoped resources and all-namespace lists.
    pub namespace: String,
    pub name: Option<String>,
    pub sub: Option<Subresource>,
}

impl ResourcePath {
    /// The namespace a request is in, as Kubernetes' request info has it:
    /// `namespaces/{name}` (and its subresources) is in namespace `name`.
    pub fn request_namespace(&self) -> &str {
        match &self.name {
            Some(name) if self.resource.group.is_empty() && self.resource.plural == "namespaces" => name,
            _ => &self.namespace,
        }
    }
}

fn decode_segment(s: &str) -> String {
    kubesvc_api::url::percent_decode(s, false)
}

/// Routes a path, as Kubernetes' request info factory does.
pub fn route(path: &str) -> Target {
    let parts: Vec<String> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).map(decode_segment).collect();
    let p: Vec<&str> = parts.iter().map(String::as_str).collect();
    match p.as_slice() {
        ["api"] => Target::Api,
        ["apis"] => Target::Apis,
        ["version"] => Target::Version,
        [h @ ("healthz" | "livez" | "readyz"), ..] => Target::Health(h.to_string()),
        ["openapi", "v2"] => Target::OpenApiV2,
        ["openapi", "v3"] => Target::OpenApiV3Root,
        ["openapi", "v3", rest @ ..] => Target::OpenApiV3(rest.join("/")),
        ["apis", g] => {
            if resources::group_versions().iter().any(|(gg, _)| gg == g) {
                Target::Group(g.to_string())
            } else {
                Target::Unknown
            }
        }
        ["api", v, rest @ ..] => resource_target("", v, rest),
        ["apis", g, v, rest @ ..] => resource_target(g, v, rest),
        _ => Target::Unknown,
    }
}

fn resource_target(group: &str, version: &str, rest: &[&str]) -> Target {
    if !resources::group_versions().contains(&(group, version)) {
        return Target::Unknown;
    }
    if rest.is_empty() {
        return Target::GroupVersion(group.to_string(), version.to_string());
    }
    let mut rest = rest.to_vec();
    let mut namespace = String::new();
    // namespaces/{ns}/{resource}/...; but namespaces/{name}/status|finalize is the namespace itself.
    if rest[0] == "namespaces" && rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
        namespace = rest[1].to_string();
        rest = rest[2..].to_vec();
    }
    let Some(resource) = resources::find(group, version, rest[0]) else {
        return Target::NoSuchResource;
    };
    if (resource.namespaced && namespace.is_empty() && rest.len() > 1)
        || (!resource.namespaced && !namespace.is_empty())
    {
        return Target::NoSuchResource;
    }
    let sub = match rest.get(2) {
        None => None,
        Some(s) => match Subresource::parse(s).filter(|s| resource.has(*s)) {
            Some(s) => Some(s),
            None => return Target::NoSuchResource,
        },
    };
    if rest.len() > 3 {
        return Target::NoSuchResource;
    }
    Target::Resource(ResourcePath { resource, namespace, name: rest.get(1).map(|s| s.to_string()), sub })
}

pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(q: Option<&str>) -> Query {
        let mut m = HashMap::new();
        for (k, v) in kubesvc_api::url::query_pairs(q) {
            m.entry(k).or_insert(v);
        }
        Query(m)
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    /// A boolean parameter: `1`, `true` (any case) are true.
    pub fn flag(&self, k: &str) -> bool {
        self.get(k).is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
    }

    pub fn int(&self, k: &str) -> Result<Option<i64>, StatusError> {
        match self.get(k).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => {
                v.parse().map(Some).map_err(|_| StatusError::bad_request(format!("invalid value for {k}: {v:?}")))
            }
        }
    }
}

/// Reads a request body, refusing more than Kubernetes accepts.
pub async fn read_body(body: hyper::body::Incoming) -> Result<Bytes, StatusError> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(StatusError::too_large(MAX_BODY)),
        Err(e) => Err(StatusError::bad_request(format!("reading the request body: {e}"))),
    }
}

fn media_type(ct: Option<&HeaderValue>) -> String {
    ct.and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Go's description of where a JSON body went wrong, approximated from serde's error.
fn json_error_text(body: &[u8], e: &serde_json::Error) -> String {
    if e.is_eof() {
        return "unexpected end of JSON input".into();
    }
    let (line, col) = (e.line(), e.column());
    let offset: usize = body.split(|c| *c == b'\n').take(line.saturating_sub(1)).map(|l| l.len() + 1).sum::<usize>()
        + col.saturating_sub(1);
    match body.get(offset) {
        Some(c) if e.is_syntax() => format!("invalid character '{}' looking for beginning of value", *c as char),
        _ => e.to_string(),
    }
}

/// Kubernetes' summary of an undecodable body: its start, or its start in hex.
fn body_summary(body: &[u8]) -> String {
    let head = &body[..body.len().min(30)];
    let more = if body.len() > 30 { " ..." } else { "" };
    if body.first() == Some(&b'{') {
        format!("{}{more}", String::from_utf8_lossy(head))
    } else {
        format!("{}{more}", head.iter().map(|b| format!("{b:02x}")).collect::<String>())
    }
}

/// Decodes an object body by its Content-Type.
pub fn decode_object(headers: &HeaderMap, body: &[u8], r: &'static Resource) -> Result<Value, StatusError> {
    let unrecognized = |detail: String| {
        StatusError::bad_request(format!("the object provided is unrecognized (must be of type {}): {detail}", r.kind))
    };
    match media_type(headers.get(header::CONTENT_TYPE)).as_str() {
        "" | JSON | "*/*" => serde_json::from_slice(body).map_err(|e| {
            unrecognized(format!(
                "couldn't get version/kind; json parse error: {} ({})",
                json_error_text(body, &e),
                body_summary(body)
            ))
        }),
        YAML | "application/x-yaml" | "text/yaml" => serde_saphyr::from_slice::<Value>(body)
            .map_err(|e| unrecognized(format!("error converting YAML to JSON: yaml: {e}"))),
        kubesvc_wire::CONTENT_TYPE => {
            kubesvc_wire::decode_object(body, r.schema()).map(|(_, v)| v).map_err(|e| unrecognized(e.to_string()))
        }
        _ => Err(StatusError::unsupported_media_type(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf",
        )),
    }
}

/// Decodes a body of a meta type (DeleteOptions, Scale, Binding) of JSON or protobuf.
pub fn decode_meta(headers: &HeaderMap, body: &[u8], def: &'static str) -> Result<Value, StatusError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Default::default()));
    }
    let schema = kubesvc_api::schema::def(def).expect("meta types are in the schema table");
    let mut v = match media_type(headers.get(header::CONTENT_TYPE)).as_str() {
        kubesvc_wire::CONTENT_TYPE => kubesvc_wire::decode_object(body, schema)
            .map(|(_, v)| v)
            .map_err(|e| StatusError::bad_request(e.to_string()))?,
        YAML => serde_saphyr::from_slice::<Value>(body).map_err(|e| StatusError::bad_request(e.to_string()))?,
        _ => serde_json::from_slice(body).map_err(|e| StatusError::bad_request(json_error_text(body, &e)))?,
    };
    kubesvc_api::schema::canonicalize(schema, &mut v).map_err(|e| StatusError::bad_request(e.message))?;
    Ok(v)
}

/// The wire format of a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
    Protobuf,
}

/// The shape of a response: the objects themselves, a Table, or their metadata only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Object,
    Table(&'static str),
    PartialMetadata(&'static str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub format: Format,
    pub shape: Shape,
}

impl Negotiated {
    pub const JSON: Negotiated = Negotiated { format: Format::Json, shape: Shape::Object };
}

/// Picks the response format from `Accept`, in the client's order of preference.
pub fn negotiate(accept: Option<&HeaderValue>) -> Result<Negotiated, StatusError> {
    let accept = accept.and_then(|v| v.to_str().ok()).unwrap_or_default().trim();
    if accept.is_empty() {
        return Ok(Negotiated::JSON);
    }
    let mut ranges: Vec<(f32, usize, Negotiated)> = Vec::new();
    for (i, range) in accept.split(',').enumerate() {
        let mut parts = range.split(';').map(str::trim);
        let mt = parts.next().unwrap_or_default().to_ascii_lowercase();
        let mut params: HashMap<String, String> = HashMap::new();
        for p in parts {
            if let Some((k, v)) = p.split_once('=') {
                params.insert(k.trim().to_ascii_lowercase(), v.trim().trim_matches('"').to_string());
            }
        }
        let q: f32 = params.get("q").and_then(|q| q.parse().ok()).unwrap_or(1.0);
        if q <= 0.0 {
            continue;
        }
        let format = match mt.as_str() {
            JSON | "application/*" | "*/*" => Format::Json,
            YAML => Format::Yaml,
            kubesvc_wire::CONTENT_TYPE => Format::Protobuf,
            _ => continue,
        };
        let shape = match params.get("as").map(String::as_str) {
            None => Shape::Object,
            Some(as_) => {
                if params.get("g").map(String::as_str) != Some("meta.k8s.io") {
                    continue;
                }
                let version = match params.get("v").map(String::as_str) {
                    Some("v1") => "v1",
                    Some("v1beta1") => "v1beta1",
                    _ => continue,
                };
                match (as_, format) {
                    ("Table", Format::Json | Format::Yaml) => Shape::Table(version),
                    ("PartialObjectMetadata" | "PartialObjectMetadataList", Format::Json | Format::Yaml) => {
                        Shape::PartialMetadata(version)
                    }
                    _ => continue,
                }
            }
        };
        ranges.push((q, i, Negotiated { format, shape }));
    }
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    ranges.first().map(|r| r.2).ok_or_else(|| {
        StatusError::not_acceptable(
            "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf",
        )
    })
}

/// Adds `Warning: 299 - "..."` headers.
pub fn add_warnings(resp: &mut Response<Body>, warnings: &[String]) {
    let mut seen: Vec<&String> = Vec::new();
    for w in warnings {
        if seen.contains(&w) {
            continue;
        }
        seen.push(w);
        let text: String =
            w.chars().filter(|c| !c.is_control()).collect::<String>().replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{text}\"")) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
}

pub fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static(JSON)));
    resp
}

/// A JSON value in the negotiated format (JSON or YAML; protobuf callers encode themselves).
pub fn respond_value(status: StatusCode, format: Format, v: &Value) -> Response<Body> {
    match format {
        Format::Yaml => match serde_saphyr::to_string(v) {
            Ok(y) => respond(status, YAML, y),
            Err(_) => respond(status, JSON, serde_json::to_vec(v).unwrap_or_default()),
        },
        _ => respond(status, JSON, serde_json::to_vec(v).unwrap_or_default()),
    }
}

/// An error as a Status, in JSON unless the client takes only protobuf.
pub fn respond_error(e: &StatusError, n: Negotiated) -> Response<Body> {
    let status = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let v = e.to_json();
    match n.format {
        Format::Protobuf => {
            let def = kubesvc_api::schema::def("io.k8s.apimachinery.pkg.apis.meta.v1.Status")
                .expect("Status is in the schema table");
            respond(status, kubesvc_wire::CONTENT_TYPE, kubesvc_wire::encode_object(&v, def, "v1", "Status"))
        }
        f => respond_value(status, f, &v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let Target::Resource(r) = route("/api/v1/namespaces/default/services/web") else { panic!() };
        assert_eq!(
            (r.resource.plural, r.namespace.as_str(), r.name.as_deref(), r.sub),
            ("services", "default", Some("web"), None)
        );
        let Target::Resource(r) = route("/api/v1/namespaces/demo") else { panic!() };
        assert_eq!((r.resource.plural, r.name.as_deref()), ("namespaces", Some("demo")));
        let Target::Resource(r) = route("/api/v1/namespaces/demo/finalize") else { panic!() };
        assert_eq!(
            (r.resource.plural, r.name.as_deref(), r.sub),
            ("namespaces", Some("demo"), Some(Subresource::Finalize))
        );
        let Target::Resource(r) = route("/apis/apps/v1/namespaces/d/deployments/web/scale") else { panic!() };
        assert_eq!(r.sub, Some(Subresource::Scale));
        let Target::Resource(r) = route("/api/v1/pods") else { panic!() };
        assert!(r.namespace.is_empty() && r.name.is_none());
        assert!(matches!(route("/api/v1/namespaces/d/foos"), Target::NoSuchResource));
        assert!(matches!(route("/api/v1/namespaces/d/nodes/n1"), Target::NoSuchResource), "nodes are not namespaced");
        assert!(matches!(route("/api/v1/namespaces/d/pods/p/exec2"), Target::NoSuchResource));
        assert!(matches!(route("/apis/apps/v2/deployments"), Target::Unknown));
        assert!(matches!(route("/apis/apps/v1"), Target::GroupVersion(..)));
        assert!(matches!(route("/openapi/v3/api/v1"), Target::OpenApiV3(p) if p == "api/v1"));
    }

    #[test]
    fn queries() {
        let q = Query::parse(Some("labelSelector=app%3Dweb%2Ctier+in+%28a%29&watch=1&limit=500"));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert!(q.flag("watch"));
        assert_eq!(q.int("limit").unwrap(), Some(500));
        assert_eq!(kubesvc_api::url::percent_decode("%+1x%41", false), "%+1xA");
    }

    #[test]
    fn negotiation() {
        let n = |s: &str| negotiate(Some(&HeaderValue::from_str(s).unwrap()));
        assert_eq!(
            n("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json").unwrap(),
            Negotiated { format: Format::Json, shape: Shape::Table("v1") }
        );
        assert_eq!(n("application/vnd.kubernetes.protobuf,application/json").unwrap().format, Format::Protobuf);
        assert_eq!(n("application/vnd.kubernetes.protobuf;q=0.5,application/json").unwrap().format, Format::Json);
        assert_eq!(n("*/*").unwrap(), Negotiated::JSON);
        assert_eq!(n("application/yaml").unwrap().format, Format::Yaml);
        assert_eq!(n("application/json;as=Table;g=other;v=v1,application/json").unwrap().shape, Shape::Object);
        assert_eq!(n("text/html").unwrap_err().code, 406);
        assert_eq!(negotiate(None).unwrap(), Negotiated::JSON);
    }
}
