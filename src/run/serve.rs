//! `replica-guard serve`: the webhook. Loads the serving certificate and the registry, binds the
//! admission and admin listeners, keeps the certificate, the registry and the Event publisher
//! current in the background, and drains on SIGTERM (`shutdown`).

use super::RunError;
use super::client::{client, event_queue};
use super::lifecycle::Lifecycle;
use super::shutdown::Signals;
use crate::config::{Config, Source, seconds};
use crate::json_lines::JsonLines;
use crate::limits;
use crate::metrics::{Listener, Metrics, Process};
use crate::part::Helper;
use crate::server::callers::Callers;
use crate::server::{body, connections, routes, tls};
use crate::webhook::Webhook;
use std::net::SocketAddr;
use std::sync::Arc;

/// A started webhook: where it listens, and its lifecycle to stop it.
pub struct Running {
    pub https_address: SocketAddr,
    pub admin_address: SocketAddr,
    pub metrics: Arc<Metrics>,
    lifecycle: Lifecycle,
}

impl Running {
    /// Drains as on SIGTERM (`shutdown`); returns the parts that could not finish.
    pub async fn shutdown(self) -> Vec<&'static str> {
        self.lifecycle.drain().await
    }
}

/// Starts the webhook and returns once both listeners accept connections.
pub async fn start(config: &Config, records: JsonLines) -> Result<Running, RunError> {
    start_with(config, records, kube::Client::try_default).await
}

/// `start`, with the Kubernetes client made by `kube_client` (tests point it at a fake API
/// server); it is made only when something needs it: the ConfigMap source, or Events.
pub async fn start_with(
    config: &Config,
    records: JsonLines,
    kube_client: impl AsyncFnOnce() -> Result<kube::Client, kube::Error>,
) -> Result<Running, RunError> {
    let metrics = Arc::new(Metrics::exported_by(Process::Webhook, config.metrics));
    let (certificate, reload_certificate) = tls::load(&config.server.tls, &metrics)?;
    let needed_by = match config.registry.source() {
        Source::ConfigMap(_) => Some("registry.configMap"),
        _ if config.events.enabled => Some("events.enabled"),
        _ => None,
    };
    let kube = match needed_by {
        Some(needed_by) => Some(client(kube_client, needed_by).await?),
        None => None,
    };
    let opened = limits::open(&config.registry, config.policy.platform_bounds, metrics.clone(), kube.clone()).await?;
    let mut lifecycle = Lifecycle::new(&config.server);
    let serving = certificate.clone();
    lifecycle.health.require("serving certificate expired", move || !serving.expired());
    let limits = opened.source.clone();
    lifecycle.health.require("registry not read yet", move || limits.is_ready());
    if let Some(refresh) = opened.refresh {
        lifecycle.spawn(refresh);
    }
    lifecycle.spawn(Helper { name: "certificate reload", task: reload_certificate });
    let mut webhook = Webhook::new(config.policy.clone(), opened.source, metrics.clone(), records)
        .with_reread(seconds(config.registry.cache.reread_timeout_seconds));
    if let Some(queue) = event_queue(config, kube.as_ref(), &metrics, &mut lifecycle) {
        webhook = webhook.with_events(queue);
    }
    let server = &config.server;
    let admission = routes::admission(routes::AdmissionState {
        webhook: Arc::new(webhook),
        metrics: metrics.clone(),
        max_body_bytes: server.max_body_bytes,
        body_timeout: seconds(server.request_timeout_seconds),
        budget: body::BodyBudget::new(server.buffered_bytes_budget()),
    });
    let callers = match &server.tls.client_auth {
        Some(auth) => Some(Arc::new(Callers::load(&auth.ca_file, &auth.names, metrics.clone())?)),
        None => None,
    };
    let acceptor =
        tokio_rustls::TlsAcceptor::from(tls::server_config(certificate, callers.as_ref().map(|c| c.verifier())));
    let tls = connections::Tls { acceptor, callers };
    let connections = metrics.server.connections(Listener::Admission);
    let https_address = lifecycle.listen(server.address, "server.address", Some(tls), admission, connections).await?;
    let admin_address = lifecycle.admin(server.admin_address, &metrics).await?;
    tracing::info!(%https_address, %admin_address, "replica-guard is serving");
    Ok(Running { https_address, admin_address, metrics, lifecycle })
}

/// Runs the webhook until SIGTERM or SIGINT, then drains.
pub async fn run(config: &Config) -> Result<(), RunError> {
    let signals = Signals::listen()?;
    let running = start(config, JsonLines::stdout()).await?;
    running.lifecycle.run_until_signal(signals).await
}
