//! [`Runtime`]: the engine, the linker with every host interface, the
//! compiled-code cache and the epoch ticker, shared by all components.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::cache::{CodeCache, Digest, Stats};
use crate::component::{Compiled, ComponentInfo};
use crate::error::{Error, Result};
use crate::host::HostCtx;
use crate::prepared::{ComponentPre, PrepareOptions};
use crate::{Limits, RuntimeConfig};

/// The host runtime: one per process. Cheap to clone.
///
/// Compiles each component once per content hash (in memory, and on disk
/// when [`RuntimeConfig::cache_dir`] is set), prepares it for hosting
/// ([`Runtime::prepare`]) and runs every call in a fresh instance from a
/// pooled, pre-instantiated template.
///
/// Calls are async and must run inside a tokio runtime with its timer
/// enabled; compilation is CPU-bound and blocks the calling thread.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub engine: Engine,
    pub linker: Linker<HostCtx>,
    pub cache: CodeCache,
    pub config: RuntimeConfig,
    /// The configured policy, with the host's own directories protected.
    pub host_policy: crate::HostPolicy,
    /// Rate-limits audit events in front of the configured sink.
    pub auditor: Arc<crate::audit::Auditor>,
    /// TLS client settings for outgoing HTTPS.
    pub tls: Arc<rustls::ClientConfig>,
    /// The state of each kept namespace (a backend and a namespace in it),
    /// shared by every preparation that uses it.
    pub states: std::sync::Mutex<
        std::collections::HashMap<(usize, String), std::sync::Weak<crate::host::StateStore>>,
    >,
    ticker: Ticker,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.ticker.stop.store(true, Ordering::Relaxed);
    }
}

