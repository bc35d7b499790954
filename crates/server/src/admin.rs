//! The admin listener: `/healthz`, `/readyz` and `/metrics` open, the
//! control API under `/v1` behind the bearer token. Every error is a JSON
//! object `{"error": "..."}` that says what to fix.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use airssys_wasm_deploy::{
    ActorSpec, ActorStatus, AuditRecord, Canary, DeploySpec, Deployment, Hosting, Provenance,
    Published, Rollback, StateUsage, Strategy, TokenInfo,
};
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use bytes::Bytes;
use http::StatusCode;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::Host;

type Shared = State<Arc<Host>>;

/// Who made a control-API request: `admin` (the admin token) or
/// `token:NAME`; the audit trail's actor.
#[derive(Clone)]
pub(crate) struct Actor(String);

type By = axum::Extension<Actor>;

/// A failed request: its status and what to fix.
pub(crate) struct ApiError(StatusCode, String);

/// The body of every refused or failed request.
#[derive(serde::Serialize, ToSchema)]
struct ErrorBody {
    /// What went wrong and what to fix.
    error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
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

type ApiResult<T> = Result<Json<T>, ApiError>;

/// Connections the admin listener keeps open at most.
const ADMIN_CONNECTIONS: usize = 64;

/// Serve the admin listener until `stop` changes.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    host: Arc<Host>,
    stop: crate::listen::Stop,
) {
    let service = hyper_util::service::TowerToHyperService::new(router(host));
    crate::listen::listen(listener, service, ADMIN_CONNECTIONS, stop).await;
}

/// The control API's OpenAPI document (also served at
/// `/v1/openapi.json`, and committed as `docs/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api(0).split_for_parts().1;
    common_responses(&mut doc);
    doc.merge(open().split_for_parts().1);
    doc
}

/// The answers every `/v1` operation may give besides its own: no valid
/// token (401), too many refusals (429); and, with a JSON body, a body too
/// large (413), not JSON (415) or not the right fields (422).
fn common_responses(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    };
    for item in doc.paths.paths.values_mut() {
        let operations = [&mut item.get, &mut item.post, &mut item.delete];
        for op in operations.into_iter().flatten() {
            let with_json = op
                .request_body
                .as_ref()
                .is_some_and(|b| b.content.contains_key("application/json"));
            let mut add = |status: &str, description: &str| {
                op.responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| error(description).into());
            };
            add(
                "401",
                "No valid bearer token (with `WWW-Authenticate: Bearer`)",
            );
            add(
                "429",
                "Too many requests without a valid token this minute (with `Retry-After`)",
            );
            if with_json {
                add("413", "A body over 1 MiB");
                add("415", "A body that is not `application/json`");
                add("422", "Unknown field or wrong type");
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "airssys-wasm control API",
        description = "Publish, deploy, upgrade, promote, abort and roll back WebAssembly \
                       components on a running `airssys-wasm serve`, and read its audit trail. \
                       Every `/v1` path needs `Authorization: Bearer TOKEN` (the admin token is in \
                       `STATE_DIR/admin.token`; named tokens come from `POST /v1/tokens`). Every \
                       error is a JSON object `{\"error\": \"...\"}` that says what to fix."
    ),
    modifiers(&Bearer),
    tags(
        (name = "components", description = "Published versions: immutable, content-addressed"),
        (name = "deployments", description = "What runs, on which route, and its history"),
        (name = "audit", description = "The hash-chained audit trail"),
        (name = "tokens", description = "Named tokens of the control API"),
        (name = "host", description = "Health, readiness and metrics: no token needed"),
    )
)]
struct ApiDoc;

