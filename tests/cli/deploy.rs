//! `publish` and `audit` on a state directory, as a user runs them.

use airssys_wasm_test_guests::{COUNTER, ECHO};

use crate::{Cli, assert_clean_error, stderr, stdout};

/// Run `airssys-wasm --state-dir S ARGS`, with `input` on stdin if given.
fn on(cli: &Cli, s: &str, args: &[&str], input: Option<&[u8]>) -> std::process::Output {
    let mut all = vec!["--state-dir", s];
    all.extend_from_slice(args);
    match input {
        Some(i) => cli.run_with_stdin(&all, i),
        None => cli.run(&all),
    }
}

#[test]
fn publish_is_immutable_and_audited() {
    let cli = Cli::new();
    let state = tempfile::tempdir().unwrap();
    let s = state.path().join("state");
    let s = s.to_str().unwrap();
    let run = |args: &[&str]| on(&cli, s, args, None);
    let publish = |file: &str, version: &str| {
        run(&[
            "publish",
            file,
            "--name",
            "echo",
            "--version",
            version,
            "--allow-unsigned",
        ])
    };
    let out = publish(ECHO, "0.1.0");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("published echo 0.1.0 (sha256:"),
        "{}",
        stdout(&out)
    );
    let out = publish(ECHO, "0.1.0");
    assert!(
        stdout(&out).contains("already published with these bytes"),
        "{}",
        stdout(&out)
    );
    let out = publish(COUNTER, "0.1.0");
    assert_clean_error(&out, 3, "versions are immutable");
    let out = run(&["publish", ECHO, "--name", "echo", "--version", "0.2.0"]);
    assert_clean_error(&out, 3, "is unsigned: sign it");

    let out = run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let verified = stdout(&out);
    assert!(verified.starts_with("audit trail intact: 1 record(s), head "));
    // The head, to record elsewhere: the same hash verify ends on.
    let head: serde_json::Value =
        serde_json::from_str(&stdout(&run(&["audit", "head", "--json"]))).unwrap();
    assert_eq!(head["seq"], 1);
    let hash = head["hash"].as_str().unwrap();
    assert!(verified.trim_end().ends_with(hash), "{verified} vs {hash}");
    assert_eq!(stdout(&run(&["audit", "head"])), format!("1 {hash}\n"));
    let out = run(&["audit", "list", "--json"]);
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["action"], "publish");
    assert_eq!(lines[0]["subject"], "echo@0.1.0");
    assert!(lines[0]["actor"].as_str().unwrap().starts_with("cli:"));

    // Cutting the head's record off behind the tool's back is caught.
    std::fs::write(state.path().join("state/audit.head"), "2 00\n").unwrap();
    let out = run(&["audit", "verify", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["ok"], false);
    assert!(stderr(&out).contains("cut off the end"), "{}", stderr(&out));
}

