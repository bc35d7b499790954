//! `airssys-wasm dev [DIR]`: the developer loop. Build the component
//! project in DIR, serve it on a route of a host running in this process,
//! and on every change rebuild it and upgrade it in place (an immediate
//! upgrade: requests in flight finish on the old version, none fails). A
//! failed build leaves the last good version serving.
//!
//! Versions stay immutable: each build that changed the component is
//! published as `VERSION-dev.N` (VERSION being the component's own, N
//! counting up); the newest `--keep` are kept and the bytes and compiled
//! code of older ones collected, and the metrics drop their series.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use airssys_wasm_deploy::{DeploySpec, StateDir};
use airssys_wasm_runtime::ComponentInfo;
use airssys_wasm_server::{Control, ServeConfig, Server};
use anyhow::Context as _;

use super::Host;
use super::deploy::SpecArgs;
use crate::output::{InputError, error_chain, print_text};

/// The audit trail's actor for what `dev` does.
const ACTOR: &str = "dev";

/// Arguments of `dev`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
The host's state (its registry, audit trail, token and component state) \
lives in DIR/target/airssys-dev, apart from any other state directory \
(stop `dev` before a `cargo clean` there).\n\n\
Grants, limits, configuration and the route are given as to `deploy` \
(--allow, --memory, --config, --route...); the route defaults to /NAME. \
The token of the control API is in DIR/target/airssys-dev/admin.token.")]
pub(crate) struct Args {
    /// The component's cargo project (a crate or a workspace).
    #[arg(value_name = "DIR", default_value = ".")]
    dir: PathBuf,

    /// The package to build, in a workspace.
    #[arg(long, value_name = "PACKAGE")]
    package: Option<String>,

    /// The name it is deployed under (default: the name the component
    /// declares, else its file's).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,

    #[command(flatten)]
    spec: SpecArgs,

    /// Where HTTP requests for the route arrive.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    listen: SocketAddr,

    /// Where the control API, /healthz, /readyz and /metrics are served.
    #[arg(long, default_value = "127.0.0.1:8081", value_name = "ADDR")]
    admin_listen: SocketAddr,

    /// Dev versions kept; older ones' bytes and compiled code are
    /// collected (never the one serving nor the one before it).
    #[arg(long, default_value_t = 3, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    keep: u64,
}

pub(crate) async fn main(args: Args, host: Host) -> anyhow::Result<u8> {
    let project = args.dir.canonicalize().map_err(|e| {
        InputError(format!(
            "{}: {e}; give the directory of a cargo project",
            args.dir.display()
        ))
    })?;
    if !project.join("Cargo.toml").is_file() {
        return Err(InputError(format!(
            "{} has no Cargo.toml: `dev` builds a cargo project (a crate that builds a component for wasm32-wasip2)",
            project.display()
        ))
        .into());
    }
    // Flags that cannot make a deployment are refused now, not at each
    // build.
    if let Some(spec) = args.spec.spec("check", "0.0.0")? {
        spec.options()?;
        if let Some(route) = &spec.route {
            airssys_wasm_deploy::check_route(route).map_err(|e| InputError(e.to_string()))?;
        }
    }
    let built = target_dir(&project).await;
    let state = project.join("target").join("airssys-dev");
    std::fs::create_dir_all(project.join("target"))
        .with_context(|| format!("creating {}", project.join("target").display()))?;
    let dir = StateDir::open(&state)?;
    let config = ServeConfig::default()
        .listen(args.listen)
        .admin_listen(args.admin_listen);
    let server = Server::bind(dir, super::serve::runtime(&host), config).await?;
    let ingress = server.ingress_addr();
    print_text(&format!(
        "airssys-wasm dev: {}\n  ingress  http://{ingress}\n  admin    http://{}  (control API under /v1, /metrics)\n  token    {}\n",
        project.display(),
        server.admin_addr(),
        server.token_path().display(),
    ))?;
    let control = server.control();
    // What the last session left serving, until the first build.
    let serving = match control.status().await?.as_slice() {
        [one] => Some((one.name.clone(), one.version.clone())),
        _ => None,
    };
    let (stop_host, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut running = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    // Changes under DIR, apart from build output and hidden paths: the
    // top level is watched alone, each directory in it recursively (so
    // the build output is never watched at all).
    let (changed, mut changes) = tokio::sync::mpsc::unbounded_channel();
    let (watched, skip) = (project.clone(), built.clone());
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && matters(&watched, &skip, &event)
        {
            let _ = changed.send(event);
        }
    })
    .context("watching for changes")?;
    watch(&mut watcher, &project, notify::RecursiveMode::NonRecursive)?;
    for entry in std::fs::read_dir(&project)
        .with_context(|| format!("listing {}", project.display()))?
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() && !skipped(&project, &built, &path) {
            watch(&mut watcher, &path, notify::RecursiveMode::Recursive)?;
        }
    }

    let mut dev = Dev {
        args,
        project: project.clone(),
        control,
        ingress,
        serving,
    };
    let stop = super::serve::stop_signal();
    tokio::pin!(stop);
    let ended = 'work: loop {
        // Only the build is cut by a stop; a deployment under way ends.
        let started = Instant::now();
        let built = tokio::select! {
            built = dev.build() => built,
            () = &mut stop => break 'work None,
            r = &mut running => break 'work Some(r),
        };
        if let Some(wasm) = built {
            dev.serve_built(&wasm, started).await;
        }
        print_text("watching for changes (Ctrl-C stops)\n")?;
        // An editor's save is several events: the build starts once they
        // stop for 200 ms.
        let mut pending = false;
        loop {
            let quiet = tokio::time::sleep(Duration::from_millis(200));
            tokio::select! {
                event = changes.recv() => {
                    let Some(event) = event else { break 'work None };
                    pending = true;
                    // A directory made at the top level is watched too.
                    for path in &event.paths {
                        if path.parent() == Some(project.as_path()) && path.is_dir() {
                            let _ = watch(&mut watcher, path, notify::RecursiveMode::Recursive);
                        }
                    }
                }
                () = quiet, if pending => break,
                () = &mut stop => break 'work None,
                r = &mut running => break 'work Some(r),
            }
        }
    };
    drop(watcher);
    let result = match ended {
        // The host stopped by itself: say why.
        Some(r) => r,
        None => {
            let _ = stop_host.send(());
            running.await
        }
    };
    result.context("the host task")??;
    print_text("stopped\n")?;
    Ok(crate::exit::OK)
}

