//! [`ComponentError`] and [`Capability`]: the WIT variants
//! `airssys:component/types.{component-error, capability}`, written by hand
//! (and mapped into the bindings with `with`) so they carry a readable
//! `Display`. Their shape must stay exactly that of the WIT types.

use std::fmt;

/// Why a call did not succeed: the WIT variant `component-error`. Each case
/// is one thing a caller may want to handle differently; HTTP ingress maps
/// each to a status code.
///
/// `Display` writes `<case>: <detail>`, for example
/// `invalid input: payload is not UTF-8`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ComponentError {
    /// The input was malformed or not acceptable; retrying it unchanged will
    /// fail again (HTTP 400).
    InvalidInput(String),
    /// An operation needed a capability that was not granted (HTTP 403).
    Denied(Capability),
    /// The thing asked for does not exist (HTTP 404).
    NotFound(String),
    /// A dependency cannot serve now; retrying later may succeed (HTTP 503).
    Unavailable(String),
    /// A deadline passed before an answer came (HTTP 504).
    Timeout(String),
    /// The component does not implement what was asked (HTTP 501).
    Unsupported(String),
    /// Anything else, with a message for the operator (HTTP 500).
    Failed(String),
    /// A message would go back to a component that handles one message at
    /// a time and waits in this message's chain, or the chain passed the
    /// host's hop limit (HTTP 508).
    Cycle(String),
    /// The target's mailboxes stayed full for as long as the sender waited;
    /// retrying later may succeed (HTTP 503).
    MailboxFull(String),
    /// A quota on what the component keeps (its state's keys or bytes) is
    /// reached (HTTP 507). A state error the host reports as a quota
    /// becomes this through `?`.
    QuotaExceeded(String),
}

impl fmt::Display for ComponentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidInput(detail) => write!(f, "invalid input: {detail}"),
            Self::Denied(capability) => {
                write!(f, "denied: capability `{capability}` is not granted")
            }
            Self::NotFound(detail) => write!(f, "not found: {detail}"),
            Self::Unavailable(detail) => write!(f, "unavailable: {detail}"),
            Self::Timeout(detail) => write!(f, "timeout: {detail}"),
            Self::Unsupported(detail) => write!(f, "unsupported: {detail}"),
            Self::Failed(detail) => write!(f, "failed: {detail}"),
            Self::Cycle(detail) => write!(f, "cycle: {detail}"),
            Self::MailboxFull(detail) => write!(f, "mailbox full: {detail}"),
            Self::QuotaExceeded(detail) => write!(f, "quota exceeded: {detail}"),
        }
    }
}

impl std::error::Error for ComponentError {}

/// Something a component may be allowed to do outside its own memory: the
/// WIT variant `capability`. Nothing is allowed unless an operator granted
/// it.
///
/// `Display` writes the form accepted by `#[component(capabilities = [..])]`,
/// for example `file-read:/data` or `system-call:state`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Capability {
    /// Read files under a path.
    FileRead(String),
    /// Create, write and delete files under a path.
    FileWrite(String),
    /// Open connections to hosts matching a pattern (`api.example.com:443`,
    /// `*.internal`).
    NetworkOutbound(String),
    /// Bind a socket to a port.
    NetworkInbound(u16),
    /// A named system facility: `env:NAME`, `env:*`, `args`, `stdin`,
    /// `stdout`, `stderr`, `clock`, `random`, `dns`, `config`, `state`.
    SystemCall(String),
    /// A capability offered by a host extension.
    Custom(CustomCapability),
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FileRead(path) => write!(f, "file-read:{path}"),
            Self::FileWrite(path) => write!(f, "file-write:{path}"),
            Self::NetworkOutbound(hosts) => write!(f, "network-outbound:{hosts}"),
            Self::NetworkInbound(port) => write!(f, "network-inbound:{port}"),
            Self::SystemCall(name) if name.starts_with("messaging:") => f.write_str(name),
            Self::SystemCall(name) => write!(f, "system-call:{name}"),
            Self::Custom(custom) => write!(f, "custom:{}:{}", custom.name, custom.json),
        }
    }
}

/// A capability of a host extension: the WIT record `custom-capability`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CustomCapability {
    /// The provider's name, for example `acme:ledger`.
    pub name: String,
    /// Parameters as JSON text (an object, or `null`).
    pub json: String,
}
