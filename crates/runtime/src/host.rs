//! The per-store state ([`HostCtx`]) and the host side of the contract's
//! imports: `wasi:logging`, `wasi:config`, `wasi:keyvalue` and
//! `airssys:component/messaging`.
//!
//! Threat model: everything here is called by untrusted guest code. Nothing
//! a guest passes may make the host hold unbounded memory: log lines are cut
//! and rate-limited, captured output keeps only a bounded tail, state keys,
//! values and totals are capped, and every handle lives in the store's
//! resource table, whose capacity is capped too.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::Limits;
use crate::bindings::airssys::component::types::{ComponentError, Message};
use crate::bindings::wasi::keyvalue::store::{Error as KvError, KeyResponse};
use crate::bindings::wasi::logging::logging::Level;

/// What all instances of one prepared component share: its name, limits,
/// configuration, state store and log budget.
pub(crate) struct Shared {
    pub name: String,
    /// What the component may do, decided at preparation.
    pub decided: Arc<Decided>,
    /// What that was decided from, to decide again when a grant ends.
    pub request: crate::policy::Request,
    /// The decision made after a grant ended, until the next one ends.
    pub redecided: std::sync::RwLock<Option<Arc<Decided>>>,
    /// Where this component's denials are recorded.
    pub audit: crate::audit::Audit,
    pub limits: Limits,
    /// Sorted by key, so `get` is a binary search and `get-all` a copy.
    pub config: Vec<(String, String)>,
    /// Shared by every preparation of the same kept namespace (an upgrade's
    /// new version sees the old one's writes, and their calls take turns).
    pub state: Arc<StateStore>,
    /// For a component that imports `wasi:keyvalue`: one call at a time.
    pub state_gate: Option<Arc<tokio::sync::Mutex<()>>>,
    /// Where kept writes are stored, if anywhere.
    pub state_backend: Option<StateBinding>,
    pub log_budget: Mutex<TokenBucket>,
    /// Fuel its calls consumed in all (with fuel metering on).
    pub fuel_consumed: std::sync::atomic::AtomicU64,
}

/// Where a component's state is kept beyond the process: a namespace in a
/// backend (the deployment engine's SQLite store).
#[derive(Clone)]
pub(crate) struct StateBinding {
    pub backend: Arc<dyn crate::StateBackend>,
    pub namespace: String,
}

/// A store for components' state that outlives the process. A call's
/// writes reach it only when the call succeeds, all at once.
pub trait StateBackend: Send + Sync + 'static {
    /// Every entry kept for `namespace`: `(bucket, key, value)`.
    fn load(&self, namespace: &str) -> Result<Vec<(String, String, Vec<u8>)>, String>;

    /// Apply one call's writes atomically: `(bucket, key, value)`, `None`
    /// deleting.
    fn commit(
        &self,
        namespace: &str,
        writes: &[(String, String, Option<Vec<u8>>)],
    ) -> Result<(), String>;
}

impl Shared {
    #[allow(clippy::too_many_arguments, reason = "one constructor, called once")]
    pub(crate) fn new(
        name: String,
        request: crate::policy::Request,
        authority: crate::Authority,
        audit: crate::audit::Audit,
        limits: Limits,
        config: Vec<(String, String)>,
        keeps_state: bool,
        state: Arc<StateStore>,
        state_backend: Option<StateBinding>,
    ) -> Self {
        // A key given twice keeps its last value, as on a command line.
        let config: Vec<(String, String)> = config
            .into_iter()
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .collect();
        let rate = limits.log_lines_per_second;
        Self {
            name,
            decided: Arc::new(Decided::new(authority, &request, &audit)),
            audit,
            request,
            redecided: std::sync::RwLock::new(None),
            config,
            state_gate: keeps_state.then(|| state.gate.clone()),
            state,
            state_backend,
            log_budget: Mutex::new(TokenBucket::new(rate)),
            fuel_consumed: std::sync::atomic::AtomicU64::new(0),
            limits,
        }
    }

