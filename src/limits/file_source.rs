//! The file source: a registry YAML file on disk (in Kubernetes, a mounted ConfigMap), reloaded
//! when it changes, including kubelet's symlink swap. A broken edit is logged and counted, and
//! the last good snapshot keeps serving.

use super::file::LimitsFileError;
use super::store::{Revision, SnapshotStore, apply_document};
use crate::decision::policy::PlatformBounds;
use crate::file_change::ChangeDetector;
use crate::metrics::{Metrics, SourceKind};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    #[error("cannot read the registry file {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("registry file {path}: {error}")]
    Invalid { path: PathBuf, error: LimitsFileError },
}

pub struct FileSource {
    path: PathBuf,
    store: Arc<SnapshotStore>,
    metrics: Arc<Metrics>,
    bounds: PlatformBounds,
    max_entries: usize,
}

impl FileSource {
    pub fn new(
        path: PathBuf,
        store: Arc<SnapshotStore>,
        metrics: Arc<Metrics>,
        bounds: PlatformBounds,
        max_entries: usize,
    ) -> Self {
        Self { path, store, metrics, bounds, max_entries }
    }

    /// Reads and validates the file; on success it becomes the current snapshot. Returns the
    /// number of entries.
    pub fn load(&self) -> Result<usize, FileSourceError> {
        let text = std::fs::read_to_string(&self.path).map_err(|error| {
            self.metrics.registry.failed(SourceKind::File, "read");
            FileSourceError::Read { path: self.path.clone(), error }
        })?;
        let revision = Revision::digest(&text);
        apply_document(&text, revision, SourceKind::File, &self.store, &self.metrics, &self.bounds, self.max_entries)
            .map_err(|error| FileSourceError::Invalid { path: self.path.clone(), error })
    }

    /// Polls the file every `interval` and reloads it when it changed, until the task is dropped.
    /// Call it before the first `load`: the file as it is now is the baseline, so an edit that
    /// lands between that load and the first poll is not missed.
    pub fn reload_on_change(
        self: Arc<Self>,
        interval: Duration,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let detector = ChangeDetector::new([self.path.as_path()]);
        self.poll(detector, interval)
    }

    async fn poll(self: Arc<Self>, mut detector: ChangeDetector<1>, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            if !detector.changed([self.path.as_path()]) {
                continue;
            }
            let source = self.clone();
            match tokio::task::spawn_blocking(move || source.load()).await {
                Ok(Ok(entries)) => tracing::info!(path = %self.path.display(), entries, "registry file reloaded"),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "registry file not reloaded; the last good copy stays in use")
                }
                Err(e) => tracing::error!(error = %e, "registry reload task failed"),
            }
        }
    }
}
