//! The manifest as a user writes it: what it resolves to, and the message
//! each mistake gets.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::path::Path;
use std::time::{Duration, SystemTime};

use airssys_wasm_capability::Capability;
use airssys_wasm_manifest::{Manifest, PolicyFile, Source};
use airssys_wasm_runtime::Limits;

/// A directory with `airssys.toml` holding `text`, an `app.wasm` and a
/// `data` directory beside it.
fn manifest(text: &str) -> (tempfile::TempDir, Result<Manifest, String>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.wasm"), b"\0asm").unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let path = dir.path().join("airssys.toml");
    std::fs::write(&path, text).unwrap();
    let m = Manifest::load(&path).map_err(|e| e.to_string());
    (dir, m)
}

fn error(text: &str) -> String {
    let (_dir, m) = manifest(text);
    m.expect_err("the manifest should be refused")
}

#[test]
fn a_full_entry_resolves_with_paths_from_the_manifest_directory() {
    let (dir, m) = manifest(
        r#"
[[component]]
name = "app"
source = "app.wasm"
version = "1.2.3"
requires = ["system-call:state"]
allow = [
    "system-call:state",
    { capability = "file-read:data", mount = "/in", expires = 2999-01-01T00:00:00Z },
]
deny = ["system-call:clock"]
config = { greeting = "hello" }

[component.limits]
memory = "64MiB"
timeout = "500ms"
fuel = 1000
max-concurrent = 4
"#,
    );
    let m = m.unwrap();
    assert_eq!(m.names(), ["app"]);
    let c = m.component(None).unwrap();
    assert_eq!(c.source, Source::File(dir.path().join("app.wasm")));
    assert_eq!(c.version, Some(semver::Version::new(1, 2, 3)));
    assert_eq!(c.requires, [Capability::SystemCall("state".into())]);
    assert_eq!(c.grants.allow.len(), 2);
    let file = &c.grants.allow[1];
    assert_eq!(
        file.capability,
        Capability::FileRead(dir.path().join("data"))
    );
    assert_eq!(file.mount.as_deref(), Some("/in"));
    assert!(file.expires.unwrap() > SystemTime::now());
    assert_eq!(c.grants.deny, [Capability::SystemCall("clock".into())]);
    assert_eq!(c.config, [("greeting".into(), "hello".into())]);
    let l = c.limits(Limits::default());
    assert_eq!(l.memory, 64 << 20);
    assert_eq!(l.timeout, Duration::from_millis(500));
    assert_eq!(l.fuel, Some(1000));
    assert_eq!(l.max_concurrent, 4);
}

#[test]
fn a_cargo_source_and_several_components() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("guest")).unwrap();
    std::fs::write(dir.path().join("guest/Cargo.toml"), "").unwrap();
    std::fs::write(dir.path().join("b.wasm"), "").unwrap();
    let path = dir.path().join("airssys.toml");
    std::fs::write(
        &path,
        r#"
[[component]]
name = "a"
source = { cargo = "guest", package = "a-guest" }

[[component]]
name = "b"
source = "b.wasm"
"#,
    )
    .unwrap();
    let m = Manifest::load(&path).unwrap();
    assert_eq!(
        m.component(Some("a")).unwrap().source,
        Source::Cargo {
            dir: dir.path().join("guest"),
            package: Some("a-guest".into())
        }
    );
    let err = m.component(None).unwrap_err().to_string();
    assert!(err.contains("several components (a, b)"), "{err}");
    let err = m.component(Some("c")).unwrap_err().to_string();
    assert!(err.contains("no component named `c`"), "{err}");
}

