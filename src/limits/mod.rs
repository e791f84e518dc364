//! Where limits come from: the PED registry, seen through a `LimitSource`.
//!
//! `table` is the in-memory view every snapshot source (file, ConfigMap, Firestore) produces,
//! `file` parses and validates the registry YAML, `store` keeps the last good snapshot while
//! reloads come and go, `file_source` watches a file on disk and feeds the store, `sync` lists a
//! remote registry whole in the background (`firestore_source`, `bigquery_source`) with the
//! Firestore collection also followed by its `Listen` stream (`firestore_listen`) and a denial's
//! entry read again past the snapshot (`firestore_reader`), and `http_source` asks one document
//! per workload through `cache`.

pub mod bigquery_source;
pub mod cache;
pub mod configmap_source;
pub mod entry;
pub mod error;
pub mod file;
pub mod file_source;
pub mod firestore_listen;
pub mod firestore_reader;
pub mod firestore_source;
pub mod http_source;
pub mod store;
pub mod sync;
pub mod table;
pub mod transport;

pub use error::RegistryError;

pub use crate::decision::limit::{Limit, Lookup, Scope};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A denial's re-read (`LimitSource::reread`): the entry and the revision it was read at, or why not.
pub type Reread<'a> = BoxFuture<'a, Result<(Lookup, Arc<str>), String>>;

/// A place limits come from. Sources never fail a lookup: a registry that cannot answer says
/// `Lookup::Unavailable`, and the policy's `registryFailure` decides what that means.
pub trait LimitSource: Send + Sync {
    fn lookup<'a>(&'a self, namespace: &'a str, deployment: &'a str) -> BoxFuture<'a, Lookup>;

    /// Whether the registry has been read at least once; `/readyz` waits for it.
    fn is_ready(&self) -> bool;

    /// Resolves when the registry has been read for the first time, or with the reason when the
    /// first attempt failed: what an offline command (`check`, `audit`) waits for. A source asked
    /// per request is ready at once.
    fn first_load(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// The registry revision a lookup of this workload answers from (`store::Revision`'s id):
    /// what decision records and usage records name. `None` before the registry was read.
    /// Asked only for what is recorded, not on every lookup.
    fn revision<'a>(&'a self, namespace: &'a str, deployment: &'a str) -> BoxFuture<'a, Option<Arc<str>>>;

    /// The entry read again from the registry itself, past any cache, for a denial that would
    /// otherwise rest on a cached answer (a limit raised a moment ago must not refuse the deploy
    /// that follows it), with the revision it was read at; the error in words. `None` where the
    /// source has nothing fresher to ask (a file, a ConfigMap watch, a whole-registry snapshot).
    fn reread<'a>(&'a self, _namespace: &'a str, _deployment: &'a str) -> Option<Reread<'a>> {
        None
    }
}

