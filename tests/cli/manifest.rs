//! `--manifest` and `--policy` end to end: a component, its grants, limits
//! and configuration from `airssys.toml`; host-wide denials from a policy
//! file; the mistakes a user makes, each with a message naming the file and
//! the line.

use airssys_wasm_test_guests::{COUNTER, ESCAPE, MISBEHAVE};

use crate::{Cli, assert_clean_error, stderr, stdout};

/// A directory holding `airssys.toml` with `text`.
fn manifest(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("airssys.toml");
    std::fs::write(&path, text).unwrap();
    let path = path.display().to_string();
    (dir, path)
}

#[test]
fn a_component_with_its_grants_limits_and_config_from_a_manifest() {
    let (_dir, m) = manifest(&format!(
        r#"
[[component]]
name = "counter"
source = "{COUNTER}"
version = "0.1.0"
allow = ["system-call:state"]

[[component]]
name = "misbehave"
source = "{MISBEHAVE}"
allow = ["system-call:state", "system-call:config", "messaging:send:other", "messaging:publish:news"]
config = {{ greeting = "from the manifest", other = "kept" }}

[component.limits]
timeout = "300ms"
"#
    ));
    let cli = Cli::new();
    let out = cli.run(&["call", "--manifest", &m, "counter"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "1");

    // Configuration from the manifest; a flag overrides one key.
    let out = cli.run_with_stdin(
        &[
            "call",
            "--manifest",
            &m,
            "misbehave",
            "--input",
            "-",
            "--config",
            "greeting=from the flag",
        ],
        b"config",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "greeting=from the flag\nother=kept\n");

    // The manifest's timeout applies.
    let out = cli.run_with_stdin(
        &["call", "--manifest", &m, "misbehave", "--input", "-"],
        b"loop",
    );
    assert_clean_error(&out, 1, "timed out after 300 ms");

    // Several components and none named: say which there are.
    let out = cli.run(&["call", "--manifest", &m]);
    assert_clean_error(&out, 3, "several components (counter, misbehave)");

    // inspect shows what the manifest grants.
    let out = cli.run(&["inspect", "--manifest", &m, "counter", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["granted"], serde_json::json!(["system-call:state"]));
}

#[test]
fn what_a_manifest_gets_wrong_is_refused_with_the_file_and_line() {
    let cli = Cli::new();
    let (_d, m) = manifest(&format!(
        "[[component]]\nname = \"counter\"\nsource = \"{COUNTER}\"\n"
    ));
    // A required capability the manifest does not grant.
    let out = cli.run(&["call", "--manifest", &m]);
    assert_clean_error(&out, 3, "--allow system-call:state");

    let (_d, m) = manifest(&format!(
        "[[component]]\nname = \"counter\"\nsource = \"{COUNTER}\"\nversion = \"2.0.0\"\nallow = [\"state\"]\n"
    ));
    let out = cli.run(&["call", "--manifest", &m]);
    assert_clean_error(&out, 3, "line 5");
    assert_clean_error(&out, 3, "system-call:");

    let (_d, m) = manifest(&format!(
        "[[component]]\nname = \"counter\"\nsource = \"{COUNTER}\"\nversion = \"2.0.0\"\nallow = [\"system-call:state\"]\n"
    ));
    let out = cli.run(&["call", "--manifest", &m]);
    assert_clean_error(&out, 3, "the manifest says counter is version 2.0.0");

    let (_d, m) = manifest("[[component]]\nname = \"x\"\nsource = \"nowhere.wasm\"\n");
    let out = cli.run(&["call", "--manifest", &m]);
    assert_clean_error(&out, 3, "airssys.toml:3:10: `source`");

    let (_d, m) = manifest("[[components]]\nname = \"x\"\n");
    let out = cli.run(&["inspect", "--manifest", &m]);
    assert_clean_error(&out, 3, "unknown field `components`");

    let out = cli.run(&["call"]);
    assert_eq!(out.status.code(), Some(2), "FILE or --manifest is required");
}

#[test]
fn an_ended_grant_is_gone() {
    let cli = Cli::new();
    let (_d, m) = manifest(&format!(
        "[[component]]\nname = \"counter\"\nsource = \"{COUNTER}\"\n\
         allow = [{{ capability = \"system-call:state\", expires = 2001-01-01T00:00:00Z }}]\n"
    ));
    let out = cli.run(&["call", "--manifest", &m]);
    assert_clean_error(&out, 3, "its grant ended at 2001-01-01T00:00:00Z");

    let (_d, m) = manifest(&format!(
        "[[component]]\nname = \"counter\"\nsource = \"{COUNTER}\"\n\
         allow = [{{ capability = \"system-call:state\", expires = 2999-01-01T00:00:00Z }}]\n"
    ));
    let out = cli.run(&["call", "--manifest", &m]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn mounts_from_a_manifest_and_from_flags() {
    let cli = Cli::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/in.txt"), "mounted").unwrap();
    let m = dir.path().join("airssys.toml");
    std::fs::write(
        &m,
        format!(
            "[[component]]\nname = \"escape\"\nsource = \"{ESCAPE}\"\n\
             allow = [{{ capability = \"file-read:data\", mount = \"/in\" }}]\n"
        ),
    )
    .unwrap();
    let m = m.display().to_string();
    let out = cli.run(&["run", "--manifest", &m, "--", "cat", "/in/in.txt"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "mounted\n");

    let flag = format!("{}::/elsewhere", dir.path().join("data").display());
    let out = cli.run(&[
        "run",
        ESCAPE,
        "--allow-read",
        &flag,
        "--",
        "cat",
        "/elsewhere/in.txt",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "mounted\n");
}

#[test]
fn the_host_policy_wins_and_the_host_state_is_out_of_reach() {
    let cli = Cli::new();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "deny = [\"system-call:env:AIRSSYS_TEST_VAR\"]\n").unwrap();
    let policy = policy.display().to_string();
    let mut cmd = cli.cmd(&[
        "--policy",
        &policy,
        "run",
        ESCAPE,
        "--allow-env",
        "AIRSSYS_TEST_VAR",
        "--",
        "env",
        "AIRSSYS_TEST_VAR",
    ]);
    let out = cmd.env("AIRSSYS_TEST_VAR", "visible").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "unset\n", "the policy's denial wins");

    // The compiled-code cache is native code the host loads: no grant
    // reaches it, nor a directory that holds it.
    let cache = cli.cache.path().display().to_string();
    let parent = cli.cache.path().parent().unwrap().display().to_string();
    for dir in [&cache, &parent] {
        let out = cli.run(&["run", ESCAPE, "--allow-write", dir, "--", "ls", dir]);
        assert_clean_error(&out, 3, "no grant can open");
    }

    // A denied directory fences every file grant around it.
    let tree = tempfile::tempdir().unwrap();
    std::fs::create_dir(tree.path().join("secret")).unwrap();
    let fence = dir.path().join("fence.toml");
    std::fs::write(
        &fence,
        format!(
            "deny = [\"file-read:{}\"]\n",
            tree.path().join("secret").display()
        ),
    )
    .unwrap();
    let out = cli.run(&[
        "--policy",
        fence.to_str().unwrap(),
        "run",
        ESCAPE,
        "--allow-read",
        tree.path().to_str().unwrap(),
        "--",
        "ls",
        tree.path().to_str().unwrap(),
    ]);
    assert_clean_error(&out, 3, "is denied");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "deny = [\"file-reed:/x\"]\n").unwrap();
    let out = cli.run(&["--policy", bad.to_str().unwrap(), "run", ESCAPE]);
    assert_clean_error(&out, 3, "did you mean `file-read`?");
}
