//! Generates `crates/api/src/schema/generated.rs`: for every type reachable
//! from the kinds kubesvc serves, its JSON fields (names and types, from
//! k8s-openapi's schemas), their protobuf field numbers (from k8s-pb's prost
//! attributes) and their presence rule (from `presence.txt`).
//!
//! Run from the repository root: `cargo run --manifest-path tools/pbgen/Cargo.toml`.
//! It prints what it could not match (fields one side has and the other lacks).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::{apps, autoscaling, coordination, core, discovery};
use k8s_openapi::apimachinery::pkg::apis::meta;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::Value;
use syn::punctuated::Punctuated;

const OUT: &str = "crates/api/src/schema/generated.rs";

fn main() -> Result<()> {
    let root = std::env::current_dir()?;
    let defs = openapi_defs();
    let pb = PbIndex::load(&k8s_pb_src(&root)?)?;
    let presence = Presence::load(&root.join("tools/pbgen/presence.txt"))?;
    let code = generate(&defs, &pb, &presence)?;
    std::fs::write(root.join(OUT), code).with_context(|| format!("writing {OUT}"))?;
    eprintln!("wrote {OUT} ({} types)", defs.len());
    Ok(())
}

/// The JSON schemas of every type reachable from the served kinds.
fn openapi_defs() -> BTreeMap<String, Value> {
    fn add<T: JsonSchema>(g: &mut SchemaGenerator) {
        g.subschema_for::<T>();
    }
    let mut g = SchemaGenerator::default();
    add::<core::v1::Namespace>(&mut g);
    add::<core::v1::Node>(&mut g);
    add::<core::v1::Pod>(&mut g);
    add::<core::v1::Binding>(&mut g);
    add::<core::v1::Service>(&mut g);
    add::<core::v1::Endpoints>(&mut g);
    add::<core::v1::Event>(&mut g);
    add::<core::v1::ConfigMap>(&mut g);
    add::<core::v1::Secret>(&mut g);
    add::<discovery::v1::EndpointSlice>(&mut g);
    add::<apps::v1::Deployment>(&mut g);
    add::<apps::v1::ReplicaSet>(&mut g);
    add::<coordination::v1::Lease>(&mut g);
    add::<autoscaling::v1::Scale>(&mut g);
    add::<meta::v1::Status>(&mut g);
    add::<meta::v1::DeleteOptions>(&mut g);
    add::<meta::v1::ListMeta>(&mut g);
    g.definitions().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Finds k8s-pb's source directory through the main workspace's metadata.
fn k8s_pb_src(root: &Path) -> Result<PathBuf> {
    let out = Command::new("cargo")
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let meta: Value = serde_json::from_slice(&out.stdout)?;
    let pkg = meta["packages"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "k8s-pb"))
        .ok_or_else(|| anyhow!("k8s-pb is not a dependency of the workspace"))?;
    let manifest = PathBuf::from(pkg["manifest_path"].as_str().unwrap_or_default());
    Ok(manifest.parent().ok_or_else(|| anyhow!("bad manifest path"))?.join("src"))
}

// ---- k8s-pb ------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct PbField {
    name: String,
    tag: u32,
    /// prost's scalar type (`string`, `int32`, ...), `message`, or `map`.
    kind: String,
    repeated: bool,
    /// For messages and map values that are messages: (module path, type name).
    message: Option<(Vec<String>, String)>,
}

/// Every prost message of the packages we need, by (module path, type name).
struct PbIndex {
    messages: HashMap<(Vec<String>, String), Vec<PbField>>,
}

const PB_PACKAGES: &[&str] = &[
    "api/core/v1",
    "api/apps/v1",
    "api/discovery/v1",
    "api/coordination/v1",
    "api/autoscaling/v1",
    "apimachinery/pkg/apis/meta/v1",
    "apimachinery/pkg/util/intstr",
    "apimachinery/pkg/api/resource",
    "apimachinery/pkg/runtime",
];