/// A registry source opened from the config: what answers lookups, and the task that keeps it
/// current (to be spawned by the caller; an offline check drops it).
pub struct Opened {
    pub source: std::sync::Arc<dyn LimitSource>,
    /// The whole registry in memory, for a source read whole (not `registry.http`, asked per
    /// workload): what the backstop's parameters are computed from.
    pub snapshot: Option<Arc<store::SnapshotStore>>,
    pub refresher: Option<BoxFuture<'static, ()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    File(#[from] file_source::FileSourceError),
    #[error("{0}")]
    Client(#[from] transport::ClientError),
    #[error("{0}")]
    Listen(#[from] firestore_listen::ListenError),
    #[error("registry.configMap: the process has no Kubernetes client")]
    NoClient,
}

/// Opens the configured source. A file is read once here, so that a registry that cannot be
/// read stops the start with a clear error; a ConfigMap is read by its watch (through `client`,
/// the process's one Kubernetes client), and `/readyz` waits for it; a remote registry is asked
/// per request or synced in the background.
pub async fn open(
    registry: &crate::config::RegistryConfig,
    bounds: crate::decision::policy::PlatformBounds,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    client: Option<kube::Client>,
) -> Result<Opened, OpenError> {
    use crate::config::{Source, seconds};
    use crate::metrics::SourceKind;
    match registry.source() {
        Source::File(file) => {
            let store = Arc::new(store::SnapshotStore::new(SourceKind::File, &metrics));
            let source = Arc::new(file_source::FileSource::new(
                file.path.clone(),
                store.clone(),
                metrics,
                bounds,
                registry.max_entries,
            ));
            let refresher = source.clone().reload_on_change(seconds(file.poll_interval_seconds));
            let entries = source.load()?;
            tracing::info!(path = %file.path.display(), entries, "registry file loaded");
            Ok(Opened { source: store.clone(), snapshot: Some(store), refresher: Some(Box::pin(refresher)) })
        }
        Source::Http(http) => {
            let c = &registry.cache;
            let settings = cache::CacheSettings {
                ttl: seconds(c.ttl_seconds),
                negative_ttl: seconds(c.negative_ttl_seconds),
                error_ttl: seconds(c.error_ttl_seconds),
                capacity: c.capacity,
            };
            let fetcher = http_source::HttpFetcher::new(http)?;
            Ok(Opened {
                source: Arc::new(cache::CachedSource::new(fetcher, settings, metrics, SourceKind::Http)),
                snapshot: None,
                refresher: None,
            })
        }
        Source::ConfigMap(cm) => {
            let store = Arc::new(store::SnapshotStore::new(SourceKind::ConfigMap, &metrics));
            let client = client.ok_or(OpenError::NoClient)?;
            let source = configmap_source::ConfigMapSource::new(
                client,
                cm,
                store.clone(),
                metrics,
                bounds,
                registry.max_entries,
            );
            Ok(Opened { source: store.clone(), snapshot: Some(store), refresher: Some(Box::pin(source.run())) })
        }
        Source::Firestore(fs) => {
            let lister = firestore_source::FirestoreLister::new(fs)?;
            // A denial is checked against Firestore itself before it refuses (`webhook`).
            let reader = lister.reader();
            let (store, syncer) =
                synced(lister, SourceKind::Firestore, metrics, bounds, registry.max_entries, fs.sync());
            // Changes pushed within a second by the Listen stream; the sync is the safety net.
            let refresher: BoxFuture<'static, ()> = match fs.listen {
                true => {
                    let listener =
                        firestore_listen::Listener::new(fs, &reader, syncer.applier.clone(), registry.max_entries)?;
                    Box::pin(async move {
                        tokio::join!(syncer.run(), listener.run());
                    })
                }
                false => Box::pin(syncer.run()),
            };
            Ok(Opened {
                source: Arc::new(firestore_reader::FirestoreSnapshot { store: store.clone(), reader }),
                snapshot: Some(store),
                refresher: Some(refresher),
            })
        }
        Source::BigQuery(bq) => {
            let lister = bigquery_source::BigQueryLister::new(bq)?;
            let (store, syncer) =
                synced(lister, SourceKind::BigQuery, metrics, bounds, registry.max_entries, bq.sync());
            Ok(Opened { source: store.clone(), snapshot: Some(store), refresher: Some(Box::pin(syncer.run())) })
        }
    }
}

/// A snapshot source's store and the background sync that fills it: lists the registry every
/// `refresh` (`timing`: refresh, the timeout of one sync, the shrink guard's fraction) and hands
/// each listing to its `Applier`, which a push feed may share.
fn synced<L: sync::ListRegistry>(
    lister: L,
    source: crate::metrics::SourceKind,
    metrics: Arc<crate::metrics::Metrics>,
    bounds: crate::decision::policy::PlatformBounds,
    max_entries: usize,
    (refresh, timeout, max_shrink): (std::time::Duration, std::time::Duration, f64),
) -> (Arc<store::SnapshotStore>, sync::Syncer<L>) {
    let store = Arc::new(store::SnapshotStore::new(source, &metrics));
    let applier = Arc::new(sync::Applier::new(source, store.clone(), metrics, bounds, max_shrink));
    (store, sync::Syncer { lister, applier, max_entries, refresh, timeout })
}
