//! The arguments of `#[component(...)]`, parsed and checked.

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::{Ident, LitStr, Token, bracketed};

use airssys_wasm_capability::{Capability, did_you_mean};

const KEYS: &[&str] = &[
    "name",
    "version",
    "description",
    "capabilities",
    "lifecycle",
];

/// Checked arguments of the attribute.
pub(crate) struct Args {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) description: String,
    /// Each capability as written and as parsed.
    pub(crate) capabilities: Vec<(String, Capability)>,
    /// The user writes `impl Lifecycle` themselves.
    pub(crate) lifecycle: bool,
}

#[derive(Default)]
struct Raw {
    name: Option<LitStr>,
    version: Option<LitStr>,
    description: Option<LitStr>,
    capabilities: Option<Vec<LitStr>>,
    lifecycle: Option<Ident>,
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut raw = Raw::default();
        while !input.is_empty() {
            let key: Ident = input.parse().map_err(|err| {
                syn::Error::new(
                    err.span(),
                    "expected a key: write `name = \"...\"`, `version = \"...\"`, `description = \"...\"`, `capabilities = [\"...\"]` or `lifecycle`",
                )
            })?;
            let key_name = key.to_string();
            let duplicate = match key_name.as_str() {
                "name" => raw
                    .name
                    .replace(string_value(input, &key, "\"echo\"")?)
                    .is_some(),
                "version" => raw
                    .version
                    .replace(string_value(input, &key, "\"0.1.0\"")?)
                    .is_some(),
                "description" => raw
                    .description
                    .replace(string_value(input, &key, "\"Echoes its input\"")?)
                    .is_some(),
                "capabilities" => raw
                    .capabilities
                    .replace(capability_list(input, &key)?)
                    .is_some(),
                "lifecycle" => {
                    if input.peek(Token![=]) {
                        return Err(syn::Error::new_spanned(
                            &key,
                            "`lifecycle` is a bare flag, it takes no value: write `lifecycle` to implement `Lifecycle` yourself, or leave it out to get the defaults",
                        ));
                    }
                    raw.lifecycle.replace(key.clone()).is_some()
                }
                _ => {
                    return Err(syn::Error::new_spanned(
                        &key,
                        format!(
                            "unknown key `{key_name}`{}; expected one of {}",
                            did_you_mean(&key_name, KEYS),
                            KEYS.join(", ")
                        ),
                    ));
                }
            };
            if duplicate {
                return Err(syn::Error::new_spanned(
                    &key,
                    format!("`{key_name}` is given twice; keep one"),
                ));
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>().map_err(|err| {
                syn::Error::new(
                    err.span(),
                    "expected `,` between the keys of #[component(...)]",
                )
            })?;
        }
        raw.check()
    }
}

/// `= "text"` after `key`.
fn string_value(input: ParseStream<'_>, key: &Ident, example: &str) -> syn::Result<LitStr> {
    if !input.peek(Token![=]) {
        return Err(syn::Error::new_spanned(
            key,
            format!("`{key}` needs a value: write `{key} = {example}`"),
        ));
    }
    input.parse::<Token![=]>()?;
    input.parse::<LitStr>().map_err(|err| {
        syn::Error::new(
            err.span(),
            format!("`{key}` takes a string literal: write `{key} = {example}`"),
        )
    })
}

/// `= ["kind:value", ...]` after `key`.
fn capability_list(input: ParseStream<'_>, key: &Ident) -> syn::Result<Vec<LitStr>> {
    const EXAMPLE: &str = "capabilities = [\"system-call:state\", \"file-read:/data\"]";
    if !input.peek(Token![=]) {
        return Err(syn::Error::new_spanned(
            key,
            format!("`capabilities` needs a value: write `{EXAMPLE}`"),
        ));
    }
    input.parse::<Token![=]>()?;
    if !input.peek(syn::token::Bracket) {
        return Err(input.error(format!(
            "`capabilities` takes a list in brackets: write `{EXAMPLE}`"
        )));
    }
    let content;
    bracketed!(content in input);
    let mut list = Vec::new();
    while !content.is_empty() {
        list.push(content.parse::<LitStr>().map_err(|err| {
            syn::Error::new(
                err.span(),
                format!("each capability is a string literal: write `{EXAMPLE}`"),
            )
        })?);
        if content.is_empty() {
            break;
        }
        content.parse::<Token![,]>()?;
    }
    Ok(list)
}

