//! `keygen`, `sign` and `trust`: provenance of published versions.

use std::path::PathBuf;

use airssys_wasm_deploy::signing::{self, PublicKey};
use airssys_wasm_deploy::{Registry, StateDir};
use serde_json::json;

use super::read_component;
use crate::output::{print_json, print_text};

/// Arguments of `keygen`.
#[derive(Debug, clap::Args)]
pub(crate) struct KeygenArgs {
    /// Where to write the key pair: PREFIX.key (private, mode 0600) and
    /// PREFIX.pub. An existing key is never overwritten.
    #[arg(value_name = "PREFIX", default_value = "airssys-signing")]
    prefix: PathBuf,

    /// Print a JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Arguments of `sign`.
#[derive(Debug, clap::Args)]
pub(crate) struct SignArgs {
    /// The component file.
    #[arg(value_name = "FILE")]
    file: PathBuf,

    /// The private key (made by `airssys-wasm keygen`).
    #[arg(long, value_name = "KEY")]
    key: PathBuf,

    /// Where to write the signature (default: FILE.sig).
    #[arg(long, value_name = "SIG")]
    out: Option<PathBuf>,

    /// Print a JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Arguments of `trust`.
#[derive(Debug, clap::Args)]
pub(crate) struct TrustArgs {
    #[command(subcommand)]
    command: TrustCommand,
}

#[derive(Debug, clap::Subcommand)]
enum TrustCommand {
    /// Trust the signatures of a public key (a `.pub` file).
    Add {
        /// The public key file.
        #[arg(value_name = "KEY.pub")]
        key: PathBuf,

        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the trusted keys.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn keygen(args: KeygenArgs) -> anyhow::Result<u8> {
    let public = signing::keygen(&args.prefix)?;
    if args.json {
        print_json(&json!({
            "key_id": public.id,
            "private": args.prefix.with_extension("key"),
            "public": args.prefix.with_extension("pub"),
        }))?;
        return Ok(crate::exit::OK);
    }
    print_text(&format!(
        "key {} written: {} (private, keep it secret) and {}\n",
        public.id,
        args.prefix.with_extension("key").display(),
        args.prefix.with_extension("pub").display()
    ))?;
    Ok(crate::exit::OK)
}

pub(crate) fn sign(args: SignArgs) -> anyhow::Result<u8> {
    let (_, bytes) = read_component(&args.file)?;
    let sig = signing::sign(&bytes, &args.key)?;
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from(format!("{}.sig", args.file.display())));
    std::fs::write(&out, serde_json::to_string_pretty(&sig)? + "\n")
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
    if args.json {
        print_json(&json!({
            "file": args.file,
            "digest": sig.digest,
            "key_id": sig.key_id,
            "signature": out,
        }))?;
        return Ok(crate::exit::OK);
    }
    print_text(&format!(
        "signed {} ({}) with key {}: {}\n",
        args.file.display(),
        sig.digest,
        sig.key_id,
        out.display()
    ))?;
    Ok(crate::exit::OK)
}

pub(crate) fn trust(args: TrustArgs, state_dir: PathBuf) -> anyhow::Result<u8> {
    let dir = StateDir::open(&state_dir)?;
    let mut registry = Registry::open(&dir)?;
    match args.command {
        TrustCommand::Add { key, json } => {
            let public = PublicKey::read(&key)?;
            let added = registry.trust(&public, &crate::commands::publish::actor())?;
            if json {
                print_json(&json!({ "key_id": public.id, "added": added }))?;
                return Ok(crate::exit::OK);
            }
            print_text(&if added {
                format!("key {} is trusted\n", public.id)
            } else {
                format!("key {} was already trusted\n", public.id)
            })?;
        }
        TrustCommand::List { json } => {
            let keys = registry.trusted()?;
            if json {
                print_json(&json!(keys))?;
            } else {
                let mut out = String::new();
                for k in &keys {
                    out.push_str(&format!("{}  {}\n", k.id, k.key));
                }
                if keys.is_empty() {
                    out.push_str("no key is trusted\n");
                }
                print_text(&out)?;
            }
        }
    }
    Ok(crate::exit::OK)
}
