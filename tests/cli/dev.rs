//! `airssys-wasm dev`: a real cargo project built for wasm32-wasip2,
//! served, edited, broken and fixed while a client keeps calling it.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use airssys_wasm_test_guests::ECHO;

use crate::Cli;
use crate::serve::{exchange, get};

/// A handler answering its input with the header `x-build: MARK`.
fn source(mark: &str) -> String {
    format!(
        r#"//! A component edited by the test.
use airssys_wasm_sdk::{{ComponentError, Handler, Message, component}};

#[component(name = "greeter", version = "0.3.0", description = "Edited by the test")]
struct Greeter;

impl Handler for Greeter {{
    fn execute(input: Message) -> Result<Message, ComponentError> {{
        Ok(Message {{
            payload: input.payload,
            content_type: input.content_type,
            headers: vec![("x-build".to_owned(), "{mark}".to_owned())],
        }})
    }}
}}
"#
    )
}

/// A crate of its own (its own workspace), on the repository's SDK, with
/// the guest workspace's lock file and release profile so the guests'
/// build output is reused.
fn project(dir: &Path) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            r#"[package]
name = "greeter"
version = "0.3.0"
edition = "2024"

[lib]
crate-type = ["cdylib"]

[dependencies]
airssys-wasm-sdk = {{ path = "{}" }}

[profile.release]
opt-level = "s"
strip = true

