//! The continuous audit (`replica-guard watch`, the chart's audit Deployment): watches every
//! Deployment and HPA, judges them against the registry every `interval` (so a lowered registry
//! entry is seen without any change to the workload), exports per-workload gauges, and emits one
//! Event when a workload goes over its limit and one when it comes back within (not on every
//! pass: only transitions), and keeps one PolicyReport per namespace when the CRD is installed.
//!
//! Only the few fields the audit needs are kept per object (`status::Workload`), not the objects,
//! so memory stays small with 10,000 Deployments. A watch that restarts (an API server restart,
//! an expired resource version) re-lists, and the state is rebuilt from that listing.

use super::events::{EventQueue, WorkloadEvent};
use super::inventory::{hpa_target, workload};
use super::policy_report;
use super::status::{self, Status, Workload};
use super::usage_log::UsageLog;
use crate::decision::policy::Policy;
use crate::limits::LimitSource;
use crate::metrics::{Exposition, Metrics};
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

type Key = (String, String);
/// An HPA: the Deployment it scales, and its own (name, maxReplicas).
type Hpa = (Key, (String, i32));

/// What is known of the cluster: Deployments by (namespace, name), HPAs by (namespace, name)
/// with their target and maximum.
#[derive(Default)]
struct Known {
    deployments: HashMap<Key, Workload>,
    hpas: HashMap<Key, Hpa>,
    /// Objects listed since the last `Init`, swapped in at `InitDone`.
    listing_deployments: Option<HashMap<Key, Workload>>,
    listing_hpas: Option<HashMap<Key, Hpa>>,
    deployments_synced: bool,
    hpas_synced: bool,
}

impl Known {
    /// Takes in a watch event; returns the Deployment it applied, if any.
    fn deployment_event(&mut self, event: Event<Deployment>) -> Option<Workload> {
        let key = |d: &Deployment| Some((d.metadata.namespace.clone()?, d.metadata.name.clone()?));
        match event {
            Event::Init => self.listing_deployments = Some(HashMap::new()),
            Event::InitApply(d) => {
                if let (Some(k), Some(w)) = (key(&d), workload(d, None)) {
                    self.listing_deployments.get_or_insert_default().insert(k, w.clone());
                    return Some(w);
                }
            }
            Event::InitDone => {
                self.deployments = self.listing_deployments.take().unwrap_or_default();
                self.deployments_synced = true;
            }
            Event::Apply(d) => {
                if let (Some(k), Some(w)) = (key(&d), workload(d, None)) {
                    self.deployments.insert(k, w.clone());
                    return Some(w);
                }
            }
            Event::Delete(d) => {
                if let Some(k) = key(&d) {
                    self.deployments.remove(&k);
                }
            }
        }
        None
    }

    /// Takes in a watch event; returns the HPA it applied, if any.
    fn hpa_event(&mut self, event: Event<HorizontalPodAutoscaler>) -> Option<Hpa> {
        let key = |h: &HorizontalPodAutoscaler| Some((h.metadata.namespace.clone()?, h.metadata.name.clone()?));
        match event {
            Event::Init => self.listing_hpas = Some(HashMap::new()),
            Event::InitApply(h) => {
                if let (Some(k), Some(t)) = (key(&h), hpa_target(h)) {
                    self.listing_hpas.get_or_insert_default().insert(k, t.clone());
                    return Some(t);
                }
            }
            Event::InitDone => {
                self.hpas = self.listing_hpas.take().unwrap_or_default();
                self.hpas_synced = true;
            }
            Event::Apply(h) => {
                let k = key(&h);
                match (k, hpa_target(h)) {
                    (Some(k), Some(t)) => {
                        self.hpas.insert(k, t.clone());
                        return Some(t);
                    }
                    (Some(k), None) => {
                        self.hpas.remove(&k);
                    }
                    _ => {}
                }
            }
            Event::Delete(h) => {
                if let Some(k) = key(&h) {
                    self.hpas.remove(&k);
                }
            }
        }
        None
    }

