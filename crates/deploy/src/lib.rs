//! The airssys-wasm deployment engine.
//!
//! A [`StateDir`] holds everything a host keeps between runs: the registry
//! database (`registry.db`, SQLite in WAL mode), content-addressed component
//! blobs (`blobs/`), the compiled-code cache (`cache/`) and the head of the
//! audit chain (`audit.head`). One process writes it at a time (a lock
//! file). The [`Registry`] publishes immutable versions: `(name, version)`
//! names the sha256 of the bytes forever; publishing the same bytes again is
//! a no-op, different bytes are refused. Every change is appended to a
//! hash-chained [audit trail](audit) in the same transaction.
//!
//! ```no_run
//! use airssys_wasm_deploy::{Provenance, Registry, StateDir};
//!
//! # fn demo() -> Result<(), airssys_wasm_deploy::Error> {
//! let dir = StateDir::open("/var/lib/airssys-wasm")?;
//! let mut registry = Registry::open(&dir)?;
//! let bytes = std::fs::read("echo.wasm").map_err(|e| airssys_wasm_deploy::Error::io("echo.wasm", e))?;
//! let signature = airssys_wasm_deploy::signing::sign(&bytes, "release.key".as_ref())?;
//! let published =
//!     registry.publish("echo", "0.1.0", &bytes, &Provenance::signed(signature), "cli")?;
//! println!("{} {} is {}", published.name, published.version, published.digest);
//! registry.verify_audit()?;
//! # Ok(())
//! # }
//! ```

/// A place where the crash test (feature `failpoints`) may stop the
/// process with SIGKILL: before and after each persisted step.
macro_rules! crash_point {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        fail::fail_point!($name);
    };
}

mod actors;
pub use actors::{ActorPlan, ActorSpec, ActorStatus, Actors, Hosting, MAX_INSTANCES, Supervision};
pub mod audit;
mod blob;
mod deployer;
pub mod diff;
mod error;
mod messenger;
pub use messenger::{MessageCounts, MessageKey};
mod registry;
pub mod router;
pub mod signing;
pub mod supervision;
pub use supervision::GroupSpec;
mod state;
mod state_dir;

pub use audit::{AuditRecord, Verified};
pub use deployer::{
    Activation, Active, DeploySpec, Deployer, Deployment, Rollback, StateUsage, Strategy,
    check_route, find_deployment,
};
pub use error::{Error, Result};
pub use registry::{AuditHead, Collected, Provenance, Published, Registry, TokenInfo};
pub use router::{Canary, DecisionSignal, Pick, Route, Served};
pub use state::SqliteState;
pub use state_dir::StateDir;
