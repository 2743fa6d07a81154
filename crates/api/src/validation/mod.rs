//! Field errors and the generic validations (names, labels, annotations,
//! owner references, finalizers), worded exactly as Kubernetes words them.

pub mod ip;

use serde_json::{Map, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    Required,
    Forbidden,
    TooLong,
    TooMany,
    Internal,
    Invalid,
    NotSupported,
    NotFound,
    Duplicate,
}

impl ErrorType {
    pub fn reason(self) -> &'static str {
        match self {
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
            ErrorType::Internal => "InternalError",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::NotFound => "FieldValueNotFound",
            ErrorType::Duplicate => "FieldValueDuplicate",
        }
    }

    fn text(self) -> &'static str {
        match self {
            ErrorType::Required => "Required value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
            ErrorType::Internal => "Internal error",
            ErrorType::Invalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::NotFound => "Not found",
            ErrorType::Duplicate => "Duplicate value",
        }
    }
}

/// The offending value, rendered as Go's `ErrorBody` renders it.
#[derive(Clone, Debug, PartialEq)]
pub enum BadValue {
    /// Not shown (Required, Forbidden, TooLong, Internal).
    Omitted,
    Str(String),
    Int(i64),
    Bool(bool),
    /// Anything else, shown as JSON.
    Json(Value),
}

impl From<&str> for BadValue {
    fn from(s: &str) -> Self {
        BadValue::Str(s.into())
    }
}
impl From<String> for BadValue {
    fn from(s: String) -> Self {
        BadValue::Str(s)
    }
}
impl From<i64> for BadValue {
    fn from(n: i64) -> Self {
        BadValue::Int(n)
    }
}
impl From<i32> for BadValue {
    fn from(n: i32) -> Self {
        BadValue::Int(n.into())
    }
}
impl From<bool> for BadValue {
    fn from(b: bool) -> Self {
        BadValue::Bool(b)
    }
}
impl From<Value> for BadValue {
    fn from(v: Value) -> Self {
        BadValue::Json(v)
    }
}

/// Go's `%q`: a double-quoted string with Go escapes.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    pub ty: ErrorType,
    /// The field path, e.g. `spec.ports[0].name`.
    pub field: String,
    pub value: BadValue,
    pub detail: String,
}

impl FieldError {
    pub fn new(ty: ErrorType, field: impl Into<String>, value: BadValue, detail: impl Into<String>) -> Self {
        FieldError { ty, field: field.into(), value, detail: detail.into() }
    }

    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Required, field, BadValue::Omitted, detail)
    }

    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Forbidden, field, BadValue::Omitted, detail)
    }

    pub fn too_long(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::TooLong, field, BadValue::Omitted, detail)
    }

    pub fn invalid(field: impl Into<String>, value: impl Into<BadValue>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Invalid, field, value.into(), detail)
    }

    pub fn duplicate(field: impl Into<String>, value: impl Into<BadValue>) -> Self {
        Self::new(ErrorType::Duplicate, field, value.into(), "")
    }

    pub fn not_found(field: impl Into<String>, value: impl Into<BadValue>) -> Self {
        Self::new(ErrorType::NotFound, field, value.into(), "")
    }

    pub fn internal(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Internal, field, BadValue::Omitted, detail)
    }

    /// A list longer than `max`; the value is the actual length.
    pub fn too_many(field: impl Into<String>, actual: usize, max: usize) -> Self {
        Self::new(ErrorType::TooMany, field, BadValue::Int(actual as i64), format!("must have at most {max} items"))
    }

    pub fn not_supported(field: impl Into<String>, value: impl Into<BadValue>, supported: &[&str]) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(ErrorType::NotSupported, field, value.into(), detail)
    }

    /// The message without the field, as in a Status cause.
    pub fn body(&self) -> String {
        let mut s = self.ty.text().to_string();
        let show_value =
            !matches!(self.ty, ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong | ErrorType::Internal);
        if show_value {
            match &self.value {
                BadValue::Omitted => {}
                BadValue::Str(v) => s.push_str(&format!(": {}", go_quote(v))),
                BadValue::Int(n) => s.push_str(&format!(": {n}")),
                BadValue::Bool(b) => s.push_str(&format!(": {b}")),
                BadValue::Json(v) => s.push_str(&format!(": {v}")),
            }
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() { f.write_str(&self.body()) } else { write!(f, "{}: {}", self.field, self.body()) }
    }
}

/// Field errors in the order they were found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ErrorList(Vec<FieldError>);

impl ErrorList {
    pub fn new() -> Self {
        ErrorList(Vec::new())
    }

    pub fn push(&mut self, e: FieldError) {
        self.0.push(e);
    }

    pub fn extend(&mut self, other: ErrorList) {
        self.0.extend(other.0);
    }

