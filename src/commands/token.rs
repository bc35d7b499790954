//! `airssys-wasm token`: named tokens of a host's control API, so the
//! audit trail's actor says who did what (`token:NAME`).

use airssys_wasm_deploy::{Registry, StateDir, TokenInfo};
use http::Method;
use serde_json::json;

use super::Host;
use crate::output::{print_json, print_text};

/// Arguments of `token`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "On a running host (--host), only the admin token may create and \
revoke tokens. A token is shown once, when it is made; the host keeps its sha256 only."
)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Make a named token and print it (once).
    Create {
        /// Its name (lowercase letters, digits, `-` and `_`).
        #[arg(value_name = "NAME")]
        name: String,
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a named token: requests with it are refused from now on.
    Revoke {
        /// Its name.
        #[arg(value_name = "NAME")]
        name: String,
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the named tokens (never the tokens themselves).
    List {
        /// Print a JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn main(args: Args, host: Host) -> anyhow::Result<u8> {
    let client = host.client()?;
    let local = || -> anyhow::Result<Registry> {
        let dir = StateDir::open(host.local_state_dir()?)?;
        Ok(Registry::open(&dir)?)
    };
    let actor = crate::commands::publish::actor();
    match args.command {
        Command::Create { name, json } => {
            let token = match &client {
                Some(c) => c
                    .json(Method::POST, "/v1/tokens", &json!({ "name": name }))
                    .await?["token"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                None => local()?.create_token(&name, &actor)?,
            };
            if json {
                print_json(&json!({ "name": name, "token": token }))?;
            } else {
                print_text(&format!(
                    "{token}\n(token {name}: shown once; send it as `Authorization: Bearer TOKEN`, or set AIRSSYS_TOKEN)\n"
                ))?;
            }
        }
        Command::Revoke { name, json } => {
            match &client {
                Some(c) => {
                    c.json(Method::DELETE, &format!("/v1/tokens/{name}"), &json!({}))
                        .await?;
                }
                None => local()?.revoke_token(&name, &actor)?,
            }
            if json {
                print_json(&json!({ "name": name, "revoked": true }))?;
            } else {
                print_text(&format!("token {name} is revoked\n"))?;
            }
        }
        Command::List { json } => {
            let list: Vec<TokenInfo> = match &client {
                Some(c) => {
                    serde_json::from_value(c.json(Method::GET, "/v1/tokens", &json!({})).await?)?
                }
                None => local()?.tokens()?,
            };
            if json {
                print_json(&json!(list))?;
            } else {
                let mut out = String::new();
                for t in &list {
                    out.push_str(&format!(
                        "{:<20} {}\n",
                        t.name,
                        if t.revoked_ms.is_some() {
                            "revoked"
                        } else {
                            "in use"
                        }
                    ));
                }
                if list.is_empty() {
                    out.push_str("no named token\n");
                }
                print_text(&out)?;
            }
        }
    }
    Ok(crate::exit::OK)
}
