//! `airssys.toml`: the components a host runs, where their bytes come
//! from, what they are granted and denied, their limits and configuration;
//! and the operator's host-wide policy file.
//!
//! ```toml
//! [[component]]
//! name = "counter"
//! source = "target/wasm32-wasip2/release/counter.wasm"  # or { cargo = "examples/counter" }
//! version = "0.1.0"
//! allow = ["system-call:state", { capability = "file-read:./data", mount = "/data" }]
//! deny = ["system-call:clock"]
//! config = { greeting = "hello" }
//!
//! [component.limits]
//! memory = "64MiB"
//! timeout = "500ms"
//! ```
//!
//! Every error names the file, the line and column, and the key: unknown
//! keys are refused, capabilities are parsed as they are read, and checks
//! across fields point at the value at fault. Relative paths (sources,
//! file grants) are taken from the manifest's directory. The JSON Schema
//! ([`schema`]) is committed as `docs/manifest.schema.json`.

mod policy;
mod units;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use airssys_wasm_capability::Capability;
use airssys_wasm_runtime::{Grant, Grants, Limits};
use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

pub use policy::{PolicyFile, policy_schema};
pub use units::{parse_duration, parse_size};

/// A manifest or policy file that cannot be used; the message names the
/// file, line, column and key, and says what to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// `airssys.toml`: one or more components.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "airssys.toml",
    description = "Components an airssys-wasm host runs."
)]
pub struct Manifest {
    /// The components, one `[[component]]` table each.
    #[serde(default, rename = "component")]
    #[schemars(with = "Vec<Component>")]
    components: Vec<Spanned<Component>>,
    /// Supervision groups over actor components, one `[[supervisor]]` table
    /// each.
    #[serde(default, rename = "supervisor")]
    #[schemars(with = "Vec<SupervisorEntry>")]
    supervisors: Vec<Spanned<SupervisorEntry>>,
    /// The directory relative paths are taken from.
    #[serde(skip)]
    base: PathBuf,
    /// The file, for messages.
    #[serde(skip)]
    file: PathBuf,
}

/// One component of a manifest.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Component {
    /// Its name: lowercase letters, digits, `-` and `_`, starting with a
    /// letter.
    #[schemars(with = "String", regex(pattern = r"^[a-z][a-z0-9_-]*$"))]
    name: Spanned<String>,
    /// Where its bytes come from: a `.wasm` file, or `{ cargo = "DIR" }` to
    /// build the cargo package in DIR for `wasm32-wasip2`.
    #[schemars(with = "Source")]
    source: Spanned<Source>,
    /// Its version (semver). When the component carries our metadata, the
    /// two must agree.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    version: Option<Spanned<String>>,
    /// One line about it.
    #[serde(default)]
    description: Option<String>,
    /// Capabilities it requires besides those its metadata declares. A
    /// component given requirements here is held to them: grants beyond
    /// them are not given.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    requires: Vec<Spanned<Capability>>,
    /// Capabilities granted: capability strings (`system-call:state`,
    /// `file-read:./data`), or tables with a mount point and an end.
    #[serde(default)]
    #[schemars(with = "Vec<GrantEntry>")]
    allow: Vec<Spanned<GrantEntry>>,
    /// Capabilities denied; a denial wins over any grant.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    deny: Vec<Spanned<Capability>>,
    /// Limits every call runs under.
    #[serde(default)]
    limits: LimitsEntry,
    /// Configuration served through `wasi:config/store` and passed to
    /// `init`.
    #[serde(default)]
    config: BTreeMap<String, String>,
    /// The HTTP path prefix a host (`airssys-wasm serve --manifest`)
    /// serves it on, e.g. `/hello`.
    #[serde(default)]
    #[schemars(with = "Option<String>", regex(pattern = r"^/"))]
    route: Option<Spanned<String>>,
    /// How it is hosted: `per-call` (a fresh instance for every call, the
    /// default) or `actor` (long-lived instances with mailboxes, under a
    /// supervisor; settings in `[components.actor]`).
    #[serde(default)]
    hosting: Hosting,
    /// Actor hosting's settings (with `hosting = "actor"`).
    #[serde(default)]
    actor: Option<ActorEntry>,
    /// Topics it receives what is published on (exact, or a prefix ending
    /// in `*`); each needs a `messaging:subscribe:...` grant in `allow`.
    #[serde(default)]
    subscribe: Vec<String>,
}

