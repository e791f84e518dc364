//! What a long-running process (`serve`, `watch`) does on SIGTERM (kubelet stopping the pod) or
//! SIGINT (Ctrl-C):
//!
//! 1. `/readyz` turns 503 at once, so the Service stops routing new connections here;
//! 2. the listeners keep serving for `server.shutdownDelaySeconds`, while endpoints propagate
//!    (the API server may still open connections to this pod during that time);
//! 3. the listeners stop accepting; open connections finish their in-flight requests within
//!    `server.shutdownTimeoutSeconds` (keep-alive connections are closed after their response);
//! 4. the long-running parts are told to stop and finish what they hold, within the same
//!    `server.shutdownTimeoutSeconds`: the cluster view saves the day's usage, the backstop
//!    writer completes its pass, the Event publisher sends what is queued once nothing can queue
//!    more, the registry's Listen stream is closed; what has nothing to finish (a registry poll,
//!    a certificate reload) just returns;
//! 5. the process exits 0 — or 1 when a part could not finish what it held (the day's usage not
//!    saved, a part still busy when the time was up), each named in the log.
//!
//! A second SIGTERM or SIGINT during the drain exits at once (status 1): someone wants it gone now.

use super::RunError;
use super::lifecycle::Lifecycle;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// SIGTERM and SIGINT, listened to from the start of the process, so that one arriving while it
/// starts is not lost (nor kills it before it can drain).
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    pub fn listen() -> Result<Self, RunError> {
        let listen = |kind| signal(kind).map_err(RunError::Signals);
        Ok(Self { term: listen(SignalKind::terminate())?, int: listen(SignalKind::interrupt())? })
    }

    /// Resolves with the signal's name when the next one arrives.
    pub async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

impl Lifecycle {
    /// Runs until a signal arrives, then drains (steps 1 to 4); a second signal exits at once.
    pub async fn run_until_signal(self, mut signals: Signals) -> Result<(), RunError> {
        let signal = signals.next().await;
        tracing::info!(signal, "received");
        tokio::spawn(async move {
            let signal = signals.next().await;
            tracing::warn!(signal, "received again while draining; exiting now");
            std::process::exit(1);
        });
        let unfinished = self.drain().await;
        if unfinished.is_empty() { Ok(()) } else { Err(RunError::Unfinished(unfinished.join(", "))) }
    }

    /// Steps 1 to 4 above; returns the parts that could not finish what they held.
    pub async fn drain(self) -> Vec<&'static str> {
        self.health.begin_shutdown();
        tracing::info!(
            delay_seconds = self.delay.as_secs_f64(),
            "shutting down: not ready; still serving during the delay"
        );
        tokio::time::sleep(self.delay).await;
        let _ = self.stop.send(true);
        for task in self.listeners {
            let _ = task.await;
        }
        tracing::info!("all connections drained");
        let started = std::time::Instant::now();
        let deadline = tokio::time::Instant::now() + self.grace;
        let mut unfinished = vec![];
        for (name, mut task) in self.parts {
            let seconds = || started.elapsed().as_secs_f64();
            match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(Ok(Ok(()))) => tracing::info!(part = name, seconds = seconds(), "finished"),
                Ok(Ok(Err(error))) => {
                    tracing::error!(part = name, seconds = seconds(), %error, "stopped without finishing");
                    unfinished.push(name);
                }
                Ok(Err(error)) => {
                    tracing::error!(part = name, %error, "failed");
                    unfinished.push(name);
                }
                Err(_) => {
                    task.abort();
                    tracing::error!(
                        part = name,
                        grace_seconds = self.grace.as_secs_f64(),
                        "did not finish within server.shutdownTimeoutSeconds; stopped"
                    );
                    unfinished.push(name);
                }
            }
        }
        tracing::info!("exiting");
        unfinished
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServerConfig;
    use crate::part::{Part, Stop, Unfinished};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A part that, told to stop, takes `takes` to finish and then says `result`.
    struct Finishing {
        name: &'static str,
        takes: std::time::Duration,
        fails: bool,
        finished: Arc<AtomicBool>,
    }

    impl Part for Finishing {
        fn name(&self) -> &'static str {
            self.name
        }

        async fn run(self, mut stop: Stop) -> Result<(), Unfinished> {
            stop.requested().await;
            tokio::time::sleep(self.takes).await;
            self.finished.store(true, Ordering::SeqCst);
            if self.fails { Err("the day could not be saved".into()) } else { Ok(()) }
        }
    }

    #[tokio::test]
    async fn parts_are_waited_for_and_what_could_not_finish_is_named() {
        let server = ServerConfig { shutdown_timeout_seconds: 0.5, ..ServerConfig::default() };
        let mut lifecycle = Lifecycle::new(&server);
        let part = |name, millis, fails| Finishing {
            name,
            takes: std::time::Duration::from_millis(millis),
            fails,
            finished: Arc::new(AtomicBool::new(false)),
        };
        let (saves, fails, slow) = (part("saves", 100, false), part("fails", 10, true), part("slow", 5_000, false));
        let saved = saves.finished.clone();
        let slow_finished = slow.finished.clone();
        lifecycle.spawn(saves);
        lifecycle.spawn(fails);
        lifecycle.spawn(slow);
        let started = std::time::Instant::now();
        let unfinished = lifecycle.drain().await;
        assert!(saved.load(Ordering::SeqCst), "a part taking 100 ms to finish is waited for, not aborted");
        assert_eq!(unfinished, vec!["fails", "slow"], "the failed and the overdue part are named");
        assert!(!slow_finished.load(Ordering::SeqCst));
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "the grace bounds the wait");
    }
}
