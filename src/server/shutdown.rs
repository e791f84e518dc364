//! What the server does on SIGTERM (kubelet stopping the pod) or SIGINT (Ctrl-C):
//!
//! 1. `/readyz` turns 503 at once, so the Service stops routing new connections here;
//! 2. the listeners keep serving for `server.shutdownDelaySeconds`, while endpoints propagate
//!    (the API server may still open connections to this pod during that time);
//! 3. the listeners stop accepting; open connections finish their in-flight requests within
//!    `server.shutdownTimeoutSeconds` (keep-alive connections are closed after their response);
//! 4. the process exits 0.
//!
//! A second SIGTERM or SIGINT during the drain exits at once (status 1): someone wants it gone now.

use tokio::signal::unix::{SignalKind, signal};

/// Resolves with the signal's name when SIGTERM or SIGINT arrives.
pub async fn signal_received() -> std::io::Result<&'static str> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// Steps 1 to 3 above; returns when every listener has drained.
pub async fn drain(running: super::Running) {
    running.health.begin_shutdown();
    tracing::info!(
        delay_seconds = running.delay.as_secs_f64(),
        "shutting down: not ready; still serving during the delay"
    );
    tokio::time::sleep(running.delay).await;
    let _ = running.stop.send(true);
    for task in running.listeners {
        let _ = task.await;
    }
    for task in running.background {
        task.abort();
    }
    tracing::info!("all connections drained; exiting");
}
