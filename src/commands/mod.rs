//! One module per subcommand, and what they share: reading a component
//! file, the limit flags, building the runtime.

pub(crate) mod call;
pub(crate) mod compile;
pub(crate) mod inspect;
pub(crate) mod run;

use std::path::{Path, PathBuf};
use std::time::Duration;

use airssys_wasm_runtime::{Capability, Grants, Limits, Runtime, RuntimeConfig};
use anyhow::Context;

use crate::output::InputError;

/// The limits a call runs under.
#[derive(Debug, clap::Args)]
pub(crate) struct LimitArgs {
    /// Wall-clock limit per call, including time blocked in the host
    /// (e.g. `500ms`, `10s`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,

    /// Linear memory limit (e.g. `64MiB`, `1GiB`, or bytes).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    memory: Option<u64>,

    /// Fuel budget per call (turns fuel metering on).
    #[arg(long, value_name = "N")]
    fuel: Option<u64>,
}

impl LimitArgs {
    /// The limits, starting from `base`.
    fn limits(&self, base: Limits) -> Limits {
        let mut l = base;
        if let Some(t) = self.timeout {
            l = l.timeout(t);
        }
        if let Some(m) = self.memory {
            l = l.memory(m);
        }
        l.fuel(self.fuel)
    }
}

/// What the operator grants and denies on the command line.
#[derive(Debug, clap::Args)]
pub(crate) struct GrantArgs {
    /// Grant a capability (repeatable): `system-call:state`,
    /// `system-call:env:HOME`, `file-read:/data`... A bare system-call name
    /// (`state`, `stdin`) is accepted too.
    #[arg(long = "allow", value_name = "CAP", value_parser = parse_capability)]
    allow: Vec<Capability>,

    /// Grant read access to a directory (repeatable), seen at the same path.
    #[arg(long = "allow-read", value_name = "DIR")]
    allow_read: Vec<PathBuf>,

    /// Grant read and write access to a directory (repeatable).
    #[arg(long = "allow-write", value_name = "DIR")]
    allow_write: Vec<PathBuf>,

    /// Grant one environment variable (repeatable), with its value here.
    #[arg(long = "allow-env", value_name = "NAME")]
    allow_env: Vec<String>,

    /// Deny a capability (repeatable); wins over any grant. `--deny clock
    /// --deny random` gives a deterministic component (a fixed clock and
    /// seeded generators).
    #[arg(long = "deny", value_name = "CAP", value_parser = parse_capability)]
    deny: Vec<Capability>,
}

impl GrantArgs {
    /// The grants, plus `extra` the command itself implies.
    pub(crate) fn grants(&self, extra: &[Capability]) -> Grants {
        let mut allow: Vec<Capability> = self.allow.clone();
        allow.extend(
            self.allow_read
                .iter()
                .map(|p| Capability::FileRead(p.clone())),
        );
        allow.extend(
            self.allow_write
                .iter()
                .map(|p| Capability::FileWrite(p.clone())),
        );
        allow.extend(
            self.allow_env
                .iter()
                .map(|n| Capability::SystemCall(format!("env:{n}"))),
        );
        allow.extend(extra.iter().cloned());
        let mut grants = Grants::default();
        for c in allow {
            grants = grants.allow(c);
        }
        for c in &self.deny {
            grants = grants.deny(c.clone());
        }
        grants
    }
}

/// A capability in its string form, or a bare system-call name.
fn parse_capability(s: &str) -> Result<Capability, String> {
    match s.parse::<Capability>() {
        Ok(c) => Ok(c),
        Err(e) => {
            let bare = format!("system-call:{s}");
            bare.parse::<Capability>().map_err(|_| e.to_string())
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{e} (write e.g. `500ms`, `10s`, `2m`)"))?;
    if d.is_zero() {
        return Err("a timeout must be longer than zero".into());
    }
    Ok(d)
}

/// A size: bytes, or a number with `KiB`, `MiB`, `GiB` (or `K`, `M`, `G`,
/// `KB`, `MB`, `GB`, all powers of 1024).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (write e.g. `64MiB` or `1048576`)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}` (use KiB, MiB or GiB)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// Read a component file (or stdin for `-`), naming the file in errors.
pub(crate) fn read_component(path: &Path) -> anyhow::Result<(String, Vec<u8>)> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let bytes = std::fs::read(path)
        .map_err(|e| InputError(format!("cannot read {}: {e}", path.display())))?;
    Ok((name, bytes))
}

/// A runtime for one CLI command.
pub(crate) fn runtime(cache_dir: Option<PathBuf>, fuel: bool) -> anyhow::Result<Runtime> {
    let mut config = RuntimeConfig::default().fuel(fuel);
    if let Some(dir) = cache_dir {
        config = config.cache_dir(dir);
    }
    // One CLI process hosts one component: a small pool is plenty and
    // reserves less address space.
    config = config.max_instances(16);
    Runtime::new(config).context("starting the runtime")
}

/// `k=v` pairs.
pub(crate) fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not `key=value`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(
            parse_size("12 parsecs")
                .unwrap_err()
                .contains("unknown size unit")
        );
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
    }

    #[test]
    fn pairs() {
        assert_eq!(parse_pair("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_pair("=x").is_err());
        assert!(parse_pair("novalue").is_err());
    }
}
