//! Hot deployment under load, in one run: two threads call a component
//! through its route continuously while 100 upgrades alternate between two
//! precompiled versions, twice (two builds of echo; then echo and the
//! counter, whose upgrades migrate state); then a deploy of a version not
//! compiled yet, a rollback served from the compiled-code cache, and the
//! router's cost per call beside calling the component directly.
//!
//! `cargo bench -p airssys-wasm-deploy --bench hot`. Results and their
//! reading are in docs/benchmarks.md.

#![allow(missing_docs, reason = "benchmark binary")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark binary"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use airssys_wasm_deploy::{DeploySpec, Deployer, Provenance, StateDir, Strategy};
use airssys_wasm_runtime::{Message, RuntimeConfig};
use airssys_wasm_test_guests::{COUNTER, ECHO};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// `bytes` with a custom section appended: the same component, another
/// digest (so it is compiled and cached on its own).
fn another_build(bytes: &[u8], tag: &str) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut payload = Vec::new();
    leb(tag.len(), &mut payload);
    payload.extend_from_slice(tag.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0);
    leb(payload.len(), &mut out);
    out.extend_from_slice(&payload);
    out
}

/// What one 10 s phase measured.
struct Phase {
    calls: u64,
    failed: u64,
    invalid: u64,
    recompiled: u64,
    upgrades: Vec<Duration>,
    commits: Vec<Duration>,
    swaps: Vec<Duration>,
}

/// Two threads call `name` through its route for 10 s while 100 upgrades
/// alternate between `versions` (already deployed once, so precompiled);
/// `valid` checks an answer against the version that gave it.
fn under_load(
    rt: &tokio::runtime::Runtime,
    d: &mut Deployer,
    name: &str,
    versions: [&DeploySpec; 2],
    valid: fn(&str, &str) -> bool,
) -> Phase {
    let route = d.route(name);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, invalid) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let callers: Vec<_> = (0..2)
        .map(|_| {
            let (route, stop) = (route.clone(), stop.clone());
            let (ok, failed, invalid) = (ok.clone(), failed.clone(), invalid.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    while !stop.load(Ordering::Relaxed) {
                        match route.execute(Message::new("ping")).await {
                            Ok(served) => {
                                let body = String::from_utf8_lossy(&served.output.value.payload);
                                let n = if valid(&served.deployment.version, &body) {
                                    &ok
                                } else {
                                    &invalid
                                };
                                n.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                });
            })
        })
        .collect();

    let started = Instant::now();
    let compiled_before = d.runtime().stats().compilations;
    let (mut upgrades, mut commits, mut swaps) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..100 {
        let spec = versions[i % 2];
        let t = Instant::now();
        rt.block_on(d.upgrade(
            name,
            &spec.version,
            Strategy::Immediate,
            Some(spec.clone()),
            true,
            "bench",
        ))
        .unwrap();
        upgrades.push(t.elapsed());
        let a = d.last_activation().unwrap();
        commits.push(a.commit);
        swaps.push(a.swap);
    }
    // Keep calling for the rest of the 10 s.
    while started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for c in callers {
        c.join().unwrap();
    }
    upgrades.sort();
    commits.sort();
    swaps.sort();
    Phase {
        calls: ok.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        invalid: invalid.load(Ordering::Relaxed),
        recompiled: d.runtime().stats().compilations - compiled_before,
        upgrades,
        commits,
        swaps,
    }
}

