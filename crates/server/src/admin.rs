//! The admin listener: `/healthz`, `/readyz` and `/metrics` open, the
//! control API under `/v1` behind the bearer token. Every error is a JSON
//! object `{"error": "..."}` that says what to fix.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use airssys_wasm_deploy::{Canary, DeploySpec, Deployment, Provenance, Strategy};
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};

use crate::Host;

type Shared = State<Arc<Host>>;

/// Who made a control-API request: `admin` (the admin token) or
/// `token:NAME`; the audit trail's actor.
#[derive(Clone)]
pub(crate) struct Actor(String);

type By = axum::Extension<Actor>;

/// A failed request: its status and what to fix.
pub(crate) struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<airssys_wasm_deploy::Error> for ApiError {
    fn from(e: airssys_wasm_deploy::Error) -> Self {
        use airssys_wasm_deploy::Error as E;
        let status = match &e {
            E::Invalid(_) => StatusCode::BAD_REQUEST,
            E::Immutable { .. } => StatusCode::CONFLICT,
            E::Component(_) => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self(status, e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        Self(r.status(), format!("the JSON body: {}", r.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self(r.status(), format!("the query: {}", r.body_text()))
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        Self(r.status(), format!("the body: {}", r.body_text()))
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

/// Connections the admin listener keeps open at most.
const ADMIN_CONNECTIONS: usize = 64;

/// Serve the admin listener until `stop` changes.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    host: Arc<Host>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let grace = host.config.grace;
    let service = hyper_util::service::TowerToHyperService::new(router(host));
    crate::listen::listen(listener, service, ADMIN_CONNECTIONS, stop, grace).await;
}

fn router(host: Arc<Host>) -> Router {
    let component_limit = host.config.max_component_size;
    let api = Router::new()
        .route(
            "/v1/components",
            post(publish)
                .layer(DefaultBodyLimit::max(component_limit))
                .get(components),
        )
        .route("/v1/deployments", post(deploy).get(deployments))
        .route("/v1/deployments/{name}", get(deployment))
        .route("/v1/deployments/{name}/upgrade", post(upgrade))
        .route("/v1/deployments/{name}/rollback", post(rollback))
        .route("/v1/deployments/{name}/promote", post(promote))
        .route("/v1/deployments/{name}/abort", post(abort))
        .route("/v1/deployments/{name}/history", get(history))
        .route("/v1/tokens", post(create_token).get(tokens))
        .route("/v1/tokens/{name}", axum::routing::delete(revoke_token))
        .route("/v1/audit", get(audit))
        .route("/v1/audit/verify", get(verify))
        .layer(DefaultBodyLimit::max(1 << 20))
        .route_layer(axum::middleware::from_fn_with_state(
            host.clone(),
            require_token,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(api)
        .fallback(|| async {
            ApiError(
                StatusCode::NOT_FOUND,
                "no such path; the control API is under /v1".into(),
            )
        })
        .with_state(host)
}

async fn require_token(State(host): Shared, mut request: Request, next: Next) -> Response {
    if let Some(actor) = host
        .token
        .actor(request.headers().get(http::header::AUTHORIZATION))
    {
        request.extensions_mut().insert(Actor(actor));
        return next.run(request).await;
    }
    let path = request.uri().path().to_string();
    // Failures are counted per minute: the first of each minute is written
    // to the audit trail with how many came since the last record, and
    // past 30 in a minute they are turned away.
    let (record, limited) = {
        let mut f = host
            .auth_failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if f.0
            .is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(60))
        {
            let since = f.1.saturating_sub(f.2) + 1;
            *f = (Some(std::time::Instant::now()), 1, 1);
            (Some(since), false)
        } else {
            f.1 += 1;
            (None, f.1 > 30)
        }
    };
    if let Some(count) = record {
        tracing::warn!(path = %path, "control API request without a valid token");
        let mut d = host.deployer.lock().await;
        if let Err(e) = d
            .registry()
            .record_auth_failures(count, &format!("{} {path}", request.method()))
        {
            tracing::error!(error = %e, "recording a refused request");
        }
    }
    if limited {
        let mut r = ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests without a valid token; wait a minute".into(),
        )
        .into_response();
        r.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("60"),
        );
        return r;
    }
    let mut r = ApiError(
        StatusCode::UNAUTHORIZED,
        format!(
            "a valid bearer token is needed: `Authorization: Bearer TOKEN`, the token being in {}",
            host.token.path().display()
        ),
    )
    .into_response();
    r.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer"),
    );
    r
}

async fn readyz(State(host): Shared) -> (StatusCode, &'static str) {
    if host.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics(State(host): Shared) -> Response {
    let (stats, active) = (host.runtime.stats(), host.active.load(Ordering::SeqCst));
    (
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        host.metrics.render(stats, active),
    )
        .into_response()
}

fn shown(d: &Deployment) -> Value {
    json!(d.redacted())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishQuery {
    name: String,
    version: String,
    #[serde(default)]
    allow_unsigned: bool,
}

/// `POST /v1/components?name=N&version=V[&allow_unsigned=true]`, the
/// component's bytes as the body; a detached signature (the JSON that
/// `airssys-wasm sign` writes) in the header `x-airssys-signature`.
async fn publish(
    State(host): Shared,
    axum::Extension(Actor(actor)): By,
    query: Result<Query<PublishQuery>, QueryRejection>,
    headers: http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let Query(q) = query?;
    let bytes = body?;
    let signature = match headers.get("x-airssys-signature") {
        Some(v) => Some(
            serde_json::from_slice::<airssys_wasm_deploy::signing::Signature>(v.as_bytes())
                .map_err(|e| {
                    ApiError(
                        StatusCode::BAD_REQUEST,
                        format!("the header x-airssys-signature is not a signature: {e}"),
                    )
                })?,
        ),
        None => None,
    };
    let provenance = match signature {
        Some(s) => Provenance::signed(s),
        None if q.allow_unsigned => Provenance::unsigned(),
        None => Provenance::default(),
    };
    let mut d = host.deployer.lock().await;
    let p = d
        .registry()
        .publish(&q.name, &q.version, &bytes, &provenance, &actor)?;
    Ok(Json(json!(p)))
}

async fn components(State(host): Shared) -> ApiResult {
    let d = host.deployer.lock().await;
    let list = d.registry_ref().versions(None)?;
    Ok(Json(json!(list)))
}

/// What a deployment is made with.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SpecBody {
    #[serde(default)]
    route: Option<String>,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    config: BTreeMap<String, String>,
    #[serde(default)]
    memory: Option<u64>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

impl SpecBody {
    fn is_empty(&self) -> bool {
        self.route.is_none()
            && self.allow.is_empty()
            && self.deny.is_empty()
            && self.config.is_empty()
            && self.memory.is_none()
            && self.timeout_ms.is_none()
    }

    fn spec(self, name: &str, version: &str) -> DeploySpec {
        let mut spec = DeploySpec::new(name, version);
        spec.route = self.route;
        spec.allow = self.allow;
        spec.deny = self.deny;
        spec.config = self.config.into_iter().collect();
        spec.memory = self.memory;
        spec.timeout_ms = self.timeout_ms;
        spec
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployBody {
    name: String,
    version: String,
    #[serde(default)]
    allow_breaking: bool,
    #[serde(flatten)]
    spec: SpecBody,
}

/// `POST /v1/deployments`: deploy a published version (over an active
/// one: an immediate upgrade).
async fn deploy(
    State(host): Shared,
    axum::Extension(Actor(actor)): By,
    body: Result<Json<DeployBody>, JsonRejection>,
) -> ApiResult {
    let Json(b) = body?;
    let mut d = host.deployer.lock().await;
    let active = d.status()?.iter().any(|r| r.name == b.name);
    let record = if active && b.spec.is_empty() {
        // Over an active deployment without a spec: keep its grants,
        // limits, configuration and route, as the CLI does.
        d.upgrade(
            &b.name,
            &b.version,
            Strategy::Immediate,
            None,
            b.allow_breaking,
            &actor,
        )
        .await?
    } else {
        let spec = b.spec.spec(&b.name, &b.version);
        d.deploy(spec, b.allow_breaking, &actor).await?
    };
    host.refresh_routes(&mut d).await.map_err(internal)?;
    Ok(Json(shown(&record)))
}

fn internal(e: crate::Error) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// An active deployment as `status` shows it: with its state's usage and
/// its canary in progress.
fn status_row(d: &airssys_wasm_deploy::Deployer, active: &Deployment) -> Result<Value, ApiError> {
    let usage = d.state_usage(active)?;
    let canary = d.canary_record(&active.name)?.map(|c| c.redacted());
    let mut v = shown(active);
    v["state_usage"] = json!(usage);
    v["canary"] = json!(canary);
    Ok(v)
}

async fn deployments(State(host): Shared) -> ApiResult {
    let d = host.deployer.lock().await;
    let list = d
        .status()?
        .iter()
        .map(|a| status_row(&d, a))
        .collect::<Result<Vec<Value>, ApiError>>()?;
    Ok(Json(json!(list)))
}

async fn deployment(State(host): Shared, Path(name): Path<String>) -> ApiResult {
    let d = host.deployer.lock().await;
    let Some(active) = d.status()?.into_iter().find(|r| r.name == name) else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("{name} has no active deployment"),
        ));
    };
    Ok(Json(status_row(&d, &active)?))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UpgradeBody {
    version: String,
    /// `immediate` (default), `blue-green` or `canary`.
    #[serde(default)]
    strategy: Option<String>,
    /// The canary's plan (with `strategy: canary`; default plan otherwise).
    #[serde(default)]
    canary: Option<Canary>,
    #[serde(default)]
    allow_breaking: bool,
    #[serde(flatten)]
    spec: SpecBody,
}

/// `POST /v1/deployments/{name}/upgrade`.
async fn upgrade(
    State(host): Shared,
    axum::Extension(Actor(actor)): By,
    Path(name): Path<String>,
    body: Result<Json<UpgradeBody>, JsonRejection>,
) -> ApiResult {
    let Json(b) = body?;
    let mut strategy: Strategy = b
        .strategy
        .as_deref()
        .unwrap_or("immediate")
        .parse()
        .map_err(|e: airssys_wasm_deploy::Error| {
            ApiError(StatusCode::BAD_REQUEST, e.to_string())
        })?;
    match (&mut strategy, b.canary) {
        (Strategy::Canary(plan), Some(given)) => *plan = given,
        (_, Some(_)) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "`canary` is the plan of the canary strategy: give `strategy: \"canary\"` with it"
                    .into(),
            ));
        }
        _ => {}
    }
    let spec = (!b.spec.is_empty()).then(|| b.spec.spec(&name, &b.version));
    let mut d = host.deployer.lock().await;
    let record = d
        .upgrade(&name, &b.version, strategy, spec, b.allow_breaking, &actor)
        .await?;
    host.refresh_routes(&mut d).await.map_err(internal)?;
    Ok(Json(shown(&record)))
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    #[serde(default)]
    to: Option<String>,
}

/// `POST /v1/deployments/{name}/rollback` with `{"to": VERSION|ID}` or no
/// body.
async fn rollback(
    State(host): Shared,
    axum::Extension(Actor(actor)): By,
    Path(name): Path<String>,
    body: Result<Json<RollbackBody>, JsonRejection>,
) -> ApiResult {
    let b = match body {
        Ok(Json(b)) => b,
        Err(JsonRejection::MissingJsonContentType(_)) => RollbackBody::default(),
        Err(e) => return Err(e.into()),
    };
    let mut d = host.deployer.lock().await;
    let done = d.rollback(&name, b.to.as_deref(), &actor).await?;
    host.refresh_routes(&mut d).await.map_err(internal)?;
    let mut v = json!(done);
    v["deployment"] = shown(&done.deployment);
    Ok(Json(v))
}

async fn promote(
    State(host): Shared,
    axum::Extension(Actor(actor)): By,
    Path(name): Path<String>,
) -> ApiResult {
    let mut d = host.deployer.lock().await;
    let record = d.promote(&name, &actor).await?;
    host.refresh_routes(&mut d).await.map_err(internal)?;
    Ok(Json(shown(&record)))
}

async fn abort(
    State(host): Shared,
    axum::Extension(Actor(actor)): By,
    Path(name): Path<String>,
) -> ApiResult {
    let mut d = host.deployer.lock().await;
    let record = d.abort(&name, &actor)?;
    Ok(Json(shown(&record)))
}

async fn history(State(host): Shared, Path(name): Path<String>) -> ApiResult {
    let d = host.deployer.lock().await;
    let list: Vec<Value> = d.history(&name)?.iter().map(shown).collect();
    if list.is_empty() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("{name} was never deployed here"),
        ));
    }
    Ok(Json(json!(list)))
}

