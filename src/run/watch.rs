//! `replica-guard watch` (the chart's audit Deployment): reads the registry, runs the cluster view
//! (`cluster::view`) with its subscribers — announcements (Events, gauges), usage records, policy
//! reports — and the backstop writer, serves the admin listener (`/readyz` after the first complete
//! pass), and drains on SIGTERM like the webhook (`shutdown`).

use super::RunError;
use super::client::{client, event_queue};
use super::lifecycle::Lifecycle;
use super::shutdown::Signals;
use crate::cluster::announce::Announcer;
use crate::cluster::reports::Reports;
use crate::cluster::usage::log::UsageLog;
use crate::cluster::usage::state::StateStore;
use crate::cluster::view::{ClusterView, Subscriber};
use crate::config::{Config, seconds};
use crate::json_lines::JsonLines;
use crate::limits;
use crate::metrics::{Metrics, Process};
use std::net::SocketAddr;
use std::sync::Arc;

/// A started `watch`: where its admin listener is, and its lifecycle to stop it.
pub struct Running {
    pub admin_address: SocketAddr,
    lifecycle: Lifecycle,
}

impl Running {
    /// Drains as on SIGTERM (`shutdown`); returns the parts that could not finish.
    pub async fn shutdown(self) -> Vec<&'static str> {
        self.lifecycle.drain().await
    }
}

/// Starts `watch` with the Kubernetes client `kube_client` makes (the one client
/// of the process: the registry's ConfigMap, the watches, Events, PolicyReports, the usage state).
pub async fn start_with(
    config: &Config,
    kube_client: impl AsyncFnOnce() -> Result<kube::Client, kube::Error>,
) -> Result<Running, RunError> {
    let metrics = Arc::new(Metrics::exported_by(Process::Watch, config.metrics));
    let kube = client(kube_client, "replica-guard watch").await?;
    let mut config = config.clone();
    config.cluster.name = cluster_name(&config, &kube).await;
    let config = &config;
    let opened =
        limits::open(&config.registry, config.policy.platform_bounds, metrics.clone(), Some(kube.clone())).await?;
    let mut lifecycle = Lifecycle::new(&config.server);
    let first_pass = lifecycle.readiness("first audit pass not done");
    let limits = opened.source.clone();
    lifecycle.health.require("registry not read yet", move || limits.is_ready());
    if let Some(refresh) = opened.refresh {
        lifecycle.spawn(refresh);
    }
    let events = event_queue(config, Some(&kube), &metrics, &mut lifecycle);
    let mut usage = match &config.audit.usage {
        usage if usage.enabled => {
            let state =
                usage.state.as_ref().map(|s| StateStore::new(kube.clone(), &s.namespace, &s.name, metrics.clone()));
            let cluster = config.cluster.name.clone().unwrap_or_default();
            Some(UsageLog::start(cluster, state, JsonLines::stdout(), config.pricing, config.policy.clone()).await)
        }
        _ => None,
    };
    if config.backstop.enabled {
        match &opened.snapshot {
            Some(store) => {
                let writer = crate::backstop::writer::Writer {
                    client: kube.clone(),
                    store: store.clone(),
                    policy: config.policy.clone(),
                    resync: seconds(config.audit.interval_seconds),
                    metrics: metrics.clone(),
                    // Validated with the config.
                    scope: config.backstop.scope().ok().flatten(),
                };
                lifecycle.spawn(writer);
            }
            None => tracing::warn!(
                "backstop.enabled, but registry.http is asked per workload: there is no whole registry to write the backstop's parameters from; the backstop enforces nothing"
            ),
        }
    }
    // Who stood announced over their limits when the last `watch` stopped (saved with the day).
    let restored = usage.as_mut().and_then(UsageLog::take_restored_over);
    let mut subscribers: Vec<Box<dyn Subscriber>> = vec![Box::new(Announcer::new(events, metrics.clone(), restored))];
    if let Some(usage) = usage {
        subscribers.push(Box::new(usage));
    }
    subscribers.push(Box::new(Reports::new(kube.clone(), config.audit.reports, config.cluster.name.clone())));
    lifecycle.spawn(ClusterView {
        client: kube,
        limits: opened.source,
        policy: config.policy.clone(),
        metrics: metrics.clone(),
        interval: seconds(config.audit.interval_seconds),
        ready: first_pass,
        subscribers,
    });
    let admin_address = lifecycle.admin(config.server.admin_address, &metrics).await?;
    tracing::info!(%admin_address, "replica-guard audit is watching the cluster");
    Ok(Running { admin_address, lifecycle })
}

/// `cluster.name`, or when none is set, the `kube-system` namespace's UID: unique and stable for
/// the cluster's life and readable everywhere (the chart grants `get` on that one namespace), so a
/// first install needs no name and its usage records still tell clusters apart. Said loudly: a
/// readable name is what a billing table wants.
pub(super) async fn cluster_name(config: &Config, kube: &kube::Client) -> Option<String> {
    if let Some(name) = &config.cluster.name {
        return Some(name.clone());
    }
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(kube.clone());
    match namespaces.get_metadata("kube-system").await {
        Ok(ns) => {
            let uid = ns.metadata.uid?;
            tracing::warn!(
                cluster = %uid,
                "cluster.name is not set: usage records, reports and Events name this cluster by its kube-system namespace's UID; set cluster.name (e.g. prod-eu-1) for a readable name"
            );
            Some(uid)
        }
        Err(e) => {
            tracing::warn!(
                error = %crate::words::KubeError(e),
                "cluster.name is not set and the kube-system namespace cannot be read: records carry no cluster name; set cluster.name"
            );
            None
        }
    }
}

/// Runs `watch` until SIGTERM or SIGINT, then drains.
pub async fn run(config: &Config) -> Result<(), RunError> {
    let signals = Signals::listen()?;
    let running = start_with(config, kube::Client::try_default).await?;
    running.lifecycle.run_until_signal(signals).await
}
