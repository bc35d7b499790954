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
//! active. A canary in progress (`prepared`, strategy `canary`) stays, and
//! resumes when its route is served again. In-process, activation is one
//! atomic swap of the route; a call holds the version it started on. An
//! upgrade of a component that keeps state also pauses calls that go
//! through the route ([`Route::pick`]) while its state migrates.

use std::collections::HashMap;
use std::sync::Arc;

use airssys_wasm_runtime::{
    CallOutput, Capability, ComponentPre, Grants, Limits, Message, PrepareOptions, Runtime,
    RuntimeConfig,
};
use rusqlite::{OptionalExtension, params};

use crate::actors::{ActorPlan, ActorSpec, Actors, Hosting};
use crate::error::{Error, Result};
use crate::registry::Registry;
use crate::router::Route;
use crate::state_dir::StateDir;
use airssys_wasm_capability::messaging::{Grant as MessagingGrant, Op as MessagingOp};

/// How an upgrade reaches live traffic.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Strategy {
    /// All new calls go to the new version at once.
    Immediate,
    /// The new version must report itself healthy before it takes every
    /// call; the version it replaces stays prepared beside it, so switching
    /// back ([`Deployer::rollback`]) is one swap.
    BlueGreen,
    /// A share of calls goes to the new version, in steps, and the route
    /// promotes or aborts it on its measurements (see [`crate::router`]).
    Canary(crate::router::Canary),
    /// An actor deployment's instances are replaced `batch` at a time,
    /// each batch started and healthy before any takes over, each old
    /// instance handing its mailbox (and the messages waiting in it) to its
    /// successor: no accepted message is lost (see [`crate::Actors`]).
    Rolling {
        /// Instances replaced at a time (at least 1).
        batch: u32,
    },
}

impl Strategy {
    /// Its name: `immediate`, `blue-green`, `canary` or `rolling`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Immediate => "immediate",
            Self::BlueGreen => "blue-green",
            Self::Canary(_) => "canary",
            Self::Rolling { .. } => "rolling",
        }
    }

    /// Whether it acts on live traffic (needs a process that keeps
    /// serving: blue-green keeps the old version prepared, a canary is
    /// measured on calls).
    pub fn needs_live_traffic(&self) -> bool {
        !matches!(self, Self::Immediate)
    }
}

impl std::str::FromStr for Strategy {
    type Err = Error;

    /// `immediate`, `blue-green`, `canary` (with the default plan) or
    /// `rolling` (one instance at a time).
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "immediate" => Ok(Self::Immediate),
            "blue-green" => Ok(Self::BlueGreen),
            "canary" => Ok(Self::Canary(crate::router::Canary::default())),
            "rolling" => Ok(Self::Rolling { batch: 1 }),
            other => Err(Error::Invalid(format!(
                "unknown strategy `{other}`: use immediate, blue-green, canary or rolling"
            ))),
        }
    }
}

/// What to deploy: a published version, with what the operator grants.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// Configuration pairs, each `[key, value]`.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Vec<String>>))]
    pub config: Vec<(String, String)>,
    /// Memory limit in bytes, if set.
    pub memory: Option<u64>,
    /// Timeout in milliseconds, if set.
    pub timeout_ms: Option<u64>,
    /// Fuel budget, if set.
    pub fuel: Option<u64>,
    /// The HTTP path prefix a host serves it on (`/hello`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Calls it runs at once at most, if set (more are refused as
    /// overloaded: `503` on a route).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
    /// `per-call` (the default: a fresh instance for every call) or
    /// `actor` (long-lived instances with mailboxes, supervised).
    #[serde(default, skip_serializing_if = "Hosting::is_per_call")]
    pub hosting: Hosting,
    /// Actor hosting's settings (with `hosting: actor`; defaults
    /// otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<ActorSpec>,
    /// Topics it receives what is published on (exact, or a prefix ending
    /// in `*`); each needs a `messaging:subscribe:...` grant in `allow`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscribe: Vec<String>,
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
            route: None,
            max_concurrent: None,
            hosting: Hosting::PerCall,
            actor: None,
            subscribe: Vec::new(),
        }
    }

    /// Its subscriptions, each checked against its grants: granted by an
    /// `allow` of `messaging:subscribe:...` that includes it, and not
    /// overlapping a `deny` of one.
    pub fn subscriptions(&self) -> Result<Vec<MessagingGrant>> {
        let messaging = |list: &[String]| -> Vec<MessagingGrant> {
            list.iter()
                .filter_map(|c| MessagingGrant::from_system_call(c))
                .filter(|g| g.op == MessagingOp::Subscribe)
                .collect()
        };
        let (allowed, denied) = (messaging(&self.allow), messaging(&self.deny));
        self.subscribe
            .iter()
            .map(|topic| {
                let sub = MessagingGrant::parse(&format!("subscribe:{topic}"))
                    .map_err(|e| Error::Invalid(format!("subscription `{topic}`: {e}")))?;
                if denied.iter().any(|d| d.includes(&sub) || sub.includes(d)) {
                    return Err(Error::Invalid(format!(
                        "subscription `{topic}`: `messaging:subscribe:...` is denied for {}",
                        self.name
                    )));
                }
                if !allowed.iter().any(|a| a.includes(&sub)) {
                    return Err(Error::Invalid(format!(
                        "subscription `{topic}` is not granted; add `--allow messaging:subscribe:{topic}`"
                    )));
                }
                Ok(sub)
            })
            .collect()
    }

    /// Actor hosting's plan: `None` for per-call hosting (where actor
    /// settings are refused).
    pub fn actor_plan(&self) -> Result<Option<ActorPlan>> {
        match (self.hosting, &self.actor) {
            (Hosting::PerCall, None) => Ok(None),
            (Hosting::PerCall, Some(_)) => Err(Error::Invalid(
                "actor settings (instances, mailbox, supervision, restarts) need `hosting: actor`"
                    .into(),
            )),
            (Hosting::Actor, a) => a.clone().unwrap_or_default().plan().map(Some),
        }
    }

    /// The preparation options this spec means.
    pub fn options(&self) -> Result<PrepareOptions> {
        self.actor_plan()?;
        self.subscriptions()?;
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
        match self.max_concurrent {
            Some(0) => {
                return Err(Error::Invalid(
                    "max_concurrent is at least 1 (0 would refuse every call)".into(),
                ));
            }
            Some(n) => limits = limits.max_concurrent(n),
            None => {}
        }
        Ok(PrepareOptions::default()
            .grants(grants)
            .limits(limits)
            .config(self.config.clone()))
    }
}

