//! [`ComponentPre`]: a compiled component linked and pre-instantiated for
//! hosting, and every way to call it. Each call gets a fresh [`Store`] from
//! the template, with its limits, an epoch deadline and bounded output
//! capture; nothing a call does outlives it except `state`.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tokio::sync::Semaphore;
use wasmtime::component::{ComponentExportIndex, InstancePre, Val};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::bindings::airssys::component::types::{
    ComponentError, ComponentMetadata, HealthStatus, Message,
};
use crate::component::{Compiled, ComponentInfo, WorldKind};
use crate::contract;
use crate::error::{Error, Observed, Result, classify};
use crate::host::{HostCtx, LogRecord, Shared};
use crate::output::OutputCapture;
use crate::runtime::Runtime;
use crate::{Limits, capability_from_wit, dynamic};

/// How much of stderr goes with an error (a panic message and its context).
const STDERR_TAIL: usize = 4 << 10;

/// How to prepare a component.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct PrepareOptions {
    /// Limits for every call (default: [`Limits::default`]).
    pub limits: Option<Limits>,
    /// Configuration served through `wasi:config/store` and passed to
    /// `init`.
    pub config: Vec<(String, String)>,
    /// What the operator grants and denies.
    pub grants: crate::Grants,
    /// Where the component's state is kept beyond the process: a backend
    /// and the component's namespace in it (default: memory only).
    pub state: Option<(std::sync::Arc<dyn crate::StateBackend>, String)>,
    /// Capabilities the component requires besides those its metadata
    /// declares (from its manifest). A component that declares nothing
    /// but is given these is held to them: grants beyond them are not
    /// given.
    pub requires: Vec<crate::Capability>,
}

impl std::fmt::Debug for PrepareOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrepareOptions")
            .field("limits", &self.limits)
            .field("config", &self.config)
            .field("grants", &self.grants)
            .field("state", &self.state.as_ref().map(|(_, ns)| ns))
            .field("requires", &self.requires)
            .finish()
    }
}

impl PrepareOptions {
    /// Set the limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Set the grants and denials.
    pub fn grants(mut self, grants: crate::Grants) -> Self {
        self.grants = grants;
        self
    }

    /// Keep the component's state in `backend`, under `namespace`.
    pub fn state(
        mut self,
        backend: std::sync::Arc<dyn crate::StateBackend>,
        namespace: impl Into<String>,
    ) -> Self {
        self.state = Some((backend, namespace.into()));
        self
    }

    /// Add required capabilities (from a manifest).
    pub fn requires(mut self, requires: Vec<crate::Capability>) -> Self {
        self.requires = requires;
        self
    }

    /// Set the configuration pairs.
    pub fn config(mut self, config: Vec<(String, String)>) -> Self {
        self.config = config;
        self
    }
}

/// The result of a call, with what the guest wrote on the side.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct CallOutput<T> {
    /// What the function returned.
    pub value: T,
    /// The tail of what the guest wrote to stdout (at most
    /// [`Limits::output_bytes`]).
    #[serde(serialize_with = "lossy")]
    pub stdout: Vec<u8>,
    /// The tail of what the guest wrote to stderr.
    #[serde(serialize_with = "lossy")]
    pub stderr: Vec<u8>,
    /// How many bytes the guest wrote to stdout in all (more than `stdout`
    /// holds when the cap cut it).
    pub stdout_bytes: u64,
    /// How many bytes the guest wrote to stderr in all.
    pub stderr_bytes: u64,
    /// Log lines, in order.
    pub logs: Vec<LogRecord>,
    /// Log lines dropped by the rate limit.
    pub logs_dropped: u64,
    /// Where the time went.
    pub timings: Timings,
}

fn lossy<S: serde::Serializer>(b: &[u8], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(b))
}

/// Where the time of one call went.
#[derive(Debug, Clone, Copy, Default, Serialize)]
#[non_exhaustive]
pub struct Timings {
    /// Making the store and the instance, in microseconds.
    pub instantiate_us: u64,
    /// Running the function, in microseconds.
    pub call_us: u64,
}

/// What a component exports, resolved once at preparation.
pub(crate) enum Kind {
    Airssys {
        execute: ComponentExportIndex,
        lifecycle: Option<Lifecycle>,
    },
    HttpProxy(ProxyPre<HostCtx>),
    Command(CommandPre<HostCtx>),
    Library,
}

pub(crate) struct Lifecycle {
    pub(crate) init: ComponentExportIndex,
    pub(crate) health: ComponentExportIndex,
    metadata: ComponentExportIndex,
    migrate: Option<ComponentExportIndex>,
    pub(crate) shutdown: Option<ComponentExportIndex>,
}

/// A component ready to be called: compiled, linked, pre-instantiated.
/// Cheap to clone; calls may run concurrently up to
/// [`Limits::max_concurrent`].
#[derive(Clone)]
pub struct ComponentPre {
    pub(crate) inner: Arc<PreInner>,
}

pub(crate) struct PreInner {
    pub(crate) runtime: Runtime,
    compiled: Compiled,
    pub(crate) pre: InstancePre<HostCtx>,
    pub(crate) kind: Kind,
    pub(crate) shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    /// Every exported function, listed once: dynamic calls look names up
    /// here instead of walking the component's type on each call.
    functions: Vec<String>,
}

