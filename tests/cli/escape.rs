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
    /// The capability of the audit event the host records, when the attempt
    /// reaches the host (`None`: no event; see docs/security.md for what
    /// never reaches it).
    audit: Option<String>,
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
            audit: None,
        },
        Row {
            what: "a read grant reads",
            flags: read("data"),
            args: s(&["cat", &p("data/in.txt")]),
            stdin: None,
            code: 0,
            said: "inside\n".into(),
            audit: None,
        },
        Row {
            what: "`..` out of a grant",
            flags: read("data"),
            args: s(&["cat", &p("data/../secret.txt")]),
            stdin: None,
            code: 1,
            said: not_permitted.clone(),
            audit: None,
        },
        Row {
            what: "an absolute path outside every grant",
            flags: read("data"),
            args: s(&["cat", &p("secret.txt")]),
            stdin: None,
            code: 1,
            said: not_found.clone(),
            audit: None,
        },
        Row {
            what: "a symlink leading out",
            flags: read("data"),
            args: s(&["cat", &p("data/link")]),
            stdin: None,
            code: 1,
            said: not_permitted.clone(),
            audit: None,
        },
        Row {
            what: "writing under a read grant",
            flags: read("data"),
            args: s(&["write", &p("data/new.txt"), "x"]),
            stdin: None,
            code: 1,
            said: not_permitted.clone(),
            audit: None,
        },
        Row {
            what: "from a write grant through `..` into a read grant",
            flags: [read("data"), vec!["--allow-write".into(), p("out")]].concat(),
            args: s(&["cat", &p("out/../data/in.txt")]),
            stdin: None,
            code: 1,
            said: not_permitted.clone(),
            audit: None,
        },
        Row {
            what: "a write grant writes",
            flags: vec!["--allow-write".into(), p("out")],
            args: s(&["write", &p("out/new.txt"), "hello"]),
            stdin: None,
            code: 0,
            said: "ok\n".into(),
            audit: None,
        },
        Row {
            what: "a hard link from a read grant into a write grant",
            flags: [read("data"), vec!["--allow-write".into(), p("out")]].concat(),
            args: s(&["link", &p("data/in.txt"), &p("out/linked.txt")]),
            stdin: None,
            code: 1,
            said: not_permitted.clone(),
            audit: None,
        },
        Row {
            what: "a rename from a read grant into a write grant",
            flags: [read("data"), vec!["--allow-write".into(), p("out")]].concat(),
            args: s(&["rename", &p("data/in.txt"), &p("out/moved.txt")]),
            stdin: None,
            code: 1,
            said: not_permitted.clone(),
            audit: None,
        },
        Row {
            what: "truncating under a read grant",
            flags: read("data"),
            args: s(&["truncate", &p("data/in.txt")]),
            stdin: None,
            code: 1,
            said: not_permitted.clone(),
            audit: None,
        },
        Row {
            what: "setting times under a read grant",
            flags: read("data"),
            args: s(&["touch", &p("data/in.txt")]),
            stdin: None,
            code: 1,
            said: not_permitted.clone(),
            audit: None,
        },
        Row {
            what: "a symlink out, made during the call, then followed",
            flags: vec!["--allow-write".into(), p("out")],
            args: s(&["symlink-read", "../secret.txt", &p("out/swapped")]),
            stdin: None,
            code: 1,
            said: not_permitted.clone(),
            audit: None,
        },
        Row {
            what: "a symlink to an absolute path",
            flags: vec!["--allow-write".into(), p("out")],
            args: s(&["symlink-read", &p("secret.txt"), &p("out/absolute")]),
            stdin: None,
            code: 1,
            said: "error: ErrorCode { code: 31, name: \"not-permitted\", message: \"Operation not permitted, similar to `EPERM` in POSIX.\" }\n".into(),
            audit: None,
        },
        Row {
            what: "setting times under a write grant",
            flags: vec!["--allow-write".into(), p("out")],
            args: s(&["touch", &p("out/new.txt")]),
            stdin: None,
            code: 0,
            said: "touched\n".into(),
            audit: None,
        },
        Row {
            what: "no variable without a grant",
            flags: vec![],
            args: s(&["env", "HOME"]),
            stdin: None,
            code: 0,
            said: "unset\n".into(),
            audit: None,
        },
        Row {
            what: "a granted variable",
            flags: s(&["--allow-env", "AIRSSYS_TEST_VAR"]),
            args: s(&["env", "AIRSSYS_TEST_VAR"]),
            stdin: None,
            code: 0,
            said: "visible\n".into(),
            audit: None,
        },
        Row {
            what: "another variable than the granted one",
            flags: s(&["--allow-env", "AIRSSYS_TEST_VAR"]),
            args: s(&["env", "HOME"]),
            stdin: None,
            code: 0,
            said: "unset\n".into(),
            audit: None,
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
            audit: None,
        },
        Row {
            what: "stdin is empty without a grant",
            flags: vec![],
            args: s(&["stdin"]),
            stdin: Some(b"typed"),
            code: 0,
            said: "\n".into(),
            audit: None,
        },
        Row {
            what: "a stdin grant",
            flags: s(&["--allow", "stdin"]),
            args: s(&["stdin"]),
            stdin: Some(b"typed"),
            code: 0,
            said: "typed\n".into(),
            audit: None,
        },
    ];

    check(&rows);

    assert!(
        !r.join("data/new.txt").exists(),
        "the denied write left nothing"
    );
    assert_eq!(
        std::fs::read_to_string(r.join("data/in.txt")).unwrap(),
        "inside",
        "the denied rename and truncate left it whole"
    );
    assert!(!r.join("out/linked.txt").exists() && !r.join("out/moved.txt").exists());
    assert_eq!(
        std::fs::read_to_string(r.join("out/new.txt")).unwrap(),
        "hello"
    );
}

