//! Bytes that are not a usable component, and engine edge cases in WAT.

use airssys_wasm_runtime::{Error, PrepareOptions, WorldKind};
use airssys_wasm_test_guests::ECHO;
use serde_json::json;

use crate::{read, runtime};

async fn load_err(bytes: &[u8]) -> Error {
    runtime()
        .load("bad.wasm", bytes, PrepareOptions::default())
        .await
        .err()
        .expect("refused")
}

#[tokio::test]
async fn each_malformed_input_gets_its_own_clear_error() {
    let empty = load_err(b"").await;
    assert!(matches!(empty, Error::NotAComponent { .. }), "{empty:?}");
    assert!(
        empty
            .to_string()
            .contains("bad.wasm is not a WebAssembly component: the file is empty"),
        "{empty}"
    );

    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let random = load_err(&random).await;
    assert!(
        random
            .to_string()
            .contains("does not start with the `\\0asm` header"),
        "{random}"
    );

    let module = wat::parse_str("(module (func (export \"f\")))").unwrap();
    let module = load_err(&module).await;
    assert!(
        module.to_string().contains("core WebAssembly module"),
        "{module}"
    );
    assert!(
        module.to_string().contains("wasm32-wasip2"),
        "the message says what to do: {module}"
    );

    let echo = read(ECHO);
    let truncated = load_err(&echo[..echo.len() / 2]).await;
    assert!(
        matches!(truncated, Error::InvalidComponent { .. }),
        "{truncated:?}"
    );
    assert!(
        truncated.to_string().contains("is the file complete?"),
        "{truncated}"
    );

    // The runtime keeps working after all of that.
    let ok = runtime()
        .load("echo.wasm", &echo, PrepareOptions::default())
        .await
        .unwrap();
    assert_eq!(
        ok.execute(crate::text("x")).await.unwrap().value.payload,
        b"x"
    );
}

#[tokio::test]
async fn an_unsupported_import_names_itself() {
    let bytes = wat::parse_str(
        r#"(component
            (import "acme:ledger/accounts@1.0.0" (instance (export "balance" (func (result u64)))))
        )"#,
    )
    .unwrap();
    let err = load_err(&bytes).await;
    assert!(matches!(err, Error::UnsupportedImport { .. }), "{err:?}");
    assert!(
        err.to_string().contains("acme:ledger/accounts@1.0.0"),
        "{err}"
    );
}

#[tokio::test]
async fn the_engine_reports_a_stack_overflow() {
    let bytes = wat::parse_str(
        r#"(component
            (core module $m
                (func $f (export "f") (call $f)))
            (core instance $i (instantiate $m))
            (func (export "overflow") (canon lift (core func $i "f")))
        )"#,
    )
    .unwrap();
    let pre = runtime()
        .load("overflow.wat", &bytes, PrepareOptions::default())
        .await
        .unwrap();
    assert_eq!(pre.info().kind, WorldKind::Library);
    let err = pre
        .call_json("overflow", &serde_json::json!([]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::StackOverflow { .. }), "{err:?}");
    assert!(err.to_string().contains("overflowed its stack"), "{err}");
    // The next call on the same component behaves the same, not worse.
    let again = pre
        .call_json("overflow", &serde_json::json!([]))
        .await
        .unwrap_err();
    assert!(matches!(again, Error::StackOverflow { .. }), "{again:?}");
}

#[tokio::test]
async fn a_missing_export_lists_what_exists() {
    let bytes = wat::parse_str(
        r#"(component
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m))
            (func (export "present") (canon lift (core func $i "f")))
        )"#,
    )
    .unwrap();
    let pre = runtime()
        .load("lib.wat", &bytes, PrepareOptions::default())
        .await
        .unwrap();
    let err = pre
        .call_json("absent", &serde_json::json!([]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::MissingExport { .. }), "{err:?}");
    assert!(err.to_string().contains("it exports: present"), "{err}");
    let err = pre.execute(crate::text("x")).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("call one of its functions by name"),
        "{err}"
    );
}

#[tokio::test]
async fn tables_cannot_grow_past_the_limit() {
    // `table.grow` answers -1 when refused: the guest sees the refusal, the
    // host holds no more than the limit.
    let bytes = wat::parse_str(
        r#"(component
            (core module $m
                (table $t 1 funcref)
                (func (export "grow") (param i32) (result i32)
                    (table.grow $t (ref.null func) (local.get 0))))
            (core instance $i (instantiate $m))
            (func (export "grow") (param "n" u32) (result s32) (canon lift (core func $i "grow")))
        )"#,
    )
    .unwrap();
    let limits = crate::test_limits().table_elements(1000);
    let pre = runtime()
        .load(
            "tables.wat",
            &bytes,
            PrepareOptions::default().limits(limits),
        )
        .await
        .unwrap();
    assert_eq!(
        pre.call_json("grow", &json!([999])).await.unwrap().value,
        json!(1),
        "old size"
    );
    assert_eq!(
        pre.call_json("grow", &json!([1000])).await.unwrap().value,
        json!(-1),
        "refused"
    );
}

#[tokio::test]
async fn metadata_that_disagrees_with_the_binary_is_refused() {
    // Rename the component in its custom section only: `metadata()` still
    // answers "echo", the section says "ekho".
    let mut bytes = read(ECHO);
    let find = |bytes: &[u8], needle: &[u8], from: usize| {
        bytes[from..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let section = find(&bytes, b"airssys:metadata", 0).expect("echo carries airssys:metadata");
    let needle = br#""name":"echo""#;
    let at = find(&bytes, needle, section).expect("the section names echo");
    bytes[at..at + needle.len()].copy_from_slice(br#""name":"ekho""#);
    let err = load_err(&bytes).await;
    assert!(
        matches!(err, Error::MetadataMismatch { field: "name", .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("rebuild the component"), "{err}");
}