/// One deployment, as recorded.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// How it reached traffic: `immediate`, `blue-green` or `canary` (a
    /// rollback re-activates a record as it was).
    pub strategy: String,
    /// The deployment it replaced.
    pub parent: Option<i64>,
    /// `submitted`, `validated`, `prepared`, `active`, `retired` or
    /// `failed`. A canary in progress is `prepared` with the strategy
    /// `canary`.
    pub state: String,
    /// The generation of the component's state it runs on: an upgrade to
    /// another version of a component that keeps state migrates a copy
    /// into a new generation; a rollback goes back to its deployment's.
    pub generation: i64,
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

    /// Where its state is kept in the state store: `NAME#GENERATION`.
    pub fn state_namespace(&self) -> String {
        state_namespace(&self.name, self.generation)
    }

    /// Whether it is a canary in progress.
    pub fn is_canary(&self) -> bool {
        self.state == "prepared" && self.strategy == "canary"
    }
}

fn state_namespace(name: &str, generation: i64) -> String {
    format!("{name}#{generation}")
}

/// What a rollback did: the deployment active again, and the state writes
/// it left behind (on the generation it left, which stays in the store: a
/// rollback to that deployment finds them again).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Rollback {
    /// The deployment active again.
    pub deployment: Deployment,
    /// The generation of state left, when the rollback changed generation.
    pub left_generation: Option<i64>,
    /// Keys (`bucket/key`) whose value on the generation left differs from
    /// the one now served (written since the upgrade, by calls or by the
    /// newer version's `migrate`): at most 100 named.
    pub left_behind: Vec<String>,
    /// How many keys differ in all.
    pub left_behind_count: usize,
}

/// The state a component keeps: keys and bytes of its generation.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StateUsage {
    /// Keys, every bucket together.
    pub keys: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
}

/// Who fails an actor deployment in the audit trail, and how its reason
/// starts.
const SUPERVISOR: &str = "supervisor";

/// The active version of one component, for calls in this process.
#[derive(Clone)]
pub struct Active {
    /// Its deployment.
    pub deployment: Arc<Deployment>,
    /// Ready to call.
    pub component: ComponentPre,
    /// Its running instances, with actor hosting: calls go to their
    /// mailboxes rather than to fresh instances of `component`.
    pub actors: Option<Actors>,
}

impl Active {
    /// The same version under its record `record` (a new state of it).
    pub(crate) fn with_record(self, record: Deployment) -> Self {
        Self {
            deployment: Arc::new(record),
            ..self
        }
    }

    /// Handle one message: on a fresh instance, or through an actor's
    /// mailbox (waiting at most `wait`, or the plan's send timeout, for
    /// room).
    pub async fn execute(
        &self,
        input: Message,
        wait: Option<std::time::Duration>,
    ) -> Result<CallOutput<Message>> {
        match &self.actors {
            Some(actors) => actors.call(input, wait).await,
            None => Ok(self.component.execute(input).await?),
        }
    }

    /// Whether it handles one message at a time (a component that keeps
    /// state, or an actor): a message back to it from a chain it waits in
    /// would wait for itself.
    pub fn serial(&self) -> bool {
        self.actors.is_some() || self.component.keeps_state()
    }
}

