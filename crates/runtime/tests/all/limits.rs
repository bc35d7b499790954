//! Misbehaving guests: each yields its own error, and the next call works.

use std::time::Duration;

use airssys_wasm_runtime::{ComponentPre, Error, Limits, Runtime, RuntimeConfig};
use airssys_wasm_test_guests::MISBEHAVE;

use crate::{load, load_in, test_limits, text};

async fn guest(limits: Limits) -> ComponentPre {
    load(MISBEHAVE, crate::opts().limits(limits)).await
}

async fn still_works(g: &ComponentPre) {
    let out = g.execute(text("echo")).await.expect("the next call works");
    assert_eq!(out.value.payload, b"echo");
}

#[tokio::test]
async fn an_endless_loop_times_out() {
    let g = guest(test_limits().timeout(Duration::from_millis(300))).await;
    let err = g.execute(text("loop")).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("timed out after 300 ms"), "{err}");
    still_works(&g).await;
}

#[tokio::test]
async fn a_loop_does_not_block_other_calls() {
    // A loop and an echo of another component on a current-thread
    // executor: the loop yields at every epoch tick, so the echo is served
    // while it spins.
    let g = guest(test_limits().timeout(Duration::from_secs(2))).await;
    let echo = crate::load(airssys_wasm_test_guests::ECHO, crate::opts()).await;
    let (a, c) = tokio::join!(g.execute(text("loop")), echo.execute(text("echo")));
    assert!(matches!(a, Err(Error::Timeout { .. })));
    assert_eq!(c.unwrap().value.payload, b"echo");
    // Calls of a component that keeps state run one at a time: a second
    // loop waits for the first to end (a lower bound, whatever the
    // machine's speed).
    let g = guest(test_limits().timeout(Duration::from_millis(300))).await;
    let started = std::time::Instant::now();
    let (a, b) = tokio::join!(g.execute(text("loop")), g.execute(text("loop")));
    assert!(matches!(a, Err(Error::Timeout { .. })), "{a:?}");
    assert!(matches!(b, Err(Error::Timeout { .. })), "{b:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "the loops ran one after the other"
    );
}

#[tokio::test]
async fn blocking_in_the_host_times_out_too() {
    let g = guest(test_limits().timeout(Duration::from_millis(300))).await;
    let err = g.execute(text("sleep")).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    still_works(&g).await;
}

#[tokio::test]
async fn grabbing_memory_hits_the_limit() {
    let g = guest(test_limits().memory(16 << 20)).await;
    let err = g.execute(text("grow")).await.unwrap_err();
    match &err {
        Error::MemoryLimit {
            requested, limit, ..
        } => {
            assert_eq!(*limit, 16 << 20);
            assert!(*requested > *limit);
        }
        other => panic!("expected MemoryLimit, got {other:?}"),
    }
    assert!(
        err.to_string().contains("memory limit exceeded (requested"),
        "{err}"
    );
    still_works(&g).await;
}

#[tokio::test]
async fn deep_recursion_traps_with_a_clear_error() {
    let g = guest(test_limits()).await;
    let err = g.execute(text("recurse")).await.unwrap_err();
    assert!(
        matches!(err, Error::StackOverflow { .. } | Error::Trap { .. }),
        "a Rust guest's overflow traps: {err:?}"
    );
    still_works(&g).await;
}

#[tokio::test]
async fn a_panic_carries_the_guest_message() {
    let g = guest(test_limits()).await;
    let err = g.execute(text("panic")).await.unwrap_err();
    let Error::Trap { stderr, .. } = &err else {
        panic!("expected Trap, got {err:?}")
    };
    assert!(
        stderr.contains("misbehave: asked to panic"),
        "stderr: {stderr}"
    );
    assert!(
        err.to_string().contains("misbehave: asked to panic"),
        "{err}"
    );
    still_works(&g).await;
}

#[tokio::test]
async fn huge_output_is_capped_not_fatal() {
    let g = guest(test_limits().output_bytes(4096)).await;
    let out = g.execute(text("output")).await.unwrap();
    assert_eq!(out.stdout.len(), 4096);
    assert_eq!(out.stderr.len(), 4096);
    still_works(&g).await;
}

#[tokio::test]
async fn holding_too_many_host_resources_is_refused() {
    let g = guest(test_limits().resources(200)).await;
    let err = g.execute(text("files")).await.unwrap_err();
    assert!(
        matches!(err, Error::ResourceLimit { limit: 200, .. }),
        "{err:?}"
    );
    still_works(&g).await;
}

