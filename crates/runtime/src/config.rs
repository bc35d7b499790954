//! Runtime-wide settings ([`RuntimeConfig`]) and per-component limits
//! ([`Limits`]). Every default is documented with its reason.

use std::path::PathBuf;
use std::time::Duration;

/// Settings fixed for the life of a [`Runtime`](crate::Runtime): they shape
/// the engine and its compiled code, so changing one means a new runtime.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RuntimeConfig {
    /// Meter fuel in compiled code (default off). Fuel makes execution
    /// deterministic in length but costs ~10-20% of speed on every call, and
    /// it changes the compiled code, so it is a runtime-wide switch; a
    /// component that asks for a fuel budget on a runtime without it is
    /// refused.
    pub fuel: bool,
    /// Compile for deterministic execution (default off): NaN results are
    /// canonicalized and relaxed SIMD takes its deterministic lowering, so
    /// the same inputs give bit-identical outputs on every machine.
    pub deterministic: bool,
    /// Where compiled code is kept between processes (default none: memory
    /// only). The directory is created with mode 0700.
    pub cache_dir: Option<PathBuf>,
    /// How often the engine's epoch advances (default 10 ms). Timeouts are
    /// checked, and a running guest yields to other tasks, once per tick.
    pub epoch_tick: Duration,
    /// How many component instances may exist at once across the runtime
    /// (default 1000, wasmtime's own default). Slots are reserved up front
    /// by the pooling allocator, so instantiation never allocates; when they
    /// run out a call fails with `Overloaded`.
    pub max_instances: u32,
    /// The largest linear memory any component may be given, in bytes
    /// (default 4 GiB, the whole 32-bit space, so bounds checks stay elided).
    /// A component's own [`Limits::memory`] must not exceed it.
    pub max_memory: u64,
    /// Initialize linear memories copy-on-write from the compiled image
    /// (default on, wasmtime's default): instantiation maps the image
    /// instead of copying it, which keeps large components (an 18 MB Python
    /// component) fast to instantiate.
    pub memory_init_cow: bool,
    /// How many freed instance slots are decommitted together (default 32;
    /// wasmtime's default is 1). Batching takes the process-wide memory-map
    /// lock, and interrupts the other cores, less often.
    pub decommit_batch_size: usize,
    /// Bytes of each freed memory, table and async stack slot to reset in
    /// place and keep resident instead of returning them to the kernel
    /// (default 1 MiB; wasmtime's default is 0). Together with
    /// [`RuntimeConfig::pagemap_scan`] this removes the page faults and
    /// memory-map system calls of instantiating a small component: the echo
    /// benchmark goes from 35 µs to 11 µs a call on one thread, and two
    /// threads scale instead of slowing down (`docs/benchmarks.md`). At most
    /// this much per warm slot stays resident.
    pub keep_resident: usize,
    /// Reset memory slots with Linux's `PAGEMAP_SCAN` where the kernel has it
    /// (6.7+), touching only the pages a guest dirtied (default on; wasmtime's
    /// default is off). Ignored where unavailable.
    pub pagemap_scan: bool,
    /// Host-wide rules over every component: denials that win over any
    /// grant, and directories no file grant may reach. The compiled-code
    /// cache directory is always protected.
    pub policy: crate::HostPolicy,
    /// Where audit events go (default: nowhere). Every denial the host
    /// observes becomes an event, rate-limited per component and
    /// capability kind.
    pub audit: Option<crate::AuditSink>,
    /// Custom capability providers, linked when the runtime is built.
    pub providers: Vec<crate::Provider>,
    /// Certificates (DER) trusted for outgoing HTTPS besides the web's
    /// public roots: a private CA, a test server's certificate.
    pub tls_roots: Vec<Vec<u8>>,
    /// Where components' messages to each other go (default: nowhere,
    /// every `messaging` function answers `unavailable`).
    pub messenger: Option<std::sync::Arc<dyn crate::Messenger>>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            fuel: false,
            deterministic: false,
            cache_dir: None,
            epoch_tick: Duration::from_millis(10),
            max_instances: 1000,
            max_memory: 4 << 30,
            memory_init_cow: true,
            decommit_batch_size: 32,
            keep_resident: 1 << 20,
            pagemap_scan: true,
            policy: crate::HostPolicy::default(),
            audit: None,
            providers: Vec::new(),
            tls_roots: Vec::new(),
            messenger: None,
        }
    }
}

impl RuntimeConfig {
    /// Trust `der` (a certificate, DER-encoded) for outgoing HTTPS.
    pub fn tls_root(mut self, der: Vec<u8>) -> Self {
        self.tls_roots.push(der);
        self
    }

    /// Add a custom capability provider.
    pub fn provider(mut self, provider: impl crate::CapabilityProvider) -> Self {
        self.providers.push(crate::Provider::new(provider));
        self
    }

    /// Deliver components' messages to each other through `messenger`.
    pub fn messenger(mut self, messenger: std::sync::Arc<dyn crate::Messenger>) -> Self {
        self.messenger = Some(messenger);
        self
    }

    /// Send audit events to `sink`.
    pub fn audit(mut self, sink: crate::AuditSink) -> Self {
        self.audit = Some(sink);
        self
    }

