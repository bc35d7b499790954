//! Actor hosting: a deployment's long-lived instances, their mailboxes and
//! their supervisor (ADR 0006).
//!
//! A deployment with `hosting = "actor"` runs [`ActorPlan::instances`]
//! instances of its version, each started with `init` and kept until it
//! stops. Each instance has a bounded mailbox (a tokio mpsc channel) and
//! handles one message at a time, each in its own state transaction. A
//! message goes to the mailbox with the most room; when every mailbox is
//! full the sender waits up to its wait, then gets [`Error::MailboxFull`].
//!
//! The supervisor is a task of its own. When an instance breaks (a trap, a
//! timeout, a limit: see [`airssys_wasm_runtime::ActorInstance`]) it
//! restarts, by the plan's [`Supervision`], that instance alone, every
//! instance, or that instance and those started after it, waiting a backoff
//! that doubles with each restart in the window. Past `max_restarts` within
//! `restart_window` the deployment fails: its mailboxes close, the messages
//! waiting are answered with [`Error::ActorsFailed`], and the deployer is
//! told (it records the deployment `failed` and audits it). A mailbox
//! outlives its instance: messages accepted before a restart are handled by
//! the next instance, in order.
//!
//! When the last handle of a deployment's [`Actors`] is dropped (its version
//! retired and its calls ended), the mailboxes close; each instance handles
//! what it accepted, runs `shutdown`, and ends.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use airssys_wasm_runtime::{ActorInstance, CallOutput, ComponentPre, Message};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::{Error, Result};

/// How a deployment's instances live.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hosting {
    /// A fresh instance for every call (the default).
    #[default]
    PerCall,
    /// Long-lived instances with mailboxes, under a supervisor.
    Actor,
}

impl Hosting {
    /// Whether it is the default, per-call hosting.
    pub fn is_per_call(&self) -> bool {
        *self == Self::PerCall
    }
}

impl std::fmt::Display for Hosting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::PerCall => "per-call",
            Self::Actor => "actor",
        })
    }
}

impl std::str::FromStr for Hosting {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "per-call" => Ok(Self::PerCall),
            "actor" => Ok(Self::Actor),
            other => Err(Error::Invalid(format!(
                "unknown hosting `{other}`: use `per-call` or `actor`"
            ))),
        }
    }
}

/// Which instances a supervisor restarts when one breaks (Erlang/OTP's
/// strategies, over the instances in the order they were started).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Supervision {
    /// That instance alone (the default).
    #[default]
    OneForOne,
    /// Every instance.
    OneForAll,
    /// That instance and every instance started after it.
    RestForOne,
}

impl std::str::FromStr for Supervision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "one-for-one" => Ok(Self::OneForOne),
            "one-for-all" => Ok(Self::OneForAll),
            "rest-for-one" => Ok(Self::RestForOne),
            other => Err(Error::Invalid(format!(
                "unknown supervision `{other}`: use `one-for-one`, `one-for-all` or `rest-for-one`"
            ))),
        }
    }
}

/// Actor hosting's settings, as given; each has a default.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActorSpec {
    /// Instances (default 1, at most 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    /// Messages each instance's mailbox holds (default 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<u32>,
    /// What breaks together (default `one-for-one`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervision: Option<Supervision>,
    /// Restarts allowed within the window before the deployment fails
    /// (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restarts: Option<u32>,
    /// The window restarts are counted in, in milliseconds (default 5000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_window_ms: Option<u64>,
    /// The wait before the first restart in a window, in milliseconds,
    /// doubled for each further one (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_ms: Option<u64>,
    /// How long a sender waits for room when every mailbox is full, in
    /// milliseconds (default 5000; a request waits at most its own timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_timeout_ms: Option<u64>,
}

/// Actor hosting's settings, checked, with the defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorPlan {
    /// Instances.
    pub instances: usize,
    /// Messages each mailbox holds.
    pub mailbox: usize,
    /// What breaks together.
    pub supervision: Supervision,
    /// Restarts allowed within the window.
    pub max_restarts: u32,
    /// The window restarts are counted in.
    pub restart_window: Duration,
    /// The wait before the first restart in a window.
    pub backoff: Duration,
    /// How long a sender waits for room.
    pub send_timeout: Duration,
}

