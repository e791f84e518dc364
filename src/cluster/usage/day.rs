//! Daily usage records: one JSON line per Deployment per UTC day (`"log": "replica-guard-usage"`),
//! with the highest `spec.replicas` and HPA `maxReplicas` seen that day — the table the original
//! daily job was meant to fill, exact instead of sampled, because every change the watch sees
//! counts, not one count a day.
//!
//! Pure: `Day` keeps the highs of one UTC day; `watch` feeds it every watch event,
//! rolls it over at midnight and prints the finished day's records (`watch.rs`); `usage_state.rs`
//! keeps the day in a ConfigMap so a restart does not lose it.

use crate::cluster::pricing::Pricing;
use crate::decision::WorkloadKey;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The UTC day of now.
pub fn today() -> Date {
    jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date()
}

/// The highs of one Deployment on one day.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct High {
    pub replicas: i32,
    pub hpa_max: Option<i32>,
    /// The pod's summed requests (the highest of the day, like replicas).
    pub cpu: f64,
    pub memory_gib: f64,
    /// The registered maximum the last audit pass of the day found (None: unregistered, or
    /// not judged yet).
    pub registered: Option<i32>,
    /// The registry entry's owner (the team billed), from the same pass.
    pub owner: Option<String>,
    /// The registry revision that pass read (`limits::store::Revision`). Kept in memory only: it
    /// moves with every sync, and saving it would make every save rewrite every shard; after a
    /// restart the next pass names it again.
    pub revision: Option<std::sync::Arc<str>>,
    /// Announced as over its limit (an Event) and not announced back within since: saved with
    /// the day, so the next `watch` after a restart neither repeats nor misses an announcement.
    pub announced_over: bool,
}

impl High {
    fn raise(&mut self, other: &High) {
        self.replicas = self.replicas.max(other.replicas);
        self.hpa_max = self.hpa_max.max(other.hpa_max);
        self.cpu = self.cpu.max(other.cpu);
        self.memory_gib = self.memory_gib.max(other.memory_gib);
        self.registered = other.registered.or(self.registered);
        if other.owner.is_some() {
            self.owner.clone_from(&other.owner);
        }
        if other.revision.is_some() {
            self.revision.clone_from(&other.revision);
        }
    }
}

/// One day's highs by (namespace, deployment).
#[derive(Debug, Clone, PartialEq)]
pub struct Day {
    pub date: Date,
    pub highs: BTreeMap<WorkloadKey, High>,
    /// Changed since the state was last saved.
    pub dirty: bool,
}

impl Day {
    pub fn new(date: Date) -> Self {
        Self { date, highs: BTreeMap::new(), dirty: true }
    }

    fn entry(&mut self, namespace: &str, deployment: &str) -> &mut High {
        self.highs.entry(WorkloadKey::new(namespace, deployment)).or_default()
    }

    /// A Deployment as the watch sees it now: replicas and requests.
    pub fn observe_deployment(&mut self, namespace: &str, deployment: &str, replicas: i32, cpu: f64, memory_gib: f64) {
        let seen = High { replicas, cpu, memory_gib, ..High::default() };
        self.observe(namespace, deployment, &seen);
    }

    /// An HPA's maxReplicas, on the Deployment it scales.
    pub fn observe_hpa(&mut self, namespace: &str, deployment: &str, max: i32) {
        self.observe(namespace, deployment, &High { hpa_max: Some(max), ..High::default() });
    }

    /// The registered maximum and owner an audit pass found for a Deployment.
    pub fn observe_registered(
        &mut self,
        namespace: &str,
        deployment: &str,
        registered: Option<i32>,
        owner: Option<&str>,
        revision: Option<std::sync::Arc<str>>,
    ) {
        let high = self.entry(namespace, deployment);
        high.revision = revision;
        if high.registered != registered || high.owner.as_deref() != owner {
            high.registered = registered;
            high.owner = owner.map(str::to_string);
            self.dirty = true;
        }
    }