/// An exported function found by name, with its types.
struct Resolved {
    name: String,
    index: ComponentExportIndex,
    params: Vec<(String, wasmtime::component::types::Type)>,
    results: Vec<wasmtime::component::types::Type>,
}

/// Where a store's stdio goes.
pub(crate) enum Stdio {
    /// Captured, bounded (handler and dynamic calls).
    Capture,
    /// The process's own stdio, with arguments (`run`, like `wasmtime run`).
    Inherit { args: Vec<String> },
}

impl ComponentPre {
    pub(crate) async fn new(
        runtime: Runtime,
        compiled: Compiled,
        options: PrepareOptions,
    ) -> Result<Self> {
        let info = compiled.info.clone();
        let name = display_name(&info);
        let limits = options
            .limits
            .clone()
            .unwrap_or_else(|| runtime.default_limits());
        check_limits(&runtime, &name, &limits)?;
        let component = &compiled.component;
        let pre = runtime
            .linker()
            .instantiate_pre(component)
            .map_err(|e| link_error(&name, e))?;
        let missing = |wanted: &str| Error::MissingExport {
            component: name.clone(),
            wanted: wanted.to_string(),
            available: info.exports.clone(),
        };
        let kind = match info.kind {
            WorldKind::Airssys => {
                let handler = crate::component::handler_export(&info.exports).unwrap_or_default();
                let index = |iface: &str, f: &str| -> Result<ComponentExportIndex> {
                    let inst = component
                        .get_export_index(None, iface)
                        .ok_or_else(|| missing(iface))?;
                    component
                        .get_export_index(Some(&inst), f)
                        .ok_or_else(|| missing(&format!("{iface}#{f}")))
                };
                let execute = index(handler, "execute")?;
                let lifecycle = match crate::component::lifecycle_export(&info.exports) {
                    None => None,
                    Some(l) => Some(Lifecycle {
                        init: index(l, "init")?,
                        health: index(l, "health")?,
                        metadata: index(l, "metadata")?,
                        migrate: index(l, "migrate").ok(),
                        shutdown: index(l, "shutdown").ok(),
                    }),
                };
                Kind::Airssys { execute, lifecycle }
            }
            WorldKind::HttpProxy => {
                Kind::HttpProxy(ProxyPre::new(pre.clone()).map_err(|e| link_error(&name, e))?)
            }
            WorldKind::Command => {
                Kind::Command(CommandPre::new(pre.clone()).map_err(|e| link_error(&name, e))?)
            }
            WorldKind::Library => Kind::Library,
        };
        let request = runtime.request(&name, &info, &options);
        let audit = crate::audit::Audit::new(
            runtime.inner.auditor.clone(),
            &info.name,
            info.metadata.as_ref().map(|m| m.version.as_str()),
        );
        let authority = request
            .decide(std::time::SystemTime::now())
            .inspect_err(|e| audit.refused(e))?;
        let permits = Arc::new(Semaphore::new(limits.max_concurrent as usize));
        let keeps_state = info.imports.iter().any(|i| i.starts_with("wasi:keyvalue/"));
        let state_backend = options
            .state
            .map(|(backend, namespace)| crate::host::StateBinding { backend, namespace });
        let state = match &state_backend {
            Some(b) => runtime.kept_state(b).map_err(|e| Error::Host {
                component: name.clone(),
                context: "loading its state".into(),
                source: anyhow::anyhow!(e),
            })?,
            None => Arc::default(),
        };
        let shared = Arc::new(Shared::new(
            name,
            request,
            authority,
            audit,
            limits,
            options.config,
            keeps_state,
            state,
            state_backend,
        ));
        let functions = crate::component::exported_functions(runtime.engine(), component);
        let this = Self {
            inner: Arc::new(PreInner {
                runtime,
                compiled,
                pre,
                kind,
                shared,
                permits,
                functions,
            }),
        };
        this.probe().await?;
        Ok(this)
    }

    /// What the component's bytes say about it.
    pub fn info(&self) -> &ComponentInfo {
        &self.inner.compiled.info
    }

    /// The version of our contract the component was built against (the
    /// current one for components of other worlds, which do not use it).
    pub(crate) fn contract(&self) -> contract::Version {
        crate::component::handler_export(&self.inner.compiled.info.exports)
            .map_or(contract::Version::V2, contract::Version::of_export)
    }

    /// The version of our contract its lifecycle export was built against
    /// (a composition may export a handler and a lifecycle of different
    /// versions).
    pub(crate) fn lifecycle_contract(&self) -> contract::Version {
        crate::component::lifecycle_export(&self.inner.compiled.info.exports)
            .map_or(contract::Version::V2, contract::Version::of_export)
    }

    /// The name used in errors and logs.
    pub fn name(&self) -> &str {
        &self.inner.shared.name
    }