    /// One Invalid error per message, all for the same value (how Kubernetes
    /// reports the results of its `Is*` checks).
    pub fn invalid_each(&mut self, field: &str, value: &str, msgs: impl IntoIterator<Item = String>) {
        for m in msgs {
            self.push(FieldError::invalid(field, value, m));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &FieldError> {
        self.0.iter()
    }

    /// Kubernetes' aggregate: one message alone, several as `[a, b]`, duplicates once.
    pub fn aggregate(&self) -> String {
        let mut msgs: Vec<String> = Vec::new();
        for e in &self.0 {
            let m = e.to_string();
            if !msgs.contains(&m) {
                msgs.push(m);
            }
        }
        if msgs.len() == 1 { msgs.remove(0) } else { format!("[{}]", msgs.join(", ")) }
    }
}

impl FromIterator<FieldError> for ErrorList {
    fn from_iter<I: IntoIterator<Item = FieldError>>(iter: I) -> Self {
        ErrorList(iter.into_iter().collect())
    }
}

impl IntoIterator for ErrorList {
    type Item = FieldError;
    type IntoIter = std::vec::IntoIter<FieldError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

// ---- name rules ------------------------------------------------------------------------------

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const QUALIFIED_NAME_MSG: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";

/// Go's `RegexError`: the message, examples and the regex.
/// `IsValidPortNum`.
pub fn port_num_error(n: i64) -> Option<&'static str> {
    (!(1..=65535).contains(&n)).then_some("must be between 1 and 65535, inclusive")
}

pub fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut s = format!("{msg} (e.g. ");
    for (i, ex) in examples.iter().enumerate() {
        if i > 0 {
            s.push_str(" or ");
        }
        s.push_str(&format!("'{ex}', "));
    }
    s.push_str(&format!("regex used for validation is '{fmt}')"));
    s
}

pub fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

fn is_label_char(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'
}

fn matches_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| is_label_char(*c))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

fn matches_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(matches_dns1123_label)
}

fn matches_dns1035_label(s: &str) -> bool {
    matches_dns1123_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

pub fn is_dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !matches_dns1123_label(s) {
        if matches_dns1123_subdomain(s) {
            errs.push("must not contain dots".into());
        } else {
            errs.push(regex_error(DNS1123_LABEL_MSG, DNS1123_LABEL_FMT, &["my-name", "123-abc"]));
        }
    }
    errs
}

pub fn is_dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push(max_len_error(253));
    }
    if !matches_dns1123_subdomain(s) {
        errs.push(regex_error(DNS1123_SUBDOMAIN_MSG, DNS1123_SUBDOMAIN_FMT, &["example.com"]));
    }
    errs
}

pub fn is_dns1035_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !matches_dns1035_label(s) {
        errs.push(regex_error(DNS1035_LABEL_MSG, DNS1035_LABEL_FMT, &["my-name", "abc-123"]));
    }
    errs
}

fn matches_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// A label key or other qualified name: `[prefix/]name`.
pub fn is_qualified_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".into());
            } else {
                errs.extend(is_dns1123_subdomain(prefix).into_iter().map(|m| format!("prefix part {m}")));
            }
            *name
        }
        _ => {
            return vec![format!(
                "a valid label key {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            )];
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".into());
    } else if name.len() > 63 {
        errs.push(format!("name part {}", max_len_error(63)));
    }
    if !matches_qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
        ));
    }
    errs
}

pub fn is_label_value(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !s.is_empty() && !matches_qualified_name_part(s) {
        errs.push(regex_error(LABEL_VALUE_MSG, LABEL_VALUE_FMT, &["MyValue", "my_value", "12345"]));
    }
    errs
}

/// How a kind's names are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    Dns1123Label,
    Dns1123Subdomain,
    Dns1035Label,
    /// Only the path-segment rule (core/v1 events).
    PathSegment,
}

impl NameRule {
    /// Messages for `name`; with `prefix`, checks a generateName prefix.
    pub fn check(self, name: &str, prefix: bool) -> Vec<String> {
        // A generateName prefix may end in '-': mask the end as Kubernetes does.
        let masked;
        let name = if prefix && !name.is_empty() {
            masked = mask_trailing_dash(name);
            masked.as_str()
        } else {
            name
        };
        let mut errs = match self {
            NameRule::Dns1123Label => is_dns1123_label(name),
            NameRule::Dns1123Subdomain => is_dns1123_subdomain(name),
            NameRule::Dns1035Label => is_dns1035_label(name),
            NameRule::PathSegment => Vec::new(),
        };
        errs.extend(path_segment_errors(name, prefix));
        errs
    }
}

