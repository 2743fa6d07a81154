//! The shape of every type the API serves, in one table: JSON field names and
//! types (from k8s-openapi's schemas), protobuf field numbers (from k8s-pb) and
//! Go's presence rules. It drives canonical JSON, unknown-field detection, type
//! errors and the protobuf codec. `generated.rs` is written by `tools/pbgen`.

mod canonical;
#[rustfmt::skip]
mod generated;

use std::collections::HashMap;
use std::sync::OnceLock;

pub use canonical::{Canonical, TypeError, canonicalize};

/// One Go struct.
#[derive(Debug)]
pub struct Def {
    /// The OpenAPI definition name, e.g. `io.k8s.api.core.v1.ServicePort`.
    pub name: &'static str,
    /// Its position in the table, which [`Ty::Ref`] points at.
    pub index: usize,
    /// Sorted by JSON name.
    pub props: &'static [Prop],
}

/// One field of a Go struct.
#[derive(Debug)]
pub struct Prop {
    pub json: &'static str,
    pub ty: Ty,
    /// The protobuf path: one field number, or several when JSON flattens an
    /// embedded message (`Volume.configMap` is field 19 of field 2). Empty for
    /// fields protobuf does not carry (apiVersion and kind, newer fields).
    pub tag: &'static [u32],
    pub presence: Presence,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    String,
    /// base64 in JSON, bytes in protobuf.
    Bytes,
    Int32,
    Int64,
    Bool,
    Float64,
    /// Free-form JSON.
    Any,
    /// Index into the table.
    Ref(usize),
    Special(Special),
    List(&'static Ty),
    /// String keys.
    Map(&'static Ty),
}

/// Types whose JSON and protobuf forms differ from their structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// RFC 3339, second precision; protobuf {seconds, nanos}.
    Time,
    /// RFC 3339 with exactly six fractional digits.
    MicroTime,
    /// A JSON number or string; protobuf {type, intVal, strVal}.
    IntOrString,
    /// A string such as "100m"; protobuf {string}.
    Quantity,
    /// A JSON object carried as JSON bytes in protobuf.
    FieldsV1,
    /// Any JSON, carried as bytes in protobuf.
    RawExtension,
}

/// When a scalar field counts as set, after Go's encoding rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// A non-pointer field with omitempty: its zero value means unset.
    OmitEmpty,
    /// A pointer: present means set, even to zero.
    Pointer,
    /// A non-pointer without omitempty: always there, zero included.
    Always,
}

impl Def {
    pub fn prop(&self, json: &str) -> Option<&'static Prop> {
        self.props.binary_search_by(|p| p.json.cmp(json)).ok().map(|i| &self.props[i])
    }

    /// The Go type name, e.g. `ServicePort`.
    pub fn short_name(&self) -> &'static str {
        self.name.rsplit('.').next().unwrap_or(self.name)
    }

    /// The Go package alias used in type names, e.g. `v1` or `intstr`.
    pub fn package(&self) -> &'static str {
        let mut it = self.name.rsplit('.');
        it.next();
        it.next().unwrap_or("")
    }
}

pub fn defs() -> &'static [Def] {
    generated::DEFS
}

pub fn def_at(index: usize) -> &'static Def {
    &generated::DEFS[index]
}

/// The definition with this OpenAPI name.
pub fn def(name: &str) -> Option<&'static Def> {
    static INDEX: OnceLock<HashMap<&'static str, usize>> = OnceLock::new();
    let index = INDEX.get_or_init(|| generated::DEFS.iter().enumerate().map(|(i, d)| (d.name, i)).collect());
    index.get(name).map(|i| &generated::DEFS[*i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_def_knows_its_place() {
        for (i, d) in defs().iter().enumerate() {
            assert_eq!(d.index, i, "{}", d.name);
        }
    }

    #[test]
    fn props_are_sorted_for_binary_search() {
        for d in defs() {
            assert!(d.props.windows(2).all(|w| w[0].json < w[1].json), "{} props unsorted", d.name);
        }
    }

    #[test]
    fn lookups() {
        let sp = def("io.k8s.api.core.v1.ServicePort").expect("ServicePort");
        assert_eq!(sp.short_name(), "ServicePort");
        assert_eq!(sp.package(), "v1");
        let port = sp.prop("port").expect("port");
        assert_eq!((port.ty, port.tag, port.presence), (Ty::Int32, &[3u32][..], Presence::Always));
        assert_eq!(sp.prop("nodePort").unwrap().presence, Presence::OmitEmpty);
        assert_eq!(sp.prop("appProtocol").unwrap().presence, Presence::Pointer);
        assert!(sp.prop("nope").is_none());
        let vol = def("io.k8s.api.core.v1.Volume").unwrap();
        assert_eq!(vol.prop("configMap").unwrap().tag, &[2, 19], "flattened VolumeSource");
    }
}
