//! Prometheus metrics (`prometheus-client`): requests and their latency
//! per component and version, and the host's counts sampled at scrape.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
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

/// The host's metrics.
pub(crate) struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<Request, Counter>,
    latency: Family<Version, Histogram>,
    compilations: Gauge,
    cache_hits: Gauge,
    deployments: Gauge,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("airssys");
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

    /// The text exposition, with the host's counts as given.
    pub(crate) fn render(&self, stats: airssys_wasm_runtime::Stats, deployments: usize) -> String {
        self.compilations
            .set(i64::try_from(stats.compilations).unwrap_or(i64::MAX));
        self.cache_hits
            .set(i64::try_from(stats.memory_hits + stats.disk_hits).unwrap_or(i64::MAX));
        self.deployments
            .set(i64::try_from(deployments).unwrap_or(i64::MAX));
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
