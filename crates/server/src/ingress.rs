//! The ingress: HTTP/1.1 on hyper, as `wasmtime serve` serves; each request
//! goes to the deployment whose route is the longest prefix of its path,
//! through the deployment's [`Route`] (so upgrades and rollbacks are hot
//! swaps: a request keeps the version it picked).
//!
//! - `wasi:http/proxy` components get the request as it came, in a fresh
//!   store (`ComponentPre::handle_http`).
//! - `handler` components get the body as the message's payload, its
//!   content type, its headers, and `:method`, `:path`, `:query`,
//!   `:authority` as headers; their answer is the response (a `:status`
//!   header sets the status). Their errors map to statuses: invalid input
//!   400, denied 403, not found 404, unsupported 501, unavailable 503,
//!   timeout 504, failed 500.
//! - A timeout before the answer is 504, an overloaded component 503, a
//!   trap 500 without detail (the detail goes to the log); no route is 404.

use std::convert::Infallible;
use std::sync::Arc;

use airssys_wasm_deploy::{Error as DeployError, Route};
use airssys_wasm_runtime::{ComponentError, Message, WorldKind};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use tracing::Instrument as _;

use crate::Host;

/// Any error a response body may end with.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every ingress response.
pub(crate) type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A plain-text answer with `status`.
fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(full(body.into() + "\n"));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Serve one request.
pub(crate) async fn handle(
    host: Arc<Host>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    if !normal(&path) {
        return Ok(text(
            StatusCode::BAD_REQUEST,
            "the path must be absolute, without empty, `.` or `..` segments",
        ));
    }
    let Some((prefix, name, route)) = host.route_for(&path) else {
        return Ok(text(StatusCode::NOT_FOUND, format!("no route for {path}")));
    };
    let started = std::time::Instant::now();
    // A handler gets the whole body: it is read before a version is picked,
    // so a slow client holds no version (nor a stateful upgrade's drain).
    let is_handler = route
        .current()
        .is_some_and(|a| a.component.info().kind == WorldKind::Airssys);
    let (request, message) = if is_handler {
        match read_message(&host, request).await {
            Ok(m) => (None, Some(m)),
            Err(resp) => return Ok(resp),
        }
    } else {
        (Some(request), None)
    };
    let pick = match route.pick().await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(component = %name, error = %e, "no version to serve");
            return Ok(text(StatusCode::SERVICE_UNAVAILABLE, "unavailable"));
        }
    };
    let version = pick.active.deployment.version.clone();
    // OpenTelemetry's HTTP names beside ours, for the trace export: a
    // server span named `METHOD ROUTE`, an error from a 5xx.
    let span = tracing::info_span!(
        "request",
        component = %name,
        version = %version,
        deployment = pick.active.deployment.id,
        canary = pick.is_canary(),
        "http.request.method" = %method,
        "http.route" = %prefix,
        "url.path" = %path,
        "http.response.status_code" = tracing::field::Empty,
        "otel.kind" = "server",
        "otel.name" = %format_args!("{method} {prefix}"),
        "otel.status_code" = tracing::field::Empty,
    );
    let (response, ok) = serve_picked(&name, &version, &pick.active, request, message)
        .instrument(span.clone())
        .await;
    span.record("http.response.status_code", response.status().as_u16());
    if response.status().is_server_error() {
        span.record("otel.status_code", "error");
    }
    pick.finish(ok);
    host.metrics
        .request(&name, &version, response.status(), started.elapsed());
    Ok(response)
}

/// Run the request on the version picked: the response, and whether the
/// version did its part.
async fn serve_picked(
    name: &str,
    version: &str,
    active: &airssys_wasm_deploy::Active,
    request: Option<Request<Incoming>>,
    message: Option<Message>,
) -> (Response<Body>, bool) {
    let component = &active.component;
    let (response, ok) = match (component.info().kind, request, message) {
        (WorldKind::HttpProxy, Some(request), _) => match component.handle_http(request).await {
            Ok(resp) => {
                let ok = !resp.status().is_server_error();
                (
                    resp.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync()),
                    ok,
                )
            }
            Err(e) => (runtime_error(name, version, &e), false),
        },
        (WorldKind::Airssys, _, Some(message)) => match active.execute(message, None).await {
            // The guest's log lines reach the host's log from the runtime,
            // in this request's span.
            Ok(out) => (message_response(out.value), true),
            // An actor's full mailboxes or its failure.
            Err(e @ (DeployError::MailboxFull { .. } | DeployError::ActorsFailed { .. })) => {
                tracing::warn!(error = %e, "not accepted");
                (text(StatusCode::SERVICE_UNAVAILABLE, e.to_string()), false)
            }
            Err(DeployError::Component(e)) => {
                let resp = runtime_error(name, version, &e);
                // A guest's own answer that the input was wrong is not the
                // version failing.
                let ok = matches!(
                    &e,
                    airssys_wasm_runtime::Error::Guest {
                        error: ComponentError::InvalidInput(_)
                            | ComponentError::NotFound(_)
                            | ComponentError::Denied(_),
                        ..
                    }
                );
                (resp, ok)
            }
            Err(e) => {
                tracing::error!(error = %e, "not served");
                (
                    text(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
                    false,
                )
            }
        },
        (kind, _, _) => (
            text(
                StatusCode::NOT_IMPLEMENTED,
                format!("{name} {version} is a {kind} component: it cannot serve this request"),
            ),
            true,
        ),
    };
    tracing::debug!(status = response.status().as_u16(), "answered");
    (response, ok)
}

