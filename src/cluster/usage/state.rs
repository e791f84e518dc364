//! Where the day's usage survives a restart: ConfigMaps (`audit.usage.state`) holding the day and
//! every Deployment's highs so far. A ConfigMap rather than deriving the day again from the
//! watch: after a restart the watch only knows what runs now, not the 6 replicas of this morning.
//! Rather than a Lease: a ConfigMap is readable by `kubectl get` when someone asks why a record
//! says what it says.
//!
//! Sharded, because one ConfigMap holds 1 MiB (some 15,000 Deployments): the Deployments are
//! spread by a stable hash of their name over `<name>`, `<name>-1` … `<name>-{N-1}`, N chosen so
//! that each holds about `TARGET_SHARD_BYTES`; `<name>` also says how many there are. A save
//! writes only the shards whose content changed since the last write (so a pass in which one
//! Deployment scaled writes one shard), and at most once per audit pass. The layout only grows
//! during a day (no reshuffling back and forth) and is chosen afresh with each new day.

use super::day::{Day, High};
use crate::decision::WorkloadKey;
use crate::metrics::Metrics;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// What one shard is filled to: small enough that a changed Deployment rewrites little, large
/// enough that 50,000 Deployments need about a dozen objects.
pub const TARGET_SHARD_BYTES: usize = 256 * 1024;
/// A ConfigMap holds at most 1 MiB (keys and metadata included); a shard stays below this.
const MAX_SHARD_BYTES: usize = 900 * 1024;
/// Shards at most (the chart's Role names each of them): some 900,000 Deployments.
pub const MAX_SHARDS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read ConfigMap {namespace}/{name}: {error}")]
    Read { namespace: String, name: String, error: crate::words::KubeError },
    #[error("cannot write ConfigMap {namespace}/{name}: {error}")]
    Write { namespace: String, name: String, error: crate::words::KubeError },
    #[error("ConfigMap {namespace}/{name} does not hold a usage day ({why}); starting the day afresh")]
    Unreadable { namespace: String, name: String, why: String },
    #[error(
        "the day's usage of {workloads} Deployments is {bytes} bytes, more than {MAX_SHARDS} ConfigMaps hold; not saved"
    )]
    TooLarge { workloads: usize, bytes: usize },
}

/// One Deployment's highs, compact: [namespace, deployment, replicas, hpaMax, cpu, memoryGiB,
/// registered, owner, announcedOver] (the last two may be missing: older states). The registry
/// revision is not saved: it moves with every sync, and a row that changed with it would make a
/// save rewrite every shard instead of the one whose Deployment changed.
#[derive(Serialize, Deserialize)]
struct Row(
    String,
    String,
    i32,
    Option<i32>,
    f64,
    f64,
    Option<i32>,
    #[serde(default)] Option<String>,
    #[serde(default)] bool,
);

/// The name of shard `index` of the state named `name`.
pub fn shard_name(name: &str, index: usize) -> String {
    if index == 0 { name.to_string() } else { format!("{name}-{index}") }
}

/// FNV-1a of the Deployment's key: stable across builds and restarts, so a Deployment stays in
/// its shard and an unchanged shard is not rewritten after a restart.
fn placement(key: &WorkloadKey) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.namespace.bytes().chain([b'/']).chain(key.deployment.bytes()) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

fn content_hash(data: &BTreeMap<&str, String>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut h);
    h.finish()
}

/// The shards' contents for `day`: the `data` of each ConfigMap, index 0 first.
fn layout(day: &Day, mut shards: usize) -> Result<Vec<BTreeMap<&'static str, String>>, StateError> {
    let rows: Vec<(u64, String)> = day
        .highs
        .iter()
        .map(|(key, h)| {
            let row = Row(
                key.namespace.clone(),
                key.deployment.clone(),
                h.replicas,
                h.hpa_max,
                h.cpu,
                h.memory_gib,
                h.registered,
                h.owner.clone(),
                h.announced_over,
            );
            (placement(key), serde_json::to_string(&row).unwrap_or_default())
        })
        .collect();
    let total: usize = rows.iter().map(|(_, r)| r.len() + 1).sum();
    shards = shards.max(total.div_ceil(TARGET_SHARD_BYTES)).clamp(1, MAX_SHARDS);
    loop {
        let mut buckets = vec![String::from("["); shards];
        for (hash, row) in &rows {
            let bucket = &mut buckets[(*hash % shards as u64) as usize];
            if bucket.len() > 1 {
                bucket.push(',');
            }
            bucket.push_str(row);
        }
        let largest = buckets.iter().map(String::len).max().unwrap_or(0);
        if largest > MAX_SHARD_BYTES {
            if shards == MAX_SHARDS {
                return Err(StateError::TooLarge { workloads: rows.len(), bytes: total });
            }
            shards = (shards * 2).min(MAX_SHARDS);
            continue;
        }
        let count = shards.to_string();
        return Ok(buckets
            .into_iter()
            .enumerate()
            .map(|(i, mut workloads)| {
                workloads.push(']');
                let mut data = BTreeMap::from([("date", day.date.to_string()), ("workloads", workloads)]);
                if i == 0 {
                    data.insert("shards", count.clone());
                }
                data
            })
            .collect());
    }
}

