//! LIST: selectors, resourceVersion semantics, and limit/continue paging,
//! served from the watch cache (and from the store for a continuation whose
//! resource changed since its first page, or an exact old resourceVersion).

use std::sync::Arc;

use base64::Engine as _;
use http::Response;
use kubesvc_api::kinds;
use kubesvc_api::resources::Resource;
use kubesvc_api::selector::{FieldSelector, LabelSelector};
use kubesvc_api::status::{GroupKind, StatusError};
use kubesvc_api::validation::{ErrorList, FieldError};
use kubesvc_store::RangeRequest;
use serde_json::{Value, json};

use crate::State;
use crate::cache::{At, Entry, Page, object_key};
use crate::output::{self, IncludeObject};
use crate::registry::CACHE_WAIT;
use crate::web::{Body, Negotiated, Query, ResourcePath};

/// Label and field selectors of a list, watch or deletecollection.
pub struct Filter {
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn from_query(rp: &ResourcePath, q: &Query) -> Result<Filter, StatusError> {
        let labels =
            LabelSelector::parse(q.get("labelSelector").unwrap_or_default()).map_err(StatusError::bad_request)?;
        let fields =
            FieldSelector::parse(q.get("fieldSelector").unwrap_or_default()).map_err(StatusError::bad_request)?;
        kinds::check_field_labels(rp.resource.rules, fields.terms.iter().map(|t| t.field.as_str()))
            .map_err(StatusError::bad_request)?;
        let namespace = (rp.resource.namespaced && !rp.namespace.is_empty()).then(|| rp.namespace.clone());
        Ok(Filter { namespace, labels, fields })
    }

    pub fn is_everything(&self) -> bool {
        self.labels.is_everything() && self.fields.is_everything()
    }

    pub fn matches(&self, e: &Entry) -> bool {
        if let Some(ns) = &self.namespace
            && e.namespace != *ns
        {
            return false;
        }
        self.labels.matches(e.labels.as_ref()) && self.fields.matches(|f| e.field(f))
    }
}

fn list_options_invalid(err: FieldError) -> StatusError {
    let mut errs = ErrorList::new();
    errs.push(err);
    StatusError::invalid(GroupKind { group: "meta.k8s.io", kind: "ListOptions" }, "", &errs)
}

fn encode_continue(rv: i64, start: &str) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{start}\u{0}")});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(i64, String), StatusError> {
    let bad = |why: &str| StatusError::bad_request(format!("invalid continue token: continue key is not valid: {why}"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|e| bad(&e.to_string()))?;
    let v: Value = serde_json::from_slice(&raw).map_err(|e| bad(&e.to_string()))?;
    if v.get("v").and_then(Value::as_str) != Some("meta.k8s.io/v1") {
        return Err(bad(&format!(
            "server does not recognize this encoded version {:?}",
            v.get("v").and_then(Value::as_str).unwrap_or_default()
        )));
    }
    let rv = v
        .get("rv")
        .and_then(Value::as_i64)
        .ok_or_else(|| bad("incorrect encoded start resourceVersion (version meta.k8s.io/v1)"))?;
    let start = v.get("start").and_then(Value::as_str).unwrap_or_default();
    if start.is_empty() {
        return Err(bad("encoded start key empty (version meta.k8s.io/v1)"));
    }
    Ok((rv, start.trim_end_matches('\u{0}').to_string()))
}

const EXPIRED_CONTINUE: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

