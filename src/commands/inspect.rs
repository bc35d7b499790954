//! `airssys-wasm inspect`: what a component is, without running it.

use airssys_wasm_runtime::{Capability, Limits, wit_text};
use serde_json::json;

use super::{GrantArgs, Host, Target, runtime};
use std::fmt::Write as _;

use crate::output::{print_json, print_text};

/// Arguments of `inspect`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    target: Target,

    /// Print a JSON object instead of text.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    grants: GrantArgs,
}

pub(crate) async fn main(args: Args, host: Host) -> anyhow::Result<u8> {
    let loaded = args.target.load(&host)?;
    let (name, bytes) = (&loaded.name, &loaded.bytes);
    let rt = runtime(&host, false)?;
    // Compiling validates the whole component and gives its world; the
    // cache makes a second look instant.
    let compiled = rt.compile(name, bytes)?;
    let info = &compiled.info;
    loaded.check_version(info)?;
    let wit = wit_text(name, bytes)?;
    // Required, granted and effective side by side: what `call` or `run`
    // with the same flags would give the component, or why it would refuse.
    let grants = args.grants.grants(loaded.grants()?, &[]);
    let strings = |caps: &[Capability]| caps.iter().map(ToString::to_string).collect::<Vec<_>>();
    let granted: Vec<String> = grants.allow.iter().map(ToString::to_string).collect();
    let options = loaded.options(grants, Limits::default());
    let required = rt.required(info, &options);
    let decided = rt.decide(info, &options);
    let effective = decided
        .as_ref()
        .map(|a| strings(a.effective()))
        .map_err(|e| e.to_string());
    if args.json {
        let mut v = serde_json::to_value(info.as_ref())?;
        v["wit"] = json!(wit);
        v["required"] = json!(required.map(|r| strings(&r)));
        v["granted"] = json!(granted);
        match &effective {
            Ok(e) => v["effective"] = json!(e),
            Err(refused) => v["refused"] = json!(refused),
        }
        print_json(&v)?;
        return Ok(crate::exit::OK);
    }
    let mut text = String::new();
    let _ = writeln!(text, "file:         {}", loaded.origin.display());
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
    let list = |items: &[String]| {
        if items.is_empty() {
            "(none)".to_string()
        } else {
            items.join(", ")
        }
    };
    match required {
        Some(required) => {
            let _ = writeln!(text, "required:     {}", list(&strings(&required)));
        }
        None => {
            let _ = writeln!(
                text,
                "required:     (declares nothing: its grants are its authority)"
            );
        }
    }
    let _ = writeln!(text, "granted:      {}", list(&granted));
    match &effective {
        Ok(e) => {
            let _ = writeln!(text, "effective:    {}", list(e));
        }
        Err(refused) => {
            let _ = writeln!(text, "effective:    refused: {refused}");
        }
    }
    let _ = writeln!(text);
    text.push_str(&wit);
    if !wit.ends_with('\n') {
        text.push('\n');
    }
    print_text(&text)?;
    Ok(crate::exit::OK)
}
