//! What the cluster view's passes announce: one Event when a workload goes over its registered
//! limit and one when it comes back within (only transitions, never on every pass), and the
//! per-workload gauges. A first pass with nothing saved only learns where everything stands; one
//! after a restart compares with who stood announced when the last `watch` stopped (saved with the
//! day, `usage`), so an Event missed while no `watch` ran is sent once and nothing is repeated.

use super::status;
use super::view::{Pass, Subscriber};
use crate::decision::WorkloadKey;
use crate::events::{EventQueue, WorkloadEvent};
use crate::limits::BoxFuture;
use crate::metrics::{Exposition, Metrics};
use std::collections::HashSet;
use std::sync::Arc;

pub struct Announcer {
    events: Option<EventQueue>,
    metrics: Arc<Metrics>,
    /// Who was over their limits at the last pass (or, before the first, when the last `watch`
    /// stopped).
    previous: HashSet<WorkloadKey>,
    /// Whether transitions are announced: after the first pass, or from the first with a saved day.
    announce: bool,
}

impl Announcer {
    /// `restored`: who stood announced over their limits when the last `watch` stopped, if saved.
    pub fn new(events: Option<EventQueue>, metrics: Arc<Metrics>, restored: Option<HashSet<WorkloadKey>>) -> Self {
        Self { events, metrics, announce: restored.is_some(), previous: restored.unwrap_or_default() }
    }
}

impl Subscriber for Announcer {
    fn name(&self) -> &'static str {
        "announcements"
    }

    fn pass<'a>(&'a mut self, pass: &'a Pass<'a>) -> BoxFuture<'a, ()> {
        let mut over = HashSet::new();
        let mut gauges = Vec::with_capacity(pass.judged.len());
        for judged in pass.judged {
            let w = &judged.workload;
            let key = WorkloadKey::new(&w.namespace, &w.deployment);
            let now_over = judged.status.is_over();
            if self.announce
                && self.previous.contains(&key) != now_over
                && let Some(queue) = &self.events
            {
                queue.offer(transition(judged, now_over));
            }
            gauges.push((w.namespace.clone(), w.deployment.clone(), w.replicas, w.hpa.as_ref().map(|h| h.1), now_over));
            if now_over {
                over.insert(key);
            }
        }
        self.metrics.audit.publish_workloads(Box::new(Gauges(gauges)), pass.judged.len(), over.len());
        self.previous = over;
        self.announce = true;
        Box::pin(std::future::ready(()))
    }
}

/// The per-workload gauges of the last pass, written at scrape time.
struct Gauges(Vec<(String, String, i32, Option<i32>, bool)>);

impl Exposition for Gauges {
    fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let families = [
            ("replica_guard_workload_replicas", "spec.replicas of each audited Deployment."),
            ("replica_guard_workload_hpa_max_replicas", "maxReplicas of the HPA scaling each audited Deployment."),
            (
                "replica_guard_workload_over_limit",
                "1 when the Deployment or its HPA is above its registered maximum (status over or ratchet-only).",
            ),
        ];
        for (i, (name, help)) in families.iter().enumerate() {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (ns, d, replicas, hpa, over) in &self.0 {
                let value = match i {
                    0 => *replicas,
                    1 => match hpa {
                        Some(max) => *max,
                        None => continue,
                    },
                    _ => i32::from(*over),
                };
                let _ = writeln!(out, "{name}{{deployment=\"{d}\",namespace=\"{ns}\"}} {value}");
            }
        }
    }
}

fn transition(judged: &status::Judged, over: bool) -> WorkloadEvent {
    let w = &judged.workload;
    let max = judged.limit.as_ref().map_or(0, |l| l.max_replicas);
    let hpa = w.hpa.as_ref().map(|(name, m)| format!(", HPA {name} maxReplicas {m}")).unwrap_or_default();
    let (reason, note) = if over {
        (
            "AboveRegisteredLimit",
            format!(
                "replicas {}{hpa} is above PED max {max} for {}/{} ({})",
                w.replicas,
                w.namespace,
                w.deployment,
                judged.status.as_str()
            ),
        )
    } else {
        (
            "BackWithinRegisteredLimit",
            format!("replicas {}{hpa} is within PED max {max} for {}/{} again", w.replicas, w.namespace, w.deployment),
        )
    };
    WorkloadEvent {
        namespace: w.namespace.clone(),
        deployment: w.deployment.clone(),
        warning: over,
        reason,
        action: "Audited",
        note,
    }
}