    fn observe(&mut self, namespace: &str, deployment: &str, seen: &High) {
        let high = self.entry(namespace, deployment);
        let before = high.clone();
        high.raise(seen);
        if *high != before {
            self.dirty = true;
        }
    }

    /// Adds what another record of the same day saw (the state saved before a restart).
    pub fn merge(&mut self, other: Day) {
        for (key, high) in other.highs {
            self.observe(&key.namespace, &key.deployment, &high);
            if high.announced_over {
                self.entry(&key.namespace, &key.deployment).announced_over = true;
            }
        }
    }

    /// The workloads announced as over their limits.
    pub fn announced_over(&self) -> std::collections::HashSet<WorkloadKey> {
        self.highs.iter().filter(|(_, h)| h.announced_over).map(|(k, _)| k.clone()).collect()
    }

    /// After an audit pass: which workloads now stand announced as over their limits.
    pub fn set_announced_over(&mut self, over: &std::collections::HashSet<WorkloadKey>) {
        for (key, high) in &mut self.highs {
            let now = over.contains(key);
            if high.announced_over != now {
                high.announced_over = now;
                self.dirty = true;
            }
        }
    }

    /// At a new UTC day: the finished day, with this one starting empty on `today` (the caller
    /// seeds it with what runs now). None while the day lasts.
    pub fn roll(&mut self, today: Date) -> Option<Day> {
        (today > self.date).then(|| std::mem::replace(self, Day::new(today)))
    }

    /// The day's records of cluster `cluster`, sorted by namespace and name, leaving out
    /// namespaces `keep` refuses (the policy's exemptions).
    pub fn records(&self, cluster: &str, pricing: Option<&Pricing>, keep: impl Fn(&str) -> bool) -> Vec<UsageRecord> {
        let days = f64::from(self.date.days_in_month());
        let per_day = |h: &High, max: i32| pricing.map(|p| round(p.monthly(h.cpu, h.memory_gib, max) / days));
        self.highs
            .iter()
            .filter(|(key, _)| keep(&key.namespace))
            .map(|(key, h)| UsageRecord {
                log: "replica-guard-usage",
                date: self.date.to_string(),
                cluster: cluster.to_string(),
                namespace: key.namespace.clone(),
                deployment: key.deployment.clone(),
                owner: h.owner.clone(),
                registered_max_replicas: h.registered,
                registry_revision: h.revision.as_deref().map(str::to_string),
                max_replicas_seen: h.replicas,
                hpa_max_replicas_seen: h.hpa_max,
                cpu_requests: h.cpu,
                memory_requests_gib: round(h.memory_gib),
                day_cost: h.registered.and_then(|max| per_day(h, max)),
                day_cost_at_max_seen: per_day(h, h.replicas.max(h.registered.unwrap_or(0))),
            })
            .collect()
    }
}

/// Four decimals: a month of daily costs adds up to the monthly figure within a cent.
fn round(value: f64) -> f64 {
    (value * 10_000.0).round() / 10_000.0
}