fn mask_trailing_dash(name: &str) -> String {
    if name.ends_with('-') && name.len() >= 2 {
        // Replace the last character with 'a' so the prefix validates as a name.
        let mut s = name[..name.len() - 1].to_string();
        s.push('a');
        s
    } else {
        name.to_string()
    }
}

/// Names must be usable as one URL path segment.
pub fn path_segment_errors(name: &str, prefix: bool) -> Vec<String> {
    let mut errs = Vec::new();
    if !prefix && (name == "." || name == "..") {
        errs.push(format!("may not be '{name}'"));
    }
    for c in ["/", "%"] {
        if name.contains(c) {
            errs.push(format!("may not contain '{c}'"));
        }
    }
    errs
}

// ---- metadata --------------------------------------------------------------------------------

const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;
const STANDARD_FINALIZERS: &[&str] = &[
    crate::wellknown::FINALIZER_NAMESPACE,
    crate::wellknown::FINALIZER_ORPHAN,
    crate::wellknown::FINALIZER_FOREGROUND,
];

pub fn validate_labels(labels: Option<&Map<String, Value>>, field: &str) -> ErrorList {
    let mut errs = ErrorList::new();
    for (k, v) in labels.into_iter().flatten() {
        for m in is_qualified_name(k) {
            errs.push(FieldError::invalid(field, k.as_str(), m));
        }
        let value = v.as_str().unwrap_or_default();
        for m in is_label_value(value) {
            errs.push(FieldError::invalid(field, value, m));
        }
    }
    errs
}

pub fn validate_annotations(annotations: Option<&Map<String, Value>>, field: &str) -> ErrorList {
    let mut errs = ErrorList::new();
    let mut total = 0;
    for (k, v) in annotations.into_iter().flatten() {
        for m in is_qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(field, k.as_str(), m));
        }
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(field, format!("may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT} bytes")));
    }
    errs
}

fn validate_owner_references(refs: &[Value], field: &str) -> ErrorList {
    let mut errs = ErrorList::new();
    let mut controllers = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        let path = format!("{field}[{i}]");
        let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let api_version = s("apiVersion");
        if api_version.is_empty() {
            errs.push(FieldError::required(format!("{path}.apiVersion"), "must not be empty"));
        } else if api_version.split('/').count() > 2 || api_version.ends_with('/') || api_version.starts_with('/') {
            errs.push(FieldError::invalid(
                format!("{path}.apiVersion"),
                api_version.as_str(),
                "must be <group>/<version> or <version>",
            ));
        }
        for k in ["kind", "name", "uid"] {
            if s(k).is_empty() {
                errs.push(FieldError::required(format!("{path}.{k}"), "must not be empty"));
            }
        }
        if api_version == "v1" && s("kind") == "Event" {
            errs.push(FieldError::invalid(
                path.clone(),
                r.clone(),
                "/v1, Kind=Event is disallowed from being an owner",
            ));
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            controllers.push(format!("{}/{}", s("kind"), s("name")));
        }
    }
    if controllers.len() > 1 {
        let quoted: Vec<String> = controllers.iter().map(|c| go_quote(c)).collect();
        errs.push(FieldError::invalid(
            field,
            Value::Array(refs.to_vec()),
            format!(
                "Only one reference can have Controller set to true. Found \"true\" in references for {}",
                quoted.join(" and ")
            ),
        ));
    }
    errs
}

