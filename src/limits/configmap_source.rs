//! The ConfigMap source: the registry YAML in a ConfigMap, kept current by a Kubernetes watch,
//! so a GitOps change applies within seconds and without a restart or a volume sync delay.
//! Needs only get/list/watch on ConfigMaps in that one namespace.

use super::error::NotRead;
use super::store::{Revision, SnapshotStore, apply_document};
use crate::decision::policy::PlatformBounds;
use crate::metrics::{Metrics, SourceKind};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use std::sync::Arc;

pub struct ConfigMapSource {
    api: Api<ConfigMap>,
    namespace: String,
    name: String,
    key: String,
    store: Arc<SnapshotStore>,
    metrics: Arc<Metrics>,
    bounds: PlatformBounds,
    max_entries: usize,
}

impl ConfigMapSource {
    pub fn new(
        client: kube::Client,
        config: &crate::config::ConfigMapRegistryConfig,
        store: Arc<SnapshotStore>,
        metrics: Arc<Metrics>,
        bounds: PlatformBounds,
        max_entries: usize,
    ) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            namespace: config.namespace.clone(),
            name: config.name.clone(),
            key: config.key.clone(),
            store,
            metrics,
            bounds,
            max_entries,
        }
    }

    /// Watches the ConfigMap until the task is dropped. Watch errors (API server restarts,
    /// expired resource versions) are retried with backoff by the watcher; a deleted
    /// ConfigMap or a broken edit keeps the last good registry.
    pub async fn run(self) {
        let config = watcher::Config::default().fields(&format!("metadata.name={}", self.name));
        let mut events = watcher::watcher(self.api.clone(), config).default_backoff().boxed();
        let mut seen_in_listing = false;
        while let Some(event) = events.next().await {
            match event {
                Ok(Event::Apply(cm) | Event::InitApply(cm)) => {
                    seen_in_listing = true;
                    self.apply(&cm);
                }
                Ok(Event::Init) => seen_in_listing = false,
                Ok(Event::InitDone) if !seen_in_listing => self.missing("not found"),
                Ok(Event::InitDone) => {}
                Ok(Event::Delete(_)) => self.missing("deleted"),
                Err(e) => {
                    let why = super::transport::error_chain(&e);
                    self.not_read(format!("cannot be read: {why}"));
                    tracing::warn!(error = %why, configmap = %self.name, "ConfigMap watch failed; retrying")
                }
            }
        }
    }

    fn apply(&self, cm: &ConfigMap) {
        let Some(text) = cm.data.as_ref().and_then(|d| d.get(&self.key)) else {
            self.metrics.registry.failed(SourceKind::ConfigMap, "missing");
            self.not_read(format!("has no data key {}", self.key));
            return tracing::error!(
                configmap = %format!("{}/{}", self.namespace, self.name),
                key = %self.key,
                "the ConfigMap has no such data key; the last good registry stays in use"
            );
        };
        // The ConfigMap's resourceVersion names the state read (`configmap/<ns>/<name>@<rv>`).
        let version = cm.metadata.resource_version.as_deref().unwrap_or("unknown");
        let revision = Revision::now(format!("configmap/{}/{}@{version}", self.namespace, self.name));
        let (store, metrics) = (&self.store, &self.metrics);
        match apply_document(text, revision, SourceKind::ConfigMap, store, metrics, &self.bounds, self.max_entries) {
            Ok(entries) => tracing::info!(configmap = %self.name, entries, "registry ConfigMap loaded"),
            Err(e) => {
                tracing::error!(error = %e, configmap = %self.name, "registry ConfigMap not loaded; the last good registry stays in use")
            }
        }
    }

    fn not_read(&self, problem: String) {
        let (namespace, name) = (self.namespace.clone(), self.name.clone());
        self.store.load_failed(NotRead::ConfigMap { namespace, name, problem });
    }

    fn missing(&self, what: &str) {
        self.metrics.registry.failed(SourceKind::ConfigMap, "missing");
        self.not_read(format!("was {what}"));
        tracing::error!(configmap = %format!("{}/{}", self.namespace, self.name), "registry ConfigMap {what}; the last good registry stays in use");
    }
}
