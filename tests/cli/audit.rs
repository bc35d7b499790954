//! `--audit`: the events the host records for refusals before running,
//! denials of our own interfaces and limits that stop a call.

use airssys_wasm_test_guests::COUNTER;

use crate::{Cli, misbehave, stderr};

/// The JSON audit events a command printed on stderr.
fn events(err: &str) -> Vec<serde_json::Value> {
    err.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn refusals_denials_and_limits_are_audited() {
    let cli = Cli::new();

    // Refused before running: a requirement without its grant.
    let out = cli.run(&["call", COUNTER, "--audit", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let e = events(&stderr(&out));
    assert_eq!(e.len(), 1, "{}", stderr(&out));
    assert_eq!(e[0]["component"], "counter.wasm");
    assert_eq!(e[0]["version"], "0.1.0");
    assert_eq!(e[0]["capability"], "system-call:state");
    assert_eq!(e[0]["decision"], "refused");
    assert!(e[0]["time"].as_str().unwrap().ends_with('Z'));

    // A messaging target its grants do not cover.
    let out = cli.run_with_stdin(&misbehave(&["--audit=json"]), b"message");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let e = events(&stderr(&out));
    assert_eq!(e.len(), 1, "{}", stderr(&out));
    assert_eq!(e[0]["capability"], "messaging:request:other");
    assert_eq!(e[0]["target"], "other");
    assert_eq!(e[0]["decision"], "denied");

    // A limit that stops the call.
    let out = cli.run_with_stdin(&misbehave(&["--audit=json", "--timeout", "200ms"]), b"loop");
    assert_eq!(out.status.code(), Some(1));
    let e = events(&stderr(&out));
    assert_eq!(e.len(), 1, "{}", stderr(&out));
    assert_eq!(e[0]["capability"], "limit:timeout");
    assert_eq!(e[0]["decision"], "stopped");

    // Text form.
    let out = cli.run(&["call", COUNTER, "--audit"]);
    assert!(
        stderr(&out).contains("audit: refused system-call:state of counter.wasm 0.1.0"),
        "{}",
        stderr(&out)
    );

    // Without --audit, nothing.
    let out = cli.run_with_stdin(&misbehave(&[]), b"message");
    assert!(events(&stderr(&out)).is_empty());
}
