//! `airssys-wasm serve` and the commands that drive it with `--host`, as
//! the issue's walk types them.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::Stdio;

use airssys_wasm_test_guests::{ECHO, HELLO_HTTP};

use crate::{Cli, assert_clean_error, stderr, stdout};

/// A plain HTTP/1.1 GET on a fresh connection: the status and the body
/// (chunks joined).
pub(crate) fn get(addr: &str, path: &str) -> (u16, String) {
    let (status, _, body) = exchange(addr, "GET", path, "");
    (status, body)
}

/// One HTTP/1.1 request on a fresh connection: the status, the head and
/// the body (chunks joined).
pub(crate) fn exchange(addr: &str, method: &str, path: &str, body: &str) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        loop {
            let (size, after) = rest.split_once("\r\n").unwrap();
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            out.push_str(&after[..size]);
            rest = &after[size + 2..];
        }
        out
    } else {
        body.to_string()
    };
    (status, head.to_string(), body)
}

/// The first `lines` lines `serve` prints (where it listens, where the
/// token is, then what it deployed), with the ingress and admin addresses
/// read from them.
pub(crate) fn banner(
    out: &mut BufReader<std::process::ChildStdout>,
    lines: usize,
) -> (String, String, String) {
    let mut said = String::new();
    for _ in 0..lines {
        out.read_line(&mut said).unwrap();
    }
    let addr = |label: &str| {
        said.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|l| l.trim().strip_prefix("http://"))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("no {label} in {said}"))
            .to_string()
    };
    let (ingress, admin) = (addr("ingress"), addr("admin"));
    (said, ingress, admin)
}

