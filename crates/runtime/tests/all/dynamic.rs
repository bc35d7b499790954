//! Dynamic calls: JSON arguments through the component's own WIT types.
//! The golden table is the mapping of docs/json-mapping.md, written out.

use airssys_wasm_runtime::{ComponentPre, Error, PrepareOptions};
use airssys_wasm_test_guests::TYPES;
use serde_json::{Value, json};

use crate::load;

async fn types() -> ComponentPre {
    load(TYPES, PrepareOptions::default()).await
}

/// (function, arguments, expected result)
fn golden() -> Vec<(&'static str, Value, Value)> {
    vec![
        // numbers
        ("echo-bool", json!([true]), json!(true)),
        ("echo-s8", json!([-128]), json!(-128)),
        ("echo-u8", json!([255]), json!(255)),
        ("echo-s16", json!([-32768]), json!(-32768)),
        ("echo-u16", json!([65535]), json!(65535)),
        ("echo-s32", json!([-2147483648_i64]), json!(-2147483648_i64)),
        ("echo-u32", json!([4294967295_u64]), json!(4294967295_u64)),
        (
            "echo-s64",
            json!([9007199254740992_i64]),
            json!(9007199254740992_i64),
        ),
        (
            "echo-s64",
            json!(["-9223372036854775808"]),
            json!("-9223372036854775808"),
        ),
        (
            "echo-u64",
            json!(["18446744073709551615"]),
            json!("18446744073709551615"),
        ),
        ("echo-u64", json!([42]), json!(42)),
        ("echo-f32", json!([1.5]), json!(1.5)),
        ("echo-f64", json!([-0.25]), json!(-0.25)),
        ("echo-f64", json!(["inf"]), json!("inf")),
        ("echo-f64", json!(["-inf"]), json!("-inf")),
        ("echo-f32", json!(["NaN"]), json!("NaN")),
        // text
        ("echo-char", json!(["ü"]), json!("ü")),
        (
            "echo-string",
            json!(["hello, wörld"]),
            json!("hello, wörld"),
        ),
        // lists and tuples
        ("echo-bytes", json!([[0, 1, 255]]), json!([0, 1, 255])),
        (
            "echo-strings",
            json!([["a", "", "c"]]),
            json!(["a", "", "c"]),
        ),
        (
            "echo-points",
            json!([[{"x": 1, "y": 2}]]),
            json!([{"x": 1, "y": 2}]),
        ),
        (
            "echo-tuple",
            json!([[7, "seven", false]]),
            json!([7, "seven", false]),
        ),
        // records (an absent option field is none)
        (
            "echo-record",
            json!([{"name": "sq", "origin": {"x": -1, "y": 2}, "label": "a"}]),
            json!({"name": "sq", "origin": {"x": -1, "y": 2}, "label": "a"}),
        ),
        (
            "echo-record",
            json!([{"name": "sq", "origin": {"x": 0, "y": 0}}]),
            json!({"name": "sq", "origin": {"x": 0, "y": 0}, "label": null}),
        ),
        // variants, enums, flags
        (
            "echo-variant",
            json!([{"nothing": null}]),
            json!({"nothing": null}),
        ),
        ("echo-variant", json!(["nothing"]), json!({"nothing": null})),
        (
            "echo-variant",
            json!([{"number": -5}]),
            json!({"number": -5}),
        ),
        (
            "echo-variant",
            json!([{"at": {"x": 3, "y": 4}}]),
            json!({"at": {"x": 3, "y": 4}}),
        ),
        ("echo-enum", json!(["green"]), json!("green")),
        (
            "echo-flags",
            json!([["read", "execute"]]),
            json!(["read", "execute"]),
        ),
        ("echo-flags", json!([[]]), json!([])),
        // options
        ("echo-option", json!([null]), json!(null)),
        ("echo-option", json!([5]), json!(5)),
        ("echo-option-option", json!([null]), json!(null)),
        (
            "echo-option-option",
            json!([{"some": null}]),
            json!({"some": null}),
        ),
        (
            "echo-option-option",
            json!([{"some": "x"}]),
            json!({"some": "x"}),
        ),
        // results
        (
            "echo-result",
            json!([{"ok": "fine"}]),
            json!({"ok": "fine"}),
        ),
        ("echo-result", json!([{"err": 3}]), json!({"err": 3})),
        (
            "echo-result-empty",
            json!([{"ok": null}]),
            json!({"ok": null}),
        ),
        (
            "echo-result-empty",
            json!([{"err": null}]),
            json!({"err": null}),
        ),
        // computing functions, arguments by position and by name
        ("sum", json!([[1, 2, 3, -10]]), json!(-4)),
        ("add", json!({"a": 2, "b": 40}), json!(42)),
        ("divide", json!([7, 2]), json!({"ok": 3})),
        ("divide", json!([7, 0]), json!({"err": "division by zero"})),
        ("describe", json!([{"x": 3, "y": -4}]), json!("(3, -4)")),
        (
            "describe-permissions",
            json!([["write", "read"]]),
            json!("read|write"),
        ),
        ("nothing", json!([]), json!(null)),
        ("hello", json!(["ada"]), json!("hello, ada")),
    ]
}

