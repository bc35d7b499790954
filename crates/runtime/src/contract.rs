//! The versions of our contract the host links.
//!
//! `wit/` holds the current contract, `airssys:component@0.2.0`, whose
//! types the runtime uses everywhere ([`crate::Message`],
//! [`crate::ComponentError`]...). `wit/0.1.0/` keeps the contract as it
//! shipped at 0.1.0: a component built against it runs unchanged. Its
//! values are converted at the boundary (the same records and variants,
//! distinct Rust types), and the errors new in 0.2.0 reach it as cases it
//! knows, their text prefixed with the case's name: `cycle` and
//! `mailbox-full` as `unavailable`, `quota-exceeded` as `failed`.

use wasmtime::Store;
use wasmtime::component::{ComponentExportIndex, HasSelf, Instance, Linker};

use crate::bindings::airssys::component::types as now;
use crate::host::HostCtx;

/// Host bindings of the contract as shipped at 0.1.0. The WASI interfaces
/// are the current bindings' (the same packages).
pub(crate) mod v1 {
    wasmtime::component::bindgen!({
        path: "../../wit/0.1.0",
        world: "airssys:component/component",
        imports: {
            "airssys:component/messaging.send": async | trappable,
            "airssys:component/messaging.request": async | trappable,
            "airssys:component/messaging.publish": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        with: {
            "wasi:logging/logging": crate::bindings::wasi::logging::logging,
            "wasi:config/store": crate::bindings::wasi::config::store,
            "wasi:keyvalue/store": crate::bindings::wasi::keyvalue::store,
            "wasi:keyvalue/atomics": crate::bindings::wasi::keyvalue::atomics,
            "wasi:keyvalue/batch": crate::bindings::wasi::keyvalue::batch,
        },
    });
}

use v1::airssys::component::types as old;

/// Which contract a component was built against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    /// `airssys:component@0.1.x`.
    V1,
    /// `airssys:component@0.2.x`, the current one.
    V2,
}

impl Version {
    /// The version an export of ours (`airssys:component/handler@0.1.0`)
    /// names.
    pub(crate) fn of_export(export: &str) -> Self {
        if export
            .split_once('@')
            .is_some_and(|(_, v)| v.starts_with("0.1."))
        {
            Self::V1
        } else {
            Self::V2
        }
    }
}

/// Link the interfaces of the older contracts beside the current one.
pub(crate) fn add_to_linker(linker: &mut Linker<HostCtx>) -> wasmtime::Result<()> {
    v1::airssys::component::types::add_to_linker::<HostCtx, HasSelf<HostCtx>>(linker, |c| c)?;
    v1::airssys::component::messaging::add_to_linker::<HostCtx, HasSelf<HostCtx>>(linker, |c| c)
}

fn message_from_v1(m: old::Message) -> now::Message {
    now::Message {
        payload: m.payload,
        content_type: m.content_type,
        headers: m.headers,
    }
}

fn message_to_v1(m: now::Message) -> old::Message {
    old::Message {
        payload: m.payload,
        content_type: m.content_type,
        headers: m.headers,
    }
}

fn capability_from_v1(c: old::Capability) -> now::Capability {
    match c {
        old::Capability::FileRead(p) => now::Capability::FileRead(p),
        old::Capability::FileWrite(p) => now::Capability::FileWrite(p),
        old::Capability::NetworkOutbound(p) => now::Capability::NetworkOutbound(p),
        old::Capability::NetworkInbound(p) => now::Capability::NetworkInbound(p),
        old::Capability::SystemCall(s) => now::Capability::SystemCall(s),
        old::Capability::Custom(c) => now::Capability::Custom(now::CustomCapability {
            name: c.name,
            json: c.json,
        }),
    }
}

fn capability_to_v1(c: now::Capability) -> old::Capability {
    match c {
        now::Capability::FileRead(p) => old::Capability::FileRead(p),
        now::Capability::FileWrite(p) => old::Capability::FileWrite(p),
        now::Capability::NetworkOutbound(p) => old::Capability::NetworkOutbound(p),
        now::Capability::NetworkInbound(p) => old::Capability::NetworkInbound(p),
        now::Capability::SystemCall(s) => old::Capability::SystemCall(s),
        now::Capability::Custom(c) => old::Capability::Custom(old::CustomCapability {
            name: c.name,
            json: c.json,
        }),
    }
}