impl ActorEntry {
    /// The window restarts are counted in, if set.
    pub fn restart_window(&self) -> Option<Duration> {
        self.restart_window.as_ref().map(|d| d.0)
    }

    /// The first wait before a restart, if set.
    pub fn backoff(&self) -> Option<Duration> {
        self.backoff.as_ref().map(|d| d.0)
    }

    /// How long a sender waits for room, if set.
    pub fn send_timeout(&self) -> Option<Duration> {
        self.send_timeout.as_ref().map(|d| d.0)
    }
}

/// A supervision group: components hosted as actors (or other groups),
/// in order, restarted together by a strategy, under an intensity of its
/// own.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SupervisorEntry {
    /// Its name (other supervisors name it among their children).
    #[schemars(with = "String", regex(pattern = r"^[a-z][a-z0-9_-]*$"))]
    name: Spanned<String>,
    /// Which children restart when an instance of one breaks:
    /// `one-for-one` (none besides it), `one-for-all` or `rest-for-one`
    /// (those after it).
    strategy: Supervision,
    /// Its children, in order: names of components with `hosting =
    /// "actor"`, or of other supervisors.
    #[schemars(with = "Vec<String>")]
    children: Vec<Spanned<String>>,
    /// Restarts allowed within `restart-window` before the group gives up
    /// (its parent restarts it whole; without a parent, every component
    /// under it fails) (default 3).
    #[serde(default)]
    max_restarts: Option<u32>,
    /// The window restarts are counted in, with a unit (default `5s`).
    #[serde(default)]
    #[schemars(with = "Option<units::DurationSchema>")]
    restart_window: Option<units::Dur>,
}

/// A supervision group of a manifest, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Supervisor {
    /// Its name.
    pub name: String,
    /// Which children restart together.
    pub strategy: Supervision,
    /// Its children, in order.
    pub children: Vec<String>,
    /// Restarts allowed within the window.
    pub max_restarts: u32,
    /// The window.
    pub restart_window: Duration,
}

/// How a component is hosted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Hosting {
    /// A fresh instance for every call.
    #[default]
    PerCall,
    /// Long-lived instances with mailboxes, under a supervisor.
    Actor,
}

/// Which instances restart when one breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Supervision {
    /// That instance alone (the default).
    OneForOne,
    /// Every instance.
    OneForAll,
    /// That instance and those started after it.
    RestForOne,
}

/// Actor hosting's settings; unset ones keep their defaults.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ActorEntry {
    /// Instances (default 1).
    #[serde(default)]
    #[schemars(range(min = 1, max = 64))]
    pub instances: Option<u32>,
    /// Messages each instance's mailbox holds (default 64); a sender waits
    /// while all are full.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub mailbox: Option<u32>,
    /// Which instances restart when one breaks (default `one-for-one`).
    #[serde(default)]
    pub supervision: Option<Supervision>,
    /// Restarts allowed within `restart-window` before the deployment
    /// fails (default 3).
    #[serde(default)]
    pub max_restarts: Option<u32>,
    /// The window restarts are counted in, with a unit (default `5s`).
    #[serde(default)]
    #[schemars(with = "Option<units::DurationSchema>")]
    restart_window: Option<units::Dur>,
    /// The wait before a restart, doubled for each further one in the
    /// window (default `100ms`).
    #[serde(default)]
    #[schemars(with = "Option<units::DurationSchema>")]
    backoff: Option<units::Dur>,
    /// How long a sender waits for room in a full mailbox (default `5s`).
    #[serde(default)]
    #[schemars(with = "Option<units::DurationSchema>")]
    send_timeout: Option<units::Dur>,
}

