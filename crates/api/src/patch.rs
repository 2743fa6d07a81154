//! PATCH bodies: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and
//! Kubernetes' strategic merge patch, whose list merging follows each field's
//! patch strategy and merge key, found through the schema table.

use serde_json::{Map, Value};

use crate::schema::{Def, Ty, def_at};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
}

impl PatchType {
    /// The patch type of a Content-Type, ignoring parameters.
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        match ct.split(';').next().unwrap_or_default().trim() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            _ => None,
        }
    }
}

/// Why a patch could not be applied, by the status Kubernetes answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// 400: the patch document itself is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 422 with Kubernetes' generic text: the patch does not apply.
    #[error("the server rejected our request due to an error in our request")]
    Rejected(String),
    /// 500 without a reason, as Kubernetes reports strategic-merge errors.
    #[error("{0}")]
    Internal(String),
}

/// Most operations a JSON patch may have.
pub const MAX_JSON_PATCH_OPS: usize = 10_000;

/// Applies a patch of type `ty` to `original`, an object of type `def`.
pub fn apply(ty: PatchType, original: &Value, body: &[u8], def: &'static Def) -> Result<Value, PatchError> {
    match ty {
        PatchType::Json => {
            let ops: json_patch::Patch =
                serde_json::from_slice(body).map_err(|e| PatchError::BadRequest(e.to_string()))?;
            if ops.0.len() > MAX_JSON_PATCH_OPS {
                return Err(PatchError::BadRequest(format!(
                    "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPS}, got {}",
                    ops.0.len()
                )));
            }
            let mut doc = original.clone();
            json_patch::patch(&mut doc, &ops.0).map_err(|e| PatchError::Rejected(e.to_string()))?;
            Ok(doc)
        }
        PatchType::Merge => {
            let patch: Value =
                serde_json::from_slice(body).map_err(|_| PatchError::BadRequest("Invalid JSON Patch".into()))?;
            let mut doc = original.clone();
            json_patch::merge(&mut doc, &patch);
            Ok(doc)
        }
        PatchType::Strategic => {
            let patch: Value = serde_json::from_slice(body).map_err(|e| PatchError::BadRequest(e.to_string()))?;
            let Value::Object(patch) = patch else {
                return Err(PatchError::BadRequest("invalid JSON document".into()));
            };
            let Value::Object(orig) = original.clone() else {
                return Err(PatchError::BadRequest("invalid JSON document".into()));
            };
            merge_map(orig, patch, Some(def)).map(Value::Object)
        }
    }
}

/// A list field's patch strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListStrategy {
    /// The merge key for lists of objects; `None` for lists of primitives.
    pub merge_key: Option<&'static str>,
    pub retain_keys: bool,
}

/// The `patchStrategy`/`patchMergeKey` tags of the served types, by Go type and JSON field.
fn strategy(def: &Def, field: &str) -> Option<ListStrategy> {
    let merge = |k: &'static str| Some(ListStrategy { merge_key: Some(k), retain_keys: false });
    let primitive = Some(ListStrategy { merge_key: None, retain_keys: false });
    match (def.short_name(), field) {
        ("ObjectMeta", "finalizers") => primitive,
        ("ObjectMeta", "ownerReferences") => merge("uid"),
        ("PodSpec", "volumes" | "resourceClaims") => Some(ListStrategy { merge_key: Some("name"), retain_keys: true }),
        (
            "PodSpec",
            "containers" | "initContainers" | "ephemeralContainers" | "imagePullSecrets" | "schedulingGates",
        ) => merge("name"),
        ("PodSpec", "hostAliases") => merge("ip"),
        ("PodSpec", "topologySpreadConstraints") => merge("topologyKey"),
        ("Container" | "EphemeralContainer", "ports") => merge("containerPort"),
        ("Container" | "EphemeralContainer", "env") => merge("name"),
        ("Container" | "EphemeralContainer", "volumeMounts") => merge("mountPath"),
        ("Container" | "EphemeralContainer", "volumeDevices") => merge("devicePath"),
        ("PodStatus", "conditions") => merge("type"),
        ("PodStatus", "podIPs" | "hostIPs") => merge("ip"),
        ("PodStatus", "resourceClaimStatuses") => Some(ListStrategy { merge_key: Some("name"), retain_keys: true }),
        ("ContainerStatus", "volumeMounts") => merge("mountPath"),
        ("ContainerStatus", "allocatedResourcesStatus") => merge("name"),
        ("ServiceSpec", "ports") => merge("port"),
        (
            "ServiceStatus" | "NodeStatus" | "NamespaceStatus" | "DeploymentStatus" | "ReplicaSetStatus",
            "conditions",
        ) => merge("type"),
        ("NodeSpec", "podCIDRs") => primitive,
        ("NodeStatus", "addresses") => merge("type"),
        _ => None,
    }
}