    /// Every Deployment with the largest maximum of the HPAs that target it.
    fn workloads(&self) -> Vec<Workload> {
        let mut hpa_of: HashMap<&Key, &(String, i32)> = HashMap::new();
        for (target, hpa) in self.hpas.values() {
            if hpa_of.get(target).is_none_or(|known| hpa.1 > known.1) {
                hpa_of.insert(target, hpa);
            }
        }
        self.deployments
            .iter()
            .map(|(key, w)| Workload { hpa: hpa_of.get(key).map(|h| (*h).clone()), ..w.clone() })
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
    pub ready: Arc<AtomicBool>,
    /// The daily usage records, when on.
    pub usage: Option<UsageLog>,
}

/// Runs the continuous audit until the future is dropped.
pub async fn run(audit: Audit) {
    let Audit { client, limits, policy, events, metrics, interval, ready, mut usage } = audit;
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
    let mut previous: HashMap<Key, Status> = HashMap::new();
    let mut reports: HashMap<String, serde_json::Value> = HashMap::new();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            Some(event) = deployments.next() => match event {
                Ok(event) => {
                    // Every change counts for the day's highs, not only what a pass sees.
                    if let (Some(w), Some(usage)) = (known.deployment_event(event), usage.as_mut()) {
                        usage.deployment(&w);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "Deployment watch failed; retrying"),
            },
            Some(event) = hpas.next() => match event {
                Ok(event) => {
                    if let (Some(((ns, deployment), (_, max))), Some(usage)) = (known.hpa_event(event), usage.as_mut()) {
                        usage.hpa(&ns, &deployment, max);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "HPA watch failed; retrying"),
            },
            _ = ticker.tick() => {
                if !(known.deployments_synced && known.hpas_synced && limits.is_ready()) {
                    continue;
                }
                let first = !ready.load(Ordering::Acquire);
                let workloads = known.workloads();
                if let Some(usage) = usage.as_mut() {
                    usage.pass(&workloads);
                }
                let judged;
                (previous, judged) = evaluate(workloads, limits.as_ref(), &policy, events.as_ref(), &metrics, previous, first).await;
                ready.store(true, Ordering::Release);
                if let Some(usage) = usage.as_mut() {
                    for j in &judged {
                        usage.registered(&j.workload.namespace, &j.workload.deployment, j.limit.as_ref());
                    }
                    usage.save().await;
                }
                // PolicyReports only where their CRD is installed (asked every pass: it may come later).
                if policy_report::crd_installed(&report_client).await {
                    reports = policy_report::write(&report_client, policy_report::reports(&judged), reports).await;
                }
            }
        }
    }
}

/// One pass: judge every workload, publish the gauges, announce transitions (not on the first
/// pass, which only learns where everything stands).
async fn evaluate(
    workloads: Vec<Workload>,
    limits: &dyn LimitSource,
    policy: &Policy,
    events: Option<&EventQueue>,
    metrics: &Metrics,
    previous: HashMap<Key, Status>,
    first: bool,
) -> (HashMap<Key, Status>, Vec<status::Judged>) {
    let mut statuses = HashMap::with_capacity(workloads.len());
    let mut all = Vec::with_capacity(workloads.len());
    let mut gauges = Vec::with_capacity(workloads.len());
    for w in workloads {
        let lookup = limits.lookup(&w.namespace, &w.deployment).await;
        let Some(judged) = status::judge(w, lookup, policy) else { continue };
        let w = &judged.workload;
        let key = (w.namespace.clone(), w.deployment.clone());
        let was_over = previous.get(&key).is_some_and(|s| s.is_over());
        let now_over = judged.status.is_over();
        if !first
            && was_over != now_over
            && let Some(queue) = events
        {
            queue.offer(transition(&judged, now_over));
        }
        gauges.push((w.namespace.clone(), w.deployment.clone(), w.replicas, w.hpa.as_ref().map(|h| h.1), now_over));
        statuses.insert(key, judged.status);
        all.push(judged);
    }
    let over = gauges.iter().filter(|g| g.4).count();
    metrics.publish_workloads(Box::new(Gauges(gauges)), statuses.len(), over);
    (statuses, all)
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