    /// Add what a call's store consumed of its fuel, when the engine
    /// meters fuel (`metered`).
    pub(crate) fn count_fuel(&self, store: &wasmtime::Store<HostCtx>, metered: bool) {
        if !metered {
            return;
        }
        if let Ok(left) = store.get_fuel() {
            let budget = self.limits.fuel.unwrap_or(u64::MAX);
            self.fuel_consumed.fetch_add(
                budget.saturating_sub(left),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
    }

    /// The authority a call starting now runs under: the one decided at
    /// preparation until a grant it rests on ends, then decided again.
    pub(crate) fn decided(&self) -> crate::Result<Arc<Decided>> {
        let Some(first) = self.decided.authority.next_expiry() else {
            return Ok(self.decided.clone());
        };
        let now = std::time::SystemTime::now();
        if now < first {
            return Ok(self.decided.clone());
        }
        let current = |later: &Option<Arc<Decided>>| {
            later
                .as_ref()
                .filter(|d| d.authority.next_expiry().is_none_or(|t| now < t))
                .cloned()
        };
        // Calls share the later decision under a read lock; one decides
        // again when that one ends too.
        if let Some(d) = current(
            &self
                .redecided
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        ) {
            return Ok(d);
        }
        let mut later = self
            .redecided
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(d) = current(&later) {
            return Ok(d);
        }
        let authority = self
            .request
            .decide(now)
            .inspect_err(|e| self.audit.refused(e))?;
        let d = Arc::new(Decided::new(authority, &self.request, &self.audit));
        tracing::info!(component = %self.name, "a grant ended: authority decided again");
        *later = Some(d.clone());
        Ok(d)
    }
}

/// A decided authority, with the flags a store is built from.
pub(crate) struct Decided {
    pub authority: crate::Authority,
    pub profile: crate::policy::StoreProfile,
}

impl Decided {
    fn new(
        authority: crate::Authority,
        request: &crate::policy::Request,
        audit: &crate::audit::Audit,
    ) -> Self {
        Self {
            profile: authority.store_profile(audit, &request.providers),
            authority,
        }
    }
}

/// One log line a guest emitted during a call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogRecord {
    /// `trace`, `debug`, `info`, `warn`, `error` or `critical`.
    pub level: &'static str,
    /// The guest's context string.
    pub context: String,
    /// The message, cut to the line limit.
    pub message: String,
}

/// The state of one store: one instance, one call. Custom capability
/// providers see it as [`StoreCtx`](crate::StoreCtx).
pub struct HostCtx {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: Limiter,
    pub(crate) shared: Arc<Shared>,
    /// The authority this call runs under.
    pub(crate) decided: Arc<Decided>,
    pub(crate) logs: Vec<LogRecord>,
    pub(crate) logs_dropped: u64,
    /// When instantiation finished, for the call's timings.
    pub(crate) instantiated: Option<Instant>,
    /// When a grant this call holds ends (the call is stopped then).
    pub(crate) grant_ends: Option<Instant>,
    /// When the call's timeout ends it.
    pub(crate) times_out: Option<Instant>,
    /// The value each state entry had before this call first wrote it, to
    /// undo the call's writes if it does not succeed.
    pub(crate) state_undo: HashMap<(String, String), Option<Vec<u8>>>,
    /// Each custom capability's state for this store, by provider name.
    pub(crate) custom: HashMap<String, Box<dyn std::any::Any + Send>>,
    hooks: crate::net::OutgoingHttp,
    /// Where this call's messages go, if anywhere.
    pub(crate) messenger: Option<Arc<dyn crate::Messenger>>,
    /// The components the message this call handles passed through.
    pub(crate) chain: Vec<String>,
    /// The name this component was loaded under (a deployment's name): the
    /// sender of its messages.
    pub(crate) loaded_as: Option<Arc<crate::ComponentInfo>>,
}

impl HostCtx {
    /// The state provider `name` built for this store from its grant, if
    /// the component holds that grant.
    pub fn provider_state<T: 'static>(&mut self, name: &str) -> Option<&mut T> {
        self.custom.get_mut(name)?.downcast_mut()
    }

    /// The component this call belongs to.
    pub fn component(&self) -> &str {
        &self.shared.name
    }

    /// The resource table of this store, for providers that hand out
    /// resources.
    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// Record a denial a provider made (an audit event; the guest should
    /// see a typed error from the provider's function).
    pub fn deny(&self, capability: &str, target: &str, reason: &str) {
        self.shared
            .audit
            .record(crate::Decision::Denied, capability, target, reason);
    }
}