    /// What the component may do: its required capabilities that were
    /// granted (or its grants, when it declares nothing), the ambient set,
    /// less what was denied.
    pub fn authority(&self) -> &crate::Authority {
        &self.inner.shared.decided.authority
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> &Limits {
        &self.inner.shared.limits
    }

    /// Bytes held in this component's `state`.
    pub fn state_bytes(&self) -> usize {
        self.inner.shared.state.bytes()
    }

    /// Keys held in this component's `state`.
    pub fn state_keys(&self) -> usize {
        self.inner.shared.state.keys()
    }

    /// Calls running now, each in its own instance (a proxy component's
    /// call runs until its response body is sent).
    pub fn running(&self) -> usize {
        (self.limits().max_concurrent as usize)
            .saturating_sub(self.inner.permits.available_permits())
    }

    /// Fuel this preparation's calls consumed in all: counted when the
    /// runtime meters fuel ([`RuntimeConfig::fuel`](crate::RuntimeConfig::fuel)),
    /// 0 otherwise.
    pub fn fuel_consumed(&self) -> u64 {
        self.inner
            .shared
            .fuel_consumed
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the component imports a state interface (`wasi:keyvalue`).
    pub fn keeps_state(&self) -> bool {
        self.inner.shared.state_gate.is_some()
    }

    /// Every exported function, as `name` or `interface#name`.
    pub fn functions(&self) -> &[String] {
        &self.inner.functions
    }

    /// Run `metadata` and `init` once in a probe instance.
    async fn probe(&self) -> Result<()> {
        let Kind::Airssys {
            lifecycle: Some(l), ..
        } = &self.inner.kind
        else {
            return Ok(());
        };
        let (metadata_idx, init_idx) = (l.metadata, l.init);
        let v = self.lifecycle_contract();
        let config = self.inner.shared.config.clone();
        let keep = |r: &(ComponentMetadata, Result<(), ComponentError>)| r.1.is_ok();
        let (metadata, init) = self
            .with_instance(keep, async move |store, instance| {
                let metadata = contract::metadata(v, store, instance, &metadata_idx).await?;
                let init = contract::init(v, store, instance, &init_idx, config).await?;
                Ok((metadata, init))
            })
            .await?
            .value;
        if let Err(error) = init {
            return Err(Error::InitFailed {
                component: self.name().to_string(),
                error,
            });
        }
        self.check_metadata(&metadata)
    }

    fn check_metadata(&self, runtime: &ComponentMetadata) -> Result<()> {
        let info = self.info();
        let mismatch = |field, binary: &str, runtime: &str| Error::MetadataMismatch {
            component: self.name().to_string(),
            field,
            binary: binary.to_string(),
            runtime: runtime.to_string(),
        };
        if let Some(embedded) = &info.metadata {
            if embedded.name != runtime.name {
                return Err(mismatch("name", &embedded.name, &runtime.name));
            }
            if embedded.version != runtime.version {
                return Err(mismatch("version", &embedded.version, &runtime.version));
            }
            if embedded.description != runtime.description {
                return Err(mismatch(
                    "description",
                    &embedded.description,
                    &runtime.description,
                ));
            }
        }
        let said: Vec<String> = runtime
            .required_capabilities
            .iter()
            .map(|c| capability_from_wit(c).to_string())
            .collect();
        if (info.metadata.is_some() || !info.capabilities.is_empty()) && said != info.capabilities {
            return Err(mismatch(
                "required capabilities",
                &info.capabilities.join(", "),
                &said.join(", "),
            ));
        }
        Ok(())
    }

    /// Call `handler.execute` with `input` in a fresh instance.
    pub async fn execute(&self, input: Message) -> Result<CallOutput<Message>> {
        let Kind::Airssys { execute, .. } = &self.inner.kind else {
            return Err(self.not_a_handler());
        };
        let idx = *execute;
        let v = self.contract();
        let out = self
            .with_instance(Result::is_ok, async move |store, instance| {
                // Messages this call sends carry the chain it came through.
                store.data_mut().chain = crate::messaging::chain_of(&input.headers);
                contract::execute(v, store, instance, &idx, input).await
            })
            .await?;
        out.answered(self.name())
    }

    /// Call `lifecycle.health` in a fresh instance.
    pub async fn health(&self) -> Result<HealthStatus> {
        let Kind::Airssys {
            lifecycle: Some(l), ..
        } = &self.inner.kind
        else {
            return Err(self.not_a_handler());
        };
        let idx = l.health;
        let v = self.lifecycle_contract();
        Ok(self
            .with_instance(
                |_| true,
                async move |store, instance| contract::health(v, store, instance, &idx).await,
            )
            .await?
            .value)
    }

    /// Call `lifecycle.migrate(from_version)` in a fresh instance: its
    /// state writes are kept when it returns `Ok`, like a call's. A
    /// component without a lifecycle (or without `migrate`) has nothing to
    /// migrate: `Ok`.
    pub async fn migrate(&self, from_version: &str) -> Result<()> {
        let Kind::Airssys {
            lifecycle: Some(Lifecycle {
                migrate: Some(idx), ..
            }),
            ..
        } = &self.inner.kind
        else {
            return Ok(());
        };
        let idx = *idx;
        let v = self.lifecycle_contract();
        let from = from_version.to_string();
        let out = self
            .with_instance(Result::is_ok, async move |store, instance| {
                contract::migrate(v, store, instance, &idx, from).await
            })
            .await?;
        out.value.map_err(|error| Error::Guest {
            component: self.name().to_string(),
            error,
        })
    }

    /// Call `lifecycle.metadata` in a fresh instance.
    pub async fn metadata(&self) -> Result<ComponentMetadata> {
        let Kind::Airssys {
            lifecycle: Some(l), ..
        } = &self.inner.kind
        else {
            return Err(self.not_a_handler());
        };
        let idx = l.metadata;
        let v = self.lifecycle_contract();
        Ok(self
            .with_instance(
                |_| true,
                async move |store, instance| contract::metadata(v, store, instance, &idx).await,
            )
            .await?
            .value)
    }

    /// Call any exported function by name (`interface#function`, or a short
    /// form when unambiguous) with JSON arguments: an array (positional) or an
    /// object keyed by parameter name. Returns the result as JSON (`null`
    /// for a function without results). See `docs/json-mapping.md`.
    pub async fn call_json(
        &self,
        function: &str,
        args: &serde_json::Value,
    ) -> Result<CallOutput<serde_json::Value>> {
        let Resolved {
            name: full,
            index,
            params,
            results,
        } = self.resolve_function(function)?;
        let vals =
            dynamic::json_args(&full, &params, args).map_err(|reason| Error::InvalidArguments {
                function: full.clone(),
                reason,
            })?;
        let out = self.call_vals(index, vals, results.len()).await?;
        let value = match out.value.as_slice() {
            [] => serde_json::Value::Null,
            [one] => dynamic::val_to_json(one),
            many => serde_json::Value::Array(many.iter().map(dynamic::val_to_json).collect()),
        };
        Ok(out.map(|_| value))
    }

    /// Call an exported function given as WAVE text, `name(arg, ...)`, the
    /// form `wasmtime run --invoke` takes. Returns the results as WAVE text.
    pub async fn call_wave(&self, call: &str) -> Result<CallOutput<String>> {
        use wasmtime::component::wasm_wave::untyped::UntypedFuncCall;
        let parsed = UntypedFuncCall::parse(call).map_err(|e| Error::InvalidArguments {
            function: call.to_string(),
            reason: format!("not a WAVE function call (expected `name(arg, ...)`): {e}"),
        })?;
        let Resolved {
            name: full,
            index,
            params,
            results,
        } = self.resolve_function(parsed.name())?;
        let types: Vec<_> = params.iter().map(|(_, t)| t.clone()).collect();
        let vals: Vec<Val> =
            parsed
                .to_wasm_params(&types)
                .map_err(|e| Error::InvalidArguments {
                    function: full.clone(),
                    reason: e.to_string(),
                })?;
        let out = self.call_vals(index, vals, results.len()).await?;
        let mut text = Vec::new();
        for v in &out.value {
            text.push(v.to_wave().map_err(|e| Error::Unsupported {
                component: self.name().to_string(),
                reason: format!("{e:#}"),
            })?);
        }
        Ok(out.map(|_| text.join(", ")))
    }

    async fn call_vals(
        &self,
        index: ComponentExportIndex,
        params: Vec<Val>,
        n: usize,
    ) -> Result<CallOutput<Vec<Val>>> {
        self.with_instance(
            |_| true,
            async move |store, instance| {
                let func = instance
                    .get_func(&mut *store, index)
                    .ok_or_else(|| wasmtime::format_err!("export is not a function"))?;
                let mut results = vec![Val::Bool(false); n];
                func.call_async(&mut *store, &params, &mut results).await?;
                Ok(results)
            },
        )
        .await
    }

    /// Find a function and its types; refuse resources up front.
    fn resolve_function(&self, wanted: &str) -> Result<Resolved> {
        let component = &self.inner.compiled.component;
        let all = self.functions();
        let full = dynamic::match_function(all, wanted).map_err(|candidates| {
            if candidates.is_empty() {
                Error::MissingExport {
                    component: self.name().to_string(),
                    wanted: format!("a function `{wanted}`"),
                    available: all.to_vec(),
                }
            } else {
                Error::AmbiguousFunction {
                    component: self.name().to_string(),
                    name: wanted.to_string(),
                    candidates,
                }
            }
        })?;
        let (iface, f) = match full.split_once('#') {
            Some((i, f)) => (Some(i), f),
            None => (None, full.as_str()),
        };
        let parent = iface.and_then(|i| component.get_export_index(None, i));
        let (item, index) =
            component
                .get_export(parent.as_ref(), f)
                .ok_or_else(|| Error::MissingExport {
                    component: self.name().to_string(),
                    wanted: full.clone(),
                    available: all.to_vec(),
                })?;
        let wasmtime::component::types::ComponentItem::ComponentFunc(ty) = item else {
            return Err(Error::MissingExport {
                component: self.name().to_string(),
                wanted: full,
                available: all.to_vec(),
            });
        };
        let params: Vec<_> = ty.params().map(|(n, t)| (n.to_string(), t)).collect();
        let results: Vec<_> = ty.results().collect();
        for t in params.iter().map(|(_, t)| t).chain(results.iter()) {
            if let Some(resource) = dynamic::find_resource(t) {
                return Err(Error::Unsupported {
                    component: self.name().to_string(),
                    reason: format!(
                        "`{full}` takes or returns a resource ({resource}); resources cannot be passed as JSON or WAVE, \
                         call a function that works on plain values"
                    ),
                });
            }
        }
        Ok(Resolved {
            name: full,
            index,
            params,
            results,
        })
    }

    /// Run a `wasi:cli/command` component like `wasmtime run`: `args` become
    /// its arguments (the first is the program name), stdio is the
    /// process's. Returns the exit status.
    pub async fn run(&self, args: Vec<String>) -> Result<i32> {
        let Kind::Command(command) = &self.inner.kind else {
            return Err(Error::Unsupported {
                component: self.name().to_string(),
                reason: format!(
                    "its world is {}, not wasi:cli/command; {}",
                    self.info().kind,
                    match self.info().kind {
                        WorldKind::HttpProxy =>
                            "send it a request with `airssys-wasm call FILE --path /`",
                        _ => "use `airssys-wasm call` for handlers and functions",
                    }
                ),
            });
        };
        let command = command.clone();
        let out = self
            .with_store(Stdio::Inherit { args }, Result::is_ok, async move |store| {
                let cmd = command.instantiate_async(&mut *store).await?;
                cmd.wasi_cli_run().call_run(&mut *store).await
            })
            .await;
        match out {
            Ok(o) => Ok(if o.value.is_ok() { 0 } else { 1 }),
            Err(Error::Exit { code, .. }) => Ok(code),
            Err(e) => Err(e),
        }
    }

    /// Handle one HTTP request with a `wasi:http/proxy` component in a fresh
    /// store, as `wasmtime serve` does.
    pub async fn handle_http<B>(
        &self,
        request: hyper::Request<B>,
    ) -> Result<hyper::Response<wasmtime_wasi_http::p2::body::HyperOutgoingBody>>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        use wasmtime_wasi_http::WasiHttpView;
        use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
        let Kind::HttpProxy(proxy) = &self.inner.kind else {
            return Err(Error::Unsupported {
                component: self.name().to_string(),
                reason: format!("its world is {}, not wasi:http/proxy", self.info().kind),
            });
        };
        let permit = self.permit()?;
        let state_turn = self.state_turn().await?;
        let name = self.name().to_string();
        let host_err = |context: &str, e: wasmtime::Error| Error::Host {
            component: name.clone(),
            context: context.to_string(),
            source: e.into(),
        };
        let (mut store, _, stderr) = self.new_store(Stdio::Capture)?;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)
            .map_err(|e| host_err("bad request", e))?;
        let out = store
            .data_mut()
            .http()
            .new_response_outparam(sender)
            .map_err(|e| host_err("bad request", e))?;
        let proxy = proxy.clone();
        let limits = self.limits().clone();
        let component = name.clone();
        let audit = self.inner.shared.audit.clone();
        let shared = self.inner.shared.clone();
        let metered = self.inner.runtime.config().fuel;
        // The guest may keep running after it has sent the response head
        // (streaming the body), so it runs in its own task, holding the
        // permit until it ends.
        let task = tokio::spawn(async move {
            let _permit = permit;
            let _state_turn = state_turn;
            let deadline = earlier(store.data().times_out, store.data().grant_ends);
            let run = async {
                let p = proxy.instantiate_async(&mut store).await?;
                p.wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
            };
            let r = match deadline {
                Some(at) => tokio::time::timeout_at(at.into(), run).await,
                None => Ok(run.await),
            };
            shared.count_fuel(&store, metered);
            let ok = matches!(r, Ok(Ok(())));
            if let Err(e) = store.data_mut().finish_state(ok) {
                return Err(stopped(&audit, e));
            }
            let e = match r {
                Ok(Ok(())) => {
                    audit.flush();
                    return Ok(());
                }
                Ok(Err(e)) => match classify(&component, e, observed(&store, &stderr), &limits) {
                    Error::Timeout { .. } if let Some(ended) = grant_ended(&component, &store) => {
                        ended
                    }
                    e => e,
                },
                Err(_) => grant_ended(&component, &store).unwrap_or(Error::Timeout {
                    component,
                    timeout: limits.timeout,
                }),
            };
            Err(stopped(&audit, e))
        });
        match receiver.await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(code)) => Err(Error::Host {
                component: name.clone(),
                context: "the component answered with an HTTP error".into(),
                source: anyhow::anyhow!("{code:?}"),
            }),
            Err(_) => match task.await {
                Ok(Err(e)) => Err(e),
                Ok(Ok(())) => Err(Error::Host {
                    component: name.clone(),
                    context: "the component returned without sending a response".into(),
                    source: anyhow::anyhow!("response-outparam::set was never called"),
                }),
                Err(join) => Err(Error::Host {
                    component: name.clone(),
                    context: "the request task failed".into(),
                    source: join.into(),
                }),
            },
        }
    }

    pub(crate) fn not_a_handler(&self) -> Error {
        Error::Unsupported {
            component: self.name().to_string(),
            reason: format!(
                "its world is {}, not an airssys:component handler; {}",
                self.info().kind,
                match self.info().kind {
                    WorldKind::Command => "use `run`",
                    WorldKind::HttpProxy =>
                        "send it HTTP requests (`airssys-wasm call FILE --path /`)",
                    _ => "call one of its functions by name",
                }
            ),
        }
    }

    fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit> {
        self.inner
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::Overloaded {
                component: self.name().to_string(),
                reason: format!(
                    "{} calls already running (max_concurrent)",
                    self.limits().max_concurrent
                ),
            })
    }

    /// A fresh store with this component's limits and a deadline.
    pub(crate) fn new_store(
        &self,
        stdio: Stdio,
    ) -> Result<(Store<HostCtx>, Option<OutputCapture>, Option<OutputCapture>)> {
        let shared = &self.inner.shared;
        let limits = &shared.limits;
        let decided = shared.decided()?;
        let profile = &decided.profile;
        let mut wasi = WasiCtxBuilder::new();
        // Everything below is deny by content: what is not granted is
        // absent (no variables, no stdin, a sink for output), never unlinked.
        if !profile.env.is_empty() {
            wasi.envs(&profile.env);
        }
        // Granted directories were opened at preparation; the guest gets
        // them through our `wasi:filesystem/preopens` (runtime.rs).
        // Sockets are checked one operation at a time against the grants
        // (and refused, audited, without any); name lookup is its own grant
        // (a channel for leaking data).
        let net = profile.net.clone();
        wasi.allow_tcp(true)
            .allow_udp(true)
            .socket_addr_check(move |addr, use_| {
                let net = net.clone();
                Box::pin(async move { net.socket(addr, use_).await })
            })
            .allow_ip_name_lookup(profile.dns);
        if !profile.clock {
            wasi.wall_clock(crate::policy::FixedWallClock)
                .monotonic_clock(crate::policy::LogicalClock::default());
        }
        if !profile.random {
            wasi.secure_random(crate::policy::seeded_rng(0))
                .insecure_random(crate::policy::seeded_rng(1))
                .insecure_random_seed(0);
        }
        let (out_ok, err_ok) = (profile.stdout, profile.stderr);
        let (stdout, stderr) = match stdio {
            Stdio::Capture => {
                let o = out_ok.then(|| OutputCapture::new(limits.output_bytes));
                let e = err_ok.then(|| OutputCapture::new(limits.output_bytes));
                if let Some(o) = &o {
                    wasi.stdout(o.clone());
                }
                if let Some(e) = &e {
                    wasi.stderr(e.clone());
                }
                (o, e)
            }
            Stdio::Inherit { args } => {
                if profile.args {
                    wasi.args(&args);
                } else if let Some(program) = args.first() {
                    wasi.args(std::slice::from_ref(program));
                }
                if profile.stdin {
                    wasi.inherit_stdin();
                }
                if out_ok {
                    wasi.inherit_stdout();
                }
                if err_ok {
                    wasi.inherit_stderr();
                }
                (None, None)
            }
        };
        // A grant that ends during the call ends the call: the deadline is
        // the earlier of the timeout and that end.
        let grant_ends = decided.authority.next_expiry().map(|t| {
            Instant::now()
                + t.duration_since(std::time::SystemTime::now())
                    .unwrap_or_default()
        });
        let times_out = limits.timeout_at();
        let hooks = crate::net::OutgoingHttp {
            net: profile.net.clone(),
            tls: self.inner.runtime.inner.tls.clone(),
            deadline: earlier(times_out, grant_ends),
        };
        let mut ctx = HostCtx::new(wasi.build(), shared.clone(), decided.clone(), hooks);
        ctx.messenger
            .clone_from(&self.inner.runtime.config().messenger);
        if ctx.messenger.is_some() {
            ctx.loaded_as = Some(self.inner.compiled.info.clone());
        }
        ctx.grant_ends = grant_ends;
        ctx.times_out = times_out;
        for (provider, params) in &profile.custom {
            match provider.0.store_state(params) {
                Ok(state) => {
                    ctx.custom.insert(provider.name().to_string(), state);
                }
                // Accepted at preparation; a provider that changes its mind
                // leaves its functions without state, which they report.
                Err(e) => {
                    tracing::warn!(provider = provider.name(), error = %e, "custom capability state")
                }
            }
        }
        let mut store = Store::new(self.inner.runtime.engine(), ctx);
        store.limiter(|c| &mut c.limiter);
        if self.inner.runtime.config().fuel {
            // A fuel engine traps at zero fuel: a component without a budget
            // of its own runs unmetered. `set_fuel` fails only on an engine
            // without fuel, which this branch excludes.
            let _ = store.set_fuel(limits.fuel.unwrap_or(u64::MAX));
        }
        store.set_epoch_deadline(1);
        // The deadline is read from the store: a long-lived instance's
        // store gets a new one for each call.
        store.epoch_deadline_callback(|ctx| match ctx.data().deadline() {
            Some(deadline) if Instant::now() >= deadline => Ok(UpdateDeadline::Interrupt),
            _ => Ok(UpdateDeadline::Yield(1)),
        });
        Ok((store, stdout, stderr))
    }

    /// Instantiate in a fresh store (capturing stdio) and run `f` on the
    /// instance.
    async fn with_instance<T, F>(&self, keep: fn(&T) -> bool, f: F) -> Result<CallOutput<T>>
    where
        F: AsyncFnOnce(&mut Store<HostCtx>, &wasmtime::component::Instance) -> wasmtime::Result<T>,
    {
        let pre = &self.inner.pre;
        self.with_store(Stdio::Capture, keep, async move |store| {
            let instance = pre.instantiate_async(&mut *store).await?;
            store.data_mut().instantiated = Some(Instant::now());
            f(store, &instance).await
        })
        .await
    }

    /// Run `f` on a fresh store, under the timeout and the concurrency cap,
    /// classifying every failure. The call's state writes are kept when it
    /// ends and `keep` says its result is a success, and undone otherwise
    /// (a trap, a timeout, an error returned).
    async fn with_store<T, F>(
        &self,
        stdio: Stdio,
        keep: fn(&T) -> bool,
        f: F,
    ) -> Result<CallOutput<T>>
    where
        F: AsyncFnOnce(&mut Store<HostCtx>) -> wasmtime::Result<T>,
    {
        let _permit = self.permit()?;
        // Calls of a component that keeps state run one at a time, so each
        // call's writes are kept or undone as a unit.
        let _state_turn = self.state_turn().await?;
        let start = Instant::now();
        let (mut store, stdout, stderr) = self.new_store(stdio)?;
        self.run_on(&mut store, (&stdout, &stderr), start, keep, f)
            .await
    }

    /// Run `f` on `store` until its deadline: the call's state writes kept
    /// or undone by `keep`, every failure classified, the output taken.
    pub(crate) async fn run_on<T, F>(
        &self,
        store: &mut Store<HostCtx>,
        (stdout, stderr): (&Option<OutputCapture>, &Option<OutputCapture>),
        start: Instant,
        keep: fn(&T) -> bool,
        f: F,
    ) -> Result<CallOutput<T>>
    where
        F: AsyncFnOnce(&mut Store<HostCtx>) -> wasmtime::Result<T>,
    {
        let limits = &self.inner.shared.limits;
        let deadline = store.data().deadline();
        let result = {
            let run = f(&mut *store);
            match deadline {
                Some(at) => tokio::time::timeout_at(at.into(), run)
                    .await
                    .map_err(|_| ()),
                None => Ok(run.await),
            }
        };
        self.inner
            .shared
            .count_fuel(store, self.inner.runtime.config().fuel);
        let audit = &self.inner.shared.audit;
        // A call that does not end well leaves no state behind.
        if !matches!(result, Ok(Ok(_))) {
            let _ = store.data_mut().finish_state(false);
        }
        let value = match result {
            Err(()) => {
                let e = self.grant_ended(store).unwrap_or_else(|| Error::Timeout {
                    component: self.name().to_string(),
                    timeout: limits.timeout,
                });
                return Err(stopped(audit, e));
            }
            Ok(Err(e)) => {
                let e = match classify(self.name(), e, observed(store, stderr), limits) {
                    Error::Timeout { .. } if let Some(ended) = self.grant_ended(store) => ended,
                    e => e,
                };
                return Err(stopped(audit, e));
            }
            Ok(Ok(v)) => v,
        };
        store.data_mut().finish_state(keep(&value))?;
        audit.flush();
        let end = Instant::now();
        let (stdout, stdout_bytes) = stdout.as_ref().map(|c| c.take()).unwrap_or_default();
        let (stderr, stderr_bytes) = stderr.as_ref().map(|c| c.take()).unwrap_or_default();
        let ctx = store.data_mut();
        let instantiated = ctx.instantiated.unwrap_or(start);
        Ok(CallOutput {
            value,
            stdout,
            stderr,
            stdout_bytes,
            stderr_bytes,
            logs: std::mem::take(&mut ctx.logs),
            logs_dropped: ctx.logs_dropped,
            timings: Timings {
                instantiate_us: instantiated.duration_since(start).as_micros() as u64,
                call_us: end.duration_since(instantiated).as_micros() as u64,
            },
        })
    }
}

