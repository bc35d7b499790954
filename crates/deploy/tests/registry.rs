//! The registry on a real state directory: immutable versions, the lock,
//! permissions, and an audit trail that catches tampering.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::os::unix::fs::PermissionsExt;

use airssys_wasm_deploy::{Error, Provenance, Registry, StateDir};
use airssys_wasm_test_guests::{COUNTER, ECHO};

fn bytes(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[test]
fn versions_are_immutable_and_publishing_again_is_a_no_op() {
    let root = tempfile::tempdir().unwrap();
    let dir = StateDir::open(root.path().join("state")).unwrap();
    let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    let mut reg = Registry::open(&dir).unwrap();
    let echo = bytes(ECHO);
    let p = reg
        .publish("echo", "0.1.0", &echo, &Provenance::unsigned(), "test")
        .unwrap();
    assert!(p.created);
    assert!(p.digest.starts_with("sha256:"));
    assert_eq!(reg.bytes("echo", "0.1.0").unwrap(), echo);
    let again = reg
        .publish("echo", "0.1.0", &echo, &Provenance::unsigned(), "test")
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.digest, p.digest);
    let err = reg
        .publish(
            "echo",
            "0.1.0",
            &bytes(COUNTER),
            &Provenance::unsigned(),
            "test",
        )
        .unwrap_err();
    assert!(matches!(err, Error::Immutable { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("publish these bytes under a new version")
    );
    reg.publish(
        "echo",
        "0.2.0",
        &bytes(COUNTER),
        &Provenance::unsigned(),
        "test",
    )
    .unwrap();
    assert_eq!(reg.versions(Some("echo")).unwrap().len(), 2);
    // Two publishes recorded (the no-op and the refusal are not changes).
    let verified = reg.verify_audit().unwrap();
    assert_eq!(verified.records, 2);
}

#[test]
fn bad_names_versions_and_bytes_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = StateDir::open(root.path().join("s")).unwrap();
    let mut reg = Registry::open(&dir).unwrap();
    let echo = bytes(ECHO);
    for (name, version, bytes, wanted) in [
        ("Echo", "0.1.0", &echo[..], "not a component name"),
        ("echo", "one", &echo[..], "not a semver version"),
        (
            "echo",
            "0.1.0",
            &b"\0asm\x01\0\0\0"[..],
            "core WebAssembly module",
        ),
        ("echo", "0.1.0", &b"hello"[..], "not a WebAssembly"),
    ] {
        let err = reg
            .publish(name, version, bytes, &Provenance::unsigned(), "test")
            .unwrap_err()
            .to_string();
        assert!(err.contains(wanted), "{name} {version}: {err}");
    }
    assert_eq!(reg.verify_audit().unwrap().records, 0);
    assert!(reg.versions(None).unwrap().is_empty());
}

#[test]
fn the_state_directory_is_locked_and_must_not_be_writable_by_others() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("s");
    let held = StateDir::open(&path).unwrap();
    let err = StateDir::open(&path).unwrap_err().to_string();
    assert!(
        err.contains("in use by another airssys-wasm process"),
        "{err}"
    );
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    assert!(err.contains("--host"), "{err}");
    drop(held);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = StateDir::open(&path).unwrap_err().to_string();
    assert!(err.contains("chmod 700"), "{err}");
}

/// Tamper with the database behind the engine's back (dropping the
/// triggers, as anyone with the file can) and check that verify names the
/// first broken record.
#[test]
fn audit_verify_catches_every_kind_of_tampering() {
    type Tamper = fn(&rusqlite::Connection, &std::path::Path);
    let cases: &[(&str, Tamper, &str)] = &[
        (
            "edit a row",
            |c, _| {
                c.execute("UPDATE audit SET subject = 'evil@6.6.6' WHERE seq = 2", [])
                    .unwrap();
            },
            "record 2: its contents do not match its hash",
        ),
        (
            "delete the last row",
            |c, _| {
                c.execute("DELETE FROM audit WHERE seq = 3", []).unwrap();
            },
            "records were cut off the end",
        ),
        (
            "reorder rows",
            |c, _| {
                c.execute_batch(
                    "UPDATE audit SET seq = 100 WHERE seq = 2;
                 UPDATE audit SET seq = 2 WHERE seq = 3;
                 UPDATE audit SET seq = 3 WHERE seq = 100;",
                )
                .unwrap();
            },
            "record 2: it does not follow the record before it",
        ),
        (
            "edit, then recompute every hash",
            |c, _| {
                c.execute("UPDATE audit SET subject = 'evil@6.6.6' WHERE seq = 2", [])
                    .unwrap();
                let mut prev = vec![0u8; 32];
                let rows: Vec<(i64, i64, String, String, String, String)> = c
                .prepare("SELECT seq, time_ms, actor, action, subject, details FROM audit ORDER BY seq")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect();
                for (seq, t, a, b, s, d) in rows {
                    let enc = airssys_wasm_deploy::audit::encode(seq, t, [&a, &b, &s, &d]);
                    let h = airssys_wasm_deploy::audit::chain_hash(&prev, &enc);
                    c.execute(
                        "UPDATE audit SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
                        rusqlite::params![prev, h.to_vec(), seq],
                    )
                    .unwrap();
                    prev = h.to_vec();
                }
            },
            "does not end in the head",
        ),
        (
            "remove the head files",
            |_, state| {
                std::fs::remove_file(state.join("audit.head")).unwrap();
                std::fs::remove_file(state.join("audit.head.next")).unwrap();
            },
            "audit.head is missing",
        ),
        (
            "cut the last row and remove the head",
            |c, state| {
                c.execute("DELETE FROM audit WHERE seq = 3", []).unwrap();
                std::fs::remove_file(state.join("audit.head")).unwrap();
            },
            "audit.head is missing",
        ),
    ];
    for (what, tamper, wanted) in cases {
        let root = tempfile::tempdir().unwrap();
        let state = root.path().join("s");
        {
            let dir = StateDir::open(&state).unwrap();
            let mut reg = Registry::open(&dir).unwrap();
            reg.publish(
                "echo",
                "0.1.0",
                &bytes(ECHO),
                &Provenance::unsigned(),
                "test",
            )
            .unwrap();
            reg.publish(
                "echo",
                "0.2.0",
                &bytes(COUNTER),
                &Provenance::unsigned(),
                "test",
            )
            .unwrap();
            reg.publish(
                "counter",
                "0.1.0",
                &bytes(COUNTER),
                &Provenance::unsigned(),
                "test",
            )
            .unwrap();
            assert_eq!(reg.verify_audit().unwrap().records, 3);
            // The table refuses changes through SQL.
            let c = rusqlite::Connection::open(state.join("registry.db")).unwrap();
            let err = c.execute("DELETE FROM audit", []).unwrap_err().to_string();
            assert!(err.contains("append-only"), "{err}");
        }
        {
            let c = rusqlite::Connection::open(state.join("registry.db")).unwrap();
            c.execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
                .unwrap();
            tamper(&c, &state);
        }
        let dir = StateDir::open(&state).unwrap();
        let reg = Registry::open(&dir).unwrap();
        let err = reg.verify_audit().unwrap_err().to_string();
        assert!(err.contains(wanted), "{what}: {err}");
    }
}
