//! Our call path against raw wasmtime doing the same work, side by side.
//!
//! `cargo bench -p airssys-wasm-runtime`. Results and their reading are in
//! docs/benchmarks.md. The raw path builds what our runtime builds per call:
//! a fresh `Store` with a fresh WASI context, resource table, memory limiter
//! and epoch deadline, instantiates from an `InstancePre` in the same pooled
//! engine configuration, and calls echo's `execute` with 64 bytes.

#![allow(missing_docs, reason = "benchmark binary")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark binary"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use airssys_wasm_runtime::{
    AMBIENT, Capability, ComponentPre, Grants, Message, PrepareOptions, Runtime, RuntimeConfig,
};
use criterion::{Criterion, criterion_group, criterion_main};
use wasmtime::component::{Component, ComponentExportIndex, InstancePre, Linker, ResourceTable};
use wasmtime::{
    Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits,
    StoreLimitsBuilder,
};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// The contract's message, lowered by hand for the raw path.
#[derive(
    wasmtime::component::ComponentType, wasmtime::component::Lift, wasmtime::component::Lower, Clone,
)]
#[component(record)]
struct RawMessage {
    payload: Vec<u8>,
    #[component(name = "content-type")]
    content_type: Option<String>,
    headers: Vec<(String, String)>,
}

#[derive(
    wasmtime::component::ComponentType, wasmtime::component::Lift, wasmtime::component::Lower,
)]
#[component(variant)]
#[allow(dead_code, reason = "only the shape matters for lifting")]
enum RawCapability {
    #[component(name = "file-read")]
    FileRead(String),
    #[component(name = "file-write")]
    FileWrite(String),
    #[component(name = "network-outbound")]
    NetworkOutbound(String),
    #[component(name = "network-inbound")]
    NetworkInbound(u16),
    #[component(name = "system-call")]
    SystemCall(String),
    #[component(name = "custom")]
    Custom(RawCustom),
}

#[derive(
    wasmtime::component::ComponentType, wasmtime::component::Lift, wasmtime::component::Lower,
)]
#[component(record)]
struct RawCustom {
    name: String,
    json: String,
}

#[derive(
    wasmtime::component::ComponentType, wasmtime::component::Lift, wasmtime::component::Lower,
)]
#[component(variant)]
#[allow(dead_code, reason = "only the shape matters for lifting")]
enum RawError {
    #[component(name = "invalid-input")]
    InvalidInput(String),
    #[component(name = "denied")]
    Denied(RawCapability),
    #[component(name = "not-found")]
    NotFound(String),
    #[component(name = "unavailable")]
    Unavailable(String),
    #[component(name = "timeout")]
    Timeout(String),
    #[component(name = "unsupported")]
    Unsupported(String),
    #[component(name = "failed")]
    Failed(String),
    #[component(name = "cycle")]
    Cycle(String),
    #[component(name = "mailbox-full")]
    MailboxFull(String),
    #[component(name = "quota-exceeded")]
    QuotaExceeded(String),
}

#[derive(
    wasmtime::component::ComponentType,
    wasmtime::component::Lift,
    wasmtime::component::Lower,
    Clone,
    Copy,
)]
#[component(enum)]
#[repr(u8)]
#[allow(dead_code, reason = "only the shape matters for lifting")]
enum RawLevel {
    #[component(name = "trace")]
    Trace,
    #[component(name = "debug")]
    Debug,
    #[component(name = "info")]
    Info,
    #[component(name = "warn")]
    Warn,
    #[component(name = "error")]
    Error,
    #[component(name = "critical")]
    Critical,
}

struct RawCtx {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for RawCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

struct Raw {
    engine: Engine,
    pre: InstancePre<RawCtx>,
    execute: ComponentExportIndex,
}

/// The engine `Runtime::new` builds, with the slot-recycling settings `t`.
fn raw_engine(t: Tuning) -> Engine {
    let Tuning {
        cow,
        batch,
        resident,
        pagemap,
    } = t;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(1000)
        .total_core_instances(8000)
        .total_memories(2000)
        .total_tables(8000)
        .total_stacks(1000)
        .table_elements(100_000)
        .decommit_batch_size(batch)
        .linear_memory_keep_resident(resident)
        .table_keep_resident(resident)
        .async_stack_keep_resident(resident)
        .pagemap_scan(if pagemap {
            wasmtime::Enabled::Auto
        } else {
            wasmtime::Enabled::No
        });
    let mut c = wasmtime::Config::new();
    c.wasm_component_model(true)
        .epoch_interruption(true)
        .memory_init_cow(cow)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&c).unwrap()
}

