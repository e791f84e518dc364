//! How a metric family is made (registered once, with fixed definitions) and how a view too large
//! for prometheus objects writes its own samples at scrape time.

use prometheus::core::Collector;
/// Where each family is registered: on the registry the process exports, or on one nobody reads
/// (its recording methods still work, and nothing shows at 0 in a process that never records it).
pub(super) struct Exports<'a> {
    /// What only the webhook records: admission, its listener's refusals, the serving certificate.
    pub(super) webhook: &'a Registry,
    /// What only `watch` records: its passes, the backstop writer, the usage state.
    pub(super) watch: &'a Registry,
    /// What both record: the registry, connections, Events.
    pub(super) every: &'a Registry,
}

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// Something that writes its own samples into the text exposition at scrape time (the registry
/// snapshot: 100,000 gauges as prometheus objects held 46 MB, BENCHMARKS.md).
pub trait Exposition: Send + Sync {
    fn render(&self, out: &mut String);
}

/// Latency buckets from 50 µs to 2.5 s: the webhook's own share is sub-millisecond, registry
/// lookups over the network are not.
const DURATION_BUCKETS: [f64; 14] =
    [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5];

/// Registers a metric. The definitions are fixed at compile time, so a failure here is a
/// programming error caught by every test, never something input can cause.
pub(super) fn register<C: Collector + Clone + 'static>(registry: &Registry, metric: prometheus::Result<C>) -> C {
    let metric = metric.expect("metric definitions are valid");
    registry.register(Box::new(metric.clone())).expect("metric names are unique");
    metric
}

pub(super) fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(r, IntCounterVec::new(Opts::new(name, help), labels))
}

pub(super) fn histogram(r: &Registry, name: &str, help: &str, label: &str) -> HistogramVec {
    register(r, HistogramVec::new(HistogramOpts::new(name, help).buckets(DURATION_BUCKETS.to_vec()), &[label]))
}

pub(super) fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    register(r, IntGauge::new(name, help))
}
