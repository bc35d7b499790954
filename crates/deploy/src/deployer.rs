//! Deployments: which version of each component is active, how it got
//! there, and the in-process switch that calls go through.
//!
//! A deployment record moves through an explicit state machine, each
//! transition persisted before it takes effect:
//!
//! ```text
//! submitted -> validated -> prepared -> active -> retired
//!      \            \            \
//!       `------------`------------`--> failed (with the reason)
//! ```
//!
//! `validated`: the bytes are published and readable, and the component's
//! required capabilities are granted. `prepared`: compiled (or loaded from
//! the compiled-code cache) and pre-instantiated. `active`: at most one per
//! component (a unique index says so); the one it replaced is `retired` in
//! the same transaction. A process that stops between `submitted` and
//! `active` leaves a record that the next open marks `failed`
//! ("interrupted"): the previously active version never stopped being
//! active. In-process, activation is one atomic swap; a call holds the
//! version it started on.

use std::collections::HashMap;
use std::sync::Arc;

use airssys_wasm_runtime::{
    Capability, ComponentPre, Grants, Limits, PrepareOptions, Runtime, RuntimeConfig,
};
use rusqlite::{OptionalExtension, params};

use crate::error::{Error, Result};
use crate::registry::Registry;
use crate::state_dir::StateDir;

/// How an upgrade reaches live traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Strategy {
    /// All new calls go to the new version at once.
    Immediate,
}

impl std::str::FromStr for Strategy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "immediate" => Ok(Self::Immediate),
            "blue-green" | "canary" => Err(Error::Invalid(format!(
                "the `{s}` strategy acts on live traffic and needs a running host (`airssys-wasm serve`); a local command applies `immediate`"
            ))),
            other => Err(Error::Invalid(format!(
                "unknown strategy `{other}`: use immediate, blue-green or canary"
            ))),
        }
    }
}

/// What to deploy: a published version, with what the operator grants.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct DeploySpec {
    /// The component.
    pub name: String,
    /// The published version.
    pub version: String,
    /// Capabilities granted (string form).
    pub allow: Vec<String>,
    /// Capabilities denied (string form).
    pub deny: Vec<String>,
    /// Configuration pairs.
    pub config: Vec<(String, String)>,
    /// Memory limit in bytes, if set.
    pub memory: Option<u64>,
    /// Timeout in milliseconds, if set.
    pub timeout_ms: Option<u64>,
    /// Fuel budget, if set.
    pub fuel: Option<u64>,
}

impl DeploySpec {
    /// Deploy `name` `version` with nothing granted.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            allow: Vec::new(),
            deny: Vec::new(),
            config: Vec::new(),
            memory: None,
            timeout_ms: None,
            fuel: None,
        }
    }

    /// The preparation options this spec means.
    pub fn options(&self) -> Result<PrepareOptions> {
        let parse = |list: &[String]| -> Result<Vec<Capability>> {
            list.iter()
                .map(|c| c.parse().map_err(|e| Error::Invalid(format!("{e}"))))
                .collect()
        };
        let mut grants = Grants::default();
        for c in parse(&self.allow)? {
            grants = grants.allow(c);
        }
        for c in parse(&self.deny)? {
            grants = grants.deny(c);
        }
        let mut limits = Limits::default();
        if let Some(m) = self.memory {
            limits = limits.memory(m);
        }
        if let Some(t) = self.timeout_ms {
            limits = limits.timeout(std::time::Duration::from_millis(t));
        }
        limits = limits.fuel(self.fuel);
        Ok(PrepareOptions::default()
            .grants(grants)
            .limits(limits)
            .config(self.config.clone()))
    }
}

/// One deployment, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Deployment {
    /// Its id, increasing.
    pub id: i64,
    /// The component.
    pub name: String,
    /// The version.
    pub version: String,
    /// `sha256:HEX` of the version's bytes.
    pub digest: String,
    /// What was deployed, with its grants, limits and configuration.
    pub spec: DeploySpec,
    /// `immediate`, or how it was rolled back to (`rollback`).
    pub strategy: String,
    /// The deployment it replaced.
    pub parent: Option<i64>,
    /// `submitted`, `validated`, `prepared`, `active`, `retired` or
    /// `failed`.
    pub state: String,
    /// Why it failed.
    pub reason: Option<String>,
    /// Who did it.
    pub actor: String,
    /// When it was submitted, milliseconds since 1970.
    pub created_ms: i64,
    /// When its state last changed.
    pub updated_ms: i64,
}

