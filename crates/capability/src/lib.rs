//! The capability type of airssys-wasm and its one string form.
//!
//! A [`Capability`] names something a component may do outside its own
//! memory. Components declare the capabilities they require; operators grant
//! them; the host enforces them. The same string form is used in the SDK's
//! `#[component(capabilities = [...])]`, in manifests, on the command line and
//! in the `airssys:capabilities` custom section:
//!
//! | string | capability |
//! | --- | --- |
//! | `file-read:PATH` | read files under a directory |
//! | `file-write:PATH` | create, write and delete files under a directory |
//! | `network-outbound:HOST-PATTERN` | open connections to matching hosts (`api.example.com:443`, `*.internal`) |
//! | `network-inbound:PORT` | bind a socket to a port |
//! | `system-call:NAME` | one of `env:NAME`, `env:*`, `args`, `stdin`, `stdout`, `stderr`, `clock`, `random`, `dns`, `config`, `state` |
//! | `messaging:OP:PATTERN` | `send` or `request` to components, `publish` or `subscribe` to topics matching PATTERN (held as a `system-call`) |
//! | `custom:NAME:JSON` | a capability of a host extension, with JSON parameters (an object or `null`) |
//!
//! ```
//! use airssys_wasm_capability::Capability;
//!
//! let cap: Capability = "system-call:env:HOME".parse().unwrap();
//! assert_eq!(cap, Capability::SystemCall("env:HOME".into()));
//! assert_eq!(cap.to_string(), "system-call:env:HOME");
//! assert!("file-reed:/data".parse::<Capability>().unwrap_err().to_string().contains("did you mean `file-read`?"));
//! ```

pub mod messaging;
pub mod outbound;
mod parse;
mod suggest;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

pub use suggest::did_you_mean;

/// Something a component may do outside its own memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    /// Read files under a directory.
    FileRead(PathBuf),
    /// Create, write and delete files under a directory.
    FileWrite(PathBuf),
    /// Open connections to hosts matching a pattern.
    NetworkOutbound(String),
    /// Bind a socket to a port.
    NetworkInbound(u16),
    /// A named system facility, from the closed set [`SYSTEM_CALLS`] or
    /// `env:NAME` / `env:*`.
    SystemCall(String),
    /// A capability of a host extension: its provider's name and parameters.
    Custom(String, serde_json::Value),
}

/// The `system-call` names besides `env:NAME` and `env:*`.
pub const SYSTEM_CALLS: &[&str] = parse::SYSTEM_CALLS;

/// The capability kinds, in the order of the WIT variant.
pub const KINDS: &[&str] = parse::KINDS;

/// A capability string that does not parse; the message says what to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

impl FromStr for Capability {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse::parse(s).map_err(ParseError)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Capability::FileRead(p) => write!(f, "file-read:{}", p.display()),
            Capability::FileWrite(p) => write!(f, "file-write:{}", p.display()),
            Capability::NetworkOutbound(h) => write!(f, "network-outbound:{h}"),
            Capability::NetworkInbound(p) => write!(f, "network-inbound:{p}"),
            Capability::SystemCall(n) if n.starts_with("messaging:") => f.write_str(n),
            Capability::SystemCall(n) => write!(f, "system-call:{n}"),
            Capability::Custom(name, json) => write!(f, "custom:{name}:{json}"),
        }
    }
}

impl TryFrom<String> for Capability {
    type Error = ParseError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Capability> for String {
    fn from(c: Capability) -> Self {
        c.to_string()
    }
}

/// Written as its string form.
impl serde::Serialize for Capability {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Read from its string form; the error says what to write.
impl<'de> serde::Deserialize<'de> for Capability {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_string_form() {
        for text in [
            "file-read:/data/in",
            "file-write:/tmp/out",
            "network-outbound:api.example.com:443",
            "network-outbound:*.internal",
            "network-inbound:8080",
            "system-call:env:HOME",
            "system-call:env:*",
            "system-call:clock",
            "system-call:state",
            "messaging:request:billing-*",
            "messaging:subscribe:orders.*",
            r#"custom:acme:ledger:{"accounts":["main"]}"#,
            "custom:acme:null",
        ] {
            let cap: Capability = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(cap.to_string(), text);
        }
    }

    #[test]
    fn json_parameters_are_compared_as_values() {
        let spaced: Capability = r#"custom:acme:{ "a" : 1 }"#.parse().unwrap();
        let tight: Capability = r#"custom:acme:{"a":1}"#.parse().unwrap();
        assert_eq!(spaced, tight);
        assert_eq!(spaced.to_string(), r#"custom:acme:{"a":1}"#);
    }
}
