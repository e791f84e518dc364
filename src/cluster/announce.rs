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
use crate::metrics::{Exposition, Metrics, Workloads};
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
        // Per-workload gauges for every Deployment only when asked (`metrics.workloads: all`):
        // by default what is exported grows with what is over, not with the cluster.
        let every_workload = self.metrics.detail().workloads == Workloads::All;
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
            if now_over || every_workload {
                gauges.push(Row {
                    namespace: w.namespace.clone(),
                    deployment: w.deployment.clone(),
                    replicas: w.replicas,
                    hpa_max: w.hpa.as_ref().map(|h| h.1),
                    registered_max: judged.limit.as_ref().map(|l| l.max_replicas),
                    over: now_over,
                });
            }
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
struct Gauges(Vec<Row>);

/// One exported Deployment.
struct Row {
    namespace: String,
    deployment: String,
    replicas: i32,
    hpa_max: Option<i32>,
    /// What the registry says, when registered.
    registered_max: Option<i32>,
    over: bool,
}

impl Exposition for Gauges {
    fn render(&self, out: &mut String) {
        use std::fmt::Write;
        type Value = fn(&Row) -> Option<i32>;
        let families: [(&str, &str, Value); 4] = [
            ("replica_guard_workload_replicas", "spec.replicas of each exported Deployment.", |r| Some(r.replicas)),
            (
                "replica_guard_workload_hpa_max_replicas",
                "maxReplicas of the HPA scaling each exported Deployment.",
                |r| r.hpa_max,
            ),
            (
                "replica_guard_workload_registered_max_replicas",
                "maxReplicas registered in PED for each exported Deployment.",
                |r| r.registered_max,
            ),
            (
                "replica_guard_workload_over_limit",
                "1 when the Deployment or its HPA is above its registered maximum (status over or ratchet-only); by default only those are exported (metrics.workloads).",
                |r| Some(i32::from(r.over)),
            ),
        ];
        for (name, help, value) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for row in &self.0 {
                if let Some(value) = value(row) {
                    let (d, ns) = (&row.deployment, &row.namespace);
                    let _ = writeln!(out, "{name}{{deployment=\"{d}\",namespace=\"{ns}\"}} {value}");
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::status::{self, RunningWorkload};
    use crate::decision::policy::Policy;
    use crate::decision::{Limit, Lookup, Scope};
    use crate::limits::store::SnapshotStore;
    use crate::metrics::{Detail, Process, SourceKind};

    fn judged(deployment: &str, replicas: i32) -> status::Judged {
        let workload = RunningWorkload {
            namespace: "team-a".into(),
            deployment: deployment.into(),
            replicas,
            hpa: None,
            cpu_requests: 0.5,
            memory_requests_gib: 1.0,
        };
        let limit = Limit { max_replicas: 4, min_replicas: None, mode: None, owner: None, scope: Scope::Deployment };
        status::judge(workload, Lookup::Registered(limit), &Policy::default()).expect("judged")
    }

    /// The gauges of a pass over one workload over its limit and one within, as exported.
    async fn exported(workloads: Workloads) -> String {
        let metrics = Arc::new(Metrics::exported_by(Process::Watch, Detail { workloads, ..Detail::default() }));
        let mut announcer = Announcer::new(None, metrics.clone(), None);
        let judged = [judged("over", 7), judged("within", 2)];
        let limits = SnapshotStore::new(SourceKind::File, &metrics);
        let running: Vec<RunningWorkload> = judged.iter().map(|j| j.workload.clone()).collect();
        announcer.pass(&Pass { running: &running, judged: &judged, limits: &limits }).await;
        metrics.render()
    }

    #[tokio::test]
    async fn per_workload_gauges_are_exported_for_what_is_over_unless_every_workload_is_asked_for() {
        let default = exported(Workloads::OverLimit).await;
        assert!(default.contains("replica_guard_workload_over_limit{deployment=\"over\",namespace=\"team-a\"} 1"));
        assert!(default.contains("replica_guard_workload_replicas{deployment=\"over\",namespace=\"team-a\"} 7"));
        assert!(
            default
                .contains("replica_guard_workload_registered_max_replicas{deployment=\"over\",namespace=\"team-a\"} 4")
        );
        assert!(!default.contains("deployment=\"within\""), "{default}");
        assert!(default.contains("replica_guard_audited_workloads 2"), "the counts stay whole");
        let all = exported(Workloads::All).await;
        assert!(all.contains("replica_guard_workload_over_limit{deployment=\"within\",namespace=\"team-a\"} 0"));
    }
}
