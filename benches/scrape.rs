//! What one scrape of `/metrics` weighs, by default and with the per-object opt-ins
//! (`metrics.registryEntries`, `metrics.workloads: all`): a webhook pod with a 100,000-entry
//! registry, and the audit pod judging 50,000 Deployments of which 1% run over their limits.
//! The exposition the processes serve, rendered in-process (bytes and series are deterministic;
//! no timing here). `cargo bench --bench scrape` prints one table, for BENCHMARKS.md.

use replica_guard::cluster::announce::Announcer;
use replica_guard::cluster::status::{self, RunningWorkload};
use replica_guard::cluster::view::{Pass, Subscriber};
use replica_guard::decision::policy::Policy;
use replica_guard::decision::{Limit, Lookup, Scope};
use replica_guard::limits::store::SnapshotStore;
use replica_guard::limits::table::LimitTable;
use replica_guard::metrics::{Detail, Metrics, Process, RequestKind, SourceKind, WorkloadLabels, Workloads};
use std::sync::Arc;

const ENTRIES: usize = 100_000;
const DEPLOYMENTS: usize = 50_000;

fn limit(max: i32) -> Limit {
    Limit { max_replicas: max, min_replicas: None, mode: None, owner: None, scope: Scope::Deployment }
}

/// A webhook pod after a day of ordinary traffic: every kind of decision, 20 workloads with
/// violations, 3 overrides, changes of every field class.
fn webhook(detail: Detail) -> String {
    let metrics = Metrics::exported_by(Process::Webhook, detail);
    let mut table = LimitTable::with_global_default(None);
    for i in 0..ENTRIES {
        table.insert(&format!("team-{}", i % 1000), Some(&format!("service-{i}-api")), limit(4)).unwrap();
    }
    let entries = table.len();
    let _ = metrics.registry.publish(Box::new(Arc::new(table)), entries, 0);
    metrics.registry.loaded(SourceKind::File);
    for kind in [RequestKind::Deployment, RequestKind::Scale, RequestKind::Hpa] {
        for (operation, verdict) in
            [("CREATE", "allowed"), ("UPDATE", "allowed"), ("UPDATE", "denied"), ("UPDATE", "warned")]
        {
            metrics.admission.decided(kind, operation, verdict);
            let mut timer = metrics.admission.timer();
            timer.decided_as(kind);
        }
    }
    for i in 0..20 {
        let (namespace, deployment) = (format!("team-{i}"), format!("service-{i}-api"));
        let w = WorkloadLabels { namespace: &namespace, deployment: &deployment };
        metrics.admission.violation(w, "enforce");
        for field in ["replicas", "image", "resources", "env", "volumes", "strategy", "other"] {
            metrics.admission.field_changed(w, field);
        }
        if i < 3 {
            metrics.admission.override_used(w, true);
        }
    }
    metrics.render()
}

/// The audit pod after a pass over 50,000 Deployments, 500 of them over their limits.
async fn watch(detail: Detail) -> String {
    let metrics = Arc::new(Metrics::exported_by(Process::Watch, detail));
    let policy = Policy::default();
    let running: Vec<RunningWorkload> = (0..DEPLOYMENTS)
        .map(|i| RunningWorkload {
            namespace: format!("team-{}", i % 1000),
            deployment: format!("service-{i}-api"),
            replicas: if i % 100 == 0 { 6 } else { 3 },
            hpa: (i % 10 == 0).then(|| (format!("service-{i}-api"), 4)),
            cpu_requests: 0.5,
            memory_requests_gib: 1.0,
        })
        .collect();
    let judged: Vec<status::Judged> =
        running.iter().filter_map(|w| status::judge(w.clone(), Lookup::Registered(limit(4)), &policy)).collect();
    let limits = SnapshotStore::new(SourceKind::File, &metrics);
    let mut announcer = Announcer::new(None, metrics.clone(), None);
    announcer.pass(&Pass { running: &running, judged: &judged, limits: &limits }).await;
    metrics.render()
}

fn series(text: &str) -> usize {
    text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!("| pod | metrics | bytes | series |  (commit {commit})");
    println!("|---|---|---|---|");
    for (what, detail) in [
        ("default", Detail::default()),
        ("registryEntries: true", Detail { registry_entries: true, ..Detail::default() }),
    ] {
        let text = webhook(detail);
        println!("| webhook, {ENTRIES} entries | {what} | {} | {} |", text.len(), series(&text));
    }
    for (what, detail) in [
        ("default (workloads: overLimit)", Detail::default()),
        ("workloads: all", Detail { workloads: Workloads::All, ..Detail::default() }),
    ] {
        let text = runtime.block_on(watch(detail));
        println!("| watch, {DEPLOYMENTS} Deployments, 1% over | {what} | {} | {} |", text.len(), series(&text));
    }
}