/// The definition of the objects a field holds (directly, or as list elements or map values).
fn field_def(def: Option<&'static Def>, field: &str) -> Option<&'static Def> {
    let prop = def?.prop(field)?;
    let mut ty = &prop.ty;
    loop {
        match ty {
            Ty::Ref(i) => return Some(def_at(*i)),
            Ty::List(t) | Ty::Map(t) => ty = t,
            _ => return None,
        }
    }
}

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    def: Option<&'static Def>,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(d) = patch.remove(DIRECTIVE) {
        match d.as_str() {
            Some("replace") => return strip_directives(patch, def),
            Some("delete") => return Ok(Map::new()),
            _ => {
                return Err(PatchError::Internal(format!("unknown patch type: {d} in map: {}", Value::Object(patch))));
            }
        }
    }
    if let Some(retain) = patch.remove(RETAIN_KEYS) {
        let Value::Array(keys) = retain else {
            return Err(PatchError::BadRequest("invalid patch format of retainKeys".into()));
        };
        let keys: Vec<&str> = keys.iter().filter_map(Value::as_str).collect();
        for (k, v) in &patch {
            if !v.is_null() && !k.starts_with('$') && !keys.contains(&k.as_str()) {
                return Err(PatchError::Rejected("patch content doesn't match retainKeys list".into()));
            }
        }
        original.retain(|k, _| keys.contains(&k.as_str()));
    }
    // Deletions from primitive lists first, then everything else.
    let deletes: Vec<String> = patch.keys().filter(|k| k.starts_with(DELETE_FROM_PRIMITIVE)).cloned().collect();
    for dk in deletes {
        let field = &dk[DELETE_FROM_PRIMITIVE.len()..];
        let Some(Value::Array(remove)) = patch.remove(&dk) else {
            return Err(PatchError::BadRequest("invalid patch format of primitive list".into()));
        };
        if let Some(Value::Array(list)) = original.get_mut(field) {
            list.retain(|v| !remove.contains(v));
        }
    }
    let orders: Vec<String> = patch.keys().filter(|k| k.starts_with(SET_ELEMENT_ORDER)).cloned().collect();
    let orders: Vec<(String, Value)> = orders.into_iter().filter_map(|k| patch.remove(&k).map(|v| (k, v))).collect();
    let server_lists: Vec<(String, Vec<Value>)> = orders
        .iter()
        .filter_map(|(k, _)| {
            let field = &k[SET_ELEMENT_ORDER.len()..];
            original.get(field).and_then(Value::as_array).map(|l| (field.to_string(), l.clone()))
        })
        .collect();

    for (k, pv) in patch {
        if pv.is_null() {
            original.remove(&k);
            continue;
        }
        let sub = field_def(def, &k);
        let merged = match (original.remove(&k), pv) {
            (Some(Value::Object(o)), Value::Object(p)) => Value::Object(merge_map(o, p, sub)?),
            (Some(Value::Array(o)), Value::Array(p)) => Value::Array(merge_list(o, p, def, &k, sub)?),
            (None, Value::Object(p)) => Value::Object(merge_map(Map::new(), p, sub)?),
            (None, Value::Array(p)) => Value::Array(merge_list(Vec::new(), p, def, &k, sub)?),
            (_, pv) => pv,
        };
        original.insert(k, merged);
    }

    for (k, order) in orders {
        let field = &k[SET_ELEMENT_ORDER.len()..];
        let Value::Array(order) = order else {
            return Err(PatchError::BadRequest("invalid patch format of setElementOrder list".into()));
        };
        let key = def.and_then(|d| strategy(d, field)).and_then(|s| s.merge_key);
        let server = server_lists.iter().find(|(f, _)| f == field).map(|(_, l)| l.as_slice()).unwrap_or_default();
        if let Some(Value::Array(list)) = original.get_mut(field) {
            *list = reorder(std::mem::take(list), &order, server, key);
        }
    }
    Ok(original)
}

/// Removes directives from a value that is taken as is (no original to merge with).
fn strip_directives(patch: Map<String, Value>, def: Option<&'static Def>) -> Result<Map<String, Value>, PatchError> {
    merge_map(Map::new(), patch, def)
}

