//! `airssys-wasm inspect`: what a component is, without running it.

use std::path::PathBuf;

use airssys_wasm_runtime::wit_text;
use serde_json::json;

use super::{read_component, runtime};
use std::fmt::Write as _;

use crate::output::{print_json, print_text};

/// Arguments of `inspect`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The component file.
    #[arg(value_name = "FILE")]
    file: PathBuf,

    /// Print a JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn main(args: Args, cache_dir: Option<PathBuf>) -> anyhow::Result<u8> {
    let (name, bytes) = read_component(&args.file)?;
    let rt = runtime(cache_dir, false)?;
    // Compiling validates the whole component and gives its world; the
    // cache makes a second look instant.
    let compiled = rt.compile(&name, &bytes)?;
    let info = &compiled.info;
    let wit = wit_text(&name, &bytes)?;
    if args.json {
        let mut v = serde_json::to_value(info.as_ref())?;
        v["wit"] = json!(wit);
        print_json(&v)?;
        return Ok(crate::exit::OK);
    }
    let mut text = String::new();
    let _ = writeln!(text, "file:         {}", args.file.display());
    let _ = writeln!(text, "digest:       {}", info.digest);
    let _ = writeln!(text, "size:         {} bytes", info.size);
    let _ = writeln!(text, "world:        {}", info.kind);
    if let Some(m) = &info.metadata {
        let _ = writeln!(text, "name:         {}", m.name);
        let _ = writeln!(text, "version:      {}", m.version);
        if !m.description.is_empty() {
            let _ = writeln!(text, "description:  {}", m.description);
        }
    }
    if info.metadata.is_some() || !info.capabilities.is_empty() {
        let caps = if info.capabilities.is_empty() {
            "(none)".to_string()
        } else {
            info.capabilities.join(", ")
        };
        let _ = writeln!(text, "capabilities: {caps}");
    }
    let _ = writeln!(text);
    text.push_str(&wit);
    if !wit.ends_with('\n') {
        text.push('\n');
    }
    print_text(&text)?;
    Ok(crate::exit::OK)
}