/// The most instances one deployment may run.
pub const MAX_INSTANCES: u32 = 64;

impl ActorSpec {
    /// Check the settings and fill in the defaults.
    pub fn plan(&self) -> Result<ActorPlan> {
        let bad = |m: String| Err(Error::Invalid(m));
        let instances = self.instances.unwrap_or(1);
        if !(1..=MAX_INSTANCES).contains(&instances) {
            return bad(format!(
                "actor instances: {instances} is out of range (1 to {MAX_INSTANCES})"
            ));
        }
        let mailbox = self.mailbox.unwrap_or(64);
        if !(1..=1 << 20).contains(&mailbox) {
            return bad(format!(
                "actor mailbox: {mailbox} is out of range (1 to 1048576 messages)"
            ));
        }
        let window = self.restart_window_ms.unwrap_or(5000);
        if window == 0 {
            return bad("actor restart window: 0 ms counts no restart; give at least 1".into());
        }
        let send = self.send_timeout_ms.unwrap_or(5000);
        Ok(ActorPlan {
            instances: instances as usize,
            mailbox: mailbox as usize,
            supervision: self.supervision.unwrap_or_default(),
            max_restarts: self.max_restarts.unwrap_or(3),
            restart_window: Duration::from_millis(window),
            backoff: Duration::from_millis(self.backoff_ms.unwrap_or(100)),
            send_timeout: Duration::from_millis(send),
        })
    }
}

/// What `status` shows of an actor deployment now.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct ActorStatus {
    /// Instances it runs when all is well.
    pub instances: u32,
    /// Instances running now (fewer while some restart).
    pub running: u32,
    /// Messages waiting, every mailbox together.
    pub mailbox_depth: u64,
    /// Messages the mailboxes hold at most, together.
    pub mailbox_capacity: u64,
    /// Messages handled (well or not) since it started.
    pub processed: u64,
    /// Instances restarted since it started.
    pub restarts: u64,
    /// What breaks together.
    pub supervision: Supervision,
    /// Why it failed (its restarts passed the intensity), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

/// One message in a mailbox, and where its answer goes.
struct Letter {
    message: Message,
    reply: oneshot::Sender<Result<CallOutput<Message>>>,
}

/// Where the answer to one accepted message arrives.
pub(crate) type Answer = oneshot::Receiver<Result<CallOutput<Message>>>;

type Mailbox = Arc<tokio::sync::Mutex<mpsc::Receiver<Letter>>>;

/// The counters a deployment's instances and supervisor keep.
#[derive(Default)]
struct Stats {
    /// Woken when an instance takes a letter (room in its mailbox).
    room: tokio::sync::Notify,
    running: AtomicUsize,
    processed: AtomicU64,
    restarts: AtomicU64,
    failed: Mutex<Option<String>>,
}

