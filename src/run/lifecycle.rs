//! The one lifecycle of a long-running process (`serve`, `watch`): what it reports as health
//! (the readiness each part reports through its handle), the listeners it serves, the parts it
//! runs (`part::Part`: registry refresh, certificate reload, Event publisher, backstop writer,
//! cluster view) with the stop signal it hands each of them, and how all of them stop (`shutdown`).

use super::RunError;
use crate::config::{ServerConfig, seconds};
use crate::metrics::{ConnectionMetrics, Listener, Metrics};
use crate::part::{Part, Ready, Stop, Unfinished};
use crate::server::health::Health;
use crate::server::{connections, routes};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Lifecycle {
    pub health: Arc<Health>,
    bounds: connections::Bounds,
    /// After SIGTERM: how long to keep serving while not ready (`server.shutdownDelaySeconds`).
    pub(super) delay: Duration,
    pub(super) stop: watch::Sender<bool>,
    pub(super) listeners: Vec<JoinHandle<()>>,
    /// The parts, told to stop and waited for on the way out.
    pub(super) parts: Vec<(&'static str, JoinHandle<Result<(), Unfinished>>)>,
    /// How long the parts may take to finish (`server.shutdownTimeoutSeconds`).
    pub(super) grace: Duration,
}

impl Lifecycle {
    /// A lifecycle whose `/readyz` holds no condition yet: the parts add theirs (`health`).
    pub fn new(server: &ServerConfig) -> Self {
        Self {
            health: Arc::new(Health::default()),
            bounds: connections::Bounds::from_config(server),
            delay: seconds(server.shutdown_delay_seconds),
            stop: watch::channel(false).0,
            listeners: vec![],
            parts: vec![],
            grace: seconds(server.shutdown_timeout_seconds),
        }
    }

    /// Runs `part` until the process stops; then it is told to, and waited for (within
    /// `server.shutdownTimeoutSeconds`) while it finishes what it holds.
    pub fn spawn(&mut self, part: impl Part) {
        let stop = Stop::new(self.stop.subscribe());
        self.parts.push((part.name(), tokio::spawn(part.run(stop))));
    }

    /// A readiness the part it is given to reports: `/readyz` says `problem` until it is set.
    pub fn readiness(&self, problem: &'static str) -> Ready {
        self.health.reported(problem)
    }

    /// Binds `address` (the config key `key` names it in errors) and serves `app` on it, with TLS
    /// when `tls` is given, under the connection bounds; returns where it listens.
    pub async fn listen(
        &mut self,
        address: SocketAddr,
        key: &'static str,
        tls: Option<connections::Tls>,
        app: axum::Router,
        metrics: ConnectionMetrics,
    ) -> Result<SocketAddr, RunError> {
        let bind = |error| RunError::Bind { address, key, error };
        let listener = TcpListener::bind(address).await.map_err(bind)?;
        let local = listener.local_addr().map_err(bind)?;
        let stop = self.stop.subscribe();
        self.listeners.push(tokio::spawn(connections::serve(listener, tls, app, stop, self.bounds, metrics)));
        Ok(local)
    }

    /// The admin listener (`server.adminAddress`): `/healthz`, `/readyz` from this lifecycle's
    /// health, `/metrics`.
    pub async fn admin(&mut self, address: SocketAddr, metrics: &Arc<Metrics>) -> Result<SocketAddr, RunError> {
        let app = routes::admin(routes::AdminState { health: self.health.clone(), metrics: metrics.clone() });
        self.listen(address, "server.adminAddress", None, app, metrics.server.connections(Listener::Admin)).await
    }
}
