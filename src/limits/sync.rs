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
use super::store::{Revision, SnapshotStore};
use super::table::LimitTable;
use super::{BoxFuture, Limit, LimitSource};
use crate::decision::policy::PlatformBounds;
use crate::metrics::{Metrics, SourceKind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// One registry entry as listed: where it came from (for error messages), and what it says.
#[derive(Clone)]
pub struct Listed {
    /// The document (or row) it came from.
    pub place: String,
    pub namespace: String,
    /// None: the namespace-wide default.
    pub deployment: Option<String>,
    pub limit: Limit,
}

/// One whole listing, and the registry revision it read.
pub struct Listing {
    pub entries: Vec<Listed>,
    pub revision: Revision,
}

/// A registry that can be listed whole.
pub trait ListRegistry: Send + Sync + 'static {
    /// Every entry, or why not (naming the page, document and field at fault); it stops as soon
    /// as `budget` is spent, before a registry far larger than expected is held in memory.
    fn list(&self, budget: EntryBudget) -> BoxFuture<'_, Result<Listing, RegistryError>>;
}

/// Makes a listing the store's snapshot, with the checks every listing passes: shared by the
/// periodic sync and a source's push feed (the Firestore listener), so a pushed change meets the
/// same all-or-nothing rule and shrink guard as a sync.
pub struct Applier {
    pub source: SourceKind,
    pub store: Arc<SnapshotStore>,
    pub metrics: Arc<Metrics>,
    pub bounds: PlatformBounds,
    pub max_shrink: f64,
    /// Snapshots applied from a push feed: a periodic listing that began before one of them read
    /// an older registry, and is dropped.
    pushes: AtomicU64,
    /// The entries of the snapshot the last sync applied: a push feed's changes arrive one by one,
    /// so the shrink guard measures them against it (and the current snapshot, if larger), not
    /// only against the snapshot of a moment ago — within one `refresh`, no more than
    /// `max_shrink` goes, whichever way the changes came.
    baseline: AtomicUsize,
    /// Wakes the push feed when a sync found a registry other than the one the feed had built: the
    /// feed missed a change and starts over from a full read.
    feed_missed: Notify,
}

/// What one sync did.
#[derive(Debug, PartialEq, Eq)]
pub enum Synced {
    Applied {
        entries: usize,
    },
    Failed(RegistryError),
    HeldBack {
        entries: usize,
        previous: usize,
    },
    /// A pushed change landed while the listing ran: the snapshot is newer than the listing.
    Superseded,
}

impl Applier {
    pub fn new(
        source: SourceKind,
        store: Arc<SnapshotStore>,
        metrics: Arc<Metrics>,
        bounds: PlatformBounds,
        max_shrink: f64,
    ) -> Self {
        Self {
            source,
            store,
            metrics,
            bounds,
            max_shrink,
            pushes: AtomicU64::new(0),
            baseline: AtomicUsize::new(0),
            feed_missed: Notify::new(),
        }
    }

    /// A complete, consistent registry from the push feed.
    pub async fn apply_pushed(&self, listing: Result<Listing, RegistryError>) -> Synced {
        self.pushes.fetch_add(1, Ordering::SeqCst);
        self.apply(listing, None).await
    }

    /// Resolves when a sync finds that the push feed missed a change.
    pub async fn feed_missed(&self) {
        self.feed_missed.notified().await
    }