async fn audit(State(host): Shared) -> ApiResult {
    let d = host.deployer.lock().await;
    Ok(Json(json!(d.registry_ref().audit()?)))
}

async fn verify(State(host): Shared) -> Result<Response, ApiError> {
    let d = host.deployer.lock().await;
    Ok(match d.registry_ref().verify_audit() {
        Ok(v) => Json(json!({ "ok": true, "records": v.records, "head": v.head })).into_response(),
        Err(e) => (
            StatusCode::CONFLICT,
            Json(json!({ "ok": false, "error": e.to_string() })),
        )
            .into_response(),
    })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    name: String,
}

/// Only the admin token manages tokens.
fn admin_only(actor: &str) -> Result<(), ApiError> {
    if actor == "admin" {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::FORBIDDEN,
            "only the admin token (STATE_DIR/admin.token) manages tokens".into(),
        ))
    }
}

/// `POST /v1/tokens` with `{"name": NAME}`: a new named token, shown once.
async fn create_token(
    State(host): Shared,
    axum::Extension(Actor(actor)): By,
    body: Result<Json<TokenBody>, JsonRejection>,
) -> ApiResult {
    admin_only(&actor)?;
    let Json(b) = body?;
    let mut d = host.deployer.lock().await;
    let token = d.registry().create_token(&b.name, &actor)?;
    host.token.set_named(d.registry_ref().token_digests()?);
    Ok(Json(json!({ "name": b.name, "token": token })))
}

async fn tokens(State(host): Shared) -> ApiResult {
    let d = host.deployer.lock().await;
    Ok(Json(json!(d.registry_ref().tokens()?)))
}

async fn revoke_token(
    State(host): Shared,
    axum::Extension(Actor(actor)): By,
    Path(name): Path<String>,
) -> ApiResult {
    admin_only(&actor)?;
    let mut d = host.deployer.lock().await;
    d.registry().revoke_token(&name, &actor)?;
    host.token.set_named(d.registry_ref().token_digests()?);
    Ok(Json(json!({ "name": name, "revoked": true })))
}
