//! Long-lived instances (actor hosting).
//!
//! A per-call component gets a fresh instance for every call. An actor
//! keeps one instance, and its memory, from `init` to `shutdown`, and
//! handles one message at a time. Each message still runs under the
//! component's limits (its own timeout and fuel budget) and in its own
//! state transaction: the writes of a message that returns `Ok` are kept,
//! those of a message that traps, times out or returns an error are undone.
//!
//! A trap, a timeout or a limit leaves the instance broken (wasmtime does
//! not let a trapped instance be entered again, and a call cut at its
//! deadline stopped at an unknown point): [`ActorInstance::handle`] refuses
//! to run it again, and its supervisor starts a new one, whose `state` is
//! what the last good message kept.

use std::time::Instant;

use wasmtime::Store;
use wasmtime::component::{ComponentExportIndex, TypedFunc};

use crate::host::HostCtx;
use crate::output::OutputCapture;
use crate::prepared::{Kind, Stdio};
use crate::{CallOutput, ComponentError, ComponentPre, Error, HealthStatus, Message, Result};

/// `handler.execute` of the current contract, typed.
type Execute = TypedFunc<(Message,), (Result<Message, ComponentError>,)>;

/// One long-lived instance of a component: started with `init`, called
/// one message at a time, stopped with `shutdown`. Owned by the task that
/// hosts it (not `Sync`).
pub struct ActorInstance {
    pre: ComponentPre,
    store: Store<HostCtx>,
    instance: wasmtime::component::Instance,
    /// The contract it was built against, and its exports.
    contract: crate::contract::Version,
    lifecycle_contract: crate::contract::Version,
    execute: ComponentExportIndex,
    /// `execute` looked up once, for a component of the current contract
    /// (the hot path); an older one's is converted on each call.
    current_execute: Option<Execute>,
    health: Option<ComponentExportIndex>,
    shutdown: Option<TypedFunc<(), ()>>,
    output: (Option<OutputCapture>, Option<OutputCapture>),
    broken: Option<String>,
    handled: u64,
}

impl std::fmt::Debug for ActorInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActorInstance")
            .field("component", &self.pre.name())
            .field("handled", &self.handled)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl ComponentPre {
    /// Start a long-lived instance: instantiate it and run `init` with the
    /// component's configuration (an error refuses the instance). Only
    /// components of our contract can be hosted this way.
    pub async fn start_instance(&self) -> Result<ActorInstance> {
        let Kind::Airssys { execute, lifecycle } = &self.inner.kind else {
            return Err(self.not_a_handler());
        };
        let execute_idx = *execute;
        let init_idx = lifecycle.as_ref().map(|l| l.init);
        let shutdown_idx = lifecycle.as_ref().and_then(|l| l.shutdown);
        let health_idx = lifecycle.as_ref().map(|l| l.health);
        let config = self.inner.shared.config.clone();
        let v = self.contract();
        let lv = self.lifecycle_contract();
        let _state_turn = self.state_turn().await?;
        let start = Instant::now();
        let (mut store, stdout, stderr) = self.new_store(Stdio::Capture)?;
        let pre = &self.inner.pre;
        let started = self
            .run_on(
                &mut store,
                (&stdout, &stderr),
                start,
                |r: &(_, Result<(), ComponentError>)| r.1.is_ok(),
                async move |store| {
                    let instance = pre.instantiate_async(&mut *store).await?;
                    store.data_mut().instantiated = Some(Instant::now());
                    let init = match init_idx {
                        Some(idx) => {
                            crate::contract::init(lv, store, &instance, &idx, config).await?
                        }
                        None => Ok(()),
                    };
                    Ok((instance, init))
                },
            )
            .await?;
        let (instance, init) = started.value;
        if let Err(error) = init {
            return Err(Error::InitFailed {
                component: self.name().to_string(),
                error,
            });
        }
        let host = |e: wasmtime::Error| Error::Host {
            component: self.name().to_string(),
            context: "looking up its exports".into(),
            source: anyhow::anyhow!(e),
        };
        let shutdown = shutdown_idx
            .map(|idx| instance.get_typed_func::<(), ()>(&mut store, &idx))
            .transpose()
            .map_err(host)?;
        let current_execute = (v == crate::contract::Version::V2)
            .then(|| {
                instance.get_typed_func::<(Message,), (Result<Message, ComponentError>,)>(
                    &mut store,
                    &execute_idx,
                )
            })
            .transpose()
            .map_err(host)?;
        Ok(ActorInstance {
            pre: self.clone(),
            store,
            instance,
            contract: v,
            lifecycle_contract: lv,
            execute: execute_idx,
            current_execute,
            health: health_idx,
            shutdown,
            output: (stdout, stderr),
            broken: None,
            handled: 0,
        })
    }
}

