//! Rendering objects and lists in the negotiated shape: plain objects (JSON,
//! YAML, protobuf), Tables for kubectl, or metadata only.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use http::{Response, StatusCode};
use kubesvc_api::meta;
use kubesvc_api::resources::Resource;
use kubesvc_api::status::StatusError;
use serde_json::{Map, Value, json};

use crate::cache::Entry;
use crate::web::{Body, Format, JSON, Negotiated, Shape, respond, respond_value};

/// What a Table row carries of its object (`includeObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(v: Option<&str>) -> Result<Self, StatusError> {
        match v.unwrap_or_default() {
            "" | "Metadata" => Ok(IncludeObject::Metadata),
            "Object" => Ok(IncludeObject::Object),
            "None" => Ok(IncludeObject::None),
            other => Err(StatusError::bad_request(format!("unrecognized includeObject value: {other:?}"))),
        }
    }
}

fn partial(obj: &Value, version: &str) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": format!("meta.k8s.io/{version}"), "metadata": meta::meta(obj)})
}

/// One Table row for an object.
pub fn table_row(r: &Resource, obj: &Value, version: &str, include: IncludeObject, now: jiff::Timestamp) -> Value {
    let row = r.printer.row(obj, now);
    let mut m = Map::new();
    m.insert("cells".into(), Value::Array(row.cells));
    if let Some(c) = row.conditions {
        m.insert("conditions".into(), c);
    }
    match include {
        IncludeObject::Metadata => {
            m.insert("object".into(), partial(obj, version));
        }
        IncludeObject::Object => {
            m.insert("object".into(), obj.clone());
        }
        IncludeObject::None => {}
    }
    Value::Object(m)
}

pub fn table(r: &Resource, version: &str, list_meta: Value, rows: Vec<Value>, with_columns: bool) -> Value {
    let columns = if with_columns {
        Value::Array(r.printer.columns().iter().map(|c| c.to_json()).collect())
    } else {
        Value::Null
    };
    json!({"kind": "Table", "apiVersion": format!("meta.k8s.io/{version}"), "metadata": list_meta, "columnDefinitions": columns, "rows": rows})
}

/// A single object in the negotiated shape.
pub fn object(
    r: &'static Resource,
    n: Negotiated,
    status: StatusCode,
    obj: &Value,
    include: IncludeObject,
) -> Response<Body> {
    match n.shape {
        Shape::Table(v) => {
            let rv = meta::resource_version(obj);
            let list_meta = if rv.is_empty() { json!({}) } else { json!({"resourceVersion": rv}) };
            let row = table_row(r, obj, v, include, kubesvc_api::time::now());
            respond_value(status, n.format, &table(r, v, list_meta, vec![row], true))
        }
        Shape::PartialMetadata(v) => respond_value(status, n.format, &partial(obj, v)),
        Shape::Object => match n.format {
            Format::Protobuf => respond(
                status,
                kubesvc_wire::CONTENT_TYPE,
                kubesvc_wire::encode_object(obj, r.schema(), &r.api_version(), r.kind),
            ),
            f => respond_value(status, f, obj),
        },
    }
}

/// A cached object: its stored serialization when the shape allows.
pub fn entry(r: &'static Resource, n: Negotiated, e: &Entry, include: IncludeObject) -> Response<Body> {
    match (n.shape, n.format) {
        (Shape::Object, Format::Json) => respond(StatusCode::OK, JSON, e.json.clone()),
        (Shape::Object, Format::Protobuf) => respond(
            StatusCode::OK,
            kubesvc_wire::CONTENT_TYPE,
            kubesvc_wire::envelope(&r.api_version(), r.kind, e.protobuf(r)),
        ),
        _ => object(r, n, StatusCode::OK, &e.value(), include),
    }
}

/// A list in the negotiated shape.
pub fn list(
    r: &'static Resource,
    n: Negotiated,
    list_meta: Value,
    items: &[Arc<Entry>],
    include: IncludeObject,
) -> Response<Body> {
    match (n.shape, n.format) {
        (Shape::Object, Format::Json) => {
            // Items are already serialized: splice them in.
            let head = serde_json::to_vec(
                &json!({"kind": r.list_kind(), "apiVersion": r.api_version(), "metadata": list_meta}),
            )
            .expect("a JSON value serializes");
            let mut buf =
                BytesMut::with_capacity(head.len() + 16 + items.iter().map(|e| e.json.len() + 1).sum::<usize>());
            buf.put_slice(&head[..head.len() - 1]);
            buf.put_slice(b",\"items\":[");
            for (i, e) in items.iter().enumerate() {
                if i > 0 {
                    buf.put_u8(b',');
                }
                buf.put_slice(&e.json);
            }
            buf.put_slice(b"]}");
            respond(StatusCode::OK, JSON, buf.freeze())
        }
        (Shape::Object, Format::Protobuf) => respond(
            StatusCode::OK,
            kubesvc_wire::CONTENT_TYPE,
            kubesvc_wire::encode_list_raw(
                &list_meta,
                items.iter().map(|e| &e.protobuf(r)[..]),
                &r.api_version(),
                &r.list_kind(),
            ),
        ),
        (Shape::Object, f) => {
            let v = json!({"kind": r.list_kind(), "apiVersion": r.api_version(), "metadata": list_meta,
                "items": items.iter().map(|e| e.value()).collect::<Vec<_>>()});
            respond_value(StatusCode::OK, f, &v)
        }
        (Shape::Table(v), f) => {
            let now = kubesvc_api::time::now();
            let rows = items.iter().map(|e| table_row(r, &e.value(), v, include, now)).collect();
            respond_value(StatusCode::OK, f, &table(r, v, list_meta, rows, true))
        }
        (Shape::PartialMetadata(v), f) => {
            let out = json!({"kind": "PartialObjectMetadataList", "apiVersion": format!("meta.k8s.io/{v}"), "metadata": list_meta,
                "items": items.iter().map(|e| partial(&e.value(), v)).collect::<Vec<_>>()});
            respond_value(StatusCode::OK, f, &out)
        }
    }
}

/// Bytes of one object as a watch event's object would carry it.
pub fn event_object(r: &'static Resource, n: Negotiated, e: &Entry, include: IncludeObject, first: bool) -> Bytes {
    match (n.shape, n.format) {
        (Shape::Object, Format::Protobuf) => {
            Bytes::from(kubesvc_wire::envelope(&r.api_version(), r.kind, e.protobuf(r)))
        }
        (Shape::Object, _) => e.json.clone(),
        (Shape::Table(v), _) => {
            let obj = e.value();
            let row = table_row(r, &obj, v, include, kubesvc_api::time::now());
            let t = table(r, v, json!({"resourceVersion": e.rv.to_string()}), vec![row], first);
            Bytes::from(serde_json::to_vec(&t).expect("a JSON value serializes"))
        }
        (Shape::PartialMetadata(v), _) => {
            Bytes::from(serde_json::to_vec(&partial(&e.value(), v)).expect("a JSON value serializes"))
        }
    }
}
