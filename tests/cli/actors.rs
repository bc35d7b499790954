//! An actor deployed through a real `serve` process: messages with
//! `request` and `send`, its instances in `status` and `/metrics`, its
//! state across a stop and start of the host and across an upgrade that
//! migrates it, and an upgrade whose `migrate` fails.

use std::io::{BufReader, Read as _};
use std::path::Path;
use std::process::{Child, ChildStdout, Stdio};
use std::time::{Duration, Instant};

use airssys_wasm_test_guests::ACTOR;

use crate::serve::{banner, get};
use crate::{Cli, stderr, stdout};

/// A `serve` process on `st`, on free ports.
struct Serving {
    child: Child,
    out: BufReader<ChildStdout>,
    admin: String,
    token: String,
}

impl Serving {
    fn start(cli: &Cli, st: &Path) -> Self {
        let mut child = cli
            .cmd(&[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--state-dir",
                st.to_str().unwrap(),
            ])
            .env_remove("AIRSSYS_HOST")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let (_, _, admin) = banner(&mut out, 4);
        let token = std::fs::read_to_string(st.join("admin.token"))
            .unwrap()
            .trim()
            .to_string();
        Self {
            child,
            out,
            admin,
            token,
        }
    }

    /// Run the CLI against this host; its stdout, or a panic with stderr.
    fn ok(&self, cli: &Cli, work: &Path, args: &[&str]) -> String {
        let o = self.run(cli, work, args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        stdout(&o)
    }

    fn run(&self, cli: &Cli, work: &Path, args: &[&str]) -> std::process::Output {
        cli.cmd(args)
            .env("AIRSSYS_HOST", format!("http://{}", self.admin))
            .env("AIRSSYS_TOKEN", &self.token)
            .env_remove("AIRSSYS_STATE_DIR")
            .current_dir(work)
            .output()
            .unwrap()
    }

    /// What the actor answers to `command`, asked with `request`.
    fn ask(&self, cli: &Cli, work: &Path, command: &str) -> String {
        std::fs::write(work.join("msg.txt"), command).unwrap();
        self.ok(cli, work, &["request", "ledger", "--input", "msg.txt"])
    }

    /// SIGTERM, and the clean stop it gives.
    fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert_eq!(self.child.wait().unwrap().code(), Some(0));
        let mut rest = String::new();
        self.out.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "stopped\n");
    }
}

#[test]
fn an_actor_through_a_host_keeps_its_state_across_restarts_and_upgrades() {
    let cli = Cli::new();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let st = w.join("st");
    std::fs::copy(ACTOR, w.join("actor.wasm")).unwrap();
    let host = Serving::start(&cli, &st);
    for version in ["0.1.0", "0.2.0", "0.3.0"] {
        let args = [
            "publish",
            "actor.wasm",
            "--name",
            "ledger",
            "--version",
            version,
            "--allow-unsigned",
        ];
        host.ok(&cli, w, &args);
    }
    let grants = [
        "--allow",
        "system-call:state",
        "--allow",
        "system-call:config",
        "--hosting",
        "actor",
        "--instances",
        "2",
    ];
    let mut deploy = vec!["deploy", "ledger@0.1.0"];
    deploy.extend(grants);
    host.ok(&cli, w, &deploy);
    // Two instances, one state: each count goes to the instance with the
    // most room, and the state counts them all.
    assert_eq!(host.ask(&cli, w, "count"), "memory 1 state 1");
    assert_eq!(host.ask(&cli, w, "count"), "memory 1 state 2");
    std::fs::write(w.join("msg.txt"), "count").unwrap();
    assert_eq!(
        host.ok(&cli, w, &["send", "ledger", "--input", "msg.txt"]),
        "sent to ledger\n"
    );
    // `status` shows the instances once the message sent was handled.
    let start = Instant::now();
    let status = loop {
        let s = host.ok(&cli, w, &["status"]);
        if s.contains("3 message(s) handled") || start.elapsed() > Duration::from_secs(10) {
            break s;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.contains(
            "actor: 2/2 instance(s) running (one-for-one), mailboxes 0/128, 3 message(s) handled, 0 restart(s)"
        ),
        "{status}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&host.ok(&cli, w, &["status", "--json"])).unwrap();
    assert_eq!(json[0]["spec"]["hosting"], "actor");
    assert_eq!(json[0]["actors"]["running"], 2);
    assert_eq!(json[0]["state_usage"]["keys"], 2, "inits and count");
    // And `/metrics`.
    let (code, metrics) = get(&host.admin, "/metrics");
    assert_eq!(code, 200);
    let labels = r#"{component="ledger",version="0.1.0"}"#;
    for line in [
        format!("airssys_instances{labels} 2"),
        format!("airssys_actor_messages_processed_total{labels} 3"),
        format!("airssys_actor_mailbox_depth{labels} 0"),
        format!("airssys_actor_restarts_total{labels} 0"),
    ] {
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
    assert!(
        metrics.contains(&format!("airssys_state_bytes{labels} ")),
        "{metrics}"
    );
    // A trap: the caller gets it, the instance is restarted.
    std::fs::write(w.join("panic.txt"), "panic").unwrap();
    let o = host.run(&cli, w, &["request", "ledger", "--input", "panic.txt"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("asked to panic"), "{}", stderr(&o));
    let start = Instant::now();
    while !host.ok(&cli, w, &["status"]).contains("1 restart(s)") {
        assert!(start.elapsed() < Duration::from_secs(10), "no restart");
        std::thread::sleep(Duration::from_millis(50));
    }
    host.stop();

    // A new host process: the state is there; each instance ran `shutdown`
    // when the last one stopped.
    let host = Serving::start(&cli, &st);
    assert_eq!(host.ask(&cli, w, "get shutdowns"), "2");
    assert_eq!(host.ask(&cli, w, "count"), "memory 1 state 4");

    // An upgrade migrates the state: the new version's `migrate` ran
    // before it took messages, and the count goes on.
    let mut upgrade = vec!["upgrade", "ledger@0.2.0"];
    upgrade.extend(grants);
    host.ok(&cli, w, &upgrade);
    assert_eq!(host.ask(&cli, w, "get migrated-from"), "0.1.0");
    assert_eq!(host.ask(&cli, w, "count"), "memory 1 state 5");
    // A `migrate` that fails aborts the upgrade; 0.2.0 serves on.
    let mut upgrade = vec!["upgrade", "ledger@0.3.0", "--config", "fail-migrate=true"];
    upgrade.extend(grants);
    let o = host.run(&cli, w, &upgrade);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("refused because `fail-migrate` is `true`"),
        "{}",
        stderr(&o)
    );
    assert_eq!(host.ask(&cli, w, "count"), "memory 1 state 6");
    let status = host.ok(&cli, w, &["status"]);
    assert!(
        status.contains(&format!("{:<20} 0.2.0", "ledger")),
        "{status}"
    );
    host.stop();
}
