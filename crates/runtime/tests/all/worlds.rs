//! The standard worlds: wasi:cli/command and wasi:http/proxy.

use airssys_wasm_runtime::{Capability, Error, Grants, PrepareOptions, WorldKind};
use airssys_wasm_test_guests::{ECHO, HELLO_CLI, HELLO_HTTP};
use http_body_util::{BodyExt, Full};

use crate::load;

#[tokio::test]
async fn a_command_runs_and_its_exit_status_is_returned() {
    let args = Grants::default().allow(Capability::SystemCall("args".into()));
    let cli = load(HELLO_CLI, PrepareOptions::default().grants(args)).await;
    assert_eq!(cli.info().kind, WorldKind::Command);
    assert_eq!(
        cli.run(vec!["hello-cli".into(), "a".into()]).await.unwrap(),
        0
    );
    // WASI 0.2's `exit` carries success or failure only, so a guest's
    // `exit(7)` arrives as 1, as under `wasmtime run`.
    assert_eq!(
        cli.run(vec!["hello-cli".into(), "--exit".into(), "7".into()])
            .await
            .unwrap(),
        1
    );
    // Without the `args` grant the guest sees only its program name.
    let bare = load(HELLO_CLI, PrepareOptions::default()).await;
    assert_eq!(
        bare.run(vec!["hello-cli".into(), "--exit".into(), "7".into()])
            .await
            .unwrap(),
        0
    );
    // A handler is not a command.
    let echo = load(ECHO, PrepareOptions::default()).await;
    let err = echo.run(vec!["echo".into()]).await.unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
}

#[tokio::test]
async fn an_http_proxy_answers_requests_in_fresh_stores() {
    let proxy = load(HELLO_HTTP, PrepareOptions::default()).await;
    assert_eq!(proxy.info().kind, WorldKind::HttpProxy);
    for path in ["/", "/greet/ada"] {
        let request = http::Request::builder()
            .uri(format!("http://localhost{path}"))
            .body(Full::new(bytes::Bytes::new()))
            .unwrap();
        let response = proxy.handle_http(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("Hello from airssys-wasm!"), "{body}");
        assert!(
            body.contains(path),
            "the body names the path {path}: {body}"
        );
    }
}
