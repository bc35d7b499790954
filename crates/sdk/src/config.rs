//! Read the component's configuration through `wasi:config/store`: the
//! pairs an operator set for this deployment (the same pairs `init`
//! receives).
//!
//! ```no_run
//! use airssys_wasm_sdk::{config, ComponentError};
//!
//! fn greeting() -> Result<String, ComponentError> {
//!     Ok(config::get("greeting")?.unwrap_or_else(|| "hello".to_owned()))
//! }
//! ```

use crate::__private::bindings::wasi::config::store;
use crate::ComponentError;

/// Why the configuration could not be read: the `wasi:config/store` error.
/// Converts into [`ComponentError::Unavailable`] with `?`.
pub use store::Error as ConfigError;

/// The value of `key`, or `None` when it is not set.
pub fn get(key: &str) -> Result<Option<String>, ConfigError> {
    store::get(key)
}

/// Every configuration pair.
pub fn get_all() -> Result<Vec<(String, String)>, ConfigError> {
    store::get_all()
}

impl From<ConfigError> for ComponentError {
    fn from(err: ConfigError) -> Self {
        match err {
            ConfigError::Upstream(detail) => {
                Self::Unavailable(format!("configuration source failed: {detail}"))
            }
            ConfigError::Io(detail) => {
                Self::Unavailable(format!("configuration read failed: {detail}"))
            }
        }
    }
}