impl ActorInstance {
    /// The component this instance runs.
    pub fn component(&self) -> &ComponentPre {
        &self.pre
    }

    /// Why the instance cannot run again (a trap, a timeout, a limit), if
    /// it cannot.
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    /// Whether a grant its authority rests on has ended: it should be
    /// replaced by an instance started now, under the authority decided
    /// again.
    pub fn is_stale(&self) -> bool {
        self.store
            .data()
            .grant_ends
            .is_some_and(|t| Instant::now() >= t)
    }

    /// Messages this instance handled, well or not.
    pub fn handled(&self) -> u64 {
        self.handled
    }

    /// Handle one message: `handler.execute` on this instance, under the
    /// component's timeout and fuel budget, in its own state transaction.
    /// A trap, a timeout or a limit breaks the instance (see
    /// [`ActorInstance::broken`]); the component's own error does not.
    pub async fn handle(&mut self, input: Message) -> Result<CallOutput<Message>> {
        if let Some(why) = &self.broken {
            return Err(Error::Unsupported {
                component: self.pre.name().to_string(),
                reason: format!("this instance stopped ({why}); start another"),
            });
        }
        self.handled += 1;
        let pre = self.pre.clone();
        let _state_turn = pre.state_turn().await?;
        let start = Instant::now();
        let limits = pre.limits();
        if pre.inner.runtime.config().fuel {
            // Each message gets the whole budget, as a call would.
            let _ = self.store.set_fuel(limits.fuel.unwrap_or(u64::MAX));
        }
        let ctx = self.store.data_mut();
        ctx.next_call(limits.timeout_at());
        ctx.instantiated = Some(start);
        ctx.chain = crate::messaging::chain_of(&input.headers);
        let (v, instance, execute) = (self.contract, self.instance, self.execute);
        let current = self.current_execute;
        let out = pre
            .run_on(
                &mut self.store,
                (&self.output.0, &self.output.1),
                start,
                Result::is_ok,
                async move |store| match current {
                    Some(f) => Ok(f.call_async(&mut *store, (input,)).await?.0),
                    None => crate::contract::execute(v, store, &instance, &execute, input).await,
                },
            )
            .await
            .inspect_err(|e| {
                // A state commit that failed leaves the instance as it was;
                // anything else (a trap, a timeout, a limit) stopped it
                // where it stood.
                if !matches!(e, Error::Host { .. }) {
                    self.broken = Some(e.to_string());
                }
            })?;
        out.answered(pre.name())
    }

    /// Ask this instance whether it can serve (`lifecycle.health`, under
    /// the component's timeout; healthy for a component without a
    /// lifecycle).
    pub async fn health(&mut self) -> Result<HealthStatus> {
        let Some(health) = self.health else {
            return Ok(HealthStatus::Healthy);
        };
        let (v, instance) = (self.lifecycle_contract, self.instance);
        let pre = self.pre.clone();
        self.store.data_mut().next_call(pre.limits().timeout_at());
        let out = pre
            .run_on(
                &mut self.store,
                (&self.output.0, &self.output.1),
                Instant::now(),
                |_| true,
                async move |store| crate::contract::health(v, store, &instance, &health).await,
            )
            .await
            .inspect_err(|e| self.broken = Some(e.to_string()))?;
        Ok(out.value)
    }

    /// Stop the instance: `shutdown` runs (under the component's timeout)
    /// unless the instance is broken. What it writes to `state` is kept.
    pub async fn stop(mut self) {
        let Some(shutdown) = self.shutdown.filter(|_| self.broken.is_none()) else {
            return;
        };
        let pre = self.pre.clone();
        let Ok(_state_turn) = pre.state_turn().await else {
            tracing::warn!(component = %pre.name(), "shutdown skipped: the state stayed busy past the timeout");
            return;
        };
        if pre.inner.runtime.config().fuel {
            let _ = self.store.set_fuel(pre.limits().fuel.unwrap_or(u64::MAX));
        }
        self.store.data_mut().next_call(pre.limits().timeout_at());
        let r = pre
            .run_on(
                &mut self.store,
                (&self.output.0, &self.output.1),
                Instant::now(),
                |_| true,
                async move |store| shutdown.call_async(&mut *store, ()).await,
            )
            .await;
        if let Err(e) = r {
            tracing::warn!(component = %pre.name(), error = %e, "shutdown failed");
        }
    }
}