impl Stats {
    fn failed(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The running instances of one actor deployment: where its messages go.
/// Cheap to clone; see the module's documentation for what dropping the
/// last clone does.
#[derive(Clone)]
pub struct Actors {
    inner: Arc<Senders>,
}

struct Senders {
    name: String,
    senders: Vec<mpsc::Sender<Letter>>,
    /// Asks the supervisor to stop instances; answered when done.
    stop: mpsc::Sender<Command>,
    /// The receiving ends, for a successor to take over.
    mailboxes: Vec<Mailbox>,
    next: AtomicUsize,
    plan: ActorPlan,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for Actors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actors")
            .field("name", &self.inner.name)
            .field("instances", &self.inner.plan.instances)
            .finish_non_exhaustive()
    }
}

/// Told once, with the reason, when a deployment's restarts pass the
/// intensity.
pub(crate) type OnFailure = Box<dyn FnOnce(String) + Send>;

/// What a deployment's supervisor tells the host.
pub(crate) struct Hooks {
    /// Its restarts passed the intensity (once, with the reason).
    pub(crate) on_failure: OnFailure,
    /// An instance broke (for the supervision group it belongs to).
    pub(crate) on_break: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl Actors {
    /// Start `plan.instances` instances of `component` (each runs `init`;
    /// the first that fails stops the others and is the error) and their
    /// supervisor.
    pub(crate) async fn start(
        component: ComponentPre,
        plan: ActorPlan,
        hooks: Hooks,
    ) -> Result<Self> {
        let mut instances = Vec::with_capacity(plan.instances);
        for _ in 0..plan.instances {
            match component.start_instance().await {
                Ok(i) => instances.push(i),
                Err(e) => {
                    for i in instances {
                        i.stop().await;
                    }
                    return Err(e.into());
                }
            }
        }
        let (senders, mailboxes): (Vec<_>, Vec<_>) = (0..plan.instances)
            .map(|_| {
                let (tx, rx) = mpsc::channel(plan.mailbox);
                (tx, Arc::new(tokio::sync::Mutex::new(rx)))
            })
            .unzip();
        Ok(Self::supervise(
            component, plan, instances, senders, mailboxes, hooks,
        ))
    }

    /// Instances of `component` started, and their supervisor, on these
    /// mailboxes.
    fn supervise(
        component: ComponentPre,
        plan: ActorPlan,
        instances: Vec<ActorInstance>,
        senders: Vec<mpsc::Sender<Letter>>,
        mailboxes: Vec<Mailbox>,
        hooks: Hooks,
    ) -> Self {
        let gates = vec![None; mailboxes.len()];
        Self::supervise_gated(component, plan, instances, senders, mailboxes, hooks, gates)
    }

    /// [`Actors::supervise`], each instance waiting at its gate (when
    /// given) before it takes its mailbox.
    fn supervise_gated(
        component: ComponentPre,
        plan: ActorPlan,
        instances: Vec<ActorInstance>,
        senders: Vec<mpsc::Sender<Letter>>,
        mailboxes: Vec<Mailbox>,
        hooks: Hooks,
        gates: Vec<Option<watch::Receiver<bool>>>,
    ) -> Self {
        let stats = Arc::new(Stats::default());
        let (stop, stop_asked) = mpsc::channel(1);
        let supervisor = Supervisor {
            stop_asked,
            component: component.clone(),
            plan: plan.clone(),
            stats: stats.clone(),
            mailboxes: mailboxes.clone(),
            stops: Vec::new(),
            released: vec![false; mailboxes.len()],
            gates,
            tasks: JoinSet::new(),
            index: HashMap::new(),
            window: VecDeque::new(),
            queue: VecDeque::new(),
            on_failure: Some(hooks.on_failure),
            on_break: hooks.on_break,
        };
        tokio::spawn(supervisor.run(instances));
        Self {
            inner: Arc::new(Senders {
                name: component.name().to_string(),
                senders,
                stop,
                mailboxes,
                next: AtomicUsize::new(0),
                plan,
                stats,
            }),
        }
    }

    /// Prepare to replace `old`'s instances with instances of `component`,
    /// `batch` at a time, keeping its mailboxes: every new instance is
    /// started (its `init`) and reports itself healthy, batch by batch;
    /// none takes a message until [`Rolling::hand_over`] (a failure here,
    /// or dropping the [`Rolling`], leaves `old` serving untouched).
    pub(crate) async fn roll(
        old: &Actors,
        component: ComponentPre,
        plan: ActorPlan,
        batch: usize,
        hooks: Hooks,
    ) -> Result<(Self, Rolling)> {
        let o = &old.inner;
        if let Some(why) = o.stats.failed() {
            return Err(Error::Invalid(format!(
                "rolling: {} is not running ({why}); use the immediate strategy",
                o.name
            )));
        }
        if (plan.instances, plan.mailbox) != (o.plan.instances, o.plan.mailbox) {
            return Err(Error::Invalid(format!(
                "rolling: {} keeps its {} instance(s) with mailboxes of {} (the new spec asks {} of {}); use the immediate strategy to change them",
                o.name, o.plan.instances, o.plan.mailbox, plan.instances, plan.mailbox
            )));
        }
        let batch = batch.max(1);
        let mut fresh: Vec<ActorInstance> = Vec::with_capacity(plan.instances);
        let refuse = async |fresh: Vec<ActorInstance>, e: Error| {
            for i in fresh {
                i.stop().await;
            }
            Err(e)
        };
        for (k, chunk) in (0..plan.instances)
            .collect::<Vec<_>>()
            .chunks(batch)
            .enumerate()
        {
            for _ in chunk {
                match component.start_instance().await {
                    Ok(i) => fresh.push(i),
                    Err(e) => return refuse(fresh, e.into()).await,
                }
            }
            let first = fresh.len() - chunk.len();
            for i in &mut fresh[first..] {
                match i.health().await {
                    Ok(airssys_wasm_runtime::HealthStatus::Unhealthy(why)) => {
                        let e = Error::Invalid(format!(
                            "rolling: batch {} of {}: an instance reports itself unhealthy ({why}); the active version keeps serving",
                            k + 1,
                            plan.instances.div_ceil(batch)
                        ));
                        return refuse(fresh, e).await;
                    }
                    Ok(_) => {}
                    Err(e) => return refuse(fresh, e.into()).await,
                }
            }
        }
        // Each new instance waits at its gate until its batch is handed
        // over (it does not queue for the mailbox before: the old
        // supervisor may still need it).
        let (opens, gates): (Vec<_>, Vec<_>) =
            (0..plan.instances).map(|_| watch::channel(false)).unzip();
        let new = Self::supervise_gated(
            component,
            plan,
            fresh,
            o.senders.clone(),
            o.mailboxes.clone(),
            hooks,
            gates.into_iter().map(Some).collect(),
        );
        Ok((
            new,
            Rolling {
                old: old.clone(),
                opens,
                batch,
            },
        ))
    }

    async fn command(&self, command: impl FnOnce(oneshot::Sender<()>) -> Command) {
        let (done, stopped) = oneshot::channel();
        if self.inner.stop.send(command(done)).await.is_ok() {
            let _ = stopped.await;
        }
    }

    /// Stop every instance now (each after the message in hand, running
    /// `shutdown`); messages still waiting are answered with
    /// [`Error::ActorsFailed`]. Resolves when all have stopped. A host
    /// calls this when it stops, after its ingress drained.
    pub async fn stop(&self) {
        self.command(Command::Stop).await;
    }

    /// Stop every instance and start them again (for a supervision group
    /// whose strategy restarts this deployment with a sibling); not counted
    /// against its own intensity.
    pub(crate) async fn restart_all(&self) {
        self.command(Command::RestartAll).await;
    }

    /// Fail the deployment for `reason` (a supervision group above it gave
    /// up), as if its own restarts had passed the intensity.
    pub(crate) async fn fail(&self, reason: String) {
        self.command(|done| Command::Fail(reason, done)).await;
    }

    /// The plan it runs by.
    pub fn plan(&self) -> &ActorPlan {
        &self.inner.plan
    }

    /// What it is doing now.
    pub fn status(&self) -> ActorStatus {
        let s = &self.inner;
        let depth: usize = s
            .senders
            .iter()
            .map(|t| t.max_capacity() - t.capacity())
            .sum();
        ActorStatus {
            instances: s.plan.instances as u32,
            running: s.stats.running.load(Ordering::Relaxed) as u32,
            mailbox_depth: depth as u64,
            mailbox_capacity: (s.plan.mailbox * s.plan.instances) as u64,
            processed: s.stats.processed.load(Ordering::Relaxed),
            restarts: s.stats.restarts.load(Ordering::Relaxed),
            supervision: s.plan.supervision,
            failed: s.stats.failed(),
        }
    }

    fn failed(&self, reason: String) -> Error {
        Error::ActorsFailed {
            component: self.inner.name.clone(),
            reason,
        }
    }

    /// Put `message` in the mailbox with the most room, waiting up to
    /// `wait` (at most the plan's send timeout) when all are full.
    /// Resolves to the receiver of its answer.
    pub(crate) async fn accept(&self, message: Message, wait: Option<Duration>) -> Result<Answer> {
        let s = &self.inner;
        let wait = wait.map_or(s.plan.send_timeout, |w| w.min(s.plan.send_timeout));
        if let Some(why) = s.stats.failed() {
            return Err(self.failed(why));
        }
        let (reply, answer) = oneshot::channel();
        let mut letter = Letter { message, reply };
        let n = s.senders.len();
        let closed = || {
            self.failed(
                s.stats
                    .failed()
                    .unwrap_or_else(|| "its instances have stopped".into()),
            )
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before looking, so room made after the look wakes
            // this sender.
            let room = s.stats.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            let first = s.next.fetch_add(1, Ordering::Relaxed) % n;
            // The most room, ties going round.
            let roomiest = (0..n)
                .map(|k| (first + k) % n)
                .max_by_key(|&i| {
                    (
                        s.senders[i].capacity(),
                        std::cmp::Reverse((i + n - first) % n),
                    )
                })
                .unwrap_or(first);
            letter = match s.senders[roomiest].try_send(letter) {
                Ok(()) => return Ok(answer),
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(closed()),
                Err(mpsc::error::TrySendError::Full(l)) => l,
            };
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                return Err(Error::MailboxFull {
                    component: s.name.clone(),
                    capacity: s.plan.mailbox,
                    waited: wait,
                });
            }
        }
    }