#[tokio::test]
async fn every_type_family_round_trips() {
    let t = types().await;
    let mut failures = Vec::new();
    for (function, args, expected) in golden() {
        match t.call_json(function, &args).await {
            Ok(out) if out.value == expected => {}
            Ok(out) => failures.push(format!(
                "{function}({args}) = {}, expected {expected}",
                out.value
            )),
            Err(e) => failures.push(format!("{function}({args}) failed: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

async fn bad_args(function: &str, args: Value) -> String {
    let err = types().await.call_json(function, &args).await.unwrap_err();
    assert!(
        matches!(err, Error::InvalidArguments { .. }),
        "{function}: {err:?}"
    );
    err.to_string()
}

#[tokio::test]
async fn mistyped_arguments_name_the_parameter_and_the_type() {
    let msg = bad_args("add", json!([1, "two"])).await;
    assert!(
        msg.contains("parameter `b`") && msg.contains("expected s32, got \"two\""),
        "{msg}"
    );
    let msg = bad_args("echo-u8", json!([300])).await;
    assert!(
        msg.contains("parameter `v`") && msg.contains("300 is out of range for u8"),
        "{msg}"
    );
    let msg = bad_args("echo-record", json!([{"name": "x"}])).await;
    assert!(
        msg.contains("field `origin`") && msg.contains("is missing"),
        "{msg}"
    );
    let msg = bad_args(
        "echo-record",
        json!([{"name": "x", "origin": {"x": 1, "y": 2}, "colour": 1}]),
    )
    .await;
    assert!(msg.contains("no field `colour`"), "{msg}");
    let msg = bad_args("echo-enum", json!(["purple"])).await;
    assert!(msg.contains("has no case `purple`"), "{msg}");
    let msg = bad_args("echo-flags", json!([["fly"]])).await;
    assert!(msg.contains("has no flag `fly`"), "{msg}");
    let msg = bad_args("echo-variant", json!([{"number": "x"}])).await;
    assert!(
        msg.contains("case `number`") && msg.contains("expected s64"),
        "{msg}"
    );
    let msg = bad_args("echo-char", json!(["ab"])).await;
    assert!(msg.contains("exactly one character"), "{msg}");
    let msg = bad_args("echo-tuple", json!([[1, "x"]])).await;
    assert!(msg.contains("expected 3 elements, got 2"), "{msg}");
    let msg = bad_args("add", json!([1])).await;
    assert!(
        msg.contains("takes 2 argument(s) (a: s32, b: s32), got 1"),
        "{msg}"
    );
    let msg = bad_args("add", json!({"a": 1, "c": 2})).await;
    assert!(msg.contains("no parameter `c`"), "{msg}");
    let msg = bad_args("echo-result", json!([{"maybe": 1}])).await;
    assert!(
        msg.contains("expected {\"ok\": value} or {\"err\": value}"),
        "{msg}"
    );
}

#[tokio::test]
async fn resources_are_refused_with_a_clear_error() {
    let t = types().await;
    let err = t.call_json("peek", &json!([1])).await.unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    assert!(err.to_string().contains("resource"), "{err}");
    let err = t
        .call_json("[constructor]counter", &json!([1]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("resource"), "{err}");
}

#[tokio::test]
async fn names_resolve_in_full_and_short_forms() {
    let t = types().await;
    for name in [
        "test:types/api@0.1.0#sum",
        "test:types/api#sum",
        "api#sum",
        "sum",
    ] {
        let out = t.call_json(name, &json!([[2, 3]])).await.unwrap();
        assert_eq!(out.value, json!(5), "{name}");
    }
    let err = t.call_json("summ", &json!([[1]])).await.unwrap_err();
    assert!(matches!(err, Error::MissingExport { .. }), "{err:?}");
}

#[tokio::test]
async fn wave_calls_work_like_wasmtime_invoke() {
    let t = types().await;
    assert_eq!(t.call_wave("add(2, 40)").await.unwrap().value, "42");
    assert_eq!(
        t.call_wave("describe({x: 1, y: 2})").await.unwrap().value,
        "\"(1, 2)\""
    );
    assert_eq!(
        t.call_wave("echo-option(some(3))").await.unwrap().value,
        "some(3)"
    );
    let err = t.call_wave("add(1, \"x\")").await.unwrap_err();
    assert!(matches!(err, Error::InvalidArguments { .. }), "{err:?}");
    let err = t.call_wave("add(1, 2").await.unwrap_err();
    assert!(
        err.to_string().contains("not a WAVE function call"),
        "{err}"
    );
}
