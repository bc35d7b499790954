//! Talk to other components through the host
//! (`airssys:component/messaging`). Targets and topics must be granted.
//! A host with deployed components (`airssys-wasm serve`) delivers a
//! `request` or `send` to the target's active version: a target that does
//! not exist is [`ComponentError::NotFound`], one that does not answer in
//! time [`ComponentError::Timeout`], one that traps
//! [`ComponentError::Failed`]; its own error comes back as it gave it; an
//! actor whose mailboxes stay full [`ComponentError::MailboxFull`]. A chain
//! of messages passes 8 components at most, and a message back to a
//! component that handles one message at a time and waits in the chain is
//! refused at once: both are [`ComponentError::Cycle`]. A host without a
//! registry (a single `run` or `call`) answers
//! [`ComponentError::Unavailable`].
//!
//! ```no_run
//! use std::time::Duration;
//! use airssys_wasm_sdk::{messaging, ComponentError, Message};
//!
//! fn ask_pricing() -> Result<Message, ComponentError> {
//!     messaging::request("pricing", &Message::text("quote"), Duration::from_secs(2))
//! }
//! ```

use std::time::Duration;

use crate::__private::bindings::airssys::component::messaging as wit;
use crate::{ComponentError, Message};

/// Deliver `message` to the component named `target` without waiting for it
/// to be handled.
pub fn send(target: &str, message: &Message) -> Result<(), ComponentError> {
    wit::send(target, message)
}

/// Deliver `message` to `target` and wait up to `timeout` for its answer
/// (millisecond precision, at most `u32::MAX` ms).
pub fn request(
    target: &str,
    message: &Message,
    timeout: Duration,
) -> Result<Message, ComponentError> {
    let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
    wit::request(target, message, timeout_ms)
}

/// Deliver `message` to every subscriber of `topic`.
pub fn publish(topic: &str, message: &Message) -> Result<(), ComponentError> {
    wit::publish(topic, message)
}