fn watch(
    watcher: &mut notify::RecommendedWatcher,
    path: &Path,
    mode: notify::RecursiveMode,
) -> anyhow::Result<()> {
    notify::Watcher::watch(watcher, path, mode)
        .with_context(|| format!("watching {} for changes", path.display()))
}

/// Where cargo puts what it builds for `project` (`cargo metadata`), when
/// that is inside it; `DIR/target` when cargo cannot say.
async fn target_dir(project: &Path) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = tokio::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .arg("--manifest-path")
        .arg(project.join("Cargo.toml"))
        .stderr(std::process::Stdio::null())
        .output()
        .await;
    out.ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
        .and_then(|v| v["target_directory"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| project.join("target"))
}

/// Whether `path` is build output (cargo's target directory, or `target`
/// at the top) or hidden (not watched, no trigger).
fn skipped(project: &Path, built: &Path, path: &Path) -> bool {
    if path.starts_with(built) {
        return true;
    }
    let Ok(rel) = path.strip_prefix(project) else {
        return true;
    };
    rel.starts_with("target")
        || rel
            .components()
            .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
}

/// Whether a file event should trigger a build: content, creation,
/// removal or renaming of a file outside the build output and hidden
/// paths, and not an editor's backup or swap file.
fn matters(project: &Path, built: &Path, event: &notify::Event) -> bool {
    use notify::EventKind;
    use notify::event::ModifyKind;
    let kind = matches!(
        event.kind,
        EventKind::Create(_)
            | EventKind::Remove(_)
            | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Name(_) | ModifyKind::Any)
    );
    // Events were lost (the kernel's queue overflowed): build to be sure.
    if event.need_rescan() {
        return true;
    }
    kind && event.paths.iter().any(|p| {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        !skipped(project, built, p) && !name.ends_with('~') && !name.ends_with(".swp")
    })
}

struct Dev {
    args: Args,
    project: PathBuf,
    control: Control,
    ingress: SocketAddr,
    /// The name and version serving, once one does.
    serving: Option<(String, String)>,
}

