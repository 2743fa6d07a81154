//! Reading and writing object metadata (and other fields) on JSON objects.

use serde_json::{Map, Value};

/// The `metadata` object, or `Null` when there is none.
pub fn meta(obj: &Value) -> &Value {
    obj.get("metadata").unwrap_or(&Value::Null)
}

/// The `metadata` object, created if missing.
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    object_at(obj, &["metadata"])
}

fn meta_str<'a>(obj: &'a Value, key: &str) -> &'a str {
    meta(obj).get(key).and_then(Value::as_str).unwrap_or_default()
}

pub fn name(obj: &Value) -> &str {
    meta_str(obj, "name")
}

pub fn namespace(obj: &Value) -> &str {
    meta_str(obj, "namespace")
}

pub fn uid(obj: &Value) -> &str {
    meta_str(obj, "uid")
}

pub fn resource_version(obj: &Value) -> &str {
    meta_str(obj, "resourceVersion")
}

pub fn generate_name(obj: &Value) -> &str {
    meta_str(obj, "generateName")
}

pub fn deletion_timestamp(obj: &Value) -> Option<&str> {
    meta(obj).get("deletionTimestamp").and_then(Value::as_str)
}

pub fn generation(obj: &Value) -> i64 {
    meta(obj).get("generation").and_then(Value::as_i64).unwrap_or(0)
}

pub fn labels(obj: &Value) -> Option<&Map<String, Value>> {
    meta(obj).get("labels").and_then(Value::as_object)
}

pub fn annotations(obj: &Value) -> Option<&Map<String, Value>> {
    meta(obj).get("annotations").and_then(Value::as_object)
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    meta(obj)
        .get("finalizers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_owned))
        .collect()
}

pub fn set_finalizers(obj: &mut Value, finalizers: Vec<String>) {
    let m = meta_mut(obj);
    if finalizers.is_empty() {
        m.remove("finalizers");
    } else {
        m.insert("finalizers".into(), Value::from(finalizers));
    }
}

pub fn set(obj: &mut Value, key: &str, value: impl Into<Value>) {
    meta_mut(obj).insert(key.into(), value.into());
}

pub fn remove(obj: &mut Value, key: &str) -> Option<Value> {
    obj.get_mut("metadata").and_then(Value::as_object_mut).and_then(|m| m.remove(key))
}

/// The owner reference with `controller: true`, if any.
pub fn controller_ref(obj: &Value) -> Option<&Value> {
    meta(obj)
        .get("ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
}

/// The value at `path`, if every step exists.
pub fn get<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, k| v.get(*k))
}

pub fn get_str<'a>(obj: &'a Value, path: &[&str]) -> &'a str {
    get(obj, path).and_then(Value::as_str).unwrap_or_default()
}

/// The object at `path`, creating (or replacing non-objects with) empty objects on the way.
pub fn object_at<'a>(obj: &'a mut Value, path: &[&str]) -> &'a mut Map<String, Value> {
    let mut cur = obj;
    for k in path {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        cur = cur
            .as_object_mut()
            .expect("just made an object")
            .entry(k.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !cur.is_object() {
        *cur = Value::Object(Map::new());
    }
    cur.as_object_mut().expect("just made an object")
}

/// Sets `key` in the object at `path` unless it is already set.
pub fn default_at(obj: &mut Value, path: &[&str], key: &str, value: impl Into<Value>) {
    let m = object_at(obj, path);
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.into(), value.into());
    }
}

/// Replaces the top-level field `key` of `new` with `old`'s (or removes it).
pub fn keep_field(new: &mut Value, old: &Value, key: &str) {
    if let Some(m) = new.as_object_mut() {
        match old.get(key) {
            Some(v) => {
                m.insert(key.into(), v.clone());
            }
            None => {
                m.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn accessors() {
        let mut o = json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": 3});
        assert_eq!(name(&o), "a");
        assert_eq!(namespace(&o), "");
        assert_eq!(labels(&o).unwrap()["x"], "1");
        default_at(&mut o, &["spec", "template"], "k", 1);
        assert_eq!(o["spec"], json!({"template": {"k": 1}}), "a non-object on the path is replaced");
        default_at(&mut o, &["spec", "template"], "k", 2);
        assert_eq!(o["spec"]["template"]["k"], 1, "defaults never overwrite");
        set_finalizers(&mut o, vec!["a/b".into()]);
        assert_eq!(finalizers(&o), vec!["a/b"]);
        keep_field(&mut o, &json!({}), "spec");
        assert!(o.get("spec").is_none());
    }
}
