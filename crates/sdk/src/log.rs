//! Log lines through `wasi:logging/logging`.
//!
//! Logging is always allowed; the host caps line size and rate. Each line
//! carries the component's name as its context.
//!
//! ```no_run
//! airssys_wasm_sdk::log::info("started");
//! ```

use crate::__private::bindings::wasi::logging::logging::{Level, log};

fn emit(level: Level, message: &str) {
    log(level, crate::__private::name(), message);
}

/// Log `message` at trace level: the flow of control.
pub fn trace(message: &str) {
    emit(Level::Trace, message);
}

/// Log `message` at debug level: of interest to someone debugging.
pub fn debug(message: &str) {
    emit(Level::Debug, message);
}

/// Log `message` at info level: of interest to someone monitoring.
pub fn info(message: &str) {
    emit(Level::Info, message);
}

/// Log `message` at warn level: a hazardous situation.
pub fn warn(message: &str) {
    emit(Level::Warn, message);
}

/// Log `message` at error level: a serious error.
pub fn error(message: &str) {
    emit(Level::Error, message);
}

/// Log `message` at critical level: a fatal error.
pub fn critical(message: &str) {
    emit(Level::Critical, message);
}