#[test]
fn the_walk_serve_publish_deploy_curl_metrics_and_a_clean_stop() {
    let cli = Cli::new();
    let work = tempfile::tempdir().unwrap();
    let st = work.path().join("st");
    let mut host = cli
        .cmd(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--state-dir",
            st.to_str().unwrap(),
            "--log-format",
            "json",
        ])
        .env_remove("AIRSSYS_HOST")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first lines say where it listens and where the token is.
    let mut out = BufReader::new(host.stdout.take().unwrap());
    let (said, ingress, admin) = banner(&mut out, 4);
    assert!(
        said.contains(&format!("token    {}", st.join("admin.token").display())),
        "{said}"
    );
    let token = std::fs::read_to_string(st.join("admin.token")).unwrap();
    assert!(
        !said.contains(token.trim()),
        "the token itself is never printed"
    );

    let on_host = |args: &[&str]| {
        cli.cmd(args)
            .env("AIRSSYS_HOST", format!("http://{admin}"))
            .env("AIRSSYS_TOKEN", token.trim())
            .env_remove("AIRSSYS_STATE_DIR")
            .current_dir(work.path())
            .output()
            .unwrap()
    };
    let ok = |o: std::process::Output| {
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        stdout(&o)
    };
    std::fs::copy(HELLO_HTTP, work.path().join("hello-http.wasm")).unwrap();
    let published = ok(on_host(&[
        "publish",
        "hello-http.wasm",
        "--name",
        "hello",
        "--version",
        "0.1.0",
        "--allow-unsigned",
    ]));
    assert!(
        published.starts_with("published hello 0.1.0 (sha256:"),
        "{published}"
    );
    let deployed = ok(on_host(&["deploy", "hello@0.1.0", "--route", "/hello"]));
    assert!(
        deployed.starts_with("deployed hello 0.1.0 (deployment 1"),
        "{deployed}"
    );
    assert_eq!(
        get(&ingress, "/hello"),
        (200, "Hello from airssys-wasm! /hello\n".to_string())
    );
    // A handler's own log line, in the request's span.
    std::fs::copy(ECHO, work.path().join("echo.wasm")).unwrap();
    ok(on_host(&[
        "publish",
        "echo.wasm",
        "--name",
        "echo",
        "--version",
        "0.1.0",
        "--allow-unsigned",
    ]));
    ok(on_host(&["deploy", "echo@0.1.0", "--route", "/echo"]));
    assert_eq!(get(&ingress, "/echo").0, 200);
    let (status, metrics) = get(&admin, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains(
            r#"airssys_requests_total{component="hello",version="0.1.0",status="200"} 1"#
        ),
        "{metrics}"
    );
    // The same commands, the same output, on the host.
    let status = ok(on_host(&["status", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let hello = v
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "hello")
        .unwrap();
    assert_eq!(hello["spec"]["route"], "/hello");
    assert_eq!(hello["state_usage"]["keys"], 0);
    let history = ok(on_host(&["history", "hello"]));
    assert!(
        history.contains("0.1.0      active   immediate"),
        "{history}"
    );
    assert!(ok(on_host(&["audit", "verify"])).starts_with("audit trail intact: 4 record(s)"));
    let trail = ok(on_host(&["audit", "list", "--json"]));
    assert!(
        trail.lines().all(|l| l.contains(r#""actor":"admin""#)),
        "{trail}"
    );
    // A named token, made through the host, shown once, then used.
    let made = ok(on_host(&["token", "create", "ci", "--json"]));
    let ci: serde_json::Value = serde_json::from_str(&made).unwrap();
    let ci = ci["token"].as_str().unwrap().to_string();
    let o = cli
        .cmd(&["status"])
        .env("AIRSSYS_HOST", format!("http://{admin}"))
        .env("AIRSSYS_TOKEN", &ci)
        .output()
        .unwrap();
    assert!(ok(o).contains("hello"));
    assert_eq!(
        ok(on_host(&["token", "list"])),
        "ci                   in use\n"
    );
    // A canary with its plan from the command line: steps of 20% and 60%
    // passed after 5 canary calls each, so some 40 calls promote it (the
    // default plan would need hundreds).
    ok(on_host(&[
        "publish",
        "echo.wasm",
        "--name",
        "echo",
        "--version",
        "0.2.0",
        "--allow-unsigned",
    ]));
    ok(on_host(&[
        "upgrade",
        "echo@0.2.0",
        "--strategy",
        "canary",
        "--canary-steps",
        "20,60",
        "--canary-step-calls",
        "5",
        "--canary-min-calls",
        "2",
        "--canary-max-p99",
        "5s",
    ]));
    // A message to a deployed component, through the host.
    std::fs::write(work.path().join("msg.txt"), "a message").unwrap();
    assert_eq!(
        ok(on_host(&[
            "request",
            "echo",
            "--input",
            "msg.txt",
            "--content-type",
            "text/plain"
        ])),
        "a message"
    );
    assert_eq!(
        ok(on_host(&["send", "echo", "--input", "msg.txt"])),
        "sent to echo\n"
    );
    let o = on_host(&["request", "nobody"]);
    assert_clean_error(&o, 3, "nobody has no active deployment");
    let o = cli
        .cmd(&["request", "echo"])
        .env_remove("AIRSSYS_HOST")
        .output()
        .unwrap();
    assert_clean_error(&o, 3, "a message goes through a running host");
    // `diff` through the host: the same bytes, the same world.
    assert_eq!(
        ok(on_host(&["diff", "echo", "0.1.0", "0.2.0"])),
        "echo 0.1.0 -> 0.2.0: the worlds are the same\n"
    );
    let mut promoted = false;
    for _ in 0..400 {
        assert_eq!(get(&ingress, "/echo").0, 200);
        let status = ok(on_host(&["status", "--json"]));
        let v: serde_json::Value = serde_json::from_str(&status).unwrap();
        let echo = v
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == "echo")
            .unwrap()
            .clone();
        if echo["version"] == "0.2.0" && echo["canary"].is_null() {
            promoted = true;
            break;
        }
    }
    assert!(
        promoted,
        "the canary of echo 0.2.0 was not promoted by its plan"
    );
    let o = on_host(&[
        "upgrade",
        "echo@0.1.0",
        "--strategy",
        "canary",
        "--canary-steps",
        "50,10",
    ]);
    assert_clean_error(&o, 3, "canary plan: steps must increase");
    let o = on_host(&["upgrade", "echo@0.1.0", "--canary-steps", "10"]);
    assert_clean_error(
        &o,
        3,
        "the --canary-* flags are the plan of `--strategy canary`",
    );

    // Errors from the host are one line, with what to do.
    let o = on_host(&["upgrade", "hello@0.2.0"]);
    assert_clean_error(&o, 3, "hello 0.2.0 is not published; publish it first");
    // A local command on the directory the host holds says to use --host.
    let o = cli
        .cmd(&["status", "--state-dir", st.to_str().unwrap()])
        .env_remove("AIRSSYS_HOST")
        .output()
        .unwrap();
    assert_clean_error(&o, 1, "act on the running host with --host");

    // A second host on the same port: one clear line.
    let o = cli
        .cmd(&[
            "serve",
            "--listen",
            &ingress,
            "--admin-listen",
            "127.0.0.1:0",
            "--state-dir",
            work.path().join("other").to_str().unwrap(),
        ])
        .env_remove("AIRSSYS_HOST")
        .output()
        .unwrap();
    assert_clean_error(&o, 1, &format!("cannot listen on {ingress}"));
    assert!(
        stderr(&o).contains("another process uses this port"),
        "{}",
        stderr(&o)
    );

    // SIGTERM: a clean stop.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &host.id().to_string()])
        .status()
        .unwrap();
    let status = host.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "stopped\n");
    // `--log-format json`: one object per line; the guest's line carries
    // the request's component, version and deployment.
    let mut logs = String::new();
    host.stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let guest = lines
        .iter()
        .find(|l| l["fields"]["message"] == "echoing 0 bytes")
        .unwrap_or_else(|| panic!("no guest line in {logs}"));
    assert_eq!(guest["fields"]["context"], "echo");
    assert_eq!(guest["span"]["component"], "echo");
    assert_eq!(guest["span"]["version"], "0.1.0");
    assert_eq!(guest["span"]["deployment"], 2);
    assert!(
        lines.iter().any(|l| l["fields"]["message"] == "ready"),
        "{logs}"
    );
    assert!(!logs.contains(token.trim()));
}

/// What a small OTLP/HTTP receiver got: each request's path and content
/// type, and the spans decoded from the protobuf bodies.
#[derive(Default)]
struct Received {
    requests: Vec<(String, String)>,
    service_names: Vec<String>,
    spans: Vec<opentelemetry_proto::tonic::trace::v1::Span>,
}

/// An OTLP receiver on 127.0.0.1 (HTTP/1.1, keep-alive): it answers 200 to
/// each export and keeps what it decoded.
fn otlp_receiver() -> (String, std::sync::Arc<std::sync::Mutex<Received>>) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message as _;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Received::default()));
    let keep = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let keep = keep.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split(' ').nth(1).unwrap_or_default().to_string();
                    let (mut length, mut content_type) = (0, String::new());
                    loop {
                        let mut h = String::new();
                        reader.read_line(&mut h).unwrap();
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        let (k, v) = h.split_once(':').unwrap();
                        match k.to_ascii_lowercase().as_str() {
                            "content-length" => length = v.trim().parse().unwrap(),
                            "content-type" => content_type = v.trim().to_string(),
                            _ => {}
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let export = ExportTraceServiceRequest::decode(body.as_slice())
                        .expect("an OTLP trace export in protobuf");
                    {
                        let mut got = keep.lock().unwrap();
                        got.requests.push((path, content_type));
                        for rs in export.resource_spans {
                            for a in rs.resource.map(|r| r.attributes).unwrap_or_default() {
                                if a.key == "service.name" {
                                    got.service_names.push(format!("{:?}", a.value));
                                }
                            }
                            for ss in rs.scope_spans {
                                got.spans.extend(ss.spans);
                            }
                        }
                    }
                    conn.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
                    )
                    .unwrap();
                }
            });
        }
    });
    (addr, got)
}