impl PbIndex {
    fn load(src: &Path) -> Result<Self> {
        let mut messages = HashMap::new();
        for pkg in PB_PACKAGES {
            let module: Vec<String> = pkg.split('/').map(str::to_owned).collect();
            let file = src.join(pkg).join("mod.rs");
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let ast = syn::parse_file(&text).with_context(|| format!("parsing {}", file.display()))?;
            for item in ast.items {
                let syn::Item::Struct(s) = item else { continue };
                let mut fields = Vec::new();
                for f in &s.fields {
                    if let Some(pf) = parse_pb_field(&module, f)? {
                        fields.push(pf);
                    }
                }
                messages.insert((module.clone(), s.ident.to_string()), fields);
            }
        }
        Ok(PbIndex { messages })
    }

    /// The message for an OpenAPI definition name, matching type names without regard to case.
    fn for_def(&self, def: &str) -> Option<(&(Vec<String>, String), &Vec<PbField>)> {
        let rest = def.strip_prefix("io.k8s.")?;
        let (module, name) = rest.rsplit_once('.')?;
        let module: Vec<String> = module.split('.').map(str::to_owned).collect();
        self.messages.iter().find(|((m, n), _)| *m == module && n.eq_ignore_ascii_case(name))
    }

    fn get(&self, key: &(Vec<String>, String)) -> Option<&Vec<PbField>> {
        self.messages.get(key)
    }
}

fn parse_pb_field(module: &[String], f: &syn::Field) -> Result<Option<PbField>> {
    let Some(attr) = f.attrs.iter().find(|a| a.path().is_ident("prost")) else { return Ok(None) };
    let items = attr.parse_args_with(Punctuated::<syn::Meta, syn::Token![,]>::parse_terminated)?;
    let name = f.ident.as_ref().map(|i| i.to_string().trim_start_matches("r#").to_owned()).unwrap_or_default();
    let (mut kind, mut tag, mut repeated, mut map_value) = (String::new(), 0u32, false, None);
    for item in items {
        match item {
            syn::Meta::Path(p) => {
                let id = p.get_ident().map(|i| i.to_string()).unwrap_or_default();
                match id.as_str() {
                    "optional" | "required" => {}
                    "repeated" => repeated = true,
                    other => kind = other.to_owned(),
                }
            }
            syn::Meta::NameValue(nv) => {
                let key = nv.path.get_ident().map(|i| i.to_string()).unwrap_or_default();
                let val = match &nv.value {
                    syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) => s.value(),
                    _ => String::new(),
                };
                match key.as_str() {
                    "tag" => tag = val.parse()?,
                    "btree_map" | "map" => {
                        kind = "map".into();
                        let (k, v) = val.split_once(',').ok_or_else(|| anyhow!("bad map attr {val}"))?;
                        if k.trim() != "string" {
                            bail!("map key {k} in {name}");
                        }
                        map_value = Some(v.trim().to_owned());
                    }
                    "bytes" => kind = "bytes".into(),
                    _ => {}
                }
            }
            syn::Meta::List(_) => {}
        }
    }
    let message = if kind == "message" || map_value.as_deref() == Some("message") {
        Some(resolve_type(module, innermost_type(&f.ty).ok_or_else(|| anyhow!("no type for {name}"))?)?)
    } else {
        None
    };
    Ok(Some(PbField { name, tag, kind, repeated, message }))
}

/// The last generic argument, recursively: `Option<Vec<X>>` → `X`, `BTreeMap<K, V>` → `V`.
fn innermost_type(ty: &syn::Type) -> Option<&syn::Path> {
    let syn::Type::Path(tp) = ty else { return None };
    let last = tp.path.segments.last()?;
    if let syn::PathArguments::AngleBracketed(args) = &last.arguments {
        let inner = args.args.iter().filter_map(|a| if let syn::GenericArgument::Type(t) = a { Some(t) } else { None }).last()?;
        return innermost_type(inner);
    }
    Some(&tp.path)
}

