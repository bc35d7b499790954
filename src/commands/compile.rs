//! `airssys-wasm compile`: fill the compiled-code cache.

use std::path::PathBuf;
use std::time::Instant;

use airssys_wasm_runtime::Source;
use anyhow::bail;
use serde_json::json;

use super::{Host, read_component, runtime};
use crate::output::{InputError, print_json, print_text};

/// Arguments of `compile`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The component file.
    #[arg(value_name = "FILE")]
    file: PathBuf,

    /// Print a JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn main(args: Args, host: Host) -> anyhow::Result<u8> {
    if host.cache_dir.is_none() {
        bail!(InputError(
            "compile fills the cache, but --no-cache was given".into()
        ));
    }
    let (name, bytes) = read_component(&args.file)?;
    let rt = runtime(&host, false)?;
    let start = Instant::now();
    let progress = crate::output::Progress::start(format!("compiling {name}"));
    let compiled = rt.compile(&name, &bytes);
    drop(progress);
    let compiled = compiled?;
    let elapsed = start.elapsed();
    let digest = compiled.info.digest;
    let entry = rt
        .cache_entry(&digest)
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let source = match compiled.source {
        Source::Compiled => "compiled",
        Source::Memory | Source::Disk => "cached",
    };
    if args.json {
        print_json(&json!({
            "file": args.file.display().to_string(),
            "digest": digest.to_string(),
            "source": source,
            "elapsed_ms": elapsed.as_secs_f64() * 1e3,
            "cache_entry": entry,
        }))?;
    } else if compiled.source == Source::Compiled {
        print_text(&format!(
            "compiled {name} ({digest}) in {:.1} ms\ncached at {entry}\n",
            elapsed.as_secs_f64() * 1e3
        ))?;
    } else {
        print_text(&format!(
            "{name} ({digest}) was already compiled\ncached at {entry}\n"
        ))?;
    }
    Ok(crate::exit::OK)
}
