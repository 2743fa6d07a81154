//! Canonical JSON: what kube-apiserver would store and print after decoding a
//! body into Go structs. Unknown fields are removed (and reported), nulls and
//! unset omitempty values are dropped, times are normalized, and a value of the
//! wrong JSON type is an error worded as Go's decoder words it.

use serde_json::{Map, Value};

use super::{Def, Presence, Prop, Special, Ty, def_at};

/// What canonicalization removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Canonical {
    /// Paths of unknown fields, as `spec.containers[0].foo`, in document order.
    pub unknown_fields: Vec<String>,
}

/// A value of the wrong type, e.g.
/// `json: cannot unmarshal string into Go struct field ServicePort.spec.ports.port of type int32`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TypeError {
    pub message: String,
}

/// Canonicalizes `value`, an object of type `def`, in place.
pub fn canonicalize(def: &'static Def, value: &mut Value) -> Result<Canonical, TypeError> {
    let mut walk = Walk { report: Canonical::default(), path: String::new(), go_path: String::new() };
    match value {
        Value::Object(map) => walk.object(def, map)?,
        other => return Err(walk.type_error(other, def.short_name(), def, None)),
    }
    Ok(walk.report)
}

struct Walk {
    report: Canonical,
    /// The JSON path with list indices, for unknown fields.
    path: String,
    /// The JSON path without indices, for Go's type errors.
    go_path: String,
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The Go spelling of a field type, for error messages.
fn go_type(ty: &Ty) -> String {
    match ty {
        Ty::String => "string".into(),
        Ty::Bytes => "[]uint8".into(),
        Ty::Int32 => "int32".into(),
        Ty::Int64 => "int64".into(),
        Ty::Bool => "bool".into(),
        Ty::Float64 => "float64".into(),
        Ty::Any => "interface {}".into(),
        Ty::Ref(i) => {
            let d = def_at(*i);
            format!("{}.{}", d.package(), d.short_name())
        }
        Ty::Special(Special::Time) | Ty::Special(Special::MicroTime) => "v1.Time".into(),
        Ty::Special(Special::IntOrString) => "intstr.IntOrString".into(),
        Ty::Special(Special::Quantity) => "resource.Quantity".into(),
        Ty::Special(Special::FieldsV1) => "v1.FieldsV1".into(),
        Ty::Special(Special::RawExtension) => "runtime.RawExtension".into(),
        Ty::List(t) => format!("[]{}", go_type(t)),
        Ty::Map(t) => format!("map[string]{}", go_type(t)),
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(_) => false,
    }
}

impl Walk {
    fn type_error(&self, got: &Value, go_type: impl std::fmt::Display, owner: &Def, _prop: Option<&Prop>) -> TypeError {
        let message = if self.go_path.is_empty() {
            format!(
                "json: cannot unmarshal {} into Go value of type {}.{}",
                kind_of(got),
                owner.package(),
                owner.short_name()
            )
        } else {
            format!(
                "json: cannot unmarshal {} into Go struct field {}.{} of type {}",
                kind_of(got),
                owner.short_name(),
                self.go_path,
                go_type
            )
        };
        TypeError { message }
    }

    fn object(&mut self, def: &'static Def, map: &mut Map<String, Value>) -> Result<(), TypeError> {
        let keys: Vec<String> = map.keys().cloned().collect();
        for key in keys {
            let (plen, glen) = (self.path.len(), self.go_path.len());
            if !self.path.is_empty() {
                self.path.push('.');
                self.go_path.push('.');
            }
            self.path.push_str(&key);
            self.go_path.push_str(&key);
            let keep = match def.prop(&key) {
                None => {
                    self.report.unknown_fields.push(self.path.clone());
                    false
                }
                Some(prop) => {
                    let v = map.get_mut(&key).expect("key from this map");
                    self.value(def, prop, &prop.ty, v)?
                }
            };
            if !keep {
                map.remove(&key);
            }
            self.path.truncate(plen);
            self.go_path.truncate(glen);
        }
        Ok(())
    }

    /// Canonicalizes one value of type `ty`; returns whether to keep it.
    fn value(&mut self, owner: &'static Def, prop: &Prop, ty: &Ty, v: &mut Value) -> Result<bool, TypeError> {
        if v.is_null() {
            return Ok(false);
        }
        let omit_zero = prop.presence == Presence::OmitEmpty;
        let bad = |w: &Walk, v: &Value| Err(w.type_error(v, go_type(ty), owner, Some(prop)));
        match ty {
            Ty::String => {
                if !v.is_string() {
                    return bad(self, v);
                }
            }
            Ty::Bytes => match v.as_str() {
                Some(s) if base64_ok(s) => {}
                _ => return bad(self, v),
            },
            Ty::Int32 | Ty::Int64 => {
                let n = match v {
                    Value::Number(n) => n.as_i64(),
                    _ => return bad(self, v),
                };
                let fits = match (ty, n) {
                    (_, None) => false,
                    (Ty::Int32, Some(n)) => i32::try_from(n).is_ok(),
                    _ => true,
                };
                if !fits {
                    return Err(TypeError {
                        message: format!(
                            "json: cannot unmarshal number {v} into Go struct field {}.{} of type {}",
                            owner.short_name(),
                            self.go_path,
                            go_type(ty)
                        ),
                    });
                }
            }
            Ty::Bool => {
                if !v.is_boolean() {
                    return bad(self, v);
                }
            }
            Ty::Float64 => {
                if !v.is_number() {
                    return bad(self, v);
                }
            }
            Ty::Any => return Ok(true),
            Ty::Ref(i) => {
                let Value::Object(map) = v else {
                    return bad(self, v);
                };
                self.object(def_at(*i), map)?;
                return Ok(true);
            }
            Ty::Special(s) => return self.special(owner, prop, *s, v),
            Ty::List(elem) => {
                let Value::Array(items) = v else {
                    return bad(self, v);
                };
                for (i, item) in items.iter_mut().enumerate() {
                    let plen = self.path.len();
                    self.path.push_str(&format!("[{i}]"));
                    // Elements are never dropped, whatever their value.
                    self.value(owner, prop, elem, item)?;
                    self.path.truncate(plen);
                }
                return Ok(!items.is_empty());
            }
            Ty::Map(elem) => {
                let Value::Object(entries) = v else {
                    return bad(self, v);
                };
                for (k, item) in entries.iter_mut() {
                    let plen = self.path.len();
                    self.path.push('.');
                    self.path.push_str(k);
                    // Map values are never omitted: an empty label value is a value.
                    if !item.is_null() {
                        let keep_prop = Prop { json: prop.json, ty: **elem, tag: prop.tag, presence: Presence::Always };
                        self.value(owner, &keep_prop, elem, item)?;
                    }
                    self.path.truncate(plen);
                }
                return Ok(!entries.is_empty());
            }
        }
        Ok(!(omit_zero && is_zero(v)))
    }

