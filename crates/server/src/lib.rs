//! The airssys-wasm host service: what `airssys-wasm serve` runs.
//!
//! A [`Server`] holds a state directory (locked while it runs) and its
//! [`Deployer`]. It serves two listeners:
//!
//! - the ingress (default `127.0.0.1:8080`): HTTP requests go to the
//!   deployment whose route is the longest prefix of their path (see
//!   `ingress`);
//! - the admin listener (default `127.0.0.1:8081`): `/healthz`, `/readyz`
//!   and `/metrics` without authentication, and the control API under
//!   `/v1` with the bearer token of `STATE_DIR/admin.token`.
//!
//! On start it restores every active deployment from the registry (compiled
//! code from the cache); it stops when the future given to [`Server::run`]
//! resolves, letting requests in flight finish within a grace period.
//!
//! ```no_run
//! # async fn demo() -> Result<(), airssys_wasm_server::Error> {
//! use airssys_wasm_server::{ServeConfig, Server};
//!
//! let dir = airssys_wasm_deploy::StateDir::open("/var/lib/airssys-wasm")?;
//! let server = Server::bind(dir, Default::default(), ServeConfig::default()).await?;
//! println!("ingress on http://{}", server.ingress_addr());
//! server.run(async { tokio::signal::ctrl_c().await.ok(); }).await?;
//! # Ok(())
//! # }
//! ```

mod admin;
mod auth;
mod ingress;
mod listen;
mod metrics;

pub use admin::openapi;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use airssys_wasm_deploy::{Deployer, Route, StateDir};
use airssys_wasm_runtime::RuntimeConfig;

/// What went wrong starting or running the host.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}{}", if source.kind() == std::io::ErrorKind::AddrInUse { " (another process uses this port: stop it or choose another address)" } else { "" })]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The configuration cannot work.
    #[error("{0}")]
    Config(String),
    /// The deployment engine failed.
    #[error(transparent)]
    Deploy(#[from] airssys_wasm_deploy::Error),
}

/// How the host serves.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeConfig {
    /// The ingress address (default `127.0.0.1:8080`; port 0 picks one).
    pub listen: SocketAddr,
    /// The admin address: control API, health, metrics (default
    /// `127.0.0.1:8081`).
    pub admin_listen: SocketAddr,
    /// How long requests in flight may take to finish at shutdown (default
    /// 10 s).
    pub grace: Duration,
    /// Largest component the control API accepts (default 64 MiB).
    pub max_component_size: usize,
    /// Largest request body a handler component receives (default 4 MiB).
    pub max_request_body: usize,
    /// Open ingress connections at most (default 1,024); more are closed at
    /// once.
    pub max_connections: usize,
    /// How long a handler's request body may take to arrive (default
    /// 30 s); then `408`.
    pub body_timeout: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            grace: Duration::from_secs(10),
            max_component_size: 64 << 20,
            max_request_body: 4 << 20,
            max_connections: 1024,
            body_timeout: Duration::from_secs(30),
        }
    }
}

impl ServeConfig {
    /// Serve the ingress on `addr`.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Serve the control API, health and metrics on `addr`.
    pub fn admin_listen(mut self, addr: SocketAddr) -> Self {
        self.admin_listen = addr;
        self
    }

    /// Let requests in flight finish within `grace` at shutdown.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Accept components up to `bytes` through the control API.
    pub fn max_component_size(mut self, bytes: usize) -> Self {
        self.max_component_size = bytes;
        self
    }
}

/// What every request handler shares.
pub(crate) struct Host {
    pub(crate) deployer: tokio::sync::Mutex<Deployer>,
    /// The deployer's runtime, for its counters without the deployer's lock.
    pub(crate) runtime: airssys_wasm_runtime::Runtime,
    /// Components with an active deployment, as of the last refresh.
    pub(crate) active: std::sync::atomic::AtomicUsize,
    /// `(route, component, its route)`, longest route first.
    routes: std::sync::RwLock<Vec<(String, String, Route)>>,
    pub(crate) ready: AtomicBool,
    pub(crate) token: auth::Token,
    /// Refused control-API requests: since when, how many, how many of
    /// them are in the audit trail.
    pub(crate) auth_failures: std::sync::Mutex<(Option<std::time::Instant>, u64, u64)>,
    pub(crate) config: ServeConfig,
    pub(crate) metrics: Arc<metrics::Metrics>,
    /// Every active component's route (for the live metrics).
    serving: metrics::Serving,
    /// Held for the life of the host: the state directory's lock.
    dir: StateDir,
}

