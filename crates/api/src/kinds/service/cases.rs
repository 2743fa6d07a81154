//! Table-test support for Service validation, shaped after Kubernetes' own
//! tests: a valid base Service, tweaked per case, with the expected number of
//! errors. Upstream compares counts only; here every error must also name a
//! field the case touched (or one it lists in `also`), which the helpers
//! record. The tables themselves are in `create_cases.rs`, `update_cases.rs`
//! and `etp_cases.rs`.

use std::cell::RefCell;

use serde_json::{Value, json};

thread_local! {
    /// The JSON pointers the running case changed.
    static TOUCHED: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Records that a case changed the field at JSON pointer `ptr`, for the field-path check.
pub fn touch(ptr: &str) {
    TOUCHED.with(|t| t.borrow_mut().push(ptr.to_string()));
}

/// The pointers changed since the last call.
pub fn take_touched() -> Vec<String> {
    TOUCHED.with(|t| std::mem::take(&mut *t.borrow_mut()))
}

/// A field path (`spec.ports[0].name`, `metadata.annotations[a.b/c]`) as segments.
pub fn field_segments(path: &str) -> Vec<String> {
    let (mut out, mut cur, mut in_bracket) = (Vec::new(), String::new(), false);
    for ch in path.chars() {
        match (ch, in_bracket) {
            ('[', false) | ('.', false) => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                in_bracket = ch == '[';
            }
            (']', true) => {
                out.push(std::mem::take(&mut cur));
                in_bracket = false;
            }
            _ => cur.push(ch),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A JSON pointer as segments.
pub fn pointer_segments(ptr: &str) -> Vec<String> {
    ptr.split('/').skip(1).map(|s| s.replace("~1", "/").replace("~0", "~")).collect()
}

/// Kubernetes' own spellings of some paths, as its validation writes them.
const UPSTREAM_SPELLINGS: &[(&str, &str)] = &[("spec.LoadBalancerSourceRanges", "spec.loadBalancerSourceRanges")];

/// Whether an error at `field` is about something a case touched: one path leads to the other.
pub fn related(field: &str, touched: &[String]) -> bool {
    if field.is_empty() {
        return false;
    }
    let field = UPSTREAM_SPELLINGS
        .iter()
        .find_map(|(theirs, ours)| field.strip_prefix(theirs).map(|rest| format!("{ours}{rest}")))
        .unwrap_or_else(|| field.to_string());
    let f = field_segments(&field);
    touched.iter().map(|t| pointer_segments(t)).any(|t| {
        let n = f.len().min(t.len());
        f[..n] == t[..n]
    })
}

/// One create case: `tweak` turns the base Service into the case's Service.
pub struct Case {
    pub name: &'static str,
    pub errs: usize,
    /// Fields an error may name though the case did not touch them (what a type change requires).
    pub also: &'static [&'static str],
    pub tweak: Box<dyn Fn(&mut Value)>,
}

pub fn case(name: &'static str, errs: usize, tweak: impl Fn(&mut Value) + 'static) -> Case {
    Case { name, errs, also: &[], tweak: Box::new(tweak) }
}

impl Case {
    pub fn also(self, fields: &'static [&'static str]) -> Case {
        Case { also: fields, ..self }
    }
}

/// Turns two copies of the base (old, new) into an update case's pair.
pub type PairTweak = Box<dyn Fn(&mut Value, &mut Value)>;

/// One update case: `tweak(old, new)` turns two copies of the base into the case's pair.
pub struct UpdateCase {
    pub name: &'static str,
    pub errs: usize,
    /// As [`Case::also`].
    pub also: &'static [&'static str],
    pub tweak: PairTweak,
}

pub fn update_case(name: &'static str, errs: usize, tweak: impl Fn(&mut Value, &mut Value) + 'static) -> UpdateCase {
    UpdateCase { name, errs, also: &[], tweak: Box::new(tweak) }
}

impl UpdateCase {
    pub fn also(self, fields: &'static [&'static str]) -> UpdateCase {
        UpdateCase { also: fields, ..self }
    }
}

