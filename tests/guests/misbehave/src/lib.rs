//! A test component that misbehaves on request, so the host's limits and
//! isolation can be tested against a real guest. The payload text is the
//! command:
//!
//! | payload     | does                                                        |
//! | ----------- | ----------------------------------------------------------- |
//! | `echo`      | answers the input unchanged                                 |
//! | `loop`      | loops forever                                               |
//! | `grow`      | allocates 1 MiB blocks until an allocation fails (a trap)   |
//! | `recurse`   | recurses without end (stack overflow)                       |
//! | `panic`     | panics with `misbehave: asked to panic`                     |
//! | `output`    | writes 10 MiB to stdout and 10 MiB to stderr                |
//! | `sleep`     | sleeps 30 s (blocks in the host)                            |
//! | `files`     | creates pollables and keeps them until the host refuses     |
//! | `log-flood` | logs 1024 lines of 64 KiB                                   |
//! | `state-big` | stores a 10 MiB value in state, answers with the error text |
//! | `config`    | answers with its configuration as `key=value` lines         |
//! | `exit`      | calls `exit(3)`; WASI 0.2 carries it as failure (status 1)  |
//! | `env`       | answers with its environment as `KEY=VALUE` lines           |
//! | `get-many`  | asks `get-many` for one 512 KiB value 200 times; answers the error |
//! | `entropy`   | answers `clock=SECONDS random=U64` from the wall clock and the RNG |
//! | `message`   | sends, requests and publishes; answers with the three errors |
//! | `state-keys`| answers the state's keys, one per line                      |
//!
//! `init` fails with `invalid-input` when the configuration sets
//! `fail-init` to `true`. `migrate(from)` fails when config `fail-migrate`
//! is `true`; otherwise it stores `migrated-from` = `from` in state.

use std::hint::black_box;
use std::io::Write;
use std::time::Duration;

use airssys_wasm_sdk::{
    ComponentError, Handler, Lifecycle, Message, component, config, log, messaging, state,
};

const COMMANDS: &str = "echo, loop, grow, recurse, panic, output, sleep, files, log-flood, state-big, state-set, state-set-then-panic, state-set-then-error, state-get, config, exit, env, message, get-many, entropy, state-keys";
const MIB: usize = 1 << 20;

#[component(
    name = "misbehave",
    version = "0.1.0",
    description = "Misbehaves on request, to test the host's limits",
    capabilities = [
        "system-call:state",
        "system-call:config",
        "messaging:send:other",
        "messaging:publish:news",
    ],
    lifecycle,
)]
struct Misbehave;

impl Lifecycle for Misbehave {
    fn init(config: Vec<(String, String)>) -> Result<(), ComponentError> {
        if config
            .iter()
            .any(|(key, value)| key == "fail-init" && value == "true")
        {
            return Err(ComponentError::InvalidInput(
                "misbehave: init refused because `fail-init` is `true`".to_owned(),
            ));
        }
        Ok(())
    }

    fn migrate(from_version: String) -> Result<(), ComponentError> {
        if setting("fail-migrate").as_deref() == Some("true") {
            return Err(ComponentError::Failed(format!(
                "misbehave: migrate from {from_version} refused because `fail-migrate` is `true`"
            )));
        }
        state::set("migrated-from", from_version.as_bytes())?;
        Ok(())
    }
}

/// One configuration value, if set.
fn setting(key: &str) -> Option<String> {
    config::get(key).ok().flatten()
}

