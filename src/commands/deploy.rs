//! `deploy`, `upgrade`, `rollback`, `history`, `status`: deployments on a
//! local state directory.

use std::path::PathBuf;

use airssys_wasm_deploy::{
    ActorSpec, ActorStatus, Canary, DeploySpec, Deployer, Deployment, Hosting, Rollback, StateDir,
    StateUsage, Strategy,
};
use airssys_wasm_runtime::{Grants, RuntimeConfig};
use anyhow::bail;
use http::Method;
use serde_json::json;

use super::{GrantArgs, Host, LimitArgs, parse_pair};
use crate::output::{InputError, Progress, print_json, print_text};

/// What to deploy, and with what.
#[derive(Debug, clap::Args)]
pub(crate) struct SpecArgs {
    #[command(flatten)]
    grants: GrantArgs,

    #[command(flatten)]
    limits: LimitArgs,

    /// Configuration served through wasi:config and passed to init
    /// (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_pair)]
    config: Vec<(String, String)>,

    /// The HTTP path prefix a running host serves it on (e.g. /hello);
    /// kept across upgrades.
    #[arg(long, value_name = "PATH")]
    route: Option<String>,

    /// Calls it runs at once at most; more are refused as overloaded (503
    /// on a route) [default: 100].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_concurrent: Option<u32>,

    /// Receive what is published on TOPIC (exact, or a prefix ending in
    /// `*`); needs --allow messaging:subscribe:TOPIC (repeatable)
    #[arg(long = "subscribe", value_name = "TOPIC")]
    subscribe: Vec<String>,

    #[command(flatten)]
    actor: ActorArgs,
}

/// How the component is hosted.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Hosting")]
pub(crate) struct ActorArgs {
    /// per-call (a fresh instance for every call) or actor (long-lived
    /// instances, each with a mailbox, handling one message at a time,
    /// under a supervisor) [default: per-call]
    #[arg(long, value_name = "HOSTING", value_parser = ["per-call", "actor"])]
    hosting: Option<String>,

    /// Actor instances [default: 1]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(airssys_wasm_deploy::MAX_INSTANCES)))]
    instances: Option<u32>,

    /// Messages each instance's mailbox holds; a sender waits while all
    /// are full [default: 64]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    mailbox: Option<u32>,

    /// Which instances restart when one breaks: one-for-one, one-for-all,
    /// rest-for-one [default: one-for-one]
    #[arg(long, value_name = "STRATEGY", value_parser = ["one-for-one", "one-for-all", "rest-for-one"])]
    supervision: Option<String>,

    /// Restarts allowed within --restart-window before the deployment
    /// fails [default: 3]
    #[arg(long, value_name = "N")]
    max_restarts: Option<u32>,

    /// The window restarts are counted in [default: 5s]
    #[arg(long, value_name = "DURATION", value_parser = super::parse_duration)]
    restart_window: Option<std::time::Duration>,

    /// The wait before a restart, doubled for each further one in the
    /// window [default: 100ms]
    #[arg(long, value_name = "DURATION", value_parser = super::parse_duration)]
    backoff: Option<std::time::Duration>,

    /// How long a sender waits for room in a full mailbox [default: 5s]
    #[arg(long, value_name = "DURATION", value_parser = super::parse_duration)]
    send_timeout: Option<std::time::Duration>,
}

impl ActorArgs {
    /// Hosting and actor settings, when any flag was given.
    fn apply(&self, spec: &mut DeploySpec) -> anyhow::Result<()> {
        let actor = ActorSpec {
            instances: self.instances,
            mailbox: self.mailbox,
            supervision: self.supervision.as_deref().map(str::parse).transpose()?,
            max_restarts: self.max_restarts,
            restart_window_ms: super::millis(self.restart_window),
            backoff_ms: super::millis(self.backoff),
            send_timeout_ms: super::millis(self.send_timeout),
        };
        spec.hosting = self.hosting.as_deref().unwrap_or("per-call").parse()?;
        if actor != ActorSpec::default() {
            if spec.hosting != Hosting::Actor {
                bail!(InputError(
                    "--instances, --mailbox, --supervision, --max-restarts, --restart-window, --backoff and --send-timeout are for actors: add --hosting actor".into()
                ));
            }
            spec.actor = Some(actor);
        }
        spec.actor_plan()?;
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.hosting.is_none()
            && self.instances.is_none()
            && self.mailbox.is_none()
            && self.supervision.is_none()
            && self.max_restarts.is_none()
            && self.restart_window.is_none()
            && self.backoff.is_none()
            && self.send_timeout.is_none()
    }
}

