//! `airssys-wasm serve`: the host, with its ingress and control API, on a
//! state directory, until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use std::path::Path;

use airssys_wasm_deploy::{DeploySpec, StateDir};
use airssys_wasm_manifest::{Manifest, Resolved, Source};
use airssys_wasm_runtime::{ComponentInfo, RuntimeConfig};
use airssys_wasm_server::{Control, ServeConfig, Server};
use anyhow::{Context as _, bail};

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

    /// Deploy the components this manifest names (airssys.toml;
    /// repeatable) at start: each published at its version (built first
    /// for a cargo source) and deployed with its grants, limits,
    /// configuration and route, unless that already serves.
    #[arg(long = "manifest", value_name = "FILE")]
    manifests: Vec<std::path::PathBuf>,

    /// Publish the manifests' components unsigned (as `publish
    /// --allow-unsigned`): needed with --manifest.
    #[arg(long, requires = "manifests")]
    allow_unsigned: bool,
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
    // What the manifests name is read, built and checked before anything
    // starts: a manifest that cannot be applied is refused whole.
    if !args.manifests.is_empty() && !args.allow_unsigned {
        bail!(InputError(
            "the components of a manifest are published unsigned: add --allow-unsigned (or publish signed versions and deploy them)".into()
        ));
    }
    let mut wanted = Vec::new();
    let mut groups = Vec::new();
    for path in &args.manifests {
        let m = Manifest::load(path).map_err(|e| InputError(e.to_string()))?;
        groups.extend(m.supervisors().into_iter().map(group));
        for entry in m.components() {
            let ready = ready(entry, args.fuel)
                .await
                .with_context(|| format!("{}", path.display()))?;
            wanted.push((path.clone(), ready));
        }
    }
    let server = Server::bind(dir, runtime, config).await?;
    let control = server.control();
    // Before any actor starts, so each reports to its group.
    control
        .supervise(groups)
        .await
        .map_err(|e| InputError(e.to_string()))?;
    let mut applied = String::new();
    for (path, ready) in wanted {
        applied.push_str(
            &apply(&control, &path, ready)
                .await
                .with_context(|| format!("{}", path.display()))?,
        );
    }
    print_text(&format!(
        "airssys-wasm is serving {}\n  ingress  http://{}\n  admin    http://{}  (control API under /v1, /healthz, /readyz, /metrics)\n  token    {}\n{applied}",
        state_dir.display(),
        server.ingress_addr(),
        server.admin_addr(),
        server.token_path().display(),
    ))?;
    server.run(stop_signal()).await?;
    print_text("stopped\n")?;
    Ok(crate::exit::OK)
}

/// A manifest entry read (built first for a cargo source) and checked:
/// its bytes and the deployment it asks for.
struct Ready {
    bytes: Vec<u8>,
    digest: String,
    spec: DeploySpec,
}

async fn ready(entry: Resolved, metered: bool) -> anyhow::Result<Ready> {
    let name = entry.name.clone();
    let file = match &entry.source {
        Source::File(file) => file.clone(),
        Source::Cargo { dir, package } => {
            let (dir, package) = (dir.clone(), package.clone());
            tokio::task::spawn_blocking(move || super::build::cargo(&dir, package.as_deref()))
                .await??
        }
    };
    let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let info = ComponentInfo::read(&name, &bytes)?;
    let declared = info
        .metadata
        .as_ref()
        .and_then(|m| semver::Version::parse(&m.version).ok());
    let version = match (&entry.version, &declared) {
        (Some(want), Some(own)) if want != own => bail!(InputError(format!(
            "component `{name}`: the manifest says version {want}, but {} says it is {own}",
            file.display()
        ))),
        (Some(v), _) | (None, Some(v)) => v.to_string(),
        (None, None) => bail!(InputError(format!(
            "component `{name}`: give its `version` (the component declares none)"
        ))),
    };
    let mut spec = DeploySpec::new(&name, &version);
    for g in &entry.grants.allow {
        if g.mount.is_some() || g.expires.is_some() {
            bail!(InputError(format!(
                "component `{name}`: `{g}`: mount points and ends of grants are not kept by deployments yet"
            )));
        }
        spec.allow.push(g.capability.to_string());
    }
    spec.deny = entry.grants.deny.iter().map(ToString::to_string).collect();
    spec.config = entry.config.clone();
    spec.memory = entry.memory;
    spec.timeout_ms = super::millis(entry.timeout);
    if entry.fuel.is_some() && !metered {
        bail!(InputError(format!(
            "component `{name}` sets `limits.fuel`: start the host with --fuel to meter it"
        )));
    }
    spec.fuel = entry.fuel;
    if let Some(route) = &entry.route {
        airssys_wasm_deploy::check_route(route)
            .map_err(|e| InputError(format!("component `{name}`: {e}")))?;
    }
    spec.route = entry.route.clone();
    spec.max_concurrent = entry.max_concurrent;
    actor_settings(&mut spec, &entry)
        .map_err(|e| InputError(format!("component `{name}`: {e}")))?;
    spec.options()
        .map_err(|e| InputError(format!("component `{name}`: {e}")))?;
    if !entry.requires.is_empty() {
        tracing::warn!(component = %name, "`requires` is not kept by deployments yet; left out");
    }
    Ok(Ready {
        bytes,
        digest: info.digest.to_string(),
        spec,
    })
}

