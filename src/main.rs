//! `airssys-wasm`: run, call, inspect and compile WebAssembly components.

mod client;
mod commands;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit statuses, also listed in `--help`.
pub(crate) mod exit {
    /// The command did what was asked.
    pub const OK: u8 = 0;
    /// The component failed: it trapped, timed out, hit a limit or returned
    /// an error.
    pub const COMPONENT: u8 = 1;
    /// The command line was invalid.
    pub const USAGE: u8 = 2;
    /// An input was unusable: a file could not be read, is not a valid
    /// component, or arguments did not fit the function's types.
    pub const INPUT: u8 = 3;
}

const EXIT_CODES: &str = "\
Exit status:
  0  success (for `run`: the component's own exit status is returned)
  1  the component failed: trap, timeout, limit exceeded, or an error it returned
  2  invalid command line
  3  unusable input: unreadable file, not a valid component, arguments that do not fit

Environment:
  AIRSSYS_CACHE_DIR  where compiled code is kept (default: $XDG_CACHE_HOME/airssys-wasm,
                     else ~/.cache/airssys-wasm)
  AIRSSYS_STATE_DIR  the state directory (--state-dir)
  AIRSSYS_POLICY     the host-wide policy file (--policy)
  AIRSSYS_MANIFEST   the manifest (--manifest)
  RUST_LOG           host log filter, e.g. `debug` or `airssys_wasm_runtime=trace`";

/// Run, call, inspect and compile WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "airssys-wasm", version, about, after_help = EXIT_CODES)]
pub(crate) struct Cli {
    /// Keep compiled code in this directory.
    #[arg(long, global = true, env = "AIRSSYS_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    /// Do not read or write the compiled-code cache (wins over --cache-dir
    /// and AIRSSYS_CACHE_DIR).
    #[arg(long, global = true)]
    no_cache: bool,

    /// The state directory: the registry of published versions and the
    /// audit trail (default: $XDG_DATA_HOME/airssys-wasm, else
    /// ~/.local/share/airssys-wasm).
    #[arg(long, global = true, env = "AIRSSYS_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,

    /// A running host's admin listener (http://HOST:PORT): publish,
    /// deploy, upgrade, promote, abort, rollback, history, status and
    /// audit list/verify act on it instead of a local state directory. The
    /// token comes from AIRSSYS_TOKEN, else STATE_DIR/admin.token.
    #[arg(long, global = true, env = "AIRSSYS_HOST", value_name = "URL")]
    host: Option<String>,

    /// How the host's log lines are written to stderr: text, or one JSON
    /// object per line.
    #[arg(
        long,
        global = true,
        env = "AIRSSYS_LOG_FORMAT",
        value_name = "FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,

    /// The operator's host-wide policy file: denials over every component
    /// and directories no grant may reach (see docs/security.md).
    #[arg(long, global = true, env = "AIRSSYS_POLICY", value_name = "FILE")]
    policy: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a wasi:cli/command component, like `wasmtime run`.
    Run(commands::run::Args),
    /// Call a component: its handler, or any exported function by name.
    Call(commands::call::Args),
    /// Show a component's digest, world, metadata and capabilities.
    Inspect(commands::inspect::Args),
    /// Compile a component into the cache, so later runs start at once.
    Compile(commands::compile::Args),
    /// Make an Ed25519 key pair for signing components.
    Keygen(commands::signing::KeygenArgs),
    /// Sign a component file (a detached signature over its digest).
    Sign(commands::signing::SignArgs),
    /// Trust a signing key, or list the trusted keys, of the state directory.
    Trust(commands::signing::TrustArgs),
    /// Publish an immutable version of a component to the state directory.
    Publish(commands::publish::Args),
    /// Deploy a published version (NAME@VERSION) and make it active.
    Deploy(commands::deploy::DeployArgs),
    /// Upgrade a deployed component to another published version.
    Upgrade(commands::deploy::UpgradeArgs),
    /// Make a component's canary in progress its active version.
    Promote(commands::deploy::CanaryArgs),
    /// Stop a component's canary in progress; the active version serves.
    Abort(commands::deploy::CanaryArgs),
    /// Re-activate an earlier deployment (from the compiled-code cache).
    Rollback(commands::deploy::RollbackArgs),
    /// Show every deployment of a component.
    History(commands::deploy::HistoryArgs),
    /// Compare the WIT worlds of two published versions of a component.
    Diff(commands::deploy::DiffArgs),
    /// Remove the bytes and compiled code of versions beyond the retention,
    /// and state left by failed upgrades.
    Gc(commands::deploy::GcArgs),
    /// Show the active deployment of every component.
    Status(commands::deploy::StatusArgs),
    /// Run the host: HTTP ingress for deployed routes and the control API.
    Serve(commands::serve::Args),
    /// Ask a deployed component on a running host to handle a message, and
    /// print its answer.
    Request(commands::message::Args),
    /// Hand a message to a deployed component on a running host, without
    /// waiting for it to be handled.
    Send(commands::message::Args),
    /// Build a component project, serve it, and rebuild and upgrade it in
    /// place on every change.
    Dev(commands::dev::Args),
    /// Make, revoke or list named tokens of the control API.
    Token(commands::token::Args),
    /// List or verify the audit trail of the state directory.
    Audit(commands::audit::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    // `serve` says what it does (ready, canaries settled); other commands
    // only warn. RUST_LOG overrides both.
    let default_level = if matches!(cli.command, Command::Serve(_) | Command::Dev(_)) {
        "info"
    } else {
        "warn"
    };
    // `serve` sends its spans to an OpenTelemetry collector when the
    // standard variable names one.
    let traces = matches!(cli.command, Command::Serve(_) | Command::Dev(_))
        .then(otlp::provider)
        .flatten();
    init_logging(cli.log_format, default_level, traces.as_ref());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::COMPONENT);
        }
    };
    let cache_dir = if cli.no_cache {
        None
    } else {
        cli.cache_dir.clone().or_else(default_cache_dir)
    };
    let result = runtime.block_on(async move {
        let policy = match &cli.policy {
            Some(path) => airssys_wasm_manifest::PolicyFile::load(path)
                .map_err(|e| output::InputError(e.to_string()))?,
            None => Default::default(),
        };
        let state_dir = || {
            cli.state_dir
                .clone()
                .or_else(default_state_dir)
                .ok_or_else(|| {
                    anyhow::Error::new(output::InputError(
                    "no state directory: set --state-dir or AIRSSYS_STATE_DIR (HOME is not set)"
                        .into(),
                ))
                })
        };
        let host = commands::Host {
            cache_dir,
            state_dir: cli.state_dir.clone().or_else(default_state_dir),
            remote: cli.host.clone(),
            policy,
            audit: None,
            collect: None,
        };
        match cli.command {
            Command::Run(args) => commands::run::main(args, host).await,
            Command::Call(args) => commands::call::main(args, host).await,
            Command::Inspect(args) => commands::inspect::main(args, host).await,
            Command::Compile(args) => commands::compile::main(args, host).await,
            Command::Publish(args) => commands::publish::main(args, host).await,
            Command::Keygen(args) => commands::signing::keygen(args),
            Command::Sign(args) => commands::signing::sign(args),
            Command::Trust(args) => commands::signing::trust(args, state_dir()?),
            Command::Audit(args) => commands::audit::main(args, host).await,
            Command::Deploy(args) => commands::deploy::deploy(args, host).await,
            Command::Upgrade(args) => commands::deploy::upgrade(args, host).await,
            Command::Rollback(args) => commands::deploy::rollback(args, host).await,
            Command::Promote(args) => commands::deploy::promote(args, host).await,
            Command::Abort(args) => commands::deploy::abort(args, host).await,
            Command::History(args) => commands::deploy::history(args, host).await,
            Command::Diff(args) => commands::deploy::diff(args, host).await,
            Command::Gc(args) => commands::deploy::gc(args, host),
            Command::Status(args) => commands::deploy::status(args, host).await,
            Command::Serve(args) => commands::serve::main(args, host).await,
            Command::Dev(args) => commands::dev::main(args, host).await,
            Command::Request(args) => commands::message::request(args, host).await,
            Command::Send(args) => commands::message::send(args, host).await,
            Command::Token(args) => commands::token::main(args, host).await,
        }
    });
    if let Some(traces) = traces {
        // What the batch holds goes out before the process ends.
        if let Err(e) = traces.shutdown() {
            eprintln!("warning: sending the last traces: {e}");
        }
    }
    match result {
        Ok(code) => ExitCode::from(code),
        // The reader closed our stdout (`| head`): it has what it wanted.
        Err(e) if output::is_broken_pipe(&e) => ExitCode::from(exit::OK),
        Err(e) => {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "error: {}", output::error_chain(&e));
            ExitCode::from(output::exit_code(&e))
        }
    }
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (with the span's fields).
    Json,
}

