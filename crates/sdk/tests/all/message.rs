//! `Message` and `ComponentError` conveniences.

use airssys_wasm_sdk::{Capability, ComponentError, Message};

#[test]
fn builders_and_headers() {
    let message = Message::text("hello")
        .with_header("X-Trace", "abc")
        .with_header("x-trace", "second");
    assert_eq!(message.payload, b"hello");
    assert_eq!(
        message.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(message.header("x-TRACE"), Some("abc"));
    assert_eq!(message.header("missing"), None);

    let json = Message::new(br#"{"a":1}"#.to_vec()).with_content_type("application/json");
    assert_eq!(json.content_type.as_deref(), Some("application/json"));
    assert!(json.headers.is_empty());
    assert_eq!(Message::default(), Message::new(Vec::new()));
}

#[test]
fn payload_str_refuses_invalid_utf8() {
    assert_eq!(Message::text("ok").payload_str(), Ok("ok"));
    let err = Message::new(vec![0xff, 0xfe]).payload_str().unwrap_err();
    assert!(matches!(err, ComponentError::InvalidInput(_)), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("invalid input: payload is not UTF-8"),
        "{err}"
    );
}

#[test]
fn error_display() {
    let denied = ComponentError::Denied(Capability::SystemCall("state".into()));
    assert_eq!(
        denied.to_string(),
        "denied: capability `system-call:state` is not granted"
    );
    assert_eq!(
        ComponentError::Timeout("2 s".into()).to_string(),
        "timeout: 2 s"
    );
    let boxed: Box<dyn std::error::Error> = Box::new(ComponentError::Failed("boom".into()));
    assert_eq!(boxed.to_string(), "failed: boom");
}
