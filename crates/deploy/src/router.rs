//! The traffic router: which version of a component each call goes to.
//!
//! A [`Route`] holds the active version (the primary), for a blue-green
//! deployment the version it replaced, kept prepared (the standby), and
//! during a canary the new version with its share of calls and its
//! measurements. A call takes a [`Pick`], runs on the version it names, and
//! reports how it ended ([`Pick::finish`]); a call keeps the version it
//! picked until it ends, whatever the route does meanwhile.
//!
//! A canary's calls are measured step by step: each step sends a fixed
//! share of calls to the new version (exactly that share: call `n` goes to
//! the canary when `n * percent / 100` moves), and ends after
//! [`Canary::step_calls`] canary calls or [`Canary::step_time`], whichever
//! comes first, but never before [`Canary::min_calls`]. A step whose error
//! rate or p99 latency passes its threshold aborts the canary; the last
//! step passed promotes it. The route acts at once, in memory (no further
//! call goes to an aborted canary), and hands the decision to the
//! [`crate::Deployer`], which persists it ([`crate::Deployer::settle`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use airssys_wasm_runtime::{CallOutput, Message};
use hdrhistogram::Histogram;

use crate::deployer::{Active, Deployment};
use crate::error::{Error, Result};

/// How a canary moves: its steps and the thresholds it must stay within.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Canary {
    /// The share of calls (percent, 1 to 99, increasing) the canary takes
    /// at each step. Default: 10, then 50.
    pub steps: Vec<u8>,
    /// Canary calls after which a step that stayed within the thresholds
    /// is passed. Default: 100.
    pub step_calls: u64,
    /// Time after which a step that stayed within the thresholds is passed
    /// (if it has seen `min_calls`); milliseconds in JSON. Default: 60 s.
    #[serde(with = "millis")]
    #[cfg_attr(feature = "openapi", schema(value_type = u64, default = 60000))]
    pub step_time: Duration,
    /// Canary calls a step must see before it is judged. Default: 20.
    pub min_calls: u64,
    /// Highest share of failed canary calls (0 to 1) in a step. Default:
    /// 0.05.
    pub max_error_rate: f64,
    /// Highest p99 latency of the canary's calls in a step; milliseconds
    /// in JSON. Default: none.
    #[serde(with = "opt_millis")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>))]
    pub max_p99: Option<Duration>,
}

impl Default for Canary {
    fn default() -> Self {
        Self {
            steps: vec![10, 50],
            step_calls: 100,
            step_time: Duration::from_secs(60),
            min_calls: 20,
            max_error_rate: 0.05,
            max_p99: None,
        }
    }
}

impl Canary {
    /// Refuse a plan that cannot run: no steps, shares out of 1..=99 or not
    /// increasing, an error rate outside 0..=1, `min_calls` of 0 or above
    /// `step_calls`.
    pub fn check(&self) -> Result<()> {
        let bad = |why: String| Err(Error::Invalid(format!("canary plan: {why}")));
        if self.steps.is_empty() {
            return bad("at least one step is needed (e.g. 10,50)".into());
        }
        if self.steps.iter().any(|&p| p == 0 || p > 99) {
            return bad(format!(
                "each step is a share of calls from 1 to 99 percent, not {:?}",
                self.steps
            ));
        }
        if self.steps.windows(2).any(|w| w[0] >= w[1]) {
            return bad(format!("steps must increase, not {:?}", self.steps));
        }
        if !(0.0..=1.0).contains(&self.max_error_rate) {
            return bad(format!(
                "the error rate threshold is a share from 0 to 1, not {}",
                self.max_error_rate
            ));
        }
        if self.min_calls == 0 || self.min_calls > self.step_calls {
            return bad(format!(
                "min_calls ({}) must be at least 1 and at most step_calls ({})",
                self.min_calls, self.step_calls
            ));
        }
        Ok(())
    }
}

mod millis {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms: u64 = serde::Deserialize::deserialize(d)?;
        Ok(Duration::from_millis(ms))
    }
}