    /// Set the host-wide policy.
    pub fn policy(mut self, policy: crate::HostPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Turn fuel metering on or off.
    pub fn fuel(mut self, on: bool) -> Self {
        self.fuel = on;
        self
    }

    /// Turn deterministic compilation on or off.
    pub fn deterministic(mut self, on: bool) -> Self {
        self.deterministic = on;
        self
    }

    /// Keep compiled code in `dir` between processes.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Set the epoch tick.
    pub fn epoch_tick(mut self, tick: Duration) -> Self {
        self.epoch_tick = tick;
        self
    }

    /// Set the number of instance slots.
    pub fn max_instances(mut self, n: u32) -> Self {
        self.max_instances = n;
        self
    }

    /// Set the largest linear memory any component may be given.
    pub fn max_memory(mut self, bytes: u64) -> Self {
        self.max_memory = bytes;
        self
    }

    /// Keep `bytes` of each freed slot resident, and use `PAGEMAP_SCAN`
    /// where the kernel has it.
    pub fn keep_resident(mut self, bytes: usize, pagemap_scan: bool) -> Self {
        self.keep_resident = bytes;
        self.pagemap_scan = pagemap_scan;
        self
    }

    /// Choose copy-on-write memory initialization and the decommit batch.
    pub fn memory_init(mut self, copy_on_write: bool, decommit_batch_size: usize) -> Self {
        self.memory_init_cow = copy_on_write;
        self.decommit_batch_size = decommit_batch_size;
        self
    }
}

/// What one component may use. Applied to every instance, per call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Size of each linear memory, in bytes (default 128 MiB: room for
    /// interpreted-language components, whose images are tens of MiB, while
    /// a thousand instances still fit in a modest machine).
    pub memory: u64,
    /// Fuel per call (default none). Needs [`RuntimeConfig::fuel`].
    pub fuel: Option<u64>,
    /// Wall-clock time per call, including time blocked in the host
    /// (default 30 s: long enough for real work, short enough that a runaway
    /// guest does not hold a slot for long).
    pub timeout: Duration,
    /// Instances of this component alive at once (default 100); one more
    /// call fails with `Overloaded` instead of queueing without bound.
    pub max_concurrent: u32,
    /// Elements per table (default 100,000, also the most a runtime
    /// reserves: Rust and C guests use hundreds, interpreters a few
    /// thousand).
    pub table_elements: u32,
    /// Host resources (open files, streams, pollables) one instance may hold
    /// at once (default 10,000; wasmtime's own default is a million).
    pub resources: usize,
    /// Longest log line kept, in bytes (default 4 KiB; longer lines are cut).
    pub log_line_bytes: usize,
    /// Log lines per second per component, with a burst of the same size
    /// (default 100); lines beyond are dropped and counted.
    pub log_lines_per_second: u32,
    /// Bytes of stdout and of stderr kept per call (default 64 KiB each; the
    /// last bytes are kept, so a panic message at the end is never lost).
    pub output_bytes: usize,
    /// Longest `state` key, in bytes (default 1 KiB).
    pub state_key_bytes: usize,
    /// Largest `state` value, in bytes (default 1 MiB).
    pub state_value_bytes: usize,
    /// Total bytes of keys and values one component may keep in `state`
    /// (default 64 MiB).
    pub state_total_bytes: usize,
    /// Keys one component may keep in `state`, all buckets together
    /// (default 100,000).
    pub state_keys: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: 128 << 20,
            fuel: None,
            timeout: Duration::from_secs(30),
            max_concurrent: 100,
            table_elements: 100_000,
            resources: 10_000,
            log_line_bytes: 4 << 10,
            log_lines_per_second: 100,
            output_bytes: 64 << 10,
            state_key_bytes: 1 << 10,
            state_value_bytes: 1 << 20,
            state_total_bytes: 64 << 20,
            state_keys: 100_000,
        }
    }
}

impl Limits {
    /// Set the memory limit in bytes.
    pub fn memory(mut self, bytes: u64) -> Self {
        self.memory = bytes;
        self
    }

    /// Set the fuel budget per call.
    pub fn fuel(mut self, fuel: Option<u64>) -> Self {
        self.fuel = fuel;
        self
    }

    /// Set the timeout per call.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Set the number of concurrent instances.
    pub fn max_concurrent(mut self, n: u32) -> Self {
        self.max_concurrent = n;
        self
    }

    /// Set the number of elements a table may grow to.
    pub fn table_elements(mut self, n: u32) -> Self {
        self.table_elements = n;
        self
    }

    /// Set the number of host resources an instance may hold.
    pub fn resources(mut self, n: usize) -> Self {
        self.resources = n;
        self
    }

    /// Set the bytes of stdout and stderr kept per call.
    pub fn output_bytes(mut self, n: usize) -> Self {
        self.output_bytes = n;
        self
    }

    /// Set the number of keys one component may keep in `state`.
    pub fn state_keys(mut self, n: usize) -> Self {
        self.state_keys = n;
        self
    }

    /// Set the largest `state` value.
    pub fn state_value_bytes(mut self, n: usize) -> Self {
        self.state_value_bytes = n;
        self
    }

    /// When a call started now must end, or `None` when the timeout is too
    /// large to represent (no deadline).
    pub(crate) fn timeout_at(&self) -> Option<std::time::Instant> {
        std::time::Instant::now().checked_add(self.timeout)
    }

    /// Set the log rate.
    pub fn log_lines_per_second(mut self, n: u32) -> Self {
        self.log_lines_per_second = n;
        self
    }
}
