//! Deploy, upgrade and roll back on a real state directory, with calls in
//! between.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use airssys_wasm_deploy::{DeploySpec, Deployer, Provenance, StateDir, Strategy};
use airssys_wasm_runtime::{Message, RuntimeConfig};
use airssys_wasm_test_guests::{COUNTER, ECHO};

fn bytes(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

fn config() -> RuntimeConfig {
    RuntimeConfig::default().max_instances(8)
}

#[tokio::test]
async fn deploy_upgrade_rollback_and_history() {
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("s");
    {
        let dir = StateDir::open(&state).unwrap();
        let mut d = Deployer::open(&dir, config()).unwrap();
        d.registry()
            .publish("svc", "0.1.0", &bytes(ECHO), &Provenance::unsigned(), "t")
            .unwrap();
        d.registry()
            .publish(
                "svc",
                "0.2.0",
                &bytes(COUNTER),
                &Provenance::unsigned(),
                "t",
            )
            .unwrap();

        let first = d
            .deploy(DeploySpec::new("svc", "0.1.0"), false, "t")
            .await
            .unwrap();
        assert_eq!(first.state, "active");
        let echo = d.active("svc").await.unwrap();
        let out = echo.component.execute(Message::new("hi")).await.unwrap();
        assert_eq!(out.value.payload, b"hi");

        // The counter requires state: upgrading without the grant fails at
        // validation, and echo keeps serving.
        let err = d
            .upgrade("svc", "0.2.0", Strategy::Immediate, None, true, "t")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("system-call:state"), "{err}");
        let still = d.active("svc").await.unwrap();
        assert_eq!(still.deployment.version, "0.1.0");

        let mut spec = DeploySpec::new("svc", "0.2.0");
        spec.allow = vec!["system-call:state".into()];
        let up = d
            .upgrade("svc", "0.2.0", Strategy::Immediate, Some(spec), true, "t")
            .await
            .unwrap();
        assert_eq!(up.parent, Some(first.id));
        let counter = d.active("svc").await.unwrap();
        assert_eq!(counter.deployment.version, "0.2.0");
        let out = counter.component.execute(Message::new("")).await.unwrap();
        assert_eq!(out.value.payload, b"1");
        // A call that took echo before the swap finishes on echo.
        let out = echo.component.execute(Message::new("still")).await.unwrap();
        assert_eq!(out.value.payload, b"still");

        let compiled = d.runtime().stats();
        let back = d.rollback("svc", None, "t").await.unwrap().deployment;
        assert_eq!(back.id, first.id);
        assert_eq!(back.version, "0.1.0");
        assert_eq!(
            d.runtime().stats().compilations,
            compiled.compilations,
            "a rollback recompiles nothing"
        );
        let states: Vec<(String, String)> = d
            .history("svc")
            .unwrap()
            .into_iter()
            .map(|r| (r.version, r.state))
            .collect();
        assert_eq!(
            states,
            [
                ("0.1.0".to_string(), "active".to_string()),
                ("0.2.0".to_string(), "failed".to_string()),
                ("0.2.0".to_string(), "retired".to_string()),
            ]
        );
        let actions: Vec<String> = d
            .registry()
            .audit()
            .unwrap()
            .into_iter()
            .map(|r| r.action)
            .collect();
        assert_eq!(
            actions,
            [
                "publish",
                "publish",
                "deploy",
                "upgrade-failed",
                "upgrade",
                "rollback"
            ]
        );
        d.registry().verify_audit().unwrap();
    }
    // After a restart the active version is the one rolled back to.
    let dir = StateDir::open(&state).unwrap();
    let mut d = Deployer::open(&dir, config()).unwrap();
    assert_eq!(d.status().unwrap()[0].version, "0.1.0");
    let a = d.active("svc").await.unwrap();
    assert_eq!(
        a.component
            .execute(Message::new("x"))
            .await
            .unwrap()
            .value
            .payload,
        b"x"
    );
}

