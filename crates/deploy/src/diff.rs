//! What changed between two versions of a component, read from their WIT
//! worlds (decoded with `wit-component`, the wasm-tools line wasmtime uses),
//! and what each change means for an upgrade.
//!
//! | change | class |
//! | --- | --- |
//! | an export (function or interface) or an exported function added | compatible |
//! | an import removed | compatible |
//! | an export or exported function removed (or renamed) | breaking |
//! | any change to an exported function's parameters, result or a type they use (including an added record field, variant or enum case, or flag: the component model has no width subtyping) | breaking |
//! | an import added or changed | needs a grant (the host must provide it) |
//! | an interface of our contract moved between versions the host links (`airssys:component/handler@0.1.0` to `@0.2.0`) | compatible (the host links both) |

use std::collections::BTreeMap;

use wit_parser::{Function, Resolve, Type, TypeDefKind, WorldId, WorldItem};

use crate::error::{Error, Result};

/// What a change means for an upgrade.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Callers of the old version keep working.
    Compatible,
    /// The new version imports something the host must provide and grant.
    NeedsGrant,
    /// Callers of the old version may break.
    Breaking,
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Class::Compatible => "compatible",
            Class::NeedsGrant => "needs a grant",
            Class::Breaking => "breaking",
        })
    }
}

/// One change between two worlds.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Change {
    /// What it means.
    pub class: Class,
    /// What changed, in words.
    pub what: String,
}

/// The changes from `old` to `new` (component bytes), most serious first.
pub fn diff(old: &[u8], new: &[u8]) -> Result<Vec<Change>> {
    let old = Shape::read(old, "the old version")?;
    let new = Shape::read(new, "the new version")?;
    Ok(old.diff(&new))
}

/// What of a component's world a diff compares: its exports and imports,
/// each function with its signature's shape. Decoding the world is most of
/// a diff's cost; a shape is small and may be kept (by digest) for the
/// next upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    exports: Items,
    imports: Items,
}

impl Shape {
    /// The shape of a component's world; `which` names it in errors.
    pub fn read(bytes: &[u8], which: &str) -> Result<Self> {
        let (r, w) = decode(bytes, which)?;
        Ok(Self {
            exports: items(&r, &r.worlds[w].exports),
            imports: items(&r, &r.worlds[w].imports),
        })
    }

    /// The changes from this shape to `new`, most serious first.
    pub fn diff(&self, new: &Self) -> Vec<Change> {
        let mut changes = Vec::new();
        let (mut old_exports, mut new_exports) = (self.exports.clone(), new.exports.clone());
        let (mut old_imports, mut new_imports) = (self.imports.clone(), new.imports.clone());
        contract_moves(&mut old_exports, &mut new_exports, &mut changes);
        contract_moves(&mut old_imports, &mut new_imports, &mut changes);
        compare(&old_exports, &new_exports, Side::Export, &mut changes);
        compare(&old_imports, &new_imports, Side::Import, &mut changes);
        changes.sort_by(|a, b| b.class.cmp(&a.class).then(a.what.cmp(&b.what)));
        changes
    }
}

