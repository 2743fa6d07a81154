//! ConfigMaps and Secrets: keys as Kubernetes allows them, the 1 MiB limit,
//! `immutable`, Secret types and their required keys, and `stringData`,
//! merged into `data` on every write and never stored.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::{Rules, str_at};
use crate::meta;
use crate::validation::{ErrorList, FieldError, max_len_error, regex_error};

/// The most bytes the values of one ConfigMap or Secret may hold.
pub const MAX_SIZE: usize = 1024 * 1024;
const IMMUTABLE: &str = "field is immutable when `immutable` is set";

/// `IsConfigMapKey`: a key of a ConfigMap or Secret.
pub fn is_config_map_key(key: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if key.len() > 253 {
        errs.push(max_len_error(253));
    }
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')) {
        errs.push(regex_error(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            "[-._a-zA-Z0-9]+",
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    match key {
        "." => errs.push("must not be '.'".into()),
        ".." => errs.push("must not be '..'".into()),
        k if k.starts_with("..") => errs.push("must not start with '..'".into()),
        _ => {}
    }
    errs
}

fn entries<'a>(obj: &'a Value, field: &str) -> impl Iterator<Item = (&'a String, &'a Value)> {
    obj.get(field).and_then(Value::as_object).into_iter().flatten()
}

/// The bytes of a base64 value (as `data` of Secrets and `binaryData` carry them).
fn decoded(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or_default()).unwrap_or_default()
}

fn immutable(obj: &Value) -> bool {
    obj.get("immutable").and_then(Value::as_bool) == Some(true)
}

/// What an update of an `immutable` object may not change.
fn check_immutable(new: &Value, old: &Value, fields: &[&str], errs: &mut ErrorList) {
    if !immutable(old) {
        return;
    }
    if !immutable(new) {
        errs.push(FieldError::forbidden("immutable", IMMUTABLE));
    }
    for f in fields {
        if new.get(*f) != old.get(*f) {
            errs.push(FieldError::forbidden(*f, IMMUTABLE));
        }
    }
}

pub struct ConfigMapRules;