/// The `bearer` security scheme, required by every `/v1` path.
struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The `/v1` routes with their document; components up to
/// `component_limit` bytes, JSON bodies up to 1 MiB.
fn api(component_limit: usize) -> OpenApiRouter<Arc<Host>> {
    let (schemas, paths, publish_or_list) = routes!(publish, components);
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes((
            schemas,
            paths,
            publish_or_list.layer(DefaultBodyLimit::max(component_limit)),
        ))
        .routes(routes!(diff))
        .routes(routes!(deploy, deployments))
        .routes(routes!(deployment))
        .routes(routes!(upgrade))
        .routes(routes!(rollback))
        .routes(routes!(promote))
        .routes(routes!(abort))
        .routes(routes!(history))
        .routes(routes!(request))
        .routes(routes!(send))
        .routes(routes!(create_token, tokens))
        .routes(routes!(revoke_token))
        .routes(routes!(audit))
        .routes(routes!(verify))
        .routes(routes!(openapi_json))
        .layer(DefaultBodyLimit::max(1 << 20))
}

/// The paths open without a token.
fn open() -> OpenApiRouter<Arc<Host>> {
    OpenApiRouter::default()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

fn router(host: Arc<Host>) -> Router {
    let (api, _) = api(host.config.max_component_size).split_for_parts();
    let api = api.route_layer(axum::middleware::from_fn_with_state(
        host.clone(),
        require_token,
    ));
    let (open, _) = open().split_for_parts();
    open.merge(api)
        .fallback(|| async {
            ApiError(
                StatusCode::NOT_FOUND,
                "no such path; the control API is under /v1".into(),
            )
        })
        .with_state(host)
}

/// The document, built once.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "host",
    security(("bearer" = [])),
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json")))]
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    Json(DOC.get_or_init(openapi).clone())
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

/// Whether the host runs (always `ok` when it answers).
#[utoipa::path(get, path = "/healthz", tag = "host", security(()),
    responses((status = 200, description = "The host runs", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// Whether the restored deployments serve.
#[utoipa::path(get, path = "/readyz", tag = "host", security(()),
    responses(
        (status = 200, description = "Every restored deployment serves", body = String, content_type = "text/plain"),
        (status = 503, description = "Still restoring", body = String, content_type = "text/plain"),
    ))]
async fn readyz(State(host): Shared) -> (StatusCode, &'static str) {
    if host.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// Calls, errors and latency per component and version, compilations,
/// deployments and more, in the OpenMetrics text format.
#[utoipa::path(get, path = "/metrics", tag = "host", security(()),
    responses((status = 200, description = "The metrics", body = String,
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8")))]
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

fn shown(d: &Deployment) -> Deployment {
    d.redacted()
}

/// Bytes, as a request body (a component to publish, a message).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[expect(
    dead_code,
    reason = "a schema only: the handler reads the body as bytes"
)]
struct ComponentBytes(Vec<u8>);

/// The version published.
#[derive(serde::Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct PublishQuery {
    /// The component's name.
    name: String,
    /// Its version (semver).
    version: String,
    /// Publish without a signature (development).
    #[serde(default)]
    allow_unsigned: bool,
}

/// Publish a component: its bytes as the body, a detached signature (the
/// JSON that `airssys-wasm sign` writes) in the header
/// `x-airssys-signature`. Publishing the same bytes again is a no-op;
/// other bytes under a published version are refused.
#[utoipa::path(post, path = "/v1/components", tag = "components",
    security(("bearer" = [])),
    params(
        PublishQuery,
        ("x-airssys-signature" = Option<String>, Header, description = "A detached signature, as JSON"),
    ),
    request_body(content = ComponentBytes, content_type = "application/wasm",
        description = "The component's bytes, up to `--max-component-size`"),
    responses(
        (status = 200, description = "Published (or already there)", body = Published),
        (status = 400, description = "A bad query or signature", body = ErrorBody),
        (status = 409, description = "The version is published with other bytes", body = ErrorBody),
        (status = 413, description = "Larger than `--max-component-size`", body = ErrorBody),
        (status = 422, description = "Not a valid component", body = ErrorBody),
    ))]
async fn publish(
    State(host): Shared,
    axum::Extension(Actor(actor)): By,
    query: Result<Query<PublishQuery>, QueryRejection>,
    headers: http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Published> {
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
    Ok(Json(p))
}

/// The published versions, newest first per component.
#[utoipa::path(get, path = "/v1/components", tag = "components",
    security(("bearer" = [])),
    responses((status = 200, description = "Every published version", body = Vec<Published>)))]