fn resolve_type(module: &[String], path: &syn::Path) -> Result<(Vec<String>, String)> {
    let mut m = module.to_vec();
    let segs: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    let (name, prefix) = segs.split_last().ok_or_else(|| anyhow!("empty path"))?;
    let mut absolute = false;
    for s in prefix {
        if s == "super" {
            m.pop();
        } else {
            if !absolute {
                absolute = true;
            }
            m.push(s.clone());
        }
    }
    Ok((m, name.clone()))
}

// ---- presence ----------------------------------------------------------------------------------

struct Presence {
    pointer: BTreeSet<(String, String)>,
    always: BTreeSet<(String, String)>,
}

impl Presence {
    fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)?;
        let (mut pointer, mut always) = (BTreeSet::new(), BTreeSet::new());
        for line in text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
            let mut words = line.split_whitespace();
            let (Some(kind), Some(ty)) = (words.next(), words.next()) else { bail!("bad line {line}") };
            let set = match kind {
                "pointer" => &mut pointer,
                "always" => &mut always,
                _ => bail!("bad presence kind in {line}"),
            };
            for f in words {
                set.insert((ty.to_owned(), f.to_owned()));
            }
        }
        Ok(Presence { pointer, always })
    }

    /// `core.v1.ServiceSpec` for `io.k8s.api.core.v1.ServiceSpec`, `meta.v1.X` for apimachinery's meta.
    fn short(def: &str) -> String {
        let parts: Vec<&str> = def.split('.').collect();
        parts[parts.len().saturating_sub(3)..].join(".")
    }

    fn of(&self, def: &str, json: &str) -> &'static str {
        let key = (Self::short(def), json.to_owned());
        if self.pointer.contains(&key) {
            "Pointer"
        } else if self.always.contains(&key) {
            "Always"
        } else {
            "OmitEmpty"
        }
    }
}

// ---- generation --------------------------------------------------------------------------------

fn special(def: &str) -> Option<&'static str> {
    Some(match def {
        "io.k8s.apimachinery.pkg.apis.meta.v1.Time" => "Time",
        "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime" => "MicroTime",
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => "IntOrString",
        "io.k8s.apimachinery.pkg.api.resource.Quantity" => "Quantity",
        "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1" => "FieldsV1",
        "io.k8s.apimachinery.pkg.runtime.RawExtension" => "RawExtension",
        _ => return None,
    })
}

fn ref_name(schema: &Value) -> Option<&str> {
    schema.get("$ref")?.as_str()?.rsplit('/').next()
}

/// The Rust expression of a property's type, and the prost kind it must have.
fn ty_expr(schema: &Value, index: &BTreeMap<&str, usize>) -> Result<(String, &'static str)> {
    if let Some(name) = ref_name(schema) {
        if let Some(s) = special(name) {
            return Ok((format!("Ty::Special(Special::{s})"), "message"));
        }
        let i = index.get(name).ok_or_else(|| anyhow!("unknown ref {name}"))?;
        return Ok((format!("Ty::Ref({i})"), "message"));
    }
    let ty = schema.get("type").and_then(Value::as_str).unwrap_or("");
    let format = schema.get("format").and_then(Value::as_str).unwrap_or("");
    Ok(match (ty, format) {
        ("string", "byte") => ("Ty::Bytes".into(), "bytes"),
        ("string", _) => ("Ty::String".into(), "string"),
        ("integer", "int64") => ("Ty::Int64".into(), "int64"),
        ("integer", _) => ("Ty::Int32".into(), "int32"),
        ("boolean", _) => ("Ty::Bool".into(), "bool"),
        ("number", _) => ("Ty::Float64".into(), "double"),
        ("array", _) => {
            let (inner, kind) = ty_expr(schema.get("items").ok_or_else(|| anyhow!("array without items"))?, index)?;
            (format!("Ty::List(&{inner})"), kind)
        }
        ("object", _) => match schema.get("additionalProperties") {
            Some(ap) if ap.is_object() => {
                let (inner, _) = ty_expr(ap, index)?;
                (format!("Ty::Map(&{inner})"), "map")
            }
            _ => ("Ty::Any".into(), "any"),
        },
        _ if schema.get("x-kubernetes-int-or-string").is_some() => ("Ty::Special(Special::IntOrString)".into(), "message"),
        _ => ("Ty::Any".into(), "any"),
    })
}