/// The walk of the deployment issue, as a user types it (with the counter
/// standing in for a second version of echo, so the upgrade is visible).
#[test]
fn publish_deploy_call_upgrade_history_rollback_verify() {
    let cli = Cli::new();
    let state = tempfile::tempdir().unwrap();
    let s = state.path().join("state");
    let s = s.to_str().unwrap();
    let run = |args: &[&str], input: Option<&[u8]>| on(&cli, s, args, input);
    let ok = |o: &std::process::Output| {
        assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
        stdout(o)
    };
    ok(&run(
        &[
            "publish",
            ECHO,
            "--name",
            "echo",
            "--version",
            "0.1.0",
            "--allow-unsigned",
        ],
        None,
    ));
    let out = ok(&run(&["deploy", "echo@0.1.0"], None));
    assert!(
        out.starts_with("deployed echo 0.1.0 (deployment 1, sha256:"),
        "{out}"
    );
    assert_eq!(
        ok(&run(&["call", "echo", "--input", "-"], Some(b"hi"))),
        "hi"
    );
    ok(&run(
        &[
            "publish",
            COUNTER,
            "--name",
            "echo",
            "--version",
            "0.2.0",
            "--allow-unsigned",
        ],
        None,
    ));
    // The diff says what the upgrade changes: the counter imports the
    // state store (a grant to give) and no longer logs.
    let changes: serde_json::Value = serde_json::from_str(&ok(&run(
        &["diff", "echo", "0.1.0", "0.2.0", "--json"],
        None,
    )))
    .unwrap();
    let classes: Vec<&str> = changes
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["class"].as_str().unwrap())
        .collect();
    assert!(
        classes.contains(&"needs-grant") && !classes.contains(&"breaking"),
        "{changes}"
    );
    // Validation refuses the upgrade (a requirement not granted); 0.1.0
    // keeps serving.
    let out = run(&["upgrade", "echo@0.2.0", "--strategy", "immediate"], None);
    assert_clean_error(&out, 3, "--allow system-call:state");
    assert_eq!(
        ok(&run(&["call", "echo", "--input", "-"], Some(b"still"))),
        "still"
    );
    let out = ok(&run(
        &[
            "upgrade",
            "echo@0.2.0",
            "--strategy",
            "immediate",
            "--allow",
            "state",
            "--config",
            "api-token=s3cret",
        ],
        None,
    ));
    assert!(
        out.starts_with("upgraded to echo 0.2.0 (deployment 3"),
        "{out}"
    );
    // The counter's state is kept in the state directory: each process's
    // call finds the last one's.
    assert_eq!(ok(&run(&["call", "echo"], None)), "1");
    assert_eq!(ok(&run(&["call", "echo"], None)), "2");
    let history: serde_json::Value =
        serde_json::from_str(&ok(&run(&["history", "echo", "--json"], None))).unwrap();
    let states: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["retired", "failed", "active"]);
    // Configuration values may be secrets: never echoed, nor in the trail.
    let shown = history.to_string();
    assert!(
        !shown.contains("s3cret") && shown.contains("api-token"),
        "{shown}"
    );
    assert!(!ok(&run(&["audit", "list", "--json"], None)).contains("s3cret"));
    assert!(!ok(&run(&["status", "--json"], None)).contains("s3cret"));
    // The counter's state: one key, `count` = "2".
    let out = ok(&run(&["status"], None));
    assert!(
        out.contains("state: 1 key(s), 6 bytes (generation 1)"),
        "{out}"
    );
    let out = ok(&run(&["rollback", "echo"], None));
    assert!(
        out.starts_with("rolled back to echo 0.1.0 (deployment 1"),
        "{out}"
    );
    // Echo ran on generation 0; the counter's writes stay on generation 1.
    assert!(
        out.contains(
            "its state is generation 0 again; generation 1 stays behind with 1 key(s) written since: default/count"
        ),
        "{out}"
    );
    let out = run(&["promote", "echo"], None);
    assert_clean_error(&out, 3, "echo has no canary in progress");
    let out = run(&["abort", "echo", "--json"], None);
    assert_clean_error(&out, 3, "echo has no canary in progress");
    assert_eq!(
        ok(&run(&["call", "echo", "--input", "-"], Some(b"back"))),
        "back"
    );
    // A named version that was active is callable too, with its grants
    // and the component's state.
    assert_eq!(ok(&run(&["call", "echo@0.2.0"], None)), "3");
    let out = ok(&run(&["audit", "verify"], None));
    assert!(out.starts_with("audit trail intact: 6 record(s)"), "{out}");
    // Nothing goes: 0.2.0 is the newest, 0.1.0 the active one.
    let out = ok(&run(&["gc", "--keep", "1"], None));
    assert!(
        out.starts_with("removed the bytes of 0 version(s)"),
        "{out}"
    );
    let out = run(&["upgrade", "echo@0.2.0", "--strategy", "canary"], None);
    assert_clean_error(&out, 3, "needs a running host");
    let out = run(&["call", "nothing-here"], None);
    assert_clean_error(&out, 3, "not deployed here");
    // A deployed component runs with its deployment's grants only.
    let out = run(&["call", "echo", "--allow", "stdin"], None);
    assert_clean_error(&out, 3, "runs with its deployment's grants");
    let out = run(&["history", "nothing-here", "--json"], None);
    assert_clean_error(&out, 3, "never deployed here");
}

