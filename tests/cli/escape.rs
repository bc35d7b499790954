//! Escape attempts through `run`: each row is one capability missing or one
//! way out tried, with the exact answer the guest saw. The guest is
//! `tests/guests/escape`, a command that tries what its arguments say.

use airssys_wasm_test_guests::ESCAPE;

use crate::{Cli, stderr, stdout};

struct Row {
    what: &'static str,
    flags: Vec<String>,
    args: Vec<String>,
    stdin: Option<&'static [u8]>,
    code: i32,
    said: String,
}

#[test]
fn files_environment_and_stdin_are_only_what_was_granted() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path().canonicalize().unwrap();
    let p = |rel: &str| r.join(rel).display().to_string();
    std::fs::create_dir_all(r.join("data")).unwrap();
    std::fs::create_dir_all(r.join("out")).unwrap();
    std::fs::write(r.join("data/in.txt"), "inside").unwrap();
    std::fs::write(r.join("secret.txt"), "secret").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink("../secret.txt", r.join("data/link")).unwrap();

    let s = |v: &[&str]| v.iter().map(|x| (*x).to_string()).collect::<Vec<_>>();
    let read = |dir: &str| vec!["--allow-read".to_string(), p(dir)];
    let not_found = "error: No such file or directory (os error 44)\n".to_string();
    let not_permitted = "error: Operation not permitted (os error 63)\n".to_string();
    let rows = vec![
        Row {
            what: "no grant: nothing is visible",
            flags: vec![],
            args: s(&["cat", &p("data/in.txt")]),
            stdin: None,
            code: 1,
            said: not_found.clone(),
        },
        Row {
            what: "a read grant reads",
            flags: read("data"),
            args: s(&["cat", &p("data/in.txt")]),
            stdin: None,
            code: 0,
            said: "inside\n".into(),
        },
        Row {
            what: "`..` out of a grant",
            flags: read("data"),
            args: s(&["cat", &p("data/../secret.txt")]),
            stdin: None,
            code: 1,
            said: not_permitted.clone(),
        },
        Row {
            what: "an absolute path outside every grant",
            flags: read("data"),
            args: s(&["cat", &p("secret.txt")]),
            stdin: None,
            code: 1,
            said: not_found.clone(),
        },
        Row {
            what: "a symlink leading out",
            flags: read("data"),
            args: s(&["cat", &p("data/link")]),
            stdin: None,
            code: 1,
            said: not_permitted.clone(),
        },
        Row {
            what: "writing under a read grant",
            flags: read("data"),
            args: s(&["write", &p("data/new.txt"), "x"]),
            stdin: None,
            code: 1,
            said: not_permitted.clone(),
        },
        Row {
            what: "from a write grant through `..` into a read grant",
            flags: [read("data"), vec!["--allow-write".into(), p("out")]].concat(),
            args: s(&["cat", &p("out/../data/in.txt")]),
            stdin: None,
            code: 1,
            said: not_permitted.clone(),
        },
        Row {
            what: "a write grant writes",
            flags: vec!["--allow-write".into(), p("out")],
            args: s(&["write", &p("out/new.txt"), "hello"]),
            stdin: None,
            code: 0,
            said: "ok\n".into(),
        },
        Row {
            what: "no variable without a grant",
            flags: vec![],
            args: s(&["env", "HOME"]),
            stdin: None,
            code: 0,
            said: "unset\n".into(),
        },
        Row {
            what: "a granted variable",
            flags: s(&["--allow-env", "AIRSSYS_TEST_VAR"]),
            args: s(&["env", "AIRSSYS_TEST_VAR"]),
            stdin: None,
            code: 0,
            said: "visible\n".into(),
        },
        Row {
            what: "another variable than the granted one",
            flags: s(&["--allow-env", "AIRSSYS_TEST_VAR"]),
            args: s(&["env", "HOME"]),
            stdin: None,
            code: 0,
            said: "unset\n".into(),
        },
        Row {
            what: "a denial under env:*",
            flags: s(&[
                "--allow",
                "system-call:env:*",
                "--deny",
                "system-call:env:AIRSSYS_TEST_VAR",
            ]),
            args: s(&["env", "AIRSSYS_TEST_VAR"]),
            stdin: None,
            code: 0,
            said: "unset\n".into(),
        },
        Row {
            what: "stdin is empty without a grant",
            flags: vec![],
            args: s(&["stdin"]),
            stdin: Some(b"typed"),
            code: 0,
            said: "\n".into(),
        },
        Row {
            what: "a stdin grant",
            flags: s(&["--allow", "stdin"]),
            args: s(&["stdin"]),
            stdin: Some(b"typed"),
            code: 0,
            said: "typed\n".into(),
        },
    ];

    let cli = Cli::new();
    let mut failures = Vec::new();
    for row in &rows {
        let mut argv: Vec<&str> = vec!["run", ESCAPE];
        argv.extend(row.flags.iter().map(String::as_str));
        argv.push("--");
        argv.extend(row.args.iter().map(String::as_str));
        let mut cmd = cli.cmd(&argv);
        cmd.env("AIRSSYS_TEST_VAR", "visible");
        let out = match row.stdin {
            Some(input) => crate::with_stdin(cmd, input),
            None => cmd.output().unwrap(),
        };
        if out.status.code() != Some(row.code) || stdout(&out) != row.said {
            failures.push(format!(
                "{}: exit {:?}, said {:?} (stderr {:?}); expected exit {}, {:?}",
                row.what,
                out.status.code(),
                stdout(&out),
                stderr(&out),
                row.code,
                row.said
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        !r.join("data/new.txt").exists(),
        "the denied write left nothing"
    );
    assert_eq!(
        std::fs::read_to_string(r.join("out/new.txt")).unwrap(),
        "hello"
    );
}
