//! What watches the cluster (`replica-guard watch`, the chart's audit Deployment): one watch of
//! every Deployment and one of every HPA, kept as the few fields a judgement needs
//! (`status::RunningWorkload`, not the objects: memory stays small with 10,000 Deployments), and
//! a pass every `interval` that judges everything against the registry (so a lowered entry is
//! seen without any change to the workload). What is done with it belongs to the subscribers:
//! Events and gauges (`announce`), policy reports (`reports`), the day's usage (`usage`). Each is
//! told of every change between passes, of every pass, and of the stop, when it finishes what it
//! holds. A watch that restarts (an API server restart, an expired resource version) re-lists, and
//! what is known is rebuilt from that listing.

use super::inventory::{hpa_target, workload};
use super::status::{self, Judged, RunningWorkload};
use crate::decision::WorkloadKey;
use crate::decision::policy::Policy;
use crate::limits::{BoxFuture, LimitSource};
use crate::metrics::Metrics;
use crate::part::{Part, Ready, Stop, Unfinished};
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// What changed between passes, as the watches saw it.
#[derive(Clone, Copy)]
pub enum Change<'a> {
    /// A Deployment as it is now.
    Deployment(&'a RunningWorkload),
    /// An HPA's maxReplicas, and the Deployment it scales.
    Hpa { target: &'a WorkloadKey, max_replicas: i32 },
}

/// One pass: everything the view knows, and what the registry says of it.
pub struct Pass<'a> {
    /// Every Deployment, with the largest maximum of the HPAs that target it.
    pub running: &'a [RunningWorkload],
    /// The Deployments the policy judges (not the exempt), against their registry entries.
    pub judged: &'a [Judged],
    /// The registry the pass judged against (for the revision it answered from).
    pub limits: &'a dyn LimitSource,
}

/// Something done with what the view sees. Told in the order subscribed.
pub trait Subscriber: Send {
    /// Names it in the logs.
    fn name(&self) -> &'static str;

    /// A change between passes (every change counts for the day's highs, not only what a pass sees).
    fn changed(&mut self, _change: Change<'_>) {}

    /// A pass over everything known.
    fn pass<'a>(&'a mut self, pass: &'a Pass<'a>) -> BoxFuture<'a, ()>;

    /// The process is stopping: finish what is held.
    fn stop(&mut self) -> BoxFuture<'_, Result<(), Unfinished>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// An HPA: the Deployment it scales, and its own (name, maxReplicas).
type Hpa = (WorkloadKey, (String, i32));

/// One kind of object as its watch shows it, by (namespace, name): what is known now, and the
/// listing being filled after an `Init` (a watch that restarts re-lists), swapped in at `InitDone`.
struct Watched<V> {
    now: HashMap<WorkloadKey, V>,
    listing: Option<HashMap<WorkloadKey, V>>,
    synced: bool,
}

impl<V> Default for Watched<V> {
    fn default() -> Self {
        Self { now: HashMap::new(), listing: None, synced: false }
    }
}

impl<V: Clone> Watched<V> {
    /// Takes in a watch event, keeping what `read` makes of each object (an object it makes
    /// nothing of is forgotten); returns what an applied object became, if anything.
    fn apply<K: kube::Resource>(&mut self, event: Event<K>, read: impl Fn(K) -> Option<V>) -> Option<V> {
        let key =
            |o: &K| Some(WorkloadKey { namespace: o.meta().namespace.clone()?, deployment: o.meta().name.clone()? });
        match event {
            Event::Init => self.listing = Some(HashMap::new()),
            Event::InitApply(o) => {
                let k = key(&o)?;
                let v = read(o)?;
                self.listing.get_or_insert_default().insert(k, v.clone());
                return Some(v);
            }
            Event::InitDone => {
                self.now = self.listing.take().unwrap_or_default();
                self.synced = true;
            }
            Event::Apply(o) => {
                let k = key(&o)?;
                match read(o) {
                    Some(v) => {
                        self.now.insert(k, v.clone());
                        return Some(v);
                    }
                    None => {
                        self.now.remove(&k);
                    }
                }
            }
            Event::Delete(o) => {
                if let Some(k) = key(&o) {
                    self.now.remove(&k);
                }
            }
        }
        None
    }
}

/// What is known of the cluster: Deployments, and HPAs with their target and maximum.
#[derive(Default)]
struct Known {
    deployments: Watched<RunningWorkload>,
    hpas: Watched<Hpa>,
}

impl Known {
    fn synced(&self) -> bool {
        self.deployments.synced && self.hpas.synced
    }

