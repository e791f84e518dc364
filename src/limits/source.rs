//! What every registry source offers the webhook and the audit: a lookup that never fails (a
//! registry that cannot answer says so in the answer), whether it has been read, the revision an
//! answer comes from, and a denial's re-read past any cache.

use super::Lookup;
use super::error::NotRead;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A denial's re-read (`LimitSource::reread`): the entry and the revision it was read at, or why not.
pub type Reread<'a> = BoxFuture<'a, Result<(Lookup, Arc<str>), String>>;

/// A place limits come from. Sources never fail a lookup: a registry that cannot answer says
/// `Lookup::Unavailable`, and the policy's `registryFailure` decides what that means.
pub trait LimitSource: Send + Sync {
    fn lookup<'a>(&'a self, namespace: &'a str, deployment: &'a str) -> BoxFuture<'a, Lookup>;

    /// Whether the registry has been read at least once; `/readyz` waits for it.
    fn is_ready(&self) -> bool;

    /// Resolves when the registry has been read for the first time, or with the reason when the
    /// first attempt failed: what an offline command (`check`, `audit`) waits for. A source asked
    /// per request is ready at once.
    fn first_load(&self) -> BoxFuture<'_, Result<(), NotRead>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// The registry revision a lookup of this workload answers from (`store::Revision`'s id):
    /// what decision records and usage records name. `None` before the registry was read.
    /// Asked only for what is recorded, not on every lookup.
    fn revision<'a>(&'a self, namespace: &'a str, deployment: &'a str) -> BoxFuture<'a, Option<Arc<str>>>;

    /// The entry read again from the registry itself, past any cache, for a denial that would
    /// otherwise rest on a cached answer (a limit raised a moment ago must not refuse the deploy
    /// that follows it), with the revision it was read at; the error in words. `None` where the
    /// source has nothing fresher to ask (a file, a ConfigMap watch, a whole-registry snapshot).
    fn reread<'a>(&'a self, _namespace: &'a str, _deployment: &'a str) -> Option<Reread<'a>> {
        None
    }
}
