//! The one shape of every long-running part of a process (the registry refresh, the certificate
//! reload, the Event publisher, the backstop writer, the cluster view): `Part::run(self, stop)`
//! runs until the stop signal, finishes what the part holds, and returns — an error saying what
//! it could not finish. A part that knows when it is ready (the first pass over the cluster) holds
//! a `Ready` handle the lifecycle made for it, which `/readyz` waits for (`server/health.rs`).
//!
//! `run/shutdown.rs` raises the stop signal on SIGTERM, after the listeners stopped taking new
//! work, and waits — within `server.shutdownTimeoutSeconds` — for every part to return, instead of
//! aborting it. A neutral module, so the parts need not know the process that runs them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::watch;

/// Why a part stopped without finishing what it held, in words for the log of the way out.
pub type Unfinished = Box<dyn std::error::Error + Send + Sync>;

/// A long-running part of a process.
pub trait Part: Send + 'static {
    /// Names the part in the logs of the way out.
    fn name(&self) -> &'static str;

    /// Runs until `stop`, then finishes what the part holds (within the lifecycle's grace).
    fn run(self, stop: Stop) -> impl Future<Output = Result<(), Unfinished>> + Send;
}

/// A part with nothing to finish (a poll loop, a certificate reload): it runs `task` until the
/// stop signal, and then drops it.
pub struct Helper<F> {
    pub name: &'static str,
    pub task: F,
}

impl<F: Future<Output = ()> + Send + 'static> Part for Helper<F> {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn run(self, mut stop: Stop) -> Result<(), Unfinished> {
        tokio::select! {
            () = self.task => {}
            () = stop.requested() => {}
        }
        Ok(())
    }
}

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