/// Run every row; report all that failed at once.
fn check(rows: &[Row]) {
    let cli = Cli::new();
    let mut failures = Vec::new();
    for row in rows {
        let mut argv: Vec<&str> = vec!["run", ESCAPE, "--audit=json"];
        argv.extend(row.flags.iter().map(String::as_str));
        argv.push("--");
        argv.extend(row.args.iter().map(String::as_str));
        let mut cmd = cli.cmd(&argv);
        cmd.env("AIRSSYS_TEST_VAR", "visible");
        let out = match row.stdin {
            Some(input) => crate::with_stdin(cmd, input),
            None => cmd.output().unwrap(),
        };
        let events: Vec<serde_json::Value> = stderr(&out)
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let capabilities: Vec<&str> = events
            .iter()
            .map(|e| e["capability"].as_str().unwrap_or_default())
            .collect();
        let audited = match &row.audit {
            None => events.is_empty(),
            Some(cap) => {
                capabilities.contains(&cap.as_str())
                    && events
                        .iter()
                        .all(|e| e["decision"] == "denied" && e["component"] == "escape.wasm")
            }
        };
        if !audited {
            failures.push(format!(
                "{}: audit events {capabilities:?}, expected {:?}",
                row.what, row.audit
            ));
        }
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
}

/// A server on 127.0.0.1 that answers an HTTP request with `200 hello` and
/// anything else with `pong`, then closes; it serves until the test ends.
fn server() -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 4096];
            let n = conn.read(&mut buf).unwrap_or(0);
            let answer: &[u8] = if buf[..n].starts_with(b"GET ") {
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello"
            } else {
                b"pong\n"
            };
            let _ = conn.write_all(answer);
        }
    });
    port
}