impl HostCtx {
    /// When the call must end: the earlier of its timeout and the end of a
    /// grant it rests on.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match (self.times_out, self.grant_ends) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Start the next call on a long-lived store: its own timeout from now,
    /// nothing left of the last call's records.
    pub(crate) fn next_call(&mut self, times_out: Option<Instant>) {
        self.times_out = times_out;
        self.hooks.deadline = self.deadline();
        self.limiter.memory_refused = None;
        self.limiter.table_refused = None;
        self.logs.clear();
        self.logs_dropped = 0;
        self.instantiated = None;
    }

    pub(crate) fn new(
        wasi: WasiCtx,
        shared: Arc<Shared>,
        decided: Arc<Decided>,
        hooks: crate::net::OutgoingHttp,
    ) -> Self {
        let mut table = ResourceTable::new();
        table.set_max_capacity(shared.limits.resources);
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            table,
            limiter: Limiter::new(&shared.limits),
            shared,
            decided,
            custom: HashMap::new(),
            state_undo: HashMap::new(),
            grant_ends: None,
            times_out: None,
            logs: Vec::new(),
            logs_dropped: 0,
            instantiated: None,
            hooks,
            messenger: None,
            chain: Vec::new(),
            loaded_as: None,
        }
    }
}

impl WasiView for HostCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostCtx {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Enforces the memory and table limits, and remembers a refusal so the
/// error can say `memory limit exceeded (requested, limit)` instead of the
/// bare trap the guest turns it into.
pub(crate) struct Limiter {
    memory: u64,
    table_elements: usize,
    pub memory_refused: Option<(u64, u64)>,
    pub table_refused: Option<u64>,
}

impl Limiter {
    fn new(limits: &Limits) -> Self {
        Self {
            memory: limits.memory,
            table_elements: limits.table_elements as usize,
            memory_refused: None,
            table_refused: None,
        }
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory {
            self.memory_refused = Some((desired as u64, self.memory));
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            self.table_refused = Some(self.table_elements as u64);
            return Ok(false);
        }
        Ok(true)
    }
}

/// A token bucket: `rate` tokens a second, at most `rate` banked.
pub(crate) struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: u32) -> Self {
        Self {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

impl crate::bindings::wasi::logging::logging::Host for HostCtx {
    fn log(&mut self, level: Level, context: String, message: String) -> wasmtime::Result<()> {
        let allowed = self
            .shared
            .log_budget
            .lock()
            .map(|mut b| b.take())
            .unwrap_or(false);
        if !allowed {
            self.logs_dropped += 1;
            return Ok(());
        }
        let max = self.shared.limits.log_line_bytes;
        let (context, message) = (cut(context, max), cut(message, max));
        let component = self.shared.name.as_str();
        let level = match level {
            Level::Trace => {
                tracing::trace!(target: "guest", component, context, "{message}");
                "trace"
            }
            Level::Debug => {
                tracing::debug!(target: "guest", component, context, "{message}");
                "debug"
            }
            Level::Info => {
                tracing::info!(target: "guest", component, context, "{message}");
                "info"
            }
            Level::Warn => {
                tracing::warn!(target: "guest", component, context, "{message}");
                "warn"
            }
            Level::Error => {
                tracing::error!(target: "guest", component, context, "{message}");
                "error"
            }
            Level::Critical => {
                tracing::error!(target: "guest", component, context, critical = true, "{message}");
                "critical"
            }
        };
        self.logs.push(LogRecord {
            level,
            context,
            message,
        });
        Ok(())
    }
}

impl crate::bindings::wasi::config::store::Host for HostCtx {
    fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<String>, crate::bindings::wasi::config::store::Error>> {
        let config = &self.shared.config;
        Ok(Ok(config
            .binary_search_by(|(k, _)| k.as_str().cmp(&key))
            .ok()
            .map(|i| config[i].1.clone())))
    }

    fn get_all(
        &mut self,
    ) -> wasmtime::Result<Result<Vec<(String, String)>, crate::bindings::wasi::config::store::Error>>
    {
        Ok(Ok(self.shared.config.clone()))
    }
}

/// A component's key-value store: buckets by name, keys in order. In memory
/// for the life of the prepared component, loaded from and written through
/// to its `StateBackend` when it has one (each call's writes, when the call
/// succeeds).
#[derive(Default)]
pub(crate) struct StateStore {
    inner: Mutex<StateInner>,
    /// Whose turn it is to run a call that may write.
    pub gate: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Default)]
struct StateInner {
    buckets: HashMap<String, BTreeMap<String, Vec<u8>>>,
    bytes: usize,
    keys: usize,
}

impl StateInner {
    /// Store `key` = `value` in `bucket` unless the component's total would
    /// pass `limits`' quotas of bytes (keys and values counted) and keys.
    fn insert_within_quota(
        &mut self,
        limits: &Limits,
        bucket: &str,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), KvError> {
        let quota = limits.state_total_bytes;
        let old = self.buckets.get(bucket).and_then(|b| b.get(&key));
        let is_new = old.is_none();
        let old = old.map_or(0, |v| key.len() + v.len());
        let new_total = self.bytes - old + key.len() + value.len();
        if new_total > quota {
            return Err(KvError::Other(format!(
                "{QUOTA}state quota of {quota} bytes exceeded (would hold {new_total} bytes)"
            )));
        }
        if is_new && self.keys >= limits.state_keys {
            return Err(KvError::Other(format!(
                "{QUOTA}state quota of {} keys reached; delete keys before adding new ones",
                limits.state_keys
            )));
        }
        self.keys += usize::from(is_new);
        self.bytes = new_total;
        self.buckets
            .entry(bucket.to_string())
            .or_default()
            .insert(key, value);
        Ok(())
    }
}

/// A call dropped before it ended (its future cancelled) keeps none of its
/// writes.
impl Drop for HostCtx {
    fn drop(&mut self) {
        if !self.state_undo.is_empty() {
            let undo = std::mem::take(&mut self.state_undo);
            restore(&mut self.shared.state.lock(), undo);
        }
    }
}

/// Put back what a call's writes replaced.
fn restore(inner: &mut StateInner, undo: HashMap<(String, String), Option<Vec<u8>>>) {
    for ((bucket, key), before) in undo {
        if let Some(now) = inner.buckets.get_mut(&bucket).and_then(|b| b.remove(&key)) {
            inner.bytes -= key.len() + now.len();
            inner.keys -= 1;
        }
        if let Some(v) = before {
            inner.bytes += key.len() + v.len();
            inner.keys += 1;
            inner.buckets.entry(bucket).or_default().insert(key, v);
        } else if inner.buckets.get(&bucket).is_some_and(BTreeMap::is_empty) {
            inner.buckets.remove(&bucket);
        }
    }
}

/// An open bucket, as the guest holds it.
pub struct Bucket {
    name: String,
}

const LIST_PAGE: usize = 1000;
const MAX_BUCKETS: usize = 64;

impl StateStore {
    /// Fill the store from what a backend kept (at preparation).
    pub(crate) fn load(&self, entries: Vec<(String, String, Vec<u8>)>) {
        let mut inner = self.lock();
        for (bucket, key, value) in entries {
            inner.bytes += key.len() + value.len();
            inner.keys += 1;
            if let Some(old) = inner
                .buckets
                .entry(bucket)
                .or_default()
                .insert(key.clone(), value)
            {
                inner.bytes -= key.len() + old.len();
                inner.keys -= 1;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StateInner> {
        // Every mutation below is completed before the guard drops; a panic
        // in between cannot happen, so a poisoned lock holds a sound map.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes of keys and values held.
    pub(crate) fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Keys held, in every bucket.
    pub(crate) fn keys(&self) -> usize {
        self.lock().keys
    }
}

impl HostCtx {
    /// Note what `bucket`/`key` held before this call's first write to it.
    fn remember(&mut self, inner: &StateInner, bucket: &str, key: &str) {
        self.state_undo
            .entry((bucket.to_string(), key.to_string()))
            .or_insert_with(|| inner.buckets.get(bucket).and_then(|b| b.get(key)).cloned());
    }

    /// End the call's state transaction: keep its writes (storing them in
    /// the backend) or undo them. A backend that cannot store them undoes
    /// them too, and the call fails.
    pub(crate) fn finish_state(&mut self, keep: bool) -> crate::Result<()> {
        if self.state_undo.is_empty() {
            return Ok(());
        }
        let undo = std::mem::take(&mut self.state_undo);
        let shared = self.shared.clone();
        let mut inner = shared.state.lock();
        if keep {
            let Some(binding) = &shared.state_backend else {
                return Ok(());
            };
            let writes: Vec<(String, String, Option<Vec<u8>>)> = undo
                .keys()
                .map(|(b, k)| {
                    let now = inner.buckets.get(b).and_then(|m| m.get(k)).cloned();
                    (b.clone(), k.clone(), now)
                })
                .collect();
            match binding.backend.commit(&binding.namespace, &writes) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    restore(&mut inner, undo);
                    return Err(crate::Error::Host {
                        component: shared.name.clone(),
                        context: "storing the call's state".into(),
                        source: anyhow::anyhow!(e),
                    });
                }
            }
        }
        restore(&mut inner, undo);
        Ok(())
    }

    fn bucket_name(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<String> {
        Ok(self.table.get(bucket)?.name.clone())
    }

    fn check_key(&self, key: &str) -> Result<(), KvError> {
        let max = self.shared.limits.state_key_bytes;
        if key.len() > max {
            return Err(KvError::Other(format!(
                "key of {} bytes exceeds the limit of {max} bytes",
                key.len()
            )));
        }
        Ok(())
    }

    fn put(&mut self, bucket: &str, key: String, value: Vec<u8>) -> Result<(), KvError> {
        self.check_key(&key)?;
        let limits = &self.shared.limits;
        if value.len() > limits.state_value_bytes {
            return Err(KvError::Other(format!(
                "value of {} bytes exceeds the limit of {} bytes",
                value.len(),
                limits.state_value_bytes
            )));
        }
        let shared = self.shared.clone();
        let mut inner = shared.state.lock();
        self.remember(&inner, bucket, &key);
        inner.insert_within_quota(&shared.limits, bucket, key, value)
    }
}

impl crate::bindings::wasi::keyvalue::store::Host for HostCtx {
    fn open(&mut self, identifier: String) -> wasmtime::Result<Result<Resource<Bucket>, KvError>> {
        {
            let inner = self.shared.state.lock();
            if !inner.buckets.contains_key(&identifier) && inner.buckets.len() >= MAX_BUCKETS {
                return Ok(Err(KvError::Other(format!(
                    "{QUOTA}at most {MAX_BUCKETS} buckets per component"
                ))));
            }
        }
        if identifier.len() > self.shared.limits.state_key_bytes {
            return Ok(Err(KvError::NoSuchStore));
        }
        Ok(Ok(self.table.push(Bucket { name: identifier })?))
    }
}

impl crate::bindings::wasi::keyvalue::store::HostBucket for HostCtx {
    fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, KvError>> {
        let name = self.bucket_name(&bucket)?;
        let inner = self.shared.state.lock();
        Ok(Ok(inner
            .buckets
            .get(&name)
            .and_then(|b| b.get(&key))
            .cloned()))
    }

    fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), KvError>> {
        let name = self.bucket_name(&bucket)?;
        Ok(self.put(&name, key, value))
    }

    fn delete(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), KvError>> {
        let name = self.bucket_name(&bucket)?;
        let shared = self.shared.clone();
        let mut inner = shared.state.lock();
        self.remember(&inner, &name, &key);
        if let Some(v) = inner.buckets.get_mut(&name).and_then(|b| b.remove(&key)) {
            inner.bytes -= key.len() + v.len();
            inner.keys -= 1;
        }
        Ok(Ok(()))
    }

    fn exists(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, KvError>> {
        let name = self.bucket_name(&bucket)?;
        let inner = self.shared.state.lock();
        Ok(Ok(inner
            .buckets
            .get(&name)
            .is_some_and(|b| b.contains_key(&key))))
    }

    fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> wasmtime::Result<Result<KeyResponse, KvError>> {
        let name = self.bucket_name(&bucket)?;
        let inner = self.shared.state.lock();
        let start = cursor.unwrap_or(0) as usize;
        let keys: Vec<String> = inner
            .buckets
            .get(&name)
            .map(|b| b.keys().skip(start).take(LIST_PAGE).cloned().collect())
            .unwrap_or_default();
        let total = inner.buckets.get(&name).map_or(0, |b| b.len());
        let next = start + keys.len();
        Ok(Ok(KeyResponse {
            keys,
            cursor: (next < total).then_some(next as u64),
        }))
    }

    fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl crate::bindings::wasi::keyvalue::atomics::Host for HostCtx {
    fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> wasmtime::Result<Result<u64, KvError>> {
        let name = self.bucket_name(&bucket)?;
        if let Err(e) = self.check_key(&key) {
            return Ok(Err(e));
        }
        // Read, add and write under one lock, so concurrent calls of the same
        // component never lose an increment.
        let shared = self.shared.clone();
        let mut inner = shared.state.lock();
        self.remember(&inner, &name, &key);
        let current = match inner.buckets.get(&name).and_then(|b| b.get(&key)) {
            None => 0,
            Some(v) => match std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
            {
                Some(n) => n,
                None => {
                    return Ok(Err(KvError::Other(format!(
                        "value of `{key}` is not a decimal number"
                    ))));
                }
            },
        };
        let Some(next) = current.checked_add(delta) else {
            return Ok(Err(KvError::Other(format!(
                "incrementing `{key}` overflows u64"
            ))));
        };
        let value = next.to_string().into_bytes();
        if let Err(e) = inner.insert_within_quota(&self.shared.limits, &name, key, value) {
            return Ok(Err(e));
        }
        Ok(Ok(next))
    }
}

impl crate::bindings::wasi::keyvalue::batch::Host for HostCtx {
    fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<(String, Vec<u8>)>>, KvError>> {
        let name = self.bucket_name(&bucket)?;
        let inner = self.shared.state.lock();
        let b = inner.buckets.get(&name);
        // The same key may be asked for many times: cap what one call can
        // make the host copy at the component's whole quota.
        let cap = self.shared.limits.state_total_bytes;
        let mut total = 0usize;
        let mut out = Vec::with_capacity(keys.len().min(LIST_PAGE));
        for k in keys {
            let v = b.and_then(|b| b.get(&k));
            total = total.saturating_add(k.len() + v.map_or(0, Vec::len));
            if total > cap {
                return Ok(Err(KvError::Other(format!(
                    "get-many would return more than the state quota of {cap} bytes; ask for fewer keys"
                ))));
            }
            out.push(v.cloned().map(|v| (k, v)));
        }
        Ok(Ok(out))
    }

    fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), KvError>> {
        let name = self.bucket_name(&bucket)?;
        for (k, v) in key_values {
            if let Err(e) = self.put(&name, k, v) {
                return Ok(Err(e));
            }
        }
        Ok(Ok(()))
    }

    fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), KvError>> {
        let name = self.bucket_name(&bucket)?;
        let shared = self.shared.clone();
        let mut inner = shared.state.lock();
        for key in keys {
            self.remember(&inner, &name, &key);
            if let Some(v) = inner.buckets.get_mut(&name).and_then(|b| b.remove(&key)) {
                inner.bytes -= key.len() + v.len();
                inner.keys -= 1;
            }
        }
        Ok(Ok(()))
    }
}

/// How a quota's refusal starts: the SDK turns a state error that starts
/// so into the typed `quota-exceeded` (`crates/sdk/src/state.rs`).
const QUOTA: &str = "quota exceeded: ";

const NO_REGISTRY: &str = "messaging needs a host with a component registry (`airssys-wasm serve`); this host runs one component";

impl HostCtx {
    /// The messaging gate: a target the grants do not cover is a typed
    /// denial naming the grant that would allow it.
    fn messaging_allowed(&self, op: MessagingOp, target: &str) -> Result<(), ComponentError> {
        let profile = &self.decided.profile;
        let denied = profile
            .messaging_denied
            .iter()
            .any(|g| g.covers(op, target));
        if !denied && profile.messaging.iter().any(|g| g.covers(op, target)) {
            return Ok(());
        }
        let wanted = format!("messaging:{}:{target}", op.name());
        self.shared.audit.record(
            crate::Decision::Denied,
            wanted.clone(),
            target,
            if denied {
                "a messaging denial covers it"
            } else {
                "no messaging grant covers it"
            },
        );
        Err(ComponentError::Denied(
            crate::bindings::airssys::component::types::Capability::SystemCall(wanted),
        ))
    }
}

use airssys_wasm_capability::messaging::Op as MessagingOp;

impl HostCtx {
    /// Hand a message whose grant was checked to the messenger.
    async fn deliver(
        &mut self,
        target: String,
        msg: Message,
        delivery: crate::Delivery,
    ) -> Result<Option<Message>, ComponentError> {
        let Some(messenger) = self.messenger.clone() else {
            return Err(ComponentError::Unavailable(NO_REGISTRY.into()));
        };
        let sender = self
            .loaded_as
            .as_ref()
            .map_or_else(|| self.shared.name.clone(), |i| i.name.clone());
        let mut chain = self.chain.clone();
        chain.push(sender.clone());
        if chain.len() >= crate::HOP_LIMIT {
            return Err(ComponentError::Cycle(format!(
                "hop limit: a message passes {} components at most ({} -> {target})",
                crate::HOP_LIMIT,
                chain.join(" -> ")
            )));
        }
        let message = crate::messaging::with_chain(msg, &chain);
        let envelope = crate::Envelope {
            from: sender,
            chain,
            target,
            delivery,
            message,
        };
        messenger.deliver(envelope).await
    }
}

impl crate::bindings::airssys::component::messaging::Host for HostCtx {
    async fn send(
        &mut self,
        target: String,
        msg: Message,
    ) -> wasmtime::Result<Result<(), ComponentError>> {
        if let Err(e) = self.messaging_allowed(MessagingOp::Send, &target) {
            return Ok(Err(e));
        }
        Ok(self
            .deliver(target, msg, crate::Delivery::Send)
            .await
            .map(|_| ()))
    }

    async fn request(
        &mut self,
        target: String,
        msg: Message,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<Message, ComponentError>> {
        if let Err(e) = self.messaging_allowed(MessagingOp::Request, &target) {
            return Ok(Err(e));
        }
        let timeout = std::time::Duration::from_millis(u64::from(timeout_ms));
        Ok(
            match self
                .deliver(target.clone(), msg, crate::Delivery::Request { timeout })
                .await
            {
                Ok(Some(reply)) => Ok(reply),
                Ok(None) => Err(ComponentError::Failed(format!("{target} gave no answer"))),
                Err(e) => Err(e),
            },
        )
    }

    async fn publish(
        &mut self,
        topic: String,
        msg: Message,
    ) -> wasmtime::Result<Result<(), ComponentError>> {
        if let Err(e) = self.messaging_allowed(MessagingOp::Publish, &topic) {
            return Ok(Err(e));
        }
        Ok(self
            .deliver(topic, msg, crate::Delivery::Publish)
            .await
            .map(|_| ()))
    }
}

impl crate::bindings::airssys::component::types::Host for HostCtx {}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn the_key_quota_refuses_new_keys_but_not_new_values() {
        let limits = Limits::default().state_keys(2);
        let mut s = StateInner::default();
        s.insert_within_quota(&limits, "b", "one".into(), b"1".to_vec())
            .unwrap();
        s.insert_within_quota(&limits, "c", "two".into(), b"2".to_vec())
            .unwrap();
        let Err(KvError::Other(why)) =
            s.insert_within_quota(&limits, "b", "three".into(), b"3".to_vec())
        else {
            panic!("a third key was accepted");
        };
        assert_eq!(
            why,
            "quota exceeded: state quota of 2 keys reached; delete keys before adding new ones"
        );
        s.insert_within_quota(&limits, "b", "one".into(), b"11".to_vec())
            .unwrap();
        assert_eq!((s.keys, s.bytes), (2, 3 + 2 + 3 + 1));
        // A deletion undone by `restore` keeps the count right.
        let mut undo = HashMap::new();
        undo.insert(("b".to_string(), "one".to_string()), None);
        restore(&mut s, undo);
        assert_eq!((s.keys, s.bytes), (1, 4));
        s.insert_within_quota(&limits, "b", "three".into(), b"3".to_vec())
            .unwrap();
    }
}