mod opt_millis {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let ms: Option<u64> = serde::Deserialize::deserialize(d)?;
        Ok(ms.map(Duration::from_millis))
    }
}

/// What a route decided about its canary.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "verdict", content = "reason")]
pub enum Verdict {
    /// Every step passed: the canary is the active version.
    Promote,
    /// A step passed a threshold (the reason says which): the canary takes
    /// no more calls.
    Abort(String),
    /// Not a canary's verdict: an actor deployment's restarts passed its
    /// intensity (the reason says how many in what time), and its
    /// instances stopped.
    Failed(String),
}

/// A canary's end, decided by its route, to be persisted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    /// The component.
    pub name: String,
    /// The canary's deployment.
    pub deployment: i64,
    /// The deployment it was measured against (the primary).
    pub against: Option<i64>,
    /// Promoted or aborted, and why.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// Canary calls, every step together.
    pub calls: u64,
    /// Failed canary calls, every step together.
    pub errors: u64,
}

/// The decisions routes made and the deployer has not persisted yet, and
/// a wake-up for whoever persists them.
#[derive(Default)]
pub(crate) struct Pending {
    list: Mutex<Vec<Decision>>,
    pub(crate) wake: tokio::sync::Notify,
}

impl Pending {
    /// Take every decision waiting.
    pub(crate) fn take(&self) -> Vec<Decision> {
        std::mem::take(&mut *self.list.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Put decisions back (not persisted), first in line.
    pub(crate) fn put_back(&self, decisions: &[Decision]) {
        let mut list = self.list.lock().unwrap_or_else(PoisonError::into_inner);
        let later = std::mem::take(&mut *list);
        list.extend(decisions.iter().cloned());
        list.extend(later);
    }

    pub(crate) fn push(&self, decision: Decision) {
        self.list
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(decision);
        self.wake.notify_one();
    }
}

pub(crate) type Decisions = Arc<Pending>;

/// A handle that resolves when a route reaches a canary verdict
/// ([`crate::Deployer::decision_signal`]); it does not borrow the deployer,
/// so a host can wait on it while others use the deployer.
#[derive(Clone)]
pub struct DecisionSignal(pub(crate) Decisions);

impl DecisionSignal {
    /// Resolves when a route has decided about a canary (at once if a
    /// decision came while nobody waited).
    pub async fn wait(&self) {
        self.0.wake.notified().await;
    }
}

impl std::fmt::Debug for DecisionSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionSignal").finish_non_exhaustive()
    }
}

/// One canary in progress.
pub(crate) struct CanaryRun {
    pub(crate) active: Active,
    plan: Canary,
    /// Calls the route has seen since the canary started (the weighting).
    seen: AtomicU64,
    stats: Mutex<Stats>,
}

struct Stats {
    step: usize,
    step_started: Instant,
    calls: u64,
    errors: u64,
    latency: Histogram<u64>,
    total_calls: u64,
    total_errors: u64,
    concluded: bool,
}

/// The longest latency measured, in microseconds (one hour); longer calls
/// count as this.
const LATENCY_MAX_US: u64 = 3_600_000_000;