/// Deploys, upgrades and rolls back components of one state directory.
///
/// ```no_run
/// use airssys_wasm_deploy::{DeploySpec, Deployer, Provenance, StateDir, Strategy};
/// use airssys_wasm_runtime::{Message, RuntimeConfig};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = StateDir::open("/var/lib/airssys-wasm")?;
/// let mut deployer = Deployer::open(&dir, RuntimeConfig::default())?;
/// let v1 = std::fs::read("echo.wasm")?;
/// deployer
///     .registry()
///     .publish("echo", "0.1.0", &v1, &Provenance::unsigned(), "ops")?;
/// deployer
///     .deploy(DeploySpec::new("echo", "0.1.0"), false, "ops")
///     .await?;
///
/// // Calls go through the route, which follows upgrades and rollbacks.
/// let route = deployer.serve("echo").await?;
/// let served = route.execute(Message::new("hi")).await?;
/// assert_eq!(served.output.value.payload, b"hi");
///
/// let v2 = std::fs::read("echo-0.2.0.wasm")?;
/// deployer
///     .registry()
///     .publish("echo", "0.2.0", &v2, &Provenance::unsigned(), "ops")?;
/// deployer
///     .upgrade("echo", "0.2.0", Strategy::BlueGreen, None, false, "ops")
///     .await?;
/// // Back to 0.1.0, kept prepared by blue-green: one swap.
/// let back = deployer.rollback("echo", None, "ops").await?;
/// println!("{} is active again", back.deployment.version);
/// deployer.registry().verify_audit()?;
/// # Ok(())
/// # }
/// ```
pub struct Deployer {
    registry: Registry,
    runtime: Runtime,
    state: Arc<crate::state::SqliteState>,
    routes: Arc<crate::messenger::Routes>,
    /// Messages between this deployer's components, counted.
    messages: Arc<crate::messenger::MessageCounts>,
    /// Canary verdicts the routes reached, not persisted yet.
    decisions: crate::router::Decisions,
    /// The WIT shapes of versions this deployer compared, by digest.
    shapes: HashMap<String, Arc<crate::diff::Shape>>,
    last_activation: Option<Activation>,
    /// Whether actor deployments start their instances here.
    hosts_actors: bool,
    /// Where actor deployments report a broken instance, when supervision
    /// groups are set ([`Deployer::supervise`]).
    breaks: Option<tokio::sync::mpsc::UnboundedSender<String>>,
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
        // Messages between components go through the routes.
        let routes: Arc<crate::messenger::Routes> = Arc::default();
        let messages = Arc::new(crate::messenger::MessageCounts::default());
        let messenger = Arc::new(crate::messenger::RouteMessenger {
            routes: Arc::downgrade(&routes),
            counts: messages.clone(),
        });
        let runtime = Runtime::new(
            config
                .cache_dir(dir.cache())
                .audit(sink)
                .messenger(messenger),
        )?;
        let state = Arc::new(crate::state::SqliteState::open(dir)?);
        let this = Self {
            registry,
            runtime,
            state,
            routes,
            messages,
            decisions: Arc::default(),
            shapes: HashMap::new(),
            last_activation: None,
            hosts_actors: true,
            breaks: None,
            events,
        };
        this.fail_interrupted()?;
        Ok(this)
    }

    /// The preparation options of `record`, its state kept in this state
    /// directory in its generation.
    pub fn options(&self, record: &Deployment) -> Result<PrepareOptions> {
        self.options_in(&record.spec, record.generation)
    }

    fn options_in(&self, spec: &DeploySpec, generation: i64) -> Result<PrepareOptions> {
        Ok(spec
            .options()?
            .state(self.state.clone(), state_namespace(&spec.name, generation)))
    }

    /// The runtime calls run on.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The registry of published versions.
    pub fn registry(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The registry, to read (versions, the audit trail).
    pub fn registry_ref(&self) -> &Registry {
        &self.registry
    }

    /// Mark deployments a stop interrupted failed (a canary in progress
    /// stays: it resumes when its route is opened), and drop state
    /// generations no deployment that was or may be active runs on (a
    /// migration the stop interrupted).
    fn fail_interrupted(&self) -> Result<()> {
        let n = self.registry.conn().execute(
            "UPDATE deployments SET state = 'failed', reason = 'interrupted: the process stopped before it became active', updated_ms = ?1
             WHERE state IN ('submitted', 'validated', 'prepared') AND NOT (state = 'prepared' AND strategy = 'canary')",
            params![crate::audit::now_ms()],
        )?;
        if n > 0 {
            tracing::warn!(
                count = n,
                "deployments interrupted by a stop were marked failed"
            );
        }
        let dropped = self.registry.conn().execute(
            "DELETE FROM state
             WHERE instr(component, '#') > 0
               AND substr(component, 1, instr(component, '#') - 1) IN (SELECT name FROM deployments)
               AND component NOT IN
                 (SELECT name || '#' || generation FROM deployments
                  WHERE state IN ('active', 'retired') OR (state = 'prepared' AND strategy = 'canary'))",
            [],
        )?;
        if dropped > 0 {
            tracing::warn!(
                entries = dropped,
                "state of interrupted migrations was dropped"
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
        let parent = self.current_record(&spec.name)?;
        let action = if parent.is_some() {
            "upgrade"
        } else {
            "deploy"
        };
        let r = self
            .activate_new(
                spec,
                parent,
                allow_breaking,
                &Strategy::Immediate,
                action,
                actor,
            )
            .await;
        self.record_events()?;
        r
    }

    /// Upgrade `name` to `version` with `strategy`, keeping the active
    /// deployment's grants, limits and configuration unless `spec` is
    /// given. Breaking WIT changes ([`crate::diff`]) refuse the upgrade
    /// unless `allow_breaking`.
    ///
    /// `immediate` and `blue-green` return the new active deployment;
    /// `canary` returns the canary (`prepared`, strategy `canary`), which
    /// its route promotes or aborts on live calls ([`Deployer::settle`]
    /// persists that), or [`Deployer::promote`] / [`Deployer::abort`] end.
    ///
    /// When the new version keeps state and differs from the active one,
    /// calls are paused (new calls wait, calls in flight end), the state is
    /// copied into a new generation, the new version's `migrate` runs on
    /// it, and version and generation switch together; a failed `migrate`
    /// aborts the upgrade and the old version keeps serving on its
    /// generation.
    pub async fn upgrade(
        &mut self,
        name: &str,
        version: &str,
        strategy: Strategy,
        spec: Option<DeploySpec>,
        allow_breaking: bool,
        actor: &str,
    ) -> Result<Deployment> {
        let parent = self.current_record(name)?.ok_or_else(|| {
            Error::Invalid(format!(
                "{name} has no active deployment to upgrade; deploy it first: `airssys-wasm deploy {name}@{version}`"
            ))
        })?;
        let mut spec = spec.unwrap_or_else(|| parent.spec.clone());
        spec.name = name.to_string();
        spec.version = version.to_string();
        let r = self
            .activate_new(
                spec,
                Some(parent),
                allow_breaking,
                &strategy,
                "upgrade",
                actor,
            )
            .await;
        self.record_events()?;
        r
    }

    /// Refuse to change `name` while a canary of it is in progress.
    fn refuse_during_canary(&self, name: &str) -> Result<()> {
        if let Some(c) = self.canary_record(name)? {
            return Err(Error::Invalid(format!(
                "{name} has a canary in progress ({} {}, deployment {}); end it first: `airssys-wasm promote {name}` or `airssys-wasm abort {name}`",
                c.name, c.version, c.id
            )));
        }
        Ok(())
    }

    /// Record, validate, prepare and activate `spec` (or start it as a
    /// canary), replacing `parent`.
    async fn activate_new(
        &mut self,
        spec: DeploySpec,
        parent: Option<Deployment>,
        allow_breaking: bool,
        strategy: &Strategy,
        action: &str,
        actor: &str,
    ) -> Result<Deployment> {
        let version = semver::Version::parse(&spec.version)
            .map_err(|e| {
                Error::Invalid(format!("`{}` is not a semver version ({e})", spec.version))
            })?
            .to_string();
        let mut spec = DeploySpec { version, ..spec };
        // A route is kept across upgrades unless another is given.
        if spec.route.is_none() {
            spec.route = parent.as_ref().and_then(|p| p.spec.route.clone());
        }
        if let Some(route) = &spec.route {
            check_route(route)?;
            if let Some(other) = self
                .status()?
                .into_iter()
                .find(|d| d.name != spec.name && d.spec.route.as_deref() == Some(route))
            {
                return Err(Error::Invalid(format!(
                    "the route {route} is served by {} already; choose another path",
                    other.name
                )));
            }
        }
        if let Strategy::Canary(plan) = strategy {
            plan.check()?;
        }
        self.refuse_during_canary(&spec.name)?;
        let digest = self.registry.digest(&spec.name, &spec.version)?.ok_or_else(|| {
            Error::Invalid(format!(
                "{} {} is not published; publish it first: `airssys-wasm publish FILE --name {} --version {}`",
                spec.name, spec.version, spec.name, spec.version
            ))
        })?;
        crash_point!("deploy-submitting");
        let id = self.insert(
            &spec,
            &digest,
            parent.as_ref().map(|p| p.id),
            strategy.name(),
            actor,
        )?;
        crash_point!("deploy-submitted");
        let r = self
            .prepare_and_activate(
                id,
                &digest,
                &spec,
                parent.as_ref(),
                allow_breaking,
                strategy,
                action,
                actor,
            )
            .await;
        if let Err(e) = &r
            && let Err(f) = self.fail(id, &spec, action, actor, e)
        {
            tracing::error!(error = %f, "recording the failed deployment");
        }
        r
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "one private step of activate_new"
    )]
    async fn prepare_and_activate(
        &mut self,
        id: i64,
        digest: &str,
        spec: &DeploySpec,
        parent: Option<&Deployment>,
        allow_breaking: bool,
        strategy: &Strategy,
        action: &str,
        actor: &str,
    ) -> Result<Deployment> {
        let bytes = self.registry.bytes(&spec.name, &spec.version)?;
        if let Some(p) = parent
            && p.version != spec.version
        {
            self.check_wit(p, spec, digest, &bytes, allow_breaking)?;
        }
        let compiled = self.runtime.compile_async(&spec.name, &bytes).await?;
        let keeps_state = compiled
            .info
            .imports
            .iter()
            .any(|i| i.starts_with("wasi:keyvalue/"));
        let migrate_from = parent.filter(|p| keeps_state && p.version != spec.version);
        if keeps_state && matches!(strategy, Strategy::Canary(_)) && parent.is_some() {
            return Err(Error::Invalid(format!(
                "{} keeps state: a canary would split its writes between two versions; upgrade it with `--strategy blue-green` or `immediate` (its state migrates to the new version)",
                spec.name
            )));
        }
        let generation = match (migrate_from, parent) {
            (Some(_), _) | (None, None) => self.next_generation(&spec.name, id)?,
            (None, Some(p)) => p.generation,
        };
        let options = self.options_in(spec, generation)?;
        self.runtime.decide(&compiled.info, &options)?;
        crash_point!("deploy-validating");
        self.set_state(id, "validated", generation)?;
        crash_point!("deploy-validated");

        let route = self.route(&spec.name);
        // A stateful upgrade: no call runs while the state is copied,
        // migrated and switched.
        let paused = match migrate_from {
            Some(_) => Some(route.pause(drain_limit(&route)).await?),
            None => None,
        };
        // From the copy on, any failure drops the new generation.
        let r = async {
            if let Some(p) = migrate_from {
                crash_point!("generation-copying");
                self.copy_generation(&spec.name, p.generation, generation)?;
                crash_point!("generation-copied");
            }
            let component = self
                .load_and_migrate(spec, &bytes, options, migrate_from)
                .await?;
            // Actor instances start (and run `init`) before the switch: one
            // that does not start fails the deployment, not its calls.
            let record = read(self.registry.conn(), id)?;
            let (ready, rolling) = match strategy {
                Strategy::Rolling { batch } => {
                    let old = route.current().and_then(|a| a.actors).ok_or_else(|| {
                        Error::Invalid(format!(
                            "rolling replaces the instances of an actor deployment, and {} has none running here; use the immediate strategy",
                            spec.name
                        ))
                    })?;
                    self.ready_with(record, component.clone(), Some((&old, *batch as usize)))
                        .await?
                }
                _ => (self.ready(record, component.clone()).await?, None),
            };
            if let Strategy::BlueGreen = strategy {
                match component.health().await {
                    Ok(airssys_wasm_runtime::HealthStatus::Unhealthy(why)) => {
                        return Err(Error::Invalid(format!(
                            "blue-green: {} {} reports itself unhealthy ({why}); the active version keeps serving",
                            spec.name, spec.version
                        )));
                    }
                    Ok(_) => {}
                    // A component without a lifecycle has no health to ask.
                    Err(airssys_wasm_runtime::Error::Unsupported { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if let Strategy::Canary(plan) = strategy {
                // `prepared` and the audit record in one transaction: a
                // canary is never in progress without its record.
                let record = self.start_canary(id, parent, plan, actor)?;
                let active = ready.with_record(record.clone());
                // The route measures against the active version: prepare
                // it here if no call prepared it yet.
                self.active(&spec.name).await?;
                route.start_canary(active, plan.clone())?;
                return Ok(record);
            }
            crash_point!("deploy-preparing");
            self.set_state(id, "prepared", generation)?;
            crash_point!("deploy-prepared");
            let start = std::time::Instant::now();
            let record = self.commit_active(id, parent.map(|p| p.id), action, actor)?;
            crash_point!("deploy-active");
            let committed = std::time::Instant::now();
            route.set_primary(
                Some(ready.with_record(record.clone())),
                matches!(strategy, Strategy::BlueGreen),
            );
            // Committed: the old instances hand their mailboxes over.
            if let Some(rolling) = rolling {
                rolling.hand_over().await;
            }
            self.last_activation = Some(Activation {
                commit: committed - start,
                swap: committed.elapsed(),
            });
            Ok(record)
        }
        .await;
        if r.is_err()
            && migrate_from.is_some()
            && let Err(f) = self.drop_generation(&spec.name, generation)
        {
            tracing::error!(error = %f, "dropping the state generation of a failed upgrade");
        }
        drop(paused);
        r
    }

    /// Refuse a breaking WIT change from `from` to `to` (its `digest` and
    /// `bytes`) unless allowed.
    fn check_wit(
        &mut self,
        from: &Deployment,
        to: &DeploySpec,
        digest: &str,
        bytes: &[u8],
        allow_breaking: bool,
    ) -> Result<()> {
        let old = match self.shapes.get(&from.digest) {
            Some(s) => s.clone(),
            None => {
                let old = self.registry.bytes(&from.name, &from.version)?;
                self.shape(&from.digest, &old, "the old version")?
            }
        };
        let new = self.shape(digest, bytes, "the new version")?;
        let (from, to) = (&from.version, &to.version);
        let changes = old.diff(&new);
        if crate::diff::breaking(&changes) && !allow_breaking {
            let list: Vec<String> = changes
                .iter()
                .filter(|c| c.class == crate::diff::Class::Breaking)
                .map(|c| c.what.clone())
                .collect();
            return Err(Error::Invalid(format!(
                "the upgrade from {from} to {to} is breaking ({}); pass --allow-breaking to deploy it anyway",
                list.join("; ")
            )));
        }
        Ok(())
    }

    /// The WIT shape of the version with `digest` (its `bytes`), decoded
    /// once and kept.
    fn shape(
        &mut self,
        digest: &str,
        bytes: &[u8],
        which: &str,
    ) -> Result<Arc<crate::diff::Shape>> {
        if let Some(s) = self.shapes.get(digest) {
            return Ok(s.clone());
        }
        let shape = Arc::new(crate::diff::Shape::read(bytes, which)?);
        // A long-lived deployer sees few distinct versions; never more
        // than 256 shapes are kept.
        if self.shapes.len() >= 256 {
            self.shapes.clear();
        }
        self.shapes.insert(digest.to_string(), shape.clone());
        Ok(shape)
    }

    /// Prepare the new version and, for a stateful upgrade, run its
    /// `migrate` on the new generation.
    async fn load_and_migrate(
        &mut self,
        spec: &DeploySpec,
        bytes: &[u8],
        options: PrepareOptions,
        migrate_from: Option<&Deployment>,
    ) -> Result<ComponentPre> {
        let component = self.runtime.load(&spec.name, bytes, options).await?;
        if let Some(p) = migrate_from {
            component.migrate(&p.version).await.map_err(|e| {
                Error::Invalid(format!(
                    "{} {}: migrate from {} failed, so the upgrade was aborted and {} keeps serving on its state: {e}",
                    spec.name, spec.version, p.version, p.version
                ))
            })?;
        }
        Ok(component)
    }

    /// The generation after every one `name`'s other deployments used.
    fn next_generation(&self, name: &str, this: i64) -> Result<i64> {
        let max: Option<i64> = self.registry.conn().query_row(
            "SELECT MAX(generation) FROM deployments WHERE name = ?1 AND id != ?2",
            params![name, this],
            |r| r.get(0),
        )?;
        Ok(max.map_or(0, |g| g + 1))
    }

    /// Copy `name`'s state from generation `from` into `to`.
    fn copy_generation(&self, name: &str, from: i64, to: i64) -> Result<()> {
        let conn = self.registry.conn();
        conn.execute(
            "DELETE FROM state WHERE component = ?1",
            params![state_namespace(name, to)],
        )?;
        conn.execute(
            "INSERT INTO state (component, bucket, key, value)
             SELECT ?2, bucket, key, value FROM state WHERE component = ?1",
            params![state_namespace(name, from), state_namespace(name, to)],
        )?;
        Ok(())
    }

    fn drop_generation(&self, name: &str, generation: i64) -> Result<()> {
        self.registry.conn().execute(
            "DELETE FROM state WHERE component = ?1",
            params![state_namespace(name, generation)],
        )?;
        Ok(())
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

    fn set_state(&self, id: i64, state: &str, generation: i64) -> Result<()> {
        self.registry.conn().execute(
            "UPDATE deployments SET state = ?1, generation = ?2, updated_ms = ?3 WHERE id = ?4",
            params![state, generation, crate::audit::now_ms(), id],
        )?;
        Ok(())
    }

    /// Record that deployment `id` (prepared) starts as a canary of
    /// `parent`.
    fn start_canary(
        &mut self,
        id: i64,
        parent: Option<&Deployment>,
        plan: &crate::router::Canary,
        actor: &str,
    ) -> Result<Deployment> {
        let plan_json = serde_json::to_string(plan).map_err(|e| Error::Invalid(e.to_string()))?;
        let tx = self.registry.begin()?;
        tx.execute(
            "UPDATE deployments SET state = 'prepared', plan = ?1, updated_ms = ?2 WHERE id = ?3",
            params![plan_json, crate::audit::now_ms(), id],
        )?;
        let record = read(&tx, id)?;
        let details = serde_json::json!({
            "deployment": id,
            "digest": record.digest,
            "against": parent.map(|p| p.id),
            "plan": plan,
            "allow": record.spec.allow,
            "deny": record.spec.deny,
            "config_keys": record.spec.config.iter().map(|(k, _)| k).collect::<Vec<_>>(),
        });
        let subject = format!("{}@{}", record.name, record.version);
        let head = crate::audit::append(&tx, actor, "canary", &subject, &details)?;
        tx.commit(head)?;
        Ok(record)
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
        self.commit_active_with(id, retire, action, actor, serde_json::Value::Null)
    }

    fn commit_active_with(
        &mut self,
        id: i64,
        retire: Option<i64>,
        action: &str,
        actor: &str,
        extra: serde_json::Value,
    ) -> Result<Deployment> {
        let now = crate::audit::now_ms();
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
        let mut details = serde_json::json!({
            "deployment": id,
            "digest": record.digest,
            "replaced": retire,
            "strategy": record.strategy,
            "generation": record.generation,
            "allow": record.spec.allow,
            "deny": record.spec.deny,
            // Configuration values may be secrets: only their keys.
            "config_keys": record.spec.config.iter().map(|(k, _)| k).collect::<Vec<_>>(),
        });
        if let (Some(d), serde_json::Value::Object(extra)) = (details.as_object_mut(), extra) {
            d.extend(extra);
        }
        let subject = format!("{}@{}", record.name, record.version);
        let head = crate::audit::append(&tx, actor, action, &subject, &details)?;
        tx.commit(head)?;
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

    /// The canary of `name` in progress, if any.
    pub fn canary_record(&self, name: &str) -> Result<Option<Deployment>> {
        self.registry
            .conn()
            .query_row(
                "SELECT id FROM deployments WHERE name = ?1 AND state = 'prepared' AND strategy = 'canary'",
                params![name],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map(|id| read(self.registry.conn(), id))
            .transpose()
    }

    /// Promote `name`'s canary now: it becomes the active version. What
    /// the route already decided is persisted first (a canary it aborted is
    /// no longer in progress).
    pub async fn promote(&mut self, name: &str, actor: &str) -> Result<Deployment> {
        self.settle()?;
        let canary = self.canary_record(name)?.ok_or_else(|| no_canary(name))?;
        let route = self.route(name);
        // The canary's prepared component, or a new one for a route that
        // never ran it (so the route serves what the database says).
        let ready = match route.canary() {
            Some(c) if c.deployment.id == canary.id => Some(c),
            _ if route.current().is_some() => Some(self.prepare(canary.clone()).await?),
            _ => None,
        };
        let current = self.active_record(name)?;
        let record = self.commit_active_with(
            canary.id,
            current.map(|c| c.id),
            "promote",
            actor,
            serde_json::json!({ "by": "operator" }),
        )?;
        route.end_canary(None);
        if let Some(ready) = ready {
            route.set_primary(Some(ready.with_record(record.clone())), true);
        }
        Ok(record)
    }

    /// Abort `name`'s canary now: it takes no more calls and is marked
    /// failed; the active version serves every call. What the route
    /// already decided is persisted first.
    pub fn abort(&mut self, name: &str, actor: &str) -> Result<Deployment> {
        self.settle()?;
        let canary = self.canary_record(name)?.ok_or_else(|| no_canary(name))?;
        self.route(name).end_canary(None);
        self.end_canary_failed(&canary, &format!("aborted by {actor}"), actor, None)
    }

    fn end_canary_failed(
        &mut self,
        canary: &Deployment,
        reason: &str,
        actor: &str,
        decision: Option<&crate::router::Decision>,
    ) -> Result<Deployment> {
        let tx = self.registry.begin()?;
        tx.execute(
            "UPDATE deployments SET state = 'failed', reason = ?1, updated_ms = ?2 WHERE id = ?3",
            params![reason, crate::audit::now_ms(), canary.id],
        )?;
        let record = read(&tx, canary.id)?;
        let details = serde_json::json!({
            "deployment": canary.id,
            "reason": reason,
            "measured": decision,
        });
        let subject = format!("{}@{}", canary.name, canary.version);
        let head = crate::audit::append(&tx, actor, "abort", &subject, &details)?;
        tx.commit(head)?;
        self.drop_unused_generation(canary)?;
        Ok(record)
    }

    /// Drop the state generation of a deployment that ended unused, unless
    /// another deployment runs on it.
    fn drop_unused_generation(&self, d: &Deployment) -> Result<()> {
        let shared: i64 = self.registry.conn().query_row(
            "SELECT COUNT(*) FROM deployments WHERE name = ?1 AND generation = ?2 AND id != ?3
             AND state IN ('active', 'retired')",
            params![d.name, d.generation, d.id],
            |r| r.get(0),
        )?;
        if shared == 0 {
            self.drop_generation(&d.name, d.generation)?;
        }
        Ok(())
    }

    /// Resolves when a route has decided about a canary (promoted or
    /// aborted): at once if a decision came while nobody waited (it may
    /// already be persisted: `settle` then returns nothing). One waiter is
    /// woken. A host awaits this (beside a timer, for steps that end by
    /// time) and calls [`Deployer::settle`], so a verdict is persisted as
    /// soon as it is reached.
    pub fn decided(&self) -> impl Future<Output = ()> + Send + 'static {
        let signal = self.decision_signal();
        async move { signal.wait().await }
    }

    /// The same wake-up as [`Deployer::decided`], as a handle that does not
    /// borrow the deployer.
    pub fn decision_signal(&self) -> crate::router::DecisionSignal {
        crate::router::DecisionSignal(self.decisions.clone())
    }

    /// Persist what the routes decided about their canaries (promoted after
    /// their last step, or aborted on a threshold), judging steps that ended
    /// by time first. A host calls this from time to time; returns the
    /// deployments whose state changed.
    pub fn settle(&mut self) -> Result<Vec<Deployment>> {
        for route in self
            .routes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
        {
            route.tick();
        }
        let decisions = self.decisions.take();
        let mut changed = Vec::new();
        for (i, d) in decisions.iter().enumerate() {
            match self.persist_decision(d) {
                Ok(Some(r)) => changed.push(r),
                Ok(None) => {}
                Err(e) => {
                    // Keep it (and the rest) for the next settle.
                    self.decisions.put_back(&decisions[i..]);
                    return Err(e);
                }
            }
        }
        Ok(changed)
    }

    fn persist_decision(&mut self, d: &crate::router::Decision) -> Result<Option<Deployment>> {
        if let crate::router::Verdict::Failed(why) = &d.verdict {
            return self.persist_actor_failure(d, why);
        }
        // Only a canary still in progress (an operator may have ended it).
        let Some(canary) = self
            .canary_record(&d.name)?
            .filter(|c| c.id == d.deployment)
        else {
            return Ok(None);
        };
        let record = match &d.verdict {
            crate::router::Verdict::Promote => {
                let current = self.active_record(&d.name)?;
                let r = self.commit_active_with(
                    canary.id,
                    current.map(|c| c.id),
                    "promote",
                    "router",
                    serde_json::json!({ "by": "router", "measured": d }),
                )?;
                self.route(&d.name).refresh(Arc::new(r.clone()));
                r
            }
            crate::router::Verdict::Abort(why) | crate::router::Verdict::Failed(why) => {
                self.end_canary_failed(&canary, &format!("aborted: {why}"), "router", Some(d))?
            }
        };
        Ok(Some(record))
    }

    /// Record that an actor deployment's supervisor gave up: the deployment
    /// becomes `failed` (a canary is aborted), audited as `fail` by
    /// `supervisor`. Its route keeps it, so calls get its reason.
    fn persist_actor_failure(
        &mut self,
        d: &crate::router::Decision,
        why: &str,
    ) -> Result<Option<Deployment>> {
        let record = read(self.registry.conn(), d.deployment)?;
        let reason = format!("{SUPERVISOR}: {why}");
        if record.is_canary() {
            let route = self.route(&d.name);
            if route.canary().is_some_and(|c| c.deployment.id == record.id) {
                route.end_canary(None);
            }
            return self
                .end_canary_failed(&record, &reason, SUPERVISOR, Some(d))
                .map(Some);
        }
        if record.state != "active" {
            return Ok(None);
        }
        let tx = self.registry.begin()?;
        tx.execute(
            "UPDATE deployments SET state = 'failed', reason = ?1, updated_ms = ?2 WHERE id = ?3 AND state = 'active'",
            params![reason, crate::audit::now_ms(), record.id],
        )?;
        let failed = read(&tx, record.id)?;
        let details = serde_json::json!({ "deployment": record.id, "reason": reason });
        let subject = format!("{}@{}", record.name, record.version);
        let head = crate::audit::append(&tx, SUPERVISOR, "fail", &subject, &details)?;
        tx.commit(head)?;
        tracing::error!(component = %record.name, version = %record.version, deployment = record.id, reason = %reason, "deployment failed");
        self.route(&d.name).refresh(Arc::new(failed.clone()));
        Ok(Some(failed))
    }

    /// The deployments that failed while active because their supervisor
    /// gave up, for components with no active deployment now: the latest
    /// of each.
    pub fn failed_actors(&self) -> Result<Vec<Deployment>> {
        let mut stmt = self.registry.conn().prepare(
            "SELECT MAX(id) FROM deployments d WHERE state = 'failed' AND reason LIKE ?1
             AND NOT EXISTS (SELECT 1 FROM deployments a WHERE a.name = d.name AND a.state = 'active')
             GROUP BY name ORDER BY name",
        )?;
        let ids: Vec<i64> = stmt
            .query_map(params![format!("{SUPERVISOR}: %")], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        ids.into_iter()
            .map(|id| read(self.registry.conn(), id))
            .collect()
    }

    /// Re-activate an earlier deployment of `name`: the one `to` names (a
    /// version or a deployment id), else the one the active deployment
    /// replaced. Compiled code comes from the cache; a blue-green standby
    /// is switched to directly.
    ///
    /// When the target runs on another state generation, calls pause while
    /// the switch happens, and the writes made on the generation left are
    /// reported ([`Rollback::left_behind`]).
    pub async fn rollback(
        &mut self,
        name: &str,
        to: Option<&str>,
        actor: &str,
    ) -> Result<Rollback> {
        let r = self.rollback_to(name, to, actor).await;
        self.record_events()?;
        r
    }

    async fn rollback_to(&mut self, name: &str, to: Option<&str>, actor: &str) -> Result<Rollback> {
        self.refuse_during_canary(name)?;
        let current = self.current_record(name)?.ok_or_else(|| {
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
        if self.registry.pruned(name, &record.version)? {
            return Err(Error::Invalid(format!(
                "the bytes of {name} {} were removed by `gc`; publish them again to roll back to it",
                record.version
            )));
        }
        let route = self.route(name);
        let standby = route.standby_of(target);
        let ready = match &standby {
            Some(s) => s.clone(),
            None => self.prepare(record.clone()).await?,
        };
        let moves = record.generation != current.generation;
        let paused = if moves {
            Some(route.pause(drain_limit(&route)).await?)
        } else {
            None
        };
        let (left_behind, left_behind_count) = if moves {
            self.differing_keys(name, current.generation, record.generation)?
        } else {
            (Vec::new(), 0)
        };
        let record = self.commit_active_with(
            target,
            Some(current.id),
            "rollback",
            actor,
            serde_json::json!({
                "left_generation": moves.then_some(current.generation),
                "left_behind": left_behind_count,
            }),
        )?;
        route.set_primary(Some(ready.with_record(record.clone())), standby.is_some());
        drop(paused);
        Ok(Rollback {
            deployment: record,
            left_generation: moves.then_some(current.generation),
            left_behind,
            left_behind_count,
        })
    }

    /// Keys whose value on generation `left` differs from generation
    /// `kept`: at most 100 named, and the count.
    fn differing_keys(&self, name: &str, left: i64, kept: i64) -> Result<(Vec<String>, usize)> {
        let mut stmt = self.registry.conn().prepare(
            "SELECT a.bucket, a.key FROM state a
               LEFT JOIN state b ON b.component = ?2 AND b.bucket = a.bucket AND b.key = a.key
               WHERE a.component = ?1 AND (b.value IS NULL OR b.value != a.value)
             UNION
             SELECT b.bucket, b.key FROM state b
               WHERE b.component = ?2 AND NOT EXISTS
                 (SELECT 1 FROM state a WHERE a.component = ?1 AND a.bucket = b.bucket AND a.key = b.key)
             ORDER BY 1, 2",
        )?;
        let keys: Vec<String> = stmt
            .query_map(
                params![state_namespace(name, left), state_namespace(name, kept)],
                |r| {
                    Ok(format!(
                        "{}/{}",
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?
                    ))
                },
            )?
            .collect::<std::result::Result<_, _>>()?;
        let count = keys.len();
        Ok((keys.into_iter().take(100).collect(), count))
    }

    /// The state `record` runs on: keys and bytes of its generation.
    pub fn state_usage(&self, record: &Deployment) -> Result<StateUsage> {
        let (keys, bytes): (i64, Option<i64>) = self.registry.conn().query_row(
            "SELECT COUNT(*), SUM(LENGTH(CAST(key AS BLOB)) + LENGTH(value)) FROM state WHERE component = ?1",
            params![record.state_namespace()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(StateUsage {
            keys: u64::try_from(keys).unwrap_or(0),
            bytes: u64::try_from(bytes.unwrap_or(0)).unwrap_or(0),
        })
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

    /// The deployment a new one of `name` follows: the active one, or the
    /// one its supervisor failed when nothing is active (so a fix, an
    /// upgrade or a rollback keeps the state generation and the history).
    fn current_record(&self, name: &str) -> Result<Option<Deployment>> {
        if let Some(a) = self.active_record(name)? {
            return Ok(Some(a));
        }
        Ok(self.failed_actors()?.into_iter().find(|d| d.name == name))
    }

    fn active_record(&self, name: &str) -> Result<Option<Deployment>> {
        deployment_id(&self.registry, name, None)?
            .map(|id| read(self.registry.conn(), id))
            .transpose()
    }

    /// The active version of `name`, ready to call: prepared on first use
    /// in this process (from the compiled-code cache).
    pub async fn active(&mut self, name: &str) -> Result<Active> {
        let route = self.route(name);
        if let Some(a) = route.current() {
            return Ok(a);
        }
        let record = self.active_record(name)?.ok_or_else(|| {
            Error::Invalid(format!(
                "{name} is not deployed; deploy it: `airssys-wasm deploy {name}@VERSION`"
            ))
        })?;
        let active = self.prepare(record).await?;
        route.set_primary(Some(active.clone()), false);
        Ok(active)
    }

    async fn prepare(&mut self, record: Deployment) -> Result<Active> {
        let bytes = self.registry.bytes(&record.name, &record.version)?;
        let options = self.options(&record)?;
        let component = self.runtime.load(&record.name, &bytes, options).await?;
        self.ready(record, component).await
    }

    /// A prepared version ready for calls: with actor hosting, its
    /// instances started (each runs `init`) under their supervisor, which
    /// reports a failure to be persisted by [`Deployer::settle`].
    async fn ready(&mut self, record: Deployment, component: ComponentPre) -> Result<Active> {
        Ok(self.ready_with(record, component, None).await?.0)
    }

    /// [`Deployer::ready`], the instances taking over `from`'s mailboxes
    /// `batch` at a time when given ([`Strategy::Rolling`]).
    async fn ready_with(
        &mut self,
        record: Deployment,
        component: ComponentPre,
        from: Option<(&Actors, usize)>,
    ) -> Result<(Active, Option<crate::actors::Rolling>)> {
        let plan = record.spec.actor_plan()?;
        let mut rolling = None;
        if from.is_some() && plan.is_none() {
            return Err(Error::Invalid(format!(
                "rolling needs the new version hosted as an actor too (`hosting: actor`); {} {} is per-call",
                record.name, record.version
            )));
        }
        let actors = match plan.filter(|_| self.hosts_actors) {
            None => None,
            Some(plan) => {
                let pending = self.decisions.clone();
                let (name, id) = (record.name.clone(), record.id);
                let on_break = self.breaks.clone().map(|tx| {
                    let name = record.name.clone();
                    std::sync::Arc::new(move || {
                        let _ = tx.send(name.clone());
                    }) as std::sync::Arc<dyn Fn() + Send + Sync>
                });
                let on_failure = Box::new(move |reason: String| {
                    pending.push(crate::router::Decision {
                        name,
                        deployment: id,
                        against: None,
                        verdict: crate::router::Verdict::Failed(reason),
                        calls: 0,
                        errors: 0,
                    });
                });
                let hooks = crate::actors::Hooks {
                    on_failure,
                    on_break,
                };
                Some(match from {
                    Some((old, batch)) => {
                        let (new, r) =
                            Actors::roll(old, component.clone(), plan, batch, hooks).await?;
                        rolling = Some(r);
                        new
                    }
                    None => Actors::start(component.clone(), plan, hooks).await?,
                })
            }
        };
        Ok((
            Active {
                deployment: Arc::new(record),
                component,
                actors,
            },
            rolling,
        ))
    }

    /// The counts of messages between this deployer's components (a
    /// sender's own error, such as a denial, is not a delivery and is not
    /// counted here).
    pub fn message_counts(&self) -> Arc<crate::messenger::MessageCounts> {
        self.messages.clone()
    }

    /// The route of `name`, ready for calls: its active version prepared,
    /// and a canary that was in progress when the last process stopped
    /// resumed with its plan, from its first step (what was measured
    /// before the stop, and a verdict not yet persisted by
    /// [`Deployer::settle`], is measured again).
    pub async fn serve(&mut self, name: &str) -> Result<Route> {
        // A verdict the route reached and nobody persisted: persisted now,
        // so a decided canary is not started again.
        self.settle()?;
        self.active(name).await?;
        let route = self.route(name);
        if route.canary().is_none()
            && let Some(c) = self.canary_record(name)?
        {
            let plan: Option<String> = self.registry.conn().query_row(
                "SELECT plan FROM deployments WHERE id = ?1",
                params![c.id],
                |r| r.get(0),
            )?;
            let plan = match plan.as_deref().map(serde_json::from_str) {
                Some(Ok(p)) => p,
                Some(Err(e)) => {
                    tracing::warn!(deployment = c.id, error = %e, "the canary's plan does not read; the default plan is used");
                    crate::router::Canary::default()
                }
                None => crate::router::Canary::default(),
            };
            let active = self.prepare(c).await?;
            route.start_canary(active, plan)?;
        }
        Ok(route)
    }

    /// Put actor deployments in supervision groups (see
    /// [`crate::supervision`]): from now on, a broken instance of a
    /// deployment in a group is reported to it, and the group restarts or
    /// fails its siblings by its strategy and intensity. Set it once,
    /// before serving: deployments started earlier report to the groups
    /// set before them. Needs a tokio runtime.
    pub fn supervise(&mut self, groups: Vec<crate::GroupSpec>) -> Result<()> {
        if groups.is_empty() {
            self.breaks = None;
            return Ok(());
        }
        let tree = crate::supervision::Tree::new(groups)?;
        self.breaks = Some(crate::supervision::spawn(
            tree,
            std::sync::Arc::downgrade(&self.routes),
        ));
        Ok(())
    }

    /// Whether actor deployments start their instances in this process
    /// (the default). A deployer that only records deployments (a command
    /// line acting on a state directory, serving nothing) turns this off:
    /// its calls then run per call.
    pub fn host_actors(&mut self, on: bool) {
        self.hosts_actors = on;
    }

    /// Stop the instances of every actor deployment served in this process
    /// (each after the message in hand, running `shutdown`). A host calls
    /// this as it stops, once its ingress drained.
    pub async fn stop_actors(&mut self) {
        let actors: Vec<Actors> = self
            .routes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .flat_map(|r| [r.current(), r.canary(), r.standby()])
            .flatten()
            .filter_map(|a| a.actors)
            .collect();
        for a in actors {
            a.stop().await;
        }
    }

    /// What deployment `id`'s actors are doing, when it runs in this
    /// process with actor hosting (its primary version).
    pub fn actor_status(&self, name: &str, id: i64) -> Option<crate::ActorStatus> {
        let routes = self
            .routes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let active = routes.get(name)?.current()?;
        (active.deployment.id == id)
            .then_some(active.actors?)
            .map(|a| a.status())
    }

    /// The route calls to `name` take (filled by `active`, `serve`,
    /// `deploy`, `upgrade` and `rollback`).
    pub fn route(&mut self, name: &str) -> Route {
        self.routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(name.to_string())
            .or_insert_with(|| Route::new(name, self.decisions.clone()))
            .clone()
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
}

/// How long a pause waits for calls in flight: a call may wait its timeout
/// for its state turn, then run its timeout.
fn drain_limit(route: &Route) -> std::time::Duration {
    let timeout = route
        .current()
        .map_or(std::time::Duration::from_secs(30), |a| {
            a.component.limits().timeout
        });
    timeout.saturating_mul(2) + std::time::Duration::from_secs(1)
}

/// Refuse a route that is not an absolute, plain path prefix: `/` or
/// `/a/b` (letters, digits, `-`, `_`, `.`, `~`; no empty, `.` or `..`
/// segment, no trailing `/`).
pub fn check_route(route: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::Invalid(format!(
            "`{route}` is not a route: {why} (e.g. /hello or /api/v1)"
        )))
    };
    if route == "/" {
        return Ok(());
    }
    let Some(rest) = route.strip_prefix('/') else {
        return bad("it must start with /");
    };
    for segment in rest.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return bad("no empty, `.` or `..` segment, and no trailing /");
        }
        if !segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'))
        {
            return bad("letters, digits, `-`, `_`, `.` and `~` only");
        }
    }
    Ok(())
}

fn no_canary(name: &str) -> Error {
    Error::Invalid(format!(
        "{name} has no canary in progress; start one with `upgrade {name}@VERSION --strategy canary` on a running host"
    ))
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
        "SELECT id, name, version, digest, spec, strategy, parent, state, reason, actor, created_ms, updated_ms, generation
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
                    generation: r.get(12)?,
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