/// A manifest's supervision strategy, for the deployer.
fn supervision(s: airssys_wasm_manifest::Supervision) -> airssys_wasm_deploy::Supervision {
    use airssys_wasm_deploy::Supervision as S;
    use airssys_wasm_manifest::Supervision as M;
    match s {
        M::OneForAll => S::OneForAll,
        M::RestForOne => S::RestForOne,
        _ => S::OneForOne,
    }
}

/// A manifest's supervision group, for the deployer.
fn group(s: airssys_wasm_manifest::Supervisor) -> airssys_wasm_deploy::GroupSpec {
    airssys_wasm_deploy::GroupSpec {
        name: s.name,
        strategy: supervision(s.strategy),
        children: s.children,
        max_restarts: s.max_restarts,
        restart_window: s.restart_window,
    }
}

/// A manifest entry's hosting, actor settings and subscriptions, checked.
fn actor_settings(
    spec: &mut airssys_wasm_deploy::DeploySpec,
    entry: &airssys_wasm_manifest::Resolved,
) -> Result<(), airssys_wasm_deploy::Error> {
    use airssys_wasm_deploy::{ActorSpec, Hosting};
    use airssys_wasm_manifest as m;
    spec.hosting = match entry.hosting {
        m::Hosting::Actor => Hosting::Actor,
        _ => Hosting::PerCall,
    };
    spec.actor = entry.actor.as_ref().map(|a| ActorSpec {
        instances: a.instances,
        mailbox: a.mailbox,
        supervision: a.supervision.map(supervision),
        max_restarts: a.max_restarts,
        restart_window_ms: super::millis(a.restart_window()),
        backoff_ms: super::millis(a.backoff()),
        send_timeout_ms: super::millis(a.send_timeout()),
    });
    spec.subscribe = entry.subscribe.clone();
    spec.actor_plan()?;
    spec.subscriptions().map(|_| ())
}

/// Publish and deploy one manifest entry unless it serves as written; what
/// to print.
async fn apply(control: &Control, path: &Path, ready: Ready) -> anyhow::Result<String> {
    let Ready {
        bytes,
        digest,
        mut spec,
    } = ready;
    let (name, version) = (spec.name.clone(), spec.version.clone());
    let actor = format!("manifest:{}", path.display());
    // The same bytes again are a no-op; other bytes under a published
    // version are refused, so a changed component needs a new version.
    control
        .publish_unsigned(&name, &version, &bytes, &actor)
        .await?;
    let active = control.active(&name).await?;
    if let Some(a) = &active {
        // A route, once given, stays across upgrades.
        if spec.route.is_none() {
            spec.route.clone_from(&a.spec.route);
        }
        if a.spec == spec && a.digest == digest {
            return Ok(format!(
                "  {name} {version} serves as {} says\n",
                path.display()
            ));
        }
    }
    let d = control.deploy(spec, false, &actor).await?;
    Ok(format!(
        "  deployed {name} {version} from {} (deployment {}){}\n",
        path.display(),
        d.id,
        d.spec.route.map(|r| format!(" on {r}")).unwrap_or_default()
    ))
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
