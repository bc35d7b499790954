//! Building a manifest's `{ cargo = "DIR" }` source: `cargo build
//! --release --target wasm32-wasip2`, then the `.wasm` it produced.
//!
//! Only the local CLI builds from source; a host never builds on request.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::output::InputError;

/// Build the package in `dir` (or `package` of the workspace there) and
/// return the component file it produced.
pub(crate) fn cargo(dir: &Path, package: Option<&str>) -> anyhow::Result<PathBuf> {
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
    // Diagnostics and progress go to the terminal; the artifact list is
    // read from stdout.
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    tracing::info!(dir = %dir.display(), "building the component with cargo");
    let out = cmd
        .output()
        .with_context(|| format!("cannot run cargo to build {}", dir.display()))?;
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
            && msg["target"]["name"].as_str().map(|n| n.replace('-', "_"))
                != Some(p.replace('-', "_"))
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
