//! `publish` and `audit` on a state directory, as a user runs them.

use airssys_wasm_test_guests::{COUNTER, ECHO};

use crate::{Cli, assert_clean_error, stderr, stdout};

#[test]
fn publish_is_immutable_and_audited() {
    let cli = Cli::new();
    let state = tempfile::tempdir().unwrap();
    let s = state.path().join("state");
    let s = s.to_str().unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["--state-dir", s];
        all.extend_from_slice(args);
        cli.run(&all)
    };
    let publish = |file: &str, version: &str| {
        run(&[
            "publish",
            file,
            "--name",
            "echo",
            "--version",
            version,
            "--allow-unsigned",
        ])
    };
    let out = publish(ECHO, "0.1.0");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("published echo 0.1.0 (sha256:"),
        "{}",
        stdout(&out)
    );
    let out = publish(ECHO, "0.1.0");
    assert!(
        stdout(&out).contains("already published with these bytes"),
        "{}",
        stdout(&out)
    );
    let out = publish(COUNTER, "0.1.0");
    assert_clean_error(&out, 3, "versions are immutable");
    let out = run(&["publish", ECHO, "--name", "echo", "--version", "0.2.0"]);
    assert_clean_error(&out, 3, "--allow-unsigned");

    let out = run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("audit trail intact: 1 record(s), head "));
    let out = run(&["audit", "list", "--json"]);
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["action"], "publish");
    assert_eq!(lines[0]["subject"], "echo@0.1.0");
    assert!(lines[0]["actor"].as_str().unwrap().starts_with("cli:"));

    // Cutting the head's record off behind the tool's back is caught.
    std::fs::write(state.path().join("state/audit.head"), "2 00\n").unwrap();
    let out = run(&["audit", "verify", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["ok"], false);
    assert!(stderr(&out).contains("cut off the end"), "{}", stderr(&out));
}
