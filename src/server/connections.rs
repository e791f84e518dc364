//! Accepting and serving connections, for both listeners (HTTPS admission and plain-HTTP admin).
//!
//! Every phase of a connection has a bound, so no client can hold one for ever:
//! - at most `server.maxConnections` open at once (further clients wait in the kernel's backlog);
//! - the TLS handshake within `server.headerTimeoutSeconds`;
//! - the protocol is chosen by ALPN during the handshake (`h2` or HTTP/1.1), never by waiting
//!   for the client's first bytes;
//! - the first request within `server.headerTimeoutSeconds` of the handshake, each HTTP/1.1
//!   request's headers within the same time (hyper's header timeout);
//! - between requests, a connection with nothing in flight is closed after
//!   `server.idleTimeoutSeconds` (HTTP/2 with a GOAWAY);
//! - after `stop`, open connections finish their in-flight requests within
//!   `server.shutdownTimeoutSeconds`, and are then dropped;
//! - a connection asked to close (idle, or stopping) that does not is dropped.
//!
//! Memory per connection is bounded too: hyper's HTTP/1.1 read buffer and the HTTP/2 flow-control
//! windows are set small (request bodies are held to a budget in `routes`, not here).

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

pub use crate::metrics::ConnectionMetrics;

/// The bounds of every connection (see the module doc).
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub header: Duration,
    pub idle: Duration,
    pub grace: Duration,
    pub max_connections: usize,
}

impl Bounds {
    pub fn from_config(server: &crate::config::ServerConfig) -> Self {
        use crate::config::seconds;
        Self {
            header: seconds(server.header_timeout_seconds),
            idle: seconds(server.idle_timeout_seconds),
            grace: seconds(server.shutdown_timeout_seconds),
            max_connections: server.max_connections,
        }
    }
}

/// The config's defaults.
impl Default for Bounds {
    fn default() -> Self {
        Self::from_config(&crate::config::ServerConfig::default())
    }
}

/// HTTP/1.1 read buffer: request headers are small; bodies stream through it.
const H1_MAX_BUF: usize = 64 * 1024;
/// HTTP/2 windows: how much unread body one connection can make us buffer.
const H2_WINDOW: u32 = 128 * 1024;
const H2_MAX_STREAMS: u32 = 64;

/// Serves `listener` until `stop` turns true (TLS when `tls` is given), then drains (see the
/// module doc) and returns.
/// A TLS listener's handshake, and who may call it (`server.tls.clientAuth`; none: anyone).
#[derive(Clone)]
pub struct Tls {
    pub acceptor: TlsAcceptor,
    pub callers: Option<Arc<super::callers::Callers>>,
}

impl Tls {
    /// A handshake that asks for no client certificate: anyone may call.
    pub fn for_anyone(config: Arc<rustls::ServerConfig>) -> Self {
        Self { acceptor: TlsAcceptor::from(config), callers: None }
    }
}

pub async fn serve(
    listener: TcpListener,
    tls: Option<Tls>,
    app: Router,
    mut stop: watch::Receiver<bool>,
    limits: Bounds,
    metrics: ConnectionMetrics,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                metrics.at_limit.inc();
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot { Ok(s) => s, Err(_) => break },
                    () = stopped(&mut stop) => break,
                    // Reap finished connections while waiting, so their slots come back.
                    Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                }
            }
        };
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
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let _ = tcp.set_nodelay(true);
        let (tls, app, stop, open) = (tls.clone(), app.clone(), stop.clone(), metrics.open.clone());
        connections.spawn(async move {
            open.inc();
            serve_connection(tcp, peer, tls, app, stop, limits).await;
            open.dec();
            drop(slot);
        });
    }
    drop(listener);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.grace, drained).await.is_err() {
        tracing::warn!(
            grace_seconds = limits.grace.as_secs_f64(),
            open = connections.len(),
            "connections still open after the shutdown timeout; closing them"
        );
        connections.shutdown().await;
    }
}

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<Tls>,
    app: Router,
    mut stop: watch::Receiver<bool>,
    limits: Bounds,
) {
    let activity = Activity::new();
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let in_flight = activity.begin();
            let call = app.clone().oneshot(request.map(Body::new));
            async move {
                let response = call.await;
                drop(in_flight);
                response
            }
        })
    };
    let Some(Tls { acceptor, callers }) = tls else {
        let conn = h1(limits).serve_connection(TokioIo::new(tcp), service);
        return drive(conn, peer, &activity, &mut stop, limits).await;
    };
    let stream = match tokio::time::timeout(limits.header, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            if let Some(callers) = &callers {
                callers.handshake_failed(&e);
            }
            return tracing::debug!(%peer, error = %e, "TLS handshake failed");
        }
        Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
    };
    // A certificate the CA signed, but not one of the allowed callers: closed unread.
    if let Some(callers) = &callers
        && !callers.admits(stream.get_ref().1.peer_certificates())
    {
        return;
    }
    activity.touch();
    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
        let conn = h2().serve_connection(TokioIo::new(stream), service);
        drive(conn, peer, &activity, &mut stop, limits).await
    } else {
        let conn = h1(limits).serve_connection(TokioIo::new(stream), service);
        drive(conn, peer, &activity, &mut stop, limits).await
    }
}