fn error_from_v1(e: old::ComponentError) -> now::ComponentError {
    match e {
        old::ComponentError::InvalidInput(d) => now::ComponentError::InvalidInput(d),
        old::ComponentError::Denied(c) => now::ComponentError::Denied(capability_from_v1(c)),
        old::ComponentError::NotFound(d) => now::ComponentError::NotFound(d),
        old::ComponentError::Unavailable(d) => now::ComponentError::Unavailable(d),
        old::ComponentError::Timeout(d) => now::ComponentError::Timeout(d),
        old::ComponentError::Unsupported(d) => now::ComponentError::Unsupported(d),
        old::ComponentError::Failed(d) => now::ComponentError::Failed(d),
    }
}

/// An error as a 0.1.0 component sees it: the cases new in 0.2.0 become
/// the nearest it knows, their text kept and named.
pub(crate) fn error_to_v1(e: now::ComponentError) -> old::ComponentError {
    match e {
        now::ComponentError::InvalidInput(d) => old::ComponentError::InvalidInput(d),
        now::ComponentError::Denied(c) => old::ComponentError::Denied(capability_to_v1(c)),
        now::ComponentError::NotFound(d) => old::ComponentError::NotFound(d),
        now::ComponentError::Unavailable(d) => old::ComponentError::Unavailable(d),
        now::ComponentError::Timeout(d) => old::ComponentError::Timeout(d),
        now::ComponentError::Unsupported(d) => old::ComponentError::Unsupported(d),
        now::ComponentError::Failed(d) => old::ComponentError::Failed(d),
        now::ComponentError::Cycle(d) => old::ComponentError::Unavailable(format!("cycle: {d}")),
        now::ComponentError::MailboxFull(d) => {
            old::ComponentError::Unavailable(format!("mailbox full: {d}"))
        }
        now::ComponentError::QuotaExceeded(d) => {
            old::ComponentError::Failed(format!("quota exceeded: {d}"))
        }
    }
}

fn health_from_v1(h: old::HealthStatus) -> now::HealthStatus {
    match h {
        old::HealthStatus::Healthy => now::HealthStatus::Healthy,
        old::HealthStatus::Degraded(d) => now::HealthStatus::Degraded(d),
        old::HealthStatus::Unhealthy(d) => now::HealthStatus::Unhealthy(d),
    }
}

fn metadata_from_v1(m: old::ComponentMetadata) -> now::ComponentMetadata {
    now::ComponentMetadata {
        name: m.name,
        version: m.version,
        description: m.description,
        required_capabilities: m
            .required_capabilities
            .into_iter()
            .map(capability_from_v1)
            .collect(),
    }
}

type Answer<T> = wasmtime::Result<Result<T, now::ComponentError>>;

/// `handler.execute(input)` on `instance`, in the contract it was built
/// against.
pub(crate) async fn execute(
    version: Version,
    store: &mut Store<HostCtx>,
    instance: &Instance,
    index: &ComponentExportIndex,
    input: now::Message,
) -> Answer<now::Message> {
    match version {
        Version::V2 => {
            let f = instance
                .get_typed_func::<(now::Message,), (Result<now::Message, now::ComponentError>,)>(
                    &mut *store,
                    index,
                )?;
            Ok(f.call_async(&mut *store, (input,)).await?.0)
        }
        Version::V1 => {
            let f = instance
                .get_typed_func::<(old::Message,), (Result<old::Message, old::ComponentError>,)>(
                    &mut *store,
                    index,
                )?;
            let (r,) = f.call_async(&mut *store, (message_to_v1(input),)).await?;
            Ok(r.map(message_from_v1).map_err(error_from_v1))
        }
    }
}

/// `lifecycle.init(config)`.
pub(crate) async fn init(
    version: Version,
    store: &mut Store<HostCtx>,
    instance: &Instance,
    index: &ComponentExportIndex,
    config: Vec<(String, String)>,
) -> Answer<()> {
    one_arg_unit(version, store, instance, index, config).await
}

/// `lifecycle.migrate(from-version)`.
pub(crate) async fn migrate(
    version: Version,
    store: &mut Store<HostCtx>,
    instance: &Instance,
    index: &ComponentExportIndex,
    from: String,
) -> Answer<()> {
    one_arg_unit(version, store, instance, index, from).await
}

