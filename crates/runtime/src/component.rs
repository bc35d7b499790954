//! What a component is, read from its bytes without running any of it:
//! its digest, the world it targets (imports and exports), and the metadata
//! our SDK writes into custom sections.

use std::sync::Arc;

use serde::Serialize;
use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use crate::cache::{Digest, Source};
use crate::error::{Error, Result};

/// The custom section that holds name, version and description as JSON.
pub const METADATA_SECTION: &str = "airssys:metadata";
/// The custom section that holds the required capabilities as a JSON array
/// of their string forms.
pub const CAPABILITIES_SECTION: &str = "airssys:capabilities";

/// The kind of world a component targets, which decides how it is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorldKind {
    /// Exports `airssys:component/handler` (our contract).
    Airssys,
    /// Exports `wasi:http/incoming-handler` (the `wasi:http/proxy` world).
    HttpProxy,
    /// Exports `wasi:cli/run` (the `wasi:cli/command` world).
    Command,
    /// Anything else: its exported functions can be called by name.
    Library,
}

impl std::fmt::Display for WorldKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WorldKind::Airssys => "airssys:component",
            WorldKind::HttpProxy => "wasi:http/proxy",
            WorldKind::Command => "wasi:cli/command",
            WorldKind::Library => "library (exported functions only)",
        })
    }
}

/// Name, version and description as the SDK wrote them into the binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedMetadata {
    /// The component's name.
    pub name: String,
    /// Its semantic version.
    pub version: String,
    /// One line on what it does.
    #[serde(default)]
    pub description: String,
}

/// Everything known about a component without running it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ComponentInfo {
    /// The name it was loaded under (typically its file name).
    pub name: String,
    /// sha256 of its bytes.
    #[serde(serialize_with = "digest_hex")]
    pub digest: Digest,
    /// Its size in bytes.
    pub size: usize,
    /// The world it targets (known after compilation).
    pub kind: WorldKind,
    /// Top-level import names (`wasi:cli/environment@0.2.6`, ...).
    pub imports: Vec<String>,
    /// Top-level export names.
    pub exports: Vec<String>,
    /// Metadata written by the SDK, if any.
    pub metadata: Option<EmbeddedMetadata>,
    /// Required capabilities written by the SDK, in their string form.
    pub capabilities: Vec<String>,
}

fn digest_hex<S: serde::Serializer>(d: &Digest, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&d.to_string())
}

/// A compiled component and what is known about it.
#[derive(Clone)]
pub struct Compiled {
    pub(crate) component: Component,
    /// What the bytes say.
    pub info: Arc<ComponentInfo>,
    /// Whether it was compiled now or came from a cache.
    pub source: Source,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("info", &self.info)
            .field("source", &self.source)
            .finish()
    }
}

impl ComponentInfo {
    /// Check that `bytes` are a component and read its custom sections.
    pub fn read(name: &str, bytes: &[u8]) -> Result<Self> {
        check_header(name, bytes)?;
        let mut metadata = None;
        let mut capabilities = Vec::new();
        for payload in wasmparser::Parser::new(0).parse_all(bytes) {
            let payload = payload.map_err(|e| Error::InvalidComponent {
                component: name.to_string(),
                source: anyhow::Error::new(e).context("reading sections"),
            })?;
            if let wasmparser::Payload::CustomSection(reader) = payload {
                match reader.name() {
                    METADATA_SECTION if metadata.is_none() => {
                        metadata = Some(
                            serde_json::from_slice::<EmbeddedMetadata>(reader.data()).map_err(
                                |e| Error::InvalidComponent {
                                    component: name.to_string(),
                                    source: anyhow::Error::new(e)
                                        .context(format!("malformed `{METADATA_SECTION}` section")),
                                },
                            )?,
                        );
                    }
                    CAPABILITIES_SECTION if capabilities.is_empty() => {
                        capabilities = read_capabilities(name, reader.data())?;
                    }
                    _ => {}
                }
            }
        }
        Ok(Self {
            name: name.to_string(),
            digest: Digest::of(bytes),
            size: bytes.len(),
            kind: WorldKind::Library,
            imports: Vec::new(),
            exports: Vec::new(),
            metadata,
            capabilities,
        })
    }

    /// The capabilities the component declares it requires, or `None` when
    /// it carries no metadata of ours (then its grants are its authority).
    pub fn required(&self) -> Option<Vec<crate::Capability>> {
        (self.metadata.is_some() || !self.capabilities.is_empty()).then(|| {
            self.capabilities
                .iter()
                .filter_map(|c| c.parse().ok())
                .collect()
        })
    }

