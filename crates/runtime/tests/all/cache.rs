//! The compiled-code cache: compile once per digest, never trust a bad entry.

use airssys_wasm_runtime::{Runtime, RuntimeConfig, Source};
use airssys_wasm_test_guests::{COUNTER, ECHO};

use crate::read;

fn cached_runtime(dir: &std::path::Path) -> Runtime {
    Runtime::new(RuntimeConfig::default().cache_dir(dir).max_instances(4)).unwrap()
}

#[test]
fn a_second_process_loads_from_disk_without_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = read(ECHO);

    let first = cached_runtime(dir.path());
    let compiled = first.compile("echo.wasm", &bytes).unwrap();
    assert_eq!(compiled.source, Source::Compiled);
    assert_eq!(first.stats().compilations, 1);
    // The same runtime answers from memory.
    assert_eq!(
        first.compile("echo.wasm", &bytes).unwrap().source,
        Source::Memory
    );
    assert_eq!(first.stats().compilations, 1);
    assert_eq!(first.stats().memory_hits, 1);

    let entry = first.cache_entry(&compiled.info.digest).unwrap();
    assert!(entry.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(entry.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode & 0o077, 0, "cache dir is private, got {mode:o}");
    }

    let second = cached_runtime(dir.path());
    assert_eq!(
        second.compile("echo.wasm", &bytes).unwrap().source,
        Source::Disk
    );
    assert_eq!(second.stats().compilations, 0);
    assert_eq!(second.stats().disk_hits, 1);
}

fn reject_case(damage: impl FnOnce(&std::path::Path)) {
    let dir = tempfile::tempdir().unwrap();
    let bytes = read(ECHO);
    let first = cached_runtime(dir.path());
    let digest = first.compile("echo.wasm", &bytes).unwrap().info.digest;
    let entry = first.cache_entry(&digest).unwrap();
    damage(&entry);

    let second = cached_runtime(dir.path());
    let again = second.compile("echo.wasm", &bytes).unwrap();
    assert_eq!(
        again.source,
        Source::Compiled,
        "a bad entry is recompiled, never trusted"
    );
    assert_eq!(second.stats().disk_rejected, 1);
    assert_eq!(second.stats().compilations, 1);
    // And the rewritten entry is good again.
    let third = cached_runtime(dir.path());
    assert_eq!(
        third.compile("echo.wasm", &bytes).unwrap().source,
        Source::Disk
    );
}

#[test]
fn a_corrupt_entry_is_recompiled() {
    reject_case(|entry| {
        let mut data = std::fs::read(entry).unwrap();
        let mid = data.len() / 2;
        data[mid] ^= 0xff;
        std::fs::write(entry, data).unwrap();
    });
}

#[test]
fn a_truncated_entry_is_recompiled() {
    reject_case(|entry| {
        let data = std::fs::read(entry).unwrap();
        std::fs::write(entry, &data[..data.len() - 100]).unwrap();
    });
}

#[test]
fn a_foreign_file_is_recompiled() {
    reject_case(|entry| std::fs::write(entry, b"#!/bin/sh\necho not compiled code\n").unwrap());
}

#[test]
fn a_stale_entry_with_a_valid_checksum_is_recompiled() {
    // Code compiled by an engine with other settings, in a well-formed entry
    // under this engine's name: its checksum holds, wasmtime refuses it.
    let fuel_dir = tempfile::tempdir().unwrap();
    let bytes = read(ECHO);
    let fuel = Runtime::new(
        RuntimeConfig::default()
            .fuel(true)
            .cache_dir(fuel_dir.path())
            .max_instances(4),
    )
    .unwrap();
    let digest = fuel.compile("echo.wasm", &bytes).unwrap().info.digest;
    let foreign = std::fs::read(fuel.cache_entry(&digest).unwrap()).unwrap();
    reject_case(move |entry| std::fs::write(entry, &foreign).unwrap());
}

#[test]
fn another_components_entry_is_recompiled() {
    // A valid artifact under the wrong name would run another component's
    // code: the entry names the component it was compiled from.
    let dir = tempfile::tempdir().unwrap();
    let first = cached_runtime(dir.path());
    let counter = read(COUNTER);
    let counter_digest = first.compile("counter.wasm", &counter).unwrap().info.digest;
    let echo_digest = first.compile("echo.wasm", &read(ECHO)).unwrap().info.digest;
    std::fs::copy(
        first.cache_entry(&echo_digest).unwrap(),
        first.cache_entry(&counter_digest).unwrap(),
    )
    .unwrap();

    let second = cached_runtime(dir.path());
    assert_eq!(
        second.compile("counter.wasm", &counter).unwrap().source,
        Source::Compiled
    );
    assert_eq!(second.stats().disk_rejected, 1);
}

#[test]
fn a_world_writable_cache_dir_is_refused() {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = Runtime::new(
            RuntimeConfig::default()
                .cache_dir(dir.path())
                .max_instances(1),
        )
        .unwrap_err();
        assert!(err.to_string().contains("writable by others"), "{err}");
    }
}
