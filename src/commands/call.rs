//! `airssys-wasm call`: call a component's handler, or any exported
//! function by name with JSON (or WAVE) arguments.

use std::io::{Read, Write};
use std::path::PathBuf;

use airssys_wasm_runtime::{CallOutput, ComponentPre, Message, WorldKind};
use anyhow::{Context, bail};
use base64::Engine as _;
use serde_json::json;

use super::{AuditArgs, GrantArgs, Host, LimitArgs, Target, parse_pair, runtime};
use crate::output::{InputError, print_json, print_text};

/// Arguments of `call`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  airssys-wasm call echo.wasm --input - < request.json --content-type application/json
  airssys-wasm call types.wasm --function sum --args '[[1, 2, 3]]'
  airssys-wasm call types.wasm --invoke 'sum([1, 2, 3])'

Without --function or --invoke the component's handler (airssys:component/handler.execute)
is called and its payload written to stdout. JSON arguments are an array (positional) or an
object keyed by parameter name; see docs/json-mapping.md for how each WIT type is written.")]
pub(crate) struct Args {
    #[command(flatten)]
    target: Target,

    /// The payload: a file, or `-` for stdin (default: empty).
    #[arg(long, value_name = "FILE|-")]
    input: Option<PathBuf>,

    /// The payload's content type.
    #[arg(long, value_name = "TYPE")]
    content_type: Option<String>,

    /// A message header (repeatable).
    #[arg(long = "header", value_name = "NAME=VALUE", value_parser = parse_pair)]
    headers: Vec<(String, String)>,

    /// Configuration served through wasi:config and passed to init (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_pair)]
    config: Vec<(String, String)>,

    /// Call this exported function instead of the handler (`interface#function`,
    /// or a short form such as `function` when unambiguous).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["input", "content_type", "headers", "invoke"])]
    function: Option<String>,

    /// The function's arguments as JSON.
    #[arg(long, value_name = "JSON", requires = "function")]
    args: Option<String>,

    /// Call a function given as WAVE text, as `wasmtime run --invoke` takes it: `name(arg, ...)`.
    #[arg(long, value_name = "CALL", conflicts_with_all = ["input", "content_type", "headers"])]
    invoke: Option<String>,

    #[command(flatten)]
    limits: LimitArgs,

    #[command(flatten)]
    grants: GrantArgs,

    #[command(flatten)]
    audit: AuditArgs,

    /// For a wasi:http/proxy component: the request path and query
    /// (default `/`).
    #[arg(long, value_name = "PATH")]
    path: Option<String>,

    /// For a wasi:http/proxy component: the request method (default GET,
    /// or POST when --input is given).
    #[arg(long, value_name = "METHOD")]
    method: Option<String>,

    /// Print a JSON object with the result, headers, logs and timings.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn main(args: Args, mut host: Host) -> anyhow::Result<u8> {
    host.audit = args.audit.format(args.json);
    let loaded = args.target.load(&host)?;
    if loaded.state.is_some() {
        host.collect = Some(Default::default());
    }
    let result = call(&args, &host, &loaded).await;
    loaded.record_events(&host, result)
}

async fn call(args: &Args, host: &Host, loaded: &super::Loaded) -> anyhow::Result<u8> {
    loaded.refuse_extra_grants(&args.grants, !args.config.is_empty())?;
    let name = loaded.name.clone();
    // Read the input before compiling, so a bad --input fails fast.
    let payload = read_input(args.input.as_deref())?;
    let fn_args = match &args.args {
        None => json!([]),
        Some(text) => serde_json::from_str(text)
            .map_err(|e| InputError(format!("--args is not valid JSON: {e}")))?,
    };
    let fuel = args.limits.fuel.is_some() || loaded.fuel();
    let rt = runtime(host, fuel)?;
    let limits = args.limits.limits(loaded.limits(rt.default_limits()));
    let mut options = loaded.options(args.grants.grants(loaded.grants()?, &[]), limits);
    // Flags come after the manifest: a key given in both keeps the flag's.
    options.config.extend(args.config.iter().cloned());
    let pre = rt.load(&name, &loaded.bytes, options).await?;
    loaded.check_version(pre.info())?;

    if let Some(function) = &args.function {
        let out = pre.call_json(function, &fn_args).await?;
        report_side_output(&out, args.json);
        if args.json {
            let mut v = side_json(&out);
            v["result"] = out.value.clone();
            print_json(&v)?;
        } else {
            print_text(&format!("{}\n", serde_json::to_string_pretty(&out.value)?))?;
        }
        return Ok(crate::exit::OK);
    }
    if let Some(call) = &args.invoke {
        let out = pre.call_wave(call).await?;
        report_side_output(&out, args.json);
        if args.json {
            let mut v = side_json(&out);
            v["result"] = json!(out.value);
            print_json(&v)?;
        } else {
            print_text(&format!("{}\n", out.value))?;
        }
        return Ok(crate::exit::OK);
    }

    if pre.info().kind == WorldKind::HttpProxy {
        return http_call(&pre, args, payload).await;
    }
    if args.path.is_some() || args.method.is_some() {
        bail!(InputError(format!(
            "--path and --method are for wasi:http/proxy components; the world of {name} is {}",
            pre.info().kind
        )));
    }

    let input = Message {
        payload,
        content_type: args.content_type.clone(),
        headers: args.headers.clone(),
    };
    let out = pre.execute(input).await?;
    report_side_output(&out, args.json);
    if args.json {
        let msg = &out.value;
        let mut v = side_json(&out);
        v["content_type"] = json!(msg.content_type);
        v["headers"] = json!(msg.headers);
        match std::str::from_utf8(&msg.payload) {
            Ok(text) => v["payload"] = json!(text),
            Err(_) => {
                v["payload_base64"] =
                    json!(base64::engine::general_purpose::STANDARD.encode(&msg.payload))
            }
        }
        print_json(&v)?;
    } else {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(&out.value.payload)
            .context("writing the payload")?;
        stdout.flush().ok();
    }
    Ok(crate::exit::OK)
}