#[tokio::test]
async fn a_log_flood_is_rate_limited_and_cut() {
    let g = guest(test_limits().log_lines_per_second(10)).await;
    let out = g.execute(text("log-flood")).await.unwrap();
    assert!(out.logs.len() <= 10, "{} lines kept", out.logs.len());
    assert!(out.logs_dropped > 0);
    let max = Limits::default().log_line_bytes + '…'.len_utf8();
    assert!(out.logs.iter().all(|l| l.message.len() <= max));
}

#[tokio::test]
async fn an_oversized_state_value_is_a_typed_error() {
    let g = guest(test_limits().state_value_bytes(1 << 20)).await;
    let out = g.execute(text("state-big")).await.unwrap();
    let body = String::from_utf8_lossy(&out.value.payload);
    assert!(
        body.contains("exceeds the limit of 1048576 bytes"),
        "{body}"
    );
    assert_eq!(g.state_bytes(), 0);
}

#[tokio::test]
async fn get_many_cannot_amplify_one_value() {
    // 200 x 512 KiB = 100 MiB asked for, over the 64 MiB state quota.
    let g = guest(test_limits()).await;
    let out = g.execute(text("get-many")).await.unwrap();
    let body = String::from_utf8_lossy(&out.value.payload);
    assert!(
        body.contains("get-many would return more than the state quota"),
        "{body}"
    );
}

#[tokio::test]
async fn exit_during_a_call_is_reported() {
    let g = guest(test_limits()).await;
    let err = g.execute(text("exit")).await.unwrap_err();
    // WASI 0.2 carries failure, not the number: exit(3) arrives as 1.
    assert!(matches!(err, Error::Exit { code: 1, .. }), "{err:?}");
    still_works(&g).await;
}

#[tokio::test]
async fn fuel_runs_out() {
    let rt = Runtime::new(RuntimeConfig::default().fuel(true).max_instances(8)).unwrap();
    let g = load_in(
        &rt,
        MISBEHAVE,
        crate::opts().limits(test_limits().fuel(Some(5_000_000))),
    )
    .await;
    let err = g.execute(text("loop")).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::FuelExhausted {
                fuel: 5_000_000,
                ..
            }
        ),
        "{err:?}"
    );
    still_works(&g).await;
}

#[tokio::test]
async fn without_a_budget_a_fuel_runtime_runs_unmetered() {
    let rt = Runtime::new(RuntimeConfig::default().fuel(true).max_instances(8)).unwrap();
    let g = load_in(&rt, MISBEHAVE, crate::opts().limits(test_limits())).await;
    still_works(&g).await;
}

#[tokio::test]
async fn fuel_on_a_runtime_without_it_is_refused() {
    let rt = crate::runtime();
    let err = rt
        .load(
            "misbehave.wasm",
            &crate::read(MISBEHAVE),
            crate::opts().limits(test_limits().fuel(Some(1))),
        )
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, Error::FuelNotEnabled { .. }), "{err:?}");
    assert!(err.to_string().contains("fuel(true)"), "{err}");
}

#[tokio::test]
async fn max_concurrent_is_enforced() {
    let g = guest(
        test_limits()
            .max_concurrent(1)
            .timeout(Duration::from_millis(500)),
    )
    .await;
    let (a, b) = tokio::join!(g.execute(text("sleep")), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        g.execute(text("echo")).await
    });
    assert!(matches!(a, Err(Error::Timeout { .. })));
    assert!(matches!(b, Err(Error::Overloaded { .. })), "{b:?}");
    still_works(&g).await;
}

#[tokio::test]
async fn an_exhausted_pool_is_overloaded_not_a_crash() {
    let rt = Runtime::new(RuntimeConfig::default().max_instances(1)).unwrap();
    let g = load_in(
        &rt,
        MISBEHAVE,
        crate::opts().limits(test_limits().timeout(Duration::from_millis(500))),
    )
    .await;
    // Another component: calls of one that keeps state run one at a time,
    // so the second call must come from elsewhere to find the pool full.
    let echo = load_in(&rt, airssys_wasm_test_guests::ECHO, crate::opts()).await;
    let (a, b) = tokio::join!(g.execute(text("sleep")), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        echo.execute(text("echo")).await
    });
    assert!(matches!(a, Err(Error::Timeout { .. })));
    assert!(matches!(b, Err(Error::Overloaded { .. })), "{b:?}");
    still_works(&g).await;
}
