//! The moka cache in front of a remote registry (HTTP, Firestore).
//!
//! - Answers are cached for `ttlSeconds`, "not registered" for the shorter
//!   `negativeTtlSeconds`, and a failed fetch for `errorTtlSeconds`, so an outage costs one
//!   upstream attempt per workload per few seconds instead of one per admission.
//! - Concurrent misses for the same workload share one upstream request (moka's entry API
//!   coalesces initialisations).
//! - When a fetch fails, the last answer ever seen for that workload is used (stale-if-error),
//!   counted as `stale` and logged; with no such answer the lookup is `Unavailable` and the
//!   policy's `registryFailure` decides.

use super::{BoxFuture, Limit, LimitSource, Lookup};
use crate::decision::WorkloadKey;
use crate::decision::limit::Unreachable;
use crate::metrics::{LookupResult, Metrics, SourceKind};
use moka::Expiry;
use moka::future::Cache;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Fetches one workload's entry from a remote registry. `Ok(None)` means "not registered".
pub trait Fetch: Send + Sync + 'static {
    fn fetch(
        &self,
        namespace: &str,
        deployment: &str,
    ) -> impl Future<Output = Result<Option<Limit>, super::RegistryError>> + Send;
}

#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    pub ttl: Duration,
    pub negative_ttl: Duration,
    pub error_ttl: Duration,
    pub capacity: u64,
}

#[derive(Debug, Clone)]
enum Cached {
    Found(Limit),
    NotFound,
    Failed(Unreachable),
}

/// An answer, and when the registry gave it (a clock for the age, and the time for records).
#[derive(Debug, Clone)]
struct Fetched {
    answer: Cached,
    at: Instant,
    time: jiff::Timestamp,
}

impl Fetched {
    fn now(answer: Cached) -> Self {
        Self { answer, at: Instant::now(), time: jiff::Timestamp::now() }
    }
}

/// A denial's re-read is not sent when the cached answer is this young: it was just asked.
const JUST_FETCHED: Duration = Duration::from_secs(1);

struct PerAnswerExpiry(CacheSettings);

impl Expiry<WorkloadKey, Fetched> for PerAnswerExpiry {
    fn expire_after_create(
        &self,
        _key: &WorkloadKey,
        Fetched { answer, .. }: &Fetched,
        _created: std::time::Instant,
    ) -> Option<Duration> {
        Some(match answer {
            Cached::Found(_) => self.0.ttl,
            Cached::NotFound => self.0.negative_ttl,
            Cached::Failed(_) => self.0.error_ttl,
        })
    }
}

pub struct CachedSource<F> {
    fetcher: Arc<F>,
    fresh: Cache<WorkloadKey, Fetched>,
    /// The last successful answer per workload, kept without a TTL for stale-if-error.
    last_known: Cache<WorkloadKey, Option<Limit>>,
    metrics: Arc<Metrics>,
    source: SourceKind,
}

impl<F: Fetch> CachedSource<F> {
    pub fn new(fetcher: F, settings: CacheSettings, metrics: Arc<Metrics>, source: SourceKind) -> Self {
        metrics.registry.serving(source);
        Self {
            fetcher: Arc::new(fetcher),
            fresh: Cache::builder().max_capacity(settings.capacity).expire_after(PerAnswerExpiry(settings)).build(),
            last_known: Cache::builder().max_capacity(settings.capacity).build(),
            metrics,
            source,
        }
    }

    async fn lookup_inner(&self, namespace: &str, deployment: &str) -> (Lookup, LookupResult) {
        let key = WorkloadKey::new(namespace, deployment);
        let fetcher = self.fetcher.clone();
        let WorkloadKey { namespace: ns, deployment: name } = key.clone();
        let entry = self
            .fresh
            .entry(key.clone())
            .or_insert_with(async move {
                let answer = match fetcher.fetch(&ns, &name).await {
                    Ok(Some(limit)) => Cached::Found(limit),
                    Ok(None) => Cached::NotFound,
                    Err(e) => Cached::Failed(Unreachable::new(e)),
                };
                Fetched::now(answer)
            })
            .await;
        let fetched = entry.is_fresh();
        match entry.into_value().answer {
            Cached::Found(limit) => {
                if fetched {
                    self.remember(key, Some(limit.clone())).await;
                }
                (Lookup::Registered(limit), if fetched { LookupResult::Miss } else { LookupResult::Hit })
            }
            Cached::NotFound => {
                if fetched {
                    self.remember(key, None).await;
                }
                (Lookup::Unregistered, LookupResult::Negative)
            }
            Cached::Failed(reason) => match self.last_known.get(&key).await {
                Some(known) => {
                    if fetched {
                        tracing::warn!(namespace, deployment, error = %reason, "registry unreachable; using the last known entry");
                    }
                    (known.map_or(Lookup::Unregistered, Lookup::Registered), LookupResult::Stale)
                }
                None => {
                    if fetched {
                        tracing::error!(namespace, deployment, error = %reason, "registry unreachable and no earlier answer known");
                    }
                    (Lookup::Unavailable(reason), LookupResult::Error)
                }
            },
        }
    }

