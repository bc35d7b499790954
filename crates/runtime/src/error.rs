//! The runtime's one error type.
//!
//! Every variant names its subject (the component, the function, the
//! parameter) and says what the user can do next. Errors raised by wasmtime
//! are classified once, in [`classify`], into the variants a caller must tell
//! apart: a guest trap, a timeout, memory or fuel exhaustion, a stack
//! overflow, a full resource table, an exhausted instance pool.

use std::path::PathBuf;
use std::time::Duration;

use crate::bindings::airssys::component::types::ComponentError;

/// Everything that can go wrong while loading, preparing or calling a
/// component.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not a WebAssembly component at all (empty, not wasm, a
    /// core module).
    #[error("{component} is not a WebAssembly component: {reason}")]
    NotAComponent {
        /// Which file or component.
        component: String,
        /// What the bytes are instead, and what to do about it.
        reason: String,
    },

    /// The bytes look like a component but do not validate or compile
    /// (truncated, corrupt, using a feature this engine does not enable).
    #[error("{component} is not a valid component (is the file complete?)")]
    InvalidComponent {
        /// Which file or component.
        component: String,
        /// What the validator or compiler said.
        #[source]
        source: anyhow::Error,
    },

    /// The component imports something this host does not provide.
    #[error(
        "{component} imports `{import}`, which this host does not provide; \
         supported are WASI 0.2 (cli, clocks, filesystem, io, random, sockets, http), \
         wasi:logging, wasi:config, wasi:keyvalue and airssys:component"
    )]
    UnsupportedImport {
        /// Which component.
        component: String,
        /// The import that is missing, as the linker named it.
        import: String,
    },

    /// The component does not export what was asked for.
    #[error("{component} does not export {wanted}{}", available_hint(.available))]
    MissingExport {
        /// Which component.
        component: String,
        /// What was looked up (`airssys:component/handler.execute`, a function name).
        wanted: String,
        /// What it does export, to help the user pick.
        available: Vec<String>,
    },

    /// A function name matched several exports.
    #[error(
        "function `{name}` of {component} is ambiguous: it matches {}; give the full `interface#function` name",
        .candidates.join(", ")
    )]
    AmbiguousFunction {
        /// Which component.
        component: String,
        /// The name given.
        name: String,
        /// Every export it matched.
        candidates: Vec<String>,
    },

    /// Arguments to a dynamic call do not fit the function's WIT types.
    #[error("invalid arguments for `{function}`: {reason}")]
    InvalidArguments {
        /// The function called.
        function: String,
        /// Which parameter, what was expected, what was given.
        reason: String,
    },

    /// The guest trapped: a panic, an `unreachable`, an out-of-bounds access.
    #[error("{component} trapped: {trap}{}", stderr_hint(.stderr))]
    Trap {
        /// Which component.
        component: String,
        /// What the engine says happened (`wasm \`unreachable\` instruction
        /// executed`; a Rust panic ends that way).
        trap: String,
        /// The wasm backtrace, when the engine captured one.
        backtrace: Option<String>,
        /// The last few KiB the guest wrote to stderr (a panic message).
        stderr: String,
    },

    /// The call ran past its wall-clock timeout (in wasm code or blocked in
    /// the host).
    #[error("{component} timed out after {}; raise the limit with --timeout if it needs longer", humantime_ms(*.timeout))]
    Timeout {
        /// Which component.
        component: String,
        /// The limit that was hit.
        timeout: Duration,
    },

    /// The guest asked for more linear memory than its limit.
    #[error(
        "{component}: memory limit exceeded (requested {requested} bytes, limit {limit} bytes); raise it with --memory"
    )]
    MemoryLimit {
        /// Which component.
        component: String,
        /// The size the guest tried to grow to.
        requested: u64,
        /// The limit.
        limit: u64,
    },

    /// The guest ran out of fuel.
    #[error("{component} ran out of fuel ({fuel} units); raise it with --fuel")]
    FuelExhausted {
        /// Which component.
        component: String,
        /// The budget it had.
        fuel: u64,
    },

    /// A fuel budget was asked for on a runtime compiled without fuel.
    #[error(
        "{component} asks for a fuel limit but this runtime does not meter fuel; \
         enable it with RuntimeConfig::fuel(true) (the CLI does so when --fuel is given)"
    )]
    FuelNotEnabled {
        /// Which component.
        component: String,
    },

    /// The guest overflowed its wasm stack.
    #[error("{component} overflowed its stack (unbounded recursion?){}", stderr_hint(.stderr))]
    StackOverflow {
        /// Which component.
        component: String,
        /// The last few KiB the guest wrote to stderr.
        stderr: String,
    },

    /// The guest hit a cap on what it can make the host hold (resource
    /// table entries, table elements).
    #[error(
        "{component}: {what} limit exceeded ({limit}); the guest holds too many host resources"
    )]
    ResourceLimit {
        /// Which component.
        component: String,
        /// Which resource.
        what: &'static str,
        /// The limit.
        limit: u64,
    },

    /// No instance slot is free: the component's `max_concurrent` or the
    /// runtime's pool is exhausted. Retry later or raise the limit.
    #[error("{component} is overloaded: {reason}; retry later or raise the limit")]
    Overloaded {
        /// Which component.
        component: String,
        /// Which limit was reached.
        reason: String,
    },

    /// The guest returned a typed error of the contract.
    #[error("{component} returned an error: {}", describe_component_error(.error))]
    Guest {
        /// Which component.
        component: String,
        /// The contract's error value.
        error: ComponentError,
    },

    /// A capability the component needs was not granted.
    #[error("{component} needs `{capability}`, which was not granted; grant it with `{hint}`")]
    NotGranted {
        /// Which component.
        component: String,
        /// The capability, in its string form.
        capability: String,
        /// The flag (or manifest entry) that grants it.
        hint: String,
    },

    /// The guest's `init` refused the configuration.
    #[error("{component} refused to start: init returned {}", describe_component_error(.error))]
    InitFailed {
        /// Which component.
        component: String,
        /// What `init` returned.
        error: ComponentError,
    },

    /// The guest's `metadata()` disagrees with what its binary says.
    #[error(
        "{component}: metadata() says {field} is `{runtime}` but the binary says `{binary}`; rebuild the component"
    )]
    MetadataMismatch {
        /// Which component.
        component: String,
        /// The field that differs.
        field: &'static str,
        /// The value in the custom section.
        binary: String,
        /// The value `metadata()` returned.
        runtime: String,
    },

    /// The guest exited (`wasi:cli/exit`) while handling a call.
    #[error("{component} exited with status {code} during the call{}", stderr_hint(.stderr))]
    Exit {
        /// Which component.
        component: String,
        /// The exit status.
        code: i32,
        /// The last few KiB the guest wrote to stderr.
        stderr: String,
    },

    /// The call is not possible for this kind of component.
    #[error("{component}: {reason}")]
    Unsupported {
        /// Which component.
        component: String,
        /// What is not supported, and what to do instead.
        reason: String,
    },

    /// Reading or writing a file failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// The runtime's configuration is invalid or the engine refused it.
    #[error("invalid runtime configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },

    /// Any other failure inside the engine or the host, with its cause chain.
    #[error("{component}: {context}")]
    Host {
        /// Which component.
        component: String,
        /// What the host was doing.
        context: String,
        /// The cause.
        #[source]
        source: anyhow::Error,
    },
}