fn init_logging(
    format: LogFormat,
    default_level: &str,
    traces: Option<&opentelemetry_sdk::trace::SdkTracerProvider>,
) {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::prelude::*;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().with_current_span(true).boxed(),
    };
    // The exporter's own HTTP client is never traced into itself.
    let quiet = tracing_subscriber::filter::Targets::new()
        .with_default(tracing::Level::TRACE)
        .with_target(
            "opentelemetry",
            tracing_subscriber::filter::LevelFilter::OFF,
        )
        .with_target(
            "opentelemetry_sdk",
            tracing_subscriber::filter::LevelFilter::OFF,
        )
        .with_target(
            "opentelemetry_otlp",
            tracing_subscriber::filter::LevelFilter::OFF,
        )
        .with_target("reqwest", tracing_subscriber::filter::LevelFilter::OFF)
        .with_target("hyper_util", tracing_subscriber::filter::LevelFilter::OFF)
        .with_target("hyper", tracing_subscriber::filter::LevelFilter::OFF);
    let otel = traces.map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("airssys-wasm"))
            .with_filter(quiet)
    });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init();
}

mod otlp {
    //! OpenTelemetry export: spans (a request's, with its component,
    //! version and deployment, and the guest's log lines as its events)
    //! sent over OTLP HTTP/protobuf to `OTEL_EXPORTER_OTLP_ENDPOINT` (or
    //! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), with the other standard
    //! `OTEL_*` variables (headers, timeout, service name, resource).

    use opentelemetry_otlp::{Protocol, WithExportConfig as _};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::SdkTracerProvider;

    /// A tracer provider exporting to the configured endpoint; `None` when
    /// no endpoint is set, or (with a warning) when the exporter cannot be
    /// made.
    pub(crate) fn provider() -> Option<SdkTracerProvider> {
        let set = |v: &str| std::env::var_os(v).is_some_and(|v| !v.is_empty());
        if !set("OTEL_EXPORTER_OTLP_ENDPOINT") && !set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            return None;
        }
        let exporter = match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .build()
        {
            Ok(e) => e,
            Err(e) => {
                eprintln!("warning: no OpenTelemetry export: {e}");
                return None;
            }
        };
        let mut resource = Resource::builder();
        if !set("OTEL_SERVICE_NAME") {
            resource = resource.with_service_name("airssys-wasm");
        }
        Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource.build())
                .build(),
        )
    }
}

fn default_state_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local").join("share"))
        })?;
    Some(base.join("airssys-wasm"))
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("airssys-wasm"))
}
