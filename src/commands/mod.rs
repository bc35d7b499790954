//! One module per subcommand, and what they share: reading a component
//! file, the limit flags, building the runtime.

pub(crate) mod audit;
mod build;
pub(crate) mod call;
pub(crate) mod compile;
pub(crate) mod deploy;
pub(crate) mod dev;
pub(crate) mod inspect;
pub(crate) mod message;
pub(crate) mod publish;
pub(crate) mod run;
pub(crate) mod serve;
pub(crate) mod signing;
pub(crate) mod token;

use std::path::{Path, PathBuf};
use std::time::Duration;

use airssys_wasm_deploy::{DeploySpec, Registry, SqliteState, StateDir};
use airssys_wasm_manifest::{Manifest, Resolved, Source};
use airssys_wasm_runtime::{
    AuditEvent, AuditSink, Capability, ComponentInfo, Grant, Grants, HostPolicy, Limits,
    PrepareOptions, Runtime, RuntimeConfig,
};
use anyhow::Context;

use crate::output::InputError;

/// The limits a call runs under.
#[derive(Debug, clap::Args)]
pub(crate) struct LimitArgs {
    /// Wall-clock limit per call, including time blocked in the host
    /// (e.g. `500ms`, `10s`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,

    /// Linear memory limit (e.g. `64MiB`, `1GiB`, or bytes).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    memory: Option<u64>,

    /// Fuel budget per call (turns fuel metering on).
    #[arg(long, value_name = "N")]
    fuel: Option<u64>,
}

impl LimitArgs {
    /// The limits, starting from `base`.
    fn limits(&self, base: Limits) -> Limits {
        let mut l = base;
        if let Some(t) = self.timeout {
            l = l.timeout(t);
        }
        if let Some(m) = self.memory {
            l = l.memory(m);
        }
        l.fuel(self.fuel)
    }
}

/// What the operator grants and denies on the command line (added to what
/// a manifest grants and denies).
#[derive(Debug, clap::Args)]
pub(crate) struct GrantArgs {
    /// Grant a capability (repeatable): `system-call:state`,
    /// `system-call:env:HOME`, `file-read:/data`... A bare system-call name
    /// (`state`, `stdin`) is accepted too.
    #[arg(long = "allow", value_name = "CAP", value_parser = parse_capability)]
    allow: Vec<Capability>,

    /// Grant read access to a directory (repeatable), seen inside at the
    /// same path, or at GUEST with `HOST::GUEST`.
    #[arg(long = "allow-read", value_name = "DIR[::GUEST]", value_parser = parse_mount)]
    allow_read: Vec<(PathBuf, Option<String>)>,

    /// Grant read and write access to a directory (repeatable), seen
    /// inside at the same path, or at GUEST with `HOST::GUEST`.
    #[arg(long = "allow-write", value_name = "DIR[::GUEST]", value_parser = parse_mount)]
    allow_write: Vec<(PathBuf, Option<String>)>,

    /// Grant outbound connections to hosts matching a pattern (repeatable):
    /// `api.example.com`, `https://*.example.com:443`, `127.0.0.1:8080`.
    #[arg(long = "allow-outbound", value_name = "PATTERN", value_parser = parse_outbound)]
    allow_outbound: Vec<Capability>,

    /// Grant binding and listening on a port (repeatable).
    #[arg(long = "allow-inbound", value_name = "PORT")]
    allow_inbound: Vec<u16>,

    /// Grant one environment variable (repeatable), with its value here.
    #[arg(long = "allow-env", value_name = "NAME")]
    allow_env: Vec<String>,

    /// Deny a capability (repeatable); wins over any grant. `--deny clock
    /// --deny random` gives a deterministic component (a fixed clock and
    /// seeded generators).
    #[arg(long = "deny", value_name = "CAP", value_parser = parse_capability)]
    deny: Vec<Capability>,
}

impl GrantArgs {
    /// Whether no grant or denial flag was given.
    pub(crate) fn is_empty(&self) -> bool {
        self.allow.is_empty()
            && self.allow_read.is_empty()
            && self.allow_write.is_empty()
            && self.allow_outbound.is_empty()
            && self.allow_inbound.is_empty()
            && self.allow_env.is_empty()
            && self.deny.is_empty()
    }

