//! Prometheus metrics (`prometheus-client`): requests and their latency
//! per component and version, deployments and denials, and what is live
//! (instances, fuel) read from the serving versions at scrape.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use airssys_wasm_deploy::Route;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Request {
    component: String,
    version: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Version {
    component: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Deploy {
    action: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Denial {
    component: String,
    capability: String,
    decision: &'static str,
}

/// How long a retired version's series are removed at each scrape (longer
/// than any request in flight at its retirement may take).
const RETIRED_SWEPT: Duration = Duration::from_secs(600);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Every active component's route, as of the last refresh: what the live
/// series are read from.
pub(crate) type Serving = Arc<RwLock<Vec<Route>>>;

/// Instances and fuel (when metered) of each version serving (primary and
/// canary), read at scrape: a version that stops serving leaves no series.
struct Live {
    serving: Serving,
    fuel: bool,
    /// Messages between components, once the deployer is open.
    messages: Arc<std::sync::OnceLock<Arc<airssys_wasm_deploy::MessageCounts>>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MessageLabels {
    from: String,
    to: String,
    delivery: &'static str,
    outcome: &'static str,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Live(..)")
    }
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let serving: Vec<airssys_wasm_deploy::Active> = self
            .serving
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .flat_map(|route| [route.current(), route.canary()])
            .flatten()
            .collect();
        let versions: Vec<(Version, usize, u64)> = serving
            .iter()
            .map(|a| {
                // An actor's instances are its long-lived ones.
                let running = match &a.actors {
                    Some(actors) => actors.status().running as usize,
                    None => a.component.running(),
                };
                (version_of(a), running, a.component.fuel_consumed())
            })
            .collect();
        let instances = Gauge::<i64>::default();
        let mut family = encoder.encode_descriptor(
            "instances",
            "Instances alive now (calls running, each in its own store, or waiting their turn in a \
             component that keeps state; an actor's long-lived instances), by component and version",
            None,
            instances.metric_type(),
        )?;
        for (labels, running, _) in &versions {
            let g = Gauge::<i64>::default();
            g.set(i64::try_from(*running).unwrap_or(i64::MAX));
            g.encode(family.encode_family(labels)?)?;
        }
        encode_actors(&mut encoder, &serving)?;
        let mut family = encoder.encode_descriptor(
            "state_bytes",
            "Bytes of keys and values the version's state holds, for components that keep state",
            None,
            instances.metric_type(),
        )?;
        for a in serving.iter().filter(|a| a.component.keeps_state()) {
            let g = Gauge::<i64>::default();
            g.set(i64::try_from(a.component.state_bytes()).unwrap_or(i64::MAX));
            g.encode(family.encode_family(&version_of(a))?)?;
        }
        if let Some(messages) = self.messages.get() {
            let mut family = encoder.encode_descriptor(
                "messages",
                "Messages between components through the host, by sender, target, delivery \
                 (request, send, publish) and outcome (ok, not-found, timeout, unavailable, failed, cycle, mailbox-full, quota-exceeded, refused; no-subscribers for a publish nobody heard)",
                None,
                ConstCounter::new(0_u64).metric_type(),
            )?;
            for ((from, to, delivery, outcome), n) in messages.snapshot() {
                let labels = MessageLabels {
                    from,
                    to,
                    delivery,
                    outcome,
                };
                ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
        if !self.fuel {
            return Ok(());
        }
        let mut family = encoder.encode_descriptor(
            "fuel_consumed",
            "Fuel the version's calls consumed since it was prepared in this process (with serve --fuel)",
            None,
            ConstCounter::new(0_u64).metric_type(),
        )?;
        for (labels, _, fuel) in &versions {
            ConstCounter::new(*fuel).encode(family.encode_family(labels)?)?;
        }
        Ok(())
    }
}

fn version_of(a: &airssys_wasm_deploy::Active) -> Version {
    Version {
        component: a.deployment.name.clone(),
        version: a.deployment.version.clone(),
    }
}

/// Mailbox depth, messages handled and restarts of each actor version.
fn encode_actors(
    encoder: &mut DescriptorEncoder,
    serving: &[airssys_wasm_deploy::Active],
) -> Result<(), std::fmt::Error> {
    let actors: Vec<(Version, airssys_wasm_deploy::ActorStatus)> = serving
        .iter()
        .filter_map(|a| Some((version_of(a), a.actors.as_ref()?.status())))
        .collect();
    type Read = fn(&airssys_wasm_deploy::ActorStatus) -> u64;
    let families: [(&str, &str, bool, Read); 3] = [
        (
            "actor_mailbox_depth",
            "Messages waiting in an actor version's mailboxes, all instances together",
            true,
            |s| s.mailbox_depth,
        ),
        (
            "actor_messages_processed",
            "Messages an actor version's instances handled (well or not)",
            false,
            |s| s.processed,
        ),
        (
            "actor_restarts",
            "Instances of an actor version its supervisor restarted",
            false,
            |s| s.restarts,
        ),
    ];
    for (name, help, is_gauge, read) in families {
        let kind = if is_gauge {
            Gauge::<i64>::default().metric_type()
        } else {
            ConstCounter::new(0_u64).metric_type()
        };
        let mut family = encoder.encode_descriptor(name, help, None, kind)?;
        for (labels, status) in &actors {
            let value = read(status);
            if is_gauge {
                let g = Gauge::<i64>::default();
                g.set(i64::try_from(value).unwrap_or(i64::MAX));
                g.encode(family.encode_family(labels)?)?;
            } else {
                ConstCounter::new(value).encode(family.encode_family(labels)?)?;
            }
        }
    }
    Ok(())
}

/// The host's metrics.
pub(crate) struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<Request, Counter>,
    /// Where the deployer counts messages (set once it is open).
    messages: Arc<std::sync::OnceLock<Arc<airssys_wasm_deploy::MessageCounts>>>,
    /// The versions serving as of the last refresh: their series are kept.
    known: Mutex<HashSet<(String, String)>>,
    /// Versions that stopped serving, and since when.
    retired: Mutex<HashMap<(String, String), std::time::Instant>>,
    deploys: Family<Deploy, Counter>,
    denials: Family<Denial, Counter>,
    latency: Family<Version, Histogram>,
    compilations: Gauge,
    cache_hits: Gauge,
    deployments: Gauge,
}

impl Metrics {
    pub(crate) fn new(serving: Serving, fuel: bool) -> Self {
        let mut registry = Registry::with_prefix("airssys");
        let messages = Arc::new(std::sync::OnceLock::new());
        registry.register_collector(Box::new(Live {
            serving,
            fuel,
            messages: messages.clone(),
        }));
        let deploys = Family::<Deploy, Counter>::default();
        registry.register(
            "deploys",
            "Deployment operations through the control API and the canary judge, by action \
             (deploy, upgrade, rollback, promote, abort) and outcome (ok, failed)",
            deploys.clone(),
        );
        let denials = Family::<Denial, Counter>::default();
        registry.register(
            "denials",
            "Capability uses refused to components, by component, capability kind and decision \
             (denied, refused, stopped)",
            denials.clone(),
        );
        let requests = Family::<Request, Counter>::default();
        registry.register(
            "requests",
            "Requests served by the ingress, by component, version and status",
            requests.clone(),
        );
        let latency = Family::<Version, Histogram>::new_with_constructor(|| {
            // 100 us to about 26 s.
            Histogram::new(exponential_buckets(0.0001, 2.0, 19))
        });
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to its response head",
            latency.clone(),
        );
        let compilations = Gauge::default();
        registry.register(
            "compilations",
            "Components compiled from their bytes since the host started (not from the cache)",
            compilations.clone(),
        );
        let cache_hits = Gauge::default();
        registry.register(
            "compiled_cache_hits",
            "Compiled code taken from the cache (memory or disk) since the host started",
            cache_hits.clone(),
        );
        let deployments = Gauge::default();
        registry.register(
            "deployments_active",
            "Components with an active deployment",
            deployments.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            requests,
            known: Mutex::default(),
            messages,
            retired: Mutex::default(),
            deploys,
            denials,
            latency,
            compilations,
            cache_hits,
            deployments,
        }
    }

    /// Count one request.
    pub(crate) fn request(
        &self,
        component: &str,
        version: &str,
        status: http::StatusCode,
        took: Duration,
    ) {
        self.requests
            .get_or_create(&Request {
                component: component.to_string(),
                version: version.to_string(),
                status: status.as_u16(),
            })
            .inc();
        self.latency
            .get_or_create(&Version {
                component: component.to_string(),
                version: version.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// Note the versions serving now; those that served before and no
    /// longer do (upgraded, rolled back, collected) lose their request
    /// series from the next scrape on.
    pub(crate) fn retain(&self, serving: HashSet<(String, String)>) {
        let mut known = lock(&self.known);
        let mut retired = lock(&self.retired);
        let now = std::time::Instant::now();
        for gone in known.difference(&serving) {
            retired.insert(gone.clone(), now);
        }
        retired.retain(|v, _| !serving.contains(v));
        *known = serving;
    }

    /// Remove the series of retired versions. A request that was in
    /// flight when its version retired is counted after the retirement:
    /// its series is removed again at each scrape for a while.
    fn sweep(&self) {
        let mut retired = lock(&self.retired);
        for (component, version) in retired.keys() {
            for status in 100..1000 {
                self.requests.remove(&Request {
                    component: component.clone(),
                    version: version.clone(),
                    status,
                });
            }
            self.latency.remove(&Version {
                component: component.clone(),
                version: version.clone(),
            });
        }
        retired.retain(|_, since| since.elapsed() < RETIRED_SWEPT);
    }

    /// Show the deployer's message counts.
    pub(crate) fn messages(&self, counts: Arc<airssys_wasm_deploy::MessageCounts>) {
        let _ = self.messages.set(counts);
    }

    /// Count one deployment operation.
    pub(crate) fn deploy(&self, action: &str, ok: bool) {
        self.deploys
            .get_or_create(&Deploy {
                action: action.to_string(),
                outcome: if ok { "ok" } else { "failed" },
            })
            .inc();
    }

    /// Count a runtime audit event (a summary counts what it stands for).
    pub(crate) fn denial(&self, event: &airssys_wasm_runtime::AuditEvent) {
        use airssys_wasm_runtime::Decision;
        let decision = match event.decision {
            Decision::Denied => "denied",
            Decision::Refused => "refused",
            Decision::Stopped => "stopped",
            _ => "other",
        };
        // The kind, not the target: `network-outbound`, `file-read`,
        // `messaging:request`, `limit:memory`, `custom:NAME`.
        let mut parts = event.capability.split(':');
        let first = parts.next().unwrap_or_default();
        let kind = match (first, parts.next()) {
            ("messaging" | "limit" | "custom", Some(sub)) => format!("{first}:{sub}"),
            _ => first.to_string(),
        };
        self.denials
            .get_or_create(&Denial {
                component: event.component.clone(),
                capability: kind,
                decision,
            })
            .inc_by(event.suppressed.unwrap_or(1));
    }

    /// The text exposition, with the host's counts as given.
    pub(crate) fn render(&self, stats: airssys_wasm_runtime::Stats, deployments: usize) -> String {
        self.compilations
            .set(i64::try_from(stats.compilations).unwrap_or(i64::MAX));
        self.cache_hits
            .set(i64::try_from(stats.memory_hits + stats.disk_hits).unwrap_or(i64::MAX));
        self.deployments
            .set(i64::try_from(deployments).unwrap_or(i64::MAX));
        self.sweep();
        let mut out = String::new();
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::error!(error = %e, "encoding metrics");
        }
        out
    }
}
