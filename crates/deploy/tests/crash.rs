//! Crash safety: a child process publishes, deploys, upgrades (with a state
//! migration), calls, rolls back and collects on one state directory, and
//! is killed with SIGKILL at each crash point, then at 50 random ones (a
//! point and which of its hits; the seed is printed, `AIRSSYS_CRASH_SEED`
//! repeats it). After each kill the state directory is opened again and
//! checked: the database opens, no version is half-present, the audit
//! trail verifies, every acknowledged step is there, exactly one version of
//! each deployed component is active, and no state is left on a generation
//! nothing runs on.
//!
//! `cargo test --workspace --features airssys-wasm-deploy/failpoints --test crash`
//! (`scripts/test.sh` runs it).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::collections::BTreeSet;
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use airssys_wasm_deploy::{DeploySpec, Deployer, Provenance, Registry, StateDir, Strategy};
use airssys_wasm_runtime::{Message, RuntimeConfig};

/// Every crash point of the deployment engine, in the order a deploy
/// meets them.
const POINTS: &[&str] = &[
    "blob-written",
    "blob-renamed",
    "blob-durable",
    "tx-before-head",
    "tx-before-commit",
    "tx-after-commit",
    "tx-head-written",
    "deploy-submitting",
    "deploy-submitted",
    "deploy-validating",
    "deploy-validated",
    "generation-copying",
    "generation-copied",
    "deploy-preparing",
    "deploy-prepared",
    "deploy-active",
];

/// What the children acknowledged (printed after the step returned).
#[derive(Default, Debug)]
struct Acked {
    published: BTreeSet<(String, String)>,
    deployments: BTreeSet<i64>,
    components: BTreeSet<String>,
}

fn ack(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "ACK {line}").unwrap();
    out.flush().unwrap();
}

/// The child's work for round `round`.
async fn child_round(state: &Path, round: u32) {
    let dir = StateDir::open(state).unwrap();
    let mut d = Deployer::open(&dir, RuntimeConfig::default().max_instances(4)).unwrap();
    let active: BTreeSet<String> = d.status().unwrap().into_iter().map(|r| r.name).collect();
    let version = format!("1.{round}.0");

    // A small stateless component, new bytes every round.
    let wat = wat::parse_str(format!(
        "(component (core module (func (export \"round{round}\"))))"
    ))
    .unwrap();
    d.registry()
        .publish("w", &version, &wat, &Provenance::unsigned(), "crash")
        .unwrap();
    ack(&format!("publish w {version}"));
    let r = if active.contains("w") {
        d.upgrade("w", &version, Strategy::Immediate, None, true, "crash")
            .await
    } else {
        d.deploy(DeploySpec::new("w", version.as_str()), true, "crash")
            .await
    };
    ack(&format!("deployment w {}", r.unwrap().id));

    // A component that keeps state: each upgrade migrates a generation.
    let counter = std::fs::read(airssys_wasm_test_guests::COUNTER).unwrap();
    d.registry()
        .publish("c", &version, &counter, &Provenance::unsigned(), "crash")
        .unwrap();
    ack(&format!("publish c {version}"));
    let r = if active.contains("c") {
        d.upgrade("c", &version, Strategy::Immediate, None, true, "crash")
            .await
    } else {
        let mut spec = DeploySpec::new("c", version.as_str());
        spec.allow = vec!["system-call:state".into()];
        d.deploy(spec, true, "crash").await
    };
    ack(&format!("deployment c {}", r.unwrap().id));
    let route = d.serve("c").await.unwrap();
    route.execute(Message::new("")).await.unwrap();

    if let Ok(back) = d.rollback("w", None, "crash").await {
        ack(&format!("deployment w {}", back.deployment.id));
    }
    d.registry().gc(3, &dir.cache(), "crash").unwrap();
    ack("done");
}

/// The child process: the test binary again, running only this test.
#[tokio::test]
#[ignore = "the crash test's child process, started by the crash test"]
async fn crash_child() {
    let Ok(state) = std::env::var("AIRSSYS_CRASH_DIR") else {
        return;
    };
    let round: u32 = std::env::var("AIRSSYS_CRASH_ROUND")
        .unwrap()
        .parse()
        .unwrap();
    if let Ok(at) = std::env::var("AIRSSYS_CRASH_AT") {
        let (name, nth) = at.split_once(':').unwrap();
        let nth: u32 = nth.parse().unwrap();
        let hits = Arc::new(AtomicU32::new(0));
        fail::cfg_callback(name, move || {
            if hits.fetch_add(1, Ordering::SeqCst) + 1 == nth {
                rustix::process::kill_process(
                    rustix::process::getpid(),
                    rustix::process::Signal::KILL,
                )
                .unwrap();
            }
        })
        .unwrap();
    }
    child_round(Path::new(&state), round).await;
}

