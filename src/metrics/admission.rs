//! The admission requests: how many, how they were decided and how long it took, and per
//! workload the changed fields, violations and overrides (dry runs not counted).

use super::family::{counter, histogram};
use super::labels::{RequestKind, WorkloadLabels};
use prometheus::{HistogramVec, IntCounterVec, Registry};
use std::time::Instant;

pub struct Families {
    /// `metrics.changesPerWorkload`: field changes counted per namespace and deployment too.
    changes_per_workload: bool,
    requests: IntCounterVec,
    duration: HistogramVec,
    field_changes: IntCounterVec,
    violations: IntCounterVec,
    overrides: IntCounterVec,
    exemptions: IntCounterVec,
}

impl Families {
    pub(super) fn new(r: &Registry, changes_per_workload: bool) -> Self {
        let change_labels: &[&str] =
            if changes_per_workload { &["namespace", "deployment", "field"] } else { &["field"] };
        Self {
            changes_per_workload,
            requests: counter(
                r,
                "replica_guard_admission_requests_total",
                "Admission requests answered, by kind, operation and decision (allowed, warned, denied, not-handled).",
                &["kind", "operation", "decision"],
            ),
            duration: histogram(
                r,
                "replica_guard_admission_duration_seconds",
                "Time to decide one admission request: decoding, registry lookup, decision and recording (network I/O excluded).",
                "kind",
            ),
            field_changes: counter(
                r,
                "replica_guard_field_changes_total",
                "Changed fields by class (replicas, image, resources, env, volumes, strategy, other), per namespace and deployment with metrics.changesPerWorkload; dry runs not counted.",
                change_labels,
            ),
            violations: counter(
                r,
                "replica_guard_violations_total",
                "Requests asking for more replicas than registered, by the mode that applied; dry runs not counted.",
                &["namespace", "deployment", "mode"],
            ),
            overrides: counter(
                r,
                "replica_guard_overrides_total",
                "Break-glass override annotations, by result (honoured, ignored).",
                &["namespace", "deployment", "result"],
            ),
            exemptions: counter(
                r,
                "replica_guard_exempt_requests_total",
                "Requests allowed without evaluation, by exemption (system-namespace, namespace, user, group).",
                &["exemption"],
            ),
        }
    }
}

/// Times one admission request from the moment its body is handed over; when dropped — however
/// the request ended — observes `replica_guard_admission_duration_seconds` for the kind it was
/// decided as. A request that was not decided (no replica path, a bad body) is not observed.
pub struct DecisionTimer<'a> {
    duration: &'a HistogramVec,
    started: Instant,
    kind: Option<RequestKind>,
}

impl DecisionTimer<'_> {
    /// The request is decided as `kind`: observed when the timer drops.
    pub fn decided_as(&mut self, kind: RequestKind) {
        self.kind = Some(kind);
    }
}

impl Drop for DecisionTimer<'_> {
    fn drop(&mut self) {
        if let Some(kind) = self.kind {
            self.duration.with_label_values(&[kind.as_str()]).observe(self.started.elapsed().as_secs_f64());
        }
    }
}

impl Families {
    /// A timer for one request, started now.
    pub fn timer(&self) -> DecisionTimer<'_> {
        DecisionTimer { duration: &self.duration, started: Instant::now(), kind: None }
    }

    /// One decided admission request.
    pub fn decided(&self, kind: RequestKind, operation: &str, verdict: &str) {
        self.requests.with_label_values(&[kind.as_str(), operation, verdict]).inc();
    }

    /// A request on no replica path, allowed without a decision.
    pub fn not_handled(&self, operation: &str) {
        self.requests.with_label_values(&[RequestKind::Other.as_str(), operation, "not-handled"]).inc();
    }

    pub fn exempt(&self, exemption: &'static str) {
        self.exemptions.with_label_values(&[exemption]).inc();
    }

    pub fn field_changed(&self, w: WorkloadLabels<'_>, field: &'static str) {
        if self.changes_per_workload {
            self.field_changes.with_label_values(&[w.namespace, w.deployment, field]).inc();
        } else {
            self.field_changes.with_label_values(&[field]).inc();
        }
    }

    pub fn violation(&self, w: WorkloadLabels<'_>, mode: &'static str) {
        self.violations.with_label_values(&[w.namespace, w.deployment, mode]).inc();
    }

    pub fn override_used(&self, w: WorkloadLabels<'_>, honoured: bool) {
        let result = if honoured { "honoured" } else { "ignored" };
        self.overrides.with_label_values(&[w.namespace, w.deployment, result]).inc();
    }
}
