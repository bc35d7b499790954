//! Messages between components, through the host: a component's
//! `messaging` imports hand each message, once its grant is checked, to the
//! [`Messenger`] the embedder gives
//! [`RuntimeConfig::messenger`](crate::RuntimeConfig::messenger), which finds
//! the target and runs it. A runtime without one answers `unavailable`.
//!
//! Each message carries the chain of components it passed through, in the
//! header [`CHAIN_HEADER`] of the message the target receives; a message
//! that would make the chain longer than [`HOP_LIMIT`] is refused.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::{ComponentError, Message};

/// The header carrying the components a message passed through, oldest
/// first, comma-separated. Set by the host on every delivery.
pub const CHAIN_HEADER: &str = ":airssys-chain";

/// How many components a chain of messages may pass through.
pub const HOP_LIMIT: usize = 8;

/// How a message is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delivery {
    /// Fire and forget: accepted for delivery, handled later.
    Send,
    /// Handled now; its answer is awaited up to the timeout.
    Request {
        /// How long the sender waits for the answer.
        timeout: Duration,
    },
    /// To every subscriber of a topic.
    Publish,
}

/// One message on its way.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Envelope {
    /// The sending component.
    pub from: String,
    /// The components the message passed through, the sender last.
    pub chain: Vec<String>,
    /// The component (or topic, for a publish) it goes to.
    pub target: String,
    /// How it goes.
    pub delivery: Delivery,
    /// The message, with the chain header set to `chain`.
    pub message: Message,
}

/// What a delivery gives: the answer of a request, nothing otherwise.
pub type Delivered = Pin<Box<dyn Future<Output = Result<Option<Message>, ComponentError>> + Send>>;

/// Where a runtime's components' messages go: the host's registry of
/// components. Called after the sender's grant is checked.
pub trait Messenger: Send + Sync + std::fmt::Debug + 'static {
    /// Deliver `envelope`: run the target for a request and answer what it
    /// answered; accept a send or a publish. A target that does not exist
    /// is `not-found`, a request that is not answered in time `timeout`, a
    /// target that traps or fails `failed`.
    fn deliver(&self, envelope: Envelope) -> Delivered;
}

/// The chain a message with `headers` passed through.
pub(crate) fn chain_of(headers: &[(String, String)]) -> Vec<String> {
    headers
        .iter()
        .find(|(k, _)| k == CHAIN_HEADER)
        .map(|(_, v)| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// `message` with its chain header set to `chain`.
pub(crate) fn with_chain(mut message: Message, chain: &[String]) -> Message {
    message.headers.retain(|(k, _)| k != CHAIN_HEADER);
    message
        .headers
        .push((CHAIN_HEADER.to_string(), chain.join(",")));
    message
}