/// Run one round in a child, killed at `at` (point, hit); whether it was
/// killed.
fn run_child(state: &Path, round: u32, at: Option<(&str, u32)>, acked: &mut Acked) -> bool {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "crash_child",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("AIRSSYS_CRASH_DIR", state)
    .env("AIRSSYS_CRASH_ROUND", round.to_string())
    .env_remove("AIRSSYS_CRASH_AT");
    if let Some((name, nth)) = at {
        cmd.env("AIRSSYS_CRASH_AT", format!("{name}:{nth}"));
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut done = false;
    for line in stdout.lines().filter_map(|l| l.strip_prefix("ACK ")) {
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["publish", name, version] => {
                acked
                    .published
                    .insert(((*name).to_string(), (*version).to_string()));
            }
            ["deployment", name, id] => {
                acked.deployments.insert(id.parse().unwrap());
                acked.components.insert((*name).to_string());
            }
            ["done"] => done = true,
            other => panic!("unknown acknowledgement {other:?}"),
        }
    }
    let killed = out.status.signal() == Some(9);
    assert!(
        killed || (out.status.success() && done),
        "round {round} at {at:?}: the child neither finished nor was killed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    killed
}

/// Open the state directory as the next process would, and check it.
fn check(state: &Path, acked: &Acked, what: &str) {
    let dir = StateDir::open(state).unwrap_or_else(|e| panic!("{what}: state dir: {e}"));
    let registry = Registry::open(&dir).unwrap_or_else(|e| panic!("{what}: open: {e}"));
    registry
        .verify_audit()
        .unwrap_or_else(|e| panic!("{what}: audit verify: {e}"));
    // No version half-present: each one's bytes are whole (or were
    // collected by gc, which keeps the record).
    for v in registry.versions(None).unwrap() {
        if !registry.pruned(&v.name, &v.version).unwrap() {
            registry
                .bytes(&v.name, &v.version)
                .unwrap_or_else(|e| panic!("{what}: {} {}: {e}", v.name, v.version));
        }
    }
    for (name, version) in &acked.published {
        assert!(
            registry.digest(name, version).unwrap().is_some(),
            "{what}: acknowledged {name} {version} is missing"
        );
    }
    drop(registry);
    let d = Deployer::open(&dir, RuntimeConfig::default().max_instances(2)).unwrap();
    let status = d.status().unwrap();
    for name in &acked.components {
        assert_eq!(
            status.iter().filter(|r| &r.name == name).count(),
            1,
            "{what}: {name} has not exactly one active version"
        );
        for r in d.history(name).unwrap() {
            assert!(
                matches!(r.state.as_str(), "active" | "retired" | "failed"),
                "{what}: deployment {} left {}",
                r.id,
                r.state
            );
            if acked.deployments.contains(&r.id) {
                assert!(
                    matches!(r.state.as_str(), "active" | "retired"),
                    "{what}: acknowledged deployment {} is {}",
                    r.id,
                    r.state
                );
            }
        }
    }
    let found: BTreeSet<i64> = acked
        .components
        .iter()
        .flat_map(|n| d.history(n).unwrap())
        .map(|r| r.id)
        .collect();
    let lost: Vec<&i64> = acked.deployments.difference(&found).collect();
    assert!(
        lost.is_empty(),
        "{what}: acknowledged deployments lost: {lost:?}"
    );
    // The state of `c` is on the generation its active deployment runs on.
    if let Some(c) = status.iter().find(|r| r.name == "c") {
        let usage = d.state_usage(c).unwrap();
        assert!(usage.keys <= 1, "{what}: {usage:?}");
    }
}

/// splitmix64: a seeded sequence, no dependency.
fn next(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[test]
fn killed_at_every_crash_point_and_at_random_ones_the_state_directory_stays_whole() {
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("s");
    let mut acked = Acked::default();
    let mut round = 0;
    let mut kills = 0;
    // A first clean round, so upgrades and rollbacks follow.
    round += 1;
    assert!(!run_child(&state, round, None, &mut acked));
    check(&state, &acked, "clean round");
    for point in POINTS {
        round += 1;
        let killed = run_child(&state, round, Some((point, 1)), &mut acked);
        assert!(killed, "{point} was never reached");
        kills += 1;
        check(&state, &acked, &format!("killed at {point}"));
    }
    let seed = std::env::var("AIRSSYS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("crash test seed: {seed} (AIRSSYS_CRASH_SEED={seed} repeats it)");
    let mut rng = seed;
    for _ in 0..50 {
        round += 1;
        let point = POINTS[(next(&mut rng) % POINTS.len() as u64) as usize];
        let nth = (next(&mut rng) % 6) as u32 + 1;
        let killed = run_child(&state, round, Some((point, nth)), &mut acked);
        kills += u32::from(killed);
        check(
            &state,
            &acked,
            &format!("seed {seed}, round {round}, killed at hit {nth} of {point}: {killed}"),
        );
    }
    // And the next process still works from there.
    round += 1;
    assert!(!run_child(&state, round, None, &mut acked));
    check(&state, &acked, "final clean round");
    println!("{kills} kills over {round} rounds");
}
