//! The contract: execute, lifecycle, config, state, logging, messaging.

use std::time::Duration;

use airssys_wasm_runtime::{Capability, Error, HealthStatus, Message, PrepareOptions};
use airssys_wasm_test_guests::{COUNTER, ECHO, MISBEHAVE};

use crate::{load, test_limits, text};

#[tokio::test]
async fn echo_returns_the_payload_and_adds_a_header() {
    let echo = load(ECHO, crate::opts()).await;
    let input = Message {
        payload: b"hello \xff bytes".to_vec(),
        content_type: Some("application/octet-stream".into()),
        headers: vec![("x-trace".into(), "42".into())],
    };
    let out = echo.execute(input).await.unwrap();
    assert_eq!(out.value.payload, b"hello \xff bytes");
    assert_eq!(
        out.value.content_type.as_deref(),
        Some("application/octet-stream")
    );
    assert_eq!(out.value.header("x-echoed-by"), Some("echo"));
    assert_eq!(
        out.logs.len(),
        1,
        "echo logs one line per call: {:?}",
        out.logs
    );
    assert_eq!(out.logs[0].level, "info");
}

#[tokio::test]
async fn metadata_and_health_come_from_the_component() {
    let echo = load(ECHO, crate::opts()).await;
    let meta = echo.metadata().await.unwrap();
    assert_eq!(meta.name, "echo");
    let embedded = echo
        .info()
        .metadata
        .clone()
        .expect("echo carries its metadata in a custom section");
    assert_eq!(embedded.name, meta.name);
    assert_eq!(embedded.version, meta.version);
    assert!(matches!(
        echo.health().await.unwrap(),
        HealthStatus::Healthy
    ));
}

#[tokio::test]
async fn counter_keeps_state_across_calls_but_not_across_preparations() {
    let counter = load(COUNTER, crate::opts()).await;
    for expected in 1..=3 {
        let out = counter.execute(text("")).await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.value.payload),
            expected.to_string()
        );
    }
    assert!(counter.state_bytes() > 0);
    assert_eq!(
        counter.info().capabilities,
        vec!["system-call:state".to_string()]
    );
    let fresh = load(COUNTER, crate::opts()).await;
    let out = fresh.execute(text("")).await.unwrap();
    assert_eq!(out.value.payload, b"1");
}

#[tokio::test]
async fn concurrent_increments_are_not_lost() {
    let counter = load(COUNTER, crate::opts()).await;
    let calls = (0..20).map(|_| {
        let c = counter.clone();
        tokio::spawn(async move { c.execute(text("")).await.map(|o| o.value.payload) })
    });
    let mut seen: Vec<u64> = Vec::new();
    for call in calls {
        let payload = call.await.unwrap().unwrap();
        seen.push(String::from_utf8(payload).unwrap().parse().unwrap());
    }
    seen.sort();
    assert_eq!(seen, (1..=20).collect::<Vec<u64>>());
}

#[tokio::test]
async fn config_is_served_to_the_guest() {
    let guest = load(
        MISBEHAVE,
        crate::opts().limits(test_limits()).config(vec![
            ("colour".into(), "blue".into()),
            ("size".into(), "3".into()),
        ]),
    )
    .await;
    let out = guest.execute(text("config")).await.unwrap();
    let body = String::from_utf8(out.value.payload).unwrap();
    assert!(body.contains("colour=blue"), "{body}");
    assert!(body.contains("size=3"), "{body}");
}

#[tokio::test]
async fn a_failing_init_fails_preparation() {
    let rt = crate::runtime();
    let bytes = crate::read(MISBEHAVE);
    let err = rt
        .load(
            "misbehave.wasm",
            &bytes,
            crate::opts()
                .limits(test_limits())
                .config(vec![("fail-init".into(), "true".into())]),
        )
        .await
        .err()
        .expect("init refuses fail-init=true");
    assert!(matches!(err, Error::InitFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("refused to start"), "{err}");
}

#[tokio::test]
async fn the_guest_sees_an_empty_environment() {
    let guest = load(MISBEHAVE, crate::opts().limits(test_limits())).await;
    // SAFETY of the test: the host's environment is not empty.
    assert!(std::env::vars().next().is_some());
    let out = guest.execute(text("env")).await.unwrap();
    assert_eq!(out.value.payload, b"", "no environment variable is granted");
}

#[tokio::test]
async fn a_typed_guest_error_is_not_a_trap() {
    let guest = load(MISBEHAVE, crate::opts().limits(test_limits())).await;
    let err = guest.execute(text("no-such-command")).await.unwrap_err();
    assert!(matches!(err, Error::Guest { .. }), "{err:?}");
    // And the component still works.
    assert_eq!(
        guest.execute(text("echo")).await.unwrap().value.payload,
        b"echo"
    );
}

#[tokio::test]
async fn messaging_is_gated_by_its_grants() {
    // Granted: send to `other`, publish to `news` (no registry answers
    // them here); not granted: request to `other`.
    let guest = load(MISBEHAVE, crate::opts().limits(test_limits())).await;
    let out = guest.execute(text("message")).await.unwrap();
    let body = String::from_utf8(out.value.payload).unwrap();
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), 3, "{body}");
    let unavailable = "err: unavailable: messaging needs a host with a component registry";
    assert!(lines[0].starts_with(unavailable), "{body}");
    assert_eq!(
        lines[1],
        "err: denied: capability `messaging:request:other` is not granted"
    );
    assert!(lines[2].starts_with(unavailable), "{body}");

    // Without its messaging grants the component does not start.
    let grants = airssys_wasm_runtime::Grants::default()
        .allow(Capability::SystemCall("state".into()))
        .allow(Capability::SystemCall("config".into()));
    let err = crate::runtime()
        .load(
            "misbehave",
            &crate::read(MISBEHAVE),
            PrepareOptions::default().grants(grants),
        )
        .await
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("--allow messaging:send:other"),
        "{err}"
    );
}