impl SpecArgs {
    /// The spec these flags describe; `None` when no flag was given.
    pub(crate) fn spec(&self, name: &str, version: &str) -> anyhow::Result<Option<DeploySpec>> {
        let grants: Grants = self.grants.grants(Grants::default(), &[]);
        let l = &self.limits;
        if grants.allow.is_empty()
            && grants.deny.is_empty()
            && self.config.is_empty()
            && l.memory.is_none()
            && l.timeout.is_none()
            && l.fuel.is_none()
            && self.route.is_none()
            && self.max_concurrent.is_none()
            && self.actor.is_empty()
            && self.subscribe.is_empty()
        {
            return Ok(None);
        }
        let mut spec = DeploySpec::new(name, version);
        for g in &grants.allow {
            if g.mount.is_some() || g.expires.is_some() {
                bail!(InputError(format!(
                    "`{g}`: mount points and ends of grants are not kept by deployments yet; grant the directory at its own path"
                )));
            }
            spec.allow.push(g.capability.to_string());
        }
        spec.deny = grants.deny.iter().map(ToString::to_string).collect();
        spec.config = self.config.clone();
        spec.route = self.route.clone();
        spec.max_concurrent = self.max_concurrent;
        self.actor.apply(&mut spec)?;
        spec.subscribe = self.subscribe.clone();
        spec.subscriptions()?;
        if l.fuel.is_some() {
            bail!(InputError(
                "--fuel is not taken by deployments from the command line yet: set `limits.fuel` in a manifest given to `serve --fuel --manifest FILE`, or use --timeout".into()
            ));
        }
        spec.memory = l.memory;
        spec.timeout_ms = super::millis(l.timeout);
        Ok(Some(spec))
    }
}

/// Arguments of `deploy`.
#[derive(Debug, clap::Args)]
pub(crate) struct DeployArgs {
    /// The published version to deploy: NAME@VERSION.
    #[arg(value_name = "NAME@VERSION", value_parser = parse_target)]
    target: (String, String),

    /// Deploy over an active version even when the WIT changes are
    /// breaking (see `airssys-wasm diff`).
    #[arg(long)]
    allow_breaking: bool,

    #[command(flatten)]
    spec: SpecArgs,

    /// Print a JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Arguments of `upgrade`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Without grant, limit or --config flags the upgrade keeps those of the \
active deployment. A local command applies `immediate`; blue-green, canary and rolling act on \
live traffic and need a running host.\n\nA component that keeps state (imports wasi:keyvalue) \
upgraded to another version has its state copied into a new generation and its `migrate` \
run there before it takes calls; a failed `migrate` leaves the old version active."
)]
pub(crate) struct UpgradeArgs {
    /// The published version to upgrade to: NAME@VERSION.
    #[arg(value_name = "NAME@VERSION", value_parser = parse_target)]
    target: (String, String),

    /// How the new version reaches traffic: immediate, blue-green, canary,
    /// rolling (an actor's instances replaced --batch at a time, each
    /// handing its mailbox over).
    #[arg(long, default_value = "immediate", value_name = "STRATEGY")]
    strategy: String,

    /// Instances a rolling upgrade replaces at a time [default: 1]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    batch: Option<u32>,

    /// Upgrade even when the WIT changes are breaking (see
    /// `airssys-wasm diff`).
    #[arg(long)]
    allow_breaking: bool,

    #[command(flatten)]
    spec: SpecArgs,

    /// Print a JSON object instead of text.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    canary: CanaryPlanArgs,
}

