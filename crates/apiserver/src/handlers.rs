//! Request dispatch: authentication and authorization, routing, and the verbs on resources.

use std::sync::Arc;

use futures::StreamExt;
use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use kubesvc_api::kinds::{Binding, scale};
use kubesvc_api::meta;
use kubesvc_api::patch::PatchType;
use kubesvc_api::resources::{Resource, Subresource};
use kubesvc_api::status::{GroupKind, StatusError, delete_success};
use kubesvc_api::validation::{ErrorList, FieldError};
use serde_json::{Value, json};

use crate::State;
use crate::auth::{self, Decision, GROUP_MASTERS, Identity, User};
use crate::list::{self, Filter};
use crate::output::{self, IncludeObject};
use crate::registry::{self, DeleteOptions, Deleted, FieldValidation, MutateOptions, WriteOptions, Written};
use crate::web::{self, Body, Negotiated, Query, ResourcePath, Target, respond, respond_error, respond_value};
use crate::{discovery, openapi, watch};

/// The user a request comes from: its client certificate's, or the admin's for the admin bearer token.
fn authenticate(state: &State, identity: Identity, req: &Request<Incoming>) -> Option<User> {
    if let Identity::Certificate(user) = identity {
        return Some(user);
    }
    let bearer =
        req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    bearer
        .is_some_and(|t| !state.token.is_empty() && constant_time_eq(t.trim().as_bytes(), state.token.as_bytes()))
        .then(|| User::new(crate::pki::ADMIN_CN, [GROUP_MASTERS]))
}