/// With `OTEL_EXPORTER_OTLP_ENDPOINT` set, `serve` sends each request's
/// span (component, version, deployment, HTTP method, path and status) and
/// the guest's log line as its event, over OTLP HTTP/protobuf.
#[test]
fn serve_sends_request_spans_to_an_otlp_endpoint() {
    let (receiver, got) = otlp_receiver();
    let cli = Cli::new();
    let work = tempfile::tempdir().unwrap();
    let st = work.path().join("st");
    let mut host = cli
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
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{receiver}"))
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_SERVICE_NAME")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(host.stdout.take().unwrap());
    let (_, ingress, admin) = banner(&mut out, 4);
    let token = std::fs::read_to_string(st.join("admin.token")).unwrap();
    let on_host = |args: &[&str]| {
        let o = cli
            .cmd(args)
            .env("AIRSSYS_HOST", format!("http://{admin}"))
            .env("AIRSSYS_TOKEN", token.trim())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    };
    on_host(&[
        "publish",
        ECHO,
        "--name",
        "echo",
        "--version",
        "0.1.0",
        "--allow-unsigned",
    ]);
    on_host(&["deploy", "echo@0.1.0", "--route", "/echo"]);
    assert_eq!(get(&ingress, "/echo/x").0, 200);
    // The batch is sent at the latest when the host stops.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &host.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(host.wait().unwrap().code(), Some(0));

    let got = got.lock().unwrap();
    assert!(
        got.requests
            .iter()
            .all(|(path, ct)| path == "/v1/traces" && ct == "application/x-protobuf"),
        "{:?}",
        got.requests
    );
    assert!(
        got.service_names.iter().all(|s| s.contains("airssys-wasm"))
            && !got.service_names.is_empty(),
        "{:?}",
        got.service_names
    );
    let request = got
        .spans
        .iter()
        .find(|s| s.name.starts_with("GET "))
        .unwrap_or_else(|| panic!("no request span in {:?}", got.spans));
    let attr = |key: &str| {
        request
            .attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.as_ref())
            .and_then(|v| v.value.as_ref())
            .map(|v| {
                use opentelemetry_proto::tonic::common::v1::any_value::Value;
                match v {
                    Value::StringValue(s) => s.clone(),
                    Value::IntValue(i) => i.to_string(),
                    Value::BoolValue(b) => b.to_string(),
                    other => format!("{other:?}"),
                }
            })
            .unwrap_or_else(|| panic!("no {key} in {:?}", request.attributes))
    };
    assert_eq!(attr("component"), "echo");
    assert_eq!(attr("version"), "0.1.0");
    assert_eq!(attr("deployment"), "1");
    assert_eq!(attr("http.request.method"), "GET");
    assert_eq!(attr("url.path"), "/echo/x");
    assert_eq!(attr("http.response.status_code"), "200");
    assert_eq!(attr("http.route"), "/echo");
    // A server span named as OpenTelemetry's HTTP conventions say.
    assert_eq!(request.name, "GET /echo");
    assert_eq!(
        request.kind,
        opentelemetry_proto::tonic::trace::v1::span::SpanKind::Server as i32
    );
    assert_eq!(request.trace_id.len(), 16);
    // The guest's own log line is an event of the span.
    assert!(
        request.events.iter().any(|e| e.name == "echoing 0 bytes"),
        "{:?}",
        request.events
    );
}

