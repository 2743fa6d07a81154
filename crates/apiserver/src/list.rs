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
use crate::cache::{Entry, object_key};
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

fn list_options_invalid(field: &str, err: FieldError) -> StatusError {
    let _ = field;
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

/// Where a list page comes from.
enum Source {
    /// The cache, after this key.
    Cache(Option<String>),
    /// The store at a past revision, after this key.
    Store(i64, Option<String>),
}

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
    let rvm = q.get("resourceVersionMatch").unwrap_or_default();
    if q.flag("sendInitialEvents") {
        return Err(list_options_invalid(
            "sendInitialEvents",
            FieldError::forbidden("sendInitialEvents", "sendInitialEvents is forbidden for list"),
        ));
    }
    if !rvm.is_empty() {
        if !matches!(rvm, "Exact" | "NotOlderThan") {
            return Err(list_options_invalid(
                "",
                FieldError::not_supported("resourceVersionMatch", rvm, &["Exact", "NotOlderThan", ""]),
            ));
        }
        if rv.is_empty() {
            return Err(list_options_invalid(
                "",
                FieldError::forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ),
            ));
        }
        if cont.is_some() {
            return Err(list_options_invalid(
                "",
                FieldError::forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden when continue is provided",
                ),
            ));
        }
        if rvm == "Exact" && rv == "0" {
            return Err(list_options_invalid(
                "",
                FieldError::forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                ),
            ));
        }
    }
    let rc = state.registry.cache.resource(r);
    let (source, served_rv) = match cont {
        Some(token) => {
            if !rv.is_empty() && rv != "0" {
                return Err(StatusError::bad_request("specifying resource version is not allowed when using continue"));
            }
            let (token_rv, start) = decode_continue(token)?;
            let (last_change, cache_rv) = rc.revisions();
            if token_rv < 0 {
                // A token from an expired continuation: carry on at the latest state.
                (Source::Cache(Some(start)), cache_rv)
            } else if last_change <= token_rv && token_rv <= cache_rv {
                // Nothing in this resource changed since the first page: the cache is that state.
                (Source::Cache(Some(start)), token_rv)
            } else {
                (Source::Store(token_rv, Some(start)), token_rv)
            }
        }
        None => match (rv, rvm) {
            ("", _) => {
                state.registry.consistent().await?;
                (Source::Cache(None), rc.rv())
            }
            ("0", _) => (Source::Cache(None), rc.rv()),
            (v, m) => {
                let want: i64 =
                    v.parse().map_err(|_| StatusError::bad_request(format!("invalid resource version: {v:?}")))?;
                let (last_change, cache_rv) = rc.revisions();
                if m == "Exact" && !(last_change <= want && want <= cache_rv) {
                    (Source::Store(want, None), want)
                } else {
                    if !state.registry.cache.wait_for(want, CACHE_WAIT).await {
                        return Err(too_large(want, state.registry.cache.rv()));
                    }
                    (Source::Cache(None), rc.rv())
                }
            }
        },
    };

    let candidates: Vec<Arc<Entry>> = match source {
        Source::Cache(after) => rc.snapshot(filter.namespace.as_deref(), after.as_deref()).1,
        Source::Store(rev, after) => store_page(state, r, filter.namespace.as_deref(), after.as_deref(), rev).await?,
    };
    let mut items = Vec::new();
    let mut next: Option<String> = None;
    let mut remaining = 0usize;
    let mut iter = candidates.iter().filter(|e| filter.matches(e));
    for e in iter.by_ref() {
        if limit.is_some_and(|l| items.len() >= l) {
            // One more exists: page here.
            remaining = 1;
            break;
        }
        items.push(e.clone());
    }
    if remaining > 0 {
        remaining += iter.count();
        if let Some(last) = items.last() {
            next = Some(object_key(r, &last.namespace, &last.name));
        }
    }
    let mut list_meta = json!({"resourceVersion": served_rv.to_string()});
    if let Some(start) = next {
        list_meta["continue"] = json!(encode_continue(served_rv, &start));
        if filter.is_everything() {
            list_meta["remainingItemCount"] = json!(remaining);
        }
    }
    Ok(output::list(r, n, list_meta, &items, include))
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

/// Objects of `r` from the store at revision `rev`, after key `after`.
async fn store_page(
    state: &Arc<State>,
    r: &'static Resource,
    namespace: Option<&str>,
    after: Option<&str>,
    rev: i64,
) -> Result<Vec<Arc<Entry>>, StatusError> {
    let prefix = match namespace {
        Some(ns) if r.namespaced => format!("{}{ns}/", r.key_prefix()),
        _ => r.key_prefix(),
    };
    let start = match after {
        Some(k) => format!("{}{k}\u{0}", r.key_prefix()),
        None => prefix.clone(),
    };
    let req = RangeRequest {
        start: start.into_bytes(),
        end: kubesvc_store::prefix_end(prefix.as_bytes()),
        revision: rev,
        limit: 0,
    };
    match state.registry.store.range(req).await {
        Ok(resp) => Ok(resp
            .kvs
            .iter()
            .filter_map(|kv| {
                serde_json::from_slice::<Value>(&kv.value).ok().map(|v| Arc::new(Entry::build(r, v, kv.mod_revision)))
            })
            .collect()),
        Err(kubesvc_store::Error::Compacted { .. }) => {
            let mut e = StatusError::expired(if after.is_some() {
                EXPIRED_CONTINUE
            } else {
                "The resourceVersion for the provided list is too old."
            });
            if let Some(k) = after {
                e.continue_token = Some(encode_continue(-1, k));
            }
            Err(e)
        }
        Err(e) => Err(StatusError::internal(e)),
    }
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