impl CanaryRun {
    fn new(active: Active, plan: Canary) -> Result<Self> {
        plan.check()?;
        let latency = Histogram::new_with_bounds(1, LATENCY_MAX_US, 2)
            .map_err(|e| Error::Invalid(format!("latency histogram: {e}")))?;
        Ok(Self {
            active,
            plan,
            seen: AtomicU64::new(0),
            stats: Mutex::new(Stats {
                step: 0,
                step_started: Instant::now(),
                calls: 0,
                errors: 0,
                latency,
                total_calls: 0,
                total_errors: 0,
                concluded: false,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the next call goes to the canary (never once it is judged).
    fn takes_next(&self) -> bool {
        let stats = self.lock();
        if stats.concluded {
            return false;
        }
        let percent = u64::from(self.plan.steps[stats.step.min(self.plan.steps.len() - 1)]);
        drop(stats);
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        (n + 1) * percent / 100 != n * percent / 100
    }

    /// Count one canary call; the verdict, once, when the canary ends.
    fn record(&self, ok: bool, took: Duration) -> Option<Verdict> {
        let mut s = self.lock();
        if s.concluded {
            return None;
        }
        s.calls += 1;
        s.total_calls += 1;
        if !ok {
            s.errors += 1;
            s.total_errors += 1;
        }
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        s.latency.saturating_record(us.clamp(1, LATENCY_MAX_US));
        self.judge(&mut s)
    }

    /// The step's verdict now: abort on a passed threshold, the next step
    /// (or promotion after the last) when the step is done.
    fn judge(&self, s: &mut Stats) -> Option<Verdict> {
        let plan = &self.plan;
        if s.concluded || s.calls < plan.min_calls {
            return None;
        }
        let share = plan.steps[s.step];
        #[expect(clippy::cast_precision_loss, reason = "call counts far below 2^52")]
        let rate = s.errors as f64 / s.calls as f64;
        if rate > plan.max_error_rate {
            s.concluded = true;
            return Some(Verdict::Abort(format!(
                "error rate {:.1}% ({} of {} calls) passed the threshold of {:.1}% at step {} ({share}% of calls)",
                rate * 100.0,
                s.errors,
                s.calls,
                plan.max_error_rate * 100.0,
                s.step + 1
            )));
        }
        if let Some(max) = plan.max_p99 {
            let p99 = Duration::from_micros(
                s.latency
                    .lowest_equivalent(s.latency.value_at_quantile(0.99)),
            );
            if p99 > max {
                s.concluded = true;
                return Some(Verdict::Abort(format!(
                    "p99 latency {} over {} calls passed the threshold of {} at step {} ({share}% of calls)",
                    humantime::format_duration(round_ms(p99)),
                    s.calls,
                    humantime::format_duration(max),
                    s.step + 1
                )));
            }
        }
        if s.calls < plan.step_calls && s.step_started.elapsed() < plan.step_time {
            return None;
        }
        if s.step + 1 < plan.steps.len() {
            s.step += 1;
            s.step_started = Instant::now();
            s.calls = 0;
            s.errors = 0;
            s.latency.reset();
            return None;
        }
        s.concluded = true;
        Some(Verdict::Promote)
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Where calls to one component go: cheap to clone, shared with the
/// threads that call.
#[derive(Clone)]
pub struct Route {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    table: RwLock<Table>,
    /// Held shared by every call in flight, exclusively by a stateful
    /// upgrade: taking it waits for calls in flight to end, and new calls
    /// wait behind it.
    traffic: Arc<tokio::sync::RwLock<()>>,
    decisions: Decisions,
}

#[derive(Clone, Default)]
struct Table {
    primary: Option<Active>,
    standby: Option<Active>,
    canary: Option<Arc<CanaryRun>>,
}

/// The version one call runs on. Report how the call ended with
/// [`Pick::finish`]; a pick dropped unfinished counts as nothing.
pub struct Pick {
    /// The version to call.
    pub active: Active,
    canary: Option<Arc<CanaryRun>>,
    route: Route,
    started: Instant,
    _turn: tokio::sync::OwnedRwLockReadGuard<()>,
}

impl std::fmt::Debug for Pick {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pick")
            .field("deployment", &self.active.deployment.id)
            .field("canary", &self.canary.is_some())
            .finish_non_exhaustive()
    }
}

impl Pick {
    /// Whether the call goes to a canary.
    pub fn is_canary(&self) -> bool {
        self.canary.is_some()
    }

    /// Report how the call ended; a canary's call is measured (its time
    /// counted from the pick).
    pub fn finish(self, ok: bool) {
        let Some(run) = &self.canary else {
            return;
        };
        if let Some(verdict) = run.record(ok, self.started.elapsed()) {
            self.route.conclude(run, verdict);
        }
    }
}

/// One call's answer, and the deployment that gave it.
#[derive(Debug)]
pub struct Served {
    /// The deployment that answered.
    pub deployment: Arc<Deployment>,
    /// What it answered.
    pub output: CallOutput<Message>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

impl Route {
    pub(crate) fn new(name: &str, decisions: Decisions) -> Self {
        Self {
            inner: Arc::new(Inner {
                name: name.to_string(),
                table: RwLock::default(),
                traffic: Arc::default(),
                decisions,
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.inner
            .table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.inner
            .table
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The active version now. Calls should go through [`Route::pick`] or
    /// [`Route::execute`]: only those are counted for a canary and paused
    /// while a stateful upgrade migrates (a call made on this `Active`
    /// directly may write to the state generation being left).
    pub fn current(&self) -> Option<Active> {
        self.read().primary.clone()
    }

    /// The canary in progress, if any.
    pub fn canary(&self) -> Option<Active> {
        self.read().canary.as_ref().map(|c| c.active.clone())
    }

    /// The version a blue-green deployment replaced, kept prepared.
    pub fn standby(&self) -> Option<Active> {
        self.read().standby.clone()
    }

    /// The version the next call goes to. Waits while a stateful upgrade
    /// switches versions (at most the active version's timeout).
    pub async fn pick(&self) -> Result<Pick> {
        let turn = self.inner.traffic.clone().read_owned();
        let timeout = self
            .read()
            .primary
            .as_ref()
            .map(|a| a.component.limits().timeout);
        let turn = match timeout.and_then(|t| Instant::now().checked_add(t)) {
            Some(at) => tokio::time::timeout_at(at.into(), turn)
                .await
                .map_err(|_| {
                    Error::Invalid(format!(
                        "{}: a version switch was still under way after {}; try again",
                        self.inner.name,
                        humantime::format_duration(timeout.unwrap_or_default())
                    ))
                })?,
            None => turn.await,
        };
        let table = self.read().clone();
        let canary = table.canary.filter(|c| c.takes_next());
        let active = match &canary {
            Some(c) => c.active.clone(),
            None => table.primary.ok_or_else(|| {
                Error::Invalid(format!(
                    "{} is not deployed; deploy it: `airssys-wasm deploy {}@VERSION`",
                    self.inner.name, self.inner.name
                ))
            })?,
        };
        Ok(Pick {
            active,
            canary,
            route: self.clone(),
            started: Instant::now(),
            _turn: turn,
        })
    }

    /// Call `handler.execute` on the version the route picks, and report
    /// how it ended.
    pub async fn execute(&self, input: Message) -> Result<Served> {
        self.execute_within(input, None).await
    }

    /// [`Route::execute`], waiting at most `wait` for room when the
    /// version is an actor whose mailboxes are full (its plan's send
    /// timeout when `None` or longer).
    pub async fn execute_within(&self, input: Message, wait: Option<Duration>) -> Result<Served> {
        let pick = self.pick().await?;
        let deployment = pick.active.deployment.clone();
        let r = pick.active.execute(input, wait).await;
        // Every error counts, `Overloaded` too: a version's concurrency
        // limit is its own.
        pick.finish(r.is_ok());
        Ok(Served {
            deployment,
            output: r?,
        })
    }

    /// Deliver `input` without waiting for its answer: returns once it is
    /// accepted (an actor's mailbox had room within `wait`, as for
    /// [`Route::execute_within`]). The call runs on, holding its version;
    /// its failure is logged.
    pub async fn send(&self, input: Message, wait: Option<Duration>) -> Result<()> {
        let pick = self.pick().await?;
        let name = self.inner.name.clone();
        let log = move |e: &Error| {
            tracing::warn!(target_component = %name, error = %e, "a message sent was not handled");
        };
        match pick.active.actors.clone() {
            None => {
                tokio::spawn(async move {
                    let r = pick.active.component.execute(input).await;
                    pick.finish(r.is_ok());
                    if let Err(e) = r {
                        log(&e.into());
                    }
                });
            }
            Some(actors) => {
                let answer = match actors.accept(input, wait).await {
                    Ok(a) => a,
                    Err(e) => {
                        pick.finish(false);
                        return Err(e);
                    }
                };
                tokio::spawn(async move {
                    let r = actors.answer(answer).await;
                    pick.finish(r.is_ok());
                    if let Err(e) = r {
                        log(&e);
                    }
                });
            }
        }
        Ok(())
    }

    /// Judge the canary's step on time alone (a step may end by time with
    /// no new call).
    pub(crate) fn tick(&self) {
        let Some(run) = self.read().canary.clone() else {
            return;
        };
        let verdict = run.judge(&mut run.lock());
        if let Some(v) = verdict {
            self.conclude(&run, v);
        }
    }

    /// Act on a canary's verdict at once, and hand it to the deployer.
    fn conclude(&self, run: &Arc<CanaryRun>, verdict: Verdict) {
        let mut table = self.write();
        if !table.canary.as_ref().is_some_and(|c| Arc::ptr_eq(c, run)) {
            return;
        }
        table.canary = None;
        let against = table.primary.as_ref().map(|p| p.deployment.id);
        if verdict == Verdict::Promote {
            table.standby = table.primary.take();
            table.primary = Some(run.active.clone());
        }
        drop(table);
        let s = run.lock();
        let decision = Decision {
            name: self.inner.name.clone(),
            deployment: run.active.deployment.id,
            against,
            verdict,
            calls: s.total_calls,
            errors: s.total_errors,
        };
        drop(s);
        match &decision.verdict {
            Verdict::Promote => tracing::info!(
                component = %decision.name,
                deployment = decision.deployment,
                calls = decision.calls,
                "canary promoted"
            ),
            Verdict::Abort(why) => tracing::warn!(
                component = %decision.name,
                deployment = decision.deployment,
                reason = %why,
                "canary aborted"
            ),
            Verdict::Failed(_) => {}
        }
        self.inner.decisions.push(decision);
    }

    /// Make `to` the primary; with `keep_standby` the primary it replaces
    /// stays prepared as the standby.
    pub(crate) fn set_primary(&self, to: Option<Active>, keep_standby: bool) {
        let mut table = self.write();
        let old = std::mem::replace(&mut table.primary, to);
        table.standby = if keep_standby { old } else { None };
    }

    /// The standby, if it is deployment `id`.
    pub(crate) fn standby_of(&self, id: i64) -> Option<Active> {
        self.read()
            .standby
            .clone()
            .filter(|s| s.deployment.id == id)
    }

    /// Start sending a share of calls to `active`.
    pub(crate) fn start_canary(&self, active: Active, plan: Canary) -> Result<()> {
        let run = Arc::new(CanaryRun::new(active, plan)?);
        self.write().canary = Some(run);
        Ok(())
    }

    /// End the canary in memory: promoted (`record` is its active record),
    /// or dropped.
    pub(crate) fn end_canary(&self, promoted: Option<Arc<Deployment>>) {
        let mut table = self.write();
        let Some(run) = table.canary.take() else {
            return;
        };
        if let Some(record) = promoted {
            table.standby = table.primary.take();
            table.primary = Some(Active {
                deployment: record,
                ..run.active.clone()
            });
        }
    }

    /// Replace the record of the primary (same component) once its state
    /// changed in the database.
    pub(crate) fn refresh(&self, record: Arc<Deployment>) {
        let mut table = self.write();
        if let Some(p) = &mut table.primary
            && p.deployment.id == record.id
        {
            p.deployment = record;
        }
    }

    /// Stop new calls and wait for the calls in flight to end; calls resume
    /// when the guard drops. Waits at most `limit`.
    pub(crate) async fn pause(
        &self,
        limit: Duration,
    ) -> Result<tokio::sync::OwnedRwLockWriteGuard<()>> {
        tokio::time::timeout(limit, self.inner.traffic.clone().write_owned())
            .await
            .map_err(|_| {
                Error::Invalid(format!(
                    "{}: calls in flight did not end within {}; the upgrade was not started",
                    self.inner.name,
                    humantime::format_duration(limit)
                ))
            })
    }
}