/// The runtime's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn available_hint(available: &[String]) -> String {
    if available.is_empty() {
        String::new()
    } else {
        format!("; it exports: {}", available.join(", "))
    }
}

fn stderr_hint(stderr: &str) -> String {
    let trimmed = stderr.trim_end();
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("\nguest stderr:\n{trimmed}")
    }
}

fn humantime_ms(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// The contract error as one line: `invalid input: ...`, `denied: ...`.
pub fn describe_component_error(e: &ComponentError) -> String {
    {
        match e {
            ComponentError::InvalidInput(m) => format!("invalid input: {m}"),
            ComponentError::Denied(c) => format!(
                "denied: capability `{}` not granted",
                crate::capability_from_wit(c)
            ),
            ComponentError::NotFound(m) => format!("not found: {m}"),
            ComponentError::Unavailable(m) => format!("unavailable: {m}"),
            ComponentError::Timeout(m) => format!("timeout: {m}"),
            ComponentError::Unsupported(m) => format!("unsupported: {m}"),
            ComponentError::Failed(m) => format!("failed: {m}"),
            ComponentError::Cycle(m) => format!("cycle: {m}"),
            ComponentError::MailboxFull(m) => format!("mailbox full: {m}"),
            ComponentError::QuotaExceeded(m) => format!("quota exceeded: {m}"),
        }
    }
}

/// What the host observed during a call that failed, to classify the error.
#[derive(Debug, Default)]
pub(crate) struct Observed {
    /// The limiter refused a memory growth to this many bytes.
    pub memory_refused: Option<(u64, u64)>,
    /// The limiter refused a table growth.
    pub table_refused: Option<u64>,
    /// The tail of the guest's stderr.
    pub stderr: String,
}

/// Turn an engine error from instantiating or calling a guest into the
/// variant a caller can act on.
pub(crate) fn classify(
    component: &str,
    err: wasmtime::Error,
    observed: Observed,
    limits: &crate::Limits,
) -> Error {
    let resource_capacity = limits.resources;
    let component = component.to_string();
    if let Some(exit) = err.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return Error::Exit {
            component,
            code: exit.0,
            stderr: observed.stderr,
        };
    }
    let trap = err.downcast_ref::<wasmtime::Trap>().copied();
    // The engine's own limits name themselves, whatever happened before.
    match trap {
        Some(wasmtime::Trap::Interrupt) => {
            return Error::Timeout {
                component,
                timeout: limits.timeout,
            };
        }
        Some(wasmtime::Trap::OutOfFuel) => {
            return Error::FuelExhausted {
                component,
                fuel: limits.fuel.unwrap_or(0),
            };
        }
        Some(wasmtime::Trap::StackOverflow) => {
            return Error::StackOverflow {
                component,
                stderr: observed.stderr,
            };
        }
        _ => {}
    }
    // Any other failure after a refused growth is that refusal's doing (a
    // Rust guest aborts when an allocation fails).
    if let Some((requested, limit)) = observed.memory_refused {
        return Error::MemoryLimit {
            component,
            requested,
            limit,
        };
    }
    if let Some(limit) = observed.table_refused {
        return Error::ResourceLimit {
            component,
            what: "table elements",
            limit,
        };
    }
    if let Some(trap) = trap {
        let backtrace = err
            .downcast_ref::<wasmtime::WasmBacktrace>()
            .map(|b| b.to_string());
        let hint = if trap == wasmtime::Trap::MemoryOutOfBounds {
            " (in a Rust or C guest this is often its shadow stack overflowing: unbounded recursion?)"
        } else {
            ""
        };
        return Error::Trap {
            component,
            trap: format!("{trap}{hint}"),
            backtrace,
            stderr: observed.stderr,
        };
    }
    if err
        .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        return Error::Overloaded {
            component,
            reason: format!("{err}"),
        };
    }
    if let Some(wasmtime::component::ResourceTableError::Full) =
        err.downcast_ref::<wasmtime::component::ResourceTableError>()
    {
        return Error::ResourceLimit {
            component,
            what: "open host resources (files, streams, pollables)",
            limit: resource_capacity as u64,
        };
    }
    let source: anyhow::Error = err.into();
    // Resource-table exhaustion can also arrive as a plain message from
    // WASI's implementation; keep the classification honest either way.
    let text = format!("{source:#}");
    if text.contains("resource table has no free keys") || text.contains("ResourceTableError::Full")
    {
        return Error::ResourceLimit {
            component,
            what: "open host resources (files, streams, pollables)",
            limit: resource_capacity as u64,
        };
    }
    Error::Host {
        component,
        context: "call failed".into(),
        source,
    }
}