async fn components(State(host): Shared) -> ApiResult<Vec<Published>> {
    let d = host.deployer.lock().await;
    Ok(Json(d.registry_ref().versions(None)?))
}

/// The versions compared.
#[derive(serde::Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DiffQuery {
    /// The older version.
    from: String,
    /// The newer version.
    to: String,
}

/// What changes in the component's WIT world from one published version
/// to another, most serious first: `breaking`, `needs-grant` or
/// `compatible` each.
#[utoipa::path(get, path = "/v1/components/{name}/diff", tag = "components",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The component"), DiffQuery),
    responses(
        (status = 200, description = "The changes (none: the same world)", body = Vec<airssys_wasm_deploy::diff::Change>),
        (status = 400, description = "A version not published, or a bad query", body = ErrorBody),
    ))]
async fn diff(
    State(host): Shared,
    Path(name): Path<String>,
    query: Result<Query<DiffQuery>, QueryRejection>,
) -> ApiResult<Vec<airssys_wasm_deploy::diff::Change>> {
    let Query(q) = query?;
    let d = host.deployer.lock().await;
    Ok(Json(d.diff(&name, &q.from, &q.to)?))
}

/// What a deployment is made with, from a request body.
#[derive(Default)]
struct SpecBody {
    route: Option<String>,
    allow: Vec<String>,
    deny: Vec<String>,
    config: BTreeMap<String, String>,
    memory: Option<u64>,
    timeout_ms: Option<u64>,
    max_concurrent: Option<u32>,
    hosting: Option<Hosting>,
    actor: Option<ActorSpec>,
    subscribe: Vec<String>,
}

/// A request body with the fields that say what a deployment is made with
/// (route, grants, limits, configuration) beside its own. They are
/// written out in each body, not flattened: the document's schema of a
/// flattened struct is an `allOf` whose closed parts reject each other's
/// fields.
macro_rules! with_spec_fields {
    ($(#[$meta:meta])* struct $name:ident { $($(#[$fmeta:meta])* $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        struct $name {
            $($(#[$fmeta])* $field: $ty,)*
            /// The HTTP path prefix the ingress serves it on (`/hello`).
            #[serde(default)]
            route: Option<String>,
            /// Capabilities granted, in their string form
            /// (`file-read:/data`).
            #[serde(default)]
            allow: Vec<String>,
            /// Capabilities denied, in their string form.
            #[serde(default)]
            deny: Vec<String>,
            /// Configuration the component reads.
            #[serde(default)]
            config: BTreeMap<String, String>,
            /// Memory limit in bytes.
            #[serde(default)]
            memory: Option<u64>,
            /// Time limit of a call in milliseconds.
            #[serde(default)]
            timeout_ms: Option<u64>,
            /// Calls it runs at once at most (more are answered `503`).
            #[serde(default)]
            max_concurrent: Option<u32>,
            /// `per-call` (default) or `actor`.
            #[serde(default)]
            hosting: Option<Hosting>,
            /// Actor hosting's settings (with `hosting: actor`).
            #[serde(default)]
            actor: Option<ActorSpec>,
            /// Topics it receives what is published on (each needs a
            /// `messaging:subscribe:...` grant).
            #[serde(default)]
            subscribe: Vec<String>,
        }

        impl $name {
            /// The deployment fields, taken out.
            fn take_spec(&mut self) -> SpecBody {
                SpecBody {
                    route: self.route.take(),
                    allow: std::mem::take(&mut self.allow),
                    deny: std::mem::take(&mut self.deny),
                    config: std::mem::take(&mut self.config),
                    memory: self.memory.take(),
                    timeout_ms: self.timeout_ms.take(),
                    max_concurrent: self.max_concurrent.take(),
                    hosting: self.hosting.take(),
                    actor: self.actor.take(),
                    subscribe: std::mem::take(&mut self.subscribe),
                }
            }
        }
    };
}

impl SpecBody {
    fn is_empty(&self) -> bool {
        self.route.is_none()
            && self.allow.is_empty()
            && self.deny.is_empty()
            && self.config.is_empty()
            && self.memory.is_none()
            && self.timeout_ms.is_none()
            && self.max_concurrent.is_none()
            && self.hosting.is_none()
            && self.actor.is_none()
            && self.subscribe.is_empty()
    }

    fn spec(self, name: &str, version: &str) -> DeploySpec {
        let mut spec = DeploySpec::new(name, version);
        spec.route = self.route;
        spec.allow = self.allow;
        spec.deny = self.deny;
        spec.config = self.config.into_iter().collect();
        spec.memory = self.memory;
        spec.timeout_ms = self.timeout_ms;
        spec.max_concurrent = self.max_concurrent;
        spec.hosting = self.hosting.unwrap_or_default();
        spec.actor = self.actor;
        spec.subscribe = self.subscribe;
        spec
    }
}

with_spec_fields! {
    /// A deployment to make.
    #[derive(serde::Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    struct DeployBody {
        /// The component.
        name: String,
        /// Its published version.
        version: String,
        /// Deploy over an active version even if the contract breaks.
        #[serde(default)]
        allow_breaking: bool,
    }
}

/// Deploy a published version. Over an active one it is an immediate
/// upgrade (keeping its grants, limits, configuration and route when the
/// body gives none).
#[utoipa::path(post, path = "/v1/deployments", tag = "deployments",
    security(("bearer" = [])),
    request_body = DeployBody,
    responses(
        (status = 200, description = "The deployment, active", body = Deployment),
        (status = 400, description = "Invalid: what to fix is in the message", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "Unknown field or wrong type", body = ErrorBody),
    ))]
