//! Opening the configured registry source: which source, its store, and the task that keeps it
//! current (a file poll, a ConfigMap watch, a sync with its Listen stream).

use super::source::{BoxFuture, LimitSource};
use super::{bigquery_source, cache, configmap_source, file_source, firestore_listen, firestore_reader};
use super::{firestore_source, http_source, store, sync, transport};
use crate::part::{Part, Stop, Unfinished};
use std::sync::Arc;

/// What keeps an opened source current, run as a part of the process: a file poll, a ConfigMap
/// watch, a sync — and with it the Listen stream, which closes its stream on the way out.
pub struct Refresh(Box<dyn FnOnce(Stop) -> BoxFuture<'static, ()> + Send>);

impl Refresh {
    /// A refresh with nothing to finish: dropped when the process stops.
    fn until_stopped(task: impl Future<Output = ()> + Send + 'static) -> Self {
        Self(Box::new(move |mut stop| {
            Box::pin(async move {
                tokio::select! {
                    () = task => {}
                    () = stop.requested() => {}
                }
            })
        }))
    }
}

impl Part for Refresh {
    fn name(&self) -> &'static str {
        "registry refresh"
    }

    async fn run(self, stop: Stop) -> Result<(), Unfinished> {
        (self.0)(stop).await;
        Ok(())
    }
}

/// A registry source opened from the config: what answers lookups, and the task that keeps it
/// current (to be spawned by the caller; an offline check drops it).
pub struct Opened {
    pub source: Arc<dyn LimitSource>,
    /// The whole registry in memory, for a source read whole (not `registry.http`, asked per
    /// workload): what the backstop's parameters are computed from.
    pub snapshot: Option<Arc<store::SnapshotStore>>,
    pub refresh: Option<Refresh>,
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
            Ok(Opened {
                source: store.clone(),
                snapshot: Some(store),
                refresh: Some(Refresh::until_stopped(refresher)),
            })
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
                refresh: None,
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
            Ok(Opened {
                source: store.clone(),
                snapshot: Some(store),
                refresh: Some(Refresh::until_stopped(source.run())),
            })
        }
        Source::Firestore(fs) => {
            let lister = firestore_source::FirestoreLister::new(fs)?;
            // A denial is checked against Firestore itself before it refuses (`webhook`).
            let reader = lister.reader();
            let (store, syncer) =
                synced(lister, SourceKind::Firestore, metrics, bounds, registry.max_entries, fs.sync());
            // Changes pushed within a second by the Listen stream; the sync is the safety net.
            let refresh = match fs.listen {
                true => {
                    let listener =
                        firestore_listen::Listener::new(fs, &reader, syncer.applier.clone(), registry.max_entries)?;
                    // Stops when the listener has closed its stream; the sync is dropped with it.
                    Refresh(Box::new(move |stop| {
                        Box::pin(async move {
                            tokio::select! {
                                () = syncer.run() => {}
                                () = listener.run(stop) => {}
                            }
                        })
                    }))
                }
                false => Refresh::until_stopped(syncer.run()),
            };
            Ok(Opened {
                source: Arc::new(firestore_reader::FirestoreSnapshot { store: store.clone(), reader }),
                snapshot: Some(store),
                refresh: Some(refresh),
            })
        }
        Source::BigQuery(bq) => {
            let lister = bigquery_source::BigQueryLister::new(bq)?;
            let (store, syncer) =
                synced(lister, SourceKind::BigQuery, metrics, bounds, registry.max_entries, bq.sync());
            Ok(Opened {
                source: store.clone(),
                snapshot: Some(store),
                refresh: Some(Refresh::until_stopped(syncer.run())),
            })
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