impl Deployment {
    /// The record as it may be shown: configuration values (which may be
    /// secrets) replaced by `<redacted>`.
    pub fn redacted(&self) -> Self {
        let mut d = self.clone();
        for (_, v) in &mut d.spec.config {
            *v = "<redacted>".to_string();
        }
        d
    }
}

/// The active version of one component, for calls in this process.
#[derive(Clone)]
pub struct Active {
    /// Its deployment.
    pub deployment: Arc<Deployment>,
    /// Ready to call.
    pub component: ComponentPre,
}

/// Deploys, upgrades and rolls back components of one state directory.
pub struct Deployer {
    registry: Registry,
    runtime: Runtime,
    state: Arc<crate::state::SqliteState>,
    active: HashMap<String, Arc<std::sync::RwLock<Option<Active>>>>,
    last_activation: Option<Activation>,
    /// Audit events of this deployer's runtime, not yet in the trail.
    events: Arc<std::sync::Mutex<Vec<airssys_wasm_runtime::AuditEvent>>>,
}

/// How long the last activation took: persisting it (the transaction that
/// retires the old deployment, activates the new one and appends the audit
/// record, fsynced), then switching calls over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activation {
    /// The persisted transition.
    pub commit: std::time::Duration,
    /// The in-process switch.
    pub swap: std::time::Duration,
}

/// Where calls find the active version of one component: cheap to clone,
/// shared with the threads that call.
#[derive(Clone)]
pub struct Route(Arc<std::sync::RwLock<Option<Active>>>);

impl Route {
    /// The active version now; a call keeps it until it ends.
    pub fn current(&self) -> Option<Active> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl std::fmt::Debug for Deployer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployer").finish_non_exhaustive()
    }
}

impl Deployer {
    /// The deployer of `dir`, with a runtime keeping compiled code in the
    /// directory's cache. Deployments a stopped process left half-way are
    /// marked failed.
    ///
    /// What the runtime denies while deploying (a probe's `init` is guest
    /// code) goes into the audit trail at the end of each operation, besides
    /// any sink `config` already has.
    pub fn open(dir: &StateDir, config: RuntimeConfig) -> Result<Self> {
        let registry = Registry::open(dir)?;
        let events: Arc<std::sync::Mutex<Vec<airssys_wasm_runtime::AuditEvent>>> = Arc::default();
        let sink = {
            let events = events.clone();
            let outer = config.audit.clone();
            airssys_wasm_runtime::AuditSink::new(move |e| {
                if let Some(outer) = &outer {
                    outer.send(e.clone());
                }
                events
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(e);
            })
        };
        let runtime = Runtime::new(config.cache_dir(dir.cache()).audit(sink))?;
        let state = Arc::new(crate::state::SqliteState::open(dir)?);
        let this = Self {
            registry,
            runtime,
            state,
            active: HashMap::new(),
            last_activation: None,
            events,
        };
        this.fail_interrupted()?;
        Ok(this)
    }

    /// The preparation options of `spec`, its state kept in this state
    /// directory under the component's name.
    pub fn options(&self, spec: &DeploySpec) -> Result<PrepareOptions> {
        Ok(spec.options()?.state(self.state.clone(), spec.name.clone()))
    }

    /// The runtime calls run on.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The registry of published versions.
    pub fn registry(&mut self) -> &mut Registry {
        &mut self.registry
    }

    fn fail_interrupted(&self) -> Result<()> {
        let n = self.registry.conn().execute(
            "UPDATE deployments SET state = 'failed', reason = 'interrupted: the process stopped before it became active', updated_ms = ?1
             WHERE state IN ('submitted', 'validated', 'prepared')",
            params![crate::audit::now_ms()],
        )?;
        if n > 0 {
            tracing::warn!(
                count = n,
                "deployments interrupted by a stop were marked failed"
            );
        }
        Ok(())
    }

