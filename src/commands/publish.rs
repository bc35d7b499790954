//! `airssys-wasm publish`: add an immutable version to the registry of a
//! state directory.

use std::path::PathBuf;

use airssys_wasm_deploy::signing::Signature;
use airssys_wasm_deploy::{Provenance, Registry, StateDir};
use serde_json::json;

use super::read_component;
use crate::output::{print_json, print_text};

/// Arguments of `publish`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "A version is immutable: publishing the same bytes again does nothing, \
other bytes under a published version are refused. Every publish is recorded in the audit \
trail (`airssys-wasm audit list`)."
)]
pub(crate) struct Args {
    /// The component file.
    #[arg(value_name = "FILE")]
    file: PathBuf,

    /// The component's name (lowercase letters, digits, `-` and `_`).
    #[arg(long, value_name = "NAME")]
    name: String,

    /// Its version (semver, e.g. 0.1.0).
    #[arg(long, value_name = "VERSION")]
    version: String,

    /// The signature (made by `airssys-wasm sign`); default FILE.sig when
    /// it exists. Its key must be trusted (`airssys-wasm trust add`).
    #[arg(long, value_name = "SIG")]
    signature: Option<PathBuf>,

    /// Publish without a signature (for development); the audit trail
    /// records that it was unsigned.
    #[arg(long)]
    allow_unsigned: bool,

    /// Print a JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn main(args: Args, host: super::Host) -> anyhow::Result<u8> {
    let (_, bytes) = read_component(&args.file)?;
    let beside = PathBuf::from(format!("{}.sig", args.file.display()));
    let sig_file = args
        .signature
        .clone()
        .or_else(|| beside.is_file().then_some(beside));
    let signature = sig_file.as_deref().map(Signature::read).transpose()?;
    if let Some(client) = host.client()? {
        return remote(args, &client, bytes, signature).await;
    }
    let state_dir = host.local_state_dir()?;
    let provenance = match signature {
        Some(s) => Provenance::signed(s),
        None if args.allow_unsigned => Provenance::unsigned(),
        None => Provenance::default(),
    };
    let dir = StateDir::open(&state_dir)?;
    let mut registry = Registry::open(&dir)?;
    let progress = crate::output::Progress::start(format!(
        "publishing {} {} ({} bytes)",
        args.name,
        args.version,
        bytes.len()
    ));
    let p = registry.publish(&args.name, &args.version, &bytes, &provenance, &actor());
    drop(progress);
    let p = p?;
    if args.json {
        print_json(&json!({
            "name": p.name,
            "version": p.version,
            "digest": p.digest,
            "size": p.size,
            "created": p.created,
            "state_dir": dir.path().display().to_string(),
        }))?;
    } else if p.created {
        print_text(&format!(
            "published {} {} ({}, {} bytes) in {}\n",
            p.name,
            p.version,
            p.digest,
            p.size,
            dir.path().display()
        ))?;
    } else {
        print_text(&format!(
            "{} {} was already published with these bytes ({}); nothing to do\n",
            p.name, p.version, p.digest
        ))?;
    }
    Ok(crate::exit::OK)
}

/// Publish through a running host's control API.
async fn remote(
    args: Args,
    client: &crate::client::Client,
    bytes: Vec<u8>,
    signature: Option<Signature>,
) -> anyhow::Result<u8> {
    let mut headers = Vec::new();
    if let Some(s) = &signature {
        headers.push(("x-airssys-signature", serde_json::to_string(s)?));
    }
    let path = format!(
        "/v1/components?name={}&version={}&allow_unsigned={}",
        args.name, args.version, args.allow_unsigned
    );
    let progress = crate::output::Progress::start(format!(
        "uploading {} {} ({} bytes) to {}",
        args.name,
        args.version,
        bytes.len(),
        client.base()
    ));
    let p = client
        .send(
            http::Method::POST,
            &path,
            "application/wasm",
            &headers,
            bytes,
        )
        .await;
    drop(progress);
    let p = p?;
    if args.json {
        print_json(&p)?;
    } else if p["created"] == true {
        print_text(&format!(
            "published {} {} ({}, {} bytes) on {}\n",
            p["name"].as_str().unwrap_or_default(),
            p["version"].as_str().unwrap_or_default(),
            p["digest"].as_str().unwrap_or_default(),
            p["size"],
            client.base()
        ))?;
    } else {
        print_text(&format!(
            "{} {} was already published with these bytes ({}); nothing to do\n",
            p["name"].as_str().unwrap_or_default(),
            p["version"].as_str().unwrap_or_default(),
            p["digest"].as_str().unwrap_or_default(),
        ))?;
    }
    Ok(crate::exit::OK)
}

/// Who the audit trail says did it: the local user.
pub(crate) fn actor() -> String {
    match std::env::var("USER").or_else(|_| std::env::var("LOGNAME")) {
        Ok(user) if !user.is_empty() => format!("cli:{user}"),
        _ => format!("cli:uid {}", rustix::process::getuid().as_raw()),
    }
}
