//! Dynamic calls: JSON values converted through a function's own WIT types.
//!
//! The mapping (documented in `docs/json-mapping.md`):
//!
//! | WIT | JSON |
//! | --- | --- |
//! | `bool` | `true` / `false` |
//! | integers | numbers; 64-bit values beyond ±2^53 as decimal strings (strings accepted for any integer) |
//! | `f32`, `f64` | numbers; `"NaN"`, `"inf"`, `"-inf"` as strings |
//! | `char`, `string` | strings (a `char` is exactly one character) |
//! | `list<T>`, `tuple<...>` | arrays |
//! | `record` | object with the WIT field names; an absent `option` field is `none` |
//! | `variant` | `{"case": payload}`, `{"case": null}` without payload (the bare string `"case"` is accepted) |
//! | `enum` | string |
//! | `flags` | array of strings |
//! | `option<T>` | `null` or the value; `{"some": value}` when `T` is itself an option |
//! | `result<T, E>` | `{"ok": value}` / `{"err": value}`, `null` without payload |
//! | resources | refused |

use serde_json::{Map, Value as Json, json};
use wasmtime::component::Val;
use wasmtime::component::types::Type;

const SAFE_INT: i64 = 1 << 53;

/// Pick the one exported function `wanted` names: exact, `interface#f`
/// with the interface named without its version or package, or `f` alone.
/// `Err` holds the candidates (empty when none matched).
pub(crate) fn match_function(all: &[String], wanted: &str) -> Result<String, Vec<String>> {
    if all.iter().any(|f| f == wanted) {
        return Ok(wanted.to_string());
    }
    let matches: Vec<String> = all
        .iter()
        .filter(|f| short_forms(f).any(|s| s == wanted))
        .cloned()
        .collect();
    match matches.len() {
        1 => Ok(matches.into_iter().next().unwrap_or_default()),
        _ => Err(matches),
    }
}

/// The names a function may be called by besides its full name: for
/// `ns:pkg/iface@1.0.0#f`, `ns:pkg/iface#f`, `iface#f` and `f`.
fn short_forms(full: &str) -> impl Iterator<Item = String> + '_ {
    let mut forms = Vec::new();
    if let Some((iface, f)) = full.split_once('#') {
        let unversioned = iface.split('@').next().unwrap_or(iface);
        forms.push(format!("{unversioned}#{f}"));
        if let Some((_, short)) = unversioned.rsplit_once('/') {
            forms.push(format!("{short}#{f}"));
        }
        forms.push(f.to_string());
    }
    forms.into_iter()
}

/// The first resource a type contains, named for an error message.
pub(crate) fn find_resource(ty: &Type) -> Option<String> {
    match ty {
        Type::Own(_) => Some("an owned resource handle".into()),
        Type::Borrow(_) => Some("a borrowed resource handle".into()),
        Type::List(l) => find_resource(&l.ty()),
        Type::Option(o) => find_resource(&o.ty()),
        Type::Result(r) => r
            .ok()
            .as_ref()
            .and_then(find_resource)
            .or_else(|| r.err().as_ref().and_then(find_resource)),
        Type::Record(r) => r.fields().find_map(|f| find_resource(&f.ty)),
        Type::Tuple(t) => t.types().find_map(|t| find_resource(&t)),
        Type::Variant(v) => v
            .cases()
            .find_map(|c| c.ty.as_ref().and_then(find_resource)),
        Type::Future(_) | Type::Stream(_) | Type::ErrorContext => Some("an async handle".into()),
        _ => None,
    }
}

