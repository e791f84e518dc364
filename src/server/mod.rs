//! Running the webhook: load the certificate and the registry, bind both listeners, watch the
//! files, and drain on a signal (see `shutdown`).

pub mod https;
pub mod routes;
pub mod shutdown;
pub mod tls;

use crate::audit::AuditLog;
use crate::certs::{self, CertError};
use crate::config::{Config, seconds};
use crate::limits::{self, LimitSource};
use crate::metrics::Metrics;
use crate::watch::ChangeDetector;
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
    #[error("cannot listen for signals: {0}")]
    Signals(std::io::Error),
}

/// What `/readyz` reports on.
pub struct Health {
    limits: Arc<dyn LimitSource>,
    certificate_loaded: AtomicBool,
    shutting_down: AtomicBool,
}

impl Health {
    pub fn new(limits: Arc<dyn LimitSource>) -> Self {
        Self { limits, certificate_loaded: AtomicBool::new(false), shutting_down: AtomicBool::new(false) }
    }

    /// Why the webhook is not ready; empty when it is.
    pub fn problems(&self) -> Vec<&'static str> {
        let mut problems = vec![];
        if !self.certificate_loaded.load(Ordering::Acquire) {
            problems.push("serving certificate not loaded");
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
pub async fn start(config: &Config, audit: AuditLog) -> Result<Running, ServerError> {
    start_with(config, audit, kube::Client::try_default).await
}

/// `start`, with the Kubernetes client for the ConfigMap source supplied by the caller (tests
/// point it at a fake API server).
pub async fn start_with(
    config: &Config,
    audit: AuditLog,
    kube_client: impl AsyncFnOnce() -> Result<kube::Client, kube::Error>,
) -> Result<Running, ServerError> {
    let metrics = Arc::new(Metrics::new());
    let tls_config = &config.server.tls;
    if tls_config.generate_dev_certificate
        && certs::ensure_dev_certificate(&tls_config.cert_file, &tls_config.key_file)?
    {
        tracing::warn!(
            cert = %tls_config.cert_file.display(),
            "CREATED A SELF-SIGNED DEVELOPMENT CERTIFICATE (generateDevCertificate: true); never use this in production"
        );
    }
    let cert_detector = ChangeDetector::new([tls_config.cert_file.as_path(), tls_config.key_file.as_path()]);
    let certified = tls::load_certified_key(&tls_config.cert_file, &tls_config.key_file)?;
    tls::publish_expiry(&certified, &metrics);
    let cert_store = Arc::new(tls::CertStore::new(certified));

    let opened = limits::open(&config.registry, config.policy.platform_bounds, metrics.clone(), kube_client).await?;
    let mut background: Vec<JoinHandle<()>> = opened.refresher.into_iter().map(tokio::spawn).collect();
    let limits = opened.source;
    let health = Arc::new(Health::new(limits.clone()));
    health.certificate_loaded.store(true, Ordering::Release);
    background.push(tokio::spawn(tls::watch(
        cert_store.clone(),
        cert_detector,
        tls_config.cert_file.clone(),
        tls_config.key_file.clone(),
        seconds(tls_config.reload_interval_seconds),
        metrics.clone(),
    )));

    let webhook = Arc::new(Webhook::new(config.policy.clone(), limits, metrics.clone(), audit));
    let bind = |address: SocketAddr, key: &'static str| async move {
        TcpListener::bind(address).await.map_err(|source| ServerError::Bind { address, key, source })
    };
    let https_listener = bind(config.server.address, "server.address").await?;
    let admin_listener = bind(config.server.admin_address, "server.adminAddress").await?;
    let https_address = https_listener.local_addr().map_err(|source| ServerError::Bind {
        address: config.server.address,
        key: "server.address",
        source,
    })?;
    let admin_address = admin_listener.local_addr().map_err(|source| ServerError::Bind {
        address: config.server.admin_address,
        key: "server.adminAddress",
        source,
    })?;

    let (stop, stop_rx) = watch::channel(false);
    let timeouts = https::Timeouts {
        header: seconds(config.server.header_timeout_seconds),
        grace: seconds(config.server.shutdown_timeout_seconds),
    };
    let admission = routes::admission(routes::AdmissionState {
        webhook,
        metrics: metrics.clone(),
        max_body_bytes: config.server.max_body_bytes,
        body_timeout: seconds(config.server.request_timeout_seconds),
    });
    let admin = routes::admin(routes::AdminState { health: health.clone(), metrics: metrics.clone() });
    let https_task = tokio::spawn(https::serve(
        https_listener,
        tls::server_config(cert_store),
        admission,
        stop_rx.clone(),
        timeouts,
    ));
    let mut admin_stop = stop_rx;
    let admin_task = tokio::spawn(async move {
        let stopped = async move {
            let _ = admin_stop.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(admin_listener, admin).with_graceful_shutdown(stopped).await {
            tracing::error!(error = %e, "admin listener failed");
        }
    });
    tracing::info!(%https_address, %admin_address, "replica-guard is serving");
    Ok(Running {
        https_address,
        admin_address,
        metrics,
        health,
        delay: seconds(config.server.shutdown_delay_seconds),
        stop,
        listeners: vec![https_task, admin_task],
        background,
    })
}

/// Starts the webhook and runs it until SIGTERM or SIGINT, then drains.
pub async fn run(config: &Config) -> Result<(), ServerError> {
    let signals = tokio::spawn(shutdown::signal_received());
    let running = start(config, AuditLog::stdout()).await?;
    let signal =
        signals.await.map_err(|e| ServerError::Signals(std::io::Error::other(e)))?.map_err(ServerError::Signals)?;
    tracing::info!(signal, "received");
    running.shutdown().await;
    Ok(())
}
