//! `watch`'s last pass, the backstop parameters it writes, and the Kubernetes
//! Events of admission and the audit.

use super::family::{Exposition, counter, gauge, register};
use arc_swap::ArcSwapOption;
use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Registry};
use std::sync::Arc;

pub struct Families {
    /// Rendered at scrape time (see `Exposition`).
    view: ArcSwapOption<Box<dyn Exposition>>,
    workloads_audited: IntGauge,
    workloads_over: IntGauge,
    events: IntCounterVec,
    backstop_writes: IntCounterVec,
    backstop_namespaces: IntGauge,
    pass_seconds: Gauge,
    usage_writes: IntCounterVec,
    usage_bytes_written: IntCounter,
    usage_shards: IntGauge,
    usage_bytes: IntGauge,
}

impl Families {
    /// The view's samples, if one was published.
    pub(super) fn render_view(&self, out: &mut String) {
        if let Some(view) = self.view.load_full() {
            view.render(out);
        }
    }

    /// `watch`: where `watch`'s own families go; `every`: the Events counter (both processes).
    pub(super) fn new(watch: &Registry, every: &Registry) -> Self {
        let r = watch;
        Self {
            view: ArcSwapOption::empty(),
            workloads_audited: gauge(
                r,
                "replica_guard_audited_workloads",
                "Deployments the cluster view judged in its last pass.",
            ),
            workloads_over: gauge(
                r,
                "replica_guard_workloads_over_limit",
                "Deployments above their registered maximum (over or ratchet-only) in the last audit pass.",
            ),
            events: counter(
                every,
                "replica_guard_events_total",
                "Kubernetes Events from admission, by result (published, failed, dropped-queue-full, dropped-rate-limited per workload, dropped-namespace-limited, dropped-process-limited).",
                &["result"],
            ),
            backstop_writes: counter(
                r,
                "replica_guard_backstop_writes_total",
                "Writes of the backstop policy's parameters (one BackstopLimits per namespace), by result (applied, deleted, failed).",
                &["result"],
            ),
            backstop_namespaces: gauge(
                r,
                "replica_guard_backstop_namespaces",
                "Namespaces with enforce-mode limits the backstop policy's parameters should carry.",
            ),
            pass_seconds: register(
                r,
                Gauge::new("replica_guard_audit_pass_seconds", "Seconds the last pass of the cluster view took."),
            ),
            usage_writes: counter(
                r,
                "replica_guard_usage_state_writes_total",
                "Writes of the usage records' day to its ConfigMaps, by result (written, deleted, failed).",
                &["result"],
            ),
            usage_bytes_written: register(
                r,
                IntCounter::new(
                    "replica_guard_usage_state_written_bytes_total",
                    "Bytes of the usage records' day written to its ConfigMaps (only shards that changed).",
                ),
            ),
            usage_shards: gauge(
                r,
                "replica_guard_usage_state_shards",
                "ConfigMaps the usage records' day is kept in (one per about 256 KiB).",
            ),
            usage_bytes: gauge(r, "replica_guard_usage_state_bytes", "Size of the usage records' day as last saved."),
        }
    }
}

impl Families {
    /// Publishes `watch`'s last pass: its per-workload gauges and counts.
    pub fn publish_workloads(&self, view: Box<dyn Exposition>, audited: usize, over: usize) {
        self.workloads_audited.set(audited as i64);
        self.workloads_over.set(over as i64);
        self.view.store(Some(Arc::new(view)));
    }

    /// One pass of the backstop's parameter writer.
    pub fn backstop_pass(&self, applied: usize, deleted: usize, failed: usize, namespaces: usize) {
        for (result, n) in [("applied", applied), ("deleted", deleted), ("failed", failed)] {
            self.backstop_writes.with_label_values(&[result]).inc_by(n as u64);
        }
        self.backstop_namespaces.set(namespaces as i64);
    }

    /// How long the last audit pass took.
    pub fn pass(&self, seconds: f64) {
        self.pass_seconds.set(seconds);
    }

    /// One save of the usage day: shards written (and their bytes), deleted, failed; the layout.
    pub fn usage_saved(
        &self,
        written: usize,
        bytes: usize,
        deleted: usize,
        failed: usize,
        shards: usize,
        total: usize,
    ) {
        for (result, n) in [("written", written), ("deleted", deleted), ("failed", failed)] {
            self.usage_writes.with_label_values(&[result]).inc_by(n as u64);
        }
        self.usage_bytes_written.inc_by(bytes as u64);
        self.usage_shards.set(shards as i64);
        self.usage_bytes.set(total as i64);
    }

    /// An Event's fate.
    pub fn event(&self, result: &'static str) {
        self.events.with_label_values(&[result]).inc();
    }
}
