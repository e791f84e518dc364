//! Prometheus metrics. Names follow Prometheus and kube-state-metrics conventions: prefix
//! `replica_guard_`, base units, `_total` counters, and `namespace`/`deployment` labels so they
//! join with `kube_deployment_spec_replicas`.
//!
//! No per-pod "last requested replicas" gauge: each webhook replica sees a different subset of
//! requests, so such gauges disagree. `registered_max_replicas` is the same on every replica.

use arc_swap::ArcSwapOption;
use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::sync::Arc;

mod labels;
pub use labels::*;

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    field_changes: IntCounterVec,
    violations: IntCounterVec,
    overrides: IntCounterVec,
    exemptions: IntCounterVec,
    bad_requests: IntCounterVec,
    shed: IntCounterVec,
    events: IntCounterVec,
    connections_open: IntGaugeVec,
    connections_at_limit: IntCounterVec,
    /// Rendered at scrape time from the current registry snapshot (see `publish_registry`).
    registry_view: ArcSwapOption<Box<dyn Exposition>>,
    /// The continuous audit's per-workload gauges, rendered at scrape time.
    workload_view: ArcSwapOption<Box<dyn Exposition>>,
    workloads_audited: IntGauge,
    workloads_over: IntGauge,
    registry_entries: IntGauge,
    registry_out_of_bounds: IntGauge,
    registry_reloads: IntCounterVec,
    registry_last_success: Gauge,
    registry_lookups: IntCounterVec,
    registry_lookup_duration: HistogramVec,
    registry_cache_entries: IntGauge,
    tls_cert_expiry: Gauge,
}

/// Something that writes its own samples into the text exposition at scrape time (the registry
/// snapshot: 100,000 gauges as prometheus objects held 46 MB, BENCHMARKS.md).
pub trait Exposition: Send + Sync {
    fn render(&self, out: &mut String);
}

