//! The continuous audit (`replica-guard watch`, the chart's audit Deployment): watches every
//! Deployment and HPA, judges them against the registry every `interval` (so a lowered registry
//! entry is seen without any change to the workload), exports per-workload gauges, and emits one
//! Event when a workload goes over its limit and one when it comes back within (not on every
//! pass: only transitions), and keeps one PolicyReport per namespace when the CRD is installed.
//!
//! Only the few fields the audit needs are kept per object (`status::RunningWorkload`), not the objects,
//! so memory stays small with 10,000 Deployments. A watch that restarts (an API server restart,
//! an expired resource version) re-lists, and the state is rebuilt from that listing.

use super::inventory::{hpa_target, workload};
use super::policy_report;
use super::status::{self, RunningWorkload};
use super::usage_log::UsageLog;
use crate::decision::WorkloadKey;
use crate::decision::policy::Policy;
use crate::events::{EventQueue, WorkloadEvent};
use crate::limits::LimitSource;
use crate::metrics::{Exposition, Metrics};
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// An HPA: the Deployment it scales, and its own (name, maxReplicas).
type Hpa = (WorkloadKey, (String, i32));

/// One kind of object as its watch shows it, by (namespace, name): what is known now, and the
/// listing being filled after an `Init` (a watch that restarts re-lists), swapped in at `InitDone`.
struct Watched<V> {
    now: HashMap<WorkloadKey, V>,
    listing: Option<HashMap<WorkloadKey, V>>,
    synced: bool,
}

impl<V> Default for Watched<V> {
    fn default() -> Self {
        Self { now: HashMap::new(), listing: None, synced: false }
    }
}

impl<V: Clone> Watched<V> {
    /// Takes in a watch event, keeping what `read` makes of each object (an object it makes
    /// nothing of is forgotten); returns what an applied object became, if anything.
    fn apply<K: kube::Resource>(&mut self, event: Event<K>, read: impl Fn(K) -> Option<V>) -> Option<V> {
        let key =
            |o: &K| Some(WorkloadKey { namespace: o.meta().namespace.clone()?, deployment: o.meta().name.clone()? });
        match event {
            Event::Init => self.listing = Some(HashMap::new()),
            Event::InitApply(o) => {
                let k = key(&o)?;
                let v = read(o)?;
                self.listing.get_or_insert_default().insert(k, v.clone());
                return Some(v);
            }
            Event::InitDone => {
                self.now = self.listing.take().unwrap_or_default();
                self.synced = true;
            }
            Event::Apply(o) => {
                let k = key(&o)?;
                match read(o) {
                    Some(v) => {
                        self.now.insert(k, v.clone());
                        return Some(v);
                    }
                    None => {
                        self.now.remove(&k);
                    }
                }
            }
            Event::Delete(o) => {
                if let Some(k) = key(&o) {
                    self.now.remove(&k);
                }
            }
        }
        None
    }
}

/// What is known of the cluster: Deployments, and HPAs with their target and maximum.
#[derive(Default)]
struct Known {
    deployments: Watched<RunningWorkload>,
    hpas: Watched<Hpa>,
}

impl Known {
    fn synced(&self) -> bool {
        self.deployments.synced && self.hpas.synced
    }

