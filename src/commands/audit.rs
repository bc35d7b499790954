//! `airssys-wasm audit`: list and verify the audit trail of a state
//! directory.

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

pub(crate) async fn main(args: Args, host: crate::commands::Host) -> anyhow::Result<u8> {
    if let Some(client) = host.client()? {
        return remote(args, &client).await;
    }
    let dir = StateDir::open(host.local_state_dir()?)?;
    let registry = Registry::open(&dir)?;
    match args.command {
        Command::List { json } => print_records(&registry.audit()?, json),
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

/// `audit list` and `audit verify` on a running host.
async fn remote(args: Args, client: &crate::client::Client) -> anyhow::Result<u8> {
    match args.command {
        Command::List { json } => {
            let records: Vec<airssys_wasm_deploy::AuditRecord> =
                serde_json::from_value(client.json(http::Method::GET, "/v1/audit", &json!({})).await?)?;
            print_records(&records, json)
        }
        Command::Verify { json } => {
            let v = client
                .send(http::Method::GET, "/v1/audit/verify", "application/json", &[], Vec::new())
                .await;
            match v {
                Ok(v) => {
                    if json {
                        print_json(&v)?;
                    } else {
                        print_text(&format!(
                            "audit trail intact: {} record(s), head {}\n",
                            v["records"],
                            v["head"].as_str().filter(|h| !h.is_empty()).unwrap_or("(none)")
                        ))?;
                    }
                    Ok(crate::exit::OK)
                }
                Err(e) => Err(e),
            }
        }
        Command::Head { .. } => Err(crate::output::InputError(
            "`audit head` reads the head file beside the database: run it on the host's state directory (without --host)".into(),
        )
        .into()),
    }
}

fn print_records(records: &[airssys_wasm_deploy::AuditRecord], json: bool) -> anyhow::Result<u8> {
    let mut out = String::new();
    for r in records {
        if json {
            out.push_str(&serde_json::to_string(r)?);
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