/// Whether `path` is absolute and has no empty, `.` or `..` segment (a
/// trailing `/` is allowed).
fn normal(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    rest.is_empty()
        || rest
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
}

/// The request as a handler's message: the body (within the size limit and
/// the read timeout) as the payload, the content type, and the headers with
/// `:method`, `:path`, `:query` and `:authority`.
async fn read_message(host: &Host, request: Request<Incoming>) -> Result<Message, Response<Body>> {
    let (parts, body) = request.into_parts();
    let limit = host.config.max_request_body;
    let read = http_body_util::Limited::new(body, limit).collect();
    let payload = match tokio::time::timeout(host.config.body_timeout, read).await {
        Err(_) => {
            return Err(text(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time",
            ));
        }
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return Err(text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is over {limit} bytes"),
            ));
        }
        Ok(Err(e)) => {
            return Err(text(
                StatusCode::BAD_REQUEST,
                format!("the request body could not be read: {e}"),
            ));
        }
    };
    let mut headers = vec![
        (":method".to_string(), parts.method.to_string()),
        (":path".to_string(), parts.uri.path().to_string()),
    ];
    if let Some(q) = parts.uri.query() {
        headers.push((":query".to_string(), q.to_string()));
    }
    let authority = parts.uri.authority().map(ToString::to_string).or_else(|| {
        parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
    });
    if let Some(a) = authority {
        headers.push((":authority".to_string(), a));
    }
    for (k, v) in &parts.headers {
        headers.push((
            k.as_str().to_string(),
            String::from_utf8_lossy(v.as_bytes()).into_owned(),
        ));
    }
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok(Message {
        payload: Vec::from(payload),
        content_type,
        headers,
    })
}

/// Headers a component may not set: they frame the message or the
/// connection, which the host owns.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "content-length",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// A handler's answer as an HTTP response.
fn message_response(m: Message) -> Response<Body> {
    // A final status only: 1xx would change the exchange (101 upgrades the
    // connection), which is the host's business.
    let status = m
        .header(":status")
        .and_then(|s| s.trim().parse::<u16>().ok())
        .filter(|s| (200..=599).contains(s))
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut r = Response::new(full(m.payload));
    *r.status_mut() = status;
    for (k, v) in &m.headers {
        if k.starts_with(':') || HOP_BY_HOP.iter().any(|h| k.eq_ignore_ascii_case(h)) {
            continue;
        }
        // Names and values HTTP cannot carry are dropped, not fatal.
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            r.headers_mut().append(k, v);
        }
    }
    if let Some(ct) = m.content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, ct);
    }
    r
}

/// The status and body of a failed call: a component's own error says what
/// it said; the host's (a trap, a limit) says only what kind it was, and
/// the detail goes to the log.
fn runtime_error(name: &str, version: &str, e: &airssys_wasm_runtime::Error) -> Response<Body> {
    use airssys_wasm_runtime::Error as E;
    match e {
        E::Guest { error, .. } => {
            let status = match error {
                ComponentError::InvalidInput(_) => StatusCode::BAD_REQUEST,
                ComponentError::Denied(_) => StatusCode::FORBIDDEN,
                ComponentError::NotFound(_) => StatusCode::NOT_FOUND,
                ComponentError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                ComponentError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                ComponentError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
                ComponentError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
                ComponentError::Cycle(_) => StatusCode::LOOP_DETECTED,
                ComponentError::MailboxFull(_) => StatusCode::SERVICE_UNAVAILABLE,
                ComponentError::QuotaExceeded(_) => StatusCode::INSUFFICIENT_STORAGE,
            };
            text(
                status,
                airssys_wasm_runtime::describe_component_error(error),
            )
        }
        E::Timeout { .. } => {
            tracing::warn!(component = %name, version, error = %e, "request timed out");
            text(StatusCode::GATEWAY_TIMEOUT, "the component timed out")
        }
        E::Overloaded { .. } => {
            tracing::warn!(component = %name, version, error = %e, "overloaded");
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the component is overloaded; retry later",
            )
        }
        _ => {
            tracing::error!(component = %name, version, error = %e, "request failed");
            text(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// The route a path goes to: the longest route that is the path or a
/// prefix of it ending at a `/`.
pub(crate) fn matches(route: &str, path: &str) -> bool {
    route == "/"
        || path == route
        || (path.starts_with(route) && path.as_bytes().get(route.len()) == Some(&b'/'))
}

/// Serve the ingress on `listener` until `stop` changes.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    host: Arc<Host>,
    stop: crate::listen::Stop,
) {
    let max = host.config.max_connections;
    let service = hyper::service::service_fn(move |req| handle(host.clone(), req));
    crate::listen::listen(listener, service, max, stop).await;
}

/// Where each route goes: longest route first.
pub(crate) fn table(mut routes: Vec<(String, String, Route)>) -> Vec<(String, String, Route)> {
    routes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
    routes
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn a_route_is_a_path_prefix_at_a_segment_boundary() {
        assert!(matches("/", "/anything"));
        assert!(matches("/hello", "/hello"));
        assert!(matches("/hello", "/hello/there"));
        assert!(!matches("/hello", "/helloo"));
        assert!(!matches("/hello", "/hell"));
        assert!(!matches("/a/b", "/a"));
    }
}