impl Rules for ConfigMapRules {
    fn validate(&self, obj: &Value) -> ErrorList {
        let mut errs = ErrorList::new();
        let binary: Map<String, Value> = obj.get("binaryData").and_then(Value::as_object).cloned().unwrap_or_default();
        let mut size = 0;
        for (k, v) in entries(obj, "data") {
            errs.invalid_each(&format!("data[{k}]"), k, is_config_map_key(k));
            if binary.contains_key(k) {
                errs.push(FieldError::invalid(
                    format!("data[{k}]"),
                    k.as_str(),
                    "duplicate of key present in binaryData",
                ));
            }
            size += v.as_str().map_or(0, str::len);
        }
        for (k, v) in &binary {
            errs.invalid_each(&format!("binaryData[{k}]"), k, is_config_map_key(k));
            size += decoded(v).len();
        }
        if size > MAX_SIZE {
            // Kubernetes reports it at the root path, which prints as `[]`.
            errs.push(FieldError::too_long("[]", format!("may not be more than {MAX_SIZE} bytes")));
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> ErrorList {
        let mut errs = ErrorList::new();
        check_immutable(new, old, &["data", "binaryData"], &mut errs);
        errs.extend(self.validate(new));
        errs
    }
}

pub const SECRET_OPAQUE: &str = "Opaque";
const SA_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";

pub struct SecretRules;

impl Rules for SecretRules {
    /// `SetDefaults_Secret`, and v1 conversion's merge of `stringData` into `data`
    /// (stringData wins; it is never stored).
    fn default(&self, obj: &mut Value) {
        if str_at(obj, &["type"]).is_empty() {
            obj["type"] = json!(SECRET_OPAQUE);
        }
        let Some(map) = obj.as_object_mut() else { return };
        let Some(Value::Object(strings)) = map.remove("stringData") else { return };
        if strings.is_empty() {
            return;
        }
        let data = map.entry("data").or_insert_with(|| json!({}));
        if !data.is_object() {
            *data = json!({});
        }
        if let Some(data) = data.as_object_mut() {
            for (k, v) in strings {
                let text = v.as_str().unwrap_or_default().as_bytes().to_vec();
                data.insert(k, json!(base64::engine::general_purpose::STANDARD.encode(text)));
            }
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        if str_at(new, &["type"]).is_empty() {
            new["type"] = json!(str_at(old, &["type"]));
        }
    }

    fn validate(&self, obj: &Value) -> ErrorList {
        let mut errs = ErrorList::new();
        let mut size = 0;
        for (k, v) in entries(obj, "data") {
            errs.invalid_each(&format!("data[{k}]"), k, is_config_map_key(k));
            size += decoded(v).len();
        }
        if size > MAX_SIZE {
            errs.push(FieldError::too_long("data", format!("may not be more than {MAX_SIZE} bytes")));
        }
        let data = obj.get("data").and_then(Value::as_object);
        let has = |k: &str| data.is_some_and(|d| d.contains_key(k));
        let value = |k: &str| data.and_then(|d| d.get(k)).map(decoded);
        match str_at(obj, &["type"]) {
            "kubernetes.io/service-account-token" => {
                let annotations = meta::annotations(obj);
                let named = annotations.and_then(|a| a.get(SA_NAME_ANNOTATION)).and_then(Value::as_str);
                if named.is_none_or(str::is_empty) {
                    errs.push(FieldError::required(format!("metadata.annotations[{SA_NAME_ANNOTATION}]"), ""));
                }
            }
            ty @ ("kubernetes.io/dockercfg" | "kubernetes.io/dockerconfigjson") => {
                let key = if ty == "kubernetes.io/dockercfg" { ".dockercfg" } else { ".dockerconfigjson" };
                match value(key) {
                    None => errs.push(FieldError::required(format!("data[{key}]"), "")),
                    Some(bytes) => {
                        if let Err(why) = go_json_object(&bytes) {
                            errs.push(FieldError::invalid(format!("data[{key}]"), "<secret contents redacted>", why));
                        }
                    }
                }
            }
            // Either may be empty, but one must be there.
            "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
                errs.push(FieldError::required("data[username]", ""));
                errs.push(FieldError::required("data[password]", ""));
            }
            "kubernetes.io/ssh-auth" if value("ssh-privatekey").is_none_or(|v| v.is_empty()) => {
                errs.push(FieldError::required("data[ssh-privatekey]", ""));
            }
            "kubernetes.io/tls" => {
                for key in ["tls.crt", "tls.key"] {
                    if !has(key) {
                        errs.push(FieldError::required(format!("data[{key}]"), ""));
                    }
                }
            }
            _ => {}
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> ErrorList {
        let mut errs = ErrorList::new();
        let (new_ty, old_ty) = (str_at(new, &["type"]), str_at(old, &["type"]));
        if new_ty != old_ty {
            errs.push(FieldError::invalid("type", new_ty, "field is immutable"));
        }
        check_immutable(new, old, &["data"], &mut errs);
        errs.extend(self.validate(new));
        errs
    }

    fn field_labels(&self) -> (&'static [&'static str], bool) {
        (&["type"], true)
    }

    fn field_value(&self, obj: &Value, label: &str) -> Option<String> {
        (label == "type").then(|| str_at(obj, &["type"]).to_string())
    }
}

/// Whether `bytes` decode as Go's `json.Unmarshal` into a `map[string]interface{}`
/// would, with Go's message when not (null decodes fine).
fn go_json_object(bytes: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(bytes);
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err("unexpected end of JSON input".into());
    }
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(_) | Value::Null) => Ok(()),
        Ok(other) => {
            let kind = match other {
                Value::Array(_) => "array",
                Value::String(_) => "string",
                Value::Number(_) => "number",
                Value::Bool(_) => "bool",
                _ => "value",
            };
            Err(format!("json: cannot unmarshal {kind} into Go value of type map[string]interface {{}}"))
        }
        Err(e) if e.is_eof() => Err("unexpected end of JSON input".into()),
        Err(e) => {
            let first = trimmed.chars().next().unwrap_or(' ');
            if !matches!(first, '{' | '[' | '"' | '-' | '0'..='9' | 't' | 'f' | 'n') {
                Err(format!("invalid character '{first}' looking for beginning of value"))
            } else {
                Err(e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(errs: &ErrorList) -> Vec<String> {
        errs.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn keys() {
        assert!(is_config_map_key("key.name").is_empty() && is_config_map_key(".a").is_empty());
        assert_eq!(
            is_config_map_key("a b"),
            [
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
            ]
        );
        assert_eq!(is_config_map_key(".."), ["must not be '..'"]);
        assert_eq!(is_config_map_key("..x"), ["must not start with '..'"]);
        assert_eq!(is_config_map_key(&"a".repeat(254)), ["must be no more than 253 characters"]);
        assert_eq!(is_config_map_key("").len(), 1);
    }

    #[test]
    fn config_maps() {
        let r = ConfigMapRules;
        let cm = json!({"data": {"a": "x", "b": "y"}, "binaryData": {"b": "eQ==", "../c": ""}});
        assert_eq!(
            messages(&r.validate(&cm)),
            [
                "data[b]: Invalid value: \"b\": duplicate of key present in binaryData",
                "binaryData[../c]: Invalid value: \"../c\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                "binaryData[../c]: Invalid value: \"../c\": must not start with '..'",
            ]
        );
        let big = json!({"data": {"a": "x".repeat(MAX_SIZE), "b": "y"}});
        assert_eq!(messages(&r.validate(&big)), ["[]: Too long: may not be more than 1048576 bytes"]);
        let old = json!({"data": {"a": "x"}, "immutable": true});
        let changed = json!({"data": {"a": "z"}});
        assert_eq!(
            messages(&r.validate_update(&changed, &old)),
            [
                "immutable: Forbidden: field is immutable when `immutable` is set",
                "data: Forbidden: field is immutable when `immutable` is set"
            ]
        );
        let made_immutable = json!({"data": {"a": "z"}, "immutable": true});
        assert!(r.validate_update(&made_immutable, &json!({"data": {"a": "x"}})).is_empty(), "turning it on is fine");
    }

    #[test]
    fn secrets() {
        let r = SecretRules;
        let mut s = json!({"metadata": {"name": "s"}, "data": {"a": "eA==", "b": "eA=="}, "stringData": {"b": "yes"}});
        r.default(&mut s);
        assert_eq!(s["type"], "Opaque");
        assert_eq!(s["data"], json!({"a": "eA==", "b": "eWVz"}), "stringData wins and is base64 in data");
        assert!(s.get("stringData").is_none(), "never stored");
        let tls = json!({"type": "kubernetes.io/tls", "data": {"tls.crt": ""}});
        assert_eq!(messages(&r.validate(&tls)), ["data[tls.key]: Required value"]);
        let basic = json!({"type": "kubernetes.io/basic-auth", "data": {}});
        assert_eq!(messages(&r.validate(&basic)), ["data[username]: Required value", "data[password]: Required value"]);
        let sa = json!({"type": "kubernetes.io/service-account-token", "metadata": {}});
        assert_eq!(
            messages(&r.validate(&sa)),
            ["metadata.annotations[kubernetes.io/service-account.name]: Required value"]
        );
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let docker = |v: &str| json!({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": b64(v)}});
        assert!(r.validate(&docker(r#"{"auths": {}}"#)).is_empty());
        assert_eq!(
            messages(&r.validate(&docker("[1]"))),
            [
                "data[.dockerconfigjson]: Invalid value: \"<secret contents redacted>\": json: cannot unmarshal array into Go value of type map[string]interface {}"
            ]
        );
        assert_eq!(
            messages(&r.validate(&docker(""))),
            ["data[.dockerconfigjson]: Invalid value: \"<secret contents redacted>\": unexpected end of JSON input"]
        );
        assert_eq!(
            messages(&r.validate(&docker("xyz"))),
            [
                "data[.dockerconfigjson]: Invalid value: \"<secret contents redacted>\": invalid character 'x' looking for beginning of value"
            ]
        );
        let big = json!({"type": "Opaque", "data": {"a": b64(&"x".repeat(MAX_SIZE + 1))}});
        assert_eq!(messages(&r.validate(&big)), ["data: Too long: may not be more than 1048576 bytes"]);
        let old = json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
        let new = json!({"type": "Opaque", "data": {"tls.crt": "", "tls.key": ""}});
        assert_eq!(messages(&r.validate_update(&new, &old)), ["type: Invalid value: \"Opaque\": field is immutable"]);
    }
}