fn merge_key_value<'a>(v: &'a Value, key: &str) -> Result<&'a Value, PatchError> {
    v.get(key).ok_or_else(|| PatchError::Internal(format!("map: {v} does not contain declared merge key: {key}")))
}

fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    def: Option<&'static Def>,
    field: &str,
    elem_def: Option<&'static Def>,
) -> Result<Vec<Value>, PatchError> {
    let Some(strat) = def.and_then(|d| strategy(d, field)) else {
        // Lists without a merge strategy are replaced, directives and all removed.
        return patch
            .into_iter()
            .map(|v| match v {
                Value::Object(m) => strip_directives(m, elem_def).map(Value::Object),
                v => Ok(v),
            })
            .collect();
    };
    let Some(key) = strat.merge_key else {
        // A primitive list with the merge strategy: a union, original order first.
        let mut out = original;
        for v in patch {
            if v.is_object() || v.is_array() {
                return Err(PatchError::BadRequest("invalid patch format of primitive list".into()));
            }
            if !out.contains(&v) {
                out.push(v);
            }
        }
        return Ok(out);
    };
    if patch.iter().any(|p| p.get(DIRECTIVE).and_then(Value::as_str) == Some("replace")) {
        return patch
            .into_iter()
            .filter(|p| p.get(DIRECTIVE).is_none())
            .map(|v| match v {
                Value::Object(m) => strip_directives(m, elem_def).map(Value::Object),
                v => Ok(v),
            })
            .collect();
    }
    let mut out = original;
    for p in patch {
        let Value::Object(mut pm) = p else {
            return Err(PatchError::Internal(format!("cannot merge lists without merge key for type {field}")));
        };
        let directive = pm.get(DIRECTIVE).and_then(Value::as_str).map(str::to_owned);
        match directive.as_deref() {
            Some("delete") => {
                let kv = merge_key_value(&Value::Object(pm.clone()), key)?.clone();
                out.retain(|o| o.get(key) != Some(&kv));
                continue;
            }
            Some("merge") => {
                return Err(PatchError::Internal("merging lists cannot yet be specified in the patch".into()));
            }
            Some(other) => {
                return Err(PatchError::Internal(format!("unknown patch type: {other} in map: {}", Value::Object(pm))));
            }
            None => {}
        }
        let kv = merge_key_value(&Value::Object(pm.clone()), key)?.clone();
        match out.iter_mut().find(|o| o.get(key) == Some(&kv)) {
            Some(existing) => {
                let Value::Object(em) = std::mem::take(existing) else {
                    unreachable!("list elements with a merge key are objects")
                };
                *existing = Value::Object(merge_map(em, pm, elem_def)?);
            }
            None => {
                pm.remove(DIRECTIVE);
                out.push(Value::Object(merge_map(Map::new(), pm, elem_def)?));
            }
        }
    }
    Ok(out)
}