impl Dev {
    /// Build, and serve what was built if it changed; say what happened.
    /// Build; the component file, or `None` (said why) when it failed.
    /// A stop drops this future, and the cargo child with it.
    async fn build(&self) -> Option<PathBuf> {
        let package = self.args.package.as_deref();
        // Spawned, not `output()`: that would pipe stderr too, and cargo's
        // messages must reach the terminal.
        let built = match tokio::process::Command::from(super::build::cargo_command(
            &self.project,
            package,
        ))
        .kill_on_drop(true)
        .spawn()
        {
            Ok(child) => child.wait_with_output().await,
            Err(e) => Err(e),
        };
        let out = match built {
            Ok(out) => out,
            Err(e) => {
                let e = anyhow::Error::new(e).context("cannot run cargo");
                self.failed("the build failed", &e);
                return None;
            }
        };
        match super::build::artifact(&out, &self.project, package) {
            Ok(wasm) => Some(wasm),
            Err(e) => {
                self.failed("the build failed", &e);
                None
            }
        }
    }

    /// Serve what was built, if it changed; say what happened.
    async fn serve_built(&mut self, wasm: &Path, started: Instant) {
        match self.serve(wasm, started).await {
            Ok(said) => {
                let _ = print_text(&said);
            }
            Err(e) => self.failed("not served", &e),
        }
    }

    fn failed(&self, what: &str, e: &anyhow::Error) {
        let serving = match &self.serving {
            Some((name, version)) => format!("{name} {version} keeps serving"),
            None => "nothing serves yet".into(),
        };
        let _ = print_text(&format!("{what}: {}\n{serving}\n", error_chain(e)));
    }

    /// Publish and deploy the component at `wasm` unless it is what serves
    /// already; collect old dev versions. What to print.
    async fn serve(&mut self, wasm: &Path, started: Instant) -> anyhow::Result<String> {
        let bytes = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
        let file_name = wasm
            .file_stem()
            .map(|s| s.to_string_lossy().replace('_', "-"))
            .unwrap_or_else(|| "component".into());
        let info = ComponentInfo::read(&file_name, &bytes)?;
        let name = self
            .args
            .name
            .clone()
            .or_else(|| info.metadata.as_ref().map(|m| m.name.clone()))
            .unwrap_or(file_name);
        let base = info
            .metadata
            .as_ref()
            .and_then(|m| semver::Version::parse(&m.version).ok())
            .map(|mut v| {
                v.pre = semver::Prerelease::EMPTY;
                v.build = semver::BuildMetadata::EMPTY;
                v
            })
            .unwrap_or_else(|| semver::Version::new(0, 1, 0));
        let digest = info.digest.to_string();
        let versions = self.control.versions(&name).await?;
        // The same bytes as a dev version already published: that version
        // again (published anew if its bytes were collected).
        let prefix = format!("{base}-dev.");
        let dev_number = |v: &str| v.strip_prefix(&prefix).and_then(|n| n.parse::<u64>().ok());
        let version = match versions
            .iter()
            .find(|p| p.digest == digest && dev_number(&p.version).is_some())
        {
            Some(p) => p.version.clone(),
            None => {
                let next = versions
                    .iter()
                    .filter_map(|p| dev_number(&p.version))
                    .max()
                    .unwrap_or(0)
                    + 1;
                format!("{prefix}{next}")
            }
        };
        let mut spec = self
            .args
            .spec
            .spec(&name, &version)?
            .unwrap_or_else(|| DeploySpec::new(&name, &version));
        let route = spec.route.get_or_insert_with(|| format!("/{name}")).clone();
        // The same version with the same grants, limits and route: nothing
        // to do. (Flags changed since the last session redeploy it.)
        let active = self.control.active(&name).await?;
        if active.as_ref().is_some_and(|a| a.spec == spec) {
            self.serving = Some((name.clone(), version.clone()));
            return Ok(format!("no change: {name} {version} serves\n"));
        }
        self.control
            .publish_unsigned(&name, &version, &bytes, ACTOR)
            .await?;
        // A development build may change its contract at will.
        self.control.deploy(spec, true, ACTOR).await?;
        self.serving = Some((name.clone(), version.clone()));
        let mut said = format!(
            "built {name} {version} in {:.1}s; serving it on http://{}{route}\n",
            started.elapsed().as_secs_f64(),
            self.ingress
        );
        let keep = usize::try_from(self.args.keep).unwrap_or(usize::MAX);
        match self.control.gc(keep, ACTOR).await {
            Ok(c) if !c.pruned.is_empty() => {
                said.push_str(&format!("collected {}\n", c.pruned.join(", ")));
            }
            Ok(_) => {}
            Err(e) => said.push_str(&format!("warning: collecting old versions: {e}\n")),
        }
        Ok(said)
    }
}
