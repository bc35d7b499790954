//! Integration tests of the runtime, against real components built from
//! source by `airssys-wasm-test-guests`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests and their helpers fail by panicking"
)]

mod cache;
mod contract;
mod dynamic;
mod handler;
mod limits;
mod malformed;
mod tls;
mod worlds;

use std::sync::OnceLock;
use std::time::Duration;

use airssys_wasm_runtime::{
    Capability, ComponentPre, Grants, Limits, Message, PrepareOptions, Runtime, RuntimeConfig,
};

/// One runtime for the tests that need no special engine settings.
pub(crate) fn runtime() -> Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| Runtime::new(RuntimeConfig::default().max_instances(64)).unwrap())
        .clone()
}

/// Options that grant what the test guests require (`state`, `config`).
pub(crate) fn opts() -> PrepareOptions {
    PrepareOptions::default().grants(
        Grants::default()
            .allow(Capability::SystemCall("state".into()))
            .allow(Capability::SystemCall("config".into()))
            .allow("messaging:send:other".parse::<Capability>().unwrap())
            .allow("messaging:publish:news".parse::<Capability>().unwrap()),
    )
}

/// Limits sized for tests: small memory, short timeout.
pub(crate) fn test_limits() -> Limits {
    Limits::default()
        .memory(32 << 20)
        .timeout(Duration::from_secs(10))
}

pub(crate) fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub(crate) async fn load(path: &str, options: PrepareOptions) -> ComponentPre {
    load_in(&runtime(), path, options).await
}

pub(crate) async fn load_in(rt: &Runtime, path: &str, options: PrepareOptions) -> ComponentPre {
    let name = std::path::Path::new(path)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    rt.load(&name, &read(path), options)
        .await
        .unwrap_or_else(|e| panic!("loading {path}: {e}"))
}

pub(crate) fn text(s: &str) -> Message {
    Message::new(s.as_bytes().to_vec())
}