impl Host {
    /// The route prefix matching `path`, the component serving it, and its
    /// route.
    pub(crate) fn route_for(&self, path: &str) -> Option<(String, String, Route)> {
        self.routes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|(prefix, _, _)| ingress::matches(prefix, path))
            .map(|(prefix, name, route)| (prefix.clone(), name.clone(), route.clone()))
    }

    /// Prepare every active deployment's route and rebuild the ingress
    /// table from the registry. A component that cannot be prepared is
    /// logged and left out; the others serve.
    pub(crate) async fn refresh_routes(&self, deployer: &mut Deployer) -> Result<(), Error> {
        self.settle(deployer);
        let mut table = Vec::new();
        let mut serving = Vec::new();
        let active = deployer.status()?;
        self.active.store(active.len(), Ordering::SeqCst);
        for d in active {
            // Its route is in the table even when it cannot be prepared
            // now: its requests get 503, never another component.
            if let Err(e) = deployer.serve(&d.name).await {
                tracing::error!(component = %d.name, version = %d.version, error = %e, "cannot serve");
            }
            let route = deployer.route(&d.name);
            if let Some(path) = &d.spec.route {
                table.push((path.clone(), d.name.clone(), route.clone()));
            }
            serving.push(route);
        }
        *self
            .routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = ingress::table(table);
        *self
            .serving
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = serving;
        self.note_serving();
        Ok(())
    }

    /// Tell the metrics which versions serve now (primary, canary and a
    /// blue-green standby): the series of the others are dropped.
    pub(crate) fn note_serving(&self) {
        let versions = self
            .serving
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .flat_map(|r| [r.current(), r.canary(), r.standby()])
            .flatten()
            .map(|a| (a.deployment.name.clone(), a.deployment.version.clone()))
            .collect();
        self.metrics.retain(versions);
    }

    /// Persist the canary verdicts the routes reached, and count them.
    pub(crate) fn settle(&self, deployer: &mut Deployer) {
        match deployer.settle() {
            Ok(changed) => {
                if !changed.is_empty() {
                    self.note_serving();
                }
                for r in changed {
                    tracing::info!(component = %r.name, version = %r.version, state = %r.state, "canary settled");
                    let action = if r.state == "active" {
                        "promote"
                    } else {
                        "abort"
                    };
                    self.metrics.deploy(action, true);
                }
            }
            Err(e) => tracing::error!(error = %e, "persisting canary verdicts"),
        }
    }
}

/// A host, bound and ready to run.
pub struct Server {
    host: Arc<Host>,
    ingress: tokio::net::TcpListener,
    admin: tokio::net::TcpListener,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("ingress", &self.ingress_addr())
            .field("admin", &self.admin_addr())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Open the deployer of `dir` and bind both listeners. The control
    /// API's token is made on first start (`STATE_DIR/admin.token`).
    pub async fn bind(
        dir: StateDir,
        runtime: RuntimeConfig,
        config: ServeConfig,
    ) -> Result<Self, Error> {
        let token = auth::Token::load_or_create(&dir.path().join("admin.token"))?;
        let serving = metrics::Serving::default();
        let metrics = Arc::new(metrics::Metrics::new(serving.clone(), runtime.fuel));
        // Denials are counted, then go where they went. (Weak: the
        // metrics reach the runtime through the routes they read.)
        let counted = Arc::downgrade(&metrics);
        let outer = runtime.audit.clone();
        let runtime = runtime.audit(airssys_wasm_runtime::AuditSink::new(move |event| {
            if let Some(metrics) = counted.upgrade() {
                metrics.denial(&event);
            }
            if let Some(outer) = &outer {
                outer.send(event);
            }
        }));
        let deployer = Deployer::open(&dir, runtime)?;
        metrics.messages(deployer.message_counts());
        token.set_named(deployer.registry_ref().token_digests()?);
        let runtime = deployer.runtime().clone();
        let bind = |addr: SocketAddr| async move {
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Listen { addr, source })
        };
        let ingress = bind(config.listen).await?;
        let admin = bind(config.admin_listen).await?;
        Ok(Self {
            host: Arc::new(Host {
                deployer: tokio::sync::Mutex::new(deployer),
                runtime,
                active: std::sync::atomic::AtomicUsize::new(0),
                routes: std::sync::RwLock::default(),
                ready: AtomicBool::new(false),
                token,
                auth_failures: std::sync::Mutex::new((None, 0, 0)),
                config,
                metrics,
                serving,
                dir,
            }),
            ingress,
            admin,
        })
    }

    /// The ingress address (the real port when 0 was asked).
    pub fn ingress_addr(&self) -> SocketAddr {
        self.ingress.local_addr().unwrap_or(self.host.config.listen)
    }

    /// The admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .unwrap_or(self.host.config.admin_listen)
    }

    /// Where the control API's token is.
    pub fn token_path(&self) -> PathBuf {
        self.host.token.path().to_path_buf()
    }

    /// A handle that acts on this host from the same process, before and
    /// while it runs.
    pub fn control(&self) -> Control {
        Control {
            host: self.host.clone(),
        }
    }

    /// Restore the active deployments, serve until `shutdown` resolves,
    /// then let requests in flight finish (within the grace period).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let host = self.host.clone();
        let (stop_ingress, ingress_rx) = tokio::sync::watch::channel(None);
        let (stop_admin, admin_rx) = tokio::sync::watch::channel(None);
        let admin = tokio::spawn(admin::serve(self.admin, host.clone(), admin_rx.clone()));
        {
            let mut d = host.deployer.lock().await;
            host.refresh_routes(&mut d).await?;
        }
        host.ready.store(true, Ordering::SeqCst);
        tracing::info!("ready");
        let settle = tokio::spawn(settle_loop(host.clone(), admin_rx));
        let ingress = tokio::spawn(ingress::serve(self.ingress, host.clone(), ingress_rx));
        shutdown.await;
        // Not ready while the ingress drains (the admin listener still
        // answers /readyz), then the admin listener stops too: both within
        // the one grace period, after which the listener loops cut what is
        // still open.
        let deadline = tokio::time::Instant::now() + host.config.grace;
        host.ready.store(false, Ordering::SeqCst);
        let _ = stop_ingress.send(Some(deadline));
        let _ = ingress.await;
        let _ = stop_admin.send(Some(deadline));
        let _ = admin.await;
        let _ = settle.await;
        let mut d = host.deployer.lock().await;
        d.stop_actors().await;
        d.settle()?;
        d.record_events()?;
        Ok(())
    }
}

