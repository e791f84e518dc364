//! What a long-running part of a process (the continuous audit, the backstop writer) receives from
//! the lifecycle that runs it: the stop signal, and a handle on its own readiness.
//!
//! `run/shutdown.rs` raises the stop signal on SIGTERM, after the listeners stopped taking new
//! work, and then waits — within `server.shutdownTimeoutSeconds` — for each part to finish what it
//! holds (the day's usage saved, a backstop pass completed) instead of aborting it. A part that
//! knows when it is ready (the audit's first pass) sets its `Ready`, which `/readyz` waits for
//! (`server/health.rs`). A neutral module, so the parts need not know the process that runs them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::watch;

/// A part's end of the stop signal. Cloned for each part.
#[derive(Clone)]
pub struct Stop(Option<watch::Receiver<bool>>);

impl Stop {
    pub fn new(receiver: watch::Receiver<bool>) -> Self {
        Self(Some(receiver))
    }

    /// A signal that never comes: for a part run on its own (a test, a one-off command).
    pub fn never() -> Self {
        Self(None)
    }

    /// Resolves once the process is stopping (at once if it already is).
    pub async fn requested(&mut self) {
        match &mut self.0 {
            // An error means the sender is gone: the process is going away too.
            Some(receiver) => drop(receiver.wait_for(|stopping| *stopping).await),
            None => std::future::pending().await,
        }
    }
}

/// A part's handle on its own readiness: not ready until the part says so.
#[derive(Clone, Default)]
pub struct Ready(Arc<AtomicBool>);

impl Ready {
    pub fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}
