//! `watch`'s usage records, end to end: feeds the day (`usage::Day`) from the watch,
//! rolls it over at the first audit pass after UTC midnight, prints the finished day's lines to
//! stdout (where the log sink picks them up by `"log": "replica-guard-usage"`), and keeps the day
//! in its ConfigMaps (`usage_state`) so a restart loses nothing. A restart after midnight prints
//! the saved day on start. Every line names the cluster (`cluster.name`). Delivery is at least once: a crash between printing a day and saving
//! the next prints it again, so the README's queries take the highest per (date, namespace,
//! deployment).

use super::day::{Day, today};
use super::state::{StateError, StateStore};
use crate::cluster::pricing::Pricing;
use crate::cluster::status::RunningWorkload;
use crate::cluster::view::{Change, Pass, Subscriber};
use crate::decision::policy::Policy;
use crate::decision::{Limit, WorkloadKey};
use crate::json_lines::JsonLines;
use crate::limits::BoxFuture;
use crate::part::Unfinished;

pub struct UsageLog {
    cluster: String,
    day: Day,
    /// The workloads the saved state said were announced over their limits (None: no saved
    /// state): what the first audit pass after a restart compares with.
    restored_over: Option<std::collections::HashSet<crate::decision::WorkloadKey>>,
    state: Option<StateStore>,
    out: JsonLines,
    pricing: Option<Pricing>,
    policy: Policy,
}

impl UsageLog {
    /// Starts today's records, from the saved state when there is one.
    pub async fn start(
        cluster: String,
        mut state: Option<StateStore>,
        out: JsonLines,
        pricing: Option<Pricing>,
        policy: Policy,
    ) -> Self {
        let saved = match state.as_mut() {
            Some(store) => store.load().await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "usage records: the saved day could not be read");
                vec![]
            }),
            None => {
                tracing::warn!("usage records without audit.usage.state: a restart loses the highs of the day so far");
                vec![]
            }
        };
        let restored_over = saved.last().map(Day::announced_over);
        let mut log = Self { cluster, day: Day::new(today()), restored_over, state, out, pricing, policy };
        for saved in saved {
            if saved.date == log.day.date {
                log.day.merge(saved);
            } else if saved.date < log.day.date {
                tracing::info!(date = %saved.date, "usage records: printing the saved day (restarted after midnight)");
                log.print(&saved);
            }
        }
        log
    }

    /// The workloads announced over their limits before this process started (from the saved
    /// day), once; None when nothing was saved.
    pub fn take_restored_over(&mut self) -> Option<std::collections::HashSet<crate::decision::WorkloadKey>> {
        self.restored_over.take()
    }

    /// After an audit pass: the workloads now announced over their limits, saved with the day.
    pub fn announced_over(&mut self, over: &std::collections::HashSet<crate::decision::WorkloadKey>) {
        self.day.set_announced_over(over);
    }

    pub fn deployment(&mut self, w: &RunningWorkload) {
        self.day.observe_deployment(&w.namespace, &w.deployment, w.replicas, w.cpu_requests, w.memory_requests_gib);
    }

    /// An HPA's maxReplicas, for a Deployment already counted today (an HPA whose Deployment
    /// does not exist makes no record; the next pass counts one listed before its Deployment).
    pub fn hpa(&mut self, namespace: &str, deployment: &str, max: i32) {
        if self.day.highs.contains_key(&crate::decision::WorkloadKey::new(namespace, deployment)) {
            self.day.observe_hpa(namespace, deployment, max);
        }
    }

    /// What an audit pass found in the registry for a Deployment, and at which revision.
    pub fn registered(
        &mut self,
        namespace: &str,
        deployment: &str,
        limit: Option<&Limit>,
        revision: Option<std::sync::Arc<str>>,
    ) {
        let owner = limit.and_then(|l| l.owner.as_deref());
        self.day.observe_registered(namespace, deployment, limit.map(|l| l.max_replicas), owner, revision);
    }

    /// Every audit pass: at the first pass of a new UTC day prints the finished day; then
    /// counts what runs now (so the new day starts with it, and an HPA listed before its
    /// Deployment counts too).
    pub fn pass(&mut self, running: &[RunningWorkload]) {
        if let Some(finished) = self.day.roll(today()) {
            self.print(&finished);
        }
        for w in running {
            self.deployment(w);
            if let Some((_, max)) = &w.hpa {
                self.day.observe_hpa(&w.namespace, &w.deployment, *max);
            }
        }
    }

    fn print(&self, day: &Day) {
        let records = write_day(day, &self.cluster, self.pricing.as_ref(), &self.policy, &self.out);
        tracing::info!(date = %day.date, records, "usage records printed");
    }

    /// Saves the day when something changed since the last save.
    pub async fn save(&mut self) -> Result<(), StateError> {
        let Some(store) = self.state.as_mut() else { return Ok(()) };
        if !self.day.dirty {
            return Ok(());
        }
        store.save(&self.day).await?;
        self.day.dirty = false;
        Ok(())
    }

    /// After a pass: what the registry said of each judged workload, who is over their limits
    /// now (saved with the day: the next `watch` announces relative to it), and the day saved.
    async fn after_pass(&mut self, pass: &Pass<'_>) {
        self.pass(pass.running);
        let over = pass
            .judged
            .iter()
            .filter(|j| j.status.is_over())
            .map(|j| WorkloadKey::new(&j.workload.namespace, &j.workload.deployment))
            .collect();
        self.announced_over(&over);
        for j in pass.judged {
            let (namespace, deployment) = (&j.workload.namespace, &j.workload.deployment);
            let revision = pass.limits.revision(namespace, deployment).await;
            self.registered(namespace, deployment, j.limit.as_ref(), revision);
        }
        if let Err(e) = self.save().await {
            tracing::warn!(error = %e, "usage records: the day could not be saved; the next pass tries again");
        }
    }
}

impl Subscriber for UsageLog {
    fn name(&self) -> &'static str {
        "usage records"
    }

    fn changed(&mut self, change: Change<'_>) {
        match change {
            Change::Deployment(w) => self.deployment(w),
            Change::Hpa { target, max_replicas } => self.hpa(&target.namespace, &target.deployment, max_replicas),
        }
    }

    fn pass<'a>(&'a mut self, pass: &'a Pass<'a>) -> BoxFuture<'a, ()> {
        Box::pin(self.after_pass(pass))
    }

    /// The day as it stands (the highs seen since the last pass included) is saved.
    fn stop(&mut self) -> BoxFuture<'_, Result<(), Unfinished>> {
        Box::pin(async move {
            self.save().await.map_err(|e| format!("the day's usage could not be saved: {e}"))?;
            tracing::info!("usage records: the day is saved");
            Ok(())
        })
    }
}

/// Writes `day`'s usage lines to `out` (none for namespaces the policy exempts); returns how many.
pub fn write_day(day: &Day, cluster: &str, pricing: Option<&Pricing>, policy: &Policy, out: &JsonLines) -> usize {
    let records = day.records(cluster, pricing, |ns| policy.exemption(ns, "", &[]).is_none());
    for record in &records {
        out.write(record);
    }
    records.len()
}
