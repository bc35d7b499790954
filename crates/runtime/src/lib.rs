//! The airssys-wasm host runtime.
//!
//! Loads WebAssembly components, compiles each once per content hash (with a
//! verified on-disk cache), and calls them in fresh, pooled instances under
//! enforced limits: memory, fuel, a wall-clock timeout that covers time
//! blocked in the host, concurrent instances, table elements, host
//! resources, log volume, captured output and state size.
//!
//! Key types: [`Runtime`] (one per process), [`ComponentPre`] (a component
//! ready to be called), [`Limits`], [`Error`].
//!
//! Components of three worlds are hosted: our contract
//! (`airssys:component`, called through [`ComponentPre::execute`]),
//! `wasi:cli/command` ([`ComponentPre::run`]) and `wasi:http/proxy`
//! ([`ComponentPre::handle_http`]); any exported function of any component
//! can be called by name with JSON arguments ([`ComponentPre::call_json`]).
//!
//! ```no_run
//! use airssys_wasm_runtime::{Message, PrepareOptions, Runtime, RuntimeConfig};
//!
//! # async fn demo() -> Result<(), airssys_wasm_runtime::Error> {
//! let runtime = Runtime::new(RuntimeConfig::default())?;
//! let bytes = std::fs::read("echo.wasm").map_err(|e| airssys_wasm_runtime::Error::Io {
//!     path: "echo.wasm".into(),
//!     source: e,
//! })?;
//! let echo = runtime.load("echo.wasm", &bytes, PrepareOptions::default()).await?;
//! let out = echo
//!     .execute(Message { payload: b"hi".to_vec(), content_type: None, headers: vec![] })
//!     .await?;
//! assert_eq!(out.value.payload, b"hi");
//! # Ok(())
//! # }
//! ```

mod actor;
mod audit;
mod cache;
mod component;
mod config;
mod contract;
mod dynamic;
mod error;
mod host;
mod messaging;
mod net;
mod output;
mod policy;
mod prepared;
mod provider;
mod runtime;

/// Host bindings generated from the contract in `wit/`.
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "airssys:component/component",
        imports: {
            // Messages to other components wait for them.
            "airssys:component/messaging.send": async | trappable,
            "airssys:component/messaging.request": async | trappable,
            "airssys:component/messaging.publish": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        with: {
            "wasi:keyvalue/store.bucket": crate::host::Bucket,
        },
    });
}

pub use actor::ActorInstance;
pub use airssys_wasm_capability::Capability;
pub use audit::{AuditEvent, AuditSink, Decision, PER_MINUTE as AUDIT_PER_MINUTE};
pub use bindings::airssys::component::types::{
    Capability as WitCapability, ComponentError, ComponentMetadata, CustomCapability, HealthStatus,
    Message,
};
pub use cache::{Digest, Source, Stats};
pub use component::{
    CAPABILITIES_SECTION, Compiled, ComponentInfo, EmbeddedMetadata, METADATA_SECTION, WorldKind,
    wit_text,
};
pub use config::{Limits, RuntimeConfig};
pub use error::{Error, Result, describe_component_error};
pub use host::{LogRecord, StateBackend};
pub use messaging::{CHAIN_HEADER, Delivered, Delivery, Envelope, HOP_LIMIT, Messenger};
pub use policy::{AMBIENT, Authority, Grant, Grants, HostPolicy, grant_hint};
pub use prepared::{CallOutput, ComponentPre, PrepareOptions, Timings};
pub use provider::{CapabilityProvider, Provider, StoreCtx};
pub use runtime::Runtime;

/// The capability a contract value names. Parameters of a custom
/// capability that are not JSON are kept as a JSON string.
pub fn capability_from_wit(c: &WitCapability) -> Capability {
    match c {
        WitCapability::FileRead(p) => Capability::FileRead(p.into()),
        WitCapability::FileWrite(p) => Capability::FileWrite(p.into()),
        WitCapability::NetworkOutbound(h) => Capability::NetworkOutbound(h.clone()),
        WitCapability::NetworkInbound(p) => Capability::NetworkInbound(*p),
        WitCapability::SystemCall(n) => Capability::SystemCall(n.clone()),
        WitCapability::Custom(c) => Capability::Custom(
            c.name.clone(),
            serde_json::from_str(&c.json)
                .unwrap_or_else(|_| serde_json::Value::String(c.json.clone())),
        ),
    }
}

impl Message {
    /// A message with `payload` and nothing else.
    pub fn new(payload: impl Into<Vec<u8>>) -> Self {
        Self {
            payload: payload.into(),
            content_type: None,
            headers: Vec::new(),
        }
    }

    /// The first header named `name` (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}