async fn deploy(
    State(host): Shared,
    axum::Extension(Actor(actor)): By,
    body: Result<Json<DeployBody>, JsonRejection>,
) -> ApiResult<Deployment> {
    let Json(mut b) = body?;
    let spec = b.take_spec();
    let mut d = host.deployer.lock().await;
    let active = d.status()?.iter().any(|r| r.name == b.name);
    let record = counted(
        &host,
        // Over an active version, as the audit trail says: an upgrade.
        if active { "upgrade" } else { "deploy" },
        if active && spec.is_empty() {
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
            .await
        } else {
            let spec = spec.spec(&b.name, &b.version);
            d.deploy(spec, b.allow_breaking, &actor).await
        },
    )?;
    host.refresh_routes(&mut d).await.map_err(internal)?;
    Ok(Json(shown(&record)))
}

/// Count a deployment operation's outcome in the metrics.
fn counted<T>(
    host: &Host,
    action: &str,
    result: airssys_wasm_deploy::Result<T>,
) -> airssys_wasm_deploy::Result<T> {
    host.metrics.deploy(action, result.is_ok());
    result
}

fn internal(e: crate::Error) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// An active deployment as `status` shows it.
#[derive(serde::Serialize, ToSchema)]
struct Status {
    #[serde(flatten)]
    deployment: Deployment,
    /// The keys and bytes its state holds.
    state_usage: StateUsage,
    /// Its canary in progress, if any.
    canary: Option<Deployment>,
    /// With actor hosting: its instances, mailboxes and restarts now.
    #[serde(skip_serializing_if = "Option::is_none")]
    actors: Option<ActorStatus>,
}

/// An active deployment (or one its supervisor failed) with its state's
/// usage, its canary in progress and its actors.
fn status_row(d: &airssys_wasm_deploy::Deployer, active: &Deployment) -> Result<Status, ApiError> {
    let actors = d.actor_status(&active.name, active.id);
    Ok(Status {
        deployment: shown(active),
        state_usage: d.state_usage(active)?,
        canary: d.canary_record(&active.name)?.map(|c| c.redacted()),
        actors,
    })
}

