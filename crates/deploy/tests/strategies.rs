//! Strategies on live traffic, in one process: calls flow through a route
//! while blue-green, canary and stateful upgrades happen.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::time::Duration;

use airssys_wasm_deploy::{Canary, DeploySpec, Deployer, Provenance, Route, StateDir, Strategy};
use airssys_wasm_runtime::{Message, RuntimeConfig};
use airssys_wasm_test_guests::{COUNTER, FLAKY, MISBEHAVE};

fn config() -> RuntimeConfig {
    RuntimeConfig::default().max_instances(16)
}

/// A deployer over a fresh state directory with `versions` of `name`
/// published from `file`.
fn setup(name: &str, file: &str, versions: &[&str]) -> (tempfile::TempDir, StateDir, Deployer) {
    let root = tempfile::tempdir().unwrap();
    let dir = StateDir::open(root.path().join("s")).unwrap();
    let mut d = Deployer::open(&dir, config()).unwrap();
    let bytes = std::fs::read(file).unwrap();
    for v in versions {
        d.registry()
            .publish(name, v, &bytes, &Provenance::unsigned(), "t")
            .unwrap();
    }
    (root, dir, d)
}

/// Flaky at `version` with `config`.
fn flaky(version: &str, config: &[(&str, &str)]) -> DeploySpec {
    let mut spec = DeploySpec::new("svc", version);
    spec.allow = vec!["system-call:config".into()];
    spec.config = config
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    spec
}

/// `n` calls of `flaky` through `route`: (answers by version, failures by
/// version).
async fn calls(route: &Route, n: usize) -> (Vec<String>, Vec<String>) {
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let pick = route.pick().await.unwrap();
        let version = pick.active.deployment.version.clone();
        let r = pick.active.component.execute(Message::new("flaky")).await;
        pick.finish(r.is_ok());
        match r {
            Ok(out) => {
                assert_eq!(out.value.payload, b"ok");
                ok.push(version);
            }
            Err(_) => failed.push(version),
        }
    }
    (ok, failed)
}

fn count(list: &[String], version: &str) -> usize {
    list.iter().filter(|v| v.as_str() == version).count()
}

fn plan(steps: Vec<u8>, step_calls: u64, min_calls: u64) -> Canary {
    let mut plan = Canary::default();
    plan.steps = steps;
    plan.step_calls = step_calls;
    plan.min_calls = min_calls;
    plan.step_time = Duration::from_secs(3600);
    plan
}

#[tokio::test]
async fn a_healthy_canary_takes_its_share_then_is_promoted() {
    let (_root, _dir, mut d) = setup("svc", FLAKY, &["0.1.0", "0.2.0"]);
    d.deploy(flaky("0.1.0", &[]), false, "t").await.unwrap();
    let route = d.serve("svc").await.unwrap();
    let canary = d
        .upgrade(
            "svc",
            "0.2.0",
            Strategy::Canary(plan(vec![10, 50], 10, 5)),
            None,
            false,
            "t",
        )
        .await
        .unwrap();
    assert!(canary.is_canary(), "{canary:?}");
    assert_eq!(d.status().unwrap()[0].version, "0.1.0", "still active");
    // Nothing else changes the component while its canary runs.
    let err = d.rollback("svc", None, "t").await.unwrap_err().to_string();
    assert!(err.contains("has a canary in progress"), "{err}");
    let err = d
        .upgrade("svc", "0.2.0", Strategy::Immediate, None, false, "t")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("has a canary in progress"), "{err}");

    // Step 1: exactly 10% of calls; 10 canary calls end it.
    let (ok, failed) = calls(&route, 100).await;
    assert!(failed.is_empty());
    assert_eq!(count(&ok, "0.2.0"), 10, "{ok:?}");
    assert!(route.canary().is_some(), "step 2 still to go");
    // Step 2: half of the calls; 10 more canary calls promote it.
    let mut versions = Vec::new();
    for _ in 0..20 {
        let served = route.execute(Message::new("")).await.unwrap();
        versions.push(served.deployment.version.clone());
    }
    assert_eq!(count(&versions, "0.2.0"), 10, "{versions:?}");
    assert!(route.canary().is_none());
    assert_eq!(route.current().unwrap().deployment.version, "0.2.0");
    assert_eq!(
        route.standby().unwrap().deployment.version,
        "0.1.0",
        "the version it replaced stays prepared"
    );
    // The router decided; the deployer persists it.
    let settled = d.settle().unwrap();
    assert_eq!(settled.len(), 1);
    assert_eq!(
        (settled[0].id, settled[0].state.as_str()),
        (canary.id, "active")
    );
    assert_eq!(d.status().unwrap()[0].version, "0.2.0");
    assert_eq!(route.current().unwrap().deployment.state, "active");
    let last = d.registry().audit().unwrap().pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.actor.as_str()),
        ("promote", "router")
    );
    let details: serde_json::Value = serde_json::from_str(&last.details).unwrap();
    assert_eq!(details["measured"]["calls"], 20);
    assert_eq!(details["measured"]["errors"], 0);
    d.registry().verify_audit().unwrap();
    assert!(d.settle().unwrap().is_empty(), "settled once");
}

