//! `--host URL`: the commands that change or show deployments talk to a
//! running host's control API instead of a local state directory. The
//! token comes from `AIRSSYS_TOKEN`, else from the state directory's
//! `admin.token` (a host on this machine).

use std::path::Path;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use serde_json::Value;

use crate::output::InputError;

/// The largest answer read from the control API.
const MAX_ANSWER: usize = 64 << 20;

/// A running host's control API.
pub(crate) struct Client {
    base: String,
    token: String,
    http: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
}

impl Client {
    /// The control API at `url` (`http://HOST:PORT`), with the token of
    /// `AIRSSYS_TOKEN` or `state_dir/admin.token`.
    pub(crate) fn new(url: &str, state_dir: Option<&Path>) -> anyhow::Result<Self> {
        let base = url.trim_end_matches('/').to_string();
        let uri: http::Uri = base
            .parse()
            .map_err(|e| InputError(format!("--host `{url}` is not a URL: {e}")))?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            bail!(InputError(format!(
                "--host `{url}` must be http://HOST:PORT (the admin listener of `airssys-wasm serve`)"
            )));
        }
        let token = match std::env::var("AIRSSYS_TOKEN") {
            Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
            _ => {
                let file = state_dir.map(|d| d.join("admin.token"));
                match file.as_deref().map(std::fs::read_to_string) {
                    Some(Ok(t)) => t.trim().to_string(),
                    _ => bail!(InputError(
                        "no token for the control API: set AIRSSYS_TOKEN (the host wrote it to STATE_DIR/admin.token)"
                            .into()
                    )),
                }
            }
        };
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        Ok(Self { base, token, http })
    }

    /// `method path` with `body` (of `content_type`), and the JSON answer.
    /// An error answer is the error, in the API's words (4xx: exit 3).
    pub(crate) async fn send(
        &self,
        method: http::Method,
        path: &str,
        content_type: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> anyhow::Result<Value> {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(http::header::CONTENT_TYPE, content_type);
        for (k, v) in headers {
            request = request.header(*k, v);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .context("building the request")?;
        let response = self
            .http
            .request(request)
            .await
            .with_context(|| format!("cannot reach the host at {}", self.base))?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the host's answer: {e}"))?
            .to_bytes();
        let value: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).trim().to_string()));
        if status.is_success() {
            return Ok(value);
        }
        let said = value
            .get("error")
            .and_then(Value::as_str)
            .map_or_else(|| value.to_string(), str::to_string);
        if status.is_client_error() {
            bail!(InputError(format!("the host says ({status}): {said}")));
        }
        bail!("the host says ({status}): {said}")
    }

    /// A JSON request.
    pub(crate) async fn json(
        &self,
        method: http::Method,
        path: &str,
        body: &Value,
    ) -> anyhow::Result<Value> {
        self.send(
            method,
            path,
            "application/json",
            &[],
            serde_json::to_vec(body)?,
        )
        .await
    }

    /// Where the host is.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }
}