/// The active deployments.
#[utoipa::path(get, path = "/v1/deployments", tag = "deployments",
    security(("bearer" = [])),
    responses((status = 200, description = "Each active deployment, and each component whose supervisor failed its deployment (state `failed`)", body = Vec<Status>)))]
async fn deployments(State(host): Shared) -> ApiResult<Vec<Status>> {
    let d = host.deployer.lock().await;
    let mut rows = d.status()?;
    rows.extend(d.failed_actors()?);
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    let list = rows
        .iter()
        .map(|a| status_row(&d, a))
        .collect::<Result<Vec<Status>, ApiError>>()?;
    Ok(Json(list))
}

/// One component's active deployment.
#[utoipa::path(get, path = "/v1/deployments/{name}", tag = "deployments",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The component")),
    responses(
        (status = 200, description = "Its active deployment", body = Status),
        (status = 404, description = "No active deployment", body = ErrorBody),
    ))]
async fn deployment(State(host): Shared, Path(name): Path<String>) -> ApiResult<Status> {
    let d = host.deployer.lock().await;
    let found = d.status()?.into_iter().chain(d.failed_actors()?);
    let Some(active) = found.into_iter().find(|r| r.name == name) else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("{name} has no active deployment"),
        ));
    };
    Ok(Json(status_row(&d, &active)?))
}

with_spec_fields! {
    /// An upgrade to make.
    #[derive(serde::Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    struct UpgradeBody {
        /// The published version to upgrade to.
        version: String,
        /// `immediate` (default), `blue-green`, `canary` or `rolling`.
        #[serde(default)]
        strategy: Option<String>,
        /// The canary's plan (with `strategy: canary`; default plan otherwise).
        #[serde(default)]
        canary: Option<Canary>,
        /// Instances replaced at a time (with `strategy: rolling`; default 1).
        #[serde(default)]
        batch: Option<u32>,
        /// Upgrade even if the contract breaks.
        #[serde(default)]
        allow_breaking: bool,
    }
}

/// Upgrade a component with a strategy: `immediate` switches at once,
/// `blue-green` after the new version's health check (the old one kept
/// ready), `canary` in steps judged on errors and latency, `rolling`
/// replaces an actor's instances in batches, handing each mailbox over.
/// Without a spec
/// in the body the active grants, limits, configuration and route are
/// kept.
#[utoipa::path(post, path = "/v1/deployments/{name}/upgrade", tag = "deployments",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The component")),
    request_body = UpgradeBody,
    responses(
        (status = 200, description = "The new deployment (a canary in progress is `prepared`)", body = Deployment),
        (status = 400, description = "Invalid: what to fix is in the message", body = ErrorBody),
        (status = 422, description = "Unknown field or wrong type", body = ErrorBody),
    ))]
async fn upgrade(
    State(host): Shared,
    axum::Extension(Actor(actor)): By,
    Path(name): Path<String>,
    body: Result<Json<UpgradeBody>, JsonRejection>,
) -> ApiResult<Deployment> {
    let Json(mut b) = body?;
    let spec = b.take_spec();
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
    match (&mut strategy, b.batch) {
        (Strategy::Rolling { batch }, Some(given)) if given > 0 => *batch = given,
        (_, Some(_)) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "`batch` is at least 1 and goes with `strategy: \"rolling\"`".into(),
            ));
        }
        _ => {}
    }
    let spec = (!spec.is_empty()).then(|| spec.spec(&name, &b.version));
    let mut d = host.deployer.lock().await;
    let record = counted(
        &host,
        "upgrade",
        d.upgrade(&name, &b.version, strategy, spec, b.allow_breaking, &actor)
            .await,
    )?;
    host.refresh_routes(&mut d).await.map_err(internal)?;
    Ok(Json(shown(&record)))
}

/// Where to roll back to.
#[derive(serde::Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    /// A version or a deployment id; the previous deployment when absent.
    #[serde(default)]
    to: Option<String>,
}