impl Raw {
    fn check(self) -> syn::Result<Args> {
        let name = self
            .name
            .ok_or_else(|| missing("name", "name = \"echo\""))?;
        let version = self
            .version
            .ok_or_else(|| missing("version", "version = \"0.1.0\""))?;
        let description = self
            .description
            .ok_or_else(|| missing("description", "description = \"Echoes its input\""))?;
        check_name(&name)?;
        check_version(&version)?;
        let mut capabilities: Vec<(String, Capability)> = Vec::new();
        for literal in self.capabilities.unwrap_or_default() {
            let text = literal.value();
            let parsed: Capability = text
                .parse()
                .map_err(|msg| syn::Error::new_spanned(&literal, msg))?;
            if capabilities.iter().any(|(_, seen)| *seen == parsed) {
                return Err(syn::Error::new_spanned(
                    &literal,
                    format!("capability `{text}` is listed twice; keep one"),
                ));
            }
            capabilities.push((text, parsed));
        }
        Ok(Args {
            name: name.value(),
            version: version.value(),
            description: description.value(),
            capabilities,
            lifecycle: self.lifecycle.is_some(),
        })
    }
}

fn missing(key: &str, example: &str) -> syn::Error {
    syn::Error::new(
        Span::call_site(),
        format!("#[component] is missing `{key}`: add `{example}`"),
    )
}

fn check_name(literal: &LitStr) -> syn::Result<()> {
    let name = literal.value();
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        return Ok(());
    }
    let suggestion: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let example = if suggestion.is_empty() || suggestion.chars().all(|c| c == '-') {
        "echo".to_owned()
    } else {
        suggestion
    };
    Err(syn::Error::new_spanned(
        literal,
        format!(
            "invalid component name `{name}`: use lowercase letters, digits and `-` only, for example `{example}`"
        ),
    ))
}

fn check_version(literal: &LitStr) -> syn::Result<()> {
    let version = literal.value();
    if is_semver(&version) {
        return Ok(());
    }
    Err(syn::Error::new_spanned(
        literal,
        format!(
            "invalid version `{version}`: write a semantic version MAJOR.MINOR.PATCH with an optional pre-release, for example `0.1.0` or `1.0.0-rc.1`"
        ),
    ))
}

/// `MAJOR.MINOR.PATCH` (no leading zeros) with an optional `-pre.release`.
fn is_semver(version: &str) -> bool {
    let (core, pre) = match version.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (version, None),
    };
    let numeric = |part: &str| {
        !part.is_empty()
            && part.chars().all(|c| c.is_ascii_digit())
            && (part == "0" || !part.starts_with('0'))
    };
    let parts: Vec<&str> = core.split('.').collect();
    let core_ok = parts.len() == 3 && parts.iter().all(|part| numeric(part));
    let pre_ok = pre.is_none_or(|pre| {
        pre.split('.').all(|id| {
            !id.is_empty()
                && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && (!id.chars().all(|c| c.is_ascii_digit()) || numeric(id))
        })
    });
    core_ok && pre_ok
}

#[cfg(test)]
mod tests {
    use super::is_semver;

    #[test]
    fn semver() {
        for ok in [
            "0.1.0",
            "1.2.3",
            "10.20.30",
            "1.0.0-rc.1",
            "1.0.0-alpha",
            "1.0.0-0.3.7",
        ] {
            assert!(is_semver(ok), "{ok}");
        }
        for bad in [
            "0.1",
            "1.2.3.4",
            "01.2.3",
            "1.2.3-",
            "1.2.3-rc..1",
            "v1.2.3",
            "1.2.3+build",
            "1.2.3-01",
        ] {
            assert!(!is_semver(bad), "{bad}");
        }
    }
}
