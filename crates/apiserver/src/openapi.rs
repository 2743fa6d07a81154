//! OpenAPI as kubectl reads it. `/openapi/v3` lists one document per group
//! version; each documents the operations on every resource, with the query
//! parameters they take, so that kubectl sees server-side field validation and
//! leaves validation to the server. Strategic merge patch is not advertised:
//! kubectl then builds its patches from its own compiled-in types, which is
//! exactly what it does against Kubernetes for built-in kinds.
//! `/openapi/v2` is an empty protobuf document: kubectl only falls back to it.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use kubesvc_api::resources::{self, Resource};
use kubesvc_api::status::StatusError;
use serde_json::{Value, json};

use crate::web::{Body, JSON, full};

pub struct OpenApi {
    /// Per group version path (`api/v1`, `apis/apps/v1`): the document and its hash.
    docs: BTreeMap<String, (Bytes, String)>,
    root: Bytes,
}

fn query(name: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
}

fn path_param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "uniqueItems": true}})
}

fn operation(r: &Resource, action: &str, op_id: &str, params: Vec<Value>, body: bool) -> Value {
    let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
    let mut op = json!({
        "operationId": op_id,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
        "parameters": params,
        "responses": {"200": {"description": "OK"}, "401": {"description": "Unauthorized"}},
    });
    if body {
        let content = if action == "patch" {
            json!({"application/json-patch+json": {}, "application/merge-patch+json": {}})
        } else {
            json!({"application/json": {}, "application/yaml": {}, "application/vnd.kubernetes.protobuf": {}})
        };
        op["requestBody"] = json!({"content": content, "required": true});
    }
    op
}

fn document(group: &str, version: &str) -> Value {
    let mut paths = serde_json::Map::new();
    let prefix = if group.is_empty() { format!("/api/{version}") } else { format!("/apis/{group}/{version}") };
    for r in resources::all().iter().filter(|r| r.group == group && r.version == version) {
        let kind = r.kind;
        let scope = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{prefix}/{}", r.plural)
        };
        let ns: Vec<Value> = if r.namespaced { vec![path_param("namespace")] } else { vec![] };
        let write = |mut p: Vec<Value>| {
            p.extend([query("dryRun"), query("fieldManager"), query("fieldValidation"), query("pretty")]);
            p
        };
        let list_params = {
            let mut p = ns.clone();
            for q in [
                "allowWatchBookmarks",
                "continue",
                "fieldSelector",
                "labelSelector",
                "limit",
                "resourceVersion",
                "resourceVersionMatch",
                "sendInitialEvents",
                "timeoutSeconds",
                "watch",
                "pretty",
            ] {
                p.push(query(q));
            }
            p
        };
        paths.insert(
            scope.clone(),
            json!({
                "get": operation(r, "list", &format!("list{kind}"), list_params, false),
                "post": operation(r, "post", &format!("create{kind}"), write(ns.clone()), true),
                "delete": operation(r, "deletecollection", &format!("deleteCollection{kind}"), ns.clone(), false),
            }),
        );
        let mut named = ns.clone();
        named.push(path_param("name"));
        paths.insert(
            format!("{scope}/{{name}}"),
            json!({
                "get": operation(r, "get", &format!("read{kind}"), named.clone(), false),
                "put": operation(r, "put", &format!("replace{kind}"), write(named.clone()), true),
                "patch": operation(r, "patch", &format!("patch{kind}"), write({ let mut p = named.clone(); p.push(query("force")); p }), true),
                "delete": operation(r, "delete", &format!("delete{kind}"), named.clone(), false),
            }),
        );
    }
    json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": format!("v{}.{}.0", kubesvc_api::wellknown::KUBE_MAJOR, kubesvc_api::wellknown::KUBE_MINOR)},
           "paths": paths, "components": {"schemas": {}}})
}

fn hash(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA512, bytes);
    d.as_ref().iter().map(|b| format!("{b:02X}")).collect()
}

impl OpenApi {
    pub fn new() -> Self {
        let mut docs = BTreeMap::new();
        let mut root_paths = serde_json::Map::new();
        for (g, v) in resources::group_versions() {
            let path = if g.is_empty() { format!("api/{v}") } else { format!("apis/{g}/{v}") };
            let bytes = Bytes::from(serde_json::to_vec(&document(g, v)).expect("a JSON value serializes"));
            let h = hash(&bytes);
            root_paths.insert(path.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={h}")}));
            docs.insert(path, (bytes, h));
        }
        let root = Bytes::from(serde_json::to_vec(&json!({"paths": root_paths})).expect("a JSON value serializes"));
        OpenApi { docs, root }
    }

    pub fn root(&self) -> Response<Body> {
        json_response(self.root.clone(), None)
    }

    pub fn document(&self, path: &str) -> Result<Response<Body>, StatusError> {
        match self.docs.get(path) {
            Some((bytes, h)) => Ok(json_response(bytes.clone(), Some(h))),
            None => Err(StatusError::no_such_resource()),
        }
    }
}

impl Default for OpenApi {
    fn default() -> Self {
        Self::new()
    }
}

fn json_response(bytes: Bytes, etag: Option<&str>) -> Response<Body> {
    let mut resp = Response::new(full(bytes));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    if let Some(h) = etag.and_then(|h| HeaderValue::from_str(&format!("\"{h}\"")).ok()) {
        resp.headers_mut().insert(header::ETAG, h);
    }
    resp
}

/// An empty OpenAPI v2 document, in the protobuf content type client-go parses.
pub fn v2() -> Response<Body> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/com.github.proto-openapi.spec.v2.v1.0+protobuf"),
    );
    resp
}