impl Handler for Misbehave {
    fn execute(input: Message) -> Result<Message, ComponentError> {
        let command = input.payload_str()?.trim().to_owned();
        match command.as_str() {
            "echo" => Ok(input),
            "loop" => endless_loop(),
            "grow" => grow(),
            "recurse" => Ok(Message::text(recurse(0).to_string())),
            "panic" => asked_to_panic(),
            "output" => Ok(Message::text(output())),
            "sleep" => {
                std::thread::sleep(Duration::from_secs(30));
                Ok(Message::text("slept 30 s"))
            }
            "files" => Ok(Message::text(hoard_resources())),
            "log-flood" => Ok(Message::text(log_flood())),
            "state-big" => Ok(Message::text(state_big())),
            // A write, kept only when the call succeeds.
            "state-set" => {
                state::set("k", b"written")?;
                Ok(Message::text("set"))
            }
            "state-set-then-panic" => {
                state::set("k", b"lost")?;
                panic!("misbehave: asked to panic after writing state")
            }
            "state-set-then-error" => {
                state::set("k", b"lost")?;
                state::delete("count")?;
                Err(ComponentError::Failed(
                    "asked to fail after writing state".into(),
                ))
            }
            "state-get" => Ok(Message::text(
                state::get("k")?
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
                    .unwrap_or_else(|| "absent".into()),
            )),
            "config" => {
                let pairs = config::get_all()?;
                Ok(Message::text(lines(pairs)))
            }
            "exit" => std::process::exit(3),
            "env" => Ok(Message::text(lines(std::env::vars()))),
            "message" => Ok(Message::text(message())),
            "state-keys" => Ok(Message::text(state::keys()?.join("\n"))),
            "get-many" => Ok(Message::text(get_many_amplified())),
            "entropy" => Ok(Message::text(format!(
                "clock={} random={}",
                wasip2::clocks::wall_clock::now().seconds,
                wasip2::random::random::get_random_u64()
            ))),
            other => Err(ComponentError::InvalidInput(format!(
                "unknown command `{other}`; send one of {COMMANDS}"
            ))),
        }
    }
}

/// Tries each messaging function and reports what the host answered, one
/// line each.
fn message() -> String {
    let msg = Message::text("hello");
    let outcome = |r: Result<String, ComponentError>| match r {
        Ok(text) => format!("ok: {text}"),
        Err(e) => format!("err: {e}"),
    };
    [
        outcome(messaging::send("other", &msg).map(|()| String::new())),
        outcome(
            messaging::request("other", &msg, Duration::from_millis(100))
                .map(|m| String::from_utf8_lossy(&m.payload).into_owned()),
        ),
        outcome(messaging::publish("news", &msg).map(|()| String::new())),
    ]
    .join("\n")
}

fn endless_loop() -> ! {
    let mut spins = 0_u64;
    loop {
        spins = black_box(spins.wrapping_add(1));
    }
}

/// Allocates (and touches, so the pages are really committed) 1 MiB blocks
/// until an allocation fails. A failed allocation aborts, so this traps once
/// the host refuses to grow the memory.
fn grow() -> ! {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        blocks.push(black_box(vec![0xA5; MIB]));
    }
}

fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 32]);
    if black_box(depth < u64::MAX) {
        recurse(depth + 1).wrapping_add(frame[7])
    } else {
        frame[0]
    }
}

#[expect(clippy::panic, reason = "panicking is this command's whole point")]
fn asked_to_panic() -> ! {
    panic!("misbehave: asked to panic")
}

fn output() -> String {
    let chunk = [b'x'; 64 * 1024];
    let mut written = 0_usize;
    for _ in 0..(10 * MIB / chunk.len()) {
        let out = std::io::stdout().write_all(&chunk);
        let err = std::io::stderr().write_all(&chunk);
        if out.is_err() || err.is_err() {
            break;
        }
        written += chunk.len();
    }
    let _ = std::io::stdout().flush();
    format!("wrote {written} bytes to stdout and to stderr")
}

/// Host resources (monotonic-clock pollables) kept alive until the host
/// refuses to make more, which traps.
fn hoard_resources() -> String {
    let mut kept = Vec::new();
    loop {
        kept.push(wasip2::clocks::monotonic_clock::subscribe_duration(
            60_000_000_000,
        ));
        if kept.len() == usize::MAX {
            return format!("created {} pollables", kept.len());
        }
    }
}

fn log_flood() -> String {
    let line = "L".repeat(64 * 1024);
    for _ in 0..1024 {
        log::info(&line);
    }
    "logged 1024 lines of 64 KiB".to_owned()
}

fn state_big() -> String {
    match state::set("big", &vec![0x5A; 10 * MIB]) {
        Ok(()) => "stored 10 MiB".to_owned(),
        Err(err) => ComponentError::from(err).to_string(),
    }
}

/// One stored value asked for many times: the host must not copy it
/// without bound.
fn get_many_amplified() -> String {
    if let Err(err) = state::set("half-mib", &vec![1; MIB / 2]) {
        return ComponentError::from(err).to_string();
    }
    let keys = vec!["half-mib"; 200];
    match state::get_many(&keys) {
        Ok(found) => format!("got {} values", found.len()),
        Err(err) => ComponentError::from(err).to_string(),
    }
}

fn lines(pairs: impl IntoIterator<Item = (String, String)>) -> String {
    pairs
        .into_iter()
        .map(|(key, value)| format!("{key}={value}\n"))
        .collect()
}