/// `serve --manifest`: what the manifest names is published and deployed
/// at start with its grants, configuration and route; started again, it
/// serves as written without a new deployment; a bad manifest is one
/// error line and nothing starts.
#[test]
fn serve_deploys_what_its_manifest_names() {
    let cli = Cli::new();
    let work = tempfile::tempdir().unwrap();
    let st = work.path().join("st");
    std::fs::copy(ECHO, work.path().join("echo.wasm")).unwrap();
    let manifest = work.path().join("airssys.toml");
    std::fs::write(
        &manifest,
        "[[component]]\nname = \"echo\"\nsource = \"echo.wasm\"\nversion = \"0.1.0\"\nroute = \"/m-echo\"\nallow = [\"system-call:config\"]\nconfig = { greeting = \"hi\" }\n\n[component.limits]\ntimeout = \"2s\"\n",
    )
    .unwrap();
    // `serve --manifest` on ports the system picks, with `extra` flags.
    let serve = |extra: &[&str]| {
        let mut args = vec![
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--state-dir",
            st.to_str().unwrap(),
            "--manifest",
            manifest.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let mut cmd = cli.cmd(&args);
        cmd.env_remove("AIRSSYS_HOST");
        cmd
    };
    let start = || {
        let mut host = serve(&["--allow-unsigned"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(host.stdout.take().unwrap());
        let (said, ingress, _) = banner(&mut out, 5);
        (host, said, ingress)
    };
    let stop = |mut host: std::process::Child| {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &host.id().to_string()])
            .status()
            .unwrap();
        assert_eq!(host.wait().unwrap().code(), Some(0));
    };
    let (host, said, ingress) = start();
    assert!(
        said.contains(&format!(
            "deployed echo 0.1.0 from {} (deployment 1) on /m-echo",
            manifest.display()
        )),
        "{said}"
    );
    let (status, head, body) = exchange(&ingress, "POST", "/m-echo", "from the manifest");
    assert_eq!(
        (status, body.as_str()),
        (200, "from the manifest"),
        "{head}"
    );
    stop(host);
    let (host, said, ingress) = start();
    assert!(
        said.contains(&format!("echo 0.1.0 serves as {} says", manifest.display())),
        "{said}"
    );
    assert_eq!(exchange(&ingress, "POST", "/m-echo", "again").2, "again");
    stop(host);
    // One deployment, by the manifest.
    let o = cli
        .cmd(&[
            "history",
            "echo",
            "--json",
            "--state-dir",
            st.to_str().unwrap(),
        ])
        .env_remove("AIRSSYS_HOST")
        .output()
        .unwrap();
    let history: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["spec"]["config"][0][1], "<redacted>");
    assert!(
        history[0]["actor"]
            .as_str()
            .unwrap()
            .starts_with("manifest:"),
        "{history:?}"
    );

    // Unsigned only when said.
    let o = serve(&[]).output().unwrap();
    assert_clean_error(&o, 3, "published unsigned: add --allow-unsigned");
    // Other bytes under the same version: refused, not served silently.
    let mut other = std::fs::read(ECHO).unwrap();
    other.extend_from_slice(b"\x00\x05\x04buil");
    std::fs::write(work.path().join("echo.wasm"), other).unwrap();
    let o = serve(&["--allow-unsigned"]).output().unwrap();
    assert!(o.status.code() != Some(0), "{}", stdout(&o));
    assert!(stderr(&o).contains("echo 0.1.0"), "{}", stderr(&o));
    assert!(!stdout(&o).contains("serving"), "{}", stdout(&o));

    // A manifest naming another version than the component's own.
    std::fs::write(
        &manifest,
        "[[component]]\nname = \"echo\"\nsource = \"echo.wasm\"\nversion = \"0.9.0\"\n",
    )
    .unwrap();
    let o = serve(&["--allow-unsigned"]).output().unwrap();
    assert_clean_error(
        &o,
        3,
        "component `echo`: the manifest says version 0.9.0, but",
    );
    // A route that is not a path.
    std::fs::write(
        &manifest,
        "[[component]]\nname = \"echo\"\nsource = \"echo.wasm\"\nroute = \"echo\"\n",
    )
    .unwrap();
    let o = serve(&["--allow-unsigned"]).output().unwrap();
    assert_clean_error(
        &o,
        3,
        "airssys.toml:4:9: `route`: `echo` is not a path prefix",
    );
}