    async fn remember(&self, key: WorkloadKey, answer: Option<Limit>) {
        self.last_known.insert(key, answer).await;
        self.metrics.registry.answered();
    }
}

impl<F: Fetch> LimitSource for CachedSource<F> {
    fn lookup<'a>(&'a self, namespace: &'a str, deployment: &'a str) -> BoxFuture<'a, Lookup> {
        Box::pin(async move {
            let started = Instant::now();
            let (lookup, result) = self.lookup_inner(namespace, deployment).await;
            let seconds = started.elapsed().as_secs_f64();
            self.metrics.registry.lookup(self.source, result, seconds, self.fresh.entry_count());
            lookup
        })
    }

    /// A remote registry is asked per request; there is nothing to wait for at start.
    fn is_ready(&self) -> bool {
        true
    }

    /// `http@<when the answer in the cache was fetched>`; a stale answer (the registry failed
    /// since) is named by the failure's time, `stale` marking it.
    fn revision<'a>(&'a self, namespace: &'a str, deployment: &'a str) -> BoxFuture<'a, Option<Arc<str>>> {
        Box::pin(async move {
            let fetched = self.fresh.get(&WorkloadKey::new(namespace, deployment)).await?;
            let state = if matches!(fetched.answer, Cached::Failed(_)) { "stale@" } else { "@" };
            Some(format!("{}{state}{}", self.source.as_str(), fetched.time).into())
        })
    }

    /// Asks the registry directly, and keeps its answer in the cache for the requests after.
    fn reread<'a>(&'a self, namespace: &'a str, deployment: &'a str) -> Option<super::Reread<'a>> {
        Some(Box::pin(async move {
            let key = WorkloadKey::new(namespace, deployment);
            let revision = |f: &Fetched| format!("{}@{}", self.source.as_str(), f.time).into();
            // The answer the denial rests on came from the registry a moment ago: it is fresh.
            if let Some(fetched) = self.fresh.get(&key).await
                && fetched.at.elapsed() < JUST_FETCHED
            {
                match &fetched.answer {
                    Cached::Found(limit) => return Ok((Lookup::Registered(limit.clone()), revision(&fetched))),
                    Cached::NotFound => return Ok((Lookup::Unregistered, revision(&fetched))),
                    Cached::Failed(_) => {}
                }
            }
            let answer = self.fetcher.fetch(namespace, deployment).await.map_err(|e| e.to_string())?;
            let fetched = Fetched::now(answer.clone().map_or(Cached::NotFound, Cached::Found));
            let revision = revision(&fetched);
            self.fresh.insert(key.clone(), fetched).await;
            self.remember(key, answer.clone()).await;
            Ok((answer.map_or(Lookup::Unregistered, Lookup::Registered), revision))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Scope;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A registry whose answer the test sets, counting the calls it gets.
    struct Scripted {
        answer: Mutex<Result<Option<i32>, String>>,
        calls: AtomicUsize,
    }

    impl Fetch for Arc<Scripted> {
        async fn fetch(&self, _ns: &str, _name: &str) -> Result<Option<Limit>, crate::limits::RegistryError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            let answer = self.answer.lock().unwrap().clone();
            answer.map_err(crate::limits::RegistryError::Auth).map(|a| {
                a.map(|max| Limit {
                    max_replicas: max,
                    min_replicas: None,
                    mode: None,
                    owner: None,
                    scope: Scope::Deployment,
                })
            })
        }
    }

    fn scripted(answer: Result<Option<i32>, String>) -> Arc<Scripted> {
        Arc::new(Scripted { answer: Mutex::new(answer), calls: AtomicUsize::new(0) })
    }

    fn settings(ttl_ms: u64) -> CacheSettings {
        let d = Duration::from_millis(ttl_ms);
        CacheSettings { ttl: d, negative_ttl: d, error_ttl: d, capacity: 100 }
    }

    fn max(lookup: &Lookup) -> Option<i32> {
        match lookup {
            Lookup::Registered(l) => Some(l.max_replicas),
            _ => None,
        }
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_fetch() {
        let registry = scripted(Ok(None));
        let cache = Arc::new(CachedSource::new(
            registry.clone(),
            settings(60_000),
            Arc::new(Metrics::new()),
            crate::metrics::SourceKind::Http,
        ));
        let lookups = (0..100).map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.lookup("team-a", "missing").await })
        });
        for lookup in lookups {
            assert_eq!(lookup.await.unwrap(), Lookup::Unregistered);
        }
        assert_eq!(registry.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn stale_if_error_then_recovery() {
        let registry = scripted(Ok(Some(4)));
        let cache = CachedSource::new(
            registry.clone(),
            settings(50),
            Arc::new(Metrics::new()),
            crate::metrics::SourceKind::Http,
        );
        assert_eq!(max(&cache.lookup("a", "x").await), Some(4));
        *registry.answer.lock().unwrap() = Err("connection refused".into());
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(max(&cache.lookup("a", "x").await), Some(4), "the last known value is used");
        assert_eq!(cache.lookup("a", "never-seen").await, Lookup::Unavailable(Unreachable::said("connection refused")));
        *registry.answer.lock().unwrap() = Ok(Some(6));
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(max(&cache.lookup("a", "x").await), Some(6), "recovery is picked up");
    }
}
