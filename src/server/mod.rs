//! Running the webhook: load the certificate and the registry, bind both listeners, watch the
//! files, and drain on a signal (see `shutdown`).

pub mod body;
pub mod connections;
pub mod routes;
pub mod shutdown;
pub mod tls;

use crate::certs::{self, CertError};
use crate::cluster::usage_log::UsageLog;
use crate::cluster::usage_state::StateStore;
use crate::config::{Config, seconds};
use crate::file_change::ChangeDetector;
use crate::json_lines::JsonLines;
use crate::limits::{self, LimitSource};
use crate::metrics::{Listener, Metrics};
use crate::webhook::Webhook;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {address} ({key}): {source}")]
    Bind { address: SocketAddr, key: &'static str, source: std::io::Error },
    #[error("serving certificate: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("development certificate: {0}")]
    DevCertificate(#[from] CertError),
    #[error("{0}")]
    Registry(#[from] limits::OpenError),
    #[error("events.enabled: no Kubernetes client configuration (in-cluster or kubeconfig): {0}")]
    Events(crate::words::KubeError),
    #[error("the audit needs a Kubernetes client (in-cluster or kubeconfig): {0}")]
    Audit(crate::words::KubeError),
    #[error("cannot listen for signals: {0}")]
    Signals(std::io::Error),
}

/// What `/readyz` reports on.
pub struct Health {
    limits: Arc<dyn LimitSource>,
    /// The webhook's serving certificate (the audit process serves no TLS).
    certificate: Option<Arc<tls::CertStore>>,
    /// Something else to wait for, and how to say it is not done (the audit's first pass).
    waiting_for: Option<(&'static str, Arc<AtomicBool>)>,
    shutting_down: AtomicBool,
}

impl Health {
    pub fn new(limits: Arc<dyn LimitSource>, certificate: Option<Arc<tls::CertStore>>) -> Self {
        Self { limits, certificate, waiting_for: None, shutting_down: AtomicBool::new(false) }
    }

    /// Not ready, saying `what`, until `done` turns true.
    pub fn waiting_for(mut self, what: &'static str, done: Arc<AtomicBool>) -> Self {
        self.waiting_for = Some((what, done));
        self
    }

    /// Why the process is not ready; empty when it is. (A certificate that cannot be loaded
    /// stops the start; one that expired while serving is reported here.)
    pub fn problems(&self) -> Vec<&'static str> {
        let mut problems = vec![];
        if self.certificate.as_ref().is_some_and(|c| c.expired()) {
            problems.push("serving certificate expired");
        }
        if let Some((what, done)) = &self.waiting_for
            && !done.load(Ordering::Acquire)
        {
            problems.push(what);
        }
        if !self.limits.is_ready() {
            problems.push("registry not read yet");
        }
        if self.shutting_down.load(Ordering::Acquire) {
            problems.push("shutting down");
        }
        problems
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }
}

/// A started webhook: where it listens, and what `shutdown::drain` needs to stop it.
pub struct Running {
    pub https_address: SocketAddr,
    pub admin_address: SocketAddr,
    pub metrics: Arc<Metrics>,
    health: Arc<Health>,
    delay: Duration,
    stop: watch::Sender<bool>,
    listeners: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
}

impl Running {
    /// Drains as on SIGTERM (see `shutdown`).
    pub async fn shutdown(self) {
        shutdown::drain(self).await;
    }
}

/// Starts the webhook and returns once both listeners accept connections.
pub async fn start(config: &Config, audit: JsonLines) -> Result<Running, ServerError> {
    start_with(config, audit, kube::Client::try_default).await
}

/// `start`, with the Kubernetes client for the ConfigMap source supplied by the caller (tests
/// point it at a fake API server).
pub async fn start_with(
    config: &Config,
    audit: JsonLines,
    kube_client: impl AsyncFnOnce() -> Result<kube::Client, kube::Error>,
) -> Result<Running, ServerError> {
    let metrics = Arc::new(Metrics::new());
    let (cert_store, cert_watch) = load_certificate(config, &metrics)?;
    let opened = limits::open(&config.registry, config.policy.platform_bounds, metrics.clone(), kube_client).await?;
    let mut background: Vec<JoinHandle<()>> = opened.refresher.into_iter().map(tokio::spawn).collect();
    background.push(tokio::spawn(cert_watch));
    let health = Arc::new(Health::new(opened.source.clone(), Some(cert_store.clone())));
    let mut webhook = Webhook::new(config.policy.clone(), opened.source, metrics.clone(), audit);
    if let Some(queue) = event_queue(config, &metrics, &mut background).await? {
        webhook = webhook.with_events(queue);
    }
    let webhook = Arc::new(webhook);

    let server = &config.server;
    let https_listener = bind(server.address, "server.address").await?;
    let admin_listener = bind(server.admin_address, "server.adminAddress").await?;
    let https_address = local_address(&https_listener, server.address, "server.address")?;
    let admin_address = local_address(&admin_listener, server.admin_address, "server.adminAddress")?;

    let (stop, stop_rx) = watch::channel(false);
    let admission = routes::admission(routes::AdmissionState {
        webhook,
        metrics: metrics.clone(),
        max_body_bytes: server.max_body_bytes,
        body_timeout: seconds(server.request_timeout_seconds),
        budget: body::BodyBudget::new(server.buffered_bytes_budget()),
    });
    let admin = routes::admin(routes::AdminState { health: health.clone(), metrics: metrics.clone() });
    let tls = tokio_rustls::TlsAcceptor::from(tls::server_config(cert_store));
    let https_task = tokio::spawn(connections::serve(
        https_listener,
        Some(tls),
        admission,
        stop_rx.clone(),
        connections::Bounds::from_config(server),
        metrics.connections(Listener::Admission),
    ));
    let admin_task = tokio::spawn(connections::serve(
        admin_listener,
        None,
        admin,
        stop_rx,
        connections::Bounds::from_config(server),
        metrics.connections(Listener::Admin),
    ));
    tracing::info!(%https_address, %admin_address, "replica-guard is serving");
    Ok(Running {
        https_address,
        admin_address,
        metrics,
        health,
        delay: seconds(server.shutdown_delay_seconds),
        stop,
        listeners: vec![https_task, admin_task],
        background,
    })
}

/// Loads the serving certificate (creating a development one first when configured) and returns
/// its store with the task that reloads it when the files change.
fn load_certificate(
    config: &Config,
    metrics: &Arc<Metrics>,
) -> Result<(Arc<tls::CertStore>, impl Future<Output = ()> + Send + 'static), ServerError> {
    let tls_config = &config.server.tls;
    if tls_config.generate_dev_certificate
        && certs::ensure_dev_certificate(&tls_config.cert_file, &tls_config.key_file)?
    {
        tracing::warn!(
            cert = %tls_config.cert_file.display(),
            "CREATED A SELF-SIGNED DEVELOPMENT CERTIFICATE (generateDevCertificate: true); never use this in production"
        );
    }
    // Made before the first read, so a change between that read and the first poll is seen.
    let detector = ChangeDetector::new([tls_config.cert_file.as_path(), tls_config.key_file.as_path()]);
    let certified = tls::load_certified_key(&tls_config.cert_file, &tls_config.key_file)?;
    tls::publish_expiry(&certified, metrics);
    let store = Arc::new(tls::CertStore::new(certified));
    let watch = tls::reload_on_change(
        store.clone(),
        detector,
        tls_config.cert_file.clone(),
        tls_config.key_file.clone(),
        seconds(tls_config.reload_interval_seconds),
        metrics.clone(),
    );
    Ok((store, watch))
}

/// The Event queue and its publisher task, when `events.enabled`.
async fn event_queue(
    config: &Config,
    metrics: &Arc<Metrics>,
    background: &mut Vec<JoinHandle<()>>,
) -> Result<Option<crate::events::EventQueue>, ServerError> {
    if !config.events.enabled {
        return Ok(None);
    }
    let client = kube::Client::try_default().await.map_err(|e| ServerError::Events(e.into()))?;
    let instance = std::env::var("POD_NAME").ok().or_else(|| std::env::var("HOSTNAME").ok());
    let reporter = kube::runtime::events::Reporter { controller: "replica-guard".into(), instance };
    let (queue, publisher) = crate::events::start(client, reporter, config.events.queue_size, metrics.clone());
    background.push(tokio::spawn(publisher));
    Ok(Some(queue))
}

/// `replica-guard watch`: the continuous audit with its admin listener (`/healthz`, `/readyz`
/// after the first complete pass, `/metrics` with the per-workload gauges), until SIGTERM.
pub async fn run_audit(config: &Config) -> Result<(), ServerError> {
    let signals = tokio::spawn(shutdown::signal_received());
    let metrics = Arc::new(Metrics::new());
    let opened =
        limits::open(&config.registry, config.policy.platform_bounds, metrics.clone(), kube::Client::try_default)
            .await?;
    let mut background: Vec<JoinHandle<()>> = opened.refresher.into_iter().map(tokio::spawn).collect();
    let events = event_queue(config, &metrics, &mut background).await?;
    let client = kube::Client::try_default().await.map_err(|e| ServerError::Audit(e.into()))?;
    let done = Arc::new(AtomicBool::new(false));
    let health =
        Arc::new(Health::new(opened.source.clone(), None).waiting_for("first audit pass not done", done.clone()));
    let usage = match &config.audit.usage {
        usage if usage.enabled => {
            let state = usage.state.as_ref().map(|s| StateStore::new(client.clone(), &s.namespace, &s.name));
            Some(UsageLog::start(state, JsonLines::stdout(), config.pricing, config.policy.clone()).await)
        }
        _ => None,
    };
    background.push(tokio::spawn(crate::cluster::watch::run(crate::cluster::watch::Audit {
        client,
        limits: opened.source,
        policy: config.policy.clone(),
        events,
        metrics: metrics.clone(),
        interval: seconds(config.audit.interval_seconds),
        ready: done,
        usage,
    })));
    let admin_listener = bind(config.server.admin_address, "server.adminAddress").await?;
    let admin_address = local_address(&admin_listener, config.server.admin_address, "server.adminAddress")?;
    let (stop, stop_rx) = watch::channel(false);
    let admin = routes::admin(routes::AdminState { health: health.clone(), metrics: metrics.clone() });
    let listener = tokio::spawn(connections::serve(
        admin_listener,
        None,
        admin,
        stop_rx,
        connections::Bounds::from_config(&config.server),
        metrics.connections(Listener::Admin),
    ));
    tracing::info!(%admin_address, "replica-guard audit is watching the cluster");
    let signal =
        signals.await.map_err(|e| ServerError::Signals(std::io::Error::other(e)))?.map_err(ServerError::Signals)?;
    tracing::info!(signal, "received; stopping");
    health.begin_shutdown();
    let _ = stop.send(true);
    let _ = listener.await;
    for task in background {
        task.abort();
    }
    Ok(())
}

async fn bind(address: SocketAddr, key: &'static str) -> Result<TcpListener, ServerError> {
    TcpListener::bind(address).await.map_err(|source| ServerError::Bind { address, key, source })
}

fn local_address(listener: &TcpListener, address: SocketAddr, key: &'static str) -> Result<SocketAddr, ServerError> {
    listener.local_addr().map_err(|source| ServerError::Bind { address, key, source })
}

/// Starts the webhook and runs it until SIGTERM or SIGINT, then drains. A second signal during
/// the drain exits at once.
pub async fn run(config: &Config) -> Result<(), ServerError> {
    let signals = tokio::spawn(shutdown::signal_received());
    let running = start(config, JsonLines::stdout()).await?;
    let signal =
        signals.await.map_err(|e| ServerError::Signals(std::io::Error::other(e)))?.map_err(ServerError::Signals)?;
    tracing::info!(signal, "received");
    tokio::spawn(async {
        if let Ok(signal) = shutdown::signal_received().await {
            tracing::warn!(signal, "received again while draining; exiting now");
            std::process::exit(1);
        }
    });
    running.shutdown().await;
    Ok(())
}