    /// `base` (a manifest's grants) with these flags added, plus `extra`
    /// the command itself implies.
    pub(crate) fn grants(&self, base: Grants, extra: &[Capability]) -> Grants {
        let mut grants = base;
        let mount = |cap: Capability, guest: &Option<String>| match guest {
            Some(g) => Grant::new(cap).mount(g.clone()),
            None => Grant::new(cap),
        };
        for c in self.allow.iter().chain(extra) {
            grants = grants.allow(c.clone());
        }
        for (host, guest) in &self.allow_read {
            grants = grants.allow(mount(Capability::FileRead(host.clone()), guest));
        }
        for (host, guest) in &self.allow_write {
            grants = grants.allow(mount(Capability::FileWrite(host.clone()), guest));
        }
        for c in &self.allow_outbound {
            grants = grants.allow(c.clone());
        }
        for p in &self.allow_inbound {
            grants = grants.allow(Capability::NetworkInbound(*p));
        }
        for n in &self.allow_env {
            grants = grants.allow(Capability::SystemCall(format!("env:{n}")));
        }
        for c in &self.deny {
            grants = grants.deny(c.clone());
        }
        grants
    }
}

/// A host pattern, checked as `network-outbound:PATTERN` is.
fn parse_outbound(s: &str) -> Result<Capability, String> {
    format!("network-outbound:{s}")
        .parse::<Capability>()
        .map_err(|e| e.to_string())
}

/// `HOST` or `HOST::GUEST`.
fn parse_mount(s: &str) -> Result<(PathBuf, Option<String>), String> {
    match s.split_once("::") {
        None => Ok((PathBuf::from(s), None)),
        Some((host, guest)) if !host.is_empty() && guest.starts_with('/') => {
            Ok((PathBuf::from(host), Some(guest.to_string())))
        }
        Some(_) => Err(format!(
            "`{s}` is not DIR or DIR::GUEST (GUEST is an absolute path inside the component)"
        )),
    }
}

/// Which component a command works on: a file, or an entry of a manifest.
#[derive(Debug, clap::Args)]
pub(crate) struct Target {
    /// The component file; with --manifest, the name of one of its
    /// components (optional when it has only one).
    #[arg(value_name = "FILE|NAME", required_unless_present = "manifest")]
    component: Option<PathBuf>,

    /// Take the component, its grants, limits and configuration from this
    /// manifest (airssys.toml); flags add to it and override its limits.
    #[arg(long, value_name = "FILE", env = "AIRSSYS_MANIFEST")]
    manifest: Option<PathBuf>,
}

/// A component's bytes, and its manifest entry when it came from one.
pub(crate) struct Loaded {
    /// The name errors use (a file name).
    pub name: String,
    /// Where it came from, for display.
    pub origin: PathBuf,
    pub bytes: Vec<u8>,
    pub entry: Option<Resolved>,
    /// For a deployed component: what it was deployed with.
    pub deployed: Option<DeploySpec>,
    /// For a deployed component: its state store, and the state directory,
    /// held (locked) while the command runs.
    pub state: Option<(std::sync::Arc<SqliteState>, StateDir, String)>,
}

impl Loaded {
    /// A deployed component runs with what it was deployed with: grant and
    /// configuration flags on top would widen it unrecorded.
    pub(crate) fn refuse_extra_grants(
        &self,
        grants: &GrantArgs,
        config: bool,
    ) -> anyhow::Result<()> {
        if self.deployed.is_some() && (!grants.is_empty() || config) {
            anyhow::bail!(InputError(format!(
                "{} is deployed: it runs with its deployment's grants and configuration; change them with `airssys-wasm upgrade {}@VERSION --allow ... --config ...`",
                self.name, self.name
            )));
        }
        Ok(())
    }

    /// The grants of the manifest entry or deployment, or none.
    pub(crate) fn grants(&self) -> anyhow::Result<Grants> {
        if let Some(d) = &self.deployed {
            return Ok(d.options()?.grants);
        }
        Ok(self
            .entry
            .as_ref()
            .map(|e| e.grants.clone())
            .unwrap_or_default())
    }

    /// `base` with the manifest entry's or deployment's limits.
    pub(crate) fn limits(&self, base: Limits) -> Limits {
        if let Some(d) = &self.deployed {
            let mut l = base;
            if let Some(m) = d.memory {
                l = l.memory(m);
            }
            if let Some(t) = d.timeout_ms {
                l = l.timeout(Duration::from_millis(t));
            }
            return if d.fuel.is_some() { l.fuel(d.fuel) } else { l };
        }
        match &self.entry {
            Some(e) => e.limits(base),
            None => base,
        }
    }

    /// Whether the manifest entry or deployment sets a fuel budget.
    pub(crate) fn fuel(&self) -> bool {
        self.entry.as_ref().is_some_and(|e| e.fuel.is_some())
            || self.deployed.as_ref().is_some_and(|d| d.fuel.is_some())
    }

    /// Preparation options from the manifest entry or deployment, `grants`
    /// and `limits`.
    pub(crate) fn options(&self, grants: Grants, limits: Limits) -> PrepareOptions {
        let mut options = PrepareOptions::default().grants(grants).limits(limits);
        if let Some(e) = &self.entry {
            options = options
                .requires(e.requires.clone())
                .config(e.config.clone());
        }
        if let Some(d) = &self.deployed {
            options = options.config(d.config.clone());
            if let Some((state, _, namespace)) = &self.state {
                options = options.state(state.clone(), namespace.clone());
            }
        }
        options
    }

