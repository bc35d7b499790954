//! Integration tests of the guest SDK, run on the host: the `#[component]`
//! expansion (compile-pass and compile-fail cases under `tests/ui/`), the
//! generated metadata and the `Message` and error conveniences.

mod component;
mod message;
mod ui;