#[tokio::test]
async fn what_cannot_be_deployed_says_why() {
    let root = tempfile::tempdir().unwrap();
    let dir = StateDir::open(root.path().join("s")).unwrap();
    let mut d = Deployer::open(&dir, config()).unwrap();
    let err = d
        .deploy(DeploySpec::new("nope", "0.1.0"), false, "t")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("is not published; publish it first"),
        "{err}"
    );
    let err = d.rollback("nope", None, "t").await.unwrap_err();
    assert!(err.to_string().contains("no active deployment"), "{err}");
    assert!("canary".parse::<Strategy>().unwrap().needs_live_traffic());
    assert!(
        !"immediate"
            .parse::<Strategy>()
            .unwrap()
            .needs_live_traffic()
    );
    assert!(
        "sideways"
            .parse::<Strategy>()
            .unwrap_err()
            .to_string()
            .contains("use immediate, blue-green, canary or rolling")
    );

    // An upgrade that removes an export is breaking: refused unless
    // allowed, and the active version keeps serving.
    d.registry()
        .publish("lib", "0.1.0", &bytes(ECHO), &Provenance::unsigned(), "t")
        .unwrap();
    d.registry()
        .publish(
            "lib",
            "0.2.0",
            &bytes(airssys_wasm_test_guests::TYPES),
            &Provenance::unsigned(),
            "t",
        )
        .unwrap();
    d.deploy(DeploySpec::new("lib", "0.1.0"), false, "t")
        .await
        .unwrap();
    let changes = d.diff("lib", "0.1.0", "0.2.0").unwrap();
    assert!(airssys_wasm_deploy::diff::breaking(&changes), "{changes:?}");
    let err = d
        .upgrade("lib", "0.2.0", Strategy::Immediate, None, false, "t")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is breaking") && err.contains("--allow-breaking"),
        "{err}"
    );
    assert!(err.contains("export `airssys:component/handler"), "{err}");
    assert_eq!(d.status().unwrap()[0].version, "0.1.0");
    d.upgrade("lib", "0.2.0", Strategy::Immediate, None, true, "t")
        .await
        .unwrap();
}

#[tokio::test]
async fn gc_keeps_the_newest_the_active_and_the_rollback_target() {
    let root = tempfile::tempdir().unwrap();
    let dir = StateDir::open(root.path().join("s")).unwrap();
    let mut d = Deployer::open(&dir, config()).unwrap();
    let versions = [
        ("0.1.0", ECHO),
        ("0.2.0", COUNTER),
        ("0.3.0", airssys_wasm_test_guests::TYPES),
        ("0.4.0", airssys_wasm_test_guests::HELLO_CLI),
    ];
    for (v, file) in versions {
        d.registry()
            .publish("svc", v, &bytes(file), &Provenance::unsigned(), "t")
            .unwrap();
    }
    d.deploy(DeploySpec::new("svc", "0.1.0"), false, "t")
        .await
        .unwrap();
    let mut spec = DeploySpec::new("svc", "0.2.0");
    spec.allow = vec!["system-call:state".into()];
    d.upgrade("svc", "0.2.0", Strategy::Immediate, Some(spec), false, "t")
        .await
        .unwrap();
    let stray = dir.blobs().join("0".repeat(64));
    std::fs::write(&stray, b"left by a crash").unwrap();

    let collected = d.registry().gc(1, &dir.cache(), "t").unwrap();
    // Kept: 0.4.0 (the newest), 0.2.0 (active), 0.1.0 (what it replaced).
    assert_eq!(collected.pruned, ["svc@0.3.0"]);
    assert_eq!(collected.blobs, 2, "0.3.0's bytes and the stray file");
    assert!(!stray.exists());
    let err = d.registry().bytes("svc", "0.3.0").unwrap_err().to_string();
    assert!(err.contains("removed by `gc`"), "{err}");
    assert!(d.registry().bytes("svc", "0.1.0").is_ok());
    // Rolling back still works, from the compiled-code cache.
    let compiled = d.runtime().stats().compilations;
    d.rollback("svc", None, "t").await.unwrap();
    assert_eq!(d.runtime().stats().compilations, compiled);
    d.registry().verify_audit().unwrap();
    // After the rollback 0.2.0 is neither active nor the rollback target
    // of the active deployment: beyond the newest one, it goes too.
    let again = d.registry().gc(1, &dir.cache(), "t").unwrap();
    assert_eq!(again.pruned, ["svc@0.2.0"]);
    assert_eq!(again.compiled, 1, "its compiled code with it");
    assert!(
        d.registry()
            .gc(1, &dir.cache(), "t")
            .unwrap()
            .pruned
            .is_empty()
    );
}

