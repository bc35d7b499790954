//! Write [airssys-wasm] components in Rust: one attribute and an
//! `impl Handler`, no `wit-bindgen` boilerplate.
//!
//! A component is a library crate built for `wasm32-wasip2`. It targets the
//! `airssys:component/component` world: it exports `handler.execute` (the
//! unit of work) and `lifecycle` (`init`, `shutdown`, `health`, `metadata`,
//! `migrate`), and may import logging ([`log`]), its configuration
//! ([`config`]), a key-value store of its own ([`state`]) and messaging to
//! other components ([`messaging`]). A component imports only the host
//! interfaces it calls.
//!
//! # A complete component
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "echo"
//! version = "0.1.0"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! airssys-wasm-sdk = { git = "https://github.com/airsstack/airssys-wasm" }
//!
//! [profile.release]
//! opt-level = "s"
//! strip = true
//! ```
//!
//! `src/lib.rs`:
//!
//! ```no_run
//! use airssys_wasm_sdk::{component, log, ComponentError, Handler, Message};
//!
//! #[component(name = "echo", version = "0.1.0", description = "Echoes its input")]
//! struct Echo;
//!
//! impl Handler for Echo {
//!     fn execute(input: Message) -> Result<Message, ComponentError> {
//!         log::info("echoing");
//!         Ok(input.with_header("x-echoed-by", "echo"))
//!     }
//! }
//! # fn main() {}
//! ```
//!
//! Build and call it:
//!
//! ```text
//! rustup target add wasm32-wasip2
//! cargo build --release --target wasm32-wasip2
//! echo hello | airssys-wasm call target/wasm32-wasip2/release/echo.wasm --input -
//! ```
//!
//! # What `#[component]` does
//!
//! [`component`] implements the world's exports for the struct: `execute`
//! calls [`Handler::execute`], the lifecycle functions call [`Lifecycle`]
//! (whose methods all have defaults; the attribute writes
//! `impl Lifecycle for Echo {}` unless given the bare flag `lifecycle`), and
//! `metadata` answers with the attribute's name, version, description and
//! capabilities. A component declares the capabilities it needs, for example
//! `capabilities = ["system-call:state", "file-read:/data"]`; an operator
//! grants them. The strings are checked at compile time:
//!
//! | written                      | declares                                  |
//! | ---------------------------- | ----------------------------------------- |
//! | `file-read:PATH`             | [`Capability::FileRead`]                  |
//! | `file-write:PATH`            | [`Capability::FileWrite`]                 |
//! | `network-outbound:HOST`      | [`Capability::NetworkOutbound`] (`api.example.com:443`, `*.internal`) |
//! | `network-inbound:PORT`       | [`Capability::NetworkInbound`]            |
//! | `system-call:NAME`           | [`Capability::SystemCall`]: `env:NAME`, `env:*`, `args`, `stdin`, `stdout`, `stderr`, `clock`, `random`, `dns`, `config`, `state` |
//! | `messaging:OP:PATTERN`       | [`Capability::SystemCall`] named `messaging:OP:PATTERN`: `send`/`request` to components, `publish`/`subscribe` to topics |
//! | `custom:NAME:JSON`           | [`Capability::Custom`] (`custom:acme:ledger:{"accounts":["a"]}`) |
//!
//! The same facts are written into the binary as custom sections, so a host
//! reads them without running any code: `version` and `description` (plain
//! UTF-8, the format of the `wasm-metadata` crate), `airssys:metadata`
//! (JSON `{"name":..,"version":..,"description":..}`) and
//! `airssys:capabilities` (a JSON array of the capability strings as
//! written).
//!
//! A crate holds one component: one `#[component]` struct.
//!
//! # Calls and instances
//!
//! [`Handler::execute`] and the [`Lifecycle`] methods take no `self`: by
//! default the host makes a fresh instance for every call, so nothing kept in
//! memory survives between calls. Keep state in [`state`] and read
//! configuration through [`config`].
//!
//! [airssys-wasm]: https://github.com/airsstack/airssys-wasm

