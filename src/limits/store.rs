//! The current registry snapshot of a snapshot source (file, ConfigMap). A reload swaps the
//! whole table at once, so a lookup sees the old registry or the new one, never a mix; a failed
//! reload never reaches the store, so the last good snapshot stays.

use super::file::{self, LimitsFileError};
use super::table::LimitTable;
use super::{BoxFuture, LimitSource, Lookup};
use crate::decision::policy::PlatformBounds;
use crate::metrics::Metrics;
use prometheus::IntCounter;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

pub struct SnapshotStore {
    table: RwLock<Arc<LimitTable>>,
    loaded: AtomicBool,
    /// `registry_lookups_total{result="hit"|"negative"}` of this source, resolved once.
    hits: IntCounter,
    negatives: IntCounter,
}

impl SnapshotStore {
    pub fn new(source: &'static str, metrics: &Metrics) -> Self {
        Self {
            table: RwLock::default(),
            loaded: AtomicBool::new(false),
            hits: metrics.registry_lookups.with_label_values(&[source, "hit"]),
            negatives: metrics.registry_lookups.with_label_values(&[source, "negative"]),
        }
    }

    pub fn replace(&self, table: Arc<LimitTable>) {
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = table;
        self.loaded.store(true, Ordering::Release);
    }

    pub fn snapshot(&self) -> Arc<LimitTable> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Parses a registry document and, when it is valid, makes it the current snapshot and publishes
/// it in the metrics. Shared by the file and ConfigMap sources; an invalid document changes
/// nothing but the error count. Returns the number of entries.
pub fn apply_document(
    text: &str,
    source: &'static str,
    store: &SnapshotStore,
    metrics: &Metrics,
    bounds: &PlatformBounds,
) -> Result<usize, LimitsFileError> {
    match file::parse(text) {
        Ok(table) => {
            let entries = table.len();
            let table = Arc::new(table);
            metrics.publish_registry(table.clone(), bounds);
            store.replace(table);
            metrics.registry_reloads.with_label_values(&[source, "success"]).inc();
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            metrics.registry_last_success.set(now.as_secs_f64());
            Ok(entries)
        }
        Err(e) => {
            metrics.registry_reloads.with_label_values(&[source, "error"]).inc();
            Err(e)
        }
    }
}

impl LimitSource for SnapshotStore {
    fn lookup<'a>(&'a self, namespace: &'a str, deployment: &'a str) -> BoxFuture<'a, Lookup> {
        let answer = self.table.read().unwrap_or_else(|p| p.into_inner()).lookup(namespace, deployment);
        match answer {
            Lookup::Registered(_) => self.hits.inc(),
            _ => self.negatives.inc(),
        }
        Box::pin(std::future::ready(answer))
    }

    fn is_ready(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }
}
