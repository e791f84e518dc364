//! Which namespaces get parameters: those the chart's one scope selects (its `namespaceSelector`,
//! the same one the webhook configuration and the policy's binding carry). A namespace the API
//! server never sends to the webhook nor to the policy — opted out with the label, excluded,
//! exempt, a system one — gets none, and loses the ones it had, so `kubectl get backstoplimits -A`
//! lists exactly what is enforced.
//!
//! The namespaces come from a watch filtered by that selector on the API server (a namespace that
//! gets the opt-out label leaves the watch at once), kept by kube's reflector; every change wakes
//! the writer, so a namespace created after its registry entry gets its parameters right away.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::core::{PartialObjectMeta, Selector};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::BTreeSet;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The namespaces in scope, as the API server's filtered watch shows them.
pub struct Scope {
    store: Store<PartialObjectMeta<Namespace>>,
    /// Bumped after every watch event, once the first listing is complete.
    changed: watch::Receiver<u64>,
    task: JoinHandle<()>,
}

impl Scope {
    /// Starts watching the namespaces `selector` selects.
    pub fn watch(client: kube::Client, selector: &Selector) -> Self {
        let (store, writer) = reflector::store();
        let (tell, changed) = watch::channel(0u64);
        let config = watcher::Config::default().labels(&selector.to_string());
        let events = reflector::reflector(writer, watcher(Api::<PartialObjectMeta<Namespace>>::all(client), config))
            .default_backoff();
        let task = tokio::spawn(async move {
            use futures_util::StreamExt;
            futures_util::pin_mut!(events);
            // A (re-)listing is told once, when complete: the store swaps it in at `InitDone`.
            let mut listed = false;
            while let Some(event) = events.next().await {
                match event {
                    Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                    Ok(watcher::Event::InitDone) => {
                        listed = true;
                        tell.send_modify(|n| *n += 1);
                    }
                    Ok(_) if listed => tell.send_modify(|n| *n += 1),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(
                        error = %e,
                        "watching the namespaces in the backstop's scope failed; retrying (the parameters stay as they are meanwhile)"
                    ),
                }
            }
        });
        Self { store, changed, task }
    }

    /// Waits for the first complete listing: before it, no namespace would read as "none in
    /// scope", which would delete every parameter.
    pub async fn ready(&self) {
        // The writer half lives as long as the task; it ends only with the process.
        let _ = self.store.wait_until_ready().await;
    }

    /// Resolves at the next change of the namespaces in scope.
    pub async fn changed(&mut self) {
        if self.changed.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// The namespaces in scope now.
    pub fn namespaces(&self) -> BTreeSet<String> {
        self.store.state().iter().filter_map(|n| n.metadata.name.clone()).collect()
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        self.task.abort();
    }
}
