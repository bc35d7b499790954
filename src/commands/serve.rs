//! `airssys-wasm serve`: the host, with its ingress and control API, on a
//! state directory, until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use airssys_wasm_deploy::StateDir;
use airssys_wasm_runtime::RuntimeConfig;
use airssys_wasm_server::{ServeConfig, Server};

use super::{Host, parse_duration, parse_size};
use crate::output::{InputError, print_text};

/// Arguments of `serve`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The control API's token is written to STATE_DIR/admin.token on first \
start (mode 0600); send it as `Authorization: Bearer TOKEN`. /healthz, /readyz and /metrics \
on the admin listener need no token."
)]
pub(crate) struct Args {
    /// Where HTTP requests for deployed routes arrive.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    listen: SocketAddr,

    /// Where the control API, /healthz, /readyz and /metrics are served
    /// (keep it private).
    #[arg(long, default_value = "127.0.0.1:8081", value_name = "ADDR")]
    admin_listen: SocketAddr,

    /// How long requests in flight may take to finish at shutdown.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    grace: Duration,

    /// Largest component the control API accepts.
    #[arg(long, default_value = "64MiB", value_name = "SIZE", value_parser = parse_size)]
    max_component_size: u64,

    /// Meter fuel: each version's calls' fuel is counted in
    /// airssys_fuel_consumed_total. Metered code runs slower.
    #[arg(long)]
    fuel: bool,
}

pub(crate) async fn main(args: Args, host: Host) -> anyhow::Result<u8> {
    let state_dir = host.state_dir.clone().ok_or_else(|| {
        InputError("no state directory: set --state-dir or AIRSSYS_STATE_DIR".into())
    })?;
    let dir = StateDir::open(&state_dir)?;
    let runtime = runtime(&host).fuel(args.fuel);
    let config = ServeConfig::default()
        .listen(args.listen)
        .admin_listen(args.admin_listen)
        .grace(args.grace)
        .max_component_size(usize::try_from(args.max_component_size).unwrap_or(usize::MAX));
    let server = Server::bind(dir, runtime, config).await?;
    print_text(&format!(
        "airssys-wasm is serving {}\n  ingress  http://{}\n  admin    http://{}  (control API under /v1, /healthz, /readyz, /metrics)\n  token    {}\n",
        state_dir.display(),
        server.ingress_addr(),
        server.admin_addr(),
        server.token_path().display(),
    ))?;
    server.run(stop_signal()).await?;
    print_text("stopped\n")?;
    Ok(crate::exit::OK)
}

/// The runtime a host runs components on.
pub(crate) fn runtime(host: &Host) -> RuntimeConfig {
    let mut runtime = RuntimeConfig::default()
        .max_instances(256)
        // Freed instance slots decommitted one by one, as wasmtime serve
        // does: batches of 32 (the library's default, for call throughput)
        // made every 32nd request wait for the whole batch, and p99 13 ms
        // instead of 6 (docs/benchmarks.md section 6).
        .memory_init(true, 1)
        .policy(host.policy.clone());
    if let Some(cache) = &host.cache_dir {
        runtime = runtime.cache_dir(cache);
    }
    runtime
}

/// SIGINT or SIGTERM.
pub(crate) async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
