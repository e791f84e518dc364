//! What `/readyz` reports on: the conditions the parts of the process registered with their
//! lifecycle (the registry read at least once, the serving certificate not expired, the
//! `watch`'s first pass done), and not shutting down. A part that knows when it is ready
//! reports it through its own `Ready` handle; no field here names any of them.

use crate::part::Ready;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

type Check = Box<dyn Fn() -> bool + Send + Sync>;

pub struct Health {
    /// Each condition and what `/readyz` says while it does not hold, in the order registered.
    conditions: Mutex<Vec<(&'static str, Check)>>,
    shutting_down: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Self { conditions: Mutex::new(vec![]), shutting_down: AtomicBool::new(false) }
    }
}

impl Health {
    /// Not ready, saying `problem`, while `holds` says false.
    pub fn require(&self, problem: &'static str, holds: impl Fn() -> bool + Send + Sync + 'static) {
        self.conditions.lock().unwrap_or_else(|p| p.into_inner()).push((problem, Box::new(holds)));
    }

    /// A readiness its part reports: not ready, saying `problem`, until the part sets it.
    pub fn reported(&self, problem: &'static str) -> Ready {
        let ready = Ready::default();
        let seen = ready.clone();
        self.require(problem, move || seen.is_set());
        ready
    }

    /// Why the process is not ready; empty when it is.
    pub fn problems(&self) -> Vec<&'static str> {
        let conditions = self.conditions.lock().unwrap_or_else(|p| p.into_inner());
        let mut problems: Vec<&'static str> =
            conditions.iter().filter(|(_, holds)| !holds()).map(|(problem, _)| *problem).collect();
        if self.shutting_down.load(Ordering::Acquire) {
            problems.push("shutting down");
        }
        problems
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }
}
