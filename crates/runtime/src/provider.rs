//! Custom capabilities: host extensions an embedder adds, each granted as
//! `custom:NAME:JSON` and enforced like our own interfaces.
//!
//! A provider names its capability, lists the WIT interfaces it serves,
//! links their host functions, and builds each store's state from the
//! grant's JSON parameters. A component that imports one of its interfaces
//! without the grant is refused before it runs; parameters the provider
//! refuses refuse the component too. Inside a call, the provider's host
//! functions read their state with [`StoreCtx::provider_state`] and record
//! the denials they make with [`StoreCtx::deny`].
//!
//! ```no_run
//! use airssys_wasm_runtime::{CapabilityProvider, StoreCtx};
//! use wasmtime::component::Linker;
//!
//! /// `custom:acme-clock:{"offset_s": N}`: a clock that runs N seconds ahead.
//! struct Skewed;
//!
//! impl CapabilityProvider for Skewed {
//!     fn name(&self) -> &str {
//!         "acme-clock"
//!     }
//!     fn interfaces(&self) -> Vec<String> {
//!         vec!["acme:clock/skewed".into()]
//!     }
//!     fn link(&self, linker: &mut Linker<StoreCtx>) -> wasmtime::Result<()> {
//!         linker.instance("acme:clock/skewed@0.1.0")?.func_wrap(
//!             "now",
//!             |mut store: wasmtime::StoreContextMut<'_, StoreCtx>, (): ()| {
//!                 let offset = store.data_mut().provider_state::<i64>("acme-clock").copied();
//!                 Ok((offset.unwrap_or(0),))
//!             },
//!         )?;
//!         Ok(())
//!     }
//!     fn store_state(
//!         &self,
//!         params: &serde_json::Value,
//!     ) -> Result<Box<dyn std::any::Any + Send>, String> {
//!         let offset = params["offset_s"].as_i64().ok_or("`offset_s` must be an integer")?;
//!         Ok(Box::new(offset))
//!     }
//! }
//! ```

use std::any::Any;
use std::sync::Arc;

use wasmtime::component::Linker;

/// The store data of every call; providers' host functions receive it.
pub use crate::host::HostCtx as StoreCtx;

/// A host extension serving a custom capability.
pub trait CapabilityProvider: Send + Sync + 'static {
    /// The capability's name: `custom:NAME:JSON` grants it.
    fn name(&self) -> &str;

    /// The WIT interfaces it serves, without version
    /// (`acme:ledger/accounts`). A component importing one needs the grant.
    fn interfaces(&self) -> Vec<String>;

    /// Add the interfaces' host functions to the runtime's linker (once,
    /// when the runtime is built).
    fn link(&self, linker: &mut Linker<StoreCtx>) -> wasmtime::Result<()>;

    /// The state one store (one call) gets, from the grant's parameters.
    /// Called once at preparation to check the parameters (an error refuses
    /// the component), then for each store; keep it cheap.
    fn store_state(&self, params: &serde_json::Value) -> Result<Box<dyn Any + Send>, String>;
}

/// A registered provider (cheap to clone).
#[derive(Clone)]
pub struct Provider(pub(crate) Arc<dyn CapabilityProvider>);

impl Provider {
    /// Wrap `provider`.
    pub fn new(provider: impl CapabilityProvider) -> Self {
        Self(Arc::new(provider))
    }

    /// Its capability's name.
    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// Whether `import` (an interface name, maybe with `@version`) is one
    /// of its interfaces.
    pub(crate) fn serves(&self, import: &str) -> bool {
        let bare = import.split('@').next().unwrap_or(import);
        self.0.interfaces().iter().any(|i| i == bare)
    }
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.0.name())
            .field("interfaces", &self.0.interfaces())
            .finish()
    }
}

impl PartialEq for Provider {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Provider {}
