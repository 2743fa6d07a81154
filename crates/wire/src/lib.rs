//! The Kubernetes protobuf wire format (`application/vnd.kubernetes.protobuf`),
//! to and from JSON.
//!
//! Every body is the magic `k8s\0` followed by a `runtime.Unknown` holding the
//! type's apiVersion and kind and the object's own message. Lists use the same
//! envelope around `{1: ListMeta, 2: items...}`. Watch streams are frames of a
//! 4-byte big-endian length and a bare `WatchEvent` whose object is a full
//! envelope. Field numbers and types come from kubesvc-api's schema table, so
//! one generic codec serves every kind. Decoded objects keep every field the
//! sender wrote; canonicalizing them (dropping Go's unset zero values) is the
//! caller's job, as for JSON.

mod pb;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use kubesvc_api::schema::{self, Def, Prop, Special, Ty};
use serde_json::{Map, Number, Value};

use pb::{Reader, WireType, Writer};

pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
pub const WATCH_CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf;stream=watch";
pub const MAGIC: &[u8; 4] = b"k8s\0";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]")]
    NoMagic,
    #[error("empty body")]
    Empty,
    #[error("malformed protobuf: {0}")]
    Malformed(String),
}

/// `apiVersion` and `kind` from an envelope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeMeta {
    pub api_version: String,
    pub kind: String,
}

/// Decodes an envelope: its type and its raw message.
pub fn decode_envelope(body: &[u8]) -> Result<(TypeMeta, &[u8]), Error> {
    let rest = body.strip_prefix(MAGIC.as_slice()).ok_or(Error::NoMagic)?;
    if rest.is_empty() {
        return Err(Error::Empty);
    }
    let mut tm = TypeMeta::default();
    let mut raw: &[u8] = &[];
    let mut r = Reader::new(rest);
    while let Some((tag, wt)) = r.key()? {
        match (tag, wt) {
            (1, WireType::Len) => {
                let mut t = Reader::new(r.bytes()?);
                while let Some((tag, wt)) = t.key()? {
                    match (tag, wt) {
                        (1, WireType::Len) => tm.api_version = t.string()?,
                        (2, WireType::Len) => tm.kind = t.string()?,
                        (_, wt) => t.skip(wt)?,
                    }
                }
            }
            (2, WireType::Len) => raw = r.bytes()?,
            (_, wt) => r.skip(wt)?,
        }
    }
    Ok((tm, raw))
}

/// Decodes a single object of type `def` from an envelope. `apiVersion` and
/// `kind` are set from the envelope when it has them.
pub fn decode_object(body: &[u8], def: &'static Def) -> Result<(TypeMeta, Value), Error> {
    let (tm, raw) = decode_envelope(body)?;
    let mut obj = decode_message(raw, layout(def))?;
    if !tm.api_version.is_empty() {
        obj.insert("apiVersion".into(), Value::String(tm.api_version.clone()));
    }
    if !tm.kind.is_empty() {
        obj.insert("kind".into(), Value::String(tm.kind.clone()));
    }
    Ok((tm, Value::Object(obj)))
}

/// Encodes `obj` (of type `def`) in an envelope.
pub fn encode_object(obj: &Value, def: &'static Def, api_version: &str, kind: &str) -> Vec<u8> {
    envelope(api_version, kind, &encode_raw(obj, def))
}

/// Encodes `obj` (of type `def`) as a bare message, without the envelope.
pub fn encode_raw(obj: &Value, def: &'static Def) -> Vec<u8> {
    let mut raw = Writer::new();
    if let Value::Object(m) = obj {
        encode_message(&mut raw, m, layout(def));
    }
    raw.into_inner()
}

/// Encodes a list from its ListMeta and items already encoded as bare messages.
pub fn encode_list_raw<'a>(
    list_meta: &Value,
    raw_items: impl IntoIterator<Item = &'a [u8]>,
    api_version: &str,
    list_kind: &str,
) -> Vec<u8> {
    let meta_def =
        schema::def("io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta").expect("ListMeta is in the schema table");
    let mut raw = Writer::new();
    raw.message(1, &encode_raw(list_meta, meta_def));
    for item in raw_items {
        raw.message(2, item);
    }
    envelope(api_version, list_kind, &raw.into_inner())
}