/// Acts on a host from its own process (what `airssys-wasm dev` uses):
/// the control API's operations without HTTP, each taking the deployer's
/// lock as a request does, and refreshing the ingress's routes.
#[derive(Clone)]
pub struct Control {
    host: Arc<Host>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Control(..)")
    }
}

impl Control {
    /// Put actor deployments in supervision groups (before they start:
    /// see [`airssys_wasm_deploy::Deployer::supervise`]).
    pub async fn supervise(
        &self,
        groups: Vec<airssys_wasm_deploy::GroupSpec>,
    ) -> Result<(), Error> {
        Ok(self.host.deployer.lock().await.supervise(groups)?)
    }

    /// Publish `bytes` as `name` `version`, unsigned.
    pub async fn publish_unsigned(
        &self,
        name: &str,
        version: &str,
        bytes: &[u8],
        actor: &str,
    ) -> Result<airssys_wasm_deploy::Published, Error> {
        let mut d = self.host.deployer.lock().await;
        Ok(d.registry().publish(
            name,
            version,
            bytes,
            &airssys_wasm_deploy::Provenance::unsigned(),
            actor,
        )?)
    }

    /// Deploy `spec` (over an active version: an immediate upgrade), even
    /// when the contract breaks when `allow_breaking`.
    pub async fn deploy(
        &self,
        spec: airssys_wasm_deploy::DeploySpec,
        allow_breaking: bool,
        actor: &str,
    ) -> Result<airssys_wasm_deploy::Deployment, Error> {
        let mut d = self.host.deployer.lock().await;
        let over = d.status()?.iter().any(|r| r.name == spec.name);
        let result = d.deploy(spec, allow_breaking, actor).await;
        let action = if over { "upgrade" } else { "deploy" };
        self.host.metrics.deploy(action, result.is_ok());
        let record = result?;
        // The deployment is made: a failed refresh is the host's to report,
        // not the deployment's.
        if let Err(e) = self.host.refresh_routes(&mut d).await {
            tracing::error!(error = %e, "refreshing the routes");
        }
        Ok(record)
    }

    /// Every active deployment.
    pub async fn status(&self) -> Result<Vec<airssys_wasm_deploy::Deployment>, Error> {
        let d = self.host.deployer.lock().await;
        Ok(d.status()?)
    }

    /// `name`'s active deployment, if any.
    pub async fn active(
        &self,
        name: &str,
    ) -> Result<Option<airssys_wasm_deploy::Deployment>, Error> {
        let d = self.host.deployer.lock().await;
        Ok(d.status()?.into_iter().find(|r| r.name == name))
    }

    /// The published versions of `name`, newest first.
    pub async fn versions(&self, name: &str) -> Result<Vec<airssys_wasm_deploy::Published>, Error> {
        let d = self.host.deployer.lock().await;
        Ok(d.registry_ref().versions(Some(name))?)
    }

    /// The bytes and compiled code of versions beyond the newest `keep` of
    /// each component removed (never an active one or its rollback
    /// target), as `airssys-wasm gc` does.
    pub async fn gc(
        &self,
        keep: usize,
        actor: &str,
    ) -> Result<airssys_wasm_deploy::Collected, Error> {
        let mut d = self.host.deployer.lock().await;
        let cache = self.host.dir.cache();
        Ok(d.registry().gc(keep, &cache, actor)?)
    }
}

/// Persist canary verdicts as soon as a route reaches one, judge steps that
/// end by time every second, and append the runtime's audit events.
async fn settle_loop(host: Arc<Host>, mut stop: listen::Stop) {
    let signal = host.deployer.lock().await.decision_signal();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = signal.wait() => {}
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let mut d = host.deployer.lock().await;
        host.settle(&mut d);
        if let Err(e) = d.record_events() {
            tracing::error!(error = %e, "recording audit events");
        }
    }
}
