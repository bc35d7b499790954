//! `airssys-wasm audit`: list and verify the audit trail of a state
//! directory.

use std::path::PathBuf;

use airssys_wasm_deploy::{Registry, StateDir};
use serde_json::json;

use crate::output::{print_json, print_text};

/// Arguments of `audit`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// List every record, oldest first.
    List {
        /// Print JSON lines instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check the hash chain and its head; report the first broken record
    /// (exit status 1).
    Verify {
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the head of the chain kept beside the database (its last
    /// record's number and hash), to record elsewhere.
    Head {
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn main(args: Args, state_dir: PathBuf) -> anyhow::Result<u8> {
    let dir = StateDir::open(&state_dir)?;
    let registry = Registry::open(&dir)?;
    match args.command {
        Command::List { json } => {
            let mut out = String::new();
            for r in registry.audit()? {
                if json {
                    out.push_str(&serde_json::to_string(&r)?);
                } else {
                    let time = std::time::UNIX_EPOCH
                        + std::time::Duration::from_millis(u64::try_from(r.time_ms).unwrap_or(0));
                    out.push_str(&format!(
                        "{:>6}  {}  {:<10} {:<24} {}  {}",
                        r.seq,
                        humantime::format_rfc3339_seconds(time),
                        r.action,
                        r.subject,
                        r.actor,
                        r.details
                    ));
                }
                out.push('\n');
            }
            print_text(&out)?;
            Ok(crate::exit::OK)
        }
        Command::Head { json } => {
            let head = registry.audit_head()?;
            if json {
                print_json(&json!(head))?;
            } else {
                print_text(&match (head.seq, &head.hash) {
                    (Some(seq), Some(hash)) => format!("{seq} {hash}\n"),
                    _ => format!("no record yet ({} is absent)\n", head.path.display()),
                })?;
            }
            Ok(crate::exit::OK)
        }
        Command::Verify { json } => match registry.verify_audit() {
            Ok(v) => {
                if json {
                    print_json(&json!({"ok": true, "records": v.records, "head": v.head}))?;
                } else {
                    print_text(&format!(
                        "audit trail intact: {} record(s), head {}\n",
                        v.records,
                        if v.head.is_empty() { "(none)" } else { &v.head }
                    ))?;
                }
                Ok(crate::exit::OK)
            }
            Err(e) => {
                if json {
                    print_json(&json!({"ok": false, "error": e.to_string()}))?;
                }
                Err(e.into())
            }
        },
    }
}
