//! `request NAME` and `send NAME`: a message to a deployed component on a
//! running host, through its control API (as another component's
//! `request` or `send` would reach it).

use std::path::PathBuf;

use anyhow::Context as _;
use base64::Engine as _;
use http::Method;

use super::Host;
use crate::output::{InputError, print_json, print_text};

/// Arguments of `request` and `send`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Needs a running host (--host or AIRSSYS_HOST). Locally, \
`airssys-wasm call NAME --input FILE` runs a deployed component."
)]
pub(crate) struct Args {
    /// The deployed component.
    #[arg(value_name = "NAME")]
    name: String,

    /// The message's payload: a file, or - for stdin (default: empty).
    #[arg(long, value_name = "FILE|-")]
    input: Option<PathBuf>,

    /// The payload's media type.
    #[arg(long, value_name = "TYPE", default_value = "application/octet-stream")]
    content_type: String,

    /// Print the answer as JSON (content type, headers, base64 payload).
    #[arg(long)]
    json: bool,
}

/// `request`: the answer's payload on stdout.
pub(crate) async fn request(args: Args, host: Host) -> anyhow::Result<u8> {
    let answer = post(&args, &host, "request").await?;
    if args.json {
        print_json(&answer)?;
        return Ok(crate::exit::OK);
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(answer["payload_base64"].as_str().unwrap_or_default())
        .context("the host's answer is not base64")?;
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&bytes).context("writing the answer")?;
    stdout.flush().context("writing the answer")?;
    Ok(crate::exit::OK)
}

/// `send`: accepted, handled after.
pub(crate) async fn send(args: Args, host: Host) -> anyhow::Result<u8> {
    let answer = post(&args, &host, "send").await?;
    if args.json {
        print_json(&answer)?;
    } else {
        print_text(&format!("sent to {}\n", args.name))?;
    }
    Ok(crate::exit::OK)
}

/// POST the input to `/v1/deployments/NAME/ACTION` on the host; its
/// answer.
async fn post(args: &Args, host: &Host, action: &str) -> anyhow::Result<serde_json::Value> {
    let c = host.client()?.ok_or_else(|| {
        InputError(
            "a message goes through a running host: give --host URL (or AIRSSYS_HOST); locally, `airssys-wasm call NAME` runs a deployed component".into(),
        )
    })?;
    let payload = super::call::read_input(args.input.as_deref())?;
    c.send(
        Method::POST,
        &format!("/v1/deployments/{}/{action}", args.name),
        &args.content_type,
        &[],
        payload,
    )
    .await
}