#[tokio::test]
async fn a_failing_canary_is_aborted_and_the_active_version_serves_on() {
    let (_root, _dir, mut d) = setup("svc", FLAKY, &["0.1.0", "0.2.0"]);
    d.deploy(flaky("0.1.0", &[]), false, "t").await.unwrap();
    let route = d.serve("svc").await.unwrap();
    let mut p = plan(vec![50], 100, 10);
    p.max_error_rate = 0.2;
    let canary = d
        .upgrade(
            "svc",
            "0.2.0",
            Strategy::Canary(p),
            Some(flaky("0.2.0", &[("fail-calls", "true")])),
            false,
            "t",
        )
        .await
        .unwrap();
    // Half the calls fail until the canary has failed 10 calls; then
    // every call goes to the active version and succeeds.
    let (ok, failed) = calls(&route, 60).await;
    assert_eq!(failed.len(), 10, "{failed:?}");
    assert!(failed.iter().all(|v| v == "0.2.0"));
    assert_eq!(count(&ok, "0.1.0"), 50);
    assert!(route.canary().is_none(), "aborted");
    // The deployer hears of it at once.
    tokio::time::timeout(Duration::from_secs(5), d.decided())
        .await
        .expect("a decision wakes the deployer");
    let (ok, failed) = calls(&route, 20).await;
    assert_eq!((count(&ok, "0.1.0"), failed.len()), (20, 0));

    // The route aborted it; an operator's promote now finds that persisted
    // first, and nothing to promote.
    let err = d.promote("svc", "ops").await.unwrap_err().to_string();
    assert!(err.contains("svc has no canary in progress"), "{err}");
    assert!(d.settle().unwrap().is_empty(), "already persisted");
    let record = d
        .history("svc")
        .unwrap()
        .into_iter()
        .find(|r| r.id == canary.id)
        .unwrap();
    assert_eq!(record.state, "failed");
    let reason = record.reason.clone().unwrap();
    assert!(
        reason.contains("error rate 100.0% (10 of 10 calls) passed the threshold of 20.0% at step 1 (50% of calls)"),
        "{reason}"
    );
    let last = d.registry().audit().unwrap().pop().unwrap();
    assert_eq!(last.action, "abort");
    assert_eq!(d.status().unwrap()[0].version, "0.1.0");
    d.registry().verify_audit().unwrap();
}

#[tokio::test]
async fn a_slow_canary_is_aborted_on_its_p99() {
    let (_root, _dir, mut d) = setup("svc", FLAKY, &["0.1.0", "0.2.0"]);
    d.deploy(flaky("0.1.0", &[]), false, "t").await.unwrap();
    let route = d.serve("svc").await.unwrap();
    let mut p = plan(vec![50], 100, 5);
    p.max_p99 = Some(Duration::from_millis(20));
    d.upgrade(
        "svc",
        "0.2.0",
        Strategy::Canary(p),
        Some(flaky("0.2.0", &[("delay-ms", "60")])),
        false,
        "t",
    )
    .await
    .unwrap();
    let (ok, failed) = calls(&route, 30).await;
    assert!(failed.is_empty());
    assert_eq!(count(&ok, "0.2.0"), 5, "five slow calls were enough");
    assert!(route.canary().is_none());
    let settled = d.settle().unwrap();
    let reason = settled[0].reason.clone().unwrap();
    assert!(
        reason.contains("p99 latency") && reason.contains("passed the threshold of 20ms"),
        "{reason}"
    );
}

