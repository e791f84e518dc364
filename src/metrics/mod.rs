//! Prometheus metrics. Names follow Prometheus and kube-state-metrics conventions: prefix
//! `replica_guard_`, base units, `_total` counters, and `namespace`/`deployment` labels so they
//! join with `kube_deployment_spec_replicas`.
//!
//! One file per subsystem, each with its metric families and the typed methods that record them
//! (`metrics.admission.decided(…)`, `metrics.registry.failed(…)`):
//! `admission` (requests, decisions, per-workload changes), `registry` (loads, lookups, the
//! snapshot), `server` (connections, shed and bad requests, the certificate), `audit` (the
//! `watch`'s pass, Events). `labels` holds the bounded label types.
//!
//! No per-pod "last requested replicas" gauge: each webhook replica sees a different subset of
//! requests, so such gauges disagree. `registered_max_replicas` is the same on every replica.

use family::register;
use prometheus::{Encoder, GaugeVec, Opts, Registry, TextEncoder};

pub mod admission;
pub mod audit;
mod family;
mod labels;
pub mod registry;
pub mod server;
pub use family::Exposition;
pub use labels::*;
pub use server::ConnectionMetrics;

pub struct Metrics {
    prometheus: Registry,
    pub admission: admission::Families,
    pub registry: registry::Families,
    pub server: server::Families,
    pub audit: audit::Families,
}

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
        self.registry.render_view(&mut text);
        self.audit.render_view(&mut text);
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