impl Raw {
    fn new(bytes: &[u8], t: Tuning) -> Self {
        let engine = raw_engine(t);
        let ticker = engine.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(10));
                ticker.increment_epoch();
            }
        });
        let component = Component::new(&engine, bytes).unwrap();
        let mut linker = Linker::<RawCtx>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
        // echo logs one line per call: the raw host drops it.
        linker
            .instance("wasi:logging/logging@0.1.0-draft")
            .unwrap()
            .func_wrap(
                "log",
                |_, (_level, _ctx, _msg): (RawLevel, String, String)| Ok(()),
            )
            .ok();
        let pre = linker.instantiate_pre(&component).unwrap();
        let handler = component
            .get_export_index(None, "airssys:component/handler@0.2.0")
            .unwrap();
        let execute = component
            .get_export_index(Some(&handler), "execute")
            .unwrap();
        Self {
            engine,
            pre,
            execute,
        }
    }

    async fn call(&self, input: RawMessage) -> RawMessage {
        let mut store = Store::new(
            &self.engine,
            RawCtx {
                wasi: WasiCtxBuilder::new().build(),
                table: ResourceTable::new(),
                limits: StoreLimitsBuilder::new().memory_size(128 << 20).build(),
            },
        );
        store.limiter(|c| &mut c.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|_| Ok(wasmtime::UpdateDeadline::Yield(1)));
        let instance = self.pre.instantiate_async(&mut store).await.unwrap();
        let f = instance
            .get_typed_func::<(RawMessage,), (Result<RawMessage, RawError>,)>(
                &mut store,
                &self.execute,
            )
            .unwrap();
        let (r,) = f.call_async(&mut store, (input,)).await.unwrap();
        match r {
            Ok(m) => m,
            Err(_) => panic!("echo failed"),
        }
    }
}

fn payload() -> Vec<u8> {
    vec![b'x'; 64]
}

/// Engine settings that decide how instance slots are recycled.
#[derive(Clone, Copy)]
struct Tuning {
    cow: bool,
    batch: usize,
    resident: usize,
    pagemap: bool,
}

fn ours(rt: &tokio::runtime::Runtime, bytes: &[u8], t: Tuning) -> ComponentPre {
    let config = RuntimeConfig::default()
        .memory_init(t.cow, t.batch)
        .keep_resident(t.resident, t.pagemap);
    let runtime = Runtime::new(config).unwrap();
    rt.block_on(runtime.load("echo.wasm", bytes, PrepareOptions::default()))
        .unwrap()
}

fn on_two_threads<F, Fut>(iters: u64, make: impl Fn() -> F) -> Duration
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let per = iters / 2 + 1;
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let f = make();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .unwrap();
                barrier.wait();
                let start = Instant::now();
                rt.block_on(async {
                    for _ in 0..per {
                        f().await;
                    }
                });
                start.elapsed()
            })
        })
        .collect();
    let longest = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .max()
        .unwrap_or_default();
    // Per call of the pair: wall time over all calls made.
    longest.mul_f64(iters as f64 / (2 * per) as f64)
}