/// Kubernetes' `makeValidService()`, as v1 JSON.
pub fn base() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "valid", "namespace": "valid", "labels": {}, "annotations": {}, "resourceVersion": "1"},
        "spec": {
            "selector": {"key": "val"},
            "sessionAffinity": "None",
            "type": "ClusterIP",
            "ports": [{"name": "p", "protocol": "TCP", "port": 8675, "targetPort": 8675}],
            "internalTrafficPolicy": "Cluster"
        }
    })
}

fn parent_and_key<'a>(v: &'a mut Value, ptr: &str) -> (&'a mut Value, String) {
    let (parent, key) = ptr.rsplit_once('/').expect("a JSON pointer starts with /");
    let mut cur = v;
    for seg in parent.split('/').skip(1) {
        cur = match cur {
            Value::Array(a) => {
                let i: usize = seg.parse().expect("an array index");
                &mut a[i]
            }
            other => {
                if !other.is_object() {
                    *other = json!({});
                }
                other.as_object_mut().expect("an object").entry(seg.to_string()).or_insert(json!({}))
            }
        };
    }
    (cur, key.to_string())
}

/// Sets the value at a JSON pointer, creating objects on the way; an array
/// index equal to the length appends.
pub fn set(v: &mut Value, ptr: &str, val: Value) {
    touch(ptr);
    let (parent, key) = parent_and_key(v, ptr);
    match parent {
        Value::Array(a) => {
            let i: usize = key.parse().expect("an array index");
            if i == a.len() { a.push(val) } else { a[i] = val }
        }
        other => {
            if !other.is_object() {
                *other = json!({});
            }
            other.as_object_mut().expect("an object").insert(key, val);
        }
    }
}

/// Removes the value at a JSON pointer, if any.
pub fn del(v: &mut Value, ptr: &str) {
    touch(ptr);
    let (parent, key) = parent_and_key(v, ptr);
    match parent {
        Value::Array(a) => {
            let i: usize = key.parse().expect("an array index");
            if i < a.len() {
                a.remove(i);
            }
        }
        Value::Object(m) => {
            m.remove(&key);
        }
        _ => {}
    }
}

/// Appends to the array at a JSON pointer, creating it if missing.
pub fn push(v: &mut Value, ptr: &str, val: Value) {
    touch(ptr);
    let (parent, key) = parent_and_key(v, ptr);
    if !parent.is_object() {
        *parent = json!({});
    }
    let slot = parent.as_object_mut().expect("an object").entry(key).or_insert(json!([]));
    if !slot.is_array() {
        *slot = json!([]);
    }
    slot.as_array_mut().expect("an array").push(val);
}

/// The value at a JSON pointer (null when missing).
pub fn get(v: &Value, ptr: &str) -> Value {
    v.pointer(ptr).cloned().unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        let mut s = base();
        set(&mut s, "/spec/ports/1", json!({"name": "q", "port": 1}));
        set(&mut s, "/spec/sessionAffinityConfig/clientIP/timeoutSeconds", json!(10));
        push(&mut s, "/spec/externalIPs", json!("1.2.3.4"));
        del(&mut s, "/spec/ports/0");
        assert_eq!(get(&s, "/spec/ports/0/name"), "q");
        assert_eq!(get(&s, "/spec/sessionAffinityConfig/clientIP/timeoutSeconds"), 10);
        assert_eq!(get(&s, "/spec/externalIPs"), json!(["1.2.3.4"]));
        assert_eq!(field_segments("metadata.annotations[a.b/c].x"), ["metadata", "annotations", "a.b/c", "x"]);
        assert_eq!(field_segments("spec.ports[0].name"), ["spec", "ports", "0", "name"]);
        let touched = take_touched();
        assert!(related("spec.ports[0].name", &touched), "{touched:?}");
        assert!(related("spec", &touched), "a parent of something touched");
        assert!(related("spec.sessionAffinityConfig.clientIP.timeoutSeconds", &touched));
        assert!(!related("spec.clusterIP", &touched));
    }
}
