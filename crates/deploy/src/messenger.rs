//! The deployer's routes as the runtime's [`Messenger`]: a message to a
//! component goes through its route, to its active version (or its canary's
//! share), as a call from the ingress does.

use std::collections::HashMap;
use std::sync::{RwLock, Weak};

use airssys_wasm_runtime::{
    ComponentError, Delivered, Delivery, Envelope, Messenger, describe_component_error,
};

use crate::router::Route;

/// Every component's route, by name.
pub(crate) type Routes = RwLock<HashMap<String, Route>>;

/// Messages delivered, by sender, target, delivery (`request`, `send`,
/// `publish`) and outcome (`ok` or the error's case): what a host's metrics
/// show.
#[derive(Debug, Default)]
pub struct MessageCounts(std::sync::Mutex<HashMap<MessageKey, u64>>);

/// What a message count is kept by: sender, target, delivery, outcome.
pub type MessageKey = (String, String, &'static str, &'static str);

impl MessageCounts {
    fn count(&self, key: MessageKey) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(key)
            .or_default() += 1;
    }

    /// Every count so far.
    pub fn snapshot(&self) -> Vec<(MessageKey, u64)> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(k, n)| (k.clone(), *n))
            .collect()
    }
}

/// Delivers to the routes of one deployer. It holds them weakly: the
/// routes hold the runtime, which holds this.
pub(crate) struct RouteMessenger {
    pub(crate) routes: Weak<Routes>,
    pub(crate) counts: std::sync::Arc<MessageCounts>,
}

impl std::fmt::Debug for RouteMessenger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RouteMessenger(..)")
    }
}

impl Messenger for RouteMessenger {
    fn deliver(&self, envelope: Envelope) -> Delivered {
        if envelope.delivery == Delivery::Publish {
            return self.publish(envelope);
        }
        let route = self.routes.upgrade().and_then(|routes| {
            routes
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&envelope.target)
                .cloned()
        });
        let counts = self.counts.clone();
        let key = (
            envelope.from.clone(),
            envelope.target.clone(),
            match envelope.delivery {
                Delivery::Request { .. } => "request",
                Delivery::Send => "send",
                _ => "publish",
            },
        );
        Box::pin(async move {
            let r = deliver(route, envelope).await;
            counts.count((key.0, key.1, key.2, outcome(&r)));
            r
        })
    }
}

/// How a delivery ended, as counted: `ok` or the error's case.
fn outcome<T>(r: &Result<T, ComponentError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(ComponentError::NotFound(_)) => "not-found",
        Err(ComponentError::Timeout(_)) => "timeout",
        Err(ComponentError::Unavailable(_)) => "unavailable",
        Err(ComponentError::Failed(_)) => "failed",
        Err(ComponentError::Cycle(_)) => "cycle",
        Err(ComponentError::MailboxFull(_)) => "mailbox-full",
        Err(ComponentError::QuotaExceeded(_)) => "quota-exceeded",
        Err(_) => "refused",
    }
}

/// The header naming the topic a published message came on.
pub const TOPIC_HEADER: &str = ":airssys-topic";

impl RouteMessenger {
    /// Hand a published message to every deployment subscribed to its
    /// topic, once each (an actor's to one of its instances), as a send:
    /// accepted when each subscriber's mailbox took it. Nobody subscribed
    /// is no error; subscribers that did not take it are, named, after the
    /// others got it.
    fn publish(&self, envelope: Envelope) -> Delivered {
        let topic = envelope.target.clone();
        let subscribers: Vec<(String, Route)> = self
            .routes
            .upgrade()
            .map(|routes| {
                routes
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .iter()
                    .filter(|(_, r)| r.current().is_some_and(|a| subscribed(&a, &topic)))
                    .map(|(n, r)| (n.clone(), r.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let counts = self.counts.clone();
        Box::pin(async move {
            if subscribers.is_empty() {
                // Counted by topic, so a publish nobody hears shows.
                counts.count((envelope.from.clone(), topic, "publish", "no-subscribers"));
                return Ok(None);
            }
            let mut refused = Vec::new();
            for (name, route) in subscribers {
                let mut message = envelope.message.clone();
                message.headers.retain(|(k, _)| k != TOPIC_HEADER);
                message
                    .headers
                    .push((TOPIC_HEADER.to_string(), topic.clone()));
                let r = route
                    .send(message, None)
                    .await
                    .map_err(|e| as_component_error(&name, e));
                counts.count((envelope.from.clone(), name.clone(), "publish", outcome(&r)));
                if let Err(e) = r {
                    refused.push(format!("`{name}`: {}", describe_component_error(&e)));
                }
            }
            if refused.is_empty() {
                Ok(None)
            } else {
                Err(ComponentError::Unavailable(format!(
                    "topic `{topic}`: not taken by {}",
                    refused.join("; ")
                )))
            }
        })
    }
}

/// Whether `active` subscribes to `topic` (its subscriptions read as the
/// grant patterns they were checked as at deploy).
fn subscribed(active: &crate::Active, topic: &str) -> bool {
    use airssys_wasm_capability::messaging::{Grant, Op};
    active.deployment.spec.subscribe.iter().any(|pattern| {
        Grant::parse(&format!("subscribe:{pattern}")).is_ok_and(|g| g.covers(Op::Subscribe, topic))
    })
}

async fn deliver(
    route: Option<Route>,
    envelope: Envelope,
) -> Result<Option<airssys_wasm_runtime::Message>, ComponentError> {
    let target = envelope.target;
    let Some(route) = route.filter(|r| r.current().is_some()) else {
        return Err(ComponentError::NotFound(format!(
            "no component named `{target}` is deployed here"
        )));
    };
    // An actor, or a component that keeps state, handles one message at a
    // time: a message back to one waiting in this chain would wait for
    // itself.
    if envelope.chain.contains(&target) && route.current().is_some_and(|a| a.serial()) {
        return Err(ComponentError::Cycle(format!(
            "{} -> {target}, which handles one message at a time and waits in this chain",
            envelope.chain.join(" -> ")
        )));
    }
    match envelope.delivery {
        Delivery::Request { timeout } => {
            let served = route.execute_within(envelope.message, Some(timeout));
            match tokio::time::timeout(timeout, served).await {
                Err(_) => Err(ComponentError::Timeout(format!(
                    "`{target}` did not answer within {}",
                    humantime::format_duration(timeout)
                ))),
                Ok(Ok(served)) => Ok(Some(served.output.value)),
                Ok(Err(e)) => Err(as_component_error(&target, e)),
            }
        }
        _ => match route.send(envelope.message, None).await {
            Ok(()) => Ok(None),
            Err(e) => Err(as_component_error(&target, e)),
        },
    }
}

/// What the sender sees of a target's failure: its own error as it gave it;
/// a timeout or overload as such; anything else (a trap) as `failed`.
fn as_component_error(target: &str, e: crate::Error) -> ComponentError {
    use airssys_wasm_runtime::Error as R;
    match e {
        crate::Error::Component(R::Guest { error, .. }) => error,
        crate::Error::Component(R::Timeout { .. }) => {
            ComponentError::Timeout(format!("`{target}` ran out of time"))
        }
        crate::Error::Component(R::Overloaded { reason, .. }) => {
            ComponentError::Unavailable(format!("`{target}` is overloaded: {reason}"))
        }
        e @ crate::Error::MailboxFull { .. } => ComponentError::MailboxFull(e.to_string()),
        e @ crate::Error::ActorsFailed { .. } => ComponentError::Unavailable(e.to_string()),
        e => ComponentError::Failed(format!("`{target}` failed: {e}")),
    }
}