fn validate_finalizers(finalizers: &[Value], field: &str, strict_standard: bool) -> ErrorList {
    let mut errs = ErrorList::new();
    let names: Vec<&str> = finalizers.iter().filter_map(Value::as_str).collect();
    for (i, f) in names.iter().enumerate() {
        let path = format!("{field}[{i}]");
        let msgs = is_qualified_name(f);
        let had_errors = !msgs.is_empty();
        for m in msgs {
            errs.push(FieldError::invalid(path.clone(), *f, m));
        }
        if strict_standard && !had_errors && !f.contains('/') && !STANDARD_FINALIZERS.contains(f) {
            errs.push(FieldError::invalid(
                path,
                *f,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    if names.contains(&"orphan") && names.contains(&"foregroundDeletion") {
        errs.push(FieldError::invalid(
            field,
            Value::from(names.clone()),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    errs
}

/// Kubernetes' `ValidateObjectMeta` for an object of a kind with these rules.
pub fn validate_object_meta(meta: &Value, namespaced: bool, rule: NameRule, standard_finalizers: bool) -> ErrorList {
    let mut errs = ErrorList::new();
    let s = |k: &str| meta.get(k).and_then(Value::as_str).unwrap_or_default();
    let name = s("name");
    let generate_name = s("generateName");
    if !generate_name.is_empty() {
        for m in rule.check(generate_name, true) {
            errs.push(FieldError::invalid("metadata.generateName", generate_name, m));
        }
    }
    if name.is_empty() {
        errs.push(FieldError::required("metadata.name", "name or generateName is required"));
    } else {
        for m in rule.check(name, false) {
            errs.push(FieldError::invalid("metadata.name", name, m));
        }
    }
    let namespace = s("namespace");
    if namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required("metadata.namespace", ""));
        } else {
            for m in is_dns1123_label(namespace) {
                errs.push(FieldError::invalid("metadata.namespace", namespace, m));
            }
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden("metadata.namespace", "not allowed on this type"));
    }
    if let Some(g) = meta.get("generation").and_then(Value::as_i64)
        && g < 0
    {
        errs.push(FieldError::invalid("metadata.generation", g, "must be greater than or equal to 0"));
    }
    errs.extend(validate_labels(meta.get("labels").and_then(Value::as_object), "metadata.labels"));
    errs.extend(validate_annotations(meta.get("annotations").and_then(Value::as_object), "metadata.annotations"));
    if let Some(refs) = meta.get("ownerReferences").and_then(Value::as_array) {
        errs.extend(validate_owner_references(refs, "metadata.ownerReferences"));
    }
    if let Some(f) = meta.get("finalizers").and_then(Value::as_array) {
        errs.extend(validate_finalizers(f, "metadata.finalizers", standard_finalizers));
    }
    errs
}

/// Kubernetes' `ValidateObjectMetaUpdate`: what an update may not change.
pub fn validate_object_meta_update(new: &Value, old: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    for (k, field) in [
        ("name", "metadata.name"),
        ("namespace", "metadata.namespace"),
        ("uid", "metadata.uid"),
        ("creationTimestamp", "metadata.creationTimestamp"),
    ] {
        let (n, o) = (new.get(k), old.get(k));
        if n != o {
            let shown = n.and_then(Value::as_str).unwrap_or_default();
            errs.push(FieldError::invalid(field, shown, "field is immutable"));
        }
    }
    let gen_of = |v: &Value| v.get("generation").and_then(Value::as_i64).unwrap_or(0);
    if gen_of(new) < gen_of(old) {
        errs.push(FieldError::invalid("metadata.generation", gen_of(new), "must not be decremented"));
    }
    if old.get("deletionTimestamp").is_some() {
        let finalizers = |v: &Value| -> Vec<String> {
            v.get("finalizers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|f| f.as_str().map(String::from))
                .collect()
        };
        let before = finalizers(old);
        let added: Vec<String> = finalizers(new).into_iter().filter(|f| !before.contains(f)).collect();
        if !added.is_empty() {
            let list: Vec<String> = added.iter().map(|f| go_quote(f)).collect();
            errs.push(FieldError::forbidden(
                "metadata.finalizers",
                format!("no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}", list.join(", ")),
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn name_messages() {
        assert_eq!(
            is_dns1035_label("Foo"),
            vec![
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
            ]
        );
        assert!(is_dns1035_label("web-1").is_empty());
        assert!(!is_dns1035_label("1web").is_empty());
        assert_eq!(is_dns1123_label("a.b"), vec!["must not contain dots"]);
        assert_eq!(is_dns1123_label(&"a".repeat(64)), vec!["must be no more than 63 characters"]);
        assert!(is_dns1123_subdomain("nginx.example.com").is_empty());
        assert!(NameRule::Dns1123Subdomain.check("web-", true).is_empty(), "a generateName prefix may end in '-'");
        assert!(!NameRule::Dns1123Subdomain.check("web-", false).is_empty());
        assert_eq!(NameRule::PathSegment.check("..", false), vec!["may not be '..'"]);
    }

    #[test]
    fn labels_and_meta() {
        assert!(is_qualified_name("app.kubernetes.io/name").is_empty());
        assert_eq!(is_qualified_name("/x"), vec!["prefix part must be non-empty"]);
        assert!(!is_label_value("bad value").is_empty());
        assert!(is_label_value("").is_empty());
        let meta = json!({"name": "Web", "namespace": "default", "labels": {"ok": "yes", "bad key!": "x"}});
        let errs = validate_object_meta(&meta, true, NameRule::Dns1035Label, true);
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["metadata.name", "metadata.labels"]);
        let errs = validate_object_meta(&json!({}), true, NameRule::Dns1123Subdomain, true);
        assert_eq!(
            errs.aggregate(),
            "[metadata.name: Required value: name or generateName is required, metadata.namespace: Required value]"
        );
        let errs =
            validate_object_meta(&json!({"name": "n", "finalizers": ["custom"]}), false, NameRule::Dns1123Label, true);
        assert_eq!(
            errs.aggregate(),
            r#"metadata.finalizers[0]: Invalid value: "custom": name is neither a standard finalizer name nor is it fully qualified"#
        );
    }
}