/// What a request asks to do, as the authorizer sees it.
fn attributes<'a>(target: &'a Target, method: &Method, path: &'a str, q: &Query) -> auth::Request<'a> {
    let Target::Resource(rp) = target else {
        // Kubernetes' verb for a path is the lower-cased method.
        let verb = match *method {
            Method::GET => "get",
            Method::HEAD => "head",
            Method::POST => "post",
            Method::PUT => "put",
            Method::PATCH => "patch",
            Method::DELETE => "delete",
            Method::OPTIONS => "options",
            _ => "unknown",
        };
        return auth::Request::Path { verb, path };
    };
    let verb = match (method, rp.name.is_some()) {
        (&Method::GET | &Method::HEAD, _) if q.flag("watch") => "watch",
        (&Method::GET | &Method::HEAD, true) => "get",
        (&Method::GET | &Method::HEAD, false) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => "unknown",
    };
    auth::Request::Resource {
        verb,
        resource: rp.resource,
        subresource: rp.sub.map(|s| s.name()),
        namespace: rp.request_namespace(),
        name: rp.name.as_deref(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serves one request; never fails, errors become Status responses.
pub async fn handle(state: Arc<State>, req: Request<Incoming>, identity: Identity) -> Response<Body> {
    let target = web::route(req.uri().path());
    // Health and version are public, as Kubernetes' default RBAC has them.
    let public = matches!(target, Target::Health(_) | Target::Version) && req.method() == Method::GET;
    match authenticate(&state, identity, &req) {
        Some(user) => {
            let q = Query::parse(req.uri().query());
            let attrs = attributes(&target, req.method(), req.uri().path(), &q);
            if let Decision::Deny(why) = state.authorizer.authorize(&user, &attrs) {
                let n = web::negotiate(req.headers().get(header::ACCEPT)).unwrap_or(Negotiated::JSON);
                return respond_error(&auth::forbidden(&user, &attrs, why.as_deref()), n);
            }
        }
        None if public => {}
        None => return respond_error(&StatusError::unauthorized(), Negotiated::JSON),
    }
    let n = match web::negotiate(req.headers().get(header::ACCEPT)) {
        Ok(n) => n,
        Err(e) => return respond_error(&e, Negotiated::JSON),
    };
    let result = match target {
        Target::Resource(rp)
            if matches!(
                rp.sub,
                Some(Subresource::Log | Subresource::Exec | Subresource::Attach | Subresource::PortForward)
            ) =>
        {
            match (rp.sub, rp.name.as_deref()) {
                (Some(sub), Some(name)) => crate::nodeproxy::serve(&state, &rp.namespace, name, sub, req).await,
                _ => Err(StatusError::method_not_allowed()),
            }
        }
        Target::Resource(rp) => serve_resource(&state, rp, req, n).await,
        Target::Unknown => Ok(respond(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "404 page not found\n")),
        Target::NoSuchResource => Err(StatusError::no_such_resource()),
        other if req.method() != Method::GET => {
            let _ = other;
            Err(StatusError::method_not_allowed())
        }
        Target::Health(_) => Ok(respond(StatusCode::OK, "text/plain; charset=utf-8", "ok")),
        Target::Version => Ok(respond_value(StatusCode::OK, web::Format::Json, &discovery::version())),
        Target::Api => Ok(respond_value(StatusCode::OK, web::Format::Json, &discovery::api_versions(&state.advertise))),
        Target::Apis => Ok(respond_value(StatusCode::OK, web::Format::Json, &discovery::api_group_list())),
        Target::Group(g) => Ok(respond_value(StatusCode::OK, web::Format::Json, &discovery::api_group(&g))),
        Target::GroupVersion(g, v) => {
            Ok(respond_value(StatusCode::OK, web::Format::Json, &discovery::resource_list(&g, &v)))
        }
        Target::OpenApiV2 => Ok(openapi::v2()),
        Target::OpenApiV3Root => Ok(state.openapi.root()),
        Target::OpenApiV3(path) => state.openapi.document(&path),
    };
    match result {
        Ok(resp) => resp,
        Err(e) => {
            if e.code >= 500 {
                tracing::warn!(code = e.code, message = %e.message, "request failed");
            }
            respond_error(&e, n)
        }
    }
}

async fn serve_resource(
    state: &Arc<State>,
    rp: ResourcePath,
    req: Request<Incoming>,
    n: Negotiated,
) -> Result<Response<Body>, StatusError> {
    let q = Query::parse(req.uri().query());
    let r = rp.resource;
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    if r.namespaced && rp.namespace.is_empty() && !(method == Method::GET && rp.name.is_none()) {
        return Err(StatusError::method_not_allowed());
    }
    let name = rp.name.clone();
    match (&method, name.as_deref(), rp.sub) {
        (&Method::GET, None, _) if q.flag("watch") => watch::watch(state, &rp, &q, n).await,
        (&Method::GET, None, _) => list::list(state, &rp, &q, n).await,
        (&Method::GET, Some(_), _) if q.flag("watch") => watch::watch(state, &rp, &q, n).await,
        (&Method::GET, Some(name), Some(Subresource::Scale)) => {
            let e = state.registry.get(r, &rp.namespace, name).await?;
            Ok(scale_response(&e.value()))
        }
        (&Method::GET, Some(name), None | Some(Subresource::Status)) => {
            let include = IncludeObject::parse(q.get("includeObject"))?;
            let e = state.registry.get(r, &rp.namespace, name).await?;
            Ok(output::entry(r, n, &e, include))
        }
        (&Method::POST, None, None) => {
            let bytes = web::read_body(body).await?;
            create(state, &rp, &parts.headers, &bytes, &q, n).await
        }
        (&Method::POST, Some(name), Some(Subresource::Binding)) => {
            let bytes = web::read_body(body).await?;
            bind(state, &rp, name, &parts.headers, &bytes).await
        }
        (&Method::PUT, Some(name), Some(Subresource::Scale)) => {
            let bytes = web::read_body(body).await?;
            let scale = web::decode_meta(&parts.headers, &bytes, scale::SCALE_TYPE)?;
            // PUT's resourceVersion is a precondition.
            let rv = meta::resource_version(&scale).to_string();
            set_replicas(state, r, &rp.namespace, name, &scale, Some(rv), write_options(&q)?).await
        }
        (&Method::PUT, Some(name), sub @ (None | Some(Subresource::Status) | Some(Subresource::Finalize))) => {
            let bytes = web::read_body(body).await?;
            let opts = write_options(&q)?;
            let mut obj = web::decode_object(&parts.headers, &bytes, r)?;
            registry::check_type(r, &mut obj)?;
            let mut warnings = registry::canonical_input(r, &mut obj, opts.field_validation)?;
            let w = state.registry.update(r, &rp.namespace, name, obj, sub, opts).await?;
            warnings.extend(w.warnings.iter().cloned());
            Ok(written(r, n, Written { warnings, ..w }))
        }
        (&Method::PATCH, Some(name), sub)
            if sub != Some(Subresource::Binding) && sub != Some(Subresource::Finalize) =>
        {
            let ct = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
            let Some(ty) = PatchType::from_content_type(ct) else {
                if ct.starts_with("application/apply-patch") {
                    return Err(StatusError::unsupported_media_type(
                        "server-side apply is not supported by kubesvc yet; use client-side apply (kubectl apply without --server-side)",
                    ));
                }
                return Err(StatusError::unsupported_media_type("415: Unsupported Media Type"));
            };
            let bytes = web::read_body(body).await?;
            let opts = write_options(&q)?;
            if sub == Some(Subresource::Scale) {
                return patch_scale(state, r, &rp.namespace, name, ty, &bytes, opts).await;
            }
            let w = state.registry.patch(r, &rp.namespace, name, ty, &bytes, sub, opts).await?;
            Ok(written(r, n, w))
        }
        (&Method::DELETE, Some(name), None) => {
            let bytes = web::read_body(body).await?;
            let opts = delete_options(&parts.headers, &bytes, &q)?;
            Ok(match state.registry.delete(r, &rp.namespace, name, &opts).await? {
                Deleted::Pending(obj) => output::object(r, n, StatusCode::OK, &obj, IncludeObject::Metadata),
                Deleted::Gone(obj) if r.rules.return_deleted_object() => {
                    output::object(r, n, StatusCode::OK, &obj, IncludeObject::Metadata)
                }
                Deleted::Gone(obj) => respond_value(
                    StatusCode::OK,
                    web::Format::Json,
                    &delete_success(r.gr(), meta::name(&obj), meta::uid(&obj)),
                ),
            })
        }
        (&Method::DELETE, None, None) => {
            let bytes = web::read_body(body).await?;
            let opts = delete_options(&parts.headers, &bytes, &q)?;
            delete_collection(state, &rp, &q, &opts, n).await
        }
        _ => Err(StatusError::method_not_allowed()),
    }
}

fn write_options(q: &Query) -> Result<WriteOptions, StatusError> {
    let dry_run = match q.get("dryRun") {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            let mut errs = ErrorList::new();
            errs.push(FieldError::not_supported("dryRun", json!([other]), &["All"]));
            return Err(StatusError::invalid(GroupKind { group: "meta.k8s.io", kind: "CreateOptions" }, "", &errs));
        }
    };
    Ok(WriteOptions { dry_run, field_validation: FieldValidation::parse(q.get("fieldValidation"))? })
}

fn written(r: &'static Resource, n: Negotiated, w: Written) -> Response<Body> {
    let status = if w.created { StatusCode::CREATED } else { StatusCode::OK };
    let mut resp = output::object(r, n, status, &w.obj, IncludeObject::Metadata);
    web::add_warnings(&mut resp, &w.warnings);
    resp
}

async fn create(
    state: &Arc<State>,
    rp: &ResourcePath,
    headers: &http::HeaderMap,
    bytes: &[u8],
    q: &Query,
    n: Negotiated,
) -> Result<Response<Body>, StatusError> {
    let r = rp.resource;
    let opts = write_options(q)?;
    let mut obj = web::decode_object(headers, bytes, r)?;
    registry::check_type(r, &mut obj)?;
    let mut warnings = registry::canonical_input(r, &mut obj, opts.field_validation)?;
    let w = state.registry.create(r, &rp.namespace, obj, opts).await?;
    warnings.extend(w.warnings.iter().cloned());
    Ok(written(r, n, Written { warnings, ..w }))
}

fn delete_options(headers: &http::HeaderMap, bytes: &[u8], q: &Query) -> Result<DeleteOptions, StatusError> {
    let body = web::decode_meta(headers, bytes, "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions")?;
    let invalid = |e: FieldError| {
        let mut errs = ErrorList::new();
        errs.push(e);
        StatusError::invalid(GroupKind { group: "meta.k8s.io", kind: "DeleteOptions" }, "", &errs)
    };
    let policy = body
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or(q.get("propagationPolicy").map(str::to_owned));
    if let Some(p) = &policy
        && !matches!(p.as_str(), "Foreground" | "Background" | "Orphan")
    {
        return Err(invalid(FieldError::not_supported(
            "propagationPolicy",
            p.as_str(),
            &["Foreground", "Background", "Orphan", "nil"],
        )));
    }
    if policy.is_some() && (body.get("orphanDependents").is_some() || q.get("orphanDependents").is_some()) {
        return Err(invalid(FieldError::invalid(
            "propagationPolicy",
            policy.clone().unwrap_or_default(),
            "orphanDependents and deletionPropagation cannot be both set",
        )));
    }
    let dry_run = body.get("dryRun").and_then(Value::as_array).is_some_and(|d| d.iter().any(|v| v == "All"))
        || q.get("dryRun") == Some("All");
    let grace = body.get("gracePeriodSeconds").and_then(Value::as_i64).or(q.int("gracePeriodSeconds")?);
    Ok(DeleteOptions {
        grace_period: grace,
        uid: meta::get(&body, &["preconditions", "uid"]).and_then(Value::as_str).map(str::to_owned),
        resource_version: meta::get(&body, &["preconditions", "resourceVersion"])
            .and_then(Value::as_str)
            .map(str::to_owned),
        dry_run,
        orphan_dependents: body
            .get("orphanDependents")
            .and_then(Value::as_bool)
            .or(q.get("orphanDependents").map(|v| v == "true")),
        propagation: policy,
    })
}

async fn delete_collection(
    state: &Arc<State>,
    rp: &ResourcePath,
    q: &Query,
    opts: &DeleteOptions,
    n: Negotiated,
) -> Result<Response<Body>, StatusError> {
    let r = rp.resource;
    let filter = Filter::from_query(rp, q)?;
    state.registry.consistent().await?;
    let (rv, entries) = state.registry.cache.resource(r).snapshot(filter.namespace.as_deref());
    let names: Vec<(String, String)> =
        entries.iter().filter(|e| filter.matches(e)).map(|e| (e.namespace.clone(), e.name.clone())).collect();
    // Concurrently, so the deletions share the store's group commits.
    let results: Vec<_> = futures::stream::iter(names)
        .map(|(ns, name)| async move { state.registry.delete(r, &ns, &name, opts).await })
        .buffered(32)
        .collect()
        .await;
    let mut items = Vec::new();
    for result in results {
        match result {
            Ok(Deleted::Pending(obj) | Deleted::Gone(obj)) => items.push(obj),
            Err(err) if err.code == 404 => {}
            Err(err) => return Err(err),
        }
    }
    let list = json!({"kind": r.list_kind(), "apiVersion": r.api_version(), "metadata": {"resourceVersion": rv.to_string()}, "items": items});
    Ok(respond_value(
        StatusCode::OK,
        if n.format == web::Format::Yaml { web::Format::Yaml } else { web::Format::Json },
        &list,
    ))
}

fn scale_response(obj: &Value) -> Response<Body> {
    respond_value(StatusCode::OK, web::Format::Json, &scale::scale_of(obj))
}

/// Writes a workload's replicas through its scale: only `spec.replicas`
/// changes, on the object as it is in the store.
async fn set_replicas(
    state: &Arc<State>,
    r: &'static Resource,
    ns: &str,
    name: &str,
    scale: &Value,
    precondition: Option<String>,
    opts: WriteOptions,
) -> Result<Response<Body>, StatusError> {
    let replicas = scale::requested_replicas(scale, name)?;
    let m = MutateOptions { resource_version: precondition.as_deref(), dry_run: opts.dry_run };
    let obj = state
        .registry
        .mutate(r, ns, name, None, m, |obj| {
            scale::set_replicas(obj, replicas);
            Ok(())
        })
        .await?;
    Ok(scale_response(&obj))
}

async fn patch_scale(
    state: &Arc<State>,
    r: &'static Resource,
    ns: &str,
    name: &str,
    ty: PatchType,
    body: &[u8],
    opts: WriteOptions,
) -> Result<Response<Body>, StatusError> {
    let current = scale::scale_of(&state.registry.get(r, ns, name).await?.value());
    let def = kubesvc_api::schema::def(scale::SCALE_TYPE)
        .ok_or_else(|| StatusError::internal("the Scale type is missing from the schema table"))?;
    let patched = kubesvc_api::patch::apply(ty, &current, body, def).map_err(|e| match e {
        kubesvc_api::patch::PatchError::BadRequest(m) => StatusError::bad_request(m),
        other => StatusError::new(422, "Invalid", other.to_string()),
    })?;
    // A resourceVersion the patch sets is a precondition.
    let rv = meta::resource_version(&patched).to_string();
    let precondition = (rv != meta::resource_version(&current)).then_some(rv);
    set_replicas(state, r, ns, name, &patched, precondition, opts).await
}

/// pods/binding: assigns a pod to a node, once; the checks run on the pod as
/// stored, inside the compare-and-swap.
async fn bind(
    state: &Arc<State>,
    rp: &ResourcePath,
    name: &str,
    headers: &http::HeaderMap,
    bytes: &[u8],
) -> Result<Response<Body>, StatusError> {
    let binding = Binding::parse(&web::decode_meta(headers, bytes, "io.k8s.api.core.v1.Binding")?, name)?;
    let sub = Some(Subresource::Binding);
    state
        .registry
        .mutate(rp.resource, &rp.namespace, name, sub, MutateOptions::default(), |pod| binding.apply(pod))
        .await?;
    Ok(respond_value(
        StatusCode::CREATED,
        web::Format::Json,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}