/// Send one request to a `wasi:http/proxy` component, in process, and
/// print the response body (or, with --json, status, headers and body).
async fn http_call(pre: &ComponentPre, args: &Args, payload: Vec<u8>) -> anyhow::Result<u8> {
    use http_body_util::BodyExt;
    let method = args.method.clone().unwrap_or_else(|| {
        if args.input.is_some() {
            "POST".into()
        } else {
            "GET".into()
        }
    });
    let path = args.path.as_deref().unwrap_or("/");
    if !path.starts_with('/') {
        bail!(InputError(format!(
            "--path must start with `/`, got `{path}`"
        )));
    }
    let mut request = http::Request::builder()
        .method(method.as_str())
        .uri(format!("http://localhost{path}"));
    if let Some(ct) = &args.content_type {
        request = request.header("content-type", ct);
    }
    for (k, v) in &args.headers {
        request = request.header(k, v);
    }
    let body = http_body_util::Full::new(bytes::Bytes::from(payload));
    let request = request
        .body(body)
        .map_err(|e| InputError(format!("invalid request: {e}")))?;
    let response = pre.handle_http(request).await?;
    let status = response.status();
    let headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    // The guest streams the body: a runaway stream must not fill the host's
    // memory.
    let body = http_body_util::Limited::new(response.into_body(), MAX_HTTP_BODY)
        .collect()
        .await
        .map_err(|e| {
            anyhow::anyhow!("reading the response body (at most {MAX_HTTP_BODY} bytes): {e}")
        })?
        .to_bytes();
    if args.json {
        print_json(&json!({
            "status": status.as_u16(),
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        }))?;
    } else {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&body).context("writing the body")?;
        stdout.flush().ok();
    }
    Ok(if status.is_server_error() {
        crate::exit::COMPONENT
    } else {
        crate::exit::OK
    })
}

/// The largest HTTP response body `call` collects.
const MAX_HTTP_BODY: usize = 64 << 20;

/// What every `--json` output of a call carries besides its result.
fn side_json<T>(out: &CallOutput<T>) -> serde_json::Value {
    json!({
        "logs": out.logs,
        "logs_dropped": out.logs_dropped,
        "stdout": String::from_utf8_lossy(&out.stdout),
        "stderr": String::from_utf8_lossy(&out.stderr),
        "stdout_bytes": out.stdout_bytes,
        "stderr_bytes": out.stderr_bytes,
        "timings": out.timings,
    })
}

/// The guest's logs and output go to stderr, so stdout carries only the
/// result. With `--json` they are part of the object instead.
fn report_side_output<T>(out: &CallOutput<T>, json: bool) {
    if json {
        return;
    }
    // Write errors (a closed pipe) are ignored: the result matters more.
    let mut stderr = std::io::stderr().lock();
    for log in &out.logs {
        let ctx = if log.context.is_empty() {
            String::new()
        } else {
            format!(" {}", log.context)
        };
        let _ = writeln!(stderr, "[{}{ctx}] {}", log.level, log.message);
    }
    if out.logs_dropped > 0 {
        let _ = writeln!(
            stderr,
            "[{} log lines dropped by the rate limit]",
            out.logs_dropped
        );
    }
    let _ = stderr.write_all(&out.stdout);
    let _ = stderr.write_all(&out.stderr);
}

pub(crate) fn read_input(input: Option<&std::path::Path>) -> anyhow::Result<Vec<u8>> {
    match input {
        None => Ok(Vec::new()),
        Some(p) if p.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| InputError(format!("cannot read stdin: {e}")))?;
            Ok(buf)
        }
        Some(p) => std::fs::read(p)
            .map_err(|e| InputError(format!("cannot read --input {}: {e}", p.display())).into()),
    }
}
