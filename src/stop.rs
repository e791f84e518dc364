//! The stop signal every long-running part of a process receives (the continuous audit, the
//! backstop writer): `run/shutdown.rs` raises it on SIGTERM, after the listeners stopped taking
//! new work, and then waits — within `server.shutdownTimeoutSeconds` — for each part to finish what
//! it holds (the day's usage saved, a backstop pass completed) instead of aborting it. A neutral
//! module, so the parts need not know the process that runs them.

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
