//! Where each process is put together, one file per command: `serve` (the webhook), `watch`
//! (the continuous audit) and `offline` (`check`, `audit`, `certs`). The long-running two share
//! one `Lifecycle` (health, listeners, background tasks) and one `shutdown` (what SIGTERM does);
//! each process makes at most one Kubernetes client and hands it to every part that needs it.
//! Only this layer knows both the admission side (`server`, `webhook`) and the cluster side
//! (`cluster`, `events`); they never import each other.

pub mod audit;
pub mod lifecycle;
pub mod offline;
pub mod serve;
pub mod shutdown;
pub mod usage;
pub mod watch;

use crate::config::Config;
use crate::events::EventQueue;
use crate::metrics::Metrics;
use crate::words::KubeError;
use std::net::SocketAddr;
use std::sync::Arc;

/// Why a command could not do its job; every message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot listen on {address} ({key}): {error}")]
    Bind { address: SocketAddr, key: &'static str, error: std::io::Error },
    #[error("serving certificate: {0}")]
    Tls(#[from] crate::server::tls::TlsError),
    #[error("{0}")]
    Callers(#[from] crate::server::callers::CallersError),
    #[error("{0}")]
    Usage(#[from] usage::UsageError),
    #[error("{0}")]
    Registry(#[from] crate::limits::OpenError),
    #[error("the registry could not be read: {0}")]
    RegistryNotRead(String),
    #[error("the registry did not answer within 10 s")]
    RegistryTimeout,
    #[error("{needed_by}: no Kubernetes client configuration (in-cluster or kubeconfig): {error}")]
    Client { needed_by: &'static str, error: KubeError },
    #[error("{0}")]
    Inventory(#[from] crate::cluster::inventory::InventoryError),
    #[error("--all-contexts: the kubeconfig has no contexts")]
    NoContexts,
    #[error("did not answer within {0} s")]
    ClusterTimeout(u64),
    #[error("--cluster: cannot read the live objects: {0}")]
    Live(crate::cluster::inventory::InventoryError),
    #[error("{0}")]
    Input(#[from] crate::check::input::InputError),
    #[error("{0}")]
    Certs(#[from] crate::certs::CertError),
    #[error("cannot listen for signals: {0}")]
    Signals(std::io::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot write the output: {0}")]
    Output(std::io::Error),
}

/// The process's Kubernetes client, made once from `make` for the first part that needs it
/// (`needed_by` names that part in the error when there is no configuration).
pub async fn client(
    make: impl AsyncFnOnce() -> Result<kube::Client, kube::Error>,
    needed_by: &'static str,
) -> Result<kube::Client, RunError> {
    make().await.map_err(|e| RunError::Client { needed_by, error: e.into() })
}

/// The Event queue and its publisher task, when `events.enabled`, reporting as this pod.
fn event_queue(
    config: &Config,
    client: Option<&kube::Client>,
    metrics: &Arc<Metrics>,
    lifecycle: &mut lifecycle::Lifecycle,
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
    // Ends once every sender is gone (the webhook's connections, the audit), having sent what
    // was queued: waited for on the way out, not aborted.
    lifecycle.spawn_drained("event publisher", publisher);
    Some(queue)
}