/// The one thread that advances the engine's epoch. Timeouts and yields of
/// running guests hang off it; it stops when the runtime is dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn start(engine: Engine, tick: Duration) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("airssys-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .map_err(|e| Error::Config {
                reason: format!("cannot start the epoch thread: {e}"),
            })?;
        Ok(Self { stop })
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Build the engine, the linker and the cache.
    pub fn new(config: RuntimeConfig) -> Result<Self> {
        raise_open_file_limit();
        let engine = build_engine(&config)?;
        let linker = build_linker(&engine, &config.providers)?;
        let cache = CodeCache::new(&engine, config.cache_dir.as_deref())?;
        let tls = crate::net::tls_config(&config.tls_roots)?;
        let ticker = Ticker::start(engine.clone(), config.epoch_tick)?;
        let mut host_policy = config.policy.clone();
        if let Some(dir) = &config.cache_dir {
            // Compiled code is loaded as native code: a guest that could
            // write there could escape, so no grant reaches it.
            host_policy = host_policy.protect(dir.clone());
        }
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                linker,
                cache,
                host_policy,
                auditor: Arc::new(crate::audit::Auditor::new(config.audit.clone())),
                tls,
                states: std::sync::Mutex::default(),
                config,
                ticker,
            }),
        })
    }

    /// The wasmtime engine, for embedders that need it directly.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The settings this runtime was built with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// Compilation and cache counters.
    pub fn stats(&self) -> Stats {
        self.inner.cache.stats()
    }

    /// Drop `digest`'s compiled code from memory (the disk cache keeps it):
    /// the next [`Runtime::compile`] loads it from disk or recompiles.
    pub fn evict(&self, digest: &Digest) {
        self.inner.cache.evict(digest);
    }

    /// The host-wide policy every component is decided under (the
    /// configured one, with the compiled-code cache protected).
    pub fn host_policy(&self) -> &crate::HostPolicy {
        &self.inner.host_policy
    }

    /// Decide what the component described by `info` may do under
    /// `options` (its grants and the requirements its manifest adds) and
    /// this runtime's host policy: the check preparation makes, without
    /// preparing anything (for `inspect`).
    pub fn decide(
        &self,
        info: &ComponentInfo,
        options: &PrepareOptions,
    ) -> Result<crate::Authority> {
        self.request(&info.name, info, options)
            .decide(std::time::SystemTime::now())
    }

    /// What the component described by `info` requires: what its metadata
    /// declares with what `options` adds (from a manifest); `None` when
    /// neither declares anything.
    pub fn required(
        &self,
        info: &ComponentInfo,
        options: &PrepareOptions,
    ) -> Option<Vec<crate::Capability>> {
        self.request(&info.name, info, options).required
    }

    /// What `info`'s component asks under `options`, with this runtime's
    /// host policy and providers.
    pub(crate) fn request(
        &self,
        name: &str,
        info: &ComponentInfo,
        options: &PrepareOptions,
    ) -> crate::policy::Request {
        let mut r = crate::policy::Request::new(name, info, options, self.host_policy());
        r.providers = self.inner.config.providers.clone();
        r
    }

    /// The in-memory state of a kept namespace: the one every live
    /// preparation of it shares, or loaded from the backend.
    pub(crate) fn kept_state(
        &self,
        binding: &crate::host::StateBinding,
    ) -> std::result::Result<Arc<crate::host::StateStore>, String> {
        let key = (
            Arc::as_ptr(&binding.backend) as *const () as usize,
            binding.namespace.clone(),
        );
        let mut states = self
            .inner
            .states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = states.get(&key).and_then(std::sync::Weak::upgrade) {
            return Ok(s);
        }
        let store = Arc::new(crate::host::StateStore::default());
        store.load(binding.backend.load(&binding.namespace)?);
        states.retain(|_, w| w.strong_count() > 0);
        states.insert(key, Arc::downgrade(&store));
        Ok(store)
    }

    /// The directory that holds this engine's compiled code, if any.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.inner.cache.dir()
    }

    /// Where the compiled code of `digest` is (or would be) kept on disk.
    pub fn cache_entry(&self, digest: &Digest) -> Option<std::path::PathBuf> {
        self.inner.cache.entry_path(digest)
    }

    /// Check `bytes`, read their metadata and compile them (or take the
    /// compiled code from the cache). `name` names the component in errors,
    /// typically the file name. Blocks while compiling.
    pub fn compile(&self, name: &str, bytes: &[u8]) -> Result<Compiled> {
        let info = ComponentInfo::read(name, bytes)?;
        let (component, source) =
            self.inner
                .cache
                .get_or_compile(&self.inner.engine, name, info.digest, bytes)?;
        let info = info.with_world(&self.inner.engine, &component);
        Ok(Compiled {
            component,
            info: Arc::new(info),
            source,
        })
    }

    /// [`Runtime::compile`] from async code: on tokio's blocking threads
    /// when called on a tokio runtime, so a compilation (seconds for a
    /// large component) does not hold a worker that serves requests;
    /// inline otherwise.
    pub async fn compile_async(&self, name: &str, bytes: &[u8]) -> Result<Compiled> {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return self.compile(name, bytes);
        };
        let (runtime, owned, bytes) = (self.clone(), name.to_string(), bytes.to_vec());
        handle
            .spawn_blocking(move || runtime.compile(&owned, &bytes))
            .await
            .map_err(|e| Error::Host {
                component: name.to_string(),
                context: "the compilation task failed".into(),
                source: e.into(),
            })?
    }

    /// Compile `bytes` (off the async workers, see
    /// [`Runtime::compile_async`]) and prepare them for hosting with
    /// `options`.
    pub async fn load(
        &self,
        name: &str,
        bytes: &[u8],
        options: PrepareOptions,
    ) -> Result<ComponentPre> {
        let compiled = self.compile_async(name, bytes).await?;
        self.prepare(compiled, options).await
    }

    /// Pre-instantiate a compiled component: link its imports, find its
    /// exports, and for contract components run `metadata` and `init` once
    /// in a probe instance (a failing `init` fails the preparation).
    pub async fn prepare(
        &self,
        compiled: Compiled,
        options: PrepareOptions,
    ) -> Result<ComponentPre> {
        ComponentPre::new(self.clone(), compiled, options).await
    }

    /// The default limits, checked against this runtime's configuration.
    pub fn default_limits(&self) -> Limits {
        Limits::default().memory(Limits::default().memory.min(self.inner.config.max_memory))
    }

    pub(crate) fn linker(&self) -> &Linker<HostCtx> {
        &self.inner.linker
    }
}