    /// Refuse a component whose own version differs from its manifest's.
    pub(crate) fn check_version(&self, info: &ComponentInfo) -> anyhow::Result<()> {
        let (Some(entry), Some(meta)) = (&self.entry, &info.metadata) else {
            return Ok(());
        };
        let Some(want) = &entry.version else {
            return Ok(());
        };
        if semver::Version::parse(&meta.version).ok().as_ref() != Some(want) {
            anyhow::bail!(InputError(format!(
                "the manifest says {} is version {want}, but {} says it is {}",
                entry.name,
                self.origin.display(),
                meta.version
            )));
        }
        Ok(())
    }
}

impl Target {
    /// Read the component (building it first when its manifest says so; from
    /// the state directory for a deployed `NAME` or `NAME@VERSION`).
    pub(crate) fn load(&self, host: &Host) -> anyhow::Result<Loaded> {
        let Some(manifest) = &self.manifest else {
            let file = self.component.clone().unwrap_or_default();
            if !file.exists()
                && let Some((name, version)) = deployed_name(&file.to_string_lossy())
                && let Some(state_dir) = &host.state_dir
                && state_dir.exists()
            {
                return load_deployed(state_dir, &name, version.as_deref());
            }
            let (name, bytes) = read_component(&file)?;
            return Ok(Loaded {
                name,
                origin: file,
                bytes,
                entry: None,
                deployed: None,
                state: None,
            });
        };
        let m = Manifest::load(manifest).map_err(|e| InputError(e.to_string()))?;
        let wanted = self.component.as_ref().map(|c| c.to_string_lossy());
        let entry = m
            .component(wanted.as_deref())
            .map_err(|e| InputError(e.to_string()))?;
        let file = match &entry.source {
            Source::File(path) => path.clone(),
            Source::Cargo { dir, package } => build::cargo(dir, package.as_deref())?,
        };
        let (_, bytes) = read_component(&file)?;
        Ok(Loaded {
            name: entry.name.clone(),
            origin: file,
            bytes,
            entry: Some(entry),
            deployed: None,
            state: None,
        })
    }
}

/// `NAME` or `NAME@VERSION`, when `s` reads as a deployed component.
fn deployed_name(s: &str) -> Option<(String, Option<String>)> {
    let (name, version) = match s.split_once('@') {
        Some((n, v)) => (n, Some(v.to_string())),
        None => (s, None),
    };
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    ok.then(|| (name.to_string(), version))
}

/// The deployed component `name` (its active deployment, or the newest one
/// of `version` that was active), with what it was deployed with.
fn load_deployed(state_dir: &Path, name: &str, version: Option<&str>) -> anyhow::Result<Loaded> {
    let dir = StateDir::open(state_dir)?;
    let registry = Registry::open(&dir)?;
    let d = airssys_wasm_deploy::find_deployment(&registry, name, version)?;
    let bytes = registry.bytes(name, &d.version)?;
    let state = std::sync::Arc::new(SqliteState::open(&dir)?);
    Ok(Loaded {
        name: name.to_string(),
        origin: PathBuf::from(format!("{name}@{} (deployment {})", d.version, d.id)),
        bytes,
        entry: None,
        state: Some((state, dir, d.state_namespace())),
        deployed: Some(d.spec),
    })
}

/// A capability in its string form, or a bare system-call name.
fn parse_capability(s: &str) -> Result<Capability, String> {
    match s.parse::<Capability>() {
        Ok(c) => Ok(c),
        Err(e) => {
            let bare = format!("system-call:{s}");
            bare.parse::<Capability>().map_err(|_| e.to_string())
        }
    }
}

/// A duration in whole milliseconds, as deployment specs hold them
/// (saturating: no duration a user gives overflows).
pub(crate) fn millis(d: Option<Duration>) -> Option<u64> {
    d.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = airssys_wasm_manifest::parse_duration(s)?;
    if d.is_zero() {
        return Err("a timeout must be longer than zero".into());
    }
    Ok(d)
}

use airssys_wasm_manifest::parse_size;

/// Read a component file (or stdin for `-`), naming the file in errors.
pub(crate) fn read_component(path: &Path) -> anyhow::Result<(String, Vec<u8>)> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let bytes = std::fs::read(path)
        .map_err(|e| InputError(format!("cannot read {}: {e}", path.display())))?;
    Ok((name, bytes))
}