/// Latency buckets from 50 µs to 2.5 s: the webhook's own share is sub-millisecond, registry
/// lookups over the network are not.
const DURATION_BUCKETS: [f64; 14] =
    [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5];

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let counter =
            |name: &str, help: &str, labels: &[&str]| register(&r, IntCounterVec::new(Opts::new(name, help), labels));
        let histogram = |name: &str, help: &str, label: &str| {
            register(&r, HistogramVec::new(HistogramOpts::new(name, help).buckets(DURATION_BUCKETS.to_vec()), &[label]))
        };
        let build_info = register(
            &r,
            GaugeVec::new(
                Opts::new("replica_guard_build_info", "Always 1; the labels say which build is running."),
                &["version"],
            ),
        );
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1.0);
        Self {
            requests: counter(
                "replica_guard_admission_requests_total",
                "Admission requests answered, by kind, operation and decision (allowed, warned, denied, not-handled).",
                &["kind", "operation", "decision"],
            ),
            duration: histogram(
                "replica_guard_admission_duration_seconds",
                "Time to decide one admission request: decoding, registry lookup, decision and recording (network I/O excluded).",
                "kind",
            ),
            field_changes: counter(
                "replica_guard_field_changes_total",
                "Changed fields by class (replicas, image, resources, env, volumes, strategy, other); dry runs not counted.",
                &["namespace", "deployment", "field"],
            ),
            violations: counter(
                "replica_guard_violations_total",
                "Requests asking for more replicas than registered, by the mode that applied; dry runs not counted.",
                &["namespace", "deployment", "mode"],
            ),
            overrides: counter(
                "replica_guard_overrides_total",
                "Break-glass override annotations, by result (honoured, ignored).",
                &["namespace", "deployment", "result"],
            ),
            exemptions: counter(
                "replica_guard_exempt_requests_total",
                "Requests allowed without evaluation, by exemption (system-namespace, namespace, user, group).",
                &["exemption"],
            ),
            bad_requests: counter(
                "replica_guard_bad_requests_total",
                "Requests refused with HTTP 4xx because the body was not a usable AdmissionReview.",
                &["reason"],
            ),
            shed: counter(
                "replica_guard_requests_shed_total",
                "Requests answered 503 without being read, by reason (body-budget: the memory budget for request bodies in flight was in use).",
                &["reason"],
            ),
            events: counter(
                "replica_guard_events_total",
                "Kubernetes Events from admission, by result (published, failed, dropped-queue-full, dropped-rate-limited).",
                &["result"],
            ),
            connections_open: register(
                &r,
                IntGaugeVec::new(
                    Opts::new("replica_guard_open_connections", "Open connections, by listener (admission, admin)."),
                    &["listener"],
                ),
            ),
            connections_at_limit: counter(
                "replica_guard_connection_limit_reached_total",
                "Times a new connection had to wait because server.maxConnections were open, by listener.",
                &["listener"],
            ),
            registry_view: ArcSwapOption::empty(),
            workload_view: ArcSwapOption::empty(),
            workloads_audited: register(
                &r,
                IntGauge::new(
                    "replica_guard_audited_workloads",
                    "Deployments the continuous audit judged in its last pass.",
                ),
            ),
            workloads_over: register(
                &r,
                IntGauge::new(
                    "replica_guard_workloads_over_limit",
                    "Deployments above their registered maximum (over or ratchet-only) in the last audit pass.",
                ),
            ),
            registry_entries: register(
                &r,
                IntGauge::new("replica_guard_registry_entries", "Entries in the current registry snapshot."),
            ),
            registry_out_of_bounds: register(
                &r,
                IntGauge::new(
                    "replica_guard_registry_out_of_bounds_entries",
                    "Registry entries whose maxReplicas is outside the platform bounds.",
                ),
            ),
            registry_reloads: counter(
                "replica_guard_registry_reloads_total",
                "Registry loads, by source and result (success, error, held-back by the shrink guard); on error or held-back the last good snapshot stays.",
                &["source", "result"],
            ),
            registry_last_success: register(
                &r,
                Gauge::new(
                    "replica_guard_registry_last_success_timestamp_seconds",
                    "Unix time of the last successful registry load.",
                ),
            ),
            registry_lookups: counter(
                "replica_guard_registry_lookups_total",
                "Registry lookups by source and result (hit, miss, negative, stale, error).",
                &["source", "result"],
            ),
            registry_lookup_duration: histogram(
                "replica_guard_registry_lookup_duration_seconds",
                "Time to answer a registry lookup, cache included.",
                "source",
            ),
            registry_cache_entries: register(
                &r,
                IntGauge::new(
                    "replica_guard_registry_cache_entries",
                    "Entries in the cache in front of a remote registry.",
                ),
            ),
            tls_cert_expiry: register(
                &r,
                Gauge::new(
                    "replica_guard_tls_cert_expiry_timestamp_seconds",
                    "Unix time at which the serving certificate expires.",
                ),
            ),
            registry: r,
        }
    }

    /// Publishes a new registry snapshot: its size, how many entries are outside the platform
    /// bounds, and its per-entry gauges (written by the snapshot itself at scrape time). Returns
    /// the view it replaces, for the caller to drop where freeing a large registry blocks nobody.
    pub fn publish_registry(
        &self,
        view: Box<dyn Exposition>,
        entries: usize,
        out_of_bounds: usize,
    ) -> Option<Arc<Box<dyn Exposition>>> {
        self.registry_entries.set(entries as i64);
        self.registry_out_of_bounds.set(out_of_bounds as i64);
        self.registry_view.swap(Some(Arc::new(view)))
    }

    /// Publishes the continuous audit's last pass: its per-workload gauges and counts.
    pub fn publish_workloads(&self, view: Box<dyn Exposition>, audited: usize, over: usize) {
        self.workloads_audited.set(audited as i64);
        self.workloads_over.set(over as i64);
        self.workload_view.store(Some(Arc::new(view)));
    }

    /// One decided admission request.
    pub fn decided(&self, kind: RequestKind, operation: &str, verdict: &str, seconds: f64) {
        self.requests.with_label_values(&[kind.as_str(), operation, verdict]).inc();
        self.duration.with_label_values(&[kind.as_str()]).observe(seconds);
    }

    /// A request on no replica path, allowed without a decision.
    pub fn not_handled(&self, operation: &str) {
        self.requests.with_label_values(&[RequestKind::Other.as_str(), operation, "not-handled"]).inc();
    }

    /// A body that could not be evaluated (answered 4xx); `reason` is a short fixed label.
    pub fn bad_request(&self, reason: &'static str) {
        self.bad_requests.with_label_values(&[reason]).inc();
    }

    /// A request answered 503 before it was read.
    pub fn shed(&self, reason: &'static str) {
        self.shed.with_label_values(&[reason]).inc();
    }

    /// An admission event's fate.
    pub fn event(&self, result: &'static str) {
        self.events.with_label_values(&[result]).inc();
    }

    pub fn exempt(&self, exemption: &'static str) {
        self.exemptions.with_label_values(&[exemption]).inc();
    }

    pub fn field_changed(&self, w: WorkloadLabels<'_>, field: &'static str) {
        self.field_changes.with_label_values(&[w.namespace, w.deployment, field]).inc();
    }

    pub fn violation(&self, w: WorkloadLabels<'_>, mode: &'static str) {
        self.violations.with_label_values(&[w.namespace, w.deployment, mode]).inc();
    }

    pub fn override_used(&self, w: WorkloadLabels<'_>, honoured: bool) {
        let result = if honoured { "honoured" } else { "ignored" };
        self.overrides.with_label_values(&[w.namespace, w.deployment, result]).inc();
    }

    /// The counter of one lookup result of one source, resolved once by hot paths.
    pub fn registry_lookup_counter(&self, source: SourceKind, result: LookupResult) -> IntCounter {
        self.registry_lookups.with_label_values(&[source.as_str(), result.as_str()])
    }

    /// A lookup that went through a cache: its result and how long it took.
    pub fn registry_lookup(&self, source: SourceKind, result: LookupResult, seconds: f64, cache_entries: u64) {
        self.registry_lookup_counter(source, result).inc();
        self.registry_lookup_duration.with_label_values(&[source.as_str()]).observe(seconds);
        self.registry_cache_entries.set(cache_entries as i64);
    }

    /// A registry load; a successful one also sets the last-success time.
    /// A sync the shrink guard held back (`result="held-back"`): the registry answered, but the
    /// new snapshot would remove too much at once, so the last good one stays.
    pub fn registry_held_back(&self, source: SourceKind) {
        self.registry_reloads.with_label_values(&[source.as_str(), "held-back"]).inc();
    }

    pub fn registry_reload(&self, source: SourceKind, ok: bool) {
        let result = if ok { "success" } else { "error" };
        self.registry_reloads.with_label_values(&[source.as_str(), result]).inc();
        if ok {
            self.registry_answered();
        }
    }

    /// The registry answered (a load, or a remote fetch): sets the last-success time to now.
    pub fn registry_answered(&self) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        self.registry_last_success.set(now.as_secs_f64());
    }

    pub fn tls_cert_expires_at(&self, unix_seconds: i64) {
        self.tls_cert_expiry.set(unix_seconds as f64);
    }

    /// The connection metrics of one listener.
    pub fn connections(&self, listener: Listener) -> ConnectionMetrics {
        let label = match listener {
            Listener::Admission => "admission",
            Listener::Admin => "admin",
        };
        ConnectionMetrics {
            open: self.connections_open.with_label_values(&[label]),
            at_limit: self.connections_at_limit.with_label_values(&[label]),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families, and ours are built above.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        let mut text = String::from_utf8(out).unwrap_or_default();
        for view in [self.registry_view.load_full(), self.workload_view.load_full()].into_iter().flatten() {
            view.render(&mut text);
        }
        text
    }
}

/// One listener's connection metrics, as its accept loop updates them.
#[derive(Clone)]
pub struct ConnectionMetrics {
    pub open: IntGauge,
    /// Times a client had to wait because `maxConnections` were open.
    pub at_limit: IntCounter,
}

/// Registers a metric. The definitions above are fixed at compile time, so a failure here is a
/// programming error caught by every test, never something input can cause.
fn register<C: Collector + Clone + 'static>(registry: &Registry, metric: prometheus::Result<C>) -> C {
    let metric = metric.expect("metric definitions are valid");
    registry.register(Box::new(metric.clone())).expect("metric names are unique");
    metric
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