/// Encodes a list: `ListMeta` and the items, each of type `item_def`.
pub fn encode_list<'a>(
    list_meta: &Value,
    items: impl IntoIterator<Item = &'a Value>,
    item_def: &'static Def,
    api_version: &str,
    list_kind: &str,
) -> Vec<u8> {
    let raws: Vec<Vec<u8>> = items.into_iter().map(|i| encode_raw(i, item_def)).collect();
    encode_list_raw(list_meta, raws.iter().map(Vec::as_slice), api_version, list_kind)
}

/// Decodes a list envelope into its ListMeta and items (for clients and tests).
pub fn decode_list(body: &[u8], item_def: &'static Def) -> Result<(TypeMeta, Value, Vec<Value>), Error> {
    let (tm, raw) = decode_envelope(body)?;
    let meta_def =
        schema::def("io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta").expect("ListMeta is in the schema table");
    let mut r = Reader::new(raw);
    let (mut list_meta, mut items) = (Value::Object(Map::new()), Vec::new());
    while let Some((tag, wt)) = r.key()? {
        match (tag, wt) {
            (1, WireType::Len) => list_meta = Value::Object(decode_message(r.bytes()?, layout(meta_def))?),
            (2, WireType::Len) => items.push(Value::Object(decode_message(r.bytes()?, layout(item_def))?)),
            (_, wt) => r.skip(wt)?,
        }
    }
    Ok((tm, list_meta, items))
}

/// One watch frame: the length, then a bare WatchEvent whose object is `object_envelope`.
pub fn encode_watch_frame(event_type: &str, object_envelope: &[u8]) -> Vec<u8> {
    let mut raw_ext = Writer::new();
    raw_ext.bytes_field(1, object_envelope);
    let mut ev = Writer::new();
    ev.string_field(1, event_type);
    ev.message(2, &raw_ext.into_inner());
    let ev = ev.into_inner();
    let mut out = Vec::with_capacity(4 + ev.len());
    out.extend_from_slice(&(ev.len() as u32).to_be_bytes());
    out.extend_from_slice(&ev);
    out
}

/// One decoded watch frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchFrame {
    pub event_type: String,
    /// The object's full envelope.
    pub object: Vec<u8>,
}

/// Splits one watch frame off `buf`, returning it and the rest; `None` until a whole frame is there.
pub fn decode_watch_frame(buf: &[u8]) -> Result<Option<(WatchFrame, &[u8])>, Error> {
    let Some((len, rest)) = buf.split_first_chunk::<4>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return Ok(None);
    }
    let (frame, rest) = rest.split_at(len);
    let (mut ty, mut obj) = (String::new(), Vec::new());
    let mut r = Reader::new(frame);
    while let Some((tag, wt)) = r.key()? {
        match (tag, wt) {
            (1, WireType::Len) => ty = r.string()?,
            (2, WireType::Len) => {
                let mut e = Reader::new(r.bytes()?);
                while let Some((tag, wt)) = e.key()? {
                    match (tag, wt) {
                        (1, WireType::Len) => obj = e.bytes()?.to_vec(),
                        (_, wt) => e.skip(wt)?,
                    }
                }
            }
            (_, wt) => r.skip(wt)?,
        }
    }
    Ok(Some((WatchFrame { event_type: ty, object: obj }, rest)))
}

/// Wraps a raw message in the envelope (the magic and a runtime.Unknown).
pub fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let mut tm = Writer::new();
    tm.string_field(1, api_version);
    tm.string_field(2, kind);
    let mut u = Writer::new();
    u.message(1, &tm.into_inner());
    u.bytes_field(2, raw);
    // Go writes the empty contentEncoding and contentType too.
    u.bytes_field(3, b"");
    u.bytes_field(4, b"");
    let body = u.into_inner();
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&body);
    out
}