    /// Checks and swaps in a listing — or keeps the last snapshot and says why. `synced_after`:
    /// for a periodic listing, the pushes applied when it began; a push since makes the listing
    /// older than the snapshot (dropped), and a listing other than the snapshot it replaces tells
    /// the push feed it missed something.
    async fn apply(&self, listing: Result<Listing, RegistryError>, synced_after: Option<u64>) -> Synced {
        let compare = synced_after.is_some();
        let superseded = || synced_after.is_some_and(|p| p != self.pushes.load(Ordering::SeqCst));
        if listing.is_ok() && superseded() {
            self.report(&Synced::Superseded);
            return Synced::Superseded;
        }
        // Building the table of a large registry, and freeing the one it replaces, take
        // milliseconds of CPU: on the blocking pool, so admission keeps the runtime's threads.
        let bounds = self.bounds;
        let previous = compare.then(|| self.store.snapshot());
        let built = tokio::task::spawn_blocking(move || {
            let Listing { entries, revision } = listing?;
            let table = table_of(entries)?;
            let out_of_bounds = table.out_of_bounds(&bounds);
            let differs = previous.is_some_and(|previous| *previous != table);
            Ok((Arc::new(table), revision, out_of_bounds, differs))
        })
        .await
        .unwrap_or_else(|e| Err(RegistryError::Decode(format!("building the registry failed: {e}"))));
        let outcome = match built {
            Err(e) => {
                self.metrics.registry.failed(self.source, e.metric_label());
                Synced::Failed(e)
            }
            Ok((table, revision, out_of_bounds, differs)) => {
                let previous = self.store.snapshot().len().max(self.baseline.load(Ordering::SeqCst));
                let entries = table.len();
                if superseded() {
                    tokio::task::spawn_blocking(move || drop(table));
                    Synced::Superseded
                } else if self.store.is_ready() && shrinks_too_much(previous, entries, self.max_shrink) {
                    tokio::task::spawn_blocking(move || drop(table));
                    Synced::HeldBack { entries, previous }
                } else {
                    if differs && self.pushes.load(Ordering::SeqCst) > 0 {
                        self.feed_missed.notify_one();
                    }
                    if compare || !self.store.is_ready() {
                        self.baseline.store(entries, Ordering::SeqCst);
                    }
                    let old_view = self.metrics.registry.publish(Box::new(table.clone()), entries, out_of_bounds);
                    self.metrics.registry.revision(revision.read_at);
                    let old = self.store.replace(table, revision);
                    tokio::task::spawn_blocking(move || drop((old, old_view)));
                    Synced::Applied { entries }
                }
            }
        };
        self.report(&outcome);
        outcome
    }

    fn report(&self, outcome: &Synced) {
        let source = self.source.as_str();
        match outcome {
            Synced::Applied { entries } => {
                self.metrics.registry.loaded(self.source);
                let revision = self.store.revision().map(|r| r.id);
                tracing::info!(source, entries, revision = revision.as_deref(), "registry synced");
            }
            Synced::Failed(why) => {
                self.store.load_failed(why.clone().into());
                tracing::error!(source, error = %why, "registry sync failed; the last good registry stays in use");
            }
            Synced::HeldBack { entries, previous } => {
                self.metrics.registry.held_back(self.source);
                tracing::error!(
                    source,
                    entries,
                    previous,
                    "registry sync held back: it would remove more than maxShrinkFraction of the entries at once; \
                     the last good registry stays in use (fix the registry, or raise maxShrinkFraction for one sync)"
                );
            }
            Synced::Superseded => {
                tracing::debug!(source, "a pushed change landed during the sync; the sync's older listing is dropped")
            }
        }
    }
}

pub struct Syncer<L> {
    pub lister: L,
    pub applier: Arc<Applier>,
    /// `registry.maxEntries`.
    pub max_entries: usize,
    pub refresh: Duration,
    /// The longest one sync may take.
    pub timeout: Duration,
}

impl<L: ListRegistry> Syncer<L> {
    /// Syncs now and then every `refresh`, until dropped.
    pub async fn run(self) {
        loop {
            let outcome = self.sync_once().await;
            let wait = match outcome {
                Synced::Applied { .. } | Synced::Superseded => self.refresh,
                // Not ready yet, or a failure: try again sooner, but not in a tight loop.
                _ if !self.applier.store.is_ready() => self.refresh.min(Duration::from_secs(5)),
                _ => self.refresh,
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// One sync: list, check, swap — or keep the last snapshot and say why.
    pub async fn sync_once(&self) -> Synced {
        let pushes = self.applier.pushes.load(Ordering::SeqCst);
        let budget = EntryBudget::new(self.max_entries);
        let listing = match tokio::time::timeout(self.timeout, self.lister.list(budget)).await {
            Ok(listing) => listing,
            Err(_) => {
                Err(RegistryError::Timeout(format!("the whole sync took longer than {} s", self.timeout.as_secs_f64())))
            }
        };
        self.applier.apply(listing, Some(pushes)).await
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