    /// Fill in the world from the compiled component's type.
    pub(crate) fn with_world(mut self, engine: &Engine, component: &Component) -> Self {
        let ty = component.component_type();
        self.imports = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
        self.exports = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
        self.kind = world_kind(&self.exports);
        self
    }
}

/// The `airssys:capabilities` section: a JSON array of capability strings,
/// each parsed and kept in its canonical form.
fn read_capabilities(name: &str, data: &[u8]) -> Result<Vec<String>> {
    let malformed = |source: anyhow::Error| Error::InvalidComponent {
        component: name.to_string(),
        source: source.context(format!("malformed `{CAPABILITIES_SECTION}` section")),
    };
    let strings: Vec<String> = serde_json::from_slice(data).map_err(|e| malformed(e.into()))?;
    strings
        .iter()
        .map(|s| {
            s.parse::<crate::Capability>()
                .map(|c| c.to_string())
                .map_err(|e| malformed(e.into()))
        })
        .collect()
}

/// Which contract version of ours a component exports, if any. Every
/// version the host has shipped stays accepted: today 0.1 and 0.2.
pub(crate) fn handler_export(exports: &[String]) -> Option<&str> {
    exports.iter().map(String::as_str).find(|e| {
        e.starts_with("airssys:component/handler@0.1.")
            || e.starts_with("airssys:component/handler@0.2.")
    })
}

pub(crate) fn lifecycle_export(exports: &[String]) -> Option<&str> {
    exports.iter().map(String::as_str).find(|e| {
        e.starts_with("airssys:component/lifecycle@0.1.")
            || e.starts_with("airssys:component/lifecycle@0.2.")
    })
}

fn world_kind(exports: &[String]) -> WorldKind {
    if handler_export(exports).is_some() {
        WorldKind::Airssys
    } else if exports
        .iter()
        .any(|e| e.starts_with("wasi:http/incoming-handler@0.2."))
    {
        WorldKind::HttpProxy
    } else if exports.iter().any(|e| e.starts_with("wasi:cli/run@0.2.")) {
        WorldKind::Command
    } else {
        WorldKind::Library
    }
}

/// Every exported function: `name` at top level, `interface#name` inside an
/// exported instance.
pub(crate) fn exported_functions(engine: &Engine, component: &Component) -> Vec<String> {
    let mut out = Vec::new();
    for (name, item) in component.component_type().exports(engine) {
        match item.ty {
            ComponentItem::ComponentFunc(_) => out.push(name.to_string()),
            ComponentItem::ComponentInstance(inst) => {
                for (f, item) in inst.exports(engine) {
                    if let ComponentItem::ComponentFunc(_) = item.ty {
                        out.push(format!("{name}#{f}"));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn check_header(name: &str, bytes: &[u8]) -> Result<()> {
    let not = |reason: &str| Error::NotAComponent {
        component: name.to_string(),
        reason: reason.to_string(),
    };
    if bytes.is_empty() {
        return Err(not("the file is empty"));
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(not(
            "it is not WebAssembly (it does not start with the `\\0asm` header)",
        ));
    }
    if wasmparser::Parser::is_core_wasm(bytes) {
        return Err(not(
            "it is a core WebAssembly module; build for the wasm32-wasip2 target, \
             or wrap it with `wasm-tools component new`",
        ));
    }
    if !wasmparser::Parser::is_component(bytes) {
        return Err(not("it uses an unknown WebAssembly encoding version"));
    }
    Ok(())
}

/// The component's world as WIT text, decoded from its type information.
pub fn wit_text(name: &str, bytes: &[u8]) -> Result<String> {
    let invalid = |source: anyhow::Error| Error::InvalidComponent {
        component: name.to_string(),
        source,
    };
    let decoded = wit_parser::decoding::decode(bytes).map_err(invalid)?;
    let resolve = decoded.resolve();
    let pkg = decoded.package();
    let mut printer = wit_component::WitPrinter::default();
    printer.emit_docs(false);
    printer.print(resolve, pkg, &[]).map_err(invalid)?;
    Ok(printer.output.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_errors_are_specific() {
        let msg = |b: &[u8]| {
            ComponentInfo::read("x.wasm", b)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(msg(b"").contains("empty"));
        assert!(msg(b"hello world, not wasm").contains("\\0asm"));
        assert!(msg(b"\0asm\x01\0\0\0").contains("core WebAssembly module"));
        assert!(msg(b"\0asm\x0d\0\x01\0").is_empty());
    }
}