fn report(title: &str, p: &Phase) {
    println!("{title}, 2 calling threads, 10 s");
    println!(
        "  calls answered           {} ({:.0}/s)",
        p.calls,
        p.calls as f64 / 10.0
    );
    println!("  failed calls             {}", p.failed);
    println!("  answers from no version  {}", p.invalid);
    println!(
        "  recompilations           {} over 100 upgrades",
        p.recompiled
    );
    println!(
        "  upgrade (validate, prepare, activate)  p50 {}  p99 {}",
        ms(percentile(&p.upgrades, 0.5)),
        ms(percentile(&p.upgrades, 0.99))
    );
    println!(
        "  activation: persisted transition     p50 {}  p99 {}",
        ms(percentile(&p.commits, 0.5)),
        ms(percentile(&p.commits, 0.99))
    );
    println!(
        "  activation: in-process switch        p50 {}  p99 {}",
        ms(percentile(&p.swaps, 0.5)),
        ms(percentile(&p.swaps, 0.99))
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let dir = StateDir::open(root.path().join("state")).unwrap();
    let mut d = Deployer::open(&dir, RuntimeConfig::default().max_instances(64)).unwrap();
    let echo = std::fs::read(ECHO).unwrap();
    let counter = std::fs::read(COUNTER).unwrap();

    // Phase 1: two builds of echo.
    d.registry()
        .publish("echo", "1.0.0", &echo, &Provenance::unsigned(), "bench")
        .unwrap();
    d.registry()
        .publish(
            "echo",
            "2.0.0",
            &another_build(&echo, "bench-2.0.0"),
            &Provenance::unsigned(),
            "bench",
        )
        .unwrap();
    let (e1, e2) = (
        DeploySpec::new("echo", "1.0.0"),
        DeploySpec::new("echo", "2.0.0"),
    );
    rt.block_on(d.deploy(e1.clone(), true, "bench")).unwrap();
    rt.block_on(d.upgrade("echo", "2.0.0", Strategy::Immediate, None, true, "bench"))
        .unwrap();
    rt.block_on(d.serve("echo")).unwrap();
    let stateless = under_load(&rt, &mut d, "echo", [&e1, &e2], |_, body| body == "ping");

    // Phase 2: echo and the counter, which keeps state: every second
    // upgrade pauses calls, copies the state and runs `migrate`.
    d.registry()
        .publish("svc", "1.0.0", &echo, &Provenance::unsigned(), "bench")
        .unwrap();
    d.registry()
        .publish("svc", "2.0.0", &counter, &Provenance::unsigned(), "bench")
        .unwrap();
    let mut v2 = DeploySpec::new("svc", "2.0.0");
    v2.allow = vec!["system-call:state".into()];
    let mut v1 = DeploySpec::new("svc", "1.0.0");
    v1.allow = vec!["system-call:state".into()];
    rt.block_on(d.deploy(v1.clone(), true, "bench")).unwrap();
    rt.block_on(d.upgrade(
        "svc",
        "2.0.0",
        Strategy::Immediate,
        Some(v2.clone()),
        true,
        "bench",
    ))
    .unwrap();
    rt.block_on(d.serve("svc")).unwrap();
    // Echo answers the payload; the counter a count.
    let stateful = under_load(
        &rt,
        &mut d,
        "svc",
        [&v1, &v2],
        |version, body| match version {
            "1.0.0" => body == "ping",
            _ => body.parse::<u64>().is_ok(),
        },
    );

    // A deploy of a version nobody compiled: a fresh state directory.
    let fresh_root = tempfile::tempdir().unwrap();
    let fresh_dir = StateDir::open(fresh_root.path().join("state")).unwrap();
    let mut fresh = Deployer::open(&fresh_dir, RuntimeConfig::default().max_instances(8)).unwrap();
    fresh
        .registry()
        .publish("new", "1.0.0", &echo, &Provenance::unsigned(), "bench")
        .unwrap();
    let t = Instant::now();
    rt.block_on(fresh.deploy(DeploySpec::new("new", "1.0.0"), false, "bench"))
        .unwrap();
    let uncompiled = t.elapsed();
    // The same, served from the compiled-code cache (a new process's view:
    // the in-memory code dropped).
    drop(fresh);
    let mut again = Deployer::open(&fresh_dir, RuntimeConfig::default().max_instances(8)).unwrap();
    again
        .registry()
        .publish("new", "1.0.1", &echo, &Provenance::unsigned(), "bench")
        .unwrap();
    let t = Instant::now();
    rt.block_on(again.upgrade("new", "1.0.1", Strategy::Immediate, None, false, "bench"))
        .unwrap();
    let cached = t.elapsed();

    // A rollback, from the cache.
    let before = d.runtime().stats().compilations;
    let mut rollbacks = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        rt.block_on(d.rollback("svc", None, "bench")).unwrap();
        rollbacks.push(t.elapsed());
    }
    let rollback_recompiled = d.runtime().stats().compilations - before;

    // The router's cost per call, side by side on one thread: echo called
    // on the component directly, and through `Route::execute` (pick,
    // call, report), in alternating blocks.
    d.registry()
        .publish("e", "1.0.0", &echo, &Provenance::unsigned(), "bench")
        .unwrap();
    rt.block_on(d.deploy(DeploySpec::new("e", "1.0.0"), false, "bench"))
        .unwrap();
    let route = rt.block_on(d.serve("e")).unwrap();
    let (mut direct, mut routed) = (Duration::ZERO, Duration::ZERO);
    const BLOCK: u32 = 2_000;
    rt.block_on(async {
        for _ in 0..10 {
            let active = route.current().unwrap();
            let t = Instant::now();
            for _ in 0..BLOCK {
                active
                    .component
                    .execute(Message::new("ping"))
                    .await
                    .unwrap();
            }
            direct += t.elapsed();
            let t = Instant::now();
            for _ in 0..BLOCK {
                route.execute(Message::new("ping")).await.unwrap();
            }
            routed += t.elapsed();
        }
    });

    rollbacks.sort();
    report("hot deployment: two builds of echo", &stateless);
    report(
        "hot deployment: echo and the counter (every second upgrade migrates state)",
        &stateful,
    );
    println!(
        "  deploy, not yet compiled               {}",
        ms(uncompiled)
    );
    println!("  deploy, from the compiled-code cache   {}", ms(cached));
    println!(
        "  rollback (20)                          p50 {}  p99 {}  recompilations {rollback_recompiled}",
        ms(percentile(&rollbacks, 0.5)),
        ms(percentile(&rollbacks, 0.99))
    );
    let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(BLOCK * 10);
    println!(
        "  echo per call, one thread: direct {:.2} us, through the route {:.2} us",
        per(direct),
        per(routed)
    );
}
