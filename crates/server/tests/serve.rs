//! The host for real: servers on 127.0.0.1 (ports picked by the system),
//! driven through HTTP as an operator and a client would.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::net::SocketAddr;
use std::time::Duration;

use airssys_wasm_deploy::StateDir;
use airssys_wasm_runtime::RuntimeConfig;
use airssys_wasm_server::{ServeConfig, Server};
use airssys_wasm_test_guests::{ECHO, FLAKY, HELLO_HTTP, MISBEHAVE};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// One HTTP/1.1 exchange on a fresh connection: status, headers, body.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    // The host may answer (413) and close before the body is all sent: the
    // answer is what counts.
    let _ = s.write_all(body).await;
    let mut raw = Vec::new();
    let mut buf = vec![0_u8; 64 * 1024];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = unchunk(&body);
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn unchunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&raw[..line])
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .unwrap();
        raw = &raw[line + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// A running host and what it takes to drive it.
struct Running {
    ingress: SocketAddr,
    admin: SocketAddr,
    token: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn start(state: &std::path::Path) -> Self {
        Self::start_with(state, RuntimeConfig::default().max_instances(32)).await
    }

    async fn start_with(state: &std::path::Path, runtime: RuntimeConfig) -> Self {
        let dir = StateDir::open(state).unwrap();
        let config = ServeConfig::default()
            .listen("127.0.0.1:0".parse().unwrap())
            .admin_listen("127.0.0.1:0".parse().unwrap())
            .grace(Duration::from_secs(5))
            .max_component_size(4 << 20);
        let server = Server::bind(dir, runtime, config).await.unwrap();
        let (ingress, admin) = (server.ingress_addr(), server.admin_addr());
        let token = std::fs::read_to_string(server.token_path())
            .unwrap()
            .trim()
            .to_string();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        let r = Self {
            ingress,
            admin,
            token,
            stop: Some(tx),
            task,
        };
        // Ready once restored.
        for _ in 0..200 {
            if http(r.admin, "GET", "/readyz", &[], b"").await.status == 200 {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the host never became ready");
    }

    /// A control-API request with the token, and `content_type` if given.
    async fn authed(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Reply {
        let auth = format!("Bearer {}", self.token);
        let mut headers = vec![("authorization", auth.as_str())];
        if let Some(ct) = content_type {
            headers.push(("content-type", ct));
        }
        http(self.admin, method, path, &headers, body).await
    }

    async fn api(&self, method: &str, path: &str, body: &serde_json::Value) -> Reply {
        let body = body.to_string();
        self.authed(method, path, Some("application/json"), body.as_bytes())
            .await
    }

    async fn publish(&self, file: &str, name: &str, version: &str) -> Reply {
        let bytes = std::fs::read(file).unwrap();
        self.authed(
            "POST",
            &format!("/v1/components?name={name}&version={version}&allow_unsigned=true"),
            Some("application/wasm"),
            &bytes,
        )
        .await
    }

    async fn get(&self, path: &str) -> Reply {
        http(self.ingress, "GET", path, &[], b"").await
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap();
    }
}

fn ok(r: &Reply) {
    assert!((200..300).contains(&r.status), "{} {}", r.status, r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_deploy_serve_upgrade_under_load_rollback_and_restart() {
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("st");
    let host = Running::start(&state).await;

    // The token file: mode 0600, and the token is needed.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(state.join("admin.token"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let r = http(host.admin, "GET", "/v1/deployments", &[], b"").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert!(r.json()["error"].as_str().unwrap().contains("admin.token"));
    let r = http(
        host.admin,
        "GET",
        "/v1/deployments",
        &[("authorization", "Bearer nope")],
        b"",
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        http(host.admin, "GET", "/healthz", &[], b"").await.status,
        200
    );

    // A proxy component and a handler component, each on its route.
    ok(&host.publish(HELLO_HTTP, "hello", "0.1.0").await);
    let r = host
        .api(
            "POST",
            "/v1/deployments",
            &serde_json::json!({"name": "hello", "version": "0.1.0", "route": "/hello"}),
        )
        .await;
    ok(&r);
    assert_eq!(r.json()["state"], "active");
    let r = host.get("/hello/world").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "Hello from airssys-wasm! /hello/world\n")
    );
    assert_eq!(host.get("/nowhere").await.status, 404);

    ok(&host.publish(ECHO, "echo", "0.1.0").await);
    let echo2 = tempfile::NamedTempFile::new().unwrap();
    // Another build of echo: the same component with a custom section.
    let mut bytes = std::fs::read(ECHO).unwrap();
    bytes.extend_from_slice(&[0, 5, 4, b'b', b'u', b'i', b'l']);
    std::fs::write(echo2.path(), &bytes).unwrap();
    ok(&host
        .publish(echo2.path().to_str().unwrap(), "echo", "0.2.0")
        .await);
    ok(&host
        .api(
            "POST",
            "/v1/deployments",
            &serde_json::json!({"name": "echo", "version": "0.1.0", "route": "/echo"}),
        )
        .await);
    let r = http(
        host.ingress,
        "POST",
        "/echo/x?y=1",
        &[("content-type", "text/plain")],
        b"hi",
    )
    .await;
    assert_eq!((r.status, r.text().as_str()), (200, "hi"));
    assert_eq!(r.header("x-echoed-by"), Some("echo"));
    assert_eq!(r.header("content-type"), Some("text/plain"));
    // Echo answers the request's headers too, `content-length` and
    // `connection` among them: the host frames the response itself.
    let lengths: Vec<&str> = r
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(lengths, ["2"]);
    // Paths with dot segments are refused, not routed.
    let r = http(host.ingress, "GET", "/echo/../hello", &[], b"").await;
    assert_eq!(r.status, 400);

    // Upgrades and a rollback under a running load: no request fails.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let ingress = host.ingress;
        let done = done.clone();
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0, Vec::new());
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let r = http(ingress, "POST", "/echo", &[], b"ping").await;
                if r.status == 200 && r.body == b"ping" {
                    ok += 1;
                } else {
                    failed.push((r.status, r.text()));
                }
            }
            (ok, failed)
        })
    };
    for i in 0..6 {
        let version = if i % 2 == 0 { "0.2.0" } else { "0.1.0" };
        ok(&host
            .api(
                "POST",
                "/v1/deployments/echo/upgrade",
                &serde_json::json!({"version": version}),
            )
            .await);
    }
    ok(&host
        .api(
            "POST",
            "/v1/deployments/echo/rollback",
            &serde_json::json!({}),
        )
        .await);
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let (served, failed) = load.await.unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(served > 0);
    let history = host
        .api(
            "GET",
            "/v1/deployments/echo/history",
            &serde_json::json!({}),
        )
        .await
        .json();
    // The first deployment and six upgrades; a rollback re-activates a record.
    assert_eq!(history.as_array().unwrap().len(), 7);
    let verify = host
        .api("GET", "/v1/audit/verify", &serde_json::json!({}))
        .await;
    assert_eq!(verify.json()["ok"], true);

    // Each operation is counted, with its outcome; a refused one too.
    let r = host
        .api(
            "POST",
            "/v1/deployments/echo/upgrade",
            &serde_json::json!({"version": "9.9.9"}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let metrics = http(host.admin, "GET", "/metrics", &[], b"").await.text();
    for line in [
        r#"airssys_deploys_total{action="upgrade",outcome="ok"} 6"#,
        r#"airssys_deploys_total{action="upgrade",outcome="failed"} 1"#,
        r#"airssys_deploys_total{action="rollback",outcome="ok"} 1"#,
        r#"airssys_deploys_total{action="deploy",outcome="ok"} 2"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }

    // The rollback went back to what the last upgrade replaced: 0.2.0.
    let status = host
        .api("GET", "/v1/deployments/echo", &serde_json::json!({}))
        .await;
    assert_eq!(status.json()["version"], "0.2.0");

    // A restart restores both routes without compiling anything.
    host.stop().await;
    let host = Running::start(&state).await;
    assert_eq!(
        host.get("/hello").await.text(),
        "Hello from airssys-wasm! /hello\n"
    );
    assert_eq!(
        http(host.ingress, "POST", "/echo", &[], b"again")
            .await
            .text(),
        "again"
    );
    let metrics = http(host.admin, "GET", "/metrics", &[], b"").await.text();
    assert!(
        metrics.lines().any(|l| l == "airssys_compilations 0"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"airssys_requests_total{component="echo",version="0.2.0",status="200"} 1"#),
        "{metrics}"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_clear_4xx_and_the_host_serves_on() {
    let root = tempfile::tempdir().unwrap();
    // Fuel metered, so the metrics count it.
    let host = Running::start_with(
        &root.path().join("st"),
        RuntimeConfig::default().max_instances(32).fuel(true),
    )
    .await;
    let auth = format!("Bearer {}", host.token);
    let post = |path: &'static str, ct: &'static str, body: Vec<u8>| {
        let auth = auth.clone();
        let admin = host.admin;
        async move {
            http(
                admin,
                "POST",
                path,
                &[("authorization", &auth), ("content-type", ct)],
                &body,
            )
            .await
        }
    };
    let r = post("/v1/deployments", "application/json", b"{not json".to_vec()).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("the JSON body")
    );
    let r = post(
        "/v1/deployments",
        "application/json",
        br#"{"name": "a", "version": "0.1.0", "colour": "red"}"#.to_vec(),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `colour`")
    );
    let r = post("/v1/deployments", "text/plain", b"{}".to_vec()).await;
    assert_eq!(r.status, 415, "{}", r.text());
    let r = post(
        "/v1/components?name=junk&version=0.1.0&allow_unsigned=true",
        "application/wasm",
        b"not a component".to_vec(),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let r = post(
        "/v1/components?name=big&version=0.1.0&allow_unsigned=true",
        "application/wasm",
        vec![0; 5 << 20],
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.text());
    let r = post("/v1/components?version=0.1.0", "application/wasm", vec![1]).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("missing field `name`")
    );
    let r = host
        .api(
            "POST",
            "/v1/deployments",
            &serde_json::json!({"name": "ghost", "version": "0.1.0"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("is not published")
    );

    // A guest that traps or refuses its input on one route; another route
    // keeps answering correctly.
    ok(&host.publish(MISBEHAVE, "bad", "0.1.0").await);
    ok(&host
        .api(
            "POST",
            "/v1/deployments",
            &serde_json::json!({
                "name": "bad", "version": "0.1.0", "route": "/bad",
                "allow": ["system-call:state", "system-call:config", "messaging:send:other", "messaging:publish:news"],
                "timeout_ms": 1000,
            }),
        )
        .await);
    ok(&host.publish(ECHO, "echo", "0.1.0").await);
    ok(&host
        .api(
            "POST",
            "/v1/deployments",
            &serde_json::json!({"name": "echo", "version": "0.1.0", "route": "/echo"}),
        )
        .await);
    let r = http(host.ingress, "POST", "/bad", &[], b"panic").await;
    assert_eq!((r.status, r.text().as_str()), (500, "internal error\n"));
    let r = http(host.ingress, "POST", "/bad", &[], b"no-such-command").await;
    assert_eq!(r.status, 400);
    assert!(
        r.text().starts_with("invalid input: unknown command"),
        "{}",
        r.text()
    );
    let r = http(host.ingress, "POST", "/echo", &[], b"fine").await;
    assert_eq!((r.status, r.text().as_str()), (200, "fine"));
    // A guest that loops is stopped at its timeout (504) while the other
    // route answers all along.
    let ingress = host.ingress;
    let looping = tokio::spawn(async move { http(ingress, "POST", "/bad", &[], b"loop").await });
    let mut meanwhile = 0;
    while !looping.is_finished() {
        let r = http(host.ingress, "POST", "/echo", &[], b"fine").await;
        assert_eq!((r.status, r.text().as_str()), (200, "fine"));
        meanwhile += 1;
    }
    let r = looping.await.unwrap();
    assert_eq!(
        (r.status, r.text().as_str()),
        (504, "the component timed out\n"),
        "{r:?}"
    );
    assert!(meanwhile > 1, "{meanwhile}");

    // A request to a component not granted (`messaging:request:other`) is
    // denied, answered, and counted; the fuel of the calls is counted.
    let r = http(host.ingress, "POST", "/bad", &[], b"message").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("denied"), "{}", r.text());
    let metrics = http(host.admin, "GET", "/metrics", &[], b"").await.text();
    assert!(
        metrics.lines().any(|l| l
            == r#"airssys_denials_total{component="bad",capability="messaging:request",decision="denied"} 1"#),
        "{metrics}"
    );
    // Its send and its publish went through the host, and are counted.
    for line in [
        r#"airssys_messages_total{from="bad",to="other",delivery="send",outcome="not-found"} 1"#,
        r#"airssys_messages_total{from="bad",to="news",delivery="publish",outcome="no-subscribers"} 1"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
    let fuel = |component: &str| -> u64 {
        let prefix =
            format!(r#"airssys_fuel_consumed_total{{component="{component}",version="0.1.0"}} "#);
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no fuel of {component} in {metrics}"))
            .parse()
            .unwrap()
    };
    assert!(fuel("echo") > 0 && fuel("bad") > 0, "{metrics}");
    // The stopped loop is counted as such.
    assert!(
        metrics.lines().any(|l| l
            == r#"airssys_denials_total{component="bad",capability="limit:timeout",decision="stopped"} 1"#),
        "{metrics}"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_requests_in_flight_finish() {
    let root = tempfile::tempdir().unwrap();
    let host = Running::start(&root.path().join("st")).await;
    ok(&host.publish(FLAKY, "slow", "0.1.0").await);
    ok(&host
        .api(
            "POST",
            "/v1/deployments",
            &serde_json::json!({
                "name": "slow", "version": "0.1.0", "route": "/slow",
                "allow": ["system-call:config"], "config": {"delay-ms": "1500"},
                "max_concurrent": 1,
            }),
        )
        .await);
    let ingress = host.ingress;
    let in_flight = tokio::spawn(async move {
        let t = std::time::Instant::now();
        let r = http(ingress, "GET", "/slow", &[], b"").await;
        (r, t.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // One call at a time on this route: a second one is turned away.
    let r = http(host.ingress, "GET", "/slow", &[], b"").await;
    assert_eq!(r.status, 503, "{}", r.text());
    // The call in flight is one live instance.
    let metrics = http(host.admin, "GET", "/metrics", &[], b"").await.text();
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"airssys_instances{component="slow",version="0.1.0"} 1"#),
        "{metrics}"
    );
    let stopping = std::time::Instant::now();
    host.stop().await;
    let (r, took) = in_flight.await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    // It really was slow, and the stop waited for it.
    assert!(took >= Duration::from_millis(1500), "{took:?}");
    assert!(stopping.elapsed() >= Duration::from_millis(1000));
}

#[tokio::test]
async fn a_token_file_others_can_read_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("st");
    let dir = StateDir::open(&state).unwrap();
    let token = state.join("admin.token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let config = ServeConfig::default()
        .listen("127.0.0.1:0".parse().unwrap())
        .admin_listen("127.0.0.1:0".parse().unwrap());
    let err = Server::bind(dir, RuntimeConfig::default(), config)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("must be a regular file only its owner can read (mode 0600)"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_tokens_say_who_did_it_and_refusals_are_audited_and_limited() {
    let root = tempfile::tempdir().unwrap();
    let host = Running::start(&root.path().join("st")).await;
    let made = host
        .api("POST", "/v1/tokens", &serde_json::json!({"name": "ci"}))
        .await;
    ok(&made);
    let ci = made.json()["token"].as_str().unwrap().to_string();
    assert_eq!(ci.len(), 64);
    let as_ci = |method: &'static str, path: &'static str, body: serde_json::Value| {
        let (admin, auth) = (host.admin, format!("Bearer {ci}"));
        async move {
            http(
                admin,
                method,
                path,
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                ],
                body.to_string().as_bytes(),
            )
            .await
        }
    };
    // The named token works, and the trail names it.
    ok(&host.publish(ECHO, "echo", "0.1.0").await);
    ok(&as_ci(
        "POST",
        "/v1/deployments",
        serde_json::json!({"name": "echo", "version": "0.1.0"}),
    )
    .await);
    let trail = host
        .api("GET", "/v1/audit", &serde_json::json!({}))
        .await
        .json();
    let last = trail.as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["action"].as_str(), last["actor"].as_str()),
        (Some("deploy"), Some("token:ci"))
    );
    // Only the admin token manages tokens.
    let r = as_ci("POST", "/v1/tokens", serde_json::json!({"name": "more"})).await;
    assert_eq!(r.status, 403);
    let listed = host
        .api("GET", "/v1/tokens", &serde_json::json!({}))
        .await
        .json();
    assert_eq!(listed[0]["name"], "ci");
    assert!(
        !listed.to_string().contains(&ci),
        "the token itself is never listed"
    );
    // Revoked: refused.
    ok(&host
        .api("DELETE", "/v1/tokens/ci", &serde_json::json!({}))
        .await);
    assert_eq!(
        as_ci("GET", "/v1/deployments", serde_json::json!({}))
            .await
            .status,
        401
    );

    // Refusals: the first of the minute is in the trail, and past 30 in a
    // minute the host answers 429.
    let mut statuses = Vec::new();
    for _ in 0..35 {
        let r = http(
            host.admin,
            "GET",
            "/v1/deployments",
            &[("authorization", "Bearer wrong")],
            b"",
        )
        .await;
        statuses.push(r.status);
    }
    // One refusal (the revoked token) came before these.
    assert!(statuses[..29].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[29..].iter().all(|s| *s == 429), "{statuses:?}");
    let trail = host
        .api("GET", "/v1/audit", &serde_json::json!({}))
        .await
        .json();
    let refused: Vec<&serde_json::Value> = trail
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "auth-failed")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["actor"], "anonymous");
    assert!(
        refused[0]["details"]
            .as_str()
            .unwrap()
            .contains("GET /v1/deployments")
    );
    let actions: Vec<&str> = trail
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"token-create") && actions.contains(&"token-revoke"),
        "{actions:?}"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_admin_client_does_not_hold_the_shutdown() {
    let root = tempfile::tempdir().unwrap();
    let host = Running::start(&root.path().join("st")).await;
    // Half a request head, then nothing.
    let mut stalled = tokio::net::TcpStream::connect(host.admin).await.unwrap();
    stalled
        .write_all(b"POST /v1/components HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = std::time::Instant::now();
    host.stop().await;
    // Cut after the grace period (5 s here), not left hanging.
    assert!(t.elapsed() < Duration::from_secs(9), "{:?}", t.elapsed());
}

/// The committed `docs/openapi.json` is what the code generates, the host
/// serves it, and every operation it lists is routed: behind the token
/// for `/v1`, open for the rest. To refresh the file:
/// `AIRSSYS_BLESS=1 cargo test -p airssys-wasm-server --test serve openapi`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_committed_served_and_routed() {
    let generated = airssys_wasm_server::openapi();
    let text = format!("{}\n", serde_json::to_string_pretty(&generated).unwrap());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    if std::env::var_os("AIRSSYS_BLESS").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == text,
        "docs/openapi.json differs from the code's document; run \
         AIRSSYS_BLESS=1 cargo test -p airssys-wasm-server --test serve openapi"
    );

    let root = tempfile::tempdir().unwrap();
    let host = Running::start(&root.path().join("st")).await;
    let served = host
        .api("GET", "/v1/openapi.json", &serde_json::json!(null))
        .await;
    ok(&served);
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(served.json(), doc);

    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 16, "{:?}", paths.keys());
    for (template, operations) in paths {
        let concrete = template.replace("{name}", "echo");
        for method in operations.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            let r = http(host.admin, &method, &concrete, &[], b"").await;
            if template.starts_with("/v1/") {
                assert_eq!(r.status, 401, "{method} {concrete}: {}", r.text());
                assert_eq!(r.header("www-authenticate"), Some("Bearer"));
            } else {
                assert!(
                    r.status == 200 || r.status == 503,
                    "{method} {concrete}: {} {}",
                    r.status,
                    r.text()
                );
            }
        }
    }
    // A path the document does not list is not routed.
    let r = host
        .api("GET", "/v1/nothing", &serde_json::json!(null))
        .await;
    assert_eq!(r.status, 404, "{}", r.text());

    // Real requests and answers match the document's schemas; and the
    // schemas do refuse what they should.
    let deployment = serde_json::json!({"$ref": "#/components/schemas/Deployment"});
    let bad = violations(
        &doc,
        &deployment,
        &serde_json::json!({"error": "x"}),
        "a check",
    );
    assert!(!bad.is_empty());
    let deploy_body = serde_json::json!({"$ref": "#/components/schemas/DeployBody"});
    let bad = violations(
        &doc,
        &deploy_body,
        &serde_json::json!({"name": "a", "version": "1.0.0", "colour": 1}),
        "a check",
    );
    assert!(bad.iter().any(|e| e.contains("colour")), "{bad:?}");
    let check = |method: &str, template: &str, request: Option<&serde_json::Value>, r: &Reply| {
        let op = &doc["paths"][template][method.to_lowercase()];
        assert!(op.is_object(), "{method} {template} is not in the document");
        if let Some(request) = request {
            let schema = &op["requestBody"]["content"]["application/json"]["schema"];
            conforms(
                &doc,
                schema,
                request,
                &format!("the request of {method} {template}"),
            );
        }
        let answer = &op["responses"][r.status.to_string()];
        assert!(
            answer.is_object(),
            "{method} {template} answered {}, which the document does not list: {}",
            r.status,
            r.text()
        );
        let schema = &answer["content"]["application/json"]["schema"];
        conforms(
            &doc,
            schema,
            &r.json(),
            &format!("{method} {template} {}", r.status),
        );
    };
    let r = host.publish(ECHO, "echo", "0.1.0").await;
    check("POST", "/v1/components", None, &r);
    ok(&host.publish(ECHO, "echo", "0.2.0").await);
    let r = host
        .api("GET", "/v1/components", &serde_json::json!(null))
        .await;
    check("GET", "/v1/components", None, &r);
    let body = serde_json::json!({
        "name": "echo", "version": "0.1.0", "route": "/echo",
        "allow": ["system-call:config"], "config": {"greeting": "hi"}, "timeout_ms": 5000,
    });
    let r = host.api("POST", "/v1/deployments", &body).await;
    ok(&r);
    check("POST", "/v1/deployments", Some(&body), &r);
    let body = serde_json::json!({"version": "0.2.0", "strategy": "immediate"});
    let r = host
        .api("POST", "/v1/deployments/echo/upgrade", &body)
        .await;
    ok(&r);
    check("POST", "/v1/deployments/{name}/upgrade", Some(&body), &r);
    for (method, template, concrete) in [
        ("GET", "/v1/deployments", "/v1/deployments"),
        ("GET", "/v1/deployments/{name}", "/v1/deployments/echo"),
        (
            "GET",
            "/v1/deployments/{name}/history",
            "/v1/deployments/echo/history",
        ),
        ("GET", "/v1/audit", "/v1/audit"),
        ("GET", "/v1/audit/verify", "/v1/audit/verify"),
        ("GET", "/v1/tokens", "/v1/tokens"),
        (
            "GET",
            "/v1/components/{name}/diff",
            "/v1/components/echo/diff?from=0.1.0&to=0.2.0",
        ),
        (
            "GET",
            "/v1/components/{name}/diff",
            "/v1/components/echo/diff?from=0.1.0&to=7.0.0",
        ),
        (
            "POST",
            "/v1/deployments/{name}/promote",
            "/v1/deployments/echo/promote",
        ),
        ("GET", "/v1/deployments/{name}", "/v1/deployments/ghost"),
    ] {
        let r = host.api(method, concrete, &serde_json::json!(null)).await;
        check(method, template, None, &r);
    }
    // A message to a component through the API: its answer, or accepted.
    let r = host
        .authed(
            "POST",
            "/v1/deployments/echo/request",
            Some("text/plain"),
            b"through the API",
        )
        .await;
    ok(&r);
    check("POST", "/v1/deployments/{name}/request", None, &r);
    assert_eq!(r.json()["payload_base64"], "dGhyb3VnaCB0aGUgQVBJ");
    assert_eq!(r.json()["content_type"], "text/plain");
    let r = host
        .authed("POST", "/v1/deployments/ghost/request", None, b"x")
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    check("POST", "/v1/deployments/{name}/request", None, &r);
    let r = host
        .authed(
            "POST",
            "/v1/deployments/echo/send",
            None,
            b"fire and forget",
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    check("POST", "/v1/deployments/{name}/send", None, &r);
    // Rollback: no body, `null`, or `{"to": ...}`; a body of another type is
    // refused, not ignored.
    let r = host
        .authed("POST", "/v1/deployments/echo/rollback", None, b"")
        .await;
    ok(&r);
    check("POST", "/v1/deployments/{name}/rollback", None, &r);
    assert_eq!(r.json()["deployment"]["version"], "0.1.0");
    let body = serde_json::json!({"to": "0.2.0"});
    let r = host
        .api("POST", "/v1/deployments/echo/rollback", &body)
        .await;
    check("POST", "/v1/deployments/{name}/rollback", Some(&body), &r);
    assert_eq!(r.json()["deployment"]["version"], "0.2.0");
    let r = host
        .authed(
            "POST",
            "/v1/deployments/echo/rollback",
            Some("application/x-www-form-urlencoded"),
            br#"{"to":"0.1.0"}"#,
        )
        .await;
    assert_eq!(r.status, 415, "{}", r.text());
    check("POST", "/v1/deployments/{name}/rollback", None, &r);
    let r = host
        .api(
            "POST",
            "/v1/deployments/echo/rollback",
            &serde_json::json!({"to": 1, "x": 2}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let body = serde_json::json!({"name": "ci"});
    let r = host.api("POST", "/v1/tokens", &body).await;
    check("POST", "/v1/tokens", Some(&body), &r);
    let r = host
        .api("DELETE", "/v1/tokens/ci", &serde_json::json!(null))
        .await;
    check("DELETE", "/v1/tokens/{name}", None, &r);
    let r = host
        .api(
            "POST",
            "/v1/deployments",
            &serde_json::json!({"name": "echo", "version": "0.1.0", "colour": 1}),
        )
        .await;
    check("POST", "/v1/deployments", None, &r);
    host.stop().await;
}

/// `value` is valid under `schema` (from the OpenAPI document `doc`, whose
/// `$ref`s point into its components).
fn conforms(
    doc: &serde_json::Value,
    schema: &serde_json::Value,
    value: &serde_json::Value,
    what: &str,
) {
    let errors = violations(doc, schema, value, what);
    assert!(
        errors.is_empty(),
        "{what}: {value} does not match the document: {errors:?}"
    );
}

/// Where `value` breaks `schema`.
fn violations(
    doc: &serde_json::Value,
    schema: &serde_json::Value,
    value: &serde_json::Value,
    what: &str,
) -> Vec<String> {
    assert!(schema.is_object(), "{what}: no JSON schema in the document");
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    let validator = jsonschema::draft202012::new(&root)
        .unwrap_or_else(|e| panic!("{what}: the document's schema does not compile: {e}"));
    validator
        .iter_errors(value)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

/// A deployment that compiles does not hold the threads that serve: on a
/// runtime of one thread, the ingress keeps answering while a new
/// component compiles.
#[tokio::test(flavor = "current_thread")]
async fn a_deployment_compiles_off_the_threads_that_serve() {
    let root = tempfile::tempdir().unwrap();
    let host = Running::start(&root.path().join("st")).await;
    ok(&host.publish(ECHO, "echo", "0.1.0").await);
    ok(&host
        .api(
            "POST",
            "/v1/deployments",
            &serde_json::json!({"name": "echo", "version": "0.1.0", "route": "/echo"}),
        )
        .await);
    let fresh = root.path().join("hello.wasm");
    std::fs::copy(HELLO_HTTP, &fresh).unwrap();
    ok(&host
        .publish(fresh.to_str().unwrap(), "hello", "0.1.0")
        .await);
    let admin = host.admin;
    let auth = format!("Bearer {}", host.token);
    let deploying = tokio::spawn(async move {
        let body = serde_json::json!({"name": "hello", "version": "0.1.0", "route": "/hello"});
        http(
            admin,
            "POST",
            "/v1/deployments",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body.to_string().as_bytes(),
        )
        .await
    });
    let mut answered = 0;
    while !deploying.is_finished() {
        let r = http(host.ingress, "POST", "/echo", &[], b"meanwhile").await;
        assert_eq!((r.status, r.text().as_str()), (200, "meanwhile"));
        answered += 1;
    }
    let deployed = deploying.await.unwrap();
    ok(&deployed);
    let compiled = http(host.admin, "GET", "/metrics", &[], b"").await.text();
    assert!(
        compiled.lines().any(|l| l == "airssys_compilations 2"),
        "{compiled}"
    );
    assert!(
        answered >= 5,
        "only {answered} answer(s) while hello compiled"
    );
    host.stop().await;
}