    /// Deliver `message` and wait for its answer. The wait for room in a
    /// full mailbox is at most `wait` (the plan's send timeout when
    /// `None`).
    pub async fn call(
        &self,
        message: Message,
        wait: Option<Duration>,
    ) -> Result<CallOutput<Message>> {
        let answer = self.accept(message, wait).await?;
        self.answer(answer).await
    }

    /// The answer to a message accepted.
    pub(crate) async fn answer(&self, answer: Answer) -> Result<CallOutput<Message>> {
        match answer.await {
            Ok(r) => r,
            // The letter was dropped unanswered: the deployment failed.
            Err(_) => Err(self.failed(
                self.inner
                    .stats
                    .failed()
                    .unwrap_or_else(|| "its instances have stopped".into()),
            )),
        }
    }
}

/// How one instance's task ended.
enum Exit {
    /// Its mailbox closed (every sender gone) and it was stopped.
    Closed,
    /// Its supervisor stopped it.
    Stopped,
    /// It broke, for this reason.
    Broken(String),
}

/// A rolling upgrade prepared by [`Actors::roll`]: the new instances
/// started and healthy, waiting. Dropping it gives the upgrade up (the new
/// instances stop; the old ones never stopped serving).
pub(crate) struct Rolling {
    old: Actors,
    /// One per position: opened when its mailbox is handed over.
    opens: Vec<watch::Sender<bool>>,
    batch: usize,
}

impl Rolling {
    /// Hand the mailboxes over, batch by batch: each old instance finishes
    /// the message in hand, runs `shutdown` and lets go of its mailbox,
    /// with the messages waiting in it, then its successor takes it. No
    /// accepted message is lost or reordered.
    pub(crate) async fn hand_over(self) {
        let positions: Vec<usize> = (0..self.opens.len()).collect();
        for chunk in positions.chunks(self.batch) {
            self.old
                .command(|done| Command::Release(chunk.to_vec(), done))
                .await;
            for &j in chunk {
                let _ = self.opens[j].send(true);
            }
        }
    }
}

/// What a supervisor is asked to do besides supervising.
enum Command {
    /// Stop every instance and close the mailboxes ([`Actors::stop`]).
    Stop(oneshot::Sender<()>),
    /// Stop these instances for good, leaving their mailboxes open to a
    /// successor ([`Actors::roll`]).
    Release(Vec<usize>, oneshot::Sender<()>),
    /// Restart every instance ([`Actors::restart_all`]).
    RestartAll(oneshot::Sender<()>),
    /// Fail the deployment ([`Actors::fail`]).
    Fail(String, oneshot::Sender<()>),
}

struct Supervisor {
    /// Where [`Actors::stop`] and [`Actors::roll`] ask.
    stop_asked: mpsc::Receiver<Command>,
    component: ComponentPre,
    plan: ActorPlan,
    stats: Arc<Stats>,
    mailboxes: Vec<Mailbox>,
    /// Each running instance's stop signal, by position.
    stops: Vec<Option<watch::Sender<bool>>>,
    /// Positions handed to a successor: never restarted.
    released: Vec<bool>,
    /// Positions whose instances wait to be handed their mailbox (a rolling
    /// upgrade's successors).
    gates: Vec<Option<watch::Receiver<bool>>>,
    tasks: JoinSet<Exit>,
    /// The position of each task.
    index: HashMap<tokio::task::Id, usize>,
    /// When the restarts within the window happened.
    window: VecDeque<Instant>,
    /// Instances that broke while a restart waited for others to stop.
    queue: VecDeque<usize>,
    on_failure: Option<OnFailure>,
    on_break: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl Supervisor {
    async fn run(mut self, instances: Vec<ActorInstance>) {
        self.stops = (0..self.mailboxes.len()).map(|_| None).collect();
        for (i, instance) in instances.into_iter().enumerate() {
            self.spawn(i, instance);
        }
        loop {
            let joined = tokio::select! {
                joined = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => joined,
                Some(command) = self.stop_asked.recv() => match command {
                    Command::Stop(done) => {
                        self.stop_all("it was stopped (the host is stopping)").await;
                        let _ = done.send(());
                        return;
                    }
                    Command::Release(positions, done) => {
                        self.release(&positions).await;
                        let _ = done.send(());
                        if self.released.iter().all(|r| *r) {
                            return;
                        }
                        continue;
                    }
                    Command::RestartAll(done) => {
                        let all: Vec<usize> = (0..self.mailboxes.len())
                            .filter(|&j| !self.released[j])
                            .collect();
                        self.stop_group(&all).await;
                        let started = self.start_again(&all).await;
                        let _ = done.send(());
                        if let Err(reason) = started {
                            self.fail(reason).await;
                            return;
                        }
                        None
                    }
                    Command::Fail(reason, done) => {
                        self.fail(reason).await;
                        let _ = done.send(());
                        return;
                    }
                },
                else => None,
            };
            if let Some(joined) = joined {
                let (id, exit) = match joined {
                    Ok((id, exit)) => (id, exit),
                    Err(e) => (e.id(), Exit::Broken(format!("its task ended: {e}"))),
                };
                let Some(i) = self.index.remove(&id) else {
                    continue;
                };
                self.stops[i] = None;
                match exit {
                    Exit::Closed | Exit::Stopped => {}
                    Exit::Broken(_) if self.released[i] => {}
                    Exit::Broken(why) => {
                        tracing::warn!(component = %self.component.name(), instance = i, reason = %why, "actor instance stopped; restarting");
                        if let Some(tell) = &self.on_break {
                            tell();
                        }
                        self.queue.push_back(i);
                    }
                }
            } else if self.tasks.is_empty() && self.queue.is_empty() {
                // Every instance ended with its mailbox closed.
                return;
            }
            while let Some(i) = self.queue.pop_front() {
                // Already restarted with another's group, or handed over.
                if self.stops[i].is_some() || self.released[i] {
                    continue;
                }
                if !self.restart(i).await {
                    return;
                }
            }
        }
    }

    fn spawn(&mut self, i: usize, instance: ActorInstance) {
        let (stop, stopped) = watch::channel(false);
        self.stops[i] = Some(stop);
        let handle = self.tasks.spawn(serve(
            instance,
            self.mailboxes[i].clone(),
            self.gates[i].clone(),
            stopped,
            self.stats.clone(),
        ));
        self.index.insert(handle.id(), i);
    }

    /// Stop the instances at `positions` for good (each after the message
    /// in hand, running `shutdown`), leaving their mailboxes to a
    /// successor.
    async fn release(&mut self, positions: &[usize]) {
        for &j in positions {
            self.released[j] = true;
        }
        self.stop_group(positions).await;
    }

    /// Start the instances at `positions` again, for a supervision group
    /// (not counted against this deployment's intensity): an instance that
    /// does not start is tried again after the backoff, up to
    /// `max_restarts` times, then the deployment fails (the reason).
    async fn start_again(&mut self, positions: &[usize]) -> std::result::Result<(), String> {
        for &j in positions {
            let mut tries = 0;
            loop {
                match self.component.start_instance().await {
                    Ok(instance) => {
                        self.stats.restarts.fetch_add(1, Ordering::Relaxed);
                        self.spawn(j, instance);
                        break;
                    }
                    Err(e) if tries >= self.plan.max_restarts => {
                        return Err(format!(
                            "instance {j} did not start again after its supervision group restarted it: {e}"
                        ));
                    }
                    Err(e) => {
                        tries += 1;
                        tracing::warn!(component = %self.component.name(), instance = j, error = %e, "actor instance did not start");
                        tokio::time::sleep(self.plan.backoff.saturating_mul(1 << tries.min(16)))
                            .await;
                    }
                }
            }
        }
        Ok(())
    }

    /// Stop the instances at `positions` (each after the message in hand)
    /// and wait for them; another that breaks meanwhile is queued for its
    /// restart.
    async fn stop_group(&mut self, positions: &[usize]) {
        for &j in positions {
            if let Some(stop) = &self.stops[j] {
                let _ = stop.send(true);
            }
        }
        while positions.iter().any(|&j| self.stops[j].is_some()) {
            let Some(joined) = self.tasks.join_next_with_id().await else {
                break;
            };
            let (id, exit) = match joined {
                Ok((id, exit)) => (id, exit),
                Err(e) => (e.id(), Exit::Broken(format!("its task ended: {e}"))),
            };
            if let Some(j) = self.index.remove(&id) {
                self.stops[j] = None;
                if let Exit::Broken(why) = exit
                    && !positions.contains(&j)
                    && !self.released[j]
                {
                    tracing::warn!(component = %self.component.name(), instance = j, reason = %why, "actor instance stopped; restarting");
                    if let Some(tell) = &self.on_break {
                        tell();
                    }
                    self.queue.push_back(j);
                }
            }
        }
    }

    /// Restart what the strategy says after instance `i` broke. False when
    /// the deployment failed instead (or every sender is gone).
    async fn restart(&mut self, i: usize) -> bool {
        let n = self.mailboxes.len();
        let group: Vec<usize> = match self.plan.supervision {
            Supervision::OneForOne => vec![i],
            Supervision::OneForAll => (0..n).collect(),
            Supervision::RestForOne => (i..n).collect(),
        }
        .into_iter()
        .filter(|&j| !self.released[j])
        .collect();
        if group.is_empty() {
            return true;
        }
        // Stop the others of the group (each after its message in hand),
        // then start the group again in order.
        self.stop_group(&group).await;
        // The group's restart counts once (as OTP counts it), and so does
        // each attempt to start an instance that would not.
        let mut attempt = 0;
        for &j in &group {
            loop {
                if attempt > 0 || j == group[0] {
                    if !self.count_restart() {
                        return self
                            .fail(format!(
                                "more than {} restarts within {}",
                                self.plan.max_restarts,
                                humantime::format_duration(self.plan.restart_window)
                            ))
                            .await;
                    }
                    tokio::time::sleep(self.backoff()).await;
                }
                match self.component.start_instance().await {
                    Ok(instance) => {
                        attempt = 0;
                        self.stats.restarts.fetch_add(1, Ordering::Relaxed);
                        self.spawn(j, instance);
                        break;
                    }
                    Err(e) => {
                        attempt += 1;
                        tracing::warn!(component = %self.component.name(), instance = j, error = %e, "actor instance did not start");
                    }
                }
            }
        }
        true
    }

    /// Count one restart; false past the intensity.
    fn count_restart(&mut self) -> bool {
        let now = Instant::now();
        while self
            .window
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.plan.restart_window)
        {
            self.window.pop_front();
        }
        self.window.push_back(now);
        self.window.len() <= self.plan.max_restarts as usize
    }

