//! The HTTPS admission listener: TLS handshakes, HTTP/1.1 keep-alive and HTTP/2 on the same
//! port (chosen by ALPN), and a graceful drain when told to stop.

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// For the TLS handshake, and then for each request's headers: a client that opens a
    /// connection and trickles bytes (slowloris) must not hold it forever.
    pub header: Duration,
    /// After `stop`, how long open connections get to finish their in-flight requests.
    pub grace: Duration,
}

/// Serves until `stop` turns true, then stops accepting and gives open connections up to
/// `timeouts.grace` to finish their in-flight requests (HTTP/1.1 connections close after their
/// current response, HTTP/2 ones get a GOAWAY).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    app: Router,
    mut stop: watch::Receiver<bool>,
    timeouts: Timeouts,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(timeouts.header).keep_alive(true);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(Duration::from_secs(30));
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(app.clone());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(timeouts.header, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            let connection = builder.serve_connection(TokioIo::new(tls), service).into_owned();
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(timeouts.grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            grace_seconds = timeouts.grace.as_secs_f64(),
            "connections still open after the shutdown timeout; closing them"
        );
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    // A dropped sender also means stop.
    let _ = stop.wait_for(|stop| *stop).await;
}