#[tokio::test]
async fn a_required_capability_that_is_not_granted_refuses_the_component() {
    let rt = crate::runtime();
    let err = rt
        .load(
            "counter.wasm",
            &crate::read(COUNTER),
            PrepareOptions::default(),
        )
        .await
        .err()
        .expect("refused before running");
    assert!(matches!(err, Error::NotGranted { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("grant it with `--allow system-call:state`"),
        "{err}"
    );
}

#[tokio::test]
async fn denying_clock_and_random_makes_a_component_deterministic() {
    let grants = crate::opts()
        .grants
        .deny(Capability::SystemCall("clock".into()))
        .deny(Capability::SystemCall("random".into()));
    let guest = load(
        MISBEHAVE,
        crate::opts().grants(grants).limits(test_limits()),
    )
    .await;
    let first = guest.execute(text("entropy")).await.unwrap().value.payload;
    let second = guest.execute(text("entropy")).await.unwrap().value.payload;
    assert_eq!(first, second, "same calls, same answers");
    assert!(
        String::from_utf8_lossy(&first).starts_with("clock=0 "),
        "{}",
        String::from_utf8_lossy(&first)
    );

    let free = load(MISBEHAVE, crate::opts().limits(test_limits())).await;
    let a = free.execute(text("entropy")).await.unwrap().value.payload;
    let b = free.execute(text("entropy")).await.unwrap().value.payload;
    assert_ne!(a, b, "a real generator differs between calls");
    assert!(!String::from_utf8_lossy(&a).starts_with("clock=0 "));
}

#[tokio::test]
async fn a_grant_that_ends_during_a_call_ends_the_call() {
    let ends = std::time::SystemTime::now() + Duration::from_millis(1500);
    let grants = airssys_wasm_runtime::Grants::default()
        .allow(
            airssys_wasm_runtime::Grant::new(Capability::SystemCall("state".into())).expires(ends),
        )
        .allow(Capability::SystemCall("config".into()))
        .allow("messaging:send:other".parse::<Capability>().unwrap())
        .allow("messaging:publish:news".parse::<Capability>().unwrap());
    let limits = test_limits().timeout(Duration::from_secs(30));
    let guest = load(
        MISBEHAVE,
        PrepareOptions::default().grants(grants).limits(limits),
    )
    .await;
    let started = std::time::Instant::now();
    let err = guest.execute(text("loop")).await.unwrap_err();
    assert!(
        matches!(&err, Error::NotGranted { capability, .. } if capability.contains("system-call:state (its grant ended during the call)")),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "stopped at the grant's end, not the timeout"
    );
    // From then on the component is refused before it runs.
    let err = guest.execute(text("echo")).await.unwrap_err();
    assert!(err.to_string().contains("its grant ended at"), "{err}");
}

/// A call's writes are kept when it succeeds and undone when it traps or
/// returns an error, as CosmWasm does; kept writes reach the backend.
#[tokio::test]
async fn state_writes_commit_with_the_call_and_persist_through_a_backend() {
    /// `(bucket, key, value)`, `None` deleted.
    type Entry = (String, String, Option<Vec<u8>>);
    #[derive(Default)]
    struct Memory(std::sync::Mutex<Vec<Entry>>);
    impl airssys_wasm_runtime::StateBackend for Memory {
        fn load(&self, _: &str) -> Result<Vec<(String, String, Vec<u8>)>, String> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .iter()
                .filter_map(|(b, k, v)| Some((b.clone(), k.clone(), v.clone()?)))
                .collect())
        }
        fn commit(&self, _: &str, w: &[(String, String, Option<Vec<u8>>)]) -> Result<(), String> {
            let mut all = self.0.lock().unwrap();
            for (b, k, v) in w {
                all.retain(|(b2, k2, _)| !(b2 == b && k2 == k));
                all.push((b.clone(), k.clone(), v.clone()));
            }
            Ok(())
        }
    }
    let backend = std::sync::Arc::new(Memory::default());
    let opts = || {
        crate::opts()
            .limits(test_limits())
            .state(backend.clone(), "misbehave")
    };
    let guest = load(MISBEHAVE, opts()).await;
    let get = async |g: &airssys_wasm_runtime::ComponentPre| {
        let out = g.execute(text("state-get")).await.unwrap();
        String::from_utf8(out.value.payload).unwrap()
    };
    assert_eq!(get(&guest).await, "absent");
    assert!(guest.execute(text("state-set-then-panic")).await.is_err());
    assert_eq!(
        get(&guest).await,
        "absent",
        "a trap undoes the call's writes"
    );
    assert!(
        backend.0.lock().unwrap().is_empty(),
        "and nothing reached the backend"
    );
    let err = guest
        .execute(text("state-set-then-error"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Guest { .. }), "{err}");
    assert_eq!(get(&guest).await, "absent", "an error undoes them too");
    guest.execute(text("state-set")).await.unwrap();
    assert_eq!(get(&guest).await, "written");
    assert_eq!(guest.state_bytes(), "k".len() + "written".len());
    // A new preparation (a restart) finds what was kept.
    let again = load(MISBEHAVE, opts()).await;
    assert_eq!(get(&again).await, "written");
}