    fn special(&mut self, owner: &'static Def, prop: &Prop, s: Special, v: &mut Value) -> Result<bool, TypeError> {
        match s {
            Special::Time | Special::MicroTime => {
                let Value::String(text) = v else {
                    return Err(self.type_error(v, "v1.Time", owner, Some(prop)));
                };
                match crate::time::parse(text) {
                    Some(ts) => {
                        *v = Value::String(if s == Special::Time {
                            crate::time::format(ts)
                        } else {
                            crate::time::format_micro(ts)
                        });
                        Ok(true)
                    }
                    None => Err(TypeError {
                        message: format!(
                            "parsing time {text:?} as \"2006-01-02T15:04:05Z07:00\": cannot parse {text:?} as \"2006\""
                        ),
                    }),
                }
            }
            Special::IntOrString => match v {
                Value::String(_) => Ok(true),
                Value::Number(n) if n.as_i64().is_some_and(|n| i32::try_from(n).is_ok()) => Ok(true),
                _ => Err(self.type_error(v, "intstr.IntOrString", owner, Some(prop))),
            },
            Special::Quantity => {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return Err(self.type_error(v, "resource.Quantity", owner, Some(prop))),
                };
                if !crate::quantity::is_valid(&text) {
                    return Err(TypeError {
                        message: "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
                            .into(),
                    });
                }
                *v = Value::String(text);
                Ok(true)
            }
            Special::FieldsV1 => match v {
                Value::Object(_) => Ok(true),
                _ => Err(self.type_error(v, "v1.FieldsV1", owner, Some(prop))),
            },
            Special::RawExtension => Ok(true),
        }
    }
}

fn base64_ok(s: &str) -> bool {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).is_ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::schema::def;

    fn svc() -> &'static Def {
        def("io.k8s.api.core.v1.Service").unwrap()
    }

    #[test]
    fn drops_unknown_nulls_and_unset_values() {
        let mut v = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "generateName": "", "generation": 0, "labels": {"a": ""}, "bogus": 1},
            "spec": {"ports": [{"port": 80, "nodePort": 0, "name": "", "targetPort": 8080, "extra": true}],
                     "selector": {}, "clusterIP": null, "allocateLoadBalancerNodePorts": false},
            "status": {"loadBalancer": {}}
        });
        let report = canonicalize(svc(), &mut v).unwrap();
        assert_eq!(report.unknown_fields, vec!["metadata.bogus", "spec.ports[0].extra"]);
        assert_eq!(
            v,
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "labels": {"a": ""}},
                "spec": {"ports": [{"port": 80, "targetPort": 8080}], "allocateLoadBalancerNodePorts": false},
                "status": {"loadBalancer": {}}
            }),
            "omitempty zeros go, pointers and always-fields stay, empty label values stay"
        );
    }

    #[test]
    fn type_errors_read_like_go() {
        let mut v = json!({"spec": {"ports": [{"port": "eighty"}]}});
        let e = canonicalize(svc(), &mut v).unwrap_err();
        assert_eq!(
            e.message,
            "json: cannot unmarshal string into Go struct field ServicePort.spec.ports.port of type int32"
        );
        let mut v = json!({"spec": {"ports": {"port": 1}}});
        let e = canonicalize(svc(), &mut v).unwrap_err();
        assert_eq!(
            e.message,
            "json: cannot unmarshal object into Go struct field ServiceSpec.spec.ports of type []v1.ServicePort"
        );
        let mut v = json!({"spec": {"ports": [{"port": 4294967296i64}]}});
        assert!(canonicalize(svc(), &mut v).unwrap_err().message.contains("number 4294967296"));
        let mut v = json!([]);
        assert_eq!(
            canonicalize(svc(), &mut v).unwrap_err().message,
            "json: cannot unmarshal array into Go value of type v1.Service"
        );
    }

    #[test]
    fn times_are_normalized() {
        let ev = def("io.k8s.api.core.v1.Event").unwrap();
        let mut v = json!({"firstTimestamp": "2024-05-01T12:00:00.987+02:00", "eventTime": "2024-05-01T10:00:00.5Z"});
        canonicalize(ev, &mut v).unwrap();
        assert_eq!(v["firstTimestamp"], "2024-05-01T10:00:00Z");
        assert_eq!(v["eventTime"], "2024-05-01T10:00:00.500000Z");
        let mut bad = json!({"firstTimestamp": "yesterday"});
        assert!(canonicalize(ev, &mut bad).is_err());
    }
}