/// Each mistake: its message names the file, the line and the key.
#[test]
fn mistakes_name_the_file_line_and_key() {
    let head = "[[component]]\nname = \"app\"\nsource = \"app.wasm\"\n";
    let cases: &[(&str, &[&str])] = &[
        // An unknown key.
        (
            "[[component]]\nname = \"app\"\nsource = \"app.wasm\"\nalow = []\n",
            &["line 4", "unknown field `alow`", "allow"],
        ),
        // A malformed capability, with a suggestion.
        (
            &format!("{head}allow = [\"file-reed:/data\"]\n"),
            &["line 4", "did you mean `file-read`?"],
        ),
        // Conflicting grants.
        (
            &format!("{head}allow = [\"system-call:stdin\"]\ndeny = [\"system-call:stdin\"]\n"),
            &[":5:", "`deny`", "both allowed (line 4) and denied"],
        ),
        // A missing source file.
        (
            "[[component]]\nname = \"app\"\nsource = \"missing.wasm\"\n",
            &[":3:", "`source`", "missing.wasm does not exist"],
        ),
        // No source at all.
        (
            "[[component]]\nname = \"app\"\n",
            &["missing field `source`"],
        ),
        // Impossible limits.
        (
            &format!("{head}[component.limits]\nmemory = \"1KiB\"\n"),
            &[":5:", "`limits.memory`", "64KiB"],
        ),
        (
            &format!("{head}[component.limits]\ntimeout = \"0s\"\n"),
            &[":5:", "`limits.timeout`", "longer than zero"],
        ),
        (
            &format!("{head}[component.limits]\ntimeout = \"soon\"\n"),
            &["line 5", "500ms"],
        ),
        (
            &format!("{head}[component.limits]\nmemory = \"12 parsecs\"\n"),
            &["line 5", "unknown size unit"],
        ),
        (
            &format!("{head}[component.limits]\nmax-concurrent = 0\n"),
            &[":5:", "`limits.max-concurrent`"],
        ),
        // Names, versions, mounts, expiry.
        (
            "[[component]]\nname = \"App\"\nsource = \"app.wasm\"\n",
            &[":2:", "`name`", "not a component name"],
        ),
        (
            &format!("{head}[[component]]\nname = \"app\"\nsource = \"app.wasm\"\n"),
            &[":5:", "a second component named `app`"],
        ),
        (
            &format!("{head}version = \"one\"\n"),
            &[":4:", "`version`", "not a semver version"],
        ),
        (
            &format!("{head}allow = [{{ capability = \"system-call:stdin\", mount = \"/x\" }}]\n"),
            &[":4:", "only for file-read and file-write"],
        ),
        (
            &format!("{head}allow = [{{ capability = \"file-read:data\", mount = \"x\" }}]\n"),
            &[":4:", "not an absolute path"],
        ),
        (
            &format!(
                "{head}allow = [{{ capability = \"file-read:data\", expires = 2026-01-01T00:00:00 }}]\n"
            ),
            &["line 4", "offset"],
        ),
        (
            &format!("{head}config = {{ n = 3 }}\n"),
            &["line 4", "invalid type: integer `3`, expected a string"],
        ),
    ];
    for (text, wanted) in cases {
        let err = error(text);
        assert!(err.contains("airssys.toml"), "no file named in: {err}");
        for w in *wanted {
            assert!(
                err.contains(w),
                "`{w}` not in the error for\n{text}\n---\n{err}"
            );
        }
    }
}

