//! The `airssys-wasm` binary end to end, on real components.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests and their helpers fail by panicking"
)]

mod actors;
mod audit;
mod deploy;
mod dev;
mod escape;
mod manifest;
mod serve;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use airssys_wasm_test_guests::{COUNTER, ECHO, HELLO_CLI, HELLO_HTTP, MISBEHAVE, TYPES};

struct Cli {
    cache: tempfile::TempDir,
}

impl Cli {
    fn new() -> Self {
        Self {
            cache: tempfile::tempdir().unwrap(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_airssys-wasm"));
        c.args(args)
            .env("AIRSSYS_CACHE_DIR", self.cache.path())
            .env_remove("RUST_LOG");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn run_with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        with_stdin(self.cmd(args), input)
    }
}

/// `call` of the misbehave guest with the grants it requires, the payload
/// on stdin, and `extra` flags.
fn misbehave(extra: &[&'static str]) -> Vec<&'static str> {
    let mut args = vec![
        "call",
        MISBEHAVE,
        "--allow",
        "state",
        "--allow",
        "config",
        "--allow",
        "messaging:send:other",
        "--allow",
        "messaging:publish:news",
        "--input",
        "-",
    ];
    args.extend_from_slice(extra);
    args
}

/// Run `cmd` with `input` on its stdin.
fn with_stdin(mut cmd: Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A user error is one `error:` line (plus the guest's own stderr when it
/// trapped), never a panic or a backtrace.
fn assert_clean_error(o: &Output, code: i32, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(needle), "expected `{needle}` in: {err}");
    // The host never panics; a guest's own panic message may be quoted.
    assert!(!err.contains("thread 'main' panicked"), "{err}");
}

fn sha256_hex(path: &str) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    stdout(&out).split_whitespace().next().unwrap().to_string()
}

#[test]
fn run_passes_args_and_propagates_the_exit_status() {
    let cli = Cli::new();
    let out = cli.run(&["run", HELLO_CLI, "--", "first", "second arg"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("first\n") && text.contains("second arg\n"),
        "{text}"
    );
    // WASI 0.2's exit carries failure, not the number (as with `wasmtime run`).
    let out = cli.run(&["run", HELLO_CLI, "--", "--exit", "9"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn call_writes_the_payload_to_stdout() {
    let cli = Cli::new();
    let out = cli.run_with_stdin(&["call", ECHO, "--input", "-"], b"ping \xff");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(out.stdout, b"ping \xff");
    assert!(
        stderr(&out).contains("[info"),
        "the guest's log goes to stderr: {}",
        stderr(&out)
    );
}

#[test]
fn call_json_has_headers_logs_and_timings() {
    let cli = Cli::new();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.json");
    std::fs::write(&input, br#"{"a":1}"#).unwrap();
    let out = cli.run(&[
        "call",
        ECHO,
        "--input",
        input.to_str().unwrap(),
        "--content-type",
        "application/json",
        "--header",
        "x-id=7",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["payload"], r#"{"a":1}"#);
    assert_eq!(v["content_type"], "application/json");
    let headers = v["headers"].as_array().unwrap();
    assert!(
        headers.contains(&serde_json::json!(["x-echoed-by", "echo"])),
        "{headers:?}"
    );
    assert!(v["timings"]["instantiate_us"].is_u64());
    assert_eq!(v["logs"].as_array().unwrap().len(), 1);
}

#[test]
fn call_a_function_with_json_or_wave_arguments() {
    let cli = Cli::new();
    let out = cli.run(&["call", TYPES, "--function", "sum", "--args", "[[1, 2, 39]]"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "42");
    let out = cli.run(&[
        "call",
        TYPES,
        "--function",
        "echo-record",
        "--args",
        r#"[{"name":"n","origin":{"x":1,"y":2}}]"#,
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"name": "n", "origin": {"x": 1, "y": 2}, "label": null})
    );
    let out = cli.run(&["call", TYPES, "--invoke", "add(40, 2)"]);
    assert_eq!(stdout(&out).trim(), "42", "{}", stderr(&out));
}

#[test]
fn call_with_config_and_state() {
    let cli = Cli::new();
    let out = cli.run_with_stdin(&misbehave(&["--config", "greeting=hi there"]), b"config");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("greeting=hi there"),
        "{}",
        stdout(&out)
    );
    let out = cli.run(&["call", COUNTER]);
    assert_clean_error(&out, 3, "grant it with `--allow system-call:state`");
    let out = cli.run(&["call", COUNTER, "--allow", "system-call:state"]);
    assert_eq!(stdout(&out), "1");
}

#[test]
fn inspect_shows_digest_world_metadata_and_wit() {
    let cli = Cli::new();
    let out = cli.run(&["inspect", ECHO]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("sha256:{}", sha256_hex(ECHO))),
        "{text}"
    );
    assert!(text.contains("world:        airssys:component"), "{text}");
    assert!(text.contains("name:         echo"), "{text}");
    assert!(
        text.contains("export airssys:component/handler@0.2.0;"),
        "{text}"
    );

    let out = cli.run(&["inspect", COUNTER, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["capabilities"], serde_json::json!(["system-call:state"]));
    assert_eq!(v["required"], serde_json::json!(["system-call:state"]));
    assert!(
        v["refused"]
            .as_str()
            .unwrap()
            .contains("--allow system-call:state"),
        "{v}"
    );
    let granted = cli.run(&[
        "inspect", COUNTER, "--json", "--allow", "state", "--deny", "clock",
    ]);
    let g: serde_json::Value = serde_json::from_slice(&granted.stdout).unwrap();
    let effective: Vec<&str> = g["effective"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(effective.contains(&"system-call:state"), "{g}");
    assert!(!effective.contains(&"system-call:clock"), "denied: {g}");
    assert!(effective.contains(&"system-call:random"), "ambient: {g}");
    assert_eq!(v["kind"], "airssys");
    assert!(
        v["imports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i.as_str().unwrap().starts_with("wasi:keyvalue/"))
    );
    assert!(
        v["wit"]
            .as_str()
            .unwrap()
            .contains("import wasi:keyvalue/store@0.2.0-draft;")
    );

    let out = cli.run(&["inspect", HELLO_HTTP, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "http-proxy");
    assert_eq!(v["metadata"], serde_json::Value::Null);
}

#[test]
fn compile_fills_the_cache_once() {
    let cli = Cli::new();
    let out = cli.run(&["compile", ECHO]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("compiled echo.wasm"), "{text}");
    let entry = text
        .lines()
        .find_map(|l| l.strip_prefix("cached at "))
        .unwrap();
    assert!(
        std::path::Path::new(entry).starts_with(cli.cache.path()),
        "{entry}"
    );
    assert!(std::path::Path::new(entry).exists());
    let out = cli.run(&["compile", ECHO, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["source"], "cached");
}

#[test]
fn bad_inputs_are_one_clear_line() {
    let cli = Cli::new();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.wasm");
    assert_clean_error(
        &cli.run(&["call", missing.to_str().unwrap()]),
        3,
        "cannot read",
    );
    let empty = dir.path().join("empty.wasm");
    std::fs::write(&empty, b"").unwrap();
    assert_clean_error(
        &cli.run(&["inspect", empty.to_str().unwrap()]),
        3,
        "the file is empty",
    );
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, b"these are not the bytes you are looking for").unwrap();
    assert_clean_error(&cli.run(&["run", text.to_str().unwrap()]), 3, "\\0asm");
    let truncated = dir.path().join("truncated.wasm");
    let echo = std::fs::read(ECHO).unwrap();
    std::fs::write(&truncated, &echo[..echo.len() / 3]).unwrap();
    assert_clean_error(
        &cli.run(&["call", truncated.to_str().unwrap()]),
        3,
        "is the file complete?",
    );
    assert_clean_error(
        &cli.run(&["call", TYPES, "--function", "add", "--args", "[1, true]"]),
        3,
        "parameter `b`",
    );
    assert_clean_error(
        &cli.run(&["call", TYPES, "--function", "add", "--args", "[1,"]),
        3,
        "--args is not valid JSON",
    );
    assert_clean_error(&cli.run(&["run", ECHO]), 3, "not wasi:cli/command");
}

#[test]
fn a_misbehaving_component_fails_cleanly() {
    let cli = Cli::new();
    let out = cli.run_with_stdin(&misbehave(&[]), b"panic");
    assert_clean_error(&out, 1, "trapped");
    assert!(
        stderr(&out).contains("misbehave: asked to panic"),
        "{}",
        stderr(&out)
    );
    let out = cli.run_with_stdin(&misbehave(&["--timeout", "200ms"]), b"loop");
    assert_clean_error(&out, 1, "timed out after 200 ms");
    let out = cli.run_with_stdin(&misbehave(&["--memory", "8MiB"]), b"grow");
    assert_clean_error(&out, 1, "memory limit exceeded");
    let out = cli.run_with_stdin(&misbehave(&["--fuel", "1000000"]), b"loop");
    assert_clean_error(&out, 1, "ran out of fuel");
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let cli = Cli::new();
    for args in [
        &["inspect", ECHO][..],
        &["call", TYPES, "--invoke", "sum([1])"][..],
    ] {
        let mut child = cli
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn no_cache_wins_over_the_environment() {
    let cli = Cli::new();
    let out = cli.run(&["--no-cache", "call", COUNTER, "--allow", "state"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_dir(cli.cache.path()).unwrap().count(),
        0,
        "nothing written to the cache"
    );
}

#[test]
fn run_passes_its_arguments_and_checks_file_grants() {
    let cli = Cli::new();
    // Arguments after `--` are granted by writing them.
    let out = cli.run_with_stdin(&["run", HELLO_CLI, "--", "x"], b"secret input");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("x\n"));
    let out = cli.run(&[
        "run",
        HELLO_CLI,
        "--allow",
        "file-read:/definitely/not/here",
    ]);
    assert_clean_error(&out, 3, "file-read:/definitely/not/here");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.txt");
    std::fs::write(&file, b"x").unwrap();
    let out = cli.run(&["run", HELLO_CLI, "--allow-read", file.to_str().unwrap()]);
    assert_clean_error(&out, 3, "grant its directory");
}

#[test]
fn help_lists_the_exit_codes() {
    let out = Cli::new().run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    for needle in [
        "Exit status:",
        "run",
        "call",
        "inspect",
        "compile",
        "AIRSSYS_CACHE_DIR",
    ] {
        assert!(text.contains(needle), "missing {needle}: {text}");
    }
    let out = Cli::new().run(&["call"]);
    assert_eq!(out.status.code(), Some(2));
}