pub async fn list(
    state: &Arc<State>,
    rp: &ResourcePath,
    q: &Query,
    n: Negotiated,
) -> Result<Response<Body>, StatusError> {
    let r = rp.resource;
    let include = IncludeObject::parse(q.get("includeObject"))?;
    let filter = Filter::from_query(rp, q)?;
    let limit = q.int("limit")?.filter(|l| *l > 0).map(|l| l as usize);
    let cont = q.get("continue").filter(|c| !c.is_empty());
    let rv = q.get("resourceVersion").unwrap_or_default();
    let mut rvm = q.get("resourceVersionMatch").unwrap_or_default();
    if q.flag("sendInitialEvents") {
        return Err(list_options_invalid(FieldError::forbidden(
            "sendInitialEvents",
            "sendInitialEvents is forbidden for list",
        )));
    }
    if !rvm.is_empty() {
        if !matches!(rvm, "Exact" | "NotOlderThan") {
            return Err(list_options_invalid(FieldError::not_supported(
                "resourceVersionMatch",
                rvm,
                &["Exact", "NotOlderThan", ""],
            )));
        }
        if rv.is_empty() {
            return Err(list_options_invalid(FieldError::forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            )));
        }
        if cont.is_some() {
            return Err(list_options_invalid(FieldError::forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden when continue is provided",
            )));
        }
        if rvm == "Exact" && rv == "0" {
            return Err(list_options_invalid(FieldError::forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
            )));
        }
    } else if limit.is_some() && !rv.is_empty() && rv != "0" && cont.is_none() {
        // A paginated list at a resourceVersion is an exact read, as in Kubernetes.
        rvm = "Exact";
    }
    let rc = state.registry.cache.resource(r);
    let count = filter.is_everything();
    let pred = |e: &Entry| filter.matches(e);
    // (the revision to read at, the key to start after); the cache first, the store if it must.
    let (at, after): (At, Option<String>) = match cont {
        Some(token) => {
            if !rv.is_empty() && rv != "0" {
                return Err(StatusError::bad_request("specifying resource version is not allowed when using continue"));
            }
            let (token_rv, start) = decode_continue(token)?;
            if let Some(ns) = &filter.namespace
                && !start.starts_with(&format!("{ns}/"))
            {
                return Err(StatusError::bad_request(
                    "invalid continue token: continue key is not valid: the key is outside the list",
                ));
            }
            // A token from an expired continuation carries on at the latest state.
            (if token_rv < 0 { At::Current } else { At::Exactly(token_rv) }, Some(start))
        }
        None => match (rv, rvm) {
            ("", _) => {
                state.registry.consistent().await?;
                (At::Current, None)
            }
            ("0", _) => (At::Current, None),
            (v, m) => {
                let want: i64 =
                    v.parse().map_err(|_| StatusError::bad_request(format!("invalid resource version: {v:?}")))?;
                if !state.registry.cache.wait_for(want, CACHE_WAIT).await && m != "Exact" {
                    return Err(too_large(want, state.registry.cache.rv()));
                }
                (if m == "Exact" { At::Exactly(want) } else { At::Current }, None)
            }
        },
    };
    let page = match rc.page(filter.namespace.as_deref(), after.as_deref(), at, limit, &pred, count) {
        Some(p) => p,
        None => {
            let At::Exactly(rev) = at else { unreachable!("the current state is always servable") };
            store_page(state, r, &filter, after.as_deref(), rev, limit, count).await?
        }
    };
    let mut list_meta = json!({"resourceVersion": page.rv.to_string()});
    if page.more
        && let Some(last) = page.items.last()
    {
        list_meta["continue"] = json!(encode_continue(page.rv, &object_key(r, &last.namespace, &last.name)));
        if let Some(n) = page.remaining {
            list_meta["remainingItemCount"] = json!(n);
        }
    }
    Ok(output::list(r, n, list_meta, &page.items, include))
}

pub fn too_large(want: i64, current: i64) -> StatusError {
    let mut e = StatusError::timeout(format!("Too large resource version: {want}, current: {current}"), 1);
    if let Some(d) = e.details.as_mut() {
        d.causes.push(kubesvc_api::status::Cause {
            reason: "ResourceVersionTooLarge".into(),
            message: "Too large resource version".into(),
            field: String::new(),
        });
    }
    e
}

/// A page of `r` from the store at revision `rev`, after key `after`, read in chunks.
async fn store_page(
    state: &Arc<State>,
    r: &'static Resource,
    filter: &Filter,
    after: Option<&str>,
    rev: i64,
    limit: Option<usize>,
    count: bool,
) -> Result<Page, StatusError> {
    let prefix = match &filter.namespace {
        Some(ns) if r.namespaced => format!("{}{ns}/", r.key_prefix()),
        _ => r.key_prefix(),
    };
    let end = kubesvc_store::prefix_end(prefix.as_bytes());
    let mut start = match after {
        Some(k) => format!("{}{k}\u{0}", r.key_prefix()).into_bytes(),
        None => prefix.clone().into_bytes(),
    };
    let want = limit.unwrap_or(usize::MAX);
    let chunk = limit.map_or(0, |l| (l + 1).max(500));
    let mut items = Vec::new();
    let mut more = false;
    let mut remaining = None;
    loop {
        let req = RangeRequest { start: start.clone(), end: end.clone(), revision: rev, limit: chunk };
        let resp = match state.registry.store.range(req).await {
            Ok(resp) => resp,
            Err(kubesvc_store::Error::Compacted { .. }) => {
                let mut e = StatusError::expired(if after.is_some() {
                    EXPIRED_CONTINUE
                } else {
                    "The resourceVersion for the provided list is too old."
                });
                if let Some(k) = after {
                    e.continue_token = Some(encode_continue(-1, k));
                }
                return Err(e);
            }
            Err(kubesvc_store::Error::FutureRevision { requested, current }) => {
                return Err(too_large(requested, current));
            }
            Err(e) => return Err(StatusError::internal(e)),
        };
        for (i, kv) in resp.kvs.iter().enumerate() {
            let Ok(v) = serde_json::from_slice::<Value>(&kv.value) else { continue };
            let e = Arc::new(Entry::build(r, v, kv.mod_revision));
            if !filter.matches(&e) {
                continue;
            }
            if items.len() == want {
                more = true;
                // Without selectors, what follows is every key of the range after this page.
                remaining = count.then(|| resp.count - i);
                break;
            }
            items.push(e);
        }
        match resp.kvs.last() {
            Some(last) if !more && resp.more => {
                start = last.key.to_vec();
                start.push(0);
            }
            _ => break,
        }
    }
    if count && !more {
        remaining = Some(0);
    }
    Ok(Page { rv: rev, items, remaining, more })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens() {
        let t = encode_continue(42, "default/web");
        assert_eq!(decode_continue(&t).unwrap(), (42, "default/web".to_string()));
        assert!(
            decode_continue("!!!")
                .unwrap_err()
                .message
                .starts_with("invalid continue token: continue key is not valid")
        );
        let bad = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"v":"x","rv":1,"start":"a"}"#);
        assert!(
            decode_continue(&bad).unwrap_err().message.contains("server does not recognize this encoded version \"x\"")
        );
    }
}