/// A type as WIT-like text, for error messages.
pub(crate) fn type_name(ty: &Type) -> String {
    match ty {
        Type::Bool => "bool".into(),
        Type::S8 => "s8".into(),
        Type::U8 => "u8".into(),
        Type::S16 => "s16".into(),
        Type::U16 => "u16".into(),
        Type::S32 => "s32".into(),
        Type::U32 => "u32".into(),
        Type::S64 => "s64".into(),
        Type::U64 => "u64".into(),
        Type::Float32 => "f32".into(),
        Type::Float64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::List(l) => format!("list<{}>", type_name(&l.ty())),
        Type::Record(r) => format!(
            "record {{ {} }}",
            r.fields()
                .map(|f| format!("{}: {}", f.name, type_name(&f.ty)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Type::Tuple(t) => format!(
            "tuple<{}>",
            t.types()
                .map(|t| type_name(&t))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Type::Variant(v) => format!(
            "variant {{ {} }}",
            v.cases()
                .map(|c| c.name.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Type::Enum(e) => format!("enum {{ {} }}", e.names().collect::<Vec<_>>().join(", ")),
        Type::Option(o) => format!("option<{}>", type_name(&o.ty())),
        Type::Result(r) => format!(
            "result<{}, {}>",
            r.ok().map_or("_".into(), |t| type_name(&t)),
            r.err().map_or("_".into(), |t| type_name(&t))
        ),
        Type::Flags(f) => format!("flags {{ {} }}", f.names().collect::<Vec<_>>().join(", ")),
        Type::Own(_) => "own<resource>".into(),
        Type::Borrow(_) => "borrow<resource>".into(),
        _ => "an async type".into(),
    }
}

fn describe(v: &Json) -> String {
    let text = v.to_string();
    if text.len() > 60 {
        format!(
            "{}…",
            &text[..text.char_indices().nth(57).map_or(text.len(), |(i, _)| i)]
        )
    } else {
        text
    }
}

fn expected(ty: &Type, got: &Json) -> String {
    format!("expected {}, got {}", type_name(ty), describe(got))
}

/// Convert the call's JSON arguments: an array (positional) or an object
/// keyed by parameter name.
pub(crate) fn json_args(
    function: &str,
    params: &[(String, Type)],
    args: &Json,
) -> Result<Vec<Val>, String> {
    match args {
        Json::Array(items) => {
            if items.len() != params.len() {
                return Err(format!(
                    "`{function}` takes {} argument(s) ({}), got {}",
                    params.len(),
                    params
                        .iter()
                        .map(|(n, t)| format!("{n}: {}", type_name(t)))
                        .collect::<Vec<_>>()
                        .join(", "),
                    items.len()
                ));
            }
            params
                .iter()
                .zip(items)
                .map(|((name, ty), v)| {
                    json_to_val(v, ty).map_err(|e| format!("parameter `{name}`: {e}"))
                })
                .collect()
        }
        Json::Object(map) => {
            if let Some(unknown) = map.keys().find(|k| !params.iter().any(|(n, _)| n == *k)) {
                return Err(format!(
                    "`{function}` has no parameter `{unknown}`; its parameters are {}",
                    params
                        .iter()
                        .map(|(n, _)| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            params
                .iter()
                .map(|(name, ty)| match map.get(name) {
                    Some(v) => json_to_val(v, ty).map_err(|e| format!("parameter `{name}`: {e}")),
                    None if matches!(ty, Type::Option(_)) => Ok(Val::Option(None)),
                    None => Err(format!("parameter `{name}` ({}) is missing", type_name(ty))),
                })
                .collect()
        }
        Json::Null if params.is_empty() => Ok(Vec::new()),
        other => Err(format!(
            "arguments must be a JSON array (positional) or object (by name), got {}",
            describe(other)
        )),
    }
}

fn int<T: TryFrom<i128>>(v: &Json, ty: &Type) -> Result<T, String> {
    let n: Option<i128> = match v {
        Json::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from)),
        Json::String(s) => s.trim().parse::<i128>().ok(),
        _ => None,
    };
    let n = n.ok_or_else(|| expected(ty, v))?;
    T::try_from(n).map_err(|_| format!("{} is out of range for {}", n, type_name(ty)))
}

fn float(v: &Json, ty: &Type) -> Result<f64, String> {
    match v {
        Json::Number(n) => n.as_f64().ok_or_else(|| expected(ty, v)),
        Json::String(s) => match s.as_str() {
            "NaN" | "nan" => Ok(f64::NAN),
            "inf" | "+inf" | "Infinity" | "infinity" => Ok(f64::INFINITY),
            "-inf" | "-Infinity" | "-infinity" => Ok(f64::NEG_INFINITY),
            other => other.parse::<f64>().map_err(|_| expected(ty, v)),
        },
        _ => Err(expected(ty, v)),
    }
}

/// Convert one JSON value to a value of `ty`.
pub(crate) fn json_to_val(v: &Json, ty: &Type) -> Result<Val, String> {
    Ok(match ty {
        Type::Bool => Val::Bool(v.as_bool().ok_or_else(|| expected(ty, v))?),
        Type::S8 => Val::S8(int(v, ty)?),
        Type::U8 => Val::U8(int(v, ty)?),
        Type::S16 => Val::S16(int(v, ty)?),
        Type::U16 => Val::U16(int(v, ty)?),
        Type::S32 => Val::S32(int(v, ty)?),
        Type::U32 => Val::U32(int(v, ty)?),
        Type::S64 => Val::S64(int(v, ty)?),
        Type::U64 => Val::U64(int(v, ty)?),
        Type::Float32 => {
            let f = float(v, ty)?;
            if f.is_finite() && f.abs() > f64::from(f32::MAX) {
                return Err(format!("{f} is out of range for f32"));
            }
            Val::Float32(f as f32)
        }
        Type::Float64 => Val::Float64(float(v, ty)?),
        Type::Char => {
            let s = v.as_str().ok_or_else(|| expected(ty, v))?;
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Val::Char(c),
                _ => {
                    return Err(format!(
                        "expected char (a string of exactly one character), got {}",
                        describe(v)
                    ));
                }
            }
        }
        Type::String => Val::String(v.as_str().ok_or_else(|| expected(ty, v))?.to_string()),
        Type::List(l) => {
            let items = v.as_array().ok_or_else(|| expected(ty, v))?;
            let elem = l.ty();
            Val::List(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, x)| json_to_val(x, &elem).map_err(|e| format!("[{i}]: {e}")))
                    .collect::<Result<_, _>>()?,
            )
        }
        Type::Tuple(t) => {
            let items = v.as_array().ok_or_else(|| expected(ty, v))?;
            let types: Vec<Type> = t.types().collect();
            if items.len() != types.len() {
                return Err(format!(
                    "{}: expected {} elements, got {}",
                    type_name(ty),
                    types.len(),
                    items.len()
                ));
            }
            Val::Tuple(
                items
                    .iter()
                    .zip(&types)
                    .enumerate()
                    .map(|(i, (x, t))| json_to_val(x, t).map_err(|e| format!("[{i}]: {e}")))
                    .collect::<Result<_, _>>()?,
            )
        }
        Type::Record(r) => {
            let map = v.as_object().ok_or_else(|| expected(ty, v))?;
            let fields: Vec<_> = r.fields().collect();
            if let Some(unknown) = map
                .keys()
                .find(|k| !fields.iter().any(|f| f.name == k.as_str()))
            {
                return Err(format!("{} has no field `{unknown}`", type_name(ty)));
            }
            let mut out = Vec::with_capacity(fields.len());
            for f in fields {
                let val = match map.get(f.name) {
                    Some(x) => {
                        json_to_val(x, &f.ty).map_err(|e| format!("field `{}`: {e}", f.name))?
                    }
                    None if matches!(f.ty, Type::Option(_)) => Val::Option(None),
                    None => {
                        return Err(format!(
                            "field `{}` ({}) is missing",
                            f.name,
                            type_name(&f.ty)
                        ));
                    }
                };
                out.push((f.name.to_string(), val));
            }
            Val::Record(out)
        }
        Type::Variant(var) => {
            let (case, payload) = one_key(v).ok_or_else(|| {
                format!(
                    "{}: expected {{\"case\": payload}}, got {}",
                    type_name(ty),
                    describe(v)
                )
            })?;
            let Some(c) = var.cases().find(|c| c.name == case) else {
                return Err(format!("{} has no case `{case}`", type_name(ty)));
            };
            let payload = match (&c.ty, payload) {
                (None, None | Some(Json::Null)) => None,
                (None, Some(p)) => {
                    return Err(format!("case `{case}` has no payload, got {}", describe(p)));
                }
                (Some(t), Some(p)) => Some(Box::new(
                    json_to_val(p, t).map_err(|e| format!("case `{case}`: {e}"))?,
                )),
                (Some(t), None) => {
                    return Err(format!(
                        "case `{case}` needs a payload of type {}",
                        type_name(t)
                    ));
                }
            };
            Val::Variant(case.to_string(), payload)
        }
        Type::Enum(e) => {
            let s = v.as_str().ok_or_else(|| expected(ty, v))?;
            if !e.names().any(|n| n == s) {
                return Err(format!("{} has no case `{s}`", type_name(ty)));
            }
            Val::Enum(s.to_string())
        }
        Type::Flags(f) => {
            let items = v.as_array().ok_or_else(|| expected(ty, v))?;
            let mut out = Vec::new();
            for item in items {
                let s = item.as_str().ok_or_else(|| expected(ty, v))?;
                if !f.names().any(|n| n == s) {
                    return Err(format!("{} has no flag `{s}`", type_name(ty)));
                }
                out.push(s.to_string());
            }
            Val::Flags(out)
        }
        Type::Option(o) => {
            let inner = o.ty();
            match v {
                Json::Null => Val::Option(None),
                _ if matches!(inner, Type::Option(_)) => {
                    let (key, payload) =
                        one_key(v).filter(|(k, _)| *k == "some").ok_or_else(|| {
                            format!(
                                "{}: expected null or {{\"some\": value}}, got {}",
                                type_name(ty),
                                describe(v)
                            )
                        })?;
                    let _ = key;
                    let payload = payload.unwrap_or(&Json::Null);
                    Val::Option(Some(Box::new(json_to_val(payload, &inner)?)))
                }
                _ => Val::Option(Some(Box::new(json_to_val(v, &inner)?))),
            }
        }
        Type::Result(r) => {
            let (case, payload) = one_key(v)
                .filter(|(k, _)| *k == "ok" || *k == "err")
                .ok_or_else(|| {
                    format!(
                        "{}: expected {{\"ok\": value}} or {{\"err\": value}}, got {}",
                        type_name(ty),
                        describe(v)
                    )
                })?;
            let t = if case == "ok" { r.ok() } else { r.err() };
            let payload = match (t, payload) {
                (None, None | Some(Json::Null)) => None,
                (None, Some(p)) => {
                    return Err(format!("`{case}` has no payload, got {}", describe(p)));
                }
                (Some(t), Some(p)) => Some(Box::new(
                    json_to_val(p, &t).map_err(|e| format!("{case}: {e}"))?,
                )),
                (Some(t), None) => {
                    return Err(format!(
                        "`{case}` needs a payload of type {}",
                        type_name(&t)
                    ));
                }
            };
            Val::Result(if case == "ok" {
                Ok(payload)
            } else {
                Err(payload)
            })
        }
        Type::Own(_) | Type::Borrow(_) => return Err("resources cannot be passed as JSON".into()),
        _ => return Err(format!("{} cannot be passed as JSON", type_name(ty))),
    })
}

/// `{"k": v}` as `(k, Some(v))`, and a bare string `"k"` as `(k, None)`.
fn one_key(v: &Json) -> Option<(&str, Option<&Json>)> {
    match v {
        Json::Object(m) if m.len() == 1 => m.iter().next().map(|(k, v)| (k.as_str(), Some(v))),
        Json::String(s) => Some((s.as_str(), None)),
        _ => None,
    }
}

fn int_json(n: i128) -> Json {
    if (-i128::from(SAFE_INT)..=i128::from(SAFE_INT)).contains(&n) {
        json!(n as i64)
    } else {
        Json::String(n.to_string())
    }
}

fn float_json(f: f64) -> Json {
    if f.is_nan() {
        json!("NaN")
    } else if f.is_infinite() {
        json!(if f > 0.0 { "inf" } else { "-inf" })
    } else {
        json!(f)
    }
}

/// Convert a value to JSON (the inverse of [`json_to_val`]).
pub(crate) fn val_to_json(v: &Val) -> Json {
    match v {
        Val::Bool(b) => json!(b),
        Val::S8(n) => json!(n),
        Val::U8(n) => json!(n),
        Val::S16(n) => json!(n),
        Val::U16(n) => json!(n),
        Val::S32(n) => json!(n),
        Val::U32(n) => json!(n),
        Val::S64(n) => int_json(i128::from(*n)),
        Val::U64(n) => int_json(i128::from(*n)),
        Val::Float32(f) => float_json(f64::from(*f)),
        Val::Float64(f) => float_json(*f),
        Val::Char(c) => json!(c.to_string()),
        Val::String(s) => json!(s),
        Val::List(items) | Val::Tuple(items) => {
            Json::Array(items.iter().map(val_to_json).collect())
        }
        Val::Record(fields) => Json::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), val_to_json(v)))
                .collect::<Map<_, _>>(),
        ),
        Val::Variant(case, payload) => {
            json!({ case.clone(): payload.as_deref().map_or(Json::Null, val_to_json) })
        }
        Val::Enum(s) => json!(s),
        Val::Flags(names) => json!(names),
        Val::Option(None) => Json::Null,
        Val::Option(Some(inner)) => match inner.as_ref() {
            Val::Option(_) => json!({ "some": val_to_json(inner) }),
            other => val_to_json(other),
        },
        Val::Result(Ok(p)) => json!({ "ok": p.as_deref().map_or(Json::Null, val_to_json) }),
        Val::Result(Err(p)) => json!({ "err": p.as_deref().map_or(Json::Null, val_to_json) }),
        _ => json!("<resource>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names_resolve_by_short_form() {
        let all = vec![
            "test:types/api@0.1.0#echo-u8".to_string(),
            "test:types/other@0.1.0#echo-u8".to_string(),
            "test:types/api@0.1.0#sum".to_string(),
            "hello".to_string(),
        ];
        assert_eq!(
            match_function(&all, "sum"),
            Ok("test:types/api@0.1.0#sum".into())
        );
        assert_eq!(
            match_function(&all, "api#echo-u8"),
            Ok("test:types/api@0.1.0#echo-u8".into())
        );
        assert_eq!(
            match_function(&all, "test:types/other#echo-u8"),
            Ok("test:types/other@0.1.0#echo-u8".into())
        );
        assert_eq!(match_function(&all, "hello"), Ok("hello".into()));
        assert_eq!(match_function(&all, "echo-u8").map_err(|c| c.len()), Err(2));
        assert_eq!(match_function(&all, "nope"), Err(vec![]));
    }

    #[test]
    fn integers_beyond_2_53_are_strings() {
        assert_eq!(
            val_to_json(&Val::U64(u64::MAX)),
            json!("18446744073709551615")
        );
        assert_eq!(val_to_json(&Val::S64(-(1 << 53))), json!(-(1_i64 << 53)));
        assert_eq!(
            val_to_json(&Val::S64(-(1 << 53) - 1)),
            json!("-9007199254740993")
        );
        assert_eq!(
            json_to_val(&json!("18446744073709551615"), &Type::U64),
            Ok(Val::U64(u64::MAX))
        );
        assert!(
            json_to_val(&json!(256), &Type::U8)
                .unwrap_err()
                .contains("out of range for u8")
        );
        assert!(
            json_to_val(&json!(-1), &Type::U32)
                .unwrap_err()
                .contains("out of range")
        );
        assert!(
            json_to_val(&json!(1.5), &Type::S32)
                .unwrap_err()
                .contains("expected s32")
        );
    }

    #[test]
    fn non_finite_floats_are_strings() {
        assert_eq!(val_to_json(&Val::Float64(f64::INFINITY)), json!("inf"));
        assert_eq!(val_to_json(&Val::Float32(f32::NEG_INFINITY)), json!("-inf"));
        assert_eq!(val_to_json(&Val::Float64(f64::NAN)), json!("NaN"));
        assert!(
            matches!(json_to_val(&json!("NaN"), &Type::Float64), Ok(Val::Float64(f)) if f.is_nan())
        );
        assert_eq!(
            json_to_val(&json!(2.5), &Type::Float32),
            Ok(Val::Float32(2.5))
        );
    }

    #[test]
    fn chars_are_one_character() {
        assert_eq!(json_to_val(&json!("é"), &Type::Char), Ok(Val::Char('é')));
        assert!(
            json_to_val(&json!("ab"), &Type::Char)
                .unwrap_err()
                .contains("exactly one character")
        );
    }
}
