//! The host-wide policy file: the operator's rules over every component.
//!
//! ```toml
//! # Denied to every component, whatever a manifest or flag grants.
//! deny = ["network-outbound:*.corp.example.com", "system-call:env:AWS_SECRET_ACCESS_KEY"]
//! # Directories no file grant may contain or lie inside.
//! protect = ["/var/lib/secrets"]
//! ```

use std::path::{Path, PathBuf};

use airssys_wasm_capability::Capability;
use airssys_wasm_runtime::HostPolicy;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::Error;

/// A policy file, as written.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "airssys-wasm host policy",
    description = "Rules over every component a host runs."
)]
pub struct PolicyFile {
    /// Capabilities denied to every component; a denial wins over any grant.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    deny: Vec<Capability>,
    /// Directories that no file grant may contain or lie inside (relative
    /// to the policy file).
    #[serde(default)]
    protect: Vec<PathBuf>,
}

impl PolicyFile {
    /// Read the policy file at `path`.
    pub fn load(path: &Path) -> Result<HostPolicy, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error(format!("cannot read policy {}: {e}", path.display())))?;
        Self::parse(&text, path)
    }

    /// Check policy `text`, read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<HostPolicy, Error> {
        let p: PolicyFile = toml::from_str(text)
            .map_err(|e| Error(format!("{}: {}", path.display(), e.to_string().trim_end())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut policy = HostPolicy::default();
        // Relative paths are the policy file's, as `protect` entries are.
        for c in p.deny {
            policy = policy.deny(match c {
                Capability::FileRead(p) if p.is_relative() => Capability::FileRead(base.join(p)),
                Capability::FileWrite(p) if p.is_relative() => Capability::FileWrite(base.join(p)),
                other => other,
            });
        }
        for dir in p.protect {
            policy = policy.protect(base.join(dir));
        }
        Ok(policy)
    }
}

/// The JSON Schema of the policy file, pretty-printed.
pub fn policy_schema() -> String {
    let schema = schemars::schema_for!(PolicyFile);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}