    /// Every Deployment with the largest maximum of the HPAs that target it.
    fn workloads(&self) -> Vec<RunningWorkload> {
        let mut hpa_of: HashMap<&WorkloadKey, &(String, i32)> = HashMap::new();
        for (target, hpa) in self.hpas.now.values() {
            if hpa_of.get(target).is_none_or(|known| hpa.1 > known.1) {
                hpa_of.insert(target, hpa);
            }
        }
        self.deployments
            .now
            .iter()
            .map(|(key, w)| RunningWorkload { hpa: hpa_of.get(key).map(|h| (*h).clone()), ..w.clone() })
            .collect()
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

/// What the continuous audit needs.
pub struct Audit {
    pub client: kube::Client,
    pub limits: Arc<dyn LimitSource>,
    pub policy: Policy,
    pub events: Option<EventQueue>,
    pub metrics: Arc<Metrics>,
    /// How often every workload is judged again.
    pub interval: Duration,
    /// Turns true after the first complete pass.
    pub ready: crate::part::Ready,
    /// The daily usage records, when on.
    pub usage: Option<UsageLog>,
    /// Which report APIs to write (`audit.reports`).
    pub reports: crate::config::ReportsConfig,
    /// `cluster.name`, carried by the reports.
    pub cluster: Option<String>,
}

/// Runs the continuous audit until `stop`; then saves the day's usage as it stands (the highs seen
/// since the last pass included) and returns.
pub async fn run(audit: Audit, mut stop: crate::part::Stop) {
    let Audit { client, limits, policy, events, metrics, interval, ready, mut usage, reports: reports_wanted, cluster } =
        audit;
    let report_client = client.clone();
    let deployments = watcher::watcher(kube::Api::<Deployment>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .boxed();
    let hpas = watcher::watcher(kube::Api::<HorizontalPodAutoscaler>::all(client), watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut deployments = deployments.fuse();
    let mut hpas = hpas.fuse();
    let mut known = Known::default();
    // Who stood announced over their limits when the last `watch` stopped: the first pass
    // announces what changed since (an Event missed while no `watch` ran), and repeats nothing.
    // Without a saved day, the first pass only learns where things stand.
    let restored = usage.as_mut().and_then(UsageLog::take_restored_over);
    let announce_first = restored.is_some();
    let mut previous: HashSet<WorkloadKey> = restored.unwrap_or_default();
    let mut reports: HashMap<policy_report::ReportApi, HashMap<String, serde_json::Value>> = HashMap::new();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.requested() => {
                if let Some(usage) = usage.as_mut() {
                    usage.save().await;
                }
                tracing::info!("continuous audit stopped; the day's usage is saved");
                return;
            }
            Some(event) = deployments.next() => match event {
                Ok(event) => {
                    // Every change counts for the day's highs, not only what a pass sees.
                    if let (Some(w), Some(usage)) = (known.deployments.apply(event, |d| workload(d, None)), usage.as_mut()) {
                        usage.deployment(&w);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "Deployment watch failed; retrying"),
            },
            Some(event) = hpas.next() => match event {
                Ok(event) => {
                    if let (Some((target, (_, max))), Some(usage)) = (known.hpas.apply(event, hpa_target), usage.as_mut()) {
                        usage.hpa(&target.namespace, &target.deployment, max);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "HPA watch failed; retrying"),
            },
            _ = ticker.tick() => {
                if !(known.synced() && limits.is_ready()) {
                    // Not a whole interval (30 s in the chart) before the first pass: it is what
                    // `/readyz` waits for, and what announces what changed while no `watch` ran.
                    ticker.reset_after(Duration::from_millis(200).min(interval));
                    continue;
                }
                let started = std::time::Instant::now();
                let announce = announce_first || ready.is_set();
                let workloads = known.workloads();
                if let Some(usage) = usage.as_mut() {
                    usage.pass(&workloads);
                }
                let judged;
                (previous, judged) = evaluate(workloads, limits.as_ref(), &policy, events.as_ref(), &metrics, previous, announce).await;
                ready.set();
                if let Some(usage) = usage.as_mut() {
                    usage.announced_over(&previous);
                    for j in &judged {
                        let (namespace, deployment) = (&j.workload.namespace, &j.workload.deployment);
                        let revision = limits.revision(namespace, deployment).await;
                        usage.registered(namespace, deployment, j.limit.as_ref(), revision);
                    }
                    usage.save().await;
                }
                // Reports only where their CRD is installed (asked every pass: it may come later).
                let apis = policy_report::targets(&report_client, reports_wanted).await;
                // Switched to the other API (not merely a failed discovery, which finds neither).
                let dropped: Vec<_> =
                    reports.keys().filter(|api| !apis.is_empty() && !apis.contains(api)).copied().collect();
                for api in dropped {
                    policy_report::remove(&report_client, api, reports.remove(&api).unwrap_or_default()).await;
                }
                if !apis.is_empty() {
                    let wanted = policy_report::reports(&judged, cluster.as_deref());
                    for api in apis {
                        let written = reports.remove(&api).unwrap_or_default();
                        let written = policy_report::write(&report_client, api, cluster.as_deref(), wanted.clone(), written).await;
                        reports.insert(api, written);
                    }
                }
                metrics.audit.pass(started.elapsed().as_secs_f64());
            }
        }
    }
}

/// One pass: judge every workload, publish the gauges, announce transitions from `previous` (the
/// workloads over their limits at the last pass) when `announce` (not on a first pass with nothing
/// saved, which only learns where everything stands). Returns the workloads over their limits now.
async fn evaluate(
    workloads: Vec<RunningWorkload>,
    limits: &dyn LimitSource,
    policy: &Policy,
    events: Option<&EventQueue>,
    metrics: &Metrics,
    previous: HashSet<WorkloadKey>,
    announce: bool,
) -> (HashSet<WorkloadKey>, Vec<status::Judged>) {
    let mut over = HashSet::new();
    let mut audited = 0;
    let mut all = Vec::with_capacity(workloads.len());
    let mut gauges = Vec::with_capacity(workloads.len());
    for w in workloads {
        let lookup = limits.lookup(&w.namespace, &w.deployment).await;
        let Some(judged) = status::judge(w, lookup, policy) else { continue };
        let w = &judged.workload;
        let key = WorkloadKey::new(&w.namespace, &w.deployment);
        let was_over = previous.contains(&key);
        let now_over = judged.status.is_over();
        if announce
            && was_over != now_over
            && let Some(queue) = events
        {
            queue.offer(transition(&judged, now_over));
        }
        gauges.push((w.namespace.clone(), w.deployment.clone(), w.replicas, w.hpa.as_ref().map(|h| h.1), now_over));
        audited += 1;
        if now_over {
            over.insert(key);
        }
        all.push(judged);
    }
    metrics.audit.publish_workloads(Box::new(Gauges(gauges)), audited, over.len());
    (over, all)
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