    /// The wait before this restart: the backoff, doubled for each earlier
    /// restart in the window, at most the window.
    fn backoff(&self) -> Duration {
        let doublings = self.window.len().saturating_sub(1).min(16) as u32;
        self.plan
            .backoff
            .saturating_mul(1 << doublings)
            .min(self.plan.restart_window)
    }

    /// Fail the deployment: stop every instance, answer what waits, tell
    /// the deployer.
    async fn fail(&mut self, reason: String) -> bool {
        tracing::error!(component = %self.component.name(), reason = %reason, "actor deployment failed");
        self.stop_all(&reason).await;
        if let Some(tell) = self.on_failure.take() {
            tell(reason);
        }
        false
    }

    /// Stop every instance and close the mailboxes, answering what waits
    /// with `reason`.
    async fn stop_all(&mut self, reason: &str) {
        *self
            .stats
            .failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(reason.to_string());
        for stop in self.stops.iter().flatten() {
            let _ = stop.send(true);
        }
        while self.tasks.join_next().await.is_some() {}
        let kept = self
            .mailboxes
            .iter()
            .zip(&self.released)
            .filter(|(_, released)| !**released);
        for (mailbox, _) in kept {
            let mut rx = mailbox.lock().await;
            rx.close();
            while let Ok(letter) = rx.try_recv() {
                let _ = letter.reply.send(Err(Error::ActorsFailed {
                    component: self.component.name().to_string(),
                    reason: reason.to_string(),
                }));
            }
        }
        // Senders waiting for room find the mailboxes closed.
        self.stats.room.notify_waiters();
    }
}

/// One instance's task: take letters from its mailbox one at a time until
/// the mailbox closes, the supervisor stops it, or it breaks.
async fn serve(
    mut instance: ActorInstance,
    mailbox: Mailbox,
    gate: Option<watch::Receiver<bool>>,
    mut stop: watch::Receiver<bool>,
    stats: Arc<Stats>,
) -> Exit {
    // A successor waits until its mailbox is handed over; a rolling
    // upgrade given up (its gate dropped) stops it.
    if let Some(mut gate) = gate {
        let opened = tokio::select! {
            biased;
            _ = stop.changed() => false,
            r = gate.wait_for(|open| *open) => r.is_ok(),
        };
        if !opened {
            instance.stop().await;
            return Exit::Stopped;
        }
    }
    // The mailbox may still be held by the instance this one succeeds.
    let mut rx = tokio::select! {
        biased;
        _ = stop.changed() => {
            instance.stop().await;
            return Exit::Stopped;
        }
        rx = mailbox.lock() => rx,
    };
    let _running = Running::new(&stats);
    loop {
        let letter = tokio::select! {
            biased;
            _ = stop.changed() => {
                // `shutdown` runs before a successor gets the mailbox.
                instance.stop().await;
                drop(rx);
                return Exit::Stopped;
            }
            l = rx.recv() => l,
        };
        let Some(letter) = letter else {
            instance.stop().await;
            drop(rx);
            return Exit::Closed;
        };
        stats.room.notify_waiters();
        // Its sender stopped waiting (a request that timed out, a client
        // gone): the message is not handled, as the sender was told.
        if letter.reply.is_closed() {
            continue;
        }
        // A grant the instance's authority rests on ended: a new instance
        // gets the authority decided now (no restart counted).
        if instance.is_stale() {
            let component = instance.component().clone();
            instance.stop().await;
            instance = match component.start_instance().await {
                Ok(i) => i,
                Err(e) => {
                    let _ = letter.reply.send(Err(e.into()));
                    return Exit::Broken("its authority changed and no instance starts".into());
                }
            };
        }
        let answer = instance.handle(letter.message).await;
        stats.processed.fetch_add(1, Ordering::Relaxed);
        let _ = letter.reply.send(answer.map_err(Error::from));
        if let Some(why) = instance.broken() {
            return Exit::Broken(why.to_string());
        }
    }
}

/// Counts an instance as running while it lives.
struct Running(Arc<Stats>);

impl Running {
    fn new(stats: &Arc<Stats>) -> Self {
        stats.running.fetch_add(1, Ordering::Relaxed);
        Self(stats.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}
