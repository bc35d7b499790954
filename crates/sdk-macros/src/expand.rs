//! What `#[component]` writes: the world's export impls for the struct, the
//! export glue of the bindings, and the custom sections.

use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::{Item, ItemStruct};

use crate::args::Args;
use airssys_wasm_capability::Capability;

/// Check that `item` is a plain struct and return it.
pub(crate) fn plain_struct(item: Item) -> syn::Result<ItemStruct> {
    const HINT: &str = "put it on a struct that names the component, for example `struct Echo;`, then write `impl Handler for Echo`";
    let (tokens, kind) = match item {
        Item::Struct(item) => {
            if item.generics.params.is_empty() && item.generics.where_clause.is_none() {
                return Ok(item);
            }
            return Err(syn::Error::new_spanned(
                &item.generics,
                format!(
                    "#[component] needs a struct without generic parameters: the host calls `{}` by its one name; remove the generics, for example `struct {};`",
                    item.ident, item.ident
                ),
            ));
        }
        Item::Enum(item) => {
            let (keyword, ident) = (item.enum_token, item.ident);
            (quote!(#keyword #ident), "an enum")
        }
        Item::Fn(item) => {
            let (keyword, ident) = (item.sig.fn_token, item.sig.ident);
            (quote!(#keyword #ident), "a function")
        }
        Item::Union(item) => {
            let (keyword, ident) = (item.union_token, item.ident);
            (quote!(#keyword #ident), "a union")
        }
        Item::Trait(item) => {
            let (keyword, ident) = (item.trait_token, item.ident);
            (quote!(#keyword #ident), "a trait")
        }
        Item::Impl(item) => {
            let keyword = item.impl_token;
            (quote!(#keyword), "an impl block")
        }
        Item::Mod(item) => {
            let (keyword, ident) = (item.mod_token, item.ident);
            (quote!(#keyword #ident), "a module")
        }
        other => (quote!(#other), "this item"),
    };
    Err(syn::Error::new_spanned(
        tokens,
        format!("#[component] cannot go on {kind}: {HINT}"),
    ))
}

pub(crate) fn expand(args: &Args, item: &ItemStruct) -> TokenStream {
    let ident = &item.ident;
    let sdk = quote!(::airssys_wasm_sdk);
    let name = &args.name;
    let version = &args.version;
    let description = &args.description;
    let capabilities = args
        .capabilities
        .iter()
        .map(|(_, parsed)| capability_tokens(parsed));

    // Spanned at the struct's name, so "trait bound `Echo: Handler` is not
    // satisfied" points at the user's struct.
    let handler = quote_spanned!(ident.span()=> <#ident as #sdk::Handler>);
    let lifecycle = quote_spanned!(ident.span()=> <#ident as #sdk::Lifecycle>);
    let default_lifecycle = if args.lifecycle {
        TokenStream::new()
    } else {
        quote!(impl #sdk::Lifecycle for #ident {})
    };
    let sections = sections(args);

    quote! {
        #item

        const _: () = {
            impl #sdk::__private::HandlerGuest for #ident {
                fn execute(
                    input: #sdk::Message,
                ) -> ::core::result::Result<#sdk::Message, #sdk::ComponentError> {
                    #sdk::__private::enter(#name);
                    #handler::execute(input)
                }
            }

            impl #sdk::__private::LifecycleGuest for #ident {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::core::result::Result<(), #sdk::ComponentError> {
                    #sdk::__private::enter(#name);
                    #lifecycle::init(config)
                }

                fn shutdown() {
                    #sdk::__private::enter(#name);
                    #lifecycle::shutdown()
                }

                fn health() -> #sdk::HealthStatus {
                    #sdk::__private::enter(#name);
                    #lifecycle::health()
                }

                fn metadata() -> #sdk::ComponentMetadata {
                    #sdk::__private::enter(#name);
                    #sdk::ComponentMetadata {
                        name: ::std::string::String::from(#name),
                        version: ::std::string::String::from(#version),
                        description: ::std::string::String::from(#description),
                        required_capabilities: ::std::vec![#(#capabilities),*],
                    }
                }

                fn migrate(
                    from_version: ::std::string::String,
                ) -> ::core::result::Result<(), #sdk::ComponentError> {
                    #sdk::__private::enter(#name);
                    #lifecycle::migrate(from_version)
                }
            }

            #default_lifecycle

            #sdk::__private::bindings::__export!(#ident);

            #sections
        };
    }
}

fn capability_tokens(capability: &Capability) -> TokenStream {
    let sdk = quote!(::airssys_wasm_sdk);
    let string = |text: &str| quote!(::std::string::String::from(#text));
    match capability {
        Capability::FileRead(path) => {
            let path = string(&path.display().to_string());
            quote!(#sdk::Capability::FileRead(#path))
        }
        Capability::FileWrite(path) => {
            let path = string(&path.display().to_string());
            quote!(#sdk::Capability::FileWrite(#path))
        }
        Capability::NetworkOutbound(hosts) => {
            let hosts = string(hosts);
            quote!(#sdk::Capability::NetworkOutbound(#hosts))
        }
        Capability::NetworkInbound(port) => quote!(#sdk::Capability::NetworkInbound(#port)),
        Capability::SystemCall(call) => {
            let call = string(call);
            quote!(#sdk::Capability::SystemCall(#call))
        }
        Capability::Custom(name, json) => {
            let (name, json) = (string(name), string(&json.to_string()));
            quote!(#sdk::Capability::Custom(#sdk::CustomCapability { name: #name, json: #json }))
        }
    }
}

/// The custom sections a host reads without running code. wasm32 only:
/// other targets have no use for them (and put `link_section` names under
/// other rules).
fn sections(args: &Args) -> TokenStream {
    let metadata = format!(
        "{{\"name\":{},\"version\":{},\"description\":{}}}",
        json_string(&args.name),
        json_string(&args.version),
        json_string(&args.description),
    );
    let capabilities = format!(
        "[{}]",
        args.capabilities
            .iter()
            // The canonical form, the one the host's parser prints too.
            .map(|(_, parsed)| json_string(&parsed.to_string()))
            .collect::<Vec<_>>()
            .join(",")
    );
    [
        ("version", "VERSION", args.version.as_str()),
        ("description", "DESCRIPTION", args.description.as_str()),
        ("airssys:metadata", "METADATA", metadata.as_str()),
        (
            "airssys:capabilities",
            "CAPABILITIES",
            capabilities.as_str(),
        ),
    ]
    .into_iter()
    .map(|(section, id, content)| {
        let ident = format_ident!("__AIRSSYS_SECTION_{}", id);
        let len = content.len();
        let bytes = Literal::byte_string(content.as_bytes());
        quote! {
            #[cfg(target_arch = "wasm32")]
            #[unsafe(link_section = #section)]
            #[used]
            static #ident: [u8; #len] = *#bytes;
        }
    })
    .collect()
}

fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}