/// Roll back to the previous deployment, or to the one named. The body
/// is optional: none, or JSON `null`, means the previous deployment.
#[utoipa::path(post, path = "/v1/deployments/{name}/rollback", tag = "deployments",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The component")),
    request_body(content = Option<RollbackBody>, description = "Optional"),
    responses(
        (status = 200, description = "The deployment active again, and the state writes left behind", body = Rollback),
        (status = 400, description = "Nothing to roll back to, or malformed JSON", body = ErrorBody),
        (status = 415, description = "A body that is not `application/json`", body = ErrorBody),
        (status = 422, description = "Unknown field or wrong type", body = ErrorBody),
    ))]
async fn rollback(
    State(host): Shared,
    axum::Extension(Actor(actor)): By,
    Path(name): Path<String>,
    headers: http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Rollback> {
    let b = optional_json::<RollbackBody>(&headers, &body?)?.unwrap_or_default();
    let mut d = host.deployer.lock().await;
    let mut done = counted(
        &host,
        "rollback",
        d.rollback(&name, b.to.as_deref(), &actor).await,
    )?;
    host.refresh_routes(&mut d).await.map_err(internal)?;
    done.deployment = shown(&done.deployment);
    Ok(Json(done))
}

/// An optional JSON body: `None` when there is none (or it is `null`); a
/// body of another content type is refused rather than ignored.
fn optional_json<T: serde::de::DeserializeOwned>(
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<Option<T>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let json = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            let v = v.trim();
            v.eq_ignore_ascii_case("application/json")
                || (v.starts_with("application/") && v.ends_with("+json"))
        });
    if !json {
        return Err(ApiError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body: send it as `Content-Type: application/json`, or send none".into(),
        ));
    }
    serde_json::from_slice::<Option<T>>(body).map_err(|e| {
        let status = match e.classify() {
            serde_json::error::Category::Data => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError(status, format!("the JSON body: {e}"))
    })
}

/// Promote the component's canary now.
#[utoipa::path(post, path = "/v1/deployments/{name}/promote", tag = "deployments",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The component")),
    responses(
        (status = 200, description = "The canary, now active", body = Deployment),
        (status = 400, description = "No canary in progress", body = ErrorBody),
    ))]
async fn promote(
    State(host): Shared,
    axum::Extension(Actor(actor)): By,
    Path(name): Path<String>,
) -> ApiResult<Deployment> {
    let mut d = host.deployer.lock().await;
    let record = counted(&host, "promote", d.promote(&name, &actor).await)?;
    host.refresh_routes(&mut d).await.map_err(internal)?;
    Ok(Json(shown(&record)))
}

/// A component's answer.
#[derive(serde::Serialize, ToSchema)]
struct Answer {
    /// Its media type, if it gave one.
    content_type: Option<String>,
    /// Its headers.
    #[schema(value_type = Vec<Vec<String>>)]
    headers: Vec<(String, String)>,
    /// Its bytes, base64.
    payload_base64: String,
}

/// The route of `name`'s active version, for a message.
async fn active_route(host: &Host, name: &str) -> Result<airssys_wasm_deploy::Route, ApiError> {
    let mut d = host.deployer.lock().await;
    let route = d.route(name);
    if route.current().is_none() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("{name} has no active deployment"),
        ));
    }
    Ok(route)
}

/// The message a request body is.
fn message_of(headers: &http::HeaderMap, body: Bytes) -> airssys_wasm_runtime::Message {
    airssys_wasm_runtime::Message {
        payload: body.to_vec(),
        content_type: headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        headers: Vec::new(),
    }
}

/// Ask a component to handle the body as a message (its content type
/// with it), through its route as another component's `request` would,
/// and give its answer.
#[utoipa::path(post, path = "/v1/deployments/{name}/request", tag = "deployments",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The component")),
    request_body(content = ComponentBytes, content_type = "application/octet-stream",
        description = "The message's payload; its Content-Type is the message's"),
    responses(
        (status = 200, description = "The component's answer", body = Answer),
        (status = 404, description = "No active deployment", body = ErrorBody),
        (status = 422, description = "The component refused the message: its error", body = ErrorBody),
        (status = 502, description = "The component failed (a trap, a timeout)", body = ErrorBody),
        (status = 503, description = "An actor's mailboxes stayed full, or it failed", body = ErrorBody),
    ))]
