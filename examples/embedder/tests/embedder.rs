//! The embedder example end to end: its custom capability works when
//! granted, for the accounts granted, and is refused or denied otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::process::{Command, Output};

use airssys_wasm_test_guests::LEDGER_CLIENT;

fn embedder(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_embedder"))
        .arg(LEDGER_CLIENT)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn granted_accounts_are_read() {
    let out = embedder(&[
        "--grant",
        r#"{"accounts": ["main", "savings"]}"#,
        "main",
        "savings",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "main: 100\nsavings: 250\n");
    assert!(
        !text(&out.stderr).contains("audit:"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn an_account_the_grant_does_not_name_is_denied_and_audited() {
    let out = embedder(&["--grant", r#"{"accounts": ["main"]}"#, "main", "payroll"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stdout),
        "main: 100\npayroll: error: denied: account `payroll` is not granted\n"
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("audit: denied custom:acme-ledger of ledger-client.wasm: payroll"),
        "{err}"
    );
}

#[test]
fn without_the_grant_the_component_is_refused_before_it_runs() {
    let out = embedder(&["main"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stdout), "", "it never ran");
    let err = text(&out.stderr);
    assert!(err.contains("custom:acme-ledger"), "{err}");
    assert!(
        err.contains("it imports acme:ledger/accounts@0.1.0"),
        "{err}"
    );
    assert!(err.contains("audit: refused"), "{err}");
}

#[test]
fn parameters_the_provider_refuses_refuse_the_component() {
    let out = embedder(&["--grant", r#"{"accounts": 3}"#, "main"]);
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(err.contains("the provider refused its parameters"), "{err}");
}
