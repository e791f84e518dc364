//! The registry: its loads and syncs (and why one failed), its lookups, the current snapshot's
//! size, and the cache in front of a remote registry.

use super::family::{Exposition, counter, gauge, histogram, register};
use super::labels::{LookupResult, SourceKind};
use arc_swap::ArcSwapOption;
use prometheus::{Gauge, HistogramVec, IntCounter, IntCounterVec, IntGauge, Registry};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Families {
    /// Rendered at scrape time (see `Exposition`).
    view: ArcSwapOption<Box<dyn Exposition>>,
    entries: IntGauge,
    out_of_bounds: IntGauge,
    reloads: IntCounterVec,
    failures: IntCounterVec,
    last_success: Gauge,
    lookups: IntCounterVec,
    lookup_duration: HistogramVec,
    cache_entries: IntGauge,
    rereads: IntCounterVec,
    revision_age: Gauge,
    /// When the revision in use was read, in Unix milliseconds (0: none yet); the age is worked
    /// out from it at scrape time.
    revision_read_at: AtomicU64,
}

impl Families {
    /// The view's samples, if one was published.
    pub(super) fn render_view(&self, out: &mut String) {
        if let Some(view) = self.view.load_full() {
            view.render(out);
        }
    }

    pub(super) fn new(r: &Registry) -> Self {
        Self {
            view: ArcSwapOption::empty(),
            entries: gauge(r, "replica_guard_registry_entries", "Entries in the current registry snapshot."),
            out_of_bounds: gauge(
                r,
                "replica_guard_registry_out_of_bounds_entries",
                "Registry entries whose maxReplicas is outside the platform bounds.",
            ),
            reloads: counter(
                r,
                "replica_guard_registry_reloads_total",
                "Registry loads, by source and result (success, error, held-back by the shrink guard); on error or held-back the last good snapshot stays.",
                &["source", "result"],
            ),
            failures: counter(
                r,
                "replica_guard_registry_reload_failures_total",
                "Failed registry loads and syncs, by source and reason (timeout, transport, status, too-large, auth, decode, entry, duplicate, too-many, missing).",
                &["source", "reason"],
            ),
            last_success: register(
                r,
                Gauge::new(
                    "replica_guard_registry_last_success_timestamp_seconds",
                    "Unix time of the last successful registry load.",
                ),
            ),
            lookups: counter(
                r,
                "replica_guard_registry_lookups_total",
                "Registry lookups by source and result (hit, miss, negative, stale, error).",
                &["source", "result"],
            ),
            lookup_duration: histogram(
                r,
                "replica_guard_registry_lookup_duration_seconds",
                "Time to answer a registry lookup, cache included.",
                "source",
            ),
            rereads: counter(
                r,
                "replica_guard_registry_rereads_total",
                "Denials on a cached entry checked against the registry first, by result (confirmed, changed: allowed or decided anew on the fresh entry, timeout and error: the cached answer stood).",
                &["result"],
            ),
            cache_entries: gauge(
                r,
                "replica_guard_registry_cache_entries",
                "Entries in the cache in front of a remote registry.",
            ),
            revision_age: register(
                r,
                Gauge::new(
                    "replica_guard_registry_revision_age_seconds",
                    "Seconds since the registry revision the snapshot answers from was read (a sync, a pushed change, a file or ConfigMap change); absent before the first load. A push source (Firestore listener, ConfigMap watch) that sees no change keeps its revision: alert on failed syncs, not on age alone.",
                ),
            ),
            revision_read_at: AtomicU64::new(0),
        }
    }

    /// Sets the age gauge from the revision's read time, just before a scrape.
    pub(super) fn refresh_revision_age(&self) {
        let read_at = self.revision_read_at.load(Ordering::Relaxed);
        if read_at > 0 {
            let now = unix_millis(std::time::SystemTime::now());
            self.revision_age.set(now.saturating_sub(read_at) as f64 / 1000.0);
        }
    }
}

fn unix_millis(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_millis().max(1) as u64)
}

impl Families {
    /// Publishes a new registry snapshot: its size, how many entries are outside the platform
    /// bounds, and its per-entry gauges (written by the snapshot itself at scrape time). Returns
    /// the view it replaces, for the caller to drop where freeing a large registry blocks nobody.
    pub fn publish(
        &self,
        view: Box<dyn Exposition>,
        entries: usize,
        out_of_bounds: usize,
    ) -> Option<Arc<Box<dyn Exposition>>> {
        self.entries.set(entries as i64);
        self.out_of_bounds.set(out_of_bounds as i64);
        self.view.swap(Some(Arc::new(view)))
    }

    /// The counter of one lookup result of one source, resolved once by hot paths.
    pub fn lookup_counter(&self, source: SourceKind, result: LookupResult) -> IntCounter {
        self.lookups.with_label_values(&[source.as_str(), result.as_str()])
    }

    /// A lookup that went through a cache: its result and how long it took.
    pub fn lookup(&self, source: SourceKind, result: LookupResult, seconds: f64, cache_entries: u64) {
        self.lookup_counter(source, result).inc();
        self.lookup_duration.with_label_values(&[source.as_str()]).observe(seconds);
        self.cache_entries.set(cache_entries as i64);
    }

    /// A sync the shrink guard held back (`result="held-back"`): the registry answered, but the
    /// new snapshot would remove too much at once, so the last good one stays.
    /// The counters of `source` at 0 from the start, so that an alert's `increase()` sees the
    /// first failure (a series born at 1 reads as no increase).
    pub fn serving(&self, source: SourceKind) {
        for result in ["success", "error", "held-back"] {
            self.reloads.with_label_values(&[source.as_str(), result]);
        }
        for result in [LookupResult::Stale, LookupResult::Error] {
            self.lookup_counter(source, result);
        }
    }

    pub fn held_back(&self, source: SourceKind) {
        self.reloads.with_label_values(&[source.as_str(), "held-back"]).inc();
    }

    /// The snapshot now answers from a revision read at `read_at` (`replica_guard_registry_revision_age_seconds`).
    pub fn revision(&self, read_at: std::time::SystemTime) {
        self.revision_read_at.store(unix_millis(read_at), Ordering::Relaxed);
    }

    /// A registry load that succeeded; it also sets the last-success time.
    pub fn loaded(&self, source: SourceKind) {
        self.reloads.with_label_values(&[source.as_str(), "success"]).inc();
        self.answered();
    }

    /// A registry load that failed, and why: one of the fixed words of
    /// `RegistryError::metric_label` (`missing` for a ConfigMap or key that is not there, `read`
    /// for a file that cannot be read).
    pub fn failed(&self, source: SourceKind, reason: &'static str) {
        self.reloads.with_label_values(&[source.as_str(), "error"]).inc();
        self.failures.with_label_values(&[source.as_str(), reason]).inc();
    }

    /// A denial's entry read again from the registry before refusing (`webhook`): its result.
    pub fn reread(&self, result: &'static str) {
        self.rereads.with_label_values(&[result]).inc();
    }

    /// The registry answered (a load, or a remote fetch): sets the last-success time to now.
    pub fn answered(&self) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        self.last_success.set(now.as_secs_f64());
    }
}
