//! The current registry snapshot of a snapshot source (file, ConfigMap). A reload swaps the
//! whole table at once, so a lookup sees the old registry or the new one, never a mix; a failed
//! reload never reaches the store, so the last good snapshot stays. Each snapshot carries the
//! registry revision it was read at (`Revision`), which decision records and usage records name.

use super::error::NotRead;
use super::file::{self, LimitsFileError};
use super::table::LimitTable;
use super::{BoxFuture, LimitSource, Lookup};
use crate::decision::policy::PlatformBounds;
use crate::metrics::{LookupResult, Metrics, SourceKind};
use arc_swap::ArcSwap;
use prometheus::IntCounter;
use std::sync::Arc;
use tokio::sync::watch;

/// Whether the registry has been read: not yet, loaded (for good: a later failure keeps the last
/// good registry), or not yet and the last attempt failed (why, for a command waiting on it).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Load {
    Pending,
    Loaded,
    Failed(NotRead),
}

/// Which state of the registry a snapshot is: an id that names it in the registry's own terms
/// (Firestore's read time, the ConfigMap's resourceVersion, the file's SHA-256, the BigQuery job),
/// and when that state was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    pub id: Arc<str>,
    pub read_at: std::time::SystemTime,
}

impl Revision {
    /// `id`, read now.
    pub fn now(id: impl Into<Arc<str>>) -> Self {
        Self { id: id.into(), read_at: std::time::SystemTime::now() }
    }

    /// `source@<RFC 3339 time>`: a registry whose state is named by the time it was read.
    pub fn at(source: &str, time: jiff::Timestamp) -> Self {
        let read_at = std::time::SystemTime::from(time);
        Self { id: format!("{source}@{time}").into(), read_at }
    }

    /// `sha256:<first 16 hex digits>` of a document: a file's revision.
    pub fn digest(text: &str) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        let hex: String = digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
        Self::now(format!("sha256:{hex}"))
    }
}

/// A table and the revision it was read at, swapped together.
struct Current {
    table: Arc<LimitTable>,
    revision: Option<Revision>,
}

pub struct SnapshotStore {
    current: ArcSwap<Current>,
    load: watch::Sender<Load>,
    /// Counts replacements: whoever derives something from the snapshot (the backstop's
    /// parameters) waits on it.
    generation: watch::Sender<u64>,
    /// `registry_lookups_total{result="hit"|"negative"}` of this source, resolved once.
    hits: IntCounter,
    negatives: IntCounter,
}

impl SnapshotStore {
    pub fn new(source: SourceKind, metrics: &Metrics) -> Self {
        metrics.registry.serving(source);
        Self {
            current: ArcSwap::from_pointee(Current { table: Arc::default(), revision: None }),
            load: watch::Sender::new(Load::Pending),
            generation: watch::Sender::new(0),
            hits: metrics.registry.lookup_counter(source, LookupResult::Hit),
            negatives: metrics.registry.lookup_counter(source, LookupResult::Negative),
        }
    }

    /// Makes `table`, read at `revision`, the snapshot; returns the table it replaces.
    pub fn replace(&self, table: Arc<LimitTable>, revision: Revision) -> Arc<LimitTable> {
        let old = self.current.swap(Arc::new(Current { table, revision: Some(revision) })).table.clone();
        self.generation.send_modify(|g| *g += 1);
        self.load.send_if_modified(|load| std::mem::replace(load, Load::Loaded) != Load::Loaded);
        old
    }

    /// A load failed (`why`); before the first success, whoever waits for it is told.
    pub fn load_failed(&self, why: NotRead) {
        self.load.send_if_modified(|load| match load {
            Load::Loaded => false,
            _ => {
                *load = Load::Failed(why);
                true
            }
        });
    }

    /// Changes whenever the snapshot is replaced.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    pub fn snapshot(&self) -> Arc<LimitTable> {
        self.current.load().table.clone()
    }

    /// The revision of the current snapshot (none before the first load).
    pub fn revision(&self) -> Option<Revision> {
        self.current.load().revision.clone()
    }
}

/// Parses a registry document and, when it is valid, makes it the current snapshot and publishes
/// it in the metrics. Shared by the file and ConfigMap sources; an invalid document changes
/// nothing but the error count. Returns the number of entries.
pub fn apply_document(
    text: &str,
    revision: Revision,
    source: SourceKind,
    store: &SnapshotStore,
    metrics: &Metrics,
    bounds: &PlatformBounds,
    max_entries: usize,
) -> Result<usize, LimitsFileError> {
    match file::parse(text, max_entries) {
        Ok(table) => {
            let entries = table.len();
            let out_of_bounds = table.out_of_bounds(bounds);
            let table = Arc::new(table);
            let _ = metrics.registry.publish(Box::new(table.clone()), entries, out_of_bounds);
            metrics.registry.revision(revision.read_at);
            let _ = store.replace(table, revision);
            metrics.registry.loaded(source);
            Ok(entries)
        }
        Err(e) => {
            metrics.registry.failed(source, e.metric_label());
            store.load_failed(e.clone().into());
            Err(e)
        }
    }
}

impl LimitSource for SnapshotStore {
    fn lookup<'a>(&'a self, namespace: &'a str, deployment: &'a str) -> BoxFuture<'a, Lookup> {
        let answer = self.current.load().table.lookup(namespace, deployment);
        match answer {
            Lookup::Registered(_) => self.hits.inc(),
            _ => self.negatives.inc(),
        }
        Box::pin(std::future::ready(answer))
    }

    fn is_ready(&self) -> bool {
        *self.load.borrow() == Load::Loaded
    }

    fn revision<'a>(&'a self, _namespace: &'a str, _deployment: &'a str) -> BoxFuture<'a, Option<Arc<str>>> {
        Box::pin(std::future::ready(self.current.load().revision.as_ref().map(|r| r.id.clone())))
    }

    fn first_load(&self) -> BoxFuture<'_, Result<(), NotRead>> {
        let mut state = self.load.subscribe();
        Box::pin(async move {
            loop {
                match &*state.borrow_and_update() {
                    Load::Loaded => return Ok(()),
                    Load::Failed(why) => return Err(why.clone()),
                    Load::Pending => {}
                }
                if state.changed().await.is_err() {
                    return Err(NotRead::Stopped);
                }
            }
        })
    }
}