    /// Deploy `spec`: the first deployment of a component, or an upgrade
    /// of its active one (`immediate`). Returns the new active deployment.
    ///
    /// An upgrade whose WIT changes are breaking is refused unless
    /// `allow_breaking`.
    pub async fn deploy(
        &mut self,
        spec: DeploySpec,
        allow_breaking: bool,
        actor: &str,
    ) -> Result<Deployment> {
        let parent = self.active_record(&spec.name)?;
        let action = if parent.is_some() {
            "upgrade"
        } else {
            "deploy"
        };
        let guard = parent.as_ref().map(|p| (p.version.clone(), allow_breaking));
        let r = self
            .activate_new(spec, parent.map(|p| p.id), guard, action, actor)
            .await;
        self.record_events()?;
        r
    }

    /// Upgrade `name` to `version` with `strategy`, keeping the active
    /// deployment's grants, limits and configuration unless `spec` is
    /// given. Breaking WIT changes ([`crate::diff`]) refuse the upgrade
    /// unless `allow_breaking`.
    pub async fn upgrade(
        &mut self,
        name: &str,
        version: &str,
        strategy: Strategy,
        spec: Option<DeploySpec>,
        allow_breaking: bool,
        actor: &str,
    ) -> Result<Deployment> {
        let Strategy::Immediate = strategy;
        let parent = self.active_record(name)?.ok_or_else(|| {
            Error::Invalid(format!(
                "{name} has no active deployment to upgrade; deploy it first: `airssys-wasm deploy {name}@{version}`"
            ))
        })?;
        let mut spec = spec.unwrap_or_else(|| parent.spec.clone());
        spec.name = name.to_string();
        spec.version = version.to_string();
        let guard = Some((parent.version.clone(), allow_breaking));
        let r = self
            .activate_new(spec, Some(parent.id), guard, "upgrade", actor)
            .await;
        self.record_events()?;
        r
    }

    /// Record, validate, prepare and activate `spec`; `guard` is the
    /// version it replaces and whether breaking changes are allowed.
    async fn activate_new(
        &mut self,
        spec: DeploySpec,
        parent: Option<i64>,
        guard: Option<(String, bool)>,
        action: &str,
        actor: &str,
    ) -> Result<Deployment> {
        let strategy = "immediate";
        let version = semver::Version::parse(&spec.version)
            .map_err(|e| {
                Error::Invalid(format!("`{}` is not a semver version ({e})", spec.version))
            })?
            .to_string();
        let spec = DeploySpec { version, ..spec };
        let digest = self.registry.digest(&spec.name, &spec.version)?.ok_or_else(|| {
            Error::Invalid(format!(
                "{} {} is not published; publish it first: `airssys-wasm publish FILE --name {} --version {}`",
                spec.name, spec.version, spec.name, spec.version
            ))
        })?;
        let id = self.insert(&spec, &digest, parent, strategy, actor)?;
        match self.validate_and_prepare(id, &spec, guard).await {
            Ok(component) => {
                let start = std::time::Instant::now();
                let record = match self.commit_active(id, parent, action, actor) {
                    Ok(r) => r,
                    Err(e) => {
                        if let Err(f) = self.fail(id, &spec, action, actor, &e) {
                            tracing::error!(error = %f, "recording the failed activation");
                        }
                        return Err(e);
                    }
                };
                let committed = std::time::Instant::now();
                self.swap(
                    &spec.name,
                    Some(Active {
                        deployment: Arc::new(record.clone()),
                        component,
                    }),
                );
                self.last_activation = Some(Activation {
                    commit: committed - start,
                    swap: committed.elapsed(),
                });
                Ok(record)
            }
            Err(e) => {
                if let Err(f) = self.fail(id, &spec, action, actor, &e) {
                    tracing::error!(error = %f, "recording the failed deployment");
                }
                Err(e)
            }
        }
    }

