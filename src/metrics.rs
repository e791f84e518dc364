//! Prometheus metrics. Names follow Prometheus and kube-state-metrics conventions: prefix
//! `replica_guard_`, base units, `_total` counters, and `namespace`/`deployment` labels so they
//! join with `kube_deployment_spec_replicas`.
//!
//! No per-pod "last requested replicas" gauge: each webhook replica sees a different subset of
//! requests, so such gauges disagree. `registered_max_replicas` is the same on every replica.

use crate::decision::policy::PlatformBounds;
use crate::limits::table::LimitTable;
use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use std::sync::{Arc, RwLock};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub field_changes: IntCounterVec,
    pub violations: IntCounterVec,
    pub overrides: IntCounterVec,
    pub exemptions: IntCounterVec,
    pub bad_requests: IntCounterVec,
    /// The registry the `registered_max_replicas` gauges are rendered from at scrape time.
    registry_view: RwLock<Option<Arc<LimitTable>>>,
    pub registry_entries: IntGauge,
    pub registry_out_of_bounds: IntGauge,
    pub registry_reloads: IntCounterVec,
    pub registry_last_success: Gauge,
    pub registry_lookups: IntCounterVec,
    pub registry_lookup_duration: HistogramVec,
    pub registry_cache_entries: IntGauge,
    pub tls_cert_expiry: Gauge,
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
            registry_view: RwLock::new(None),
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
                "Registry loads, by source and result (success, error); on error the last good snapshot stays.",
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

    /// Publishes a new registry snapshot. Its per-entry gauges are written from the snapshot
    /// itself at scrape time: as prometheus metric objects, 100,000 entries held 46 MB and every
    /// scrape built 100,000 more (BENCHMARKS.md).
    pub fn publish_registry(&self, table: Arc<LimitTable>, bounds: &PlatformBounds) {
        let out_of_bounds = table
            .deployment_entries()
            .map(|(_, _, l)| l)
            .chain(table.namespace_defaults().map(|(_, l)| l))
            .filter(|l| !bounds.contains(l.max_replicas))
            .count();
        self.registry_entries.set(table.len() as i64);
        self.registry_out_of_bounds.set(out_of_bounds as i64);
        *self.registry_view.write().unwrap_or_else(|p| p.into_inner()) = Some(table);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families, and ours are built above.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        let mut text = String::from_utf8(out).unwrap_or_default();
        let view = self.registry_view.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(table) = view {
            render_registry(&table, &mut text);
        }
        text
    }
}

/// The registered maxima in the text exposition format. Label values are Kubernetes names,
/// which the registry validated (lowercase letters, digits, `-`, `.`): nothing to escape.
fn render_registry(table: &LimitTable, out: &mut String) {
    use std::fmt::Write;
    out.push_str(
        "# HELP replica_guard_registered_max_replicas maxReplicas registered in PED for each Deployment entry.\n",
    );
    out.push_str("# TYPE replica_guard_registered_max_replicas gauge\n");
    for (namespace, deployment, limit) in table.deployment_entries() {
        let _ = writeln!(
            out,
            "replica_guard_registered_max_replicas{{deployment=\"{deployment}\",namespace=\"{namespace}\"}} {}",
            limit.max_replicas
        );
    }
    out.push_str(
        "# HELP replica_guard_namespace_default_max_replicas maxReplicas registered in PED as a namespace-wide default.\n",
    );
    out.push_str("# TYPE replica_guard_namespace_default_max_replicas gauge\n");
    for (namespace, limit) in table.namespace_defaults() {
        let _ = writeln!(
            out,
            "replica_guard_namespace_default_max_replicas{{namespace=\"{namespace}\"}} {}",
            limit.max_replicas
        );
    }
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