fn bench(c: &mut Criterion) {
    let bytes = std::fs::read(airssys_wasm_test_guests::ECHO).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();

    let only = std::env::var("AIRSSYS_BENCH_TUNING").ok();
    // Three ways to recycle instance slots: wasmtime's defaults; copying
    // memory instead of mapping it with batched decommits (the setting of
    // docs/measured figures); and ours, `RuntimeConfig::default()`.
    let tunings = [
        (
            "wasmtime defaults",
            Tuning {
                cow: true,
                batch: 1,
                resident: 0,
                pagemap: false,
            },
        ),
        (
            "no-cow+batch32",
            Tuning {
                cow: false,
                batch: 32,
                resident: 0,
                pagemap: false,
            },
        ),
        (
            "airssys defaults",
            Tuning {
                cow: true,
                batch: 32,
                resident: 1 << 20,
                pagemap: true,
            },
        ),
    ];
    for (label, t) in tunings {
        if only.as_deref().is_some_and(|o| o != label) {
            continue;
        }
        let raw = Arc::new(Raw::new(&bytes, t));
        let ours = ours(&rt, &bytes, t);

        let mut g = c.benchmark_group(format!(
            "echo 64 B, fresh instance + call, 1 thread, {label}"
        ));
        g.bench_function("a raw wasmtime", |b| {
            b.iter(|| {
                rt.block_on(raw.call(RawMessage {
                    payload: payload(),
                    content_type: None,
                    headers: vec![],
                }))
            })
        });
        g.bench_function("b airssys-wasm", |b| {
            b.iter(|| rt.block_on(ours.execute(Message::new(payload()))).unwrap())
        });
        g.finish();

        let mut g = c.benchmark_group(format!(
            "echo 64 B, fresh instance + call, 2 threads, {label}"
        ));
        g.bench_function("d raw wasmtime", |b| {
            b.iter_custom(|iters| {
                on_two_threads(iters, || {
                    let raw = raw.clone();
                    move || {
                        let raw = raw.clone();
                        async move {
                            raw.call(RawMessage {
                                payload: payload(),
                                content_type: None,
                                headers: vec![],
                            })
                            .await;
                        }
                    }
                })
            })
        });
        g.bench_function("d airssys-wasm", |b| {
            b.iter_custom(|iters| {
                on_two_threads(iters, || {
                    let ours = ours.clone();
                    move || {
                        let ours = ours.clone();
                        async move {
                            ours.execute(Message::new(payload())).await.unwrap();
                        }
                    }
                })
            })
        });
        g.finish();
    }

    // The policy gate: the same component with no grants, and with 20 it
    // requires and is granted (10 directories, 10 outbound hosts). Grants
    // are decided once, at preparation (the directories opened then too);
    // what remains per call is building the WASI context from the result.
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let dirs: Vec<tempfile::TempDir> = (0..10).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut caps: Vec<Capability> = dirs
        .iter()
        .map(|d| Capability::FileRead(d.path().into()))
        .collect();
    caps.extend(
        (0..10).map(|i| Capability::NetworkOutbound(format!("https://api{i}.example.com"))),
    );
    let mut grants = Grants::default();
    for c in &caps {
        grants = grants.allow(c.clone());
    }
    let none = rt
        .block_on(runtime.load("echo.wasm", &bytes, PrepareOptions::default()))
        .unwrap();
    let twenty = rt
        .block_on(runtime.load(
            "echo.wasm",
            &bytes,
            PrepareOptions::default().requires(caps).grants(grants),
        ))
        .unwrap();
    assert_eq!(twenty.authority().effective().len(), 20 + AMBIENT.len());
    let mut g = c.benchmark_group("policy gate: echo 64 B, fresh instance + call");
    g.bench_function("e no grants", |b| {
        b.iter(|| rt.block_on(none.execute(Message::new(payload()))).unwrap())
    });
    g.bench_function("e 20 grants (10 directories, 10 hosts)", |b| {
        b.iter(|| {
            rt.block_on(twenty.execute(Message::new(payload())))
                .unwrap()
        })
    });
    g.finish();

    let dir = tempfile::tempdir().unwrap();
    let cached = Runtime::new(
        RuntimeConfig::default()
            .cache_dir(dir.path())
            .max_instances(4),
    )
    .unwrap();
    let digest = cached.compile("echo.wasm", &bytes).unwrap().info.digest;
    let mut g = c.benchmark_group("echo: compile vs cache");
    g.sample_size(20);
    g.bench_function("c compile from bytes", |b| {
        b.iter(|| Component::new(cached.engine(), &bytes).unwrap())
    });
    let artifact = Component::new(cached.engine(), &bytes)
        .unwrap()
        .serialize()
        .unwrap();
    g.bench_function("c raw wasmtime deserialize (no checks)", |b| {
        // SAFETY: bytes serialized by this engine just above.
        #[allow(unsafe_code, reason = "the raw baseline of the cache load")]
        b.iter(|| unsafe { Component::deserialize(cached.engine(), &artifact) }.unwrap())
    });
    g.bench_function("c load from the disk cache", |b| {
        b.iter(|| {
            cached.evict(&digest);
            cached.compile("echo.wasm", &bytes).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