    async fn validate_and_prepare(
        &mut self,
        id: i64,
        spec: &DeploySpec,
        guard: Option<(String, bool)>,
    ) -> Result<ComponentPre> {
        let bytes = self.registry.bytes(&spec.name, &spec.version)?;
        if let Some((from, allow_breaking)) = guard
            && from != spec.version
        {
            let old = self.registry.bytes(&spec.name, &from)?;
            let changes = crate::diff::diff(&old, &bytes)?;
            if crate::diff::breaking(&changes) && !allow_breaking {
                let list: Vec<String> = changes
                    .iter()
                    .filter(|c| c.class == crate::diff::Class::Breaking)
                    .map(|c| c.what.clone())
                    .collect();
                return Err(Error::Invalid(format!(
                    "the upgrade from {from} to {} is breaking ({}); pass --allow-breaking to deploy it anyway",
                    spec.version,
                    list.join("; ")
                )));
            }
        }
        let options = self.options(spec)?;
        let compiled = self.runtime.compile(&spec.name, &bytes)?;
        self.runtime.decide(&compiled.info, &options)?;
        self.set_state(id, "validated")?;
        let component = self.runtime.load(&spec.name, &bytes, options).await?;
        self.set_state(id, "prepared")?;
        Ok(component)
    }

    fn insert(
        &mut self,
        spec: &DeploySpec,
        digest: &str,
        parent: Option<i64>,
        strategy: &str,
        actor: &str,
    ) -> Result<i64> {
        let spec_json = serde_json::to_string(spec).map_err(|e| Error::Invalid(e.to_string()))?;
        let now = crate::audit::now_ms();
        self.registry.conn().execute(
            "INSERT INTO deployments (name, version, digest, spec, strategy, parent, state, actor, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'submitted', ?7, ?8, ?8)",
            params![spec.name, spec.version, digest, spec_json, strategy, parent, actor, now],
        )?;
        Ok(self.registry.conn().last_insert_rowid())
    }

    fn set_state(&self, id: i64, state: &str) -> Result<()> {
        self.registry.conn().execute(
            "UPDATE deployments SET state = ?1, updated_ms = ?2 WHERE id = ?3",
            params![state, crate::audit::now_ms(), id],
        )?;
        Ok(())
    }

    /// Retire the active deployment and activate `id`, in one transaction
    /// with its audit record.
    fn commit_active(
        &mut self,
        id: i64,
        retire: Option<i64>,
        action: &str,
        actor: &str,
    ) -> Result<Deployment> {
        let now = crate::audit::now_ms();
        let record = {
            let tx = self.registry.begin()?;
            if let Some(old) = retire {
                tx.execute(
                    "UPDATE deployments SET state = 'retired', updated_ms = ?1 WHERE id = ?2 AND state = 'active'",
                    params![now, old],
                )?;
            }
            tx.execute(
                "UPDATE deployments SET state = 'active', reason = NULL, updated_ms = ?1 WHERE id = ?2",
                params![now, id],
            )?;
            let record = read(&tx, id)?;
            let details = serde_json::json!({
                "deployment": id,
                "digest": record.digest,
                "replaced": retire,
                "allow": record.spec.allow,
                "deny": record.spec.deny,
                // Configuration values may be secrets: only their keys.
                "config_keys": record.spec.config.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            });
            let subject = format!("{}@{}", record.name, record.version);
            let head = crate::audit::append(&tx, actor, action, &subject, &details)?;
            tx.commit(head)?;
            record
        };
        Ok(record)
    }

    fn fail(
        &mut self,
        id: i64,
        spec: &DeploySpec,
        action: &str,
        actor: &str,
        e: &Error,
    ) -> Result<()> {
        let tx = self.registry.begin()?;
        let reason = safe_reason(e, spec);
        tx.execute(
            "UPDATE deployments SET state = 'failed', reason = ?1, updated_ms = ?2 WHERE id = ?3",
            params![reason, crate::audit::now_ms(), id],
        )?;
        let details = serde_json::json!({ "deployment": id, "failed": reason });
        let subject = format!("{}@{}", spec.name, spec.version);
        let head =
            crate::audit::append(&tx, actor, &format!("{action}-failed"), &subject, &details)?;
        tx.commit(head)
    }

    /// Re-activate an earlier deployment of `name`: the one `to` names (a
    /// version or a deployment id), else the one the active deployment
    /// replaced. Compiled code comes from the cache.
    pub async fn rollback(
        &mut self,
        name: &str,
        to: Option<&str>,
        actor: &str,
    ) -> Result<Deployment> {
        let r = self.rollback_to(name, to, actor).await;
        self.record_events()?;
        r
    }