/// The plan of a canary (`--strategy canary`); what is not given keeps
/// its default.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Canary plan (with --strategy canary)")]
pub(crate) struct CanaryPlanArgs {
    /// The canary's share of calls at each step, in percent, increasing
    /// [default: 10,50].
    #[arg(
        long = "canary-steps",
        value_name = "PERCENT,...",
        value_delimiter = ','
    )]
    steps: Vec<u8>,

    /// Canary calls that pass a step that stayed within the thresholds
    /// [default: 100].
    #[arg(long = "canary-step-calls", value_name = "N")]
    step_calls: Option<u64>,

    /// Time that passes a step that stayed within the thresholds and saw
    /// --canary-min-calls [default: 60s].
    #[arg(long = "canary-step-time", value_name = "DURATION", value_parser = super::parse_duration)]
    step_time: Option<std::time::Duration>,

    /// Canary calls a step must see before it is judged [default: 20].
    #[arg(long = "canary-min-calls", value_name = "N")]
    min_calls: Option<u64>,

    /// Highest share of failed canary calls in a step, 0 to 1
    /// [default: 0.05].
    #[arg(long = "canary-max-error-rate", value_name = "RATE")]
    max_error_rate: Option<f64>,

    /// Highest p99 latency of the canary's calls in a step [default:
    /// none].
    #[arg(long = "canary-max-p99", value_name = "DURATION", value_parser = super::parse_duration)]
    max_p99: Option<std::time::Duration>,
}

impl CanaryPlanArgs {
    fn given(&self) -> bool {
        !self.steps.is_empty()
            || self.step_calls.is_some()
            || self.step_time.is_some()
            || self.min_calls.is_some()
            || self.max_error_rate.is_some()
            || self.max_p99.is_some()
    }

    /// The default plan with what was given.
    fn plan(&self) -> anyhow::Result<Canary> {
        let mut plan = Canary::default();
        if !self.steps.is_empty() {
            plan.steps.clone_from(&self.steps);
        }
        if let Some(n) = self.step_calls {
            plan.step_calls = n;
        }
        if let Some(t) = self.step_time {
            plan.step_time = t;
        }
        if let Some(n) = self.min_calls {
            plan.min_calls = n;
        }
        if let Some(r) = self.max_error_rate {
            plan.max_error_rate = r;
        }
        if self.max_p99.is_some() {
            plan.max_p99 = self.max_p99;
        }
        for (flag, d) in [
            ("--canary-step-time", Some(plan.step_time)),
            ("--canary-max-p99", plan.max_p99),
        ] {
            if d.is_some_and(|d| d < std::time::Duration::from_millis(1)) {
                bail!(InputError(format!(
                    "{flag}: at least 1ms (the plan counts in milliseconds)"
                )));
            }
        }
        plan.check().map_err(|e| InputError(e.to_string()))?;
        Ok(plan)
    }
}

/// Arguments of `rollback`.
#[derive(Debug, clap::Args)]
pub(crate) struct RollbackArgs {
    /// The component.
    #[arg(value_name = "NAME")]
    name: String,

    /// The version or deployment id to go back to (default: the one the
    /// active deployment replaced).
    #[arg(long, value_name = "VERSION|ID")]
    to: Option<String>,

    /// Print a JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Arguments of `promote` and `abort`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "A canary starts with `upgrade NAME@VERSION --strategy canary` on a running \
host, which promotes or aborts it on its own measurements; these commands end it by hand, \
also one a stopped host left in progress."
)]
pub(crate) struct CanaryArgs {
    /// The component.
    #[arg(value_name = "NAME")]
    name: String,

    /// Print a JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Arguments of `history`.
#[derive(Debug, clap::Args)]
pub(crate) struct HistoryArgs {
    /// The component.
    #[arg(value_name = "NAME")]
    name: String,

    /// Print a JSON array instead of text.
    #[arg(long)]
    json: bool,
}

/// Arguments of `diff`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Each change is compatible (an export added, an import removed), \
breaking (an export removed or renamed, any change to a type an export uses) or needs a grant \
(an import added). Exit status 1 when a change is breaking."
)]
pub(crate) struct DiffArgs {
    /// The component.
    #[arg(value_name = "NAME")]
    name: String,
    /// The older version.
    #[arg(value_name = "A")]
    a: String,
    /// The newer version.
    #[arg(value_name = "B")]
    b: String,
    /// Print a JSON array instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn diff(args: DiffArgs, host: Host) -> anyhow::Result<u8> {
    let changes: Vec<airssys_wasm_deploy::diff::Change> = match host.client()? {
        Some(c) => serde_json::from_value(
            c.json(
                Method::GET,
                &format!(
                    "/v1/components/{}/diff?from={}&to={}",
                    args.name,
                    // `+` (semver build metadata) reads as a space in a query.
                    args.a.replace('+', "%2B"),
                    args.b.replace('+', "%2B")
                ),
                &json!({}),
            )
            .await?,
        )?,
        None => {
            let (dir, _) = deployer(&host)?;
            let d = open(&dir, &host)?;
            d.diff(&args.name, &args.a, &args.b)?
        }
    };
    if args.json {
        print_json(&json!(changes))?;
    } else if changes.is_empty() {
        print_text(&format!(
            "{} {} -> {}: the worlds are the same\n",
            args.name, args.a, args.b
        ))?;
    } else {
        let mut out = String::new();
        for c in &changes {
            out.push_str(&format!("{:<14} {}\n", c.class.to_string(), c.what));
        }
        print_text(&out)?;
    }
    Ok(if airssys_wasm_deploy::diff::breaking(&changes) {
        crate::exit::COMPONENT
    } else {
        crate::exit::OK
    })
}