    /// Every Deployment with the largest maximum of the HPAs that target it.
    fn workloads(&self) -> Vec<RunningWorkload> {
        let mut hpa_of: HashMap<&WorkloadKey, &(String, i32)> = HashMap::new();
        for (target, hpa) in self.hpas.now.values() {
            if hpa_of.get(target).is_none_or(|known| hpa.1 > known.1) {
                hpa_of.insert(target, hpa);
            }
        }
        self.deployments
            .now
            .iter()
            .map(|(key, w)| RunningWorkload { hpa: hpa_of.get(key).map(|h| (*h).clone()), ..w.clone() })
            .collect()
    }
}

/// The cluster view, run as a part of `watch`.
pub struct ClusterView {
    pub client: kube::Client,
    pub limits: Arc<dyn LimitSource>,
    pub policy: Policy,
    pub metrics: Arc<Metrics>,
    /// How often every workload is judged again.
    pub interval: Duration,
    /// Set once the first pass is judged.
    pub ready: Ready,
    pub subscribers: Vec<Box<dyn Subscriber>>,
}

/// A subscriber that could not finish what it held on the way out.
#[derive(Debug, thiserror::Error)]
#[error("{subscriber}: {error}")]
pub struct SubscriberUnfinished {
    subscriber: &'static str,
    error: Unfinished,
}

impl Part for ClusterView {
    fn name(&self) -> &'static str {
        "cluster view"
    }

    /// Watches and passes until `stop`; then tells every subscriber to finish what it holds.
    async fn run(mut self, mut stop: Stop) -> Result<(), Unfinished> {
        let deployments =
            watcher::watcher(kube::Api::<Deployment>::all(self.client.clone()), watcher::Config::default())
                .default_backoff()
                .boxed();
        let hpas = watcher::watcher(
            kube::Api::<HorizontalPodAutoscaler>::all(self.client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .boxed();
        let mut deployments = deployments.fuse();
        let mut hpas = hpas.fuse();
        let mut known = Known::default();
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.requested() => return self.stop().await,
                Some(event) = deployments.next() => match event {
                    Ok(event) => {
                        if let Some(w) = known.deployments.apply(event, |d| workload(d, None)) {
                            self.tell(Change::Deployment(&w));
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "Deployment watch failed; retrying"),
                },
                Some(event) = hpas.next() => match event {
                    Ok(event) => {
                        if let Some((target, (_, max_replicas))) = known.hpas.apply(event, hpa_target) {
                            self.tell(Change::Hpa { target: &target, max_replicas });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "HPA watch failed; retrying"),
                },
                _ = ticker.tick() => {
                    if !(known.synced() && self.limits.is_ready()) {
                        // Not a whole interval (30 s in the chart) before the first pass: it is
                        // what `/readyz` waits for, and what announces what changed while no
                        // `watch` ran.
                        ticker.reset_after(Duration::from_millis(200).min(self.interval));
                        continue;
                    }
                    self.pass(known.workloads()).await;
                }
            }
        }
    }
}

impl ClusterView {
    fn tell(&mut self, change: Change<'_>) {
        for subscriber in &mut self.subscribers {
            subscriber.changed(change);
        }
    }

    /// Judges every workload and hands the pass to each subscriber in turn.
    async fn pass(&mut self, running: Vec<RunningWorkload>) {
        let started = std::time::Instant::now();
        let mut judged = Vec::with_capacity(running.len());
        for w in &running {
            let lookup = self.limits.lookup(&w.namespace, &w.deployment).await;
            judged.extend(status::judge(w.clone(), lookup, &self.policy));
        }
        // Ready once everything is judged: the gauges and Events follow at once, the reports
        // (API calls) may take a while longer and must not hold `/readyz`.
        self.ready.set();
        let pass = Pass { running: &running, judged: &judged, limits: self.limits.as_ref() };
        for subscriber in &mut self.subscribers {
            subscriber.pass(&pass).await;
        }
        self.metrics.audit.pass(started.elapsed().as_secs_f64());
    }

    /// Every subscriber finishes what it holds; the first that cannot is the error.
    async fn stop(mut self) -> Result<(), Unfinished> {
        let mut result = Ok(());
        for subscriber in &mut self.subscribers {
            if let Err(error) = subscriber.stop().await {
                tracing::error!(subscriber = subscriber.name(), %error, "could not finish on the way out");
                if result.is_ok() {
                    result = Err(SubscriberUnfinished { subscriber: subscriber.name(), error }.into());
                }
            }
        }
        tracing::info!("cluster view stopped");
        result
    }
}
