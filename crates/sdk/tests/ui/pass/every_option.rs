// The expansion compiles cleanly under the strictest crate lints.
#![forbid(unsafe_code)]
#![deny(warnings, missing_docs)]
//! A component using every key of the attribute and every capability kind.

use airssys_wasm_sdk::{ComponentError, Handler, HealthStatus, Lifecycle, Message, component};

#[component(
    name = "every-option-2",
    version = "1.0.0-rc.1",
    description = "Uses every key and every capability kind",
    capabilities = [
        "file-read:/data",
        "file-write:/data/out",
        "network-outbound:api.example.com:443",
        "network-outbound:*.internal",
        "network-inbound:8080",
        "system-call:env:HOME",
        "system-call:env:*",
        "system-call:args",
        "system-call:stdin",
        "system-call:stdout",
        "system-call:stderr",
        "system-call:clock",
        "system-call:random",
        "system-call:dns",
        "system-call:config",
        "system-call:state",
        r#"custom:acme:ledger:{"accounts":["main"]}"#,
        "custom:acme:null",
    ],
    lifecycle,
)]
/// Attributes and docs on the struct are kept.
#[derive(Debug)]
struct Everything;

impl Lifecycle for Everything {
    fn health() -> HealthStatus {
        HealthStatus::Degraded("warming up".into())
    }
}

impl Handler for Everything {
    fn execute(input: Message) -> Result<Message, ComponentError> {
        Ok(input)
    }
}

fn main() {}