/// What every command shares: the cache and the host policy, and how the
/// command wants audit events.
#[derive(Debug, Clone, Default)]
pub(crate) struct Host {
    pub cache_dir: Option<PathBuf>,
    /// The state directory, for deployed components.
    pub state_dir: Option<PathBuf>,
    /// `--host`: a running host's control API, for the deployment
    /// commands.
    pub remote: Option<String>,
    pub policy: HostPolicy,
    pub audit: Option<AuditFormat>,
    /// Audit events to keep (for a deployed component: they go to the
    /// state directory's trail when the command ends).
    pub collect: Option<std::sync::Arc<std::sync::Mutex<Vec<AuditEvent>>>>,
}

impl Host {
    /// The running host to talk to, if `--host` (or `AIRSSYS_HOST`) names
    /// one.
    pub(crate) fn client(&self) -> anyhow::Result<Option<crate::client::Client>> {
        self.remote
            .as_deref()
            .map(|url| crate::client::Client::new(url, self.state_dir.as_deref()))
            .transpose()
    }

    /// The local state directory.
    pub(crate) fn local_state_dir(&self) -> anyhow::Result<PathBuf> {
        self.state_dir.clone().ok_or_else(|| {
            anyhow::Error::new(InputError(
                "no state directory: set --state-dir or AIRSSYS_STATE_DIR".into(),
            ))
        })
    }
}

/// How audit events are printed (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum AuditFormat {
    /// JSON lines with --json, else text.
    Auto,
    /// One line of text per event.
    Text,
    /// One JSON object per line.
    Json,
}

/// `--audit`.
#[derive(Debug, clap::Args)]
pub(crate) struct AuditArgs {
    /// Print every denial the host observes to stderr (rate-limited per
    /// capability kind: the first 10 a minute, then a summary): text, or
    /// JSON lines (the default with --json).
    #[arg(long, value_name = "FORMAT", num_args = 0..=1, default_missing_value = "auto")]
    audit: Option<AuditFormat>,
}

impl AuditArgs {
    /// The format, with `json` telling what `auto` means.
    pub(crate) fn format(&self, json: bool) -> Option<AuditFormat> {
        self.audit.map(|f| match f {
            AuditFormat::Auto if json => AuditFormat::Json,
            AuditFormat::Auto => AuditFormat::Text,
            other => other,
        })
    }
}

/// Print an audit event to stderr.
fn print_event(format: AuditFormat, event: &AuditEvent) {
    use std::io::Write;
    let line = match format {
        AuditFormat::Json => serde_json::to_string(event).unwrap_or_default(),
        _ => format!("audit: {event}"),
    };
    let _ = writeln!(std::io::stderr(), "{line}");
}

impl Loaded {
    /// For a deployed component, keep what the host recorded in the state
    /// directory's audit trail; `result` is the command's, passed on.
    pub(crate) fn record_events<T>(
        &self,
        host: &Host,
        result: anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let (Some((_, dir, _)), Some(collected)) = (&self.state, &host.collect) else {
            return result;
        };
        let events = std::mem::take(&mut *collected.lock().unwrap_or_else(|p| p.into_inner()));
        let recorded = Registry::open(dir).and_then(|mut r| r.record_events(&events));
        match (result, recorded) {
            (Ok(v), Ok(())) => Ok(v),
            (Ok(_), Err(e)) => Err(anyhow::Error::new(e).context("recording audit events")),
            (Err(e), _) => Err(e),
        }
    }
}

/// A runtime for one CLI command.
pub(crate) fn runtime(host: &Host, fuel: bool) -> anyhow::Result<Runtime> {
    let mut config = RuntimeConfig::default()
        .fuel(fuel)
        .policy(host.policy.clone());
    let print = host.audit;
    let collect = host.collect.clone();
    if print.is_some() || collect.is_some() {
        config = config.audit(AuditSink::new(move |event| {
            if let Some(format) = print {
                print_event(format, &event);
            }
            if let Some(c) = &collect
                && let Ok(mut c) = c.lock()
            {
                c.push(event);
            }
        }));
    }
    let cache_dir = host.cache_dir.clone();
    if let Some(dir) = cache_dir {
        config = config.cache_dir(dir);
    }
    // One CLI process hosts one component: a small pool is plenty and
    // reserves less address space.
    config = config.max_instances(16);
    Runtime::new(config).context("starting the runtime")
}

/// `k=v` pairs.
pub(crate) fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not `key=value`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts() {
        assert_eq!(parse_mount("/data"), Ok(("/data".into(), None)));
        assert_eq!(
            parse_mount("./d::/in"),
            Ok(("./d".into(), Some("/in".into())))
        );
        assert!(parse_mount("./d::in").is_err());
        assert!(parse_mount("::/in").is_err());
    }

    #[test]
    fn pairs() {
        assert_eq!(parse_pair("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_pair("=x").is_err());
        assert!(parse_pair("novalue").is_err());
    }
}
