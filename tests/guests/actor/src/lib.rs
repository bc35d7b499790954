//! A test component for actor hosting. Its memory lives as long as its
//! instance; its state as long as its deployment.
//!
//! - `count`: adds one to a counter in memory and one in state, and
//!   answers `memory M state S`;
//! - `panic`: traps (its instance stops; the message's writes are undone);
//! - `count-then-panic`: writes to state, then traps;
//! - `sleep MS`: sleeps MS milliseconds, then answers `slept`;
//! - `get KEY`: answers the state value at KEY (empty when missing);
//! - `error`: answers an error of its own (the instance keeps running).
//!
//! `init` adds one to state `inits` (and fails when config `fail-init` is
//! `true`), `shutdown` adds one to state `shutdowns`, `migrate(from)`
//! stores `migrated-from` (and fails when config `fail-migrate` is
//! `true`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use airssys_wasm_sdk::{ComponentError, Handler, Lifecycle, Message, component, config, state};

#[component(
    name = "actor",
    version = "0.1.0",
    description = "Keeps memory between messages when hosted as an actor, for actor tests",
    capabilities = ["system-call:state", "system-call:config"],
    lifecycle,
)]
struct Actor;

/// Messages this instance counted: memory, lost when the instance stops.
static MEMORY: AtomicU64 = AtomicU64::new(0);

fn setting(key: &str) -> Option<String> {
    config::get(key).ok().flatten()
}

impl Lifecycle for Actor {
    fn init(_config: Vec<(String, String)>) -> Result<(), ComponentError> {
        if setting("fail-init").as_deref() == Some("true") {
            return Err(ComponentError::InvalidInput(
                "actor: init refused because `fail-init` is `true`".to_owned(),
            ));
        }
        state::increment("inits", 1)?;
        Ok(())
    }

    fn shutdown() {
        let _ = state::increment("shutdowns", 1);
    }

    fn migrate(from_version: String) -> Result<(), ComponentError> {
        if setting("fail-migrate").as_deref() == Some("true") {
            return Err(ComponentError::Failed(format!(
                "actor: migrate from {from_version} refused because `fail-migrate` is `true`"
            )));
        }
        state::set("migrated-from", from_version.as_bytes())?;
        Ok(())
    }
}

fn count() -> Result<Message, ComponentError> {
    let memory = MEMORY.fetch_add(1, Ordering::Relaxed) + 1;
    let state = state::increment("count", 1)?;
    Ok(Message::text(format!("memory {memory} state {state}")))
}

impl Handler for Actor {
    fn execute(input: Message) -> Result<Message, ComponentError> {
        let text = input.payload_str()?.trim().to_owned();
        let (command, arg) = text.split_once(' ').unwrap_or((&text, ""));
        match command {
            "count" => count(),
            "panic" => panic!("actor: asked to panic"),
            "count-then-panic" => {
                count()?;
                panic!("actor: asked to panic after counting")
            }
            "sleep" => {
                let ms = arg.parse().map_err(|_| {
                    ComponentError::InvalidInput(format!("sleep: `{arg}` is not milliseconds"))
                })?;
                std::thread::sleep(Duration::from_millis(ms));
                Ok(Message::text("slept"))
            }
            "get" => {
                let value = state::get(arg)?.unwrap_or_default();
                Ok(Message::text(String::from_utf8_lossy(&value).into_owned()))
            }
            "error" => Err(ComponentError::InvalidInput(
                "actor: asked for an error".to_owned(),
            )),
            other => Err(ComponentError::InvalidInput(format!(
                "actor: unknown command `{other}`"
            ))),
        }
    }
}
