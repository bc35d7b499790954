//! A guest that opens files in a loop hits the resource cap and fails the
//! call; the host gets every descriptor back and goes on serving. Its own
//! test binary: it counts the process's open descriptors, which other tests
//! running beside it would disturb.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use airssys_wasm_runtime::{
    Capability, Decision, Error, Grants, Limits, PrepareOptions, Runtime, RuntimeConfig,
};
use airssys_wasm_test_guests::ESCAPE;

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test]
async fn hoarding_files_hits_the_cap_and_the_host_keeps_its_descriptors() {
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = {
        let events = events.clone();
        airssys_wasm_runtime::AuditSink::new(move |e| events.lock().unwrap().push(e))
    };
    let rt = Runtime::new(RuntimeConfig::default().max_instances(4).audit(sink)).unwrap();
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    assert_eq!(limit.current, limit.maximum, "the soft limit was raised");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().canonicalize().unwrap().join("f.txt");
    std::fs::write(&file, "x").unwrap();
    let cap = 500;
    let options = PrepareOptions::default()
        .grants(
            Grants::default()
                .allow(Capability::FileRead(dir.path().into()))
                .allow(Capability::SystemCall("args".into())),
        )
        .limits(Limits::default().resources(cap));
    let guest = rt
        .load("escape", &std::fs::read(ESCAPE).unwrap(), options)
        .await
        .unwrap();
    let path = file.display().to_string();
    let args = || vec!["escape".into(), "hoard".into(), path.clone()];

    let before = open_descriptors();
    for _ in 0..3 {
        let err = guest.run(args()).await.unwrap_err();
        assert!(
            matches!(err, Error::ResourceLimit { limit, .. } if limit == cap as u64),
            "{err}"
        );
    }
    let after = open_descriptors();
    assert!(
        after <= before + 2,
        "descriptors leaked: {before} before, {after} after"
    );
    // The host still opens files, and the guest still runs.
    std::fs::File::open(&file).unwrap();
    let code = guest
        .run(vec!["escape".into(), "cat".into(), path.clone()])
        .await
        .unwrap();
    assert_eq!(code, 0);
    let events = events.lock().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.capability == "limit:resources" && e.decision == Decision::Stopped),
        "{events:?}"
    );
}
