//! Table-test support for Service validation, shaped after Kubernetes' own
//! tests: a valid base Service, tweaked per case, with the expected number of
//! errors. The tables themselves are in `create_cases.rs` and `update_cases.rs`.

use serde_json::{Value, json};

/// One create case: `tweak` turns the base Service into the case's Service.
pub struct Case {
    pub name: &'static str,
    pub errs: usize,
    pub tweak: Box<dyn Fn(&mut Value)>,
}

pub fn case(name: &'static str, errs: usize, tweak: impl Fn(&mut Value) + 'static) -> Case {
    Case { name, errs, tweak: Box::new(tweak) }
}

/// Turns two copies of the base (old, new) into an update case's pair.
pub type PairTweak = Box<dyn Fn(&mut Value, &mut Value)>;

/// One update case: `tweak(old, new)` turns two copies of the base into the case's pair.
pub struct UpdateCase {
    pub name: &'static str,
    pub errs: usize,
    pub tweak: PairTweak,
}

pub fn update_case(name: &'static str, errs: usize, tweak: impl Fn(&mut Value, &mut Value) + 'static) -> UpdateCase {
    UpdateCase { name, errs, tweak: Box::new(tweak) }
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
    }
}
