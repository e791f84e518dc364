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

/// Which process exports the metrics: each exports only what it records, so a webhook pod shows
/// no audit pass at 0 (read as "the audit ran and found nothing") and a `watch` pod no serving
/// certificate expiring in 1970.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    Webhook,
    Watch,
    /// A command that exports nothing (`check`, `audit`) or a test: every family.
    Every,
}

/// How much per-object detail is exported (`metrics:` in the config); the default grows with what
/// is wrong in the cluster, not with the registry's size or the number of Deployments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Detail {
    /// One series per registry entry (`replica_guard_registered_max_replicas`, …), on every pod.
    #[serde(default)]
    pub registry_entries: bool,
    /// `replica_guard_field_changes_total` per namespace and deployment, not only per field.
    #[serde(default)]
    pub changes_per_workload: bool,
    /// Which Deployments `watch` exports per-workload gauges for.
    #[serde(default)]
    pub workloads: Workloads,
}

/// `metrics.workloads`: `watch`'s per-Deployment gauges (`replica_guard_workload_*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Workloads {
    /// Only the Deployments over their limits (what the alert needs).
    #[default]
    OverLimit,
    /// Every judged Deployment (about 3 series each).
    All,
}

pub struct Metrics {
    prometheus: Registry,
    detail: Detail,
    pub admission: admission::Families,
    pub registry: registry::Families,
    pub server: server::Families,
    pub audit: audit::Families,
}

impl Metrics {
    /// Every family, with the default detail.
    pub fn new() -> Self {
        Self::exported_by(Process::Every, Detail::default())
    }

    /// The families `process` records, with `detail`.
    pub fn exported_by(process: Process, detail: Detail) -> Self {
        let r = Registry::new();
        let unread = Registry::new();
        let exports = match process {
            Process::Webhook => family::Exports { webhook: &r, watch: &unread, every: &r },
            Process::Watch => family::Exports { webhook: &unread, watch: &r, every: &r },
            Process::Every => family::Exports { webhook: &r, watch: &r, every: &r },
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
            admission: admission::Families::new(exports.webhook, detail.changes_per_workload),
            registry: registry::Families::new(exports.every),
            server: server::Families::new(exports.webhook, exports.every),
            audit: audit::Families::new(exports.watch, exports.every),
            detail,
            prometheus: r,
        }
    }

    /// How much per-object detail this process exports.
    pub fn detail(&self) -> Detail {
        self.detail
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.registry.refresh_revision_age();
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families, and ours are built above.
        let _ = TextEncoder::new().encode(&self.prometheus.gather(), &mut out);
        let mut text = String::from_utf8(out).unwrap_or_default();
        if self.detail.registry_entries {
            self.registry.render_view(&mut text);
        }
        self.audit.render_view(&mut text);
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The families `metrics` exports once one of each kind was recorded (a labelled family with
    /// no sample yet is not written at all).
    fn names(metrics: &Metrics) -> Vec<String> {
        metrics.admission.decided(RequestKind::Deployment, "CREATE", "allowed");
        metrics.server.bad_request("not-json");
        metrics.audit.event("published");
        let _ = metrics.server.connections(Listener::Admin);
        let text = metrics.render();
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap().to_string())
            .collect()
    }

    #[test]
    fn each_process_exports_what_it_records_and_nothing_at_zero_it_never_sets() {
        let webhook = names(&Metrics::exported_by(Process::Webhook, Detail::default()));
        let watch = names(&Metrics::exported_by(Process::Watch, Detail::default()));
        for (name, in_webhook, in_watch) in [
            ("replica_guard_admission_requests_total", true, false),
            ("replica_guard_tls_cert_expiry_timestamp_seconds", true, false),
            ("replica_guard_bad_requests_total", true, false),
            ("replica_guard_audit_pass_seconds", false, true),
            ("replica_guard_usage_state_bytes", false, true),
            ("replica_guard_backstop_namespaces", false, true),
            ("replica_guard_events_total", true, true),
            ("replica_guard_registry_entries", true, true),
            ("replica_guard_open_connections", true, true),
            ("replica_guard_build_info", true, true),
        ] {
            assert_eq!(webhook.iter().any(|n| n == name), in_webhook, "{name} in the webhook's /metrics");
            assert_eq!(watch.iter().any(|n| n == name), in_watch, "{name} in watch's /metrics");
        }
    }
}