/// A port nothing listens on (bound, then released).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn the_network_is_only_what_was_granted() {
    let port = server();
    let other = free_port();
    let at = |host: &str| format!("{host}:{port}");
    let url = |host: &str| format!("http://{host}:{port}/");
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_string()).collect::<Vec<_>>();
    let out = |p: String| vec!["--allow-outbound".to_string(), p];
    let fetch = |u: String| vec!["fetch".to_string(), u];
    let connect = |a: String| vec!["connect".to_string(), a];
    let row = |what: &'static str,
               flags: Vec<String>,
               args: Vec<String>,
               code: i32,
               said: &str,
               audit: Option<String>| Row {
        what,
        flags,
        args,
        stdin: None,
        code,
        said: format!("{said}\n"),
        audit,
    };
    let denied = "error: ErrorCode::HttpRequestDenied";
    let prohibited = "error: ErrorCode::DestinationIpProhibited";
    let refused = "error: Permission denied (os error 2)";
    let rows = vec![
        row(
            "HTTP without a grant",
            vec![],
            fetch(url("127.0.0.1")),
            1,
            denied,
            Some(format!("network-outbound:http://127.0.0.1:{port}")),
        ),
        row(
            "HTTP to a granted address",
            out(at("127.0.0.1")),
            fetch(url("127.0.0.1")),
            0,
            "200 hello",
            None,
        ),
        row(
            "HTTP to another port than granted",
            out(at("127.0.0.1")),
            fetch(format!("http://127.0.0.1:{other}/")),
            1,
            denied,
            Some(format!("network-outbound:http://127.0.0.1:{other}")),
        ),
        row(
            "HTTPS only, asked over HTTP",
            out(format!("https://127.0.0.1:{port}")),
            fetch(url("127.0.0.1")),
            1,
            denied,
            Some(format!("network-outbound:http://127.0.0.1:{port}")),
        ),
        row(
            "a name that resolves to loopback (rebinding)",
            out(at("localhost")),
            fetch(url("localhost")),
            1,
            prohibited,
            Some(format!("network-outbound:http://localhost:{port}")),
        ),
        row(
            "loopback under a grant of every host",
            out("*".into()),
            fetch(url("127.0.0.1")),
            1,
            prohibited,
            Some(format!("network-outbound:http://127.0.0.1:{port}")),
        ),
        row(
            "loopback as a decimal number",
            out("*".into()),
            fetch(url("2130706433")),
            1,
            prohibited,
            Some(format!("network-outbound:http://127.0.0.1:{port}")),
        ),
        row(
            "loopback as an IPv4-mapped IPv6 address",
            out("*".into()),
            fetch(url("[::ffff:127.0.0.1]")),
            1,
            prohibited,
            Some(format!("network-outbound:http://[::ffff:127.0.0.1]:{port}")),
        ),
        row(
            "userinfo in the authority",
            out(at("127.0.0.1")),
            fetch(format!("http://user@127.0.0.1:{port}/")),
            1,
            denied,
            Some(format!("network-outbound:http://127.0.0.1:{port}")),
        ),
        row(
            "cloud metadata, even when granted by address",
            out("169.254.169.254".into()),
            fetch("http://169.254.169.254/latest/meta-data/".into()),
            1,
            prohibited,
            Some("network-outbound:http://169.254.169.254:80".into()),
        ),
        row(
            "a private range under a grant of every host",
            out("*".into()),
            fetch("http://10.0.0.1/".into()),
            1,
            prohibited,
            Some("network-outbound:http://10.0.0.1:80".into()),
        ),
        row(
            "a denial by address wins over a grant by range",
            [
                out(format!("127.0.0.0/8:{port}")),
                s(&["--deny", "network-outbound:127.0.0.1"]),
            ]
            .concat(),
            fetch(url("127.0.0.1")),
            1,
            denied,
            Some(format!("network-outbound:http://127.0.0.1:{port}")),
        ),
        row(
            "a denial by address wins over a socket grant by range",
            [
                out(format!("127.0.0.0/8:{port}")),
                s(&["--deny", "network-outbound:127.0.0.1"]),
            ]
            .concat(),
            connect(at("127.0.0.1")),
            1,
            refused,
            Some(format!("network-outbound:tcp://127.0.0.1:{port}")),
        ),
        row(
            "a TCP connect without a grant",
            vec![],
            connect(at("127.0.0.1")),
            1,
            refused,
            Some("network-outbound".into()),
        ),
        row(
            "a TCP connect to a granted address",
            out(at("127.0.0.1")),
            connect(at("127.0.0.1")),
            0,
            "connected: pong",
            None,
        ),
        row(
            "a TCP connect to another port",
            out(at("127.0.0.1")),
            connect(format!("127.0.0.1:{other}")),
            1,
            refused,
            Some(format!("network-outbound:tcp://127.0.0.1:{other}")),
        ),
        row(
            "a TCP connect to loopback under `*`",
            out("*".into()),
            connect(at("127.0.0.1")),
            1,
            refused,
            Some(format!("network-outbound:tcp://127.0.0.1:{port}")),
        ),
        row(
            "an HTTP-only grant does not open sockets",
            out(format!("http://127.0.0.1:{port}")),
            connect(at("127.0.0.1")),
            1,
            refused,
            Some(format!("network-outbound:tcp://127.0.0.1:{port}")),
        ),
        row(
            "name lookup without the dns grant (refused inside wasmtime-wasi: no event)",
            out(at("127.0.0.1")),
            s(&["resolve", "localhost"]),
            1,
            "error: failed to lookup address information: Non-recoverable error",
            None,
        ),
        row(
            "name lookup with the dns grant",
            s(&["--allow", "dns"]),
            s(&["resolve", "localhost"]),
            0,
            "127.0.0.1",
            None,
        ),
        row(
            "listening without an inbound grant",
            vec![],
            s(&["listen", &other.to_string()]),
            1,
            refused,
            Some(format!("network-inbound:{other}")),
        ),
        row(
            "listening under an outbound grant only",
            out(at("127.0.0.1")),
            s(&["listen", &other.to_string()]),
            1,
            refused,
            Some(format!("network-inbound:{other}")),
        ),
        row(
            "listening on a granted port",
            vec!["--allow-inbound".into(), other.to_string()],
            s(&["listen", &other.to_string()]),
            0,
            "listening",
            None,
        ),
        row(
            "a UDP datagram without a grant",
            vec![],
            s(&["udp", &at("127.0.0.1")]),
            1,
            refused,
            Some("network-outbound".into()),
        ),
        row(
            "a UDP datagram to another host than granted",
            out(format!("udp://127.0.0.1:{port}")),
            s(&["udp", &format!("127.0.0.1:{other}")]),
            1,
            refused,
            Some(format!("network-outbound:udp://127.0.0.1:{other}")),
        ),
        row(
            "a UDP datagram to a granted address",
            out(format!("udp://127.0.0.1:{port}")),
            s(&["udp", &at("127.0.0.1")]),
            0,
            "sent 4",
            None,
        ),
    ];
    check(&rows);
}
