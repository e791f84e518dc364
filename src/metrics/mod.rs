//! Prometheus metrics. Names follow Prometheus and kube-state-metrics conventions: prefix
//! `replica_guard_`, base units, `_total` counters, and `namespace`/`deployment` labels so they
//! join with `kube_deployment_spec_replicas`.
//!
//! One file per subsystem, each with its metric families and the typed methods that record them:
//! `admission` (requests, decisions, per-workload changes), `registry` (loads, lookups, the
//! snapshot), `server` (connections, shed and bad requests, the certificate), `audit` (the
//! continuous audit's pass, Events). `labels` holds the bounded label types.
//!
//! No per-pod "last requested replicas" gauge: each webhook replica sees a different subset of
//! requests, so such gauges disagree. `registered_max_replicas` is the same on every replica.

use arc_swap::ArcSwapOption;
use prometheus::core::Collector;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

mod admission;
mod audit;
mod labels;
mod registry;
mod server;
pub use labels::*;

pub struct Metrics {
    prometheus: Registry,
    admission: admission::Families,
    registry: registry::Families,
    server: server::Families,
    audit: audit::Families,
    /// Rendered at scrape time from the current registry snapshot (see `publish_registry`).
    registry_view: ArcSwapOption<Box<dyn Exposition>>,
    /// The continuous audit's per-workload gauges, rendered at scrape time.
    workload_view: ArcSwapOption<Box<dyn Exposition>>,
}

/// Something that writes its own samples into the text exposition at scrape time (the registry
/// snapshot: 100,000 gauges as prometheus objects held 46 MB, BENCHMARKS.md).
pub trait Exposition: Send + Sync {
    fn render(&self, out: &mut String);
}

/// One listener's connection metrics, as its accept loop updates them.
#[derive(Clone)]
pub struct ConnectionMetrics {
    pub open: IntGauge,
    /// Times a client had to wait because `maxConnections` were open.
    pub at_limit: IntCounter,
}

/// Latency buckets from 50 µs to 2.5 s: the webhook's own share is sub-millisecond, registry
/// lookups over the network are not.
const DURATION_BUCKETS: [f64; 14] =
    [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5];

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let build_info = register(
            &r,
            GaugeVec::new(
                Opts::new("replica_guard_build_info", "Always 1; the labels say which build is running."),
                &["version"],
            ),
        );
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1.0);
        Self {
            admission: admission::Families::new(&r),
            registry: registry::Families::new(&r),
            server: server::Families::new(&r),
            audit: audit::Families::new(&r),
            registry_view: ArcSwapOption::empty(),
            workload_view: ArcSwapOption::empty(),
            prometheus: r,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.registry.refresh_revision_age();
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families, and ours are built above.
        let _ = TextEncoder::new().encode(&self.prometheus.gather(), &mut out);
        let mut text = String::from_utf8(out).unwrap_or_default();
        for view in [self.registry_view.load_full(), self.workload_view.load_full()].into_iter().flatten() {
            view.render(&mut text);
        }
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers a metric. The definitions are fixed at compile time, so a failure here is a
/// programming error caught by every test, never something input can cause.
fn register<C: Collector + Clone + 'static>(registry: &Registry, metric: prometheus::Result<C>) -> C {
    let metric = metric.expect("metric definitions are valid");
    registry.register(Box::new(metric.clone())).expect("metric names are unique");
    metric
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(r, IntCounterVec::new(Opts::new(name, help), labels))
}

fn histogram(r: &Registry, name: &str, help: &str, label: &str) -> HistogramVec {
    register(r, HistogramVec::new(HistogramOpts::new(name, help).buckets(DURATION_BUCKETS.to_vec()), &[label]))
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    register(r, IntGauge::new(name, help))
}