/// Elements reserved per table slot in the pool: the largest
/// [`Limits::table_elements`] a component may be given.
pub(crate) const POOL_TABLE_ELEMENTS: usize = 100_000;

fn build_engine(config: &RuntimeConfig) -> Result<Engine> {
    let bad = |reason: String| Error::Config { reason };
    if config.max_instances == 0 {
        return Err(bad("max_instances must be at least 1".into()));
    }
    if config.epoch_tick.is_zero() {
        return Err(bad("epoch_tick must be longer than zero".into()));
    }
    let n = config.max_instances;
    let mut pool = PoolingAllocationConfig::default();
    // A component instance holds a few core instances (the main module plus
    // the shims and adapters that wit-component adds), one or two memories
    // and a few tables; size the pool so `n` typical components fit.
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(8))
        .total_memories(n.saturating_mul(2))
        .total_tables(n.saturating_mul(8))
        .total_stacks(n)
        .max_memory_size(
            usize::try_from(config.max_memory)
                .map_err(|_| bad("max_memory is too large".into()))?,
        )
        .table_elements(POOL_TABLE_ELEMENTS)
        .decommit_batch_size(config.decommit_batch_size.max(1))
        .linear_memory_keep_resident(config.keep_resident)
        .table_keep_resident(config.keep_resident)
        .async_stack_keep_resident(config.keep_resident)
        .pagemap_scan(if config.pagemap_scan {
            wasmtime::Enabled::Auto
        } else {
            wasmtime::Enabled::No
        });
    let mut c = wasmtime::Config::new();
    c.wasm_component_model(true)
        .epoch_interruption(true)
        .consume_fuel(config.fuel)
        .cranelift_nan_canonicalization(config.deterministic)
        .relaxed_simd_deterministic(config.deterministic)
        .memory_init_cow(config.memory_init_cow)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&c).map_err(|e| bad(format!("{e:#}")))
}

/// Raise the process's soft open-file limit to its hard limit, once: every
/// file, socket and directory a guest holds is a host descriptor, and the
/// usual soft limit (1024) is far below what a host of many components
/// needs. A guest's own share is capped by [`Limits::resources`].
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let mut limit = getrlimit(Resource::Nofile);
        if limit.current < limit.maximum {
            let before = limit.current;
            limit.current = limit.maximum;
            match setrlimit(Resource::Nofile, limit) {
                Ok(()) => {
                    tracing::debug!(?before, now = ?limit.maximum, "raised the open-file limit")
                }
                Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
            }
        }
    });
}

fn build_linker(engine: &Engine, providers: &[crate::Provider]) -> Result<Linker<HostCtx>> {
    let mut linker = Linker::<HostCtx>::new(engine);
    let wrap = |e: wasmtime::Error| Error::Config {
        reason: format!("linking host interfaces: {e:#}"),
    };
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(wrap)?;
    // The granted directories were opened once, at preparation: hand the
    // guest handles on them instead of opening each path on every call.
    linker.allow_shadowing(true);
    linker
        .instance("wasi:filesystem/preopens@0.2.12")
        .and_then(|mut i| {
            i.func_wrap(
                "get-directories",
                |mut store: wasmtime::StoreContextMut<'_, HostCtx>, (): ()| {
                    let ctx = store.data_mut();
                    let profile = &ctx.decided.profile;
                    let mut out = Vec::with_capacity(profile.dirs.len());
                    for d in &profile.dirs {
                        let fd = ctx
                            .table
                            .push(wasmtime_wasi::filesystem::Descriptor::Dir(d.dir.clone()))?;
                        out.push((fd, d.guest.clone()));
                    }
                    Ok((out,))
                },
            )
        })
        .map_err(wrap)?;
    linker.allow_shadowing(false);
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(wrap)?;
    crate::bindings::Component::add_to_linker::<HostCtx, HasSelf<HostCtx>>(&mut linker, |c| c)
        .map_err(wrap)?;
    crate::contract::add_to_linker(&mut linker).map_err(wrap)?;
    for p in providers {
        p.0.link(&mut linker).map_err(|e| Error::Config {
            reason: format!(
                "linking the custom capability provider `{}`: {e:#}",
                p.name()
            ),
        })?;
    }
    Ok(linker)
}