fn decode(bytes: &[u8], which: &str) -> Result<(Resolve, WorldId)> {
    match wit_component::decode(bytes) {
        Ok(wit_parser::decoding::DecodedWasm::Component(r, w)) => Ok((r, w)),
        Ok(_) => Err(Error::Invalid(format!(
            "{which} is a WIT package, not a component"
        ))),
        Err(e) => Err(Error::Invalid(format!(
            "{which}'s WIT cannot be read: {e:#}"
        ))),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Export,
    Import,
}

/// A world's items by name: each function with its signature's shape.
/// Types are compared through the functions that use them.
type Items = BTreeMap<String, BTreeMap<String, String>>;

fn items(r: &Resolve, map: &wit_parser::IndexMap<wit_parser::WorldKey, WorldItem>) -> Items {
    let mut out = Items::new();
    for (key, item) in map {
        let name = r.name_world_key(key);
        match item {
            WorldItem::Function(f) => {
                out.entry(String::new())
                    .or_default()
                    .insert(f.name.clone(), signature(r, f));
            }
            WorldItem::Interface { id, .. } => {
                let funcs = r.interfaces[*id]
                    .functions
                    .values()
                    .map(|f| (f.name.clone(), signature(r, f)))
                    .collect();
                out.insert(name, funcs);
            }
            WorldItem::Type { .. } => {}
        }
    }
    out
}

/// Our own contract's interfaces that moved to another version of it
/// (`airssys:component/handler@0.1.0` to `@0.2.0`): compatible, since the
/// host links every version it shipped and converts at the boundary. Taken
/// out of `old` and `new` before they are compared.
fn contract_moves(old: &mut Items, new: &mut Items, out: &mut Vec<Change>) {
    const CONTRACT: &str = "airssys:component/";
    // The versions the host links (the runtime's `contract.rs`).
    const LINKED: [&str; 2] = ["0.1.", "0.2."];
    let unversioned = |name: &str| {
        let (base, version) = name.split_once('@')?;
        LINKED
            .iter()
            .any(|v| version.starts_with(v))
            .then(|| base.to_string())
    };
    let moved: Vec<(String, String)> = old
        .keys()
        .filter(|o| o.starts_with(CONTRACT) && !new.contains_key(*o))
        .filter_map(|o| {
            let base = unversioned(o)?;
            let n = new.keys().find(|n| {
                n.starts_with(CONTRACT)
                    && !old.contains_key(*n)
                    && unversioned(n) == Some(base.clone())
            })?;
            Some((o.clone(), n.clone()))
        })
        .collect();
    for (o, n) in moved {
        old.remove(&o);
        new.remove(&n);
        out.push(Change {
            class: Class::Compatible,
            what: format!("`{o}` moves to `{n}`: the host links every version of its contract"),
        });
    }
}

fn compare(old: &Items, new: &Items, side: Side, out: &mut Vec<Change>) {
    let mut push = |class, what: String| out.push(Change { class, what });
    let empty = BTreeMap::new();
    // A function's name: `f` at the world's level, `f` of `iface` else.
    let func = |iface: &str, f: &str| {
        let kind = match side {
            Side::Export => "exported function",
            Side::Import => "imported function",
        };
        if iface.is_empty() {
            format!("{kind} `{f}`")
        } else {
            format!("{kind} `{f}` of `{iface}`")
        }
    };
    let names: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for iface in names {
        let (o, n) = (old.get(iface), new.get(iface));
        if !iface.is_empty() {
            match (o, n, side) {
                (Some(_), None, Side::Export) => {
                    push(Class::Breaking, format!("export `{iface}` removed"));
                    continue;
                }
                (Some(_), None, Side::Import) => {
                    push(Class::Compatible, format!("import `{iface}` removed"));
                    continue;
                }
                (None, Some(_), Side::Export) => {
                    push(Class::Compatible, format!("export `{iface}` added"));
                    continue;
                }
                (None, Some(_), Side::Import) => {
                    push(Class::NeedsGrant, format!("import `{iface}` added"));
                    continue;
                }
                _ => {}
            }
        }
        let (o, n) = (o.unwrap_or(&empty), n.unwrap_or(&empty));
        for (f, sig) in o {
            match (n.get(f), side) {
                (None, Side::Export) => {
                    push(Class::Breaking, format!("{} removed", func(iface, f)))
                }
                (None, Side::Import) => push(
                    Class::Compatible,
                    format!("{} no longer used", func(iface, f)),
                ),
                (Some(s), Side::Export) if s != sig => push(
                    Class::Breaking,
                    format!("{} changed: {sig} -> {s}", func(iface, f)),
                ),
                (Some(s), Side::Import) if s != sig => push(
                    Class::NeedsGrant,
                    format!("{} changed: {sig} -> {s}", func(iface, f)),
                ),
                _ => {}
            }
        }
        for f in n.keys().filter(|f| !o.contains_key(*f)) {
            match side {
                Side::Export => push(Class::Compatible, format!("{} added", func(iface, f))),
                Side::Import => push(Class::NeedsGrant, format!("{} added", func(iface, f))),
            }
        }
    }
}

/// A function's signature, every type spelled out to its leaves.
fn signature(r: &Resolve, f: &Function) -> String {
    let params: Vec<String> = f
        .params
        .iter()
        .map(|p| format!("{}: {}", p.name, shape(r, &p.ty)))
        .collect();
    match &f.result {
        Some(t) => format!("func({}) -> {}", params.join(", "), shape(r, t)),
        None => format!("func({})", params.join(", ")),
    }
}

/// A type spelled out structurally (names of records and resources kept:
/// renaming one is a change too).
fn shape(r: &Resolve, t: &Type) -> String {
    let id = match t {
        Type::Id(id) => *id,
        Type::Bool => return "bool".into(),
        Type::U8 => return "u8".into(),
        Type::U16 => return "u16".into(),
        Type::U32 => return "u32".into(),
        Type::U64 => return "u64".into(),
        Type::S8 => return "s8".into(),
        Type::S16 => return "s16".into(),
        Type::S32 => return "s32".into(),
        Type::S64 => return "s64".into(),
        Type::F32 => return "f32".into(),
        Type::F64 => return "f64".into(),
        Type::Char => return "char".into(),
        Type::String => return "string".into(),
        Type::ErrorContext => return "error-context".into(),
    };
    let def = &r.types[id];
    let name = def.name.clone().unwrap_or_default();
    let opt = |t: &Option<Type>| t.as_ref().map_or("_".to_string(), |t| shape(r, t));
    match &def.kind {
        TypeDefKind::Record(rec) => format!(
            "record {name} {{{}}}",
            rec.fields
                .iter()
                .map(|f| format!("{}: {}", f.name, shape(r, &f.ty)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        TypeDefKind::Resource => format!("resource {name}"),
        TypeDefKind::Handle(wit_parser::Handle::Own(id)) => {
            format!("own<{}>", shape(r, &Type::Id(*id)))
        }
        TypeDefKind::Handle(wit_parser::Handle::Borrow(id)) => {
            format!("borrow<{}>", shape(r, &Type::Id(*id)))
        }
        TypeDefKind::Flags(f) => format!(
            "flags {name} {{{}}}",
            f.flags
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        TypeDefKind::Tuple(t) => format!(
            "tuple<{}>",
            t.types
                .iter()
                .map(|t| shape(r, t))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        TypeDefKind::Variant(v) => format!(
            "variant {name} {{{}}}",
            v.cases
                .iter()
                .map(|c| format!("{}({})", c.name, opt(&c.ty)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        TypeDefKind::Enum(e) => format!(
            "enum {name} {{{}}}",
            e.cases
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        TypeDefKind::Option(t) => format!("option<{}>", shape(r, t)),
        TypeDefKind::Result(res) => format!("result<{}, {}>", opt(&res.ok), opt(&res.err)),
        TypeDefKind::List(t) => format!("list<{}>", shape(r, t)),
        TypeDefKind::Map(k, v) => format!("map<{}, {}>", shape(r, k), shape(r, v)),
        TypeDefKind::FixedLengthList(t, n) => format!("list<{}, {n}>", shape(r, t)),
        TypeDefKind::Future(t) => format!("future<{}>", opt(t)),
        TypeDefKind::Stream(t) => format!("stream<{}>", opt(t)),
        TypeDefKind::Type(t) => shape(r, t),
        TypeDefKind::Unknown => format!("unknown {name}"),
    }
}

/// Whether `changes` hold a breaking one.
pub fn breaking(changes: &[Change]) -> bool {
    changes.iter().any(|c| c.class == Class::Breaking)
}
