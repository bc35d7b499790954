//! Procedural macros of the airssys-wasm guest SDK. Use them through
//! `airssys-wasm-sdk`, which re-exports [`macro@component`] and provides the
//! bindings the expansion refers to.
//!
//! ```ignore
//! use airssys_wasm_sdk::{component, ComponentError, Handler, Message};
//!
//! #[component(name = "echo", version = "0.1.0", description = "Echoes its input")]
//! struct Echo;
//!
//! impl Handler for Echo {
//!     fn execute(input: Message) -> Result<Message, ComponentError> {
//!         Ok(input)
//!     }
//! }
//! ```

use proc_macro::TokenStream;

mod args;
mod expand;

/// Make a struct an airssys component: export `handler` and `lifecycle` of
/// the `airssys:component/component` world for it, and write its metadata
/// into the binary.
///
/// ```ignore
/// #[component(
///     name = "echo",                              // required: [a-z0-9-]+
///     version = "0.1.0",                          // required: MAJOR.MINOR.PATCH[-pre]
///     description = "Echoes its input",           // required: one line
///     capabilities = ["system-call:state"],       // optional, checked at compile time
///     lifecycle,                                  // optional: you write `impl Lifecycle`
/// )]
/// struct Echo;
/// ```
///
/// The struct must implement `airssys_wasm_sdk::Handler`. Unless the flag
/// `lifecycle` is given, the attribute writes `impl Lifecycle for Echo {}`
/// (all defaults); with it, write that impl yourself.
///
/// Capabilities are `KIND:VALUE` strings: `file-read:PATH`,
/// `file-write:PATH`, `network-outbound:HOSTPATTERN`,
/// `network-inbound:PORT`, `system-call:NAME` (`env:NAME`, `env:*`, `args`,
/// `stdin`, `stdout`, `stderr`, `clock`, `random`, `dns`, `config`, `state`)
/// and `custom:NAME:JSON` (a provider name, then a JSON object or `null`).
///
/// On `wasm32` the expansion adds four custom sections: `version` and
/// `description` (UTF-8 text, as read by the `wasm-metadata` crate),
/// `airssys:metadata` (JSON `{"name":..,"version":..,"description":..}`) and
/// `airssys:capabilities` (JSON array of the capability strings as written).
#[proc_macro_attribute]
pub fn component(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item: proc_macro2::TokenStream = item.into();
    let args = syn::parse2::<args::Args>(attr.into());
    let plain = syn::parse2::<syn::Item>(item.clone()).and_then(expand::plain_struct);
    let err = match (args, plain) {
        (Ok(args), Ok(plain)) => return expand::expand(&args, &plain).into(),
        (Err(mut err), Err(more)) => {
            err.combine(more);
            err
        }
        (Err(err), Ok(_)) | (Ok(_), Err(err)) => err,
    };
    // Keep the item so that the only errors are ours, not a cascade of
    // "cannot find type `Echo`".
    let err = err.to_compile_error();
    quote::quote!(#err #item).into()
}