    async fn rollback_to(
        &mut self,
        name: &str,
        to: Option<&str>,
        actor: &str,
    ) -> Result<Deployment> {
        let current = self.active_record(name)?.ok_or_else(|| {
            Error::Invalid(format!("{name} has no active deployment to roll back"))
        })?;
        let target = match to {
            None => current.parent.ok_or_else(|| {
                Error::Invalid(format!(
                    "{name}'s active deployment ({}) replaced nothing; name a version with --to",
                    current.version
                ))
            })?,
            Some(t) => self.find(name, t)?,
        };
        if target == current.id {
            return Err(Error::Invalid(format!(
                "{name} {} is already active",
                current.version
            )));
        }
        let record = read(self.registry.conn(), target)?;
        if record.name != name {
            return Err(Error::Invalid(format!(
                "deployment {target} is of {}, not of {name}",
                record.name
            )));
        }
        if !matches!(record.state.as_str(), "retired" | "active") {
            return Err(Error::Invalid(format!(
                "deployment {target} of {name} was never active ({}); roll back to one that was",
                record.state
            )));
        }
        let options = self.options(&record.spec)?;
        let bytes = self.registry.bytes(name, &record.version)?;
        let component = self.runtime.load(name, &bytes, options).await?;
        let record = self.commit_active(target, Some(current.id), "rollback", actor)?;
        self.swap(
            name,
            Some(Active {
                deployment: Arc::new(record.clone()),
                component,
            }),
        );
        Ok(record)
    }