async fn request(
    State(host): Shared,
    Path(name): Path<String>,
    headers: http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Answer> {
    use base64::Engine as _;
    let message = message_of(&headers, body?);
    let route = active_route(&host, &name).await?;
    match route.execute(message).await {
        Ok(served) => {
            let m = served.output.value;
            Ok(Json(Answer {
                content_type: m.content_type,
                headers: m.headers,
                payload_base64: base64::engine::general_purpose::STANDARD.encode(&m.payload),
            }))
        }
        Err(airssys_wasm_deploy::Error::Component(airssys_wasm_runtime::Error::Guest {
            error,
            ..
        })) => Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "{name} answered {}",
                airssys_wasm_runtime::describe_component_error(&error)
            ),
        )),
        Err(e) => Err(not_handled(e)),
    }
}

/// An actor's full mailboxes or its failure are `503`; anything else that
/// kept the component from answering (a trap, a timeout) is `502`.
fn not_handled(e: airssys_wasm_deploy::Error) -> ApiError {
    use airssys_wasm_deploy::Error as E;
    match e {
        E::MailboxFull { .. } | E::ActorsFailed { .. } => {
            ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        e => ApiError(StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

/// A message accepted for a component.
#[derive(serde::Serialize, ToSchema)]
struct Accepted {
    /// Always true: the message is handled after this answer.
    accepted: bool,
}

/// Hand the body to a component as a message, without waiting for it to
/// be handled (a failure goes to the host's log). An actor's message is
/// answered once its mailbox took it.
#[utoipa::path(post, path = "/v1/deployments/{name}/send", tag = "deployments",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The component")),
    request_body(content = ComponentBytes, content_type = "application/octet-stream",
        description = "The message's payload; its Content-Type is the message's"),
    responses(
        (status = 202, description = "Accepted", body = Accepted),
        (status = 404, description = "No active deployment", body = ErrorBody),
        (status = 503, description = "An actor's mailboxes stayed full, or it failed", body = ErrorBody),
    ))]
async fn send(
    State(host): Shared,
    Path(name): Path<String>,
    headers: http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let message = message_of(&headers, body?);
    let route = active_route(&host, &name).await?;
    route.send(message, None).await.map_err(not_handled)?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { accepted: true })))
}

/// Abort the component's canary: every call goes to the active version.
#[utoipa::path(post, path = "/v1/deployments/{name}/abort", tag = "deployments",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The component")),
    responses(
        (status = 200, description = "The canary, now failed", body = Deployment),
        (status = 400, description = "No canary in progress", body = ErrorBody),
    ))]
async fn abort(
    State(host): Shared,
    axum::Extension(Actor(actor)): By,
    Path(name): Path<String>,
) -> ApiResult<Deployment> {
    let mut d = host.deployer.lock().await;
    let record = counted(&host, "abort", d.abort(&name, &actor))?;
    host.note_serving();
    Ok(Json(shown(&record)))
}

/// Every deployment of a component, newest first.
#[utoipa::path(get, path = "/v1/deployments/{name}/history", tag = "deployments",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The component")),
    responses(
        (status = 200, description = "Its deployments", body = Vec<Deployment>),
        (status = 404, description = "Never deployed here", body = ErrorBody),
    ))]
async fn history(State(host): Shared, Path(name): Path<String>) -> ApiResult<Vec<Deployment>> {
    let d = host.deployer.lock().await;
    let list: Vec<Deployment> = d.history(&name)?.iter().map(shown).collect();
    if list.is_empty() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("{name} was never deployed here"),
        ));
    }
    Ok(Json(list))
}

/// The audit trail, oldest first.
#[utoipa::path(get, path = "/v1/audit", tag = "audit",
    security(("bearer" = [])),
    responses((status = 200, description = "Every record", body = Vec<AuditRecord>)))]