[workspace]
"#,
            repo.join("crates/sdk").display()
        ),
    )
    .unwrap();
    std::fs::copy(repo.join("examples/Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    std::fs::write(dir.join("src/lib.rs"), source("one")).unwrap();
}

/// Lines the process prints, as they come, and all it wrote to stderr.
struct Lines {
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Lines {
    /// Wait (up to 3 minutes: a build) for a line with `text`; fail on a
    /// line with `unless` first.
    fn wait_for(&mut self, text: &str, unless: Option<&str>) -> String {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no line with {text:?} in {:#?}", self.seen));
            self.seen.push(line.clone());
            if line.contains(text) {
                return line;
            }
            if let Some(bad) = unless {
                assert!(
                    !line.contains(bad),
                    "{line} before {text:?}: {:#?}",
                    self.seen
                );
            }
        }
    }
}

/// `dev DIR` on ports the system picks, with `extra` flags, building in
/// `target`; what it prints comes line by line.
fn start(cli: &Cli, dir: &Path, target: &Path, extra: &[&str]) -> (std::process::Child, Lines) {
    let mut args = vec![
        "dev",
        dir.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let mut dev = cli
        .cmd(&args)
        .env("CARGO_TARGET_DIR", target)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let out = BufReader::new(dev.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let stderr = Arc::new(Mutex::new(String::new()));
    let (err, keep) = (BufReader::new(dev.stderr.take().unwrap()), stderr.clone());
    std::thread::spawn(move || {
        for line in err.lines().map_while(Result::ok) {
            let mut all = keep.lock().unwrap();
            all.push_str(&line);
            all.push('\n');
        }
    });
    (
        dev,
        Lines {
            rx,
            seen: Vec::new(),
            stderr,
        },
    )
}

#[test]
fn dev_rebuilds_and_upgrades_on_every_change_without_failing_a_request() {
    let cli = Cli::new();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("greeter");
    project(&dir);
    // The guests' target directory: the SDK and its dependencies are built
    // there already.
    let guests = Path::new(ECHO).ancestors().nth(3).unwrap();
    let (mut dev, mut lines) = start(&cli, &dir, guests, &["--keep", "2"]);
    let addr = |line: String| {
        line.split("http://")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let ingress = addr(lines.wait_for("ingress", None));
    let admin = addr(lines.wait_for("admin", None));
    let first = lines.wait_for("built greeter", Some("failed"));
    assert!(
        first.starts_with("built greeter 0.3.0-dev.1 in ")
            && first.ends_with(&format!("serving it on http://{ingress}/greeter")),
        "{first}"
    );

    // A client calls all along; every answer must be a 200 from a build.
    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(Vec::<(u16, String)>::new()));
    let client = {
        let (stop, answers, ingress) = (stop.clone(), answers.clone(), ingress.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let (status, head, body) = exchange(&ingress, "POST", "/greeter", "hi");
                let mark = head
                    .lines()
                    .find_map(|l| l.strip_prefix("x-build: "))
                    .unwrap_or("-")
                    .to_string();
                assert_eq!(body, if status == 200 { "hi" } else { &body });
                answers.lock().unwrap().push((status, mark));
            }
        })
    };
    let mark_now = || {
        let (status, head, _) = exchange(&ingress, "POST", "/greeter", "x");
        assert_eq!(status, 200);
        head.lines()
            .find_map(|l| l.strip_prefix("x-build: "))
            .unwrap()
            .to_string()
    };
    assert_eq!(mark_now(), "one");

    // An edit: rebuilt, published as the next dev version, upgraded.
    std::fs::write(dir.join("src/lib.rs"), source("two")).unwrap();
    lines.wait_for("built greeter 0.3.0-dev.2", Some("failed"));
    assert_eq!(mark_now(), "two");

    // A broken edit: the last good version keeps serving.
    std::fs::write(dir.join("src/lib.rs"), "this is not rust").unwrap();
    lines.wait_for("the build failed", Some("built"));
    lines.wait_for("greeter 0.3.0-dev.2 keeps serving", None);
    // cargo's own message is on the terminal.
    let said = lines.stderr.lock().unwrap().clone();
    assert!(said.contains("error: expected"), "{said}");
    assert_eq!(mark_now(), "two");

    // Fixed, twice: with --keep 2 the oldest versions are collected.
    std::fs::write(dir.join("src/lib.rs"), source("three")).unwrap();
    lines.wait_for("built greeter 0.3.0-dev.3", Some("failed"));
    assert_eq!(mark_now(), "three");
    std::fs::write(dir.join("src/lib.rs"), source("four")).unwrap();
    lines.wait_for("built greeter 0.3.0-dev.4", Some("failed"));
    lines.wait_for("collected greeter@0.3.0-dev.2", None);
    assert_eq!(mark_now(), "four");
    // Back to an earlier source: the same bytes, the same version again.
    std::fs::write(dir.join("src/lib.rs"), source("three")).unwrap();
    lines.wait_for("built greeter 0.3.0-dev.3", Some("failed"));
    assert_eq!(mark_now(), "three");

    stop.store(true, Ordering::SeqCst);
    client.join().unwrap();
    let answers = answers.lock().unwrap();
    let failed: Vec<_> = answers.iter().filter(|(s, _)| *s != 200).collect();
    assert!(failed.is_empty(), "{failed:?}");
    for mark in ["one", "two", "three", "four"] {
        assert!(
            answers.iter().any(|(_, m)| m == mark),
            "no answer from build {mark} among {}",
            answers.len()
        );
    }

    // The metrics keep the versions serving, not the retired ones.
    let (status, metrics) = get(&admin, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains(
            r#"airssys_requests_total{component="greeter",version="0.3.0-dev.3",status="200"}"#
        ),
        "{metrics}"
    );
    for retired in ["dev.1", "dev.2"] {
        assert!(
            !metrics.contains(&format!(r#"version="0.3.0-{retired}""#)),
            "{retired} in {metrics}"
        );
    }

    let _ = std::process::Command::new("kill")
        .args(["-TERM", &dev.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(dev.wait().unwrap().code(), Some(0));
    lines.wait_for("stopped", None);

    // Started again with another route: the same bytes, the same version,
    // deployed again because the flags changed.
    let (mut dev, mut lines) = start(&cli, &dir, guests, &["--route", "/hi"]);
    let ingress = addr(lines.wait_for("ingress", None));
    let again = lines.wait_for("built greeter", Some("failed"));
    assert!(
        again.starts_with("built greeter 0.3.0-dev.3 in ")
            && again.ends_with(&format!("serving it on http://{ingress}/hi")),
        "{again}"
    );
    let (status, _, body) = exchange(&ingress, "POST", "/hi", "again");
    assert_eq!((status, body.as_str()), (200, "again"));
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &dev.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(dev.wait().unwrap().code(), Some(0));
}