    /// A deployment id, or the newest deployment of `version` that was
    /// active.
    fn find(&self, name: &str, to: &str) -> Result<i64> {
        if let Ok(id) = to.parse::<i64>() {
            // Only a deployment of this component.
            return self
                .registry
                .conn()
                .query_row(
                    "SELECT id FROM deployments WHERE id = ?1 AND name = ?2",
                    params![id, name],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or_else(|| Error::Invalid(format!("{name} has no deployment {id}")));
        }
        deployment_id(&self.registry, name, Some(to))?
            .ok_or_else(|| Error::Invalid(format!("{name} {to} was never active here")))
    }

    /// The WIT changes from `name` `a` to `name` `b` (published versions).
    pub fn diff(&self, name: &str, a: &str, b: &str) -> Result<Vec<crate::diff::Change>> {
        let old = self.registry.bytes(name, a)?;
        let new = self.registry.bytes(name, b)?;
        crate::diff::diff(&old, &new)
    }

    /// Every deployment of `name`, oldest first.
    pub fn history(&self, name: &str) -> Result<Vec<Deployment>> {
        let mut stmt = self
            .registry
            .conn()
            .prepare("SELECT id FROM deployments WHERE name = ?1 ORDER BY id")?;
        let ids: Vec<i64> = stmt
            .query_map(params![name], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        ids.into_iter()
            .map(|id| read(self.registry.conn(), id))
            .collect()
    }

    /// The active deployment of every component.
    pub fn status(&self) -> Result<Vec<Deployment>> {
        let mut stmt = self
            .registry
            .conn()
            .prepare("SELECT id FROM deployments WHERE state = 'active' ORDER BY name")?;
        let ids: Vec<i64> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        ids.into_iter()
            .map(|id| read(self.registry.conn(), id))
            .collect()
    }

    fn active_record(&self, name: &str) -> Result<Option<Deployment>> {
        deployment_id(&self.registry, name, None)?
            .map(|id| read(self.registry.conn(), id))
            .transpose()
    }

    /// The active version of `name`, ready to call: prepared on first use
    /// in this process (from the compiled-code cache).
    pub async fn active(&mut self, name: &str) -> Result<Active> {
        if let Some(a) = self.slot(name).read().ok().and_then(|g| g.clone()) {
            return Ok(a);
        }
        let record = self.active_record(name)?.ok_or_else(|| {
            Error::Invalid(format!(
                "{name} is not deployed; deploy it: `airssys-wasm deploy {name}@VERSION`"
            ))
        })?;
        let bytes = self.registry.bytes(name, &record.version)?;
        let options = self.options(&record.spec)?;
        let component = self.runtime.load(name, &bytes, options).await?;
        let active = Active {
            deployment: Arc::new(record),
            component,
        };
        self.swap(name, Some(active.clone()));
        Ok(active)
    }

    /// The route calls to `name` take (filled by `active`, `deploy`,
    /// `upgrade` and `rollback`).
    pub fn route(&mut self, name: &str) -> Route {
        Route(self.slot(name))
    }

    /// Append the audit events the runtime recorded (denials, refusals,
    /// limits) to the trail; embedders calling through routes call this
    /// from time to time. Deploy, upgrade and rollback call it themselves.
    pub fn record_events(&mut self) -> Result<usize> {
        let events = std::mem::take(
            &mut *self
                .events
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        self.registry.record_events(&events)?;
        Ok(events.len())
    }

    /// How long the last deploy or upgrade took to activate.
    pub fn last_activation(&self) -> Option<Activation> {
        self.last_activation
    }

    fn slot(&mut self, name: &str) -> Arc<std::sync::RwLock<Option<Active>>> {
        self.active.entry(name.to_string()).or_default().clone()
    }

    /// The switch: one write of the slot; calls that already took the
    /// previous `Active` finish on it.
    fn swap(&mut self, name: &str, to: Option<Active>) {
        let slot = self.slot(name);
        *slot
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = to;
    }
}

/// A failure's words as they may be kept forever: the guest's own text
/// (init's error, its stderr) may quote configuration, so every
/// configuration value is masked, and the text is cut to 1 KiB.
fn safe_reason(e: &Error, spec: &DeploySpec) -> String {
    let mut text = e.to_string();
    for (_, v) in &spec.config {
        if !v.is_empty() {
            text = text.replace(v.as_str(), "<redacted>");
        }
    }
    if text.len() > 1024 {
        let mut cut = 1024;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// The id of `name`'s active deployment, or (with `version`) of the newest
/// deployment of that version that was active.
fn deployment_id(registry: &Registry, name: &str, version: Option<&str>) -> Result<Option<i64>> {
    let conn = registry.conn();
    Ok(match version {
        None => conn
            .query_row(
                "SELECT id FROM deployments WHERE name = ?1 AND state = 'active'",
                params![name],
                |r| r.get(0),
            )
            .optional()?,
        Some(v) => conn
            .query_row(
                "SELECT id FROM deployments WHERE name = ?1 AND version = ?2 AND state IN ('active', 'retired')
                 ORDER BY id DESC LIMIT 1",
                params![name, v],
                |r| r.get(0),
            )
            .optional()?,
    })
}

/// The active deployment of `name`, or (with `version`) the newest deployment
/// of that version that was active: what `call NAME[@VERSION]` runs.
pub fn find_deployment(
    registry: &Registry,
    name: &str,
    version: Option<&str>,
) -> Result<Deployment> {
    let id = deployment_id(registry, name, version)?;
    let id = id.ok_or_else(|| {
        Error::Invalid(match version {
            None => format!("{name} is not deployed here (and no file of that name exists); deploy it: `airssys-wasm deploy {name}@VERSION`"),
            Some(v) => format!("{name} {v} was never deployed here"),
        })
    })?;
    read(registry.conn(), id)
}

fn read(conn: &rusqlite::Connection, id: i64) -> Result<Deployment> {
    let (spec_json, mut record): (String, Deployment) = conn.query_row(
        "SELECT id, name, version, digest, spec, strategy, parent, state, reason, actor, created_ms, updated_ms
         FROM deployments WHERE id = ?1",
        params![id],
        |r| {
            Ok((
                r.get::<_, String>(4)?,
                Deployment {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    version: r.get(2)?,
                    digest: r.get(3)?,
                    spec: DeploySpec::new(String::new(), String::new()),
                    strategy: r.get(5)?,
                    parent: r.get(6)?,
                    state: r.get(7)?,
                    reason: r.get(8)?,
                    actor: r.get(9)?,
                    created_ms: r.get(10)?,
                    updated_ms: r.get(11)?,
                },
            ))
        },
    )?;
    record.spec = serde_json::from_str(&spec_json).map_err(|e| {
        Error::Invalid(format!(
            "deployment {id}: its stored spec does not read: {e}"
        ))
    })?;
    Ok(record)
}