impl CallOutput<std::result::Result<Message, ComponentError>> {
    /// The answer of a `handler.execute` call: the message, or the
    /// component's own error.
    pub(crate) fn answered(self, component: &str) -> Result<CallOutput<Message>> {
        self.try_map(|value| {
            value.map_err(|error| Error::Guest {
                component: component.to_string(),
                error,
            })
        })
    }
}

impl<T> CallOutput<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> CallOutput<U> {
        let Ok(out) = self.try_map(|v| Ok::<_, std::convert::Infallible>(f(v)));
        out
    }

    /// The same output with its value passed through `f`, or `f`'s error.
    fn try_map<U, E>(
        self,
        f: impl FnOnce(T) -> std::result::Result<U, E>,
    ) -> std::result::Result<CallOutput<U>, E> {
        Ok(CallOutput {
            value: f(self.value)?,
            stdout: self.stdout,
            stderr: self.stderr,
            stdout_bytes: self.stdout_bytes,
            stderr_bytes: self.stderr_bytes,
            logs: self.logs,
            logs_dropped: self.logs_dropped,
            timings: self.timings,
        })
    }
}

/// The earlier of two optional instants.
fn earlier(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl ComponentPre {
    /// Wait for this component's turn to run a call that may write state
    /// (no wait for one that imports no state interface). The wait is
    /// bounded by the call's timeout.
    pub(crate) async fn state_turn(&self) -> Result<Option<tokio::sync::OwnedMutexGuard<()>>> {
        let Some(gate) = &self.inner.shared.state_gate else {
            return Ok(None);
        };
        let limits = &self.inner.shared.limits;
        let wait = gate.clone().lock_owned();
        match limits.timeout_at() {
            None => Ok(Some(wait.await)),
            Some(at) => tokio::time::timeout_at(at.into(), wait)
                .await
                .map(Some)
                .map_err(|_| Error::Overloaded {
                    component: self.name().to_string(),
                    reason: format!(
                        "another call was still running after {} (calls of a component that keeps state run one at a time)",
                        humantime::format_duration(limits.timeout)
                    ),
                }),
        }
    }

    /// The error of a call stopped because a grant it held ended: the
    /// grant's end came, and came before the call's own deadline.
    fn grant_ended(&self, store: &Store<HostCtx>) -> Option<Error> {
        grant_ended(self.name(), store)
    }
}

fn grant_ended(name: &str, store: &Store<HostCtx>) -> Option<Error> {
    let ctx = store.data();
    let ends = ctx.grant_ends?;
    if Instant::now() < ends || ctx.times_out.is_some_and(|t| t < ends) {
        return None;
    }
    let cap = ctx.decided.authority.expiring()?;
    Some(Error::NotGranted {
        component: name.to_string(),
        capability: format!("{cap} (its grant ended during the call)"),
        hint: crate::grant_hint(cap),
    })
}

/// Record a call that a limit stopped, deliver pending audit summaries, and
/// hand the error on.
fn stopped(audit: &crate::audit::Audit, e: Error) -> Error {
    let limit = match &e {
        Error::Timeout { .. } => Some("limit:timeout".to_string()),
        Error::MemoryLimit { .. } => Some("limit:memory".to_string()),
        Error::FuelExhausted { .. } => Some("limit:fuel".to_string()),
        Error::StackOverflow { .. } => Some("limit:stack".to_string()),
        Error::ResourceLimit { what, .. } if what.starts_with("table") => {
            Some("limit:table".to_string())
        }
        Error::ResourceLimit { .. } => Some("limit:resources".to_string()),
        // A grant that ended during the call.
        Error::NotGranted { capability, .. } => Some(
            capability
                .split(" (")
                .next()
                .unwrap_or(capability)
                .to_string(),
        ),
        _ => None,
    };
    if let Some(limit) = limit {
        let reason = e.to_string();
        let reason = reason.lines().next().unwrap_or_default().to_string();
        audit.record(crate::Decision::Stopped, limit, "-", reason);
    }
    audit.flush();
    e
}

fn observed(store: &Store<HostCtx>, stderr: &Option<OutputCapture>) -> Observed {
    let ctx = store.data();
    Observed {
        memory_refused: ctx.limiter.memory_refused,
        table_refused: ctx.limiter.table_refused,
        stderr: stderr
            .as_ref()
            .map(|c| c.last_text(STDERR_TAIL))
            .unwrap_or_default(),
    }
}

fn display_name(info: &ComponentInfo) -> String {
    match &info.metadata {
        Some(m) => format!("component `{}` {} ({})", m.name, m.version, info.name),
        None => format!("component {}", info.name),
    }
}

fn check_limits(runtime: &Runtime, name: &str, limits: &Limits) -> Result<()> {
    let bad = |reason: String| Err(Error::Config { reason });
    let config = runtime.config();
    if limits.fuel.is_some() && !config.fuel {
        return Err(Error::FuelNotEnabled {
            component: name.to_string(),
        });
    }
    if limits.memory > config.max_memory {
        return bad(format!(
            "the memory limit of {name} ({} bytes) is above the largest this runtime gives any component ({} bytes)",
            limits.memory, config.max_memory
        ));
    }
    if limits.table_elements as usize > crate::runtime::POOL_TABLE_ELEMENTS {
        return bad(format!(
            "the table limit of {name} ({} elements) is above the largest this runtime reserves ({})",
            limits.table_elements,
            crate::runtime::POOL_TABLE_ELEMENTS
        ));
    }
    if limits.max_concurrent == 0 {
        return bad(format!("max_concurrent of {name} must be at least 1"));
    }
    if limits.timeout.is_zero() {
        return bad(format!("the timeout of {name} must be longer than zero"));
    }
    Ok(())
}

fn link_error(name: &str, e: wasmtime::Error) -> Error {
    let text = format!("{e:#}");
    // wasmtime says: "component imports instance `x`, but a matching
    // implementation was not found in the linker"; keep the name.
    let import = text
        .split('`')
        .nth(1)
        .map(str::to_string)
        .unwrap_or_else(|| text.clone());
    if text.contains("matching implementation was not found") || text.contains("was not found") {
        Error::UnsupportedImport {
            component: name.to_string(),
            import,
        }
    } else {
        Error::Host {
            component: name.to_string(),
            context: "linking its imports".into(),
            source: e.into(),
        }
    }
}