/// Arguments of `gc`.
#[derive(Debug, clap::Args)]
pub(crate) struct GcArgs {
    /// Versions kept per component, newest first (the active one and the
    /// one it replaced are always kept).
    #[arg(long, default_value_t = 10, value_name = "N")]
    keep: usize,

    /// Print a JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn gc(args: GcArgs, host: Host) -> anyhow::Result<u8> {
    let (dir, _) = deployer(&host)?;
    let mut d = open(&dir, &host)?;
    let c = d
        .registry()
        .gc(args.keep, &dir.cache(), &crate::commands::publish::actor())?;
    if args.json {
        print_json(&json!(c))?;
    } else {
        print_text(&format!(
            "removed the bytes of {} version(s){}, {} blob file(s), {} compiled file(s) and {} state entries left by failed upgrades: {} bytes freed\n",
            c.pruned.len(),
            if c.pruned.is_empty() {
                String::new()
            } else {
                format!(" ({})", c.pruned.join(", "))
            },
            c.blobs,
            c.compiled,
            c.state_entries,
            c.bytes
        ))?;
    }
    Ok(crate::exit::OK)
}

/// Arguments of `status`.
#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// Print a JSON array instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_target(s: &str) -> Result<(String, String), String> {
    match s.split_once('@') {
        Some((n, v)) if !n.is_empty() && !v.is_empty() => Ok((n.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not NAME@VERSION (e.g. echo@0.1.0)")),
    }
}

fn deployer(host: &Host) -> anyhow::Result<(StateDir, PathBuf)> {
    let path = host.state_dir.clone().ok_or_else(|| {
        InputError("no state directory: set --state-dir or AIRSSYS_STATE_DIR".into())
    })?;
    Ok((StateDir::open(&path)?, path))
}

fn open(dir: &StateDir, host: &Host) -> anyhow::Result<Deployer> {
    let config = RuntimeConfig::default()
        .max_instances(16)
        .policy(host.policy.clone());
    let mut d = Deployer::open(dir, config)?;
    // Nothing is served from here: actors run in a host.
    d.host_actors(false);
    Ok(d)
}

fn report(verb: &str, d: &Deployment, json: bool) -> anyhow::Result<u8> {
    if json {
        print_json(&serde_json::to_value(d.redacted())?)?;
    } else {
        print_text(&format!(
            "{verb} {} {} (deployment {}, {}); it is active\n",
            d.name, d.version, d.id, d.digest
        ))?;
    }
    Ok(crate::exit::OK)
}

/// The API's fields for `spec` (none without flags: the host keeps the
/// active deployment's).
fn spec_fields(spec: Option<&DeploySpec>) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    if let Some(s) = spec {
        m.insert("allow".into(), json!(s.allow));
        m.insert("deny".into(), json!(s.deny));
        let config: std::collections::BTreeMap<&str, &str> = s
            .config
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        m.insert("config".into(), json!(config));
        if let Some(r) = &s.route {
            m.insert("route".into(), json!(r));
        }
        if let Some(mem) = s.memory {
            m.insert("memory".into(), json!(mem));
        }
        if let Some(t) = s.timeout_ms {
            m.insert("timeout_ms".into(), json!(t));
        }
        if let Some(n) = s.max_concurrent {
            m.insert("max_concurrent".into(), json!(n));
        }
        if !s.hosting.is_per_call() {
            m.insert("hosting".into(), json!(s.hosting));
        }
        if let Some(a) = &s.actor {
            m.insert("actor".into(), json!(a));
        }
        if !s.subscribe.is_empty() {
            m.insert("subscribe".into(), json!(s.subscribe));
        }
    }
    m
}

