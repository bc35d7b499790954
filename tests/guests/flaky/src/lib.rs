//! A test component that keeps no state and fails or slows down as its
//! configuration says, so a canary can be tested against a real guest:
//!
//! - `fail-calls = true`: every call fails (`component-error::failed`);
//! - `delay-ms = N`: every call waits N milliseconds first.
//!
//! Otherwise it answers `ok`.

use std::time::Duration;

use airssys_wasm_sdk::{ComponentError, Handler, Message, component, config};

#[component(
    name = "flaky",
    version = "0.1.0",
    description = "Fails or slows down on demand, for canary tests",
    capabilities = ["system-call:config"],
)]
struct Flaky;

impl Handler for Flaky {
    fn execute(_input: Message) -> Result<Message, ComponentError> {
        if let Some(ms) = config::get("delay-ms")?.and_then(|v| v.parse::<u64>().ok()) {
            std::thread::sleep(Duration::from_millis(ms));
        }
        if config::get("fail-calls")?.as_deref() == Some("true") {
            return Err(ComponentError::Failed(
                "flaky: failing because `fail-calls` is `true`".into(),
            ));
        }
        Ok(Message::text("ok"))
    }
}
