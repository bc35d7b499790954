//! A test component that talks to other components through the host:
//!
//! - `relay TARGET REST`: asks TARGET to handle REST (waiting config
//!   `relay-timeout-ms`, default 5000) and answers `TARGET said: ANSWER`,
//!   or TARGET's error as its own;
//! - `tell TARGET REST`: sends REST to TARGET without waiting; answers
//!   `sent`;
//! - `publish TOPIC REST`: publishes REST on TOPIC; answers `published`;
//! - anything else: counts the call in its state and answers the count.
//!
//! It keeps state (a counter), so it runs one call at a time: a message
//! back to it from a chain it waits in is a cycle.

use std::time::Duration;

use airssys_wasm_sdk::{ComponentError, Handler, Message, component, config, messaging, state};

#[component(
    name = "relay",
    version = "0.1.0",
    description = "Asks other components through the host, for messaging tests",
    capabilities = [
        "system-call:state",
        "system-call:config",
        "messaging:request:*",
        "messaging:send:*",
        "messaging:publish:*",
    ],
)]
struct Relay;

impl Handler for Relay {
    fn execute(input: Message) -> Result<Message, ComponentError> {
        let text = input.payload_str()?.trim().to_owned();
        if let Some(rest) = text.strip_prefix("relay ") {
            let (target, inner) = rest.split_once(' ').unwrap_or((rest, ""));
            let wait = config::get("relay-timeout-ms")?
                .and_then(|ms| ms.parse().ok())
                .unwrap_or(5000);
            let reply =
                messaging::request(target, &Message::text(inner), Duration::from_millis(wait))?;
            return Ok(Message::text(format!(
                "{target} said: {}",
                String::from_utf8_lossy(&reply.payload)
            )));
        }
        if let Some(rest) = text.strip_prefix("tell ") {
            let (target, inner) = rest.split_once(' ').unwrap_or((rest, ""));
            messaging::send(target, &Message::text(inner))?;
            return Ok(Message::text("sent"));
        }
        if let Some(rest) = text.strip_prefix("publish ") {
            let (topic, inner) = rest.split_once(' ').unwrap_or((rest, ""));
            messaging::publish(topic, &Message::text(inner))?;
            return Ok(Message::text("published"));
        }
        Ok(Message::text(state::increment("count", 1)?.to_string()))
    }
}
