//! The current registry snapshot of a snapshot source (file, ConfigMap). A reload swaps the
//! whole table at once, so a lookup sees the old registry or the new one, never a mix; a failed
//! reload never reaches the store, so the last good snapshot stays.

use super::table::LimitTable;
use super::{BoxFuture, LimitSource, Lookup};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

#[derive(Debug, Default)]
pub struct SnapshotStore {
    table: RwLock<Arc<LimitTable>>,
    loaded: AtomicBool,
}

impl SnapshotStore {
    pub fn replace(&self, table: LimitTable) {
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
        self.loaded.store(true, Ordering::Release);
    }

    pub fn snapshot(&self) -> Arc<LimitTable> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl LimitSource for SnapshotStore {
    fn lookup<'a>(&'a self, namespace: &'a str, deployment: &'a str) -> BoxFuture<'a, Lookup> {
        let answer = self.table.read().unwrap_or_else(|p| p.into_inner()).lookup(namespace, deployment);
        Box::pin(std::future::ready(answer))
    }

    fn is_ready(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }
}
