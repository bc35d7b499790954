//! Counts its calls: each call adds one to the key `count` of the
//! component's state store, atomically, and answers with the new count as
//! text. Needs the capability `system-call:state`.

use airssys_wasm_sdk::{ComponentError, Handler, Message, component, state};

#[component(
    name = "counter",
    version = "0.1.0",
    description = "Counts its calls in state",
    capabilities = ["system-call:state"],
)]
struct Counter;

impl Handler for Counter {
    fn execute(_input: Message) -> Result<Message, ComponentError> {
        let count = state::increment("count", 1)?;
        Ok(Message::text(count.to_string()))
    }
}