fn h1(limits: Bounds) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new()).header_read_timeout(limits.header).keep_alive(true).max_buf_size(H1_MAX_BUF);
    b
}

fn h2() -> http2::Builder<TokioExecutor> {
    let mut b = http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30))
        .initial_stream_window_size(H2_WINDOW)
        .initial_connection_window_size(H2_WINDOW)
        .max_concurrent_streams(H2_MAX_STREAMS);
    b
}

/// Runs one connection until it ends. On `stop` or when idle it is asked to close gracefully
/// (in-flight requests finish); one that has not closed `header` later (hyper cannot close an
/// HTTP/2 connection still waiting for its preface) is dropped.
async fn drive<C>(conn: C, peer: SocketAddr, activity: &Activity, stop: &mut watch::Receiver<bool>, limits: Bounds)
where
    C: GracefulConnection<Error = hyper::Error>,
{
    let mut conn = pin!(conn);
    // Set once the connection was asked to close: when it is dropped if it has not.
    let mut drop_at: Option<Instant> = None;
    loop {
        let idle_at = activity.idle_deadline(limits);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = activity.changed() => {}
            () = stopped(stop), if drop_at.is_none() => {
                conn.as_mut().graceful_shutdown();
                drop_at = Some(Instant::now() + limits.grace);
            }
            () = sleep_until(idle_at), if drop_at.is_none() && idle_at.is_some() => {
                if activity.idle_deadline(limits).is_some_and(|at| at <= Instant::now()) {
                    tracing::debug!(%peer, "closing an idle connection");
                    conn.as_mut().graceful_shutdown();
                    drop_at = Some(Instant::now() + limits.header);
                }
            }
            () = sleep_until(drop_at) => {
                tracing::debug!(%peer, "connection did not close when asked; dropping it");
                return;
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    // A dropped sender also means stop.
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Requests in flight on one connection, and when it last had one: a connection is idle when
/// nothing is in flight. Counted per request rather than per byte, so HTTP/2 pings do not keep
/// an unused connection open.
#[derive(Clone)]
struct Activity(Arc<ActivityState>);

struct ActivityState {
    in_flight: AtomicUsize,
    requests: AtomicU64,
    since: Mutex<Instant>,
    /// Wakes the connection's watchdog when a request ends, so it re-arms its idle deadline.
    changed: Notify,
}

/// Ends a request's activity when dropped (also when the request is cancelled).
struct InFlight(Activity);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.0.changed.notify_one();
    }
}

impl Activity {
    fn new() -> Self {
        Self(Arc::new(ActivityState {
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            since: Mutex::new(Instant::now()),
            changed: Notify::new(),
        }))
    }

    async fn changed(&self) {
        self.0.changed.notified().await;
    }

    fn begin(&self) -> InFlight {
        self.0.in_flight.fetch_add(1, Ordering::AcqRel);
        self.0.requests.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    fn touch(&self) {
        *self.0.since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// When the connection counts as idle: `header` after the handshake until its first
    /// request, `idle` after its last one; None while a request is in flight.
    fn idle_deadline(&self, limits: Bounds) -> Option<Instant> {
        if self.0.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let wait = if self.0.requests.load(Ordering::Relaxed) == 0 { limits.header } else { limits.idle };
        Some(*self.0.since.lock().unwrap_or_else(|p| p.into_inner()) + wait)
    }
}