pub(crate) async fn deploy(args: DeployArgs, host: Host) -> anyhow::Result<u8> {
    let (name, version) = &args.target;
    if let Some(c) = host.client()? {
        let spec = args.spec.spec(name, version)?;
        let mut body = spec_fields(spec.as_ref());
        body.insert("name".into(), json!(name));
        body.insert("version".into(), json!(version));
        body.insert("allow_breaking".into(), json!(args.allow_breaking));
        let progress = Progress::start(format!("deploying {name} {version} on {}", c.base()));
        let v = c
            .json(
                Method::POST,
                "/v1/deployments",
                &serde_json::Value::Object(body),
            )
            .await;
        drop(progress);
        let record: Deployment = serde_json::from_value(v?)?;
        let verb = if record.parent.is_some() {
            "upgraded to"
        } else {
            "deployed"
        };
        return report(verb, &record, args.json);
    }
    let (dir, _) = deployer(&host)?;
    let mut d = open(&dir, &host)?;
    let actor = crate::commands::publish::actor();
    let active = d.status()?.into_iter().any(|r| &r.name == name);
    let progress = Progress::start(format!("deploying {name} {version}"));
    let record = match args.spec.spec(name, version)? {
        Some(spec) => d.deploy(spec, args.allow_breaking, &actor).await?,
        // Over an active deployment without flags: keep its grants, limits
        // and configuration, as `upgrade` does.
        None if active => {
            d.upgrade(
                name,
                version,
                Strategy::Immediate,
                None,
                args.allow_breaking,
                &actor,
            )
            .await?
        }
        None => {
            d.deploy(
                DeploySpec::new(name.as_str(), version.as_str()),
                args.allow_breaking,
                &actor,
            )
            .await?
        }
    };
    drop(progress);
    let verb = if record.parent.is_some() {
        "upgraded to"
    } else {
        "deployed"
    };
    report(verb, &record, args.json)
}

pub(crate) async fn upgrade(args: UpgradeArgs, host: Host) -> anyhow::Result<u8> {
    let (name, version) = &args.target;
    let mut strategy: Strategy = args
        .strategy
        .parse()
        .map_err(|e| InputError(format!("{e}")))?;
    match &mut strategy {
        Strategy::Canary(plan) => *plan = args.canary.plan()?,
        _ if args.canary.given() => bail!(InputError(
            "the --canary-* flags are the plan of `--strategy canary`".into()
        )),
        Strategy::Rolling { batch } => *batch = args.batch.unwrap_or(1),
        _ => {}
    }
    if args.batch.is_some() && !matches!(strategy, Strategy::Rolling { .. }) {
        bail!(InputError("--batch goes with `--strategy rolling`".into()));
    }
    if let Some(c) = host.client()? {
        let spec = args.spec.spec(name, version)?;
        let mut body = spec_fields(spec.as_ref());
        body.insert("version".into(), json!(version));
        body.insert("strategy".into(), json!(strategy.name()));
        if let Strategy::Canary(plan) = &strategy {
            body.insert("canary".into(), json!(plan));
        }
        if let Strategy::Rolling { batch } = &strategy {
            body.insert("batch".into(), json!(batch));
        }
        body.insert("allow_breaking".into(), json!(args.allow_breaking));
        let progress = Progress::start(format!("upgrading {name} to {version} on {}", c.base()));
        let v = c
            .json(
                Method::POST,
                &format!("/v1/deployments/{name}/upgrade"),
                &serde_json::Value::Object(body),
            )
            .await;
        drop(progress);
        let record: Deployment = serde_json::from_value(v?)?;
        if record.is_canary() {
            if args.json {
                print_json(&json!(record))?;
            } else {
                print_text(&format!(
                    "{name} {version} is a canary (deployment {}): the host promotes or aborts it on its measurements, or `airssys-wasm promote {name}` / `abort {name}`\n",
                    record.id
                ))?;
            }
            return Ok(crate::exit::OK);
        }
        return report("upgraded to", &record, args.json);
    }
    if strategy.needs_live_traffic() {
        bail!(InputError(format!(
            "the `{}` strategy acts on live traffic and needs a running host (`airssys-wasm serve`); a local command applies `immediate`",
            strategy.name()
        )));
    }
    let (dir, _) = deployer(&host)?;
    let mut d = open(&dir, &host)?;
    let spec = args.spec.spec(name, version)?;
    let progress = Progress::start(format!("upgrading {name} to {version}"));
    let record = d
        .upgrade(
            name,
            version,
            strategy,
            spec,
            args.allow_breaking,
            &crate::commands::publish::actor(),
        )
        .await?;
    drop(progress);
    report("upgraded to", &record, args.json)
}