#[test]
fn actors_subscriptions_and_supervisors() {
    let (_dir, m) = manifest(
        r#"
[[component]]
name = "ledger"
source = "app.wasm"
hosting = "actor"
subscribe = ["orders.*"]
allow = ["messaging:subscribe:orders.*"]

[component.actor]
instances = 3
mailbox = 16
supervision = "rest-for-one"
max-restarts = 5
restart-window = "30s"
backoff = "50ms"
send-timeout = "2s"

[[component]]
name = "audit"
source = "app.wasm"
hosting = "actor"

[[supervisor]]
name = "books"
strategy = "one-for-all"
children = ["ledger", "audit"]
max-restarts = 2

[[supervisor]]
name = "top"
strategy = "rest-for-one"
children = ["books"]
restart-window = "1m"
"#,
    );
    let m = m.unwrap();
    let ledger = &m.components()[0];
    assert_eq!(ledger.hosting, airssys_wasm_manifest::Hosting::Actor);
    assert_eq!(ledger.subscribe, ["orders.*"]);
    let actor = ledger.actor.as_ref().unwrap();
    assert_eq!((actor.instances, actor.mailbox), (Some(3), Some(16)));
    assert_eq!(
        actor.supervision,
        Some(airssys_wasm_manifest::Supervision::RestForOne)
    );
    assert_eq!(actor.max_restarts, Some(5));
    assert_eq!(actor.restart_window(), Some(Duration::from_secs(30)));
    assert_eq!(actor.backoff(), Some(Duration::from_millis(50)));
    assert_eq!(actor.send_timeout(), Some(Duration::from_secs(2)));
    let groups = m.supervisors();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0].name, "books");
    assert_eq!(groups[0].children, ["ledger", "audit"]);
    assert_eq!(
        (groups[0].max_restarts, groups[0].restart_window),
        (2, Duration::from_secs(5)),
        "the window's default"
    );
    assert_eq!(
        (groups[1].max_restarts, groups[1].restart_window),
        (3, Duration::from_secs(60)),
        "the restarts' default"
    );

    let head = "[[component]]\nname = \"a\"\nsource = \"app.wasm\"\n";
    for (tail, wanted) in [
        (
            "[[supervisor]]\nname = \"s\"\nstrategy = \"one-for-all\"\nchildren = [\"a\"]\n",
            ":7:13: `children`: `a` is not hosted as an actor: add hosting = \"actor\" to it",
        ),
        (
            "[[supervisor]]\nname = \"s\"\nstrategy = \"one-for-all\"\nchildren = [\"b\"]\n",
            "`children`: `b` is neither a component nor a supervisor of this manifest",
        ),
        (
            "[[supervisor]]\nname = \"s\"\nstrategy = \"sideways\"\nchildren = [\"a\"]\n",
            "unknown variant `sideways`",
        ),
        ("hosting = \"forever\"\n", "unknown variant `forever`"),
    ] {
        let err = error(&format!("{head}{tail}"));
        assert!(err.contains(wanted), "{tail}: {err}");
    }
}

#[test]
fn an_unreadable_manifest_names_the_file() {
    let err = Manifest::load(Path::new("/nonexistent/airssys.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot read manifest /nonexistent/airssys.toml"),
        "{err}"
    );
}

#[test]
fn the_policy_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    let p = PolicyFile::parse(
        "deny = [\"system-call:env:*\", \"file-read:keys\"]\nprotect = [\"secrets\"]\n",
        &path,
    )
    .unwrap();
    assert_eq!(
        p.deny,
        [
            Capability::SystemCall("env:*".into()),
            Capability::FileRead(dir.path().join("keys"))
        ]
    );
    assert_eq!(p.protected, [dir.path().join("secrets")]);
    for (text, wanted) in [
        ("deny = [\"nope\"]\n", "line 1"),
        ("deny = []\nallow = []\n", "unknown field `allow`"),
    ] {
        let err = PolicyFile::parse(text, &path).unwrap_err().to_string();
        assert!(err.contains("policy.toml") && err.contains(wanted), "{err}");
    }
}

/// The committed schemas are what the code generates. To refresh them:
/// `AIRSSYS_BLESS=1 cargo test -p airssys-wasm-manifest --test manifest`.
#[test]
fn committed_schemas_match_the_code() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    for (file, generated) in [
        ("manifest.schema.json", airssys_wasm_manifest::schema()),
        ("policy.schema.json", airssys_wasm_manifest::policy_schema()),
    ] {
        let path = docs.join(file);
        if std::env::var_os("AIRSSYS_BLESS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/{file} differs from the code's schema; run \
             AIRSSYS_BLESS=1 cargo test -p airssys-wasm-manifest --test manifest"
        );
    }
}
