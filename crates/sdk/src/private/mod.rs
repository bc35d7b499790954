//! What the `#[component]` expansion reaches for. Not a public API: names
//! here change without notice.

use std::sync::OnceLock;

pub use wit_bindgen;

pub mod bindings;

pub use bindings::exports::airssys::component::handler::Guest as HandlerGuest;
pub use bindings::exports::airssys::component::lifecycle::Guest as LifecycleGuest;

/// The component's name, set on entry to every export; the context of log
/// lines.
static NAME: OnceLock<&'static str> = OnceLock::new();

/// Called first by every generated export.
#[inline]
pub fn enter(name: &'static str) {
    // Set once per instance; later calls find it set and do nothing.
    let _ = NAME.set(name);
}

/// The component's name, or `""` outside an export (for example in a
/// static initializer).
pub(crate) fn name() -> &'static str {
    NAME.get().copied().unwrap_or("")
}