/// Where a component's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A component file.
    File(PathBuf),
    /// A cargo package to build for `wasm32-wasip2`.
    Cargo {
        /// The package's directory (holding its `Cargo.toml`).
        dir: PathBuf,
        /// The package to build, when the directory is a workspace.
        package: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CargoSource {
    cargo: PathBuf,
    #[serde(default)]
    package: Option<String>,
}

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Source;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a .wasm file path, or a table { cargo = "DIR" }"#)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Source, E> {
                if v.is_empty() {
                    return Err(E::custom("the source path is empty"));
                }
                Ok(Source::File(v.into()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Source, A::Error> {
                let c =
                    CargoSource::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(Source::Cargo {
                    dir: c.cargo,
                    package: c.package,
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Source {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Source".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A component file (`.wasm`), or a cargo package to build for wasm32-wasip2.",
            "oneOf": [
                { "type": "string", "minLength": 1, "description": "A component file, relative to the manifest." },
                {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["cargo"],
                    "properties": {
                        "cargo": { "type": "string", "description": "The package's directory, relative to the manifest." },
                        "package": { "type": "string", "description": "The package to build, when the directory is a workspace." }
                    }
                }
            ]
        })
    }
}

/// A grant: a capability string, or a table with a mount point and an end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantEntry {
    capability: Capability,
    mount: Option<String>,
    expires: Option<SystemTime>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantTable {
    capability: Capability,
    #[serde(default)]
    mount: Option<String>,
    #[serde(default)]
    expires: Option<toml::value::Datetime>,
}

impl<'de> Deserialize<'de> for GrantEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = GrantEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a capability string, or a table { capability = "...", mount = "/guest/path", expires = 2026-12-31T00:00:00Z }"#)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<GrantEntry, E> {
                Ok(GrantEntry {
                    capability: v.parse().map_err(E::custom)?,
                    mount: None,
                    expires: None,
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<GrantEntry, A::Error> {
                let t = GrantTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                let expires = match t.expires {
                    None => None,
                    Some(dt) => Some(units::system_time(&dt).map_err(serde::de::Error::custom)?),
                };
                Ok(GrantEntry {
                    capability: t.capability,
                    mount: t.mount,
                    expires,
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for GrantEntry {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Grant".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A capability granted: its string form, or a table with a mount point (file grants) and an end.",
            "oneOf": [
                { "type": "string", "description": "A capability, e.g. `system-call:state`, `file-read:./data`, `network-outbound:api.example.com:443`." },
                {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["capability"],
                    "properties": {
                        "capability": { "type": "string", "description": "The capability's string form." },
                        "mount": { "type": "string", "description": "For file-read and file-write: the absolute path the guest sees the directory at (default: its host path)." },
                        "expires": { "type": "string", "format": "date-time", "description": "When the grant ends (a TOML offset date-time, e.g. 2026-12-31T00:00:00Z)." }
                    }
                }
            ]
        })
    }
}

/// Limits of a manifest entry; unset ones keep the host's defaults.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LimitsEntry {
    /// Linear memory, with a unit (`64MiB`) or in bytes.
    #[serde(default)]
    #[schemars(with = "Option<units::SizeSchema>")]
    memory: Option<Spanned<units::Size>>,
    /// Wall-clock limit per call, with a unit (`500ms`, `10s`).
    #[serde(default)]
    #[schemars(with = "Option<units::DurationSchema>")]
    timeout: Option<Spanned<units::Dur>>,
    /// Fuel budget per call (turns fuel metering on).
    #[serde(default)]
    #[schemars(with = "Option<u64>", range(min = 1))]
    fuel: Option<Spanned<u64>>,
    /// How many calls may run at once.
    #[serde(default)]
    #[schemars(with = "Option<u32>", range(min = 1))]
    max_concurrent: Option<Spanned<u32>>,
}

/// What a manifest entry resolves to: everything needed to prepare it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Resolved {
    /// Its name.
    pub name: String,
    /// Where its bytes come from, with paths made absolute.
    pub source: Source,
    /// The version the manifest names.
    pub version: Option<semver::Version>,
    /// The description the manifest gives.
    pub description: Option<String>,
    /// What it requires besides its metadata.
    pub requires: Vec<Capability>,
    /// What it is granted and denied, with paths made absolute.
    pub grants: Grants,
    /// Memory limit, if set.
    pub memory: Option<u64>,
    /// Timeout, if set.
    pub timeout: Option<Duration>,
    /// Fuel budget, if set.
    pub fuel: Option<u64>,
    /// Concurrency cap, if set.
    pub max_concurrent: Option<u32>,
    /// Configuration pairs.
    pub config: Vec<(String, String)>,
    /// The HTTP path prefix a host serves it on.
    pub route: Option<String>,
    /// How it is hosted.
    pub hosting: Hosting,
    /// Actor hosting's settings, if given.
    pub actor: Option<ActorEntry>,
    /// Topics it subscribes to.
    pub subscribe: Vec<String>,
}

impl Resolved {
    /// The limits: `base` with what the manifest sets.
    pub fn limits(&self, base: Limits) -> Limits {
        let mut l = base;
        if let Some(m) = self.memory {
            l = l.memory(m);
        }
        if let Some(t) = self.timeout {
            l = l.timeout(t);
        }
        if let Some(n) = self.max_concurrent {
            l = l.max_concurrent(n);
        }
        if self.fuel.is_some() {
            l = l.fuel(self.fuel);
        }
        l
    }
}

/// The JSON Schema of `airssys.toml`, pretty-printed.
pub fn schema() -> String {
    let schema = schemars::schema_for!(Manifest);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

impl Manifest {
    /// Read and check the manifest at `path`.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error(format!("cannot read manifest {}: {e}", path.display())))?;
        Self::parse(&text, path)
    }

    /// Check manifest `text`, read from `path` (which names it in errors
    /// and anchors its relative paths).
    pub fn parse(text: &str, path: &Path) -> Result<Self, Error> {
        let mut m: Manifest = toml::from_str(text)
            .map_err(|e| Error(format!("{}: {}", path.display(), e.to_string().trim_end())))?;
        m.file = path.to_path_buf();
        m.base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        m.check(text)?;
        Ok(m)
    }

    /// The names of its components, in order.
    pub fn names(&self) -> Vec<&str> {
        self.components
            .iter()
            .map(|c| c.get_ref().name.get_ref().as_str())
            .collect()
    }

    /// The component named `name`, or the only one when `name` is `None`.
    pub fn component(&self, name: Option<&str>) -> Result<Resolved, Error> {
        let names = self.names();
        let found = match name {
            Some(n) => self
                .components
                .iter()
                .find(|c| c.get_ref().name.get_ref() == n)
                .ok_or_else(|| {
                    Error(format!(
                        "{}: no component named `{n}` (it has: {})",
                        self.file.display(),
                        names.join(", ")
                    ))
                })?,
            None => match self.components.as_slice() {
                [one] => one,
                [] => {
                    return Err(Error(format!(
                        "{}: no [[component]] in it",
                        self.file.display()
                    )));
                }
                _ => {
                    return Err(Error(format!(
                        "{}: it has several components ({}); name one",
                        self.file.display(),
                        names.join(", ")
                    )));
                }
            },
        };
        Ok(self.resolve(found.get_ref()))
    }

    /// The supervision groups, resolved (defaults filled in).
    pub fn supervisors(&self) -> Vec<Supervisor> {
        self.supervisors
            .iter()
            .map(|s| {
                let s = s.get_ref();
                Supervisor {
                    name: s.name.get_ref().clone(),
                    strategy: s.strategy,
                    children: s.children.iter().map(|c| c.get_ref().clone()).collect(),
                    max_restarts: s.max_restarts.unwrap_or(3),
                    restart_window: s
                        .restart_window
                        .as_ref()
                        .map_or(Duration::from_secs(5), |d| d.0),
                }
            })
            .collect()
    }

    /// Every component, resolved.
    pub fn components(&self) -> Vec<Resolved> {
        self.components
            .iter()
            .map(|c| self.resolve(c.get_ref()))
            .collect()
    }

    fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn capability(&self, c: &Capability) -> Capability {
        match c {
            Capability::FileRead(p) => Capability::FileRead(self.path(p)),
            Capability::FileWrite(p) => Capability::FileWrite(self.path(p)),
            other => other.clone(),
        }
    }

    fn resolve(&self, c: &Component) -> Resolved {
        let source = match c.source.get_ref() {
            Source::File(p) => Source::File(self.path(p)),
            Source::Cargo { dir, package } => Source::Cargo {
                dir: self.path(dir),
                package: package.clone(),
            },
        };
        let mut grants = Grants::default();
        for g in &c.allow {
            let g = g.get_ref();
            let mut grant = Grant::new(self.capability(&g.capability));
            if let Some(m) = &g.mount {
                grant = grant.mount(m.clone());
            }
            if let Some(t) = g.expires {
                grant = grant.expires(t);
            }
            grants = grants.allow(grant);
        }
        for d in &c.deny {
            grants = grants.deny(self.capability(d.get_ref()));
        }
        Resolved {
            name: c.name.get_ref().clone(),
            source,
            version: c
                .version
                .as_ref()
                .and_then(|v| semver::Version::parse(v.get_ref()).ok()),
            description: c.description.clone(),
            requires: c
                .requires
                .iter()
                .map(|r| self.capability(r.get_ref()))
                .collect(),
            grants,
            memory: c.limits.memory.as_ref().map(|m| m.get_ref().0),
            timeout: c.limits.timeout.as_ref().map(|t| t.get_ref().0),
            fuel: c.limits.fuel.as_ref().map(|f| *f.get_ref()),
            max_concurrent: c.limits.max_concurrent.as_ref().map(|n| *n.get_ref()),
            config: c
                .config
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            route: c.route.as_ref().map(|r| r.get_ref().clone()),
            hosting: c.hosting,
            actor: c.actor.clone(),
            subscribe: c.subscribe.clone(),
        }
    }

    /// Checks across fields, each pointing at the value at fault.
    fn check(&self, text: &str) -> Result<(), Error> {
        let at = |span: std::ops::Range<usize>, key: &str, what: String| {
            let (line, col) = line_col(text, span.start);
            Error(format!(
                "{}:{line}:{col}: `{key}`: {what}",
                self.file.display()
            ))
        };
        let mut seen: Vec<&str> = Vec::new();
        for c in &self.components {
            let c = c.get_ref();
            let name = c.name.get_ref();
            if !valid_name(name) {
                return Err(at(
                    c.name.span(),
                    "name",
                    format!(
                        "`{name}` is not a component name (lowercase letters, digits, `-` and `_`, starting with a letter)"
                    ),
                ));
            }
            if seen.contains(&name.as_str()) {
                return Err(at(
                    c.name.span(),
                    "name",
                    format!("a second component named `{name}`"),
                ));
            }
            seen.push(name);
            if let Some(v) = &c.version
                && let Err(e) = semver::Version::parse(v.get_ref())
            {
                return Err(at(
                    v.span(),
                    "version",
                    format!("`{}` is not a semver version ({e})", v.get_ref()),
                ));
            }
            if let Source::File(p) = c.source.get_ref() {
                let full = self.path(p);
                if !full.is_file() {
                    return Err(at(
                        c.source.span(),
                        "source",
                        format!(
                            "{} does not exist (build it first, or write source = {{ cargo = \"DIR\" }})",
                            full.display()
                        ),
                    ));
                }
            }
            if let Source::Cargo { dir, .. } = c.source.get_ref() {
                let full = self.path(dir);
                if !full.join("Cargo.toml").is_file() {
                    return Err(at(
                        c.source.span(),
                        "source",
                        format!("{} holds no Cargo.toml", full.display()),
                    ));
                }
            }
            if let Some(r) = &c.route {
                let route = r.get_ref();
                if !route.starts_with('/') || route.contains("//") || route.contains("/../") {
                    return Err(at(
                        r.span(),
                        "route",
                        format!("`{route}` is not a path prefix: write it as `/name`"),
                    ));
                }
            }
            for d in &c.deny {
                let denied = self.capability(d.get_ref());
                if let Some(g) = c
                    .allow
                    .iter()
                    .find(|g| self.capability(&g.get_ref().capability) == denied)
                {
                    let (line, _) = line_col(text, g.span().start);
                    return Err(at(
                        d.span(),
                        "deny",
                        format!("`{denied}` is both allowed (line {line}) and denied: keep one"),
                    ));
                }
            }
            for g in &c.allow {
                let entry = g.get_ref();
                let is_file = matches!(
                    entry.capability,
                    Capability::FileRead(_) | Capability::FileWrite(_)
                );
                if entry.mount.is_some() && !is_file {
                    return Err(at(
                        g.span(),
                        "allow",
                        format!(
                            "`{}`: a mount point is only for file-read and file-write",
                            entry.capability
                        ),
                    ));
                }
                if let Some(m) = &entry.mount
                    && !m.starts_with('/')
                {
                    return Err(at(
                        g.span(),
                        "allow",
                        format!("mount point `{m}` is not an absolute path"),
                    ));
                }
            }
            let l = &c.limits;
            if let Some(m) = &l.memory
                && m.get_ref().0 < 64 << 10
            {
                return Err(at(
                    m.span(),
                    "limits.memory",
                    "less than one WebAssembly page (64KiB)".into(),
                ));
            }
            if let Some(t) = &l.timeout
                && t.get_ref().0.is_zero()
            {
                return Err(at(
                    t.span(),
                    "limits.timeout",
                    "a timeout must be longer than zero".into(),
                ));
            }
            if let Some(f) = &l.fuel
                && *f.get_ref() == 0
            {
                return Err(at(
                    f.span(),
                    "limits.fuel",
                    "a fuel budget of 0 lets nothing run".into(),
                ));
            }
            if let Some(n) = &l.max_concurrent
                && *n.get_ref() == 0
            {
                return Err(at(
                    n.span(),
                    "limits.max-concurrent",
                    "0 concurrent calls lets nothing run".into(),
                ));
            }
        }
        self.check_supervisors(&at)
    }

    /// Each supervisor's children are actor components or supervisors of
    /// this manifest.
    fn check_supervisors(
        &self,
        at: &dyn Fn(std::ops::Range<usize>, &str, String) -> Error,
    ) -> Result<(), Error> {
        let groups: Vec<&str> = self
            .supervisors
            .iter()
            .map(|s| s.get_ref().name.get_ref().as_str())
            .collect();
        for s in &self.supervisors {
            let s = s.get_ref();
            if !valid_name(s.name.get_ref()) {
                return Err(at(
                    s.name.span(),
                    "name",
                    format!("`{}` is not a valid name", s.name.get_ref()),
                ));
            }
            if s.children.is_empty() {
                return Err(at(
                    s.name.span(),
                    "children",
                    "a supervisor needs children".into(),
                ));
            }
            if self
                .components
                .iter()
                .any(|c| c.get_ref().name.get_ref() == s.name.get_ref())
            {
                return Err(at(
                    s.name.span(),
                    "name",
                    format!(
                        "`{}` is also a component's name: give the supervisor its own",
                        s.name.get_ref()
                    ),
                ));
            }
            for child in &s.children {
                let name = child.get_ref();
                let component = self
                    .components
                    .iter()
                    .map(Spanned::get_ref)
                    .find(|c| c.name.get_ref() == name);
                match component {
                    Some(c) if c.hosting != Hosting::Actor => {
                        return Err(at(
                            child.span(),
                            "children",
                            format!(
                                "`{name}` is not hosted as an actor: add hosting = \"actor\" to it"
                            ),
                        ));
                    }
                    Some(_) => {}
                    None if groups.contains(&name.as_str()) => {}
                    None => {
                        return Err(at(
                            child.span(),
                            "children",
                            format!(
                                "`{name}` is neither a component nor a supervisor of this manifest"
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}