#[tokio::test]
async fn an_operator_ends_a_canary_and_a_restart_resumes_one() {
    let (_root, dir, mut d) = setup("svc", FLAKY, &["0.1.0", "0.2.0", "0.3.0"]);
    let err = d.promote("svc", "t").await.unwrap_err().to_string();
    assert!(err.contains("svc has no canary in progress"), "{err}");
    d.deploy(flaky("0.1.0", &[]), false, "t").await.unwrap();
    let route = d.serve("svc").await.unwrap();
    let first = d
        .upgrade(
            "svc",
            "0.2.0",
            Strategy::Canary(plan(vec![50], 100, 10)),
            None,
            false,
            "t",
        )
        .await
        .unwrap();
    assert!(route.canary().is_some());
    let aborted = d.abort("svc", "ops").unwrap();
    assert_eq!(aborted.reason.as_deref(), Some("aborted by ops"));
    assert!(route.canary().is_none());
    let (ok, _) = calls(&route, 10).await;
    assert_eq!(count(&ok, "0.1.0"), 10);
    assert_ne!(first.id, 0);

    // A canary left in progress by a stopped process resumes on the next
    // one's route, and an operator may promote it there.
    d.upgrade(
        "svc",
        "0.3.0",
        Strategy::Canary(plan(vec![50], 100, 10)),
        None,
        false,
        "t",
    )
    .await
    .unwrap();
    drop(d);
    drop(route);
    let mut d = Deployer::open(&dir, config()).unwrap();
    let route = d.serve("svc").await.unwrap();
    assert_eq!(route.canary().unwrap().deployment.version, "0.3.0");
    let (ok, _) = calls(&route, 10).await;
    assert_eq!(count(&ok, "0.3.0"), 5, "its plan's first step: 50%");
    let promoted = d.promote("svc", "ops").await.unwrap();
    assert_eq!(
        (promoted.version.as_str(), promoted.state.as_str()),
        ("0.3.0", "active")
    );
    assert_eq!(route.current().unwrap().deployment.version, "0.3.0");
    let (ok, _) = calls(&route, 10).await;
    assert_eq!(count(&ok, "0.3.0"), 10);
    let actions: Vec<String> = d
        .registry()
        .audit()
        .unwrap()
        .into_iter()
        .map(|r| r.action)
        .filter(|a| a != "publish")
        .collect();
    assert_eq!(actions, ["deploy", "canary", "abort", "canary", "promote"]);
    d.registry().verify_audit().unwrap();
}

#[tokio::test]
async fn blue_green_keeps_the_old_version_prepared_for_an_instant_switch_back() {
    let (_root, _dir, mut d) = setup("svc", FLAKY, &["0.1.0", "0.2.0"]);
    d.deploy(flaky("0.1.0", &[]), false, "t").await.unwrap();
    let route = d.serve("svc").await.unwrap();
    let old = route.current().unwrap();
    let up = d
        .upgrade("svc", "0.2.0", Strategy::BlueGreen, None, false, "t")
        .await
        .unwrap();
    assert_eq!(up.strategy, "blue-green");
    assert_eq!(route.current().unwrap().deployment.version, "0.2.0");
    assert_eq!(route.standby().unwrap().deployment.id, old.deployment.id);
    let loads = d.runtime().stats();
    let back = d.rollback("svc", None, "t").await.unwrap();
    assert_eq!(back.deployment.version, "0.1.0");
    assert_eq!(
        d.runtime().stats(),
        loads,
        "the standby was switched to: nothing compiled or loaded"
    );
    assert_eq!(route.standby().unwrap().deployment.version, "0.2.0");
    let (ok, _) = calls(&route, 5).await;
    assert_eq!(count(&ok, "0.1.0"), 5);
}

/// Misbehave at `version`, with what it requires granted.
fn misbehave(version: &str, config: &[(&str, &str)]) -> DeploySpec {
    let mut spec = flaky(version, config);
    spec.allow = vec![
        "system-call:state".into(),
        "system-call:config".into(),
        "messaging:send:other".into(),
        "messaging:publish:news".into(),
    ];
    spec
}

async fn answer(route: &Route, command: &str) -> String {
    let served = route.execute(Message::new(command)).await.unwrap();
    String::from_utf8(served.output.value.payload).unwrap()
}