/// Orders `merged` as `$setElementOrder` asks, keeping elements the order does
/// not name at their positions among the server's elements.
fn reorder(merged: Vec<Value>, order: &[Value], server: &[Value], key: Option<&str>) -> Vec<Value> {
    let id = |v: &Value| -> Value {
        match key {
            Some(k) => v.get(k).cloned().unwrap_or(Value::Null),
            None => v.clone(),
        }
    };
    let order_ids: Vec<Value> = order.iter().map(&id).collect();
    let server_pos = |v: &Value| server.iter().position(|s| id(s) == id(v));
    let mut ordered: Vec<Value> = Vec::new();
    for oid in &order_ids {
        if let Some(v) = merged.iter().find(|m| id(m) == *oid) {
            ordered.push(v.clone());
        }
    }
    let mut server_only: Vec<(usize, Value)> = merged
        .iter()
        .filter(|m| !order_ids.contains(&id(m)))
        .map(|m| (server_pos(m).unwrap_or(usize::MAX), m.clone()))
        .collect();
    server_only.sort_by_key(|(p, _)| *p);
    let mut out = Vec::with_capacity(merged.len());
    let mut rest = server_only.into_iter().peekable();
    for v in ordered {
        if let Some(pos) = server_pos(&v) {
            while rest.peek().is_some_and(|(p, _)| *p < pos) {
                out.push(rest.next().expect("peeked").1);
            }
        }
        out.push(v);
    }
    out.extend(rest.map(|(_, v)| v));
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::schema::def;

    fn smp(orig: Value, patch: Value, kind: &str) -> Result<Value, PatchError> {
        apply(PatchType::Strategic, &orig, patch.to_string().as_bytes(), def(kind).unwrap())
    }

    const POD: &str = "io.k8s.api.core.v1.Pod";
    const SVC: &str = "io.k8s.api.core.v1.Service";

    #[test]
    fn merges_lists_by_key() {
        let orig = json!({"spec": {"containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:1"}]}});
        let out = smp(
            orig.clone(),
            json!({"spec": {"containers": [{"name": "b", "image": "y:2"}, {"name": "c", "image": "z"}]}}),
            POD,
        )
        .unwrap();
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:2"}, {"name": "c", "image": "z"}])
        );
        let out = smp(orig.clone(), json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}), POD).unwrap();
        assert_eq!(out["spec"]["containers"], json!([{"name": "b", "image": "y:1"}]));
        let out = smp(orig, json!({"spec": {"containers": [{"name": "n", "image": "q"}, {"$patch": "replace"}]}}), POD)
            .unwrap();
        assert_eq!(out["spec"]["containers"], json!([{"name": "n", "image": "q"}]));
    }

    #[test]
    fn service_ports_merge_by_port_and_maps_merge() {
        let orig = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"ports": [{"port": 80, "name": "http"}], "selector": {"app": "x"}}});
        let out = smp(
            orig,
            json!({"metadata": {"labels": {"b": null, "c": "3"}}, "spec": {"ports": [{"port": 443, "name": "https"}], "selector": {"tier": "web"}}}),
            SVC,
        )
        .unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"a": "1", "c": "3"}));
        assert_eq!(out["spec"]["ports"], json!([{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]));
        assert_eq!(out["spec"]["selector"], json!({"app": "x", "tier": "web"}));
    }

    #[test]
    fn replace_lists_primitives_and_directives() {
        let orig = json!({"metadata": {"finalizers": ["a/x", "b/y"]}, "spec": {"externalIPs": ["1.1.1.1"]}});
        let out = smp(orig.clone(), json!({"spec": {"externalIPs": ["2.2.2.2"]}}), SVC).unwrap();
        assert_eq!(out["spec"]["externalIPs"], json!(["2.2.2.2"]), "lists without a strategy are replaced");
        let out = smp(orig.clone(), json!({"metadata": {"finalizers": ["c/z", "a/x"]}}), SVC).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["a/x", "b/y", "c/z"]), "primitive merge lists are a union");
        let out =
            smp(orig.clone(), json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a/x"]}}), SVC).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["b/y"]));
        let out = smp(orig, json!({"spec": {"$patch": "replace", "type": "NodePort"}}), SVC).unwrap();
        assert_eq!(out["spec"], json!({"type": "NodePort"}));
    }

    #[test]
    fn retain_keys_and_errors() {
        let dep = "io.k8s.api.apps.v1.Deployment";
        let orig = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let out = smp(orig.clone(), json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}), dep)
            .unwrap();
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        let err = smp(
            json!({"spec": {"containers": [{"name": "a"}]}}),
            json!({"spec": {"containers": [{"image": "x"}]}}),
            POD,
        )
        .unwrap_err();
        assert!(matches!(err, PatchError::Internal(m) if m.contains("does not contain declared merge key: name")));
        assert!(matches!(
            apply(PatchType::Strategic, &orig, b"{not json", def(dep).unwrap()),
            Err(PatchError::BadRequest(_))
        ));
    }

    #[test]
    fn set_element_order() {
        let orig = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}});
        let patch = json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}], "containers": [{"name": "c", "image": "new"}]}});
        let out = smp(orig, patch, POD).unwrap();
        let names: Vec<&str> =
            out["spec"]["containers"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, vec!["b", "c", "a"], "server-only b keeps its place before the reordered ones");
    }

    #[test]
    fn json_and_merge_patches() {
        let orig = json!({"metadata": {"labels": {"a": "1"}}});
        let d = def(SVC).unwrap();
        let out =
            apply(PatchType::Json, &orig, br#"[{"op":"add","path":"/metadata/labels/b","value":"2"}]"#, d).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"a": "1", "b": "2"}));
        assert!(matches!(
            apply(PatchType::Json, &orig, br#"[{"op":"test","path":"/metadata/labels/a","value":"9"}]"#, d),
            Err(PatchError::Rejected(_))
        ));
        let out = apply(PatchType::Merge, &orig, br#"{"metadata":{"labels":{"a":null}}}"#, d).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({}));
    }
}
