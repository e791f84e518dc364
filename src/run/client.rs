//! The process's Kubernetes client, and the Event queue that reports through it.

use super::RunError;
use super::lifecycle::Lifecycle;
use crate::config::Config;
use crate::events::EventQueue;
use crate::metrics::Metrics;
use std::sync::Arc;

/// The process's Kubernetes client, made once from `make` for the first part that needs it
/// (`needed_by` names that part in the error when there is no configuration).
pub async fn client(
    make: impl AsyncFnOnce() -> Result<kube::Client, kube::Error>,
    needed_by: &'static str,
) -> Result<kube::Client, RunError> {
    make().await.map_err(|e| RunError::Client { needed_by, error: e.into() })
}

/// The Event queue and its publisher task, when `events.enabled`, reporting as this pod.
pub(super) fn event_queue(
    config: &Config,
    client: Option<&kube::Client>,
    metrics: &Arc<Metrics>,
    lifecycle: &mut Lifecycle,
) -> Option<EventQueue> {
    let client = client.filter(|_| config.events.enabled)?;
    // The reporting instance names the cluster too, so that Events forwarded from many clusters
    // into one sink tell them apart: `prod-eu-1/replica-guard-7d9f-abcde`.
    let pod = std::env::var("POD_NAME").ok().or_else(|| std::env::var("HOSTNAME").ok());
    let instance = match (&config.cluster.name, pod) {
        (Some(cluster), Some(pod)) => Some(format!("{cluster}/{pod}")),
        (Some(cluster), None) => Some(cluster.clone()),
        (None, pod) => pod,
    }
    .map(|mut i| {
        while i.len() > 128 {
            i.pop();
        }
        i
    });
    let reporter = kube::runtime::events::Reporter { controller: "replica-guard".into(), instance };
    let (queue, publisher) = crate::events::start(client.clone(), reporter, config.events.queue_size, metrics.clone());
    lifecycle.spawn(publisher);
    Some(queue)
}