pub(crate) async fn rollback(args: RollbackArgs, host: Host) -> anyhow::Result<u8> {
    if let Some(c) = host.client()? {
        let v = c
            .json(
                Method::POST,
                &format!("/v1/deployments/{}/rollback", args.name),
                &json!({ "to": args.to }),
            )
            .await?;
        return print_rollback(&serde_json::from_value(v)?, args.json);
    }
    let (dir, _) = deployer(&host)?;
    let mut d = open(&dir, &host)?;
    let mut done = d
        .rollback(
            &args.name,
            args.to.as_deref(),
            &crate::commands::publish::actor(),
        )
        .await?;
    done.deployment = done.deployment.redacted();
    print_rollback(&done, args.json)
}

fn print_rollback(done: &Rollback, json: bool) -> anyhow::Result<u8> {
    if json {
        print_json(&json!(done))?;
        return Ok(crate::exit::OK);
    }
    report("rolled back to", &done.deployment, false)?;
    if let Some(g) = done.left_generation {
        let mut out = format!(
            "its state is generation {} again; generation {g} stays behind",
            done.deployment.generation
        );
        if done.left_behind_count == 0 {
            out.push_str(" with no write that differs\n");
        } else {
            out.push_str(&format!(
                " with {} key(s) written since: {}{}\n",
                done.left_behind_count,
                done.left_behind.join(", "),
                if done.left_behind_count > done.left_behind.len() {
                    ", ..."
                } else {
                    ""
                }
            ));
        }
        print_text(&out)?;
    }
    Ok(crate::exit::OK)
}

pub(crate) async fn promote(args: CanaryArgs, host: Host) -> anyhow::Result<u8> {
    if let Some(c) = host.client()? {
        let v = c
            .json(
                Method::POST,
                &format!("/v1/deployments/{}/promote", args.name),
                &json!({}),
            )
            .await?;
        return report("promoted", &serde_json::from_value(v)?, args.json);
    }
    let (dir, _) = deployer(&host)?;
    let mut d = open(&dir, &host)?;
    let record = d
        .promote(&args.name, &crate::commands::publish::actor())
        .await?;
    report("promoted", &record, args.json)
}

pub(crate) async fn abort(args: CanaryArgs, host: Host) -> anyhow::Result<u8> {
    let record: Deployment = match host.client()? {
        Some(c) => serde_json::from_value(
            c.json(
                Method::POST,
                &format!("/v1/deployments/{}/abort", args.name),
                &json!({}),
            )
            .await?,
        )?,
        None => {
            let (dir, _) = deployer(&host)?;
            let mut d = open(&dir, &host)?;
            d.abort(&args.name, &crate::commands::publish::actor())?
                .redacted()
        }
    };
    if args.json {
        print_json(&serde_json::to_value(record.redacted())?)?;
    } else {
        print_text(&format!(
            "aborted the canary {} {} (deployment {}); the active version serves every call\n",
            record.name, record.version, record.id
        ))?;
    }
    Ok(crate::exit::OK)
}

