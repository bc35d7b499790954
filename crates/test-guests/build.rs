//! Builds every guest component (the workspace `examples/`, which also holds
//! `tests/guests/*`) for `wasm32-wasip2` with one nested `cargo build`, and
//! writes `guests.rs` to `OUT_DIR` with one path constant per component.
//!
//! The nested build goes to `<target dir>/guests`, so it never waits on the
//! lock of the outer build. Cargo reruns this script when a source file of a
//! guest changes: the dep-info (`.d`) file written next to each `.wasm`
//! lists every local source the component was built from (guest crates, the
//! SDK, its macros and the WIT files), the same way wasmtime's
//! `test-programs/artifacts` does.

use std::collections::BTreeSet;
use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

/// One guest: the constant's name, the file cargo writes, and its doc.
struct Guest {
    constant: &'static str,
    file: &'static str,
    doc: &'static str,
}

const GUESTS: &[Guest] = &[
    Guest {
        constant: "ECHO",
        file: "echo.wasm",
        doc: "`examples/echo`: an SDK component that answers its input's payload and content type, with the header `x-echoed-by: echo`, and logs one info line.",
    },
    Guest {
        constant: "COUNTER",
        file: "counter.wasm",
        doc: "`examples/counter`: an SDK component that increments the state key `count` and answers the new count as text; requires `system-call:state`.",
    },
    Guest {
        constant: "HELLO_HTTP",
        file: "hello_http.wasm",
        doc: "`examples/hello-http`: a `wasi:http/proxy` component (wstd) that answers `Hello from airssys-wasm! <path>`.",
    },
    Guest {
        constant: "HELLO_CLI",
        file: "hello-cli.wasm",
        doc: "`examples/hello-cli`: a `wasi:cli/command` that prints its arguments one per line, one line to stderr, and exits with N on `--exit N`.",
    },
    Guest {
        constant: "MISBEHAVE",
        file: "misbehave.wasm",
        doc: "`tests/guests/misbehave`: an SDK component that misbehaves as its payload says (`loop`, `grow`, `recurse`, `panic`, `output`, `sleep`, `files`, `log-flood`, `state-big`, `config`, `exit`, `env`, `echo`, `state-keys`...); its `init` fails when config `fail-init` is `true`, its `migrate` when `fail-migrate` is `true`.",
    },
    Guest {
        constant: "RELAY",
        file: "relay.wasm",
        doc: "`tests/guests/relay`: an SDK component that asks other components through the host (`relay TARGET REST`, `tell TARGET REST`) and otherwise counts its calls in its state; for messaging tests.",
    },
    Guest {
        constant: "ACTOR",
        file: "actor.wasm",
        doc: "`tests/guests/actor`: an SDK component for actor hosting: `count` (a counter in memory and one in state, answered as `memory M state S`), `panic`, `count-then-panic`, `sleep MS`, `get KEY`, `error`; `init` and `shutdown` count themselves in state (`inits`, `shutdowns`), `migrate` stores `migrated-from`.",
    },
    Guest {
        constant: "PINGER",
        file: "pinger.wasm",
        doc: "`tests/guests/pinger`: an SDK component that times messages to another component from the inside (`ping N TARGET`: N requests, their p50 and p99; `fan N TARGET`: N sends and a request, their total); for the actor benchmark.",
    },
    Guest {
        constant: "LEGACY",
        file: "legacy.wasm",
        doc: "`tests/guests/legacy`: a component built with wit-bindgen against the contract as shipped at 0.1.0 (`wit/0.1.0`): `ask TARGET REST` requests of TARGET and answers its answer or `error: <case>: <detail>`; anything else is echoed.",
    },
    Guest {
        constant: "FLAKY",
        file: "flaky.wasm",
        doc: "`tests/guests/flaky`: an SDK component that keeps no state and answers `ok`, fails when config `fail-calls` is `true`, and waits config `delay-ms` first; for canary tests.",
    },
    Guest {
        constant: "ESCAPE",
        file: "escape.wasm",
        doc: "`tests/guests/escape`: a `wasi:cli/command` that tries one way out of its sandbox per run (`cat`, `write`, `ls`, `env`, `stdin`, `fetch`, `connect`, `resolve`, `listen`, `udp`) and prints what it got or `error: ...`.",
    },
    Guest {
        constant: "LEDGER_CLIENT",
        file: "ledger-client.wasm",
        doc: "`examples/embedder/guest`: a `wasi:cli/command` that prints the balance of each account in its arguments, read through `acme:ledger/accounts`, the embedder example's custom capability.",
    },
    Guest {
        constant: "TYPES",
        file: "types.wasm",
        doc: "`tests/guests/types`: a plain wit-bindgen component (`test:types/api` and a top-level `hello`) with one function per WIT type family, for dynamic calls.",
    },
];