async fn audit(State(host): Shared) -> ApiResult<Vec<AuditRecord>> {
    let d = host.deployer.lock().await;
    Ok(Json(d.registry_ref().audit()?))
}

/// What a verification of the audit trail found.
#[derive(serde::Serialize, ToSchema)]
struct Verification {
    /// Whether the chain is whole.
    ok: bool,
    /// How many records chain correctly (when whole).
    #[serde(skip_serializing_if = "Option::is_none")]
    records: Option<i64>,
    /// The head's hash, hex (when whole; empty for an empty trail).
    #[serde(skip_serializing_if = "Option::is_none")]
    head: Option<String>,
    /// Where the chain breaks (when not whole).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Verify the audit trail's hash chain and its head.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The chain is whole", body = Verification),
        (status = 409, description = "The chain is broken: where", body = Verification),
        (status = 500, description = "The trail could not be read", body = ErrorBody),
    ))]
async fn verify(State(host): Shared) -> Result<(StatusCode, Json<Verification>), ApiError> {
    let d = host.deployer.lock().await;
    Ok(match d.registry_ref().verify_audit() {
        // The trail could not be read: not a verdict on the chain.
        Err(
            e @ (airssys_wasm_deploy::Error::Database(_) | airssys_wasm_deploy::Error::Io { .. }),
        ) => {
            return Err(e.into());
        }
        Ok(v) => (
            StatusCode::OK,
            Json(Verification {
                ok: true,
                records: Some(v.records),
                head: Some(v.head),
                error: None,
            }),
        ),
        Err(e) => (
            StatusCode::CONFLICT,
            Json(Verification {
                ok: false,
                records: None,
                head: None,
                error: Some(e.to_string()),
            }),
        ),
    })
}

/// A token to make.
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    /// Its name: the audit trail's actor is `token:NAME`.
    name: String,
}

/// A token made: shown this once.
#[derive(serde::Serialize, ToSchema)]
struct NewToken {
    /// Its name.
    name: String,
    /// The token, for `Authorization: Bearer TOKEN`.
    token: String,
}

/// A token revoked.
#[derive(serde::Serialize, ToSchema)]
struct Revoked {
    /// Its name.
    name: String,
    /// Always true.
    revoked: bool,
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

/// Make a named token, shown once (admin token only).
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens",
    security(("bearer" = [])),
    request_body = TokenBody,
    responses(
        (status = 200, description = "The token", body = NewToken),
        (status = 400, description = "A bad or taken name", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
    ))]
async fn create_token(
    State(host): Shared,
    axum::Extension(Actor(actor)): By,
    body: Result<Json<TokenBody>, JsonRejection>,
) -> ApiResult<NewToken> {
    admin_only(&actor)?;
    let Json(b) = body?;
    let mut d = host.deployer.lock().await;
    let token = d.registry().create_token(&b.name, &actor)?;
    host.token.set_named(d.registry_ref().token_digests()?);
    Ok(Json(NewToken {
        name: b.name,
        token,
    }))
}

/// The named tokens (never the tokens themselves).
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens",
    security(("bearer" = [])),
    responses((status = 200, description = "Each named token", body = Vec<TokenInfo>)))]
async fn tokens(State(host): Shared) -> ApiResult<Vec<TokenInfo>> {
    let d = host.deployer.lock().await;
    Ok(Json(d.registry_ref().tokens()?))
}

/// Revoke a named token (admin token only).
#[utoipa::path(delete, path = "/v1/tokens/{name}", tag = "tokens",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The token's name")),
    responses(
        (status = 200, description = "Revoked", body = Revoked),
        (status = 400, description = "No such token", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
    ))]
async fn revoke_token(
    State(host): Shared,
    axum::Extension(Actor(actor)): By,
    Path(name): Path<String>,
) -> ApiResult<Revoked> {
    admin_only(&actor)?;
    let mut d = host.deployer.lock().await;
    d.registry().revoke_token(&name, &actor)?;
    host.token.set_named(d.registry_ref().token_digests()?);
    Ok(Json(Revoked {
        name,
        revoked: true,
    }))
}