// ---- layouts: a def's fields by protobuf number, with flattened embeddings nested again ----

/// What a protobuf field number of a message carries.
enum Slot {
    Prop(&'static Prop),
    /// An embedded message whose fields JSON flattens into the parent.
    Inline(Layout),
}

#[derive(Default)]
struct Layout {
    slots: BTreeMap<u32, Slot>,
}

impl Layout {
    fn build(props: &[(&'static Prop, &'static [u32])]) -> Layout {
        let mut direct = BTreeMap::new();
        let mut nested: BTreeMap<u32, Vec<(&'static Prop, &'static [u32])>> = BTreeMap::new();
        for (p, path) in props {
            match path {
                [] => {}
                [t] => {
                    direct.insert(*t, Slot::Prop(p));
                }
                [t, rest @ ..] => nested.entry(*t).or_default().push((p, rest)),
            }
        }
        for (t, sub) in nested {
            direct.insert(t, Slot::Inline(Layout::build(&sub)));
        }
        Layout { slots: direct }
    }
}

fn layout(def: &'static Def) -> &'static Layout {
    static LAYOUTS: OnceLock<Vec<Layout>> = OnceLock::new();
    let all = LAYOUTS.get_or_init(|| {
        schema::defs().iter().map(|d| Layout::build(&d.props.iter().map(|p| (p, p.tag)).collect::<Vec<_>>())).collect()
    });
    &all[def.index]
}

// ---- decoding ------------------------------------------------------------------------------------

fn decode_message(bytes: &[u8], layout: &Layout) -> Result<Map<String, Value>, Error> {
    let mut out = Map::new();
    decode_into(bytes, layout, &mut out)?;
    Ok(out)
}

fn decode_into(bytes: &[u8], layout: &Layout, out: &mut Map<String, Value>) -> Result<(), Error> {
    let mut r = Reader::new(bytes);
    while let Some((tag, wt)) = r.key()? {
        match layout.slots.get(&tag) {
            None => r.skip(wt)?,
            Some(Slot::Inline(inner)) => {
                let b = r.expect_len(wt)?;
                decode_into(b, inner, out)?;
            }
            Some(Slot::Prop(p)) => match &p.ty {
                Ty::List(elem) => {
                    let list = out.entry(p.json).or_insert_with(|| Value::Array(Vec::new()));
                    let Value::Array(items) = list else { unreachable!("only lists are put here") };
                    if wt == WireType::Len && is_packable(elem) {
                        // Packed repeated scalars.
                        let mut pr = Reader::new(r.bytes()?);
                        while !pr.done() {
                            items.push(decode_scalar(&mut pr, packed_wire(elem), elem)?);
                        }
                    } else {
                        items.push(decode_value(&mut r, wt, elem)?);
                    }
                }
                Ty::Map(val) => {
                    let b = r.expect_len(wt)?;
                    let (mut key, mut value) = (String::new(), None);
                    let mut er = Reader::new(b);
                    while let Some((t, w)) = er.key()? {
                        match t {
                            1 => key = er.string()?,
                            2 => value = Some(decode_value(&mut er, w, val)?),
                            _ => er.skip(w)?,
                        }
                    }
                    let value = value.unwrap_or_else(|| zero_of(val));
                    let map = out.entry(p.json).or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(m) = map {
                        m.insert(key, value);
                    }
                }
                ty => {
                    let v = decode_value(&mut r, wt, ty)?;
                    out.insert(p.json.to_string(), v);
                }
            },
        }
    }
    Ok(())
}

fn is_packable(ty: &Ty) -> bool {
    matches!(ty, Ty::Int32 | Ty::Int64 | Ty::Bool | Ty::Float64)
}

fn packed_wire(ty: &Ty) -> WireType {
    if *ty == Ty::Float64 { WireType::Fixed64 } else { WireType::Varint }
}

fn zero_of(ty: &Ty) -> Value {
    match ty {
        Ty::String | Ty::Bytes => Value::String(String::new()),
        Ty::Int32 | Ty::Int64 => Value::from(0),
        Ty::Bool => Value::Bool(false),
        Ty::Float64 => Value::from(0.0),
        Ty::Special(Special::Quantity) => Value::String("0".into()),
        Ty::List(_) => Value::Array(Vec::new()),
        Ty::Ref(_) | Ty::Map(_) => Value::Object(Map::new()),
        _ => Value::Null,
    }
}

fn decode_scalar(r: &mut Reader, wt: WireType, ty: &Ty) -> Result<Value, Error> {
    Ok(match (ty, wt) {
        (Ty::Int32, WireType::Varint) => Value::from(r.varint()? as i32),
        (Ty::Int64, WireType::Varint) => Value::from(r.varint()? as i64),
        (Ty::Bool, WireType::Varint) => Value::Bool(r.varint()? != 0),
        (Ty::Float64, WireType::Fixed64) => {
            Number::from_f64(f64::from_bits(r.fixed64()?)).map(Value::Number).unwrap_or(Value::Null)
        }
        _ => return Err(Error::Malformed(format!("wire type {wt:?} for {ty:?}"))),
    })
}

fn decode_value(r: &mut Reader, wt: WireType, ty: &Ty) -> Result<Value, Error> {
    Ok(match ty {
        Ty::Int32 | Ty::Int64 | Ty::Bool | Ty::Float64 => decode_scalar(r, wt, ty)?,
        Ty::String => {
            r.expect_len(wt)?;
            Value::String(r.last_string()?)
        }
        Ty::Bytes => {
            use base64::Engine as _;
            Value::String(base64::engine::general_purpose::STANDARD.encode(r.expect_len(wt)?))
        }
        Ty::Any => {
            let b = r.expect_len(wt)?;
            serde_json::from_slice(b).unwrap_or(Value::Null)
        }
        Ty::Ref(i) => Value::Object(decode_message(r.expect_len(wt)?, layout(schema::def_at(*i)))?),
        Ty::Special(s) => decode_special(r.expect_len(wt)?, *s)?,
        Ty::List(_) | Ty::Map(_) => return Err(Error::Malformed("nested repeated field".into())),
    })
}

fn decode_special(b: &[u8], s: Special) -> Result<Value, Error> {
    let mut r = Reader::new(b);
    match s {
        Special::Time | Special::MicroTime => {
            let (mut secs, mut nanos) = (0i64, 0i64);
            while let Some((t, w)) = r.key()? {
                match (t, w) {
                    (1, WireType::Varint) => secs = r.varint()? as i64,
                    (2, WireType::Varint) => nanos = r.varint()? as i32 as i64,
                    (_, w) => r.skip(w)?,
                }
            }
            if secs == 0 && nanos == 0 {
                return Ok(Value::Null); // Go's zero time.
            }
            let ts = jiff::Timestamp::new(secs, nanos as i32).map_err(|e| Error::Malformed(e.to_string()))?;
            Ok(Value::String(if s == Special::Time {
                kubesvc_api::time::format(ts)
            } else {
                kubesvc_api::time::format_micro(ts)
            }))
        }
        Special::IntOrString => {
            let (mut ty, mut int, mut text) = (0u64, 0i32, String::new());
            while let Some((t, w)) = r.key()? {
                match (t, w) {
                    (1, WireType::Varint) => ty = r.varint()?,
                    (2, WireType::Varint) => int = r.varint()? as i32,
                    (3, WireType::Len) => text = r.string()?,
                    (_, w) => r.skip(w)?,
                }
            }
            Ok(if ty == 1 { Value::String(text) } else { Value::from(int) })
        }
        Special::Quantity => {
            let mut text = String::new();
            while let Some((t, w)) = r.key()? {
                match (t, w) {
                    (1, WireType::Len) => text = r.string()?,
                    (_, w) => r.skip(w)?,
                }
            }
            Ok(Value::String(text))
        }
        Special::FieldsV1 | Special::RawExtension => {
            let mut raw: &[u8] = &[];
            while let Some((t, w)) = r.key()? {
                match (t, w) {
                    (1, WireType::Len) => raw = r.bytes()?,
                    (_, w) => r.skip(w)?,
                }
            }
            if raw.is_empty() {
                return Ok(Value::Null);
            }
            serde_json::from_slice(raw).map_err(|e| Error::Malformed(format!("embedded JSON: {e}")))
        }
    }
}

// ---- encoding ------------------------------------------------------------------------------------

fn encode_message(w: &mut Writer, obj: &Map<String, Value>, layout: &Layout) {
    for (tag, slot) in &layout.slots {
        match slot {
            Slot::Prop(p) => {
                if let Some(v) = obj.get(p.json).filter(|v| !v.is_null()) {
                    encode_field(w, *tag, &p.ty, v);
                }
            }
            Slot::Inline(inner) => {
                let mut sub = Writer::new();
                encode_message(&mut sub, obj, inner);
                let sub = sub.into_inner();
                if !sub.is_empty() {
                    w.message(*tag, &sub);
                }
            }
        }
    }
}

fn encode_field(w: &mut Writer, tag: u32, ty: &Ty, v: &Value) {
    match ty {
        Ty::List(elem) => {
            for item in v.as_array().into_iter().flatten() {
                encode_field(w, tag, elem, item);
            }
        }
        Ty::Map(val) => {
            for (k, item) in v.as_object().into_iter().flatten() {
                let mut entry = Writer::new();
                entry.string_field(1, k);
                encode_field(&mut entry, 2, val, item);
                w.message(tag, &entry.into_inner());
            }
        }
        Ty::String => {
            if let Some(s) = v.as_str() {
                w.string_field(tag, s);
            }
        }
        Ty::Bytes => {
            use base64::Engine as _;
            if let Some(b) = v.as_str().and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok()) {
                w.bytes_field(tag, &b);
            }
        }
        Ty::Int32 | Ty::Int64 => {
            if let Some(n) = v.as_i64() {
                w.varint_field(tag, n as u64);
            }
        }
        Ty::Bool => {
            if let Some(b) = v.as_bool() {
                w.varint_field(tag, u64::from(b));
            }
        }
        Ty::Float64 => {
            if let Some(f) = v.as_f64() {
                w.fixed64_field(tag, f.to_bits());
            }
        }
        Ty::Any => w.bytes_field(tag, v.to_string().as_bytes()),
        Ty::Ref(i) => {
            let mut sub = Writer::new();
            if let Value::Object(m) = v {
                encode_message(&mut sub, m, layout(schema::def_at(*i)));
            }
            w.message(tag, &sub.into_inner());
        }
        Ty::Special(s) => {
            let mut sub = Writer::new();
            encode_special(&mut sub, *s, v);
            w.message(tag, &sub.into_inner());
        }
    }
}

fn encode_special(w: &mut Writer, s: Special, v: &Value) {
    match s {
        Special::Time | Special::MicroTime => {
            if let Some(ts) = v.as_str().and_then(kubesvc_api::time::parse) {
                w.varint_field(1, ts.as_second() as u64);
                let nanos = if s == Special::MicroTime { ts.subsec_nanosecond() / 1000 * 1000 } else { 0 };
                w.varint_field(2, nanos as i64 as u64);
            }
        }
        Special::IntOrString => match v {
            Value::String(text) => {
                w.varint_field(1, 1);
                w.varint_field(2, 0);
                w.string_field(3, text);
            }
            other => {
                w.varint_field(1, 0);
                w.varint_field(2, other.as_i64().unwrap_or(0) as u64);
                w.string_field(3, "");
            }
        },
        Special::Quantity => {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            w.string_field(1, &text);
        }
        Special::FieldsV1 | Special::RawExtension => w.bytes_field(1, v.to_string().as_bytes()),
    }
}