// The bindings' export macro and the `#[component]` expansion name this crate
// by its absolute path, which must also resolve inside the crate itself.
extern crate self as airssys_wasm_sdk;

#[doc(hidden)]
#[path = "private/mod.rs"]
pub mod __private;

pub mod config;
mod error;
pub mod log;
mod message;
pub mod messaging;
pub mod state;

pub use airssys_wasm_sdk_macros::component;
pub use error::{Capability, ComponentError, CustomCapability};

/// The message handed to [`Handler::execute`] and answered by it.
///
/// The WIT record `airssys:component/types.message`: a byte payload, an
/// optional content type and free-form headers.
pub use __private::bindings::airssys::component::types::Message;

/// What a component says about itself (`lifecycle.metadata`). Written by
/// [`component`] from its attribute; shown here for hosts and tests.
pub use __private::bindings::airssys::component::types::ComponentMetadata;

/// The answer to `lifecycle.health`.
pub use __private::bindings::airssys::component::types::HealthStatus;

/// The unit of work of a component: one message in, one message out.
///
/// There is no `self`: by default every call runs in a fresh instance.
#[diagnostic::on_unimplemented(
    message = "component `{Self}` does not implement `Handler`",
    label = "#[component] needs `impl Handler for {Self}`",
    note = "write `impl airssys_wasm_sdk::Handler for {Self} {{ fn execute(input: Message) -> Result<Message, ComponentError> {{ .. }} }}`"
)]
pub trait Handler {
    /// Handle one message and answer with one message, or with the error the
    /// caller should see (HTTP ingress maps each [`ComponentError`] case to a
    /// status code).
    fn execute(input: Message) -> Result<Message, ComponentError>;
}

/// How the host starts, probes, stops and upgrades a component.
///
/// Every method has a default, and [`component`] writes
/// `impl Lifecycle for T {}` for you. To override some of them, add the bare
/// flag `lifecycle` to the attribute and write the impl yourself:
///
/// ```no_run
/// use airssys_wasm_sdk::{component, ComponentError, Handler, Lifecycle, Message};
///
/// #[component(name = "strict", version = "1.0.0", description = "Needs a mode", lifecycle)]
/// struct Strict;
///
/// impl Lifecycle for Strict {
///     fn init(config: Vec<(String, String)>) -> Result<(), ComponentError> {
///         if config.iter().any(|(key, _)| key == "mode") {
///             Ok(())
///         } else {
///             Err(ComponentError::InvalidInput("config key `mode` is required".into()))
///         }
///     }
/// }
///
/// impl Handler for Strict {
///     fn execute(input: Message) -> Result<Message, ComponentError> {
///         Ok(input)
///     }
/// }
/// # fn main() {}
/// ```
///
/// Writing the impl without the flag fails with "conflicting implementations
/// of trait `Lifecycle`": add `lifecycle` to the attribute.
#[diagnostic::on_unimplemented(
    message = "component `{Self}` has the flag `lifecycle` but does not implement `Lifecycle`",
    label = "#[component(.., lifecycle)] needs `impl Lifecycle for {Self}`",
    note = "write `impl airssys_wasm_sdk::Lifecycle for {Self} {{}}` (every method has a default), or remove the flag `lifecycle` to get the defaults"
)]
pub trait Lifecycle {
    /// Prepare the component with its configuration (the pairs that
    /// [`config::get_all`] also serves). An error refuses the component.
    /// Default: accept any configuration.
    fn init(config: Vec<(String, String)>) -> Result<(), ComponentError> {
        let _ = config;
        Ok(())
    }

    /// Release what the component holds; long-lived hosting only. Default:
    /// nothing.
    fn shutdown() {}

    /// Report whether the component can serve. Default:
    /// [`HealthStatus::Healthy`].
    fn health() -> HealthStatus {
        HealthStatus::Healthy
    }

    /// Bring state kept by version `from_version` up to this version's shape,
    /// before this version takes traffic. An error aborts the upgrade.
    /// Default: nothing to migrate.
    fn migrate(from_version: String) -> Result<(), ComponentError> {
        let _ = from_version;
        Ok(())
    }
}