fn norm(name: &str) -> String {
    name.chars().filter(|c| *c != '_').flat_map(char::to_lowercase).collect()
}

/// The protobuf path of a JSON property: a direct field, or a field of an
/// embedded message that JSON flattens (Volume.volumeSource, Probe.handler, ...).
fn find_tag(pb: &PbIndex, fields: &[PbField], json: &str, claimed: &BTreeSet<String>) -> Option<(Vec<u32>, PbField)> {
    if let Some(f) = fields.iter().find(|f| norm(&f.name) == norm(json)) {
        return Some((vec![f.tag], f.clone()));
    }
    for f in fields.iter().filter(|f| f.kind == "message" && !f.repeated && !claimed.contains(&norm(&f.name))) {
        let Some(inner) = f.message.as_ref().and_then(|m| pb.get(m)) else { continue };
        if let Some((mut path, leaf)) = find_tag(pb, inner, json, &BTreeSet::new()) {
            path.insert(0, f.tag);
            return Some((path, leaf));
        }
    }
    None
}

fn generate(defs: &BTreeMap<String, Value>, pb: &PbIndex, presence: &Presence) -> Result<String> {
    let names: Vec<&str> = defs.keys().map(String::as_str).filter(|n| special(n).is_none()).collect();
    let index: BTreeMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let mut out = String::new();
    writeln!(out, "// @generated by tools/pbgen from k8s-openapi 0.29 (v1_37), k8s-pb 0.9 and tools/pbgen/presence.txt.")?;
    writeln!(out, "// Do not edit: change the generator or its inputs and run it again.\n")?;
    writeln!(out, "use super::{{Def, Presence::*, Prop, Special, Ty}};\n")?;
    writeln!(out, "pub(super) static DEFS: &[Def] = &[")?;
    let mut unmatched = Vec::new();
    for (position, name) in names.iter().enumerate() {
        let schema = &defs[*name];
        let props = schema.get("properties").and_then(Value::as_object);
        let pbmsg = pb.for_def(name);
        if pbmsg.is_none() {
            unmatched.push(format!("{name}: no protobuf message"));
        }
        let pb_fields: &[PbField] = pbmsg.map(|(_, f)| f.as_slice()).unwrap_or_default();
        let own: BTreeSet<String> = props.into_iter().flatten().map(|(k, _)| norm(k)).collect();
        writeln!(out, "    Def {{\n        name: {name:?},\n        index: {position},\n        props: &[")?;
        for (json, ps) in props.into_iter().flatten() {
            let (ty, want_kind) = ty_expr(ps, &index).with_context(|| format!("{name}.{json}"))?;
            // A kind's own apiVersion and kind (TypeMeta) have no field: they travel in the envelope.
            let type_meta = (json == "apiVersion" || json == "kind") && !pb_fields.iter().any(|f| norm(&f.name) == norm(json));
            let tag = if type_meta {
                Vec::new()
            } else {
                match find_tag(pb, pb_fields, json, &own) {
                    Some((path, f)) => {
                        let kind_ok = match want_kind {
                            "any" => true,
                            "map" => f.kind == "map",
                            k => f.kind == k,
                        };
                        if !kind_ok {
                            bail!("{name}.{json}: schema says {want_kind}, protobuf says {}", f.kind);
                        }
                        path
                    }
                    None => {
                        if pbmsg.is_some() {
                            unmatched.push(format!("{name}.{json}: no protobuf field"));
                        }
                        Vec::new()
                    }
                }
            };
            let pres = presence.of(name, json);
            writeln!(out, "            Prop {{ json: {json:?}, ty: {ty}, tag: &{tag:?}, presence: {pres} }},")?;
        }
        writeln!(out, "        ],\n    }},")?;
    }
    writeln!(out, "];")?;
    for u in &unmatched {
        eprintln!("note: {u}");
    }
    Ok(out)
}
