//! What `/readyz` reports on: the registry read at least once, the serving certificate not
//! expired (the webhook), something of the process's own to wait for (the continuous audit's
//! first pass), and not shutting down.

use super::tls::CertStore;
use crate::limits::LimitSource;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub struct Health {
    limits: Arc<dyn LimitSource>,
    /// The webhook's serving certificate (the audit process serves no TLS).
    certificate: Option<Arc<CertStore>>,
    /// Something else to wait for, and how to say it is not done (the audit's first pass).
    waiting_for: Option<(&'static str, Arc<AtomicBool>)>,
    shutting_down: AtomicBool,
}

impl Health {
    pub fn new(limits: Arc<dyn LimitSource>, certificate: Option<Arc<CertStore>>) -> Self {
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