/// One line of the usage log. The field set is fixed (absent values are `null`); the README
/// documents it, and a log sink's BigQuery table has these columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageRecord {
    pub log: &'static str,
    /// The UTC day, `YYYY-MM-DD`.
    pub date: String,
    /// `cluster.name`: which cluster ran it (one table holds every cluster's lines).
    pub cluster: String,
    pub namespace: String,
    pub deployment: String,
    /// The registry entry's owner, the team that is billed (null when the entry names none).
    pub owner: Option<String>,
    pub registered_max_replicas: Option<i32>,
    /// The registry revision the day's last audit pass read the entry from (null: not judged
    /// since the process started).
    pub registry_revision: Option<String>,
    /// The highest `spec.replicas` of the day.
    pub max_replicas_seen: i32,
    /// The highest `maxReplicas` of an HPA scaling it that day.
    pub hpa_max_replicas_seen: Option<i32>,
    /// The pod's summed requests: cores and GiB.
    pub cpu_requests: f64,
    pub memory_requests_gib: f64,
    /// The day's share of the monthly cost at the registered maximum (what the platform bills).
    pub day_cost: Option<f64>,
    /// The same at the highest replicas seen, when above the registered maximum: the cost of
    /// what actually ran.
    pub day_cost_at_max_seen: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    const PRICING: Pricing = Pricing { base: 180.0, per_vcpu: 19.0, per_gib: 19.0, divisor: 4.0 };

    #[test]
    fn a_day_of_3_then_6_then_4_says_6() {
        let mut day = Day::new(date(2026, 11, 21));
        for replicas in [3, 6, 4] {
            day.observe_deployment("team-a", "api", replicas, 2.0, 4.0);
        }
        day.observe_registered(
            "team-a",
            "api",
            Some(4),
            Some("team-a@example.com"),
            Some("firestore@2026-11-21T10:00:00Z".into()),
        );
        assert_eq!(day.roll(date(2026, 11, 21)), None, "the day is not over");
        let finished = day.roll(date(2026, 11, 22)).expect("midnight ends the day");
        assert_eq!(day.date, date(2026, 11, 22));
        assert!(day.highs.is_empty(), "the new day starts empty; the caller seeds what runs now");
        let records = finished.records("prod-eu-1", Some(&PRICING), |_| true);
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!((r.date.as_str(), r.max_replicas_seen, r.registered_max_replicas), ("2026-11-21", 6, Some(4)));
        assert_eq!(r.owner.as_deref(), Some("team-a@example.com"));
        assert_eq!(r.cluster, "prod-eu-1", "one billing table holds many clusters' lines");
        // November has 30 days: 294 / 30 and 351 / 30.
        assert_eq!(r.day_cost, Some(9.8));
        assert_eq!(r.day_cost_at_max_seen, Some(11.7));
    }

    #[test]
    fn the_highest_hpa_max_and_requests_count() {
        let mut day = Day::new(date(2026, 2, 1));
        day.observe_hpa("team-a", "api", 10);
        day.observe_hpa("team-a", "api", 5);
        day.observe_deployment("team-a", "api", 2, 0.5, 1.0);
        day.observe_deployment("team-a", "api", 2, 1.0, 0.5);
        let r = &day.records("prod-eu-1", None, |_| true)[0];
        assert_eq!((r.hpa_max_replicas_seen, r.cpu_requests, r.memory_requests_gib), (Some(10), 1.0, 1.0));
        assert_eq!((r.day_cost, r.day_cost_at_max_seen), (None, None), "no pricing, no cost");
    }

    #[test]
    fn unregistered_workloads_have_no_billed_cost_but_a_cost_of_what_ran() {
        let mut day = Day::new(date(2026, 2, 1));
        day.observe_deployment("team-a", "legacy", 4, 2.0, 4.0);
        let r = &day.records("prod-eu-1", Some(&PRICING), |_| true)[0];
        assert_eq!(r.day_cost, None);
        assert_eq!(r.day_cost_at_max_seen, Some(10.5), "294 over February's 28 days");
    }

    #[test]
    fn a_restart_merges_the_saved_day_and_exempt_namespaces_are_left_out() {
        let mut saved = Day::new(date(2026, 11, 21));
        saved.observe_deployment("team-a", "api", 6, 2.0, 4.0);
        let mut day = Day::new(date(2026, 11, 21));
        day.observe_deployment("team-a", "api", 4, 2.0, 4.0);
        day.observe_deployment("kube-system", "dns", 2, 0.1, 0.1);
        day.merge(saved);
        let records = day.records("prod-eu-1", None, |ns| ns != "kube-system");
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].max_replicas_seen, 6);
    }

    #[test]
    fn only_changes_make_the_day_dirty() {
        let mut day = Day::new(date(2026, 11, 21));
        day.observe_deployment("team-a", "api", 3, 2.0, 4.0);
        day.dirty = false;
        day.observe_deployment("team-a", "api", 2, 2.0, 4.0);
        day.observe_registered("team-a", "api", None, None, None);
        assert!(!day.dirty, "nothing new");
        day.observe_deployment("team-a", "api", 5, 2.0, 4.0);
        assert!(day.dirty);
    }
}
