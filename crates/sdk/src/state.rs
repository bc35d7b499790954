//! Keep state across calls in the component's own key-value store, through
//! `wasi:keyvalue` (bucket `"default"`, opened on first use and kept for the
//! life of the instance). Needs the capability `system-call:state`.
//!
//! ```no_run
//! use airssys_wasm_sdk::{state, ComponentError};
//!
//! fn visit() -> Result<u64, ComponentError> {
//!     Ok(state::increment("visits", 1)?)
//! }
//! ```

use std::sync::OnceLock;

use crate::__private::bindings::wasi::keyvalue::{atomics, batch, store};
use crate::{Capability, ComponentError};

/// Why a state operation failed: the `wasi:keyvalue/store` error. Converts
/// into a [`ComponentError`] with `?` (`AccessDenied` becomes
/// [`ComponentError::Denied`] of `system-call:state`).
pub use store::Error as StateError;

/// A key and its value, as [`get_many`] answers them.
pub type Entry = (String, Vec<u8>);

const BUCKET_NAME: &str = "default";

// One bucket per instance: the handle stays valid until the instance ends.
static BUCKET: OnceLock<store::Bucket> = OnceLock::new();

fn bucket() -> Result<&'static store::Bucket, StateError> {
    if let Some(bucket) = BUCKET.get() {
        return Ok(bucket);
    }
    let opened = store::open(BUCKET_NAME)?;
    Ok(BUCKET.get_or_init(|| opened))
}

/// The value of `key`, or `None` when it is not set.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, StateError> {
    bucket()?.get(key)
}

/// Set `key` to `value`, replacing any value it had.
pub fn set(key: &str, value: &[u8]) -> Result<(), StateError> {
    bucket()?.set(key, value)
}

/// Remove `key`; removing a key that is not set is not an error.
pub fn delete(key: &str) -> Result<(), StateError> {
    bucket()?.delete(key)
}

/// Whether `key` is set.
pub fn exists(key: &str) -> Result<bool, StateError> {
    bucket()?.exists(key)
}

/// Add `delta` to the number stored at `key` (a missing key counts as 0) in
/// one atomic step, and return the new value.
pub fn increment(key: &str, delta: u64) -> Result<u64, StateError> {
    atomics::increment(bucket()?, key, delta)
}

/// Every key in the store, following the host's pagination cursors.
pub fn keys() -> Result<Vec<String>, StateError> {
    let bucket = bucket()?;
    let mut keys = Vec::new();
    let mut cursor = None;
    loop {
        let page = bucket.list_keys(cursor)?;
        keys.extend(page.keys);
        match page.cursor {
            // A cursor that does not move would loop forever.
            Some(next) if Some(next) != cursor => cursor = Some(next),
            _ => return Ok(keys),
        }
    }
}

/// The values of `keys`, in order: `Some((key, value))` for each key that is
/// set, `None` for each that is not.
pub fn get_many(keys: &[&str]) -> Result<Vec<Option<Entry>>, StateError> {
    let keys: Vec<String> = keys.iter().map(|key| (*key).to_owned()).collect();
    batch::get_many(bucket()?, &keys)
}

/// Set every `(key, value)` pair. Not atomic: on error some pairs may be set.
pub fn set_many(entries: &[(&str, &[u8])]) -> Result<(), StateError> {
    let entries: Vec<Entry> = entries
        .iter()
        .map(|(key, value)| ((*key).to_owned(), value.to_vec()))
        .collect();
    batch::set_many(bucket()?, &entries)
}

/// Remove every key in `keys`. Not atomic: on error some keys may be removed.
pub fn delete_many(keys: &[&str]) -> Result<(), StateError> {
    let keys: Vec<String> = keys.iter().map(|key| (*key).to_owned()).collect();
    batch::delete_many(bucket()?, &keys)
}

impl From<StateError> for ComponentError {
    fn from(err: StateError) -> Self {
        match err {
            StateError::NoSuchStore => {
                Self::Unavailable(format!("state store `{BUCKET_NAME}` does not exist"))
            }
            StateError::AccessDenied => Self::Denied(Capability::SystemCall("state".to_owned())),
            // The host starts a quota's refusal with this (the runtime's
            // `host.rs`, `QUOTA`).
            StateError::Other(detail) if detail.starts_with("quota exceeded: ") => {
                Self::QuotaExceeded(detail["quota exceeded: ".len()..].to_owned())
            }
            StateError::Other(detail) => Self::Failed(format!("state store failed: {detail}")),
        }
    }
}