#[test]
fn signed_publishing_with_a_trusted_key() {
    let cli = Cli::new();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let s = w.join("state");
    let s = s.to_str().unwrap();
    let run = |args: &[&str]| on(&cli, s, args, None);
    let file = w.join("echo.wasm");
    std::fs::copy(ECHO, &file).unwrap();
    let file = file.to_str().unwrap();
    let prefix = w.join("release");
    let key = w.join("release.key");
    let public = w.join("release.pub");

    let out = run(&["keygen", prefix.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let made: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let key_id = made["key_id"].as_str().unwrap().to_string();
    assert_eq!(made["public"], public.to_str().unwrap());
    let out = run(&["sign", file, "--key", key.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let signed: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(signed["key_id"], key_id.as_str());
    assert_eq!(signed["signature"], format!("{file}.sig"));
    assert!(std::path::Path::new(&format!("{file}.sig")).is_file());

    let publish = |version: &str| run(&["publish", file, "--name", "echo", "--version", version]);
    // Signed, but by a key nobody trusts yet.
    assert_clean_error(&publish("0.1.0"), 3, "does not trust; trust it with");
    let out = run(&["trust", "add", public.to_str().unwrap(), "--json"]);
    let trusted: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        trusted,
        serde_json::json!({ "key_id": key_id, "added": true })
    );
    let out = run(&["trust", "add", public.to_str().unwrap()]);
    assert!(
        stdout(&out).contains(&format!("key {key_id} was already trusted")),
        "{}",
        stdout(&out)
    );
    let out = publish("0.1.0");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // The signature covers these bytes only.
    let other = w.join("other.wasm");
    std::fs::copy(COUNTER, &other).unwrap();
    let sig = format!("{file}.sig");
    let out = run(&[
        "publish",
        other.to_str().unwrap(),
        "--name",
        "counter",
        "--version",
        "0.1.0",
        "--signature",
        &sig,
    ]);
    assert_clean_error(&out, 3, "not for these bytes");

    let out = run(&["audit", "list", "--json"]);
    let records: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records[0]["action"], "trust");
    assert_eq!(records[1]["action"], "publish");
    let details: serde_json::Value =
        serde_json::from_str(records[1]["details"].as_str().unwrap()).unwrap();
    assert!(details["signer"].is_string(), "{details}");
    assert_eq!(details["unsigned_allowed"], false);
}

/// What the host denies a deployed component goes into the state
/// directory's audit trail.
#[test]
fn denials_of_deployed_components_are_in_the_trail() {
    let cli = Cli::new();
    let state = tempfile::tempdir().unwrap();
    let s = state.path().join("state");
    let s = s.to_str().unwrap();
    let run = |args: &[&str], input: Option<&[u8]>| on(&cli, s, args, input);
    let mb = airssys_wasm_test_guests::MISBEHAVE;
    let out = run(
        &[
            "publish",
            mb,
            "--name",
            "mb",
            "--version",
            "0.1.0",
            "--allow-unsigned",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run(
        &[
            "deploy",
            "mb@0.1.0",
            "--allow",
            "state",
            "--allow",
            "config",
            "--allow",
            "messaging:send:other",
            "--allow",
            "messaging:publish:news",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run(&["call", "mb", "--input", "-"], Some(b"message"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run(&["audit", "list", "--json"], None);
    let denied: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["action"] == "denied")
        .collect();
    assert_eq!(denied.len(), 1, "{}", stdout(&out));
    assert_eq!(denied[0]["subject"], "mb@0.1.0");
    assert_eq!(denied[0]["actor"], "host");
    let details: serde_json::Value =
        serde_json::from_str(denied[0]["details"].as_str().unwrap()).unwrap();
    assert_eq!(details["capability"], "messaging:request:other");
    let out = run(&["audit", "verify"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct Mount(std::path::PathBuf);

impl Mount {
    /// `None` when not root (mounting needs it): the test says so and
    /// skips. As root the mount must work.
    fn tmpfs(at: &std::path::Path, size: &str) -> Option<Self> {
        let uid = std::process::Command::new("id").arg("-u").output().unwrap();
        if stdout(&uid).trim() != "0" {
            return None;
        }
        std::fs::create_dir_all(at).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(status.success(), "mount -t tmpfs {}", at.display());
        Some(Self(at.to_path_buf()))
    }

    fn remount(&self, how: &str) {
        let s = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{how}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(s.success(), "remount {how}");
    }

    /// Free kilobytes.
    fn free_kb(&self) -> u64 {
        let out = std::process::Command::new("df")
            .arg("-Pk")
            .arg(&self.0)
            .output()
            .unwrap();
        stdout(&out)
            .lines()
            .nth(1)
            .and_then(|l| l.split_whitespace().nth(3))
            .unwrap()
            .parse()
            .unwrap()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let unmounted = std::process::Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Busy: detach it now, it goes when the last user does.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
}

#[test]
fn a_full_disk_and_a_read_only_state_directory_give_clear_errors_and_lose_nothing() {
    let cli = Cli::new();
    let root = tempfile::tempdir().unwrap();
    let Some(disk) = Mount::tmpfs(&root.path().join("disk"), "3m") else {
        eprintln!("skipped: mounting a tmpfs needs root, and this test runs as another user");
        return;
    };
    let s = disk.0.join("state");
    let s = s.to_str().unwrap();
    let run = |args: &[&str]| on(&cli, s, args, None);
    let ok = |o: std::process::Output| {
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        stdout(&o)
    };
    ok(run(&[
        "publish",
        ECHO,
        "--name",
        "echo",
        "--version",
        "0.1.0",
        "--allow-unsigned",
    ]));
    ok(run(&["deploy", "echo@0.1.0"]));

    // Full (40 KiB left, the counter is about 70): the publish fails,
    // says why, and leaves no partial file. Either the blob or the
    // database's log meets the full disk first.
    let filler = disk.0.join("filler");
    let fill_kb = disk.free_kb().saturating_sub(40);
    std::fs::write(
        &filler,
        vec![0_u8; usize::try_from(fill_kb * 1024).unwrap()],
    )
    .unwrap();
    let out = run(&[
        "publish",
        COUNTER,
        "--name",
        "counter",
        "--version",
        "0.1.0",
        "--allow-unsigned",
    ]);
    assert_clean_error(&out, 1, "full");
    let err = stderr(&out);
    assert!(
        err.contains(
            "No space left on device (os error 28); the disk is full: free space and try again"
        ) || err.contains(
            "is the disk of the state directory full or failing? free space and try again"
        ),
        "{err}"
    );
    let leftovers = std::fs::read_dir(disk.0.join("state/tmp")).unwrap().count();
    assert_eq!(leftovers, 0, "no partial blob is left behind");
    // Space back: nothing was lost, and the publish goes through.
    std::fs::remove_file(&filler).unwrap();
    assert!(ok(run(&["audit", "verify"])).starts_with("audit trail intact: 2 record(s)"));
    assert!(ok(run(&["status"])).starts_with("echo                 0.1.0"));
    ok(run(&[
        "publish",
        COUNTER,
        "--name",
        "counter",
        "--version",
        "0.1.0",
        "--allow-unsigned",
    ]));

    // Read-only: every command says so and what to do.
    disk.remount("ro");
    let out = run(&["status"]);
    assert_clean_error(&out, 1, "Read-only file system");
    assert_clean_error(
        &out,
        1,
        "the file system is read-only: mount it read-write, or use another path",
    );
    assert_clean_error(
        &run(&["deploy", "counter@0.1.0", "--allow", "state"]),
        1,
        "mount it read-write",
    );
    disk.remount("rw");
    assert!(ok(run(&["audit", "verify"])).starts_with("audit trail intact: 3 record(s)"));
    assert_eq!(
        ok(on(
            &cli,
            s,
            &["call", "echo", "--input", "-"],
            Some(b"still here")
        )),
        "still here"
    );
}
