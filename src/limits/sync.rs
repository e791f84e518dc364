//! Snapshot sources read from a remote registry (Firestore): the whole registry is listed in the
//! background every `refresh`, and lookups answer from the in-memory snapshot (`store`), so no
//! admission call waits on the network.
//!
//! A snapshot is all or nothing: a listing that fails on any page, or holds one bad entry, or two
//! entries for the same workload, changes nothing. A listing that would remove more than
//! `max_shrink` of the entries at once is held back and reported, not applied: a broken export
//! must not unregister half the platform. Readiness waits for the first complete sync.

use super::RegistryError;
use super::entry::EntryBudget;
use super::store::SnapshotStore;
use super::table::LimitTable;
use super::{BoxFuture, Limit, LimitSource};
use crate::decision::policy::PlatformBounds;
use crate::metrics::{Metrics, SourceKind};
use std::sync::Arc;
use std::time::Duration;

/// One registry entry as listed: where it came from (for error messages), and what it says.
pub struct Listed {
    /// The document (or row) it came from.
    pub place: String,
    pub namespace: String,
    /// None: the namespace-wide default.
    pub deployment: Option<String>,
    pub limit: Limit,
}

/// A registry that can be listed whole.
pub trait ListRegistry: Send + Sync + 'static {
    /// Every entry, or why not (naming the page, document and field at fault); it stops as soon
    /// as `budget` is spent, before a registry far larger than expected is held in memory.
    fn list(&self, budget: EntryBudget) -> BoxFuture<'_, Result<Vec<Listed>, RegistryError>>;
}

pub struct Syncer<L> {
    pub lister: L,
    pub source: SourceKind,
    pub store: Arc<SnapshotStore>,
    pub metrics: Arc<Metrics>,
    pub bounds: PlatformBounds,
    /// `registry.maxEntries`.
    pub max_entries: usize,
    pub refresh: Duration,
    /// The longest one sync may take.
    pub timeout: Duration,
    pub max_shrink: f64,
}

/// What one sync did.
#[derive(Debug, PartialEq, Eq)]
pub enum Synced {
    Applied { entries: usize },
    Failed(String),
    HeldBack { entries: usize, previous: usize },
}

impl<L: ListRegistry> Syncer<L> {
    /// Syncs now and then every `refresh`, until dropped.
    pub async fn run(self) {
        loop {
            let outcome = self.sync_once().await;
            let wait = match outcome {
                Synced::Applied { .. } => self.refresh,
                // Not ready yet, or a failure: try again sooner, but not in a tight loop.
                _ if !self.store.is_ready() => self.refresh.min(Duration::from_secs(5)),
                _ => self.refresh,
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// One sync: list, check, swap — or keep the last snapshot and say why.
    pub async fn sync_once(&self) -> Synced {
        let budget = EntryBudget::new(self.max_entries);
        let listed = match tokio::time::timeout(self.timeout, self.lister.list(budget)).await {
            Ok(listed) => listed,
            Err(_) => {
                Err(RegistryError::Timeout(format!("the whole sync took longer than {} s", self.timeout.as_secs_f64())))
            }
        };
        // Building the table of a large registry, and freeing the one it replaces, take
        // milliseconds of CPU: on the blocking pool, so admission keeps the runtime's threads.
        let bounds = self.bounds;
        let built = tokio::task::spawn_blocking(move || {
            listed.and_then(table_of).map(|table| {
                let out_of_bounds = table.out_of_bounds(&bounds);
                (Arc::new(table), out_of_bounds)
            })
        })
        .await
        .unwrap_or_else(|e| Err(RegistryError::Decode(format!("building the registry failed: {e}"))));
        let outcome = match built {
            Err(e) => {
                self.metrics.registry_failed(self.source, e.metric_label());
                Synced::Failed(e.to_string())
            }
            Ok((table, out_of_bounds)) => {
                let previous = self.store.snapshot().len();
                let entries = table.len();
                if self.store.is_ready() && shrinks_too_much(previous, entries, self.max_shrink) {
                    tokio::task::spawn_blocking(move || drop(table));
                    Synced::HeldBack { entries, previous }
                } else {
                    let old_view = self.metrics.publish_registry(Box::new(table.clone()), entries, out_of_bounds);
                    let old = self.store.replace(table);
                    tokio::task::spawn_blocking(move || drop((old, old_view)));
                    Synced::Applied { entries }
                }
            }
        };
        let source = self.source.as_str();
        match &outcome {
            Synced::Applied { entries } => {
                self.metrics.registry_loaded(self.source);
                tracing::info!(source, entries, "registry synced");
            }
            Synced::Failed(why) => {
                self.store.load_failed(why);
                tracing::error!(source, error = %why, "registry sync failed; the last good registry stays in use");
            }
            Synced::HeldBack { entries, previous } => {
                self.metrics.registry_held_back(self.source);
                tracing::error!(
                    source,
                    entries,
                    previous,
                    "registry sync held back: it would remove more than maxShrinkFraction of the entries at once; \
                     the last good registry stays in use (fix the registry, or raise maxShrinkFraction for one sync)"
                );
            }
        }
        outcome
    }
}

/// Whether going from `previous` to `now` entries removes more than `max_shrink` of them.
fn shrinks_too_much(previous: usize, now: usize, max_shrink: f64) -> bool {
    previous > 0 && now < previous && (previous - now) as f64 > max_shrink * previous as f64
}

/// The listed entries as one table; a second entry for the same workload fails the whole sync,
/// naming both (the first is looked up only then, so a good sync keeps no index of places).
fn table_of(listed: Vec<Listed>) -> Result<LimitTable, RegistryError> {
    let mut table = LimitTable::default();
    for (i, entry) in listed.iter().enumerate() {
        if table.insert(&entry.namespace, entry.deployment.as_deref(), entry.limit.clone()).is_err() {
            let same = |e: &&Listed| e.namespace == entry.namespace && e.deployment == entry.deployment;
            let first = listed[..i].iter().find(same).map_or("", |e| e.place.as_str());
            let what =
                entry.deployment.as_deref().map_or("namespace default".to_string(), |d| format!("deployment {d}"));
            return Err(RegistryError::Duplicate {
                place: entry.place.clone(),
                first: first.to_string(),
                namespace: entry.namespace.clone(),
                what,
            });
        }
    }
    table.shrink_to_fit();
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shrink_guard() {
        assert!(!shrinks_too_much(0, 0, 0.5), "the first sync is never held back");
        assert!(!shrinks_too_much(100, 50, 0.5), "exactly half may go");
        assert!(shrinks_too_much(100, 49, 0.5));
        assert!(!shrinks_too_much(100, 200, 0.5), "growing is fine");
        assert!(!shrinks_too_much(100, 0, 1.0), "1 turns the guard off");
    }
}