/// A function of one argument (the same in every version) answering
/// `result<_, component-error>`.
async fn one_arg_unit<A>(
    version: Version,
    store: &mut Store<HostCtx>,
    instance: &Instance,
    index: &ComponentExportIndex,
    arg: A,
) -> Answer<()>
where
    A: wasmtime::component::ComponentType + wasmtime::component::Lower + Send + Sync + 'static,
{
    match version {
        Version::V2 => {
            let f = instance
                .get_typed_func::<(A,), (Result<(), now::ComponentError>,)>(&mut *store, index)?;
            Ok(f.call_async(&mut *store, (arg,)).await?.0)
        }
        Version::V1 => {
            let f = instance
                .get_typed_func::<(A,), (Result<(), old::ComponentError>,)>(&mut *store, index)?;
            Ok(f.call_async(&mut *store, (arg,))
                .await?
                .0
                .map_err(error_from_v1))
        }
    }
}

/// `lifecycle.health()`.
pub(crate) async fn health(
    version: Version,
    store: &mut Store<HostCtx>,
    instance: &Instance,
    index: &ComponentExportIndex,
) -> wasmtime::Result<now::HealthStatus> {
    match version {
        Version::V2 => {
            let f = instance.get_typed_func::<(), (now::HealthStatus,)>(&mut *store, index)?;
            Ok(f.call_async(&mut *store, ()).await?.0)
        }
        Version::V1 => {
            let f = instance.get_typed_func::<(), (old::HealthStatus,)>(&mut *store, index)?;
            Ok(health_from_v1(f.call_async(&mut *store, ()).await?.0))
        }
    }
}

/// `lifecycle.metadata()`.
pub(crate) async fn metadata(
    version: Version,
    store: &mut Store<HostCtx>,
    instance: &Instance,
    index: &ComponentExportIndex,
) -> wasmtime::Result<now::ComponentMetadata> {
    match version {
        Version::V2 => {
            let f = instance.get_typed_func::<(), (now::ComponentMetadata,)>(&mut *store, index)?;
            Ok(f.call_async(&mut *store, ()).await?.0)
        }
        Version::V1 => {
            let f = instance.get_typed_func::<(), (old::ComponentMetadata,)>(&mut *store, index)?;
            Ok(metadata_from_v1(f.call_async(&mut *store, ()).await?.0))
        }
    }
}

impl v1::airssys::component::types::Host for HostCtx {}

/// A 0.1.0 component's messages go through the current contract's host
/// functions (the same grants, chain and messenger).
impl v1::airssys::component::messaging::Host for HostCtx {
    async fn send(
        &mut self,
        target: String,
        msg: old::Message,
    ) -> wasmtime::Result<Result<(), old::ComponentError>> {
        let r = <Self as crate::bindings::airssys::component::messaging::Host>::send(
            self,
            target,
            message_from_v1(msg),
        )
        .await?;
        Ok(r.map_err(error_to_v1))
    }

    async fn request(
        &mut self,
        target: String,
        msg: old::Message,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<old::Message, old::ComponentError>> {
        let r = <Self as crate::bindings::airssys::component::messaging::Host>::request(
            self,
            target,
            message_from_v1(msg),
            timeout_ms,
        )
        .await?;
        Ok(r.map(message_to_v1).map_err(error_to_v1))
    }

    async fn publish(
        &mut self,
        topic: String,
        msg: old::Message,
    ) -> wasmtime::Result<Result<(), old::ComponentError>> {
        let r = <Self as crate::bindings::airssys::component::messaging::Host>::publish(
            self,
            topic,
            message_from_v1(msg),
        )
        .await?;
        Ok(r.map_err(error_to_v1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_new_in_0_2_reach_a_0_1_component_as_cases_it_knows() {
        let cases = [
            (
                now::ComponentError::Cycle("a -> b -> a".into()),
                "unavailable: cycle: a -> b -> a",
            ),
            (
                now::ComponentError::MailboxFull("b is overloaded".into()),
                "unavailable: mailbox full: b is overloaded",
            ),
            (
                now::ComponentError::QuotaExceeded("100 keys".into()),
                "failed: quota exceeded: 100 keys",
            ),
            (now::ComponentError::NotFound("c".into()), "not-found: c"),
        ];
        for (error, shown) in cases {
            let said = match error_to_v1(error) {
                old::ComponentError::Unavailable(d) => format!("unavailable: {d}"),
                old::ComponentError::Failed(d) => format!("failed: {d}"),
                old::ComponentError::NotFound(d) => format!("not-found: {d}"),
                other => format!("{other:?}"),
            };
            assert_eq!(said, shown);
        }
    }
}
