//! Our call path against raw wasmtime doing the same work, side by side.
//!
//! `cargo bench -p airssys-wasm-runtime`. Results and their reading are in
//! docs/benchmarks.md. The raw path builds what our runtime builds per call:
//! a fresh `Store` with a fresh WASI context, resource table, memory limiter
//! and epoch deadline, instantiates from an `InstancePre` in the same pooled
//! engine configuration, and calls echo's `execute` with 64 bytes.

#![allow(missing_docs, reason = "benchmark binary")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark binary")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use airssys_wasm_runtime::{ComponentPre, Message, PrepareOptions, Runtime, RuntimeConfig};
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

fn raw_engine() -> Engine {
    // The same engine settings as `Runtime::new(RuntimeConfig::default())`.
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(1000)
        .total_core_instances(8000)
        .total_memories(2000)
        .total_tables(8000)
        .total_stacks(1000)
        .table_elements(100_000);
    let mut c = wasmtime::Config::new();
    c.wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&c).unwrap()
}

impl Raw {
    fn new(bytes: &[u8]) -> Self {
        let engine = raw_engine();
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
                |_, (_level, _ctx, _msg): (wasmtime::component::Val, String, String)| Ok(()),
            )
            .ok();
        let pre = linker.instantiate_pre(&component).unwrap();
        let handler = component
            .get_export_index(None, "airssys:component/handler@0.1.0")
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

fn ours(rt: &tokio::runtime::Runtime, bytes: &[u8]) -> ComponentPre {
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
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

    let raw = Arc::new(Raw::new(&bytes));
    let ours = ours(&rt, &bytes);

    let mut g = c.benchmark_group("echo: fresh instance + call (64 B)");
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

    let mut g = c.benchmark_group("echo: two threads, time per call");
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