pub struct StateStore {
    api: Api<ConfigMap>,
    namespace: String,
    name: String,
    metrics: Arc<Metrics>,
    /// The content last written (or read) of each shard, by index; its length is the layout.
    written: Vec<Option<u64>>,
    /// The day the layout was chosen for.
    layout_date: Option<jiff::civil::Date>,
}

impl StateStore {
    pub fn new(client: kube::Client, namespace: &str, name: &str, metrics: Arc<Metrics>) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.into(),
            name: name.into(),
            metrics,
            written: vec![],
            layout_date: None,
        }
    }

    fn read_error(&self, name: &str, e: kube::Error) -> StateError {
        StateError::Read { namespace: self.namespace.clone(), name: name.into(), error: e.into() }
    }

    /// The saved days (usually one; shards whose last write failed may hold an older one), oldest first.
    pub async fn load(&mut self) -> Result<Vec<Day>, StateError> {
        let Some(first) = self.api.get_opt(&self.name).await.map_err(|e| self.read_error(&self.name, e))? else {
            return Ok(vec![]);
        };
        let unreadable = |name: &str, why: String| StateError::Unreadable {
            namespace: self.namespace.clone(),
            name: name.to_string(),
            why,
        };
        let shards = match first.data.as_ref().and_then(|d| d.get("shards")) {
            None => 1,
            Some(n) => n
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_SHARDS).contains(n))
                .ok_or_else(|| unreadable(&self.name, format!("shards {n:?}")))?,
        };
        let mut days: BTreeMap<jiff::civil::Date, Day> = BTreeMap::new();
        self.written = vec![None; shards];
        for index in 0..shards {
            let name = shard_name(&self.name, index);
            let found = if index == 0 {
                Some(first.clone())
            } else {
                self.api.get_opt(&name).await.map_err(|e| self.read_error(&name, e))?
            };
            let Some(data) = found.and_then(|cm| cm.data) else {
                tracing::warn!(shard = %name, "usage records: a shard of the saved day is missing; its highs are lost");
                continue;
            };
            let date = data.get("date").ok_or_else(|| unreadable(&name, "no date".into()))?;
            let date: jiff::civil::Date = date.parse().map_err(|e| unreadable(&name, format!("date {date:?}: {e}")))?;
            let rows: Vec<Row> = serde_json::from_str(data.get("workloads").map_or("[]", String::as_str))
                .map_err(|e| unreadable(&name, format!("workloads: {e}")))?;
            let as_read: BTreeMap<&str, String> = data
                .iter()
                .filter(|(k, _)| ["date", "workloads", "shards"].contains(&k.as_str()))
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            self.written[index] = Some(content_hash(&as_read));
            let day = days.entry(date).or_insert_with(|| Day::new(date));
            for Row(namespace, deployment, replicas, hpa_max, cpu, memory_gib, registered, owner, announced_over) in
                rows
            {
                let high =
                    High { replicas, hpa_max, cpu, memory_gib, registered, owner, revision: None, announced_over };
                day.highs.insert(WorkloadKey { namespace, deployment }, high);
            }
        }
        self.layout_date = days.keys().next_back().copied();
        Ok(days
            .into_values()
            .map(|mut d| {
                d.dirty = false;
                d
            })
            .collect())
    }

    /// Saves the day: every shard whose content changed, the first last (it names the layout),
    /// then removes shards a smaller layout no longer uses. A shard that failed is retried at
    /// the next save; the error is the first failure.
    pub async fn save(&mut self, day: &Day) -> Result<(), StateError> {
        let keep = if self.layout_date == Some(day.date) { self.written.len() } else { 1 };
        let shards = layout(day, keep)?;
        let total: usize = shards.iter().map(|d| d["workloads"].len()).sum();
        let before = std::mem::take(&mut self.written);
        self.written = (0..shards.len()).map(|i| before.get(i).copied().flatten()).collect();
        self.layout_date = Some(day.date);
        let (mut written, mut bytes, mut failed, mut deleted) = (0, 0, 0, 0);
        let mut first_error = None;
        for index in (1..shards.len()).chain([0]) {
            let data = &shards[index];
            let hash = content_hash(data);
            if self.written[index] == Some(hash) {
                continue;
            }
            match self.write(&shard_name(&self.name, index), data).await {
                Ok(()) => {
                    self.written[index] = Some(hash);
                    written += 1;
                    bytes += data.values().map(String::len).sum::<usize>();
                }
                Err(e) => {
                    self.written[index] = None;
                    failed += 1;
                    first_error.get_or_insert(e);
                }
            }
        }
        for index in shards.len()..before.len() {
            let name = shard_name(&self.name, index);
            match self.api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => deleted += 1,
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    tracing::warn!(shard = %name, error = %crate::words::KubeError::from(e), "usage records: an unused shard could not be removed (it is not read)")
                }
            }
        }
        self.metrics.audit.usage_saved(written, bytes, deleted, failed, shards.len(), total);
        first_error.map_or(Ok(()), Err)
    }

    /// One shard: a merge patch of its data, or a create the first time.
    async fn write(&self, name: &str, data: &BTreeMap<&str, String>) -> Result<(), StateError> {
        let error = |e: kube::Error| StateError::Write {
            namespace: self.namespace.clone(),
            name: name.to_string(),
            error: e.into(),
        };
        let patch = Patch::Merge(serde_json::json!({"data": data}));
        match self.api.patch(name, &PatchParams::default(), &patch).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => {
                let cm: ConfigMap = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": name, "namespace": self.namespace,
                                 "labels": {"app.kubernetes.io/managed-by": "replica-guard",
                                            "replica-guard.io/usage-state": self.name}},
                    "data": data,
                }))
                .unwrap_or_default();
                self.api.create(&PostParams::default(), &cm).await.map(|_| ()).map_err(error)
            }
            Err(e) => Err(error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn day_of(count: usize, name_len: usize) -> Day {
        let mut day = Day::new(date(2026, 12, 2));
        for i in 0..count {
            let name = format!("{i:0>width$}", width = name_len);
            day.observe_deployment(&format!("team-{}", i % 50), &name, 2, 0.5, 1.0);
        }
        day
    }

    fn rows_in(shards: &[BTreeMap<&str, String>]) -> usize {
        shards.iter().map(|d| serde_json::from_str::<Vec<serde_json::Value>>(&d["workloads"]).unwrap().len()).sum()
    }

    #[test]
    fn a_small_day_is_one_configmap_as_before() {
        let shards = layout(&day_of(1_000, 8), 1).unwrap();
        assert_eq!(shards.len(), 1);
        assert_eq!(shards[0]["shards"], "1");
        assert_eq!(rows_in(&shards), 1_000);
    }

    #[test]
    fn fifty_thousand_deployments_spread_below_the_configmap_limit() {
        let shards = layout(&day_of(50_000, 20), 1).unwrap();
        assert!(shards.len() > 1 && shards.len() <= MAX_SHARDS, "{} shards", shards.len());
        assert!(shards.iter().all(|d| d["workloads"].len() < MAX_SHARD_BYTES), "every shard fits in a ConfigMap");
        assert!(shards[1..].iter().all(|d| !d.contains_key("shards")), "only the first names the layout");
        assert_eq!(shards[0]["shards"], shards.len().to_string());
        assert_eq!(rows_in(&shards), 50_000, "every Deployment in exactly one shard");
    }

    #[test]
    fn one_changed_deployment_changes_one_shard() {
        let mut day = day_of(20_000, 20);
        let before = layout(&day, 1).unwrap();
        day.observe_deployment("team-7", &format!("{:0>20}", 7), 9, 0.5, 1.0);
        let after = layout(&day, before.len()).unwrap();
        assert_eq!(before.len(), after.len());
        let changed = before.iter().zip(&after).filter(|(a, b)| content_hash(a) != content_hash(b)).count();
        assert_eq!(changed, 1);
    }

    #[test]
    fn a_day_too_large_for_every_shard_is_refused_not_truncated() {
        let day = day_of(MAX_SHARDS * 4_000, 240);
        assert!(matches!(layout(&day, 1), Err(StateError::TooLarge { .. })));
    }
}