fn time(ms: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

pub(crate) async fn history(args: HistoryArgs, host: Host) -> anyhow::Result<u8> {
    let records: Vec<Deployment> = match host.client()? {
        Some(c) => serde_json::from_value(
            c.json(
                Method::GET,
                &format!("/v1/deployments/{}/history", args.name),
                &json!({}),
            )
            .await?,
        )?,
        None => {
            let (dir, _) = deployer(&host)?;
            let d = open(&dir, &host)?;
            d.history(&args.name)?
                .iter()
                .map(Deployment::redacted)
                .collect()
        }
    };
    if records.is_empty() {
        bail!(InputError(format!("{} was never deployed here", args.name)));
    }
    if args.json {
        print_json(&serde_json::to_value(&records)?)?;
        return Ok(crate::exit::OK);
    }
    let mut out = String::new();
    for r in &records {
        let state = if r.is_canary() {
            "canary".to_string()
        } else {
            r.state.clone()
        };
        out.push_str(&format!(
            "{:>4}  {:<10} {:<8} {:<10} {}  {}{}{}\n",
            r.id,
            r.version,
            state,
            r.strategy,
            time(r.created_ms),
            r.actor,
            r.parent
                .map(|p| format!("  (replaced {p})"))
                .unwrap_or_default(),
            r.reason
                .as_deref()
                .map(|why| format!("\n      {why}"))
                .unwrap_or_default(),
        ));
    }
    print_text(&out)?;
    Ok(crate::exit::OK)
}

/// One row of `status`: the active deployment, its state's usage, and its
/// canary in progress.
#[derive(serde::Deserialize)]
struct StatusRow {
    #[serde(flatten)]
    deployment: Deployment,
    state_usage: StateUsage,
    canary: Option<Deployment>,
    #[serde(default)]
    actors: Option<ActorStatus>,
}

pub(crate) async fn status(args: StatusArgs, host: Host) -> anyhow::Result<u8> {
    let rows: Vec<StatusRow> = match host.client()? {
        Some(c) => {
            serde_json::from_value(c.json(Method::GET, "/v1/deployments", &json!({})).await?)?
        }
        None => {
            let (dir, _) = deployer(&host)?;
            let d = open(&dir, &host)?;
            let mut rows = Vec::new();
            let mut records = d.status()?;
            records.extend(d.failed_actors()?);
            records.sort_by(|a, b| a.name.cmp(&b.name));
            for r in records {
                rows.push(StatusRow {
                    state_usage: d.state_usage(&r)?,
                    canary: d.canary_record(&r.name)?.map(|c| c.redacted()),
                    deployment: r.redacted(),
                    // Instances run only in a host.
                    actors: None,
                });
            }
            rows
        }
    };
    if args.json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|row| {
                let mut v = json!(row.deployment);
                v["state_usage"] = json!(row.state_usage);
                v["canary"] = json!(row.canary);
                if let Some(a) = &row.actors {
                    v["actors"] = json!(a);
                }
                v
            })
            .collect();
        print_json(&json!(list))?;
        return Ok(crate::exit::OK);
    }
    let mut out = String::new();
    for row in &rows {
        let (r, usage, canary) = (&row.deployment, &row.state_usage, &row.canary);
        if r.state == "failed" {
            out.push_str(&format!(
                "{:<20} {:<10} deployment {:<4} FAILED {}: {}; deploy a fixed version or roll back\n",
                r.name,
                r.version,
                r.id,
                time(r.updated_ms),
                r.reason.as_deref().unwrap_or("(no reason recorded)"),
            ));
            continue;
        }
        out.push_str(&format!(
            "{:<20} {:<10} deployment {:<4} since {}  state: {} key(s), {} bytes (generation {})  grants: {}\n",
            r.name,
            r.version,
            r.id,
            time(r.updated_ms),
            usage.keys,
            usage.bytes,
            r.generation,
            if r.spec.allow.is_empty() {
                "(none)".to_string()
            } else {
                r.spec.allow.join(", ")
            },
        ));
        if let Some(c) = canary {
            out.push_str(&format!(
                "{:<20} canary {} (deployment {}) in progress: `airssys-wasm promote {}` or `abort {}`\n",
                "", c.version, c.id, r.name, r.name
            ));
        }
        if let Some(a) = &row.actors {
            out.push_str(&format!(
                "{:<20} actor: {}/{} instance(s) running ({}), mailboxes {}/{}, {} message(s) handled, {} restart(s)\n",
                "",
                a.running,
                a.instances,
                serde_json::to_value(a.supervision)?.as_str().unwrap_or_default(),
                a.mailbox_depth,
                a.mailbox_capacity,
                a.processed,
                a.restarts,
            ));
        } else if !r.spec.hosting.is_per_call() {
            out.push_str(&format!(
                "{:<20} actor: instances run in a host (`--host URL` shows them)\n",
                ""
            ));
        }
    }
    if rows.is_empty() {
        out.push_str("nothing is deployed\n");
    }
    print_text(&out)?;
    Ok(crate::exit::OK)
}