#[tokio::test]
async fn review_fixes_hold() {
    let root = tempfile::tempdir().unwrap();
    let dir = StateDir::open(root.path().join("s")).unwrap();
    let mut d = Deployer::open(&dir, config()).unwrap();
    let counter = bytes(COUNTER);
    for v in ["1.0.0", "2.0.0"] {
        d.registry()
            .publish("tally", v, &counter, &Provenance::unsigned(), "t")
            .unwrap();
    }
    d.registry()
        .publish("other", "0.1.0", &bytes(ECHO), &Provenance::unsigned(), "t")
        .unwrap();
    let mut spec = DeploySpec::new("tally", "1.0.0");
    spec.allow = vec!["system-call:state".into()];
    d.deploy(spec, false, "t").await.unwrap();
    let other = d
        .deploy(DeploySpec::new("other", "0.1.0"), false, "t")
        .await
        .unwrap();

    // The new version starts from the old one's state (copied into a new
    // generation); a caller that kept the old version past the switch
    // writes to the old generation, which the new one does not see.
    let old = d.route("tally").current().unwrap();
    let n =
        |o: airssys_wasm_runtime::CallOutput<Message>| String::from_utf8(o.value.payload).unwrap();
    assert_eq!(
        n(old.component.execute(Message::new("")).await.unwrap()),
        "1"
    );
    d.upgrade("tally", "2.0.0", Strategy::Immediate, None, false, "t")
        .await
        .unwrap();
    let new = d.route("tally").current().unwrap();
    assert_eq!(new.deployment.version, "2.0.0");
    assert_eq!(new.deployment.generation, old.deployment.generation + 1);
    assert_eq!(
        n(old.component.execute(Message::new("")).await.unwrap()),
        "2"
    );
    assert_eq!(
        n(new.component.execute(Message::new("")).await.unwrap()),
        "2"
    );

    // A rollback names a deployment of the component, not another's.
    let err = d
        .rollback("tally", Some(&other.id.to_string()), "t")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("tally has no deployment"), "{err}");
    assert_eq!(d.status().unwrap().len(), 2, "both still active");

    // A version gc collected comes back when published again.
    d.registry()
        .publish("tally", "3.0.0", &counter, &Provenance::unsigned(), "t")
        .unwrap();
    d.registry()
        .publish("tally", "4.0.0", &counter, &Provenance::unsigned(), "t")
        .unwrap();
    let c = d.registry().gc(1, &dir.cache(), "t").unwrap();
    assert_eq!(c.pruned, ["tally@3.0.0"]);
    assert!(d.registry().bytes("tally", "3.0.0").is_err());
    let p = d
        .registry()
        .publish("tally", "3.0.0", &counter, &Provenance::unsigned(), "t")
        .unwrap();
    assert!(p.created);
    assert_eq!(d.registry().bytes("tally", "3.0.0").unwrap(), counter);
    d.registry().verify_audit().unwrap();
}

#[tokio::test]
async fn routes_are_checked_kept_across_upgrades_and_unique() {
    let root = tempfile::tempdir().unwrap();
    let dir = StateDir::open(root.path().join("s")).unwrap();
    let mut d = Deployer::open(&dir, config()).unwrap();
    for (name, v) in [("a", "0.1.0"), ("a", "0.2.0"), ("b", "0.1.0")] {
        d.registry()
            .publish(name, v, &bytes(ECHO), &Provenance::unsigned(), "t")
            .unwrap();
    }
    for bad in ["hello", "/hello/", "/a//b", "/a/../b", "/a b"] {
        let mut spec = DeploySpec::new("a", "0.1.0");
        spec.route = Some(bad.into());
        let err = d.deploy(spec, false, "t").await.unwrap_err().to_string();
        assert!(err.contains(&format!("`{bad}` is not a route")), "{err}");
    }
    let mut spec = DeploySpec::new("a", "0.1.0");
    spec.route = Some("/hello".into());
    d.deploy(spec, false, "t").await.unwrap();
    // An upgrade with new grants keeps the route.
    let mut spec = DeploySpec::new("a", "0.2.0");
    spec.allow = vec!["system-call:clock".into()];
    let up = d
        .upgrade("a", "0.2.0", Strategy::Immediate, Some(spec), false, "t")
        .await
        .unwrap();
    assert_eq!(up.spec.route.as_deref(), Some("/hello"));
    // Another component cannot take it.
    let mut spec = DeploySpec::new("b", "0.1.0");
    spec.route = Some("/hello".into());
    let err = d.deploy(spec, false, "t").await.unwrap_err().to_string();
    assert!(
        err.contains("the route /hello is served by a already"),
        "{err}"
    );
}

/// A host awaits the deployer's operations on a multi-threaded runtime:
/// their futures must be `Send` (checked when this compiles).
#[allow(dead_code, reason = "compiled, not run")]
fn the_deployers_futures_are_send(d: &mut Deployer) {
    fn send<T: Send>(_: T) {}
    send(d.deploy(DeploySpec::new("a", "0.1.0"), false, "t"));
    send(d.upgrade("a", "0.2.0", Strategy::BlueGreen, None, false, "t"));
    send(d.rollback("a", None, "t"));
    send(d.promote("a", "t"));
    send(d.serve("a"));
    send(d.active("a"));
    send(d.decided());
}