fn main() {
    if let Err(message) = run() {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(var("CARGO_MANIFEST_DIR")?);
    let repo = manifest_dir
        .parent()
        .and_then(Path::parent)
        .ok_or("crates/test-guests is not two levels below the repository root")?
        .to_path_buf();
    let target_dir = match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => repo.join("target"),
    };
    let guests_dir = target_dir.join("guests");
    let manifest = repo.join("examples").join("Cargo.toml");

    build(&manifest, &guests_dir)?;

    let out = guests_dir.join(TARGET).join("release");
    let mut generated = String::new();
    let mut inputs = BTreeSet::new();
    for guest in GUESTS {
        let wasm = out.join(guest.file);
        if !wasm.is_file() {
            return Err(format!(
                "the guest build finished but `{}` is missing; is `{}` still a member of {}?",
                wasm.display(),
                guest.file,
                manifest.display()
            ));
        }
        read_dep_info(&wasm.with_extension("d"), &mut inputs)?;
        let path = wasm
            .to_str()
            .ok_or_else(|| format!("`{}` is not UTF-8", wasm.display()))?;
        // Infallible: writing to a String.
        let _ = writeln!(
            generated,
            "/// {}\npub const {}: &str = {path:?};\n",
            guest.doc, guest.constant
        );
    }
    let all: Vec<String> = GUESTS
        .iter()
        .map(|guest| guest.constant.to_owned())
        .collect();
    let _ = writeln!(
        generated,
        "/// Every guest component above, in the order listed.\npub const ALL: &[&str] = &[{}];",
        all.join(", ")
    );

    // The members' manifests; not the whole `examples/` directory, which may
    // hold a `target/` of its own.
    let examples = repo.join("examples");
    let members = std::fs::read_dir(&examples)
        .map_err(|err| format!("cannot list {}: {err}", examples.display()))?;
    for member in members.flatten() {
        inputs.insert(member.path().join("Cargo.toml"));
    }
    inputs.extend([
        manifest.clone(),
        repo.join("examples").join("Cargo.lock"),
        repo.join("wit"),
        repo.join("tests").join("guests"),
        repo.join("crates").join("sdk").join("Cargo.toml"),
        repo.join("crates").join("sdk-macros").join("Cargo.toml"),
        manifest_dir.join("build.rs"),
    ]);
    for path in &inputs {
        // A path that does not exist would make cargo rerun the script on
        // every build.
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }

    let out_dir = PathBuf::from(var("OUT_DIR")?);
    std::fs::write(out_dir.join("guests.rs"), generated)
        .map_err(|err| format!("cannot write guests.rs to {}: {err}", out_dir.display()))
}

fn var(name: &str) -> Result<String, String> {
    env::var(name).map_err(|_| format!("cargo did not set `{name}`"))
}

/// One `cargo build` of the whole guest workspace.
fn build(manifest: &Path, target_dir: &Path) -> Result<(), String> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--release")
        .arg("--target")
        .arg(TARGET)
        .arg("--workspace")
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir);
    // The outer build's flags and wrappers are for the host: clippy-driver,
    // sccache, coverage flags and a forced target must not reach the guests.
    for name in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_BUILD_RUSTC_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_TARGET_DIR",
    ] {
        command.env_remove(name);
    }
    let output = command
        .output()
        .map_err(|err| format!("cannot run `cargo` to build the guest components: {err}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let hint = if stderr.contains("wasm32-wasip2") && stderr.contains("target may not be installed")
        || stderr.contains("can't find crate for `core`")
        || stderr.contains("can't find crate for `std`")
    {
        "the wasm32-wasip2 target is missing: run `rustup target add wasm32-wasip2`"
    } else {
        "if the wasm32-wasip2 target is missing, run `rustup target add wasm32-wasip2`"
    };
    Err(format!(
        "building the guest components failed ({}):\n\n{stderr}\n{hint}\n(command: {command:?})",
        output.status
    ))
}

/// Collect every file the dep-info file lists. Its format is
/// Makefile-like: `target: dep dep ...`, spaces in paths escaped as `\ `.
fn read_dep_info(dep_info: &Path, inputs: &mut BTreeSet<PathBuf>) -> Result<(), String> {
    let text = std::fs::read_to_string(dep_info).map_err(|err| {
        format!(
            "cannot read the dep-info file {}: {err}",
            dep_info.display()
        )
    })?;
    for line in text.lines() {
        let Some((_, deps)) = line.split_once(": ") else {
            continue;
        };
        let mut path = String::new();
        let mut chars = deps.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.peek() == Some(&' ') => {
                    path.push(' ');
                    chars.next();
                }
                ' ' => {
                    if !path.is_empty() {
                        inputs.insert(PathBuf::from(std::mem::take(&mut path)));
                    }
                }
                other => path.push(other),
            }
        }
        if !path.is_empty() {
            inputs.insert(PathBuf::from(path));
        }
    }
    Ok(())
}
