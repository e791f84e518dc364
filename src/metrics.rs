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
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub field_changes: IntCounterVec,
    pub violations: IntCounterVec,
    pub overrides: IntCounterVec,
    pub exemptions: IntCounterVec,
    pub bad_requests: IntCounterVec,
    pub registered_max: IntGaugeVec,
    pub namespace_default_max: IntGaugeVec,
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
            registered_max: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "replica_guard_registered_max_replicas",
                        "maxReplicas registered in PED for each Deployment entry.",
                    ),
                    &["namespace", "deployment"],
                ),
            ),
            namespace_default_max: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "replica_guard_namespace_default_max_replicas",
                        "maxReplicas registered in PED as a namespace-wide default.",
                    ),
                    &["namespace"],
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

    /// Publishes a new registry snapshot: the gauges are rebuilt so removed entries disappear.
    pub fn publish_registry(&self, table: &LimitTable, bounds: &PlatformBounds) {
        self.registered_max.reset();
        self.namespace_default_max.reset();
        let mut out_of_bounds = 0;
        for (namespace, deployment, limit) in table.deployment_entries() {
            self.registered_max.with_label_values(&[namespace, deployment]).set(limit.max_replicas.into());
            out_of_bounds += i64::from(!bounds.contains(limit.max_replicas));
        }
        for (namespace, limit) in table.namespace_defaults() {
            self.namespace_default_max.with_label_values(&[namespace]).set(limit.max_replicas.into());
            out_of_bounds += i64::from(!bounds.contains(limit.max_replicas));
        }
        self.registry_entries.set(table.len() as i64);
        self.registry_out_of_bounds.set(out_of_bounds);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families, and ours are built above.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
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
