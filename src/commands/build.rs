//! Building a manifest's `{ cargo = "DIR" }` source: `cargo build
//! --release --target wasm32-wasip2`, then the `.wasm` it produced.
//!
//! Only the local CLI builds from source; a host never builds on request.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::output::InputError;

/// The package a `compiler-artifact` message is about: from its package id
/// (`path+file:///x#name@0.1.0`, or `name 0.1.0 (source)` from older
/// cargo), else its target's name.
fn package_name(msg: &serde_json::Value) -> Option<String> {
    let id = msg["package_id"].as_str().unwrap_or_default();
    let from_id = match id.split_once('#') {
        Some((source, rest)) => match rest.split_once('@') {
            Some((name, _)) => Some(name.to_string()),
            // `...#0.1.0`: the name is the source path's last part.
            None => source.rsplit('/').next().map(str::to_string),
        },
        None => id.split_whitespace().next().map(str::to_string),
    };
    from_id
        .filter(|n| !n.is_empty())
        .or_else(|| msg["target"]["name"].as_str().map(str::to_string))
}

/// Build the package in `dir` (or `package` of the workspace there) and
/// return the component file it produced.
pub(crate) fn cargo(dir: &Path, package: Option<&str>) -> anyhow::Result<PathBuf> {
    let out = cargo_command(dir, package)
        .output()
        .with_context(|| format!("cannot run cargo to build {}", dir.display()))?;
    artifact(&out, dir, package)
}

/// The `cargo build` of the package in `dir` (or `package` of the
/// workspace there) for wasm32-wasip2: diagnostics to the terminal, the
/// artifact list to a pipe.
pub(crate) fn cargo_command(dir: &Path, package: Option<&str>) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--target")
        .arg("wasm32-wasip2")
        .arg("--message-format=json-render-diagnostics")
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"));
    if let Some(p) = package {
        cmd.arg("--package").arg(p);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    tracing::info!(dir = %dir.display(), "building the component with cargo");
    cmd
}

/// The component file a finished `cargo_command` produced, or why there
/// is none.
pub(crate) fn artifact(
    out: &std::process::Output,
    dir: &Path,
    package: Option<&str>,
) -> anyhow::Result<PathBuf> {
    if !out.status.success() {
        bail!(InputError(format!(
            "building {} failed (cargo exited with {}); its messages are above. \
             Is the wasm32-wasip2 target installed (`rustup target add wasm32-wasip2`)?",
            dir.display(),
            out.status
        )));
    }
    let mut found = None;
    for line in out.stdout.split(|b| *b == b'\n') {
        let Ok(msg) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        if let Some(p) = package
            && package_name(&msg).as_deref() != Some(p)
        {
            continue;
        }
        let wasm = msg["filenames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str())
            .find(|f| f.ends_with(".wasm"));
        if let Some(w) = wasm {
            found = Some(PathBuf::from(w));
        }
    }
    found.ok_or_else(|| {
        InputError(format!(
            "building {} produced no .wasm file (is it a bin or cdylib crate?)",
            dir.display()
        ))
        .into()
    })
}