#[tokio::test]
async fn a_stateful_upgrade_migrates_a_new_generation_and_a_rollback_says_what_it_leaves() {
    let (_root, dir, mut d) = setup("svc", MISBEHAVE, &["0.1.0", "0.2.0", "0.3.0"]);
    d.deploy(misbehave("0.1.0", &[]), false, "t").await.unwrap();
    let route = d.serve("svc").await.unwrap();
    assert_eq!(answer(&route, "state-set").await, "set");
    let first = d.status().unwrap().remove(0);
    assert_eq!(
        d.state_usage(&first).unwrap().keys,
        1,
        "`k` is kept in the store"
    );

    // A failing migrate aborts the upgrade: the old version serves on its
    // own state, untouched.
    let err = d
        .upgrade(
            "svc",
            "0.3.0",
            Strategy::Immediate,
            Some(misbehave("0.3.0", &[("fail-migrate", "true")])),
            false,
            "t",
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "migrate from 0.1.0 failed, so the upgrade was aborted and 0.1.0 keeps serving"
        ) && err.contains("`fail-migrate` is `true`"),
        "{err}"
    );
    assert_eq!(route.current().unwrap().deployment.id, first.id);
    assert_eq!(answer(&route, "state-keys").await, "k");
    assert_eq!(d.status().unwrap()[0].generation, first.generation);

    // A good migrate runs on a copy: the new version sees the old writes
    // and its own migration; the old generation stays as it was.
    let up = d
        .upgrade("svc", "0.2.0", Strategy::Immediate, None, false, "t")
        .await
        .unwrap();
    assert_eq!(
        up.generation,
        first.generation + 2,
        "one per migration tried"
    );
    assert_eq!(answer(&route, "state-keys").await, "k\nmigrated-from");
    assert_eq!(answer(&route, "state-get").await, "written");
    let usage = d.state_usage(&up).unwrap();
    assert_eq!(usage.keys, 2);
    assert_eq!(
        usage.bytes,
        u64::try_from("k".len() + "written".len() + "migrated-from".len() + "0.1.0".len()).unwrap()
    );

    // Rolling back goes back to the old generation and names what stays
    // behind.
    let back = d.rollback("svc", None, "t").await.unwrap();
    assert_eq!(back.deployment.id, first.id);
    assert_eq!(back.deployment.generation, first.generation);
    assert_eq!(back.left_generation, Some(up.generation));
    assert_eq!(back.left_behind, ["default/migrated-from"]);
    assert_eq!(back.left_behind_count, 1);
    assert_eq!(answer(&route, "state-keys").await, "k");
    let last = d.registry().audit().unwrap().pop().unwrap();
    assert_eq!(last.action, "rollback");
    let details: serde_json::Value = serde_json::from_str(&last.details).unwrap();
    assert_eq!(details["left_behind"], 1);

    // The generation left stays, even once gc removes 0.2.0's bytes: a
    // rollback to 0.2.0 is refused until they are published again, and
    // then finds its state as it was left.
    let c = d.registry().gc(1, &dir.cache(), "t").unwrap();
    assert_eq!(c.pruned, ["svc@0.2.0"]);
    assert_eq!(c.state_entries, 0);
    let err = d
        .rollback("svc", Some("0.2.0"), "t")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("were removed by `gc`; publish them again"),
        "{err}"
    );
    let bytes = std::fs::read(MISBEHAVE).unwrap();
    d.registry()
        .publish("svc", "0.2.0", &bytes, &Provenance::unsigned(), "t")
        .unwrap();
    let forth = d.rollback("svc", Some("0.2.0"), "t").await.unwrap();
    assert_eq!(forth.deployment.generation, up.generation);
    assert_eq!(answer(&route, "state-keys").await, "k\nmigrated-from");
    d.registry().verify_audit().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_increment_is_lost_while_a_stateful_component_is_upgraded_under_calls() {
    let (_root, _dir, mut d) = setup("tally", COUNTER, &["1.0.0", "2.0.0", "3.0.0"]);
    let mut spec = DeploySpec::new("tally", "1.0.0");
    spec.allow = vec!["system-call:state".into()];
    d.deploy(spec, false, "t").await.unwrap();
    let route = d.serve("tally").await.unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let callers: Vec<_> = (0..2)
        .map(|_| {
            let (route, stop) = (route.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0_u64, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match route.execute(Message::new("")).await {
                        Ok(_) => ok += 1,
                        Err(e) => failed.push(e.to_string()),
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for v in ["2.0.0", "3.0.0"] {
        d.upgrade("tally", v, Strategy::Immediate, None, false, "t")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for c in callers {
        let (ok, failed) = c.await.unwrap();
        assert!(failed.is_empty(), "{failed:?}");
        total += ok;
    }
    assert!(total > 0);
    let next = answer(&route, "").await;
    assert_eq!(
        next,
        (total + 1).to_string(),
        "every increment is in the new generation"
    );
    assert_eq!(route.current().unwrap().deployment.version, "3.0.0");
}
