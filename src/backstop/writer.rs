//! Keeps every namespace's `BackstopLimits` equal to what `parameters` computes from the current
//! registry: after each registry change and every `resync` (which also repairs an object someone
//! edited or deleted, and writes one for a namespace created after the last pass). An object is
//! written only when it differs, so an unchanged registry costs one list per `resync`. A registry
//! sync that fails or is held back does not replace the snapshot, so the parameters stay as they
//! were. With a `scope` (the chart always gives one), only the namespaces it selects get
//! parameters, and a change of those namespaces (a new one, an opt-out label) starts a pass.

use super::parameters::{BackstopSpec, parameters};
use super::scope::Scope;
use super::{GROUP, KIND, PARAMETERS_NAME, PLURAL, VERSION};
use crate::decision::policy::Policy;
use crate::limits::store::SnapshotStore;
use crate::metrics::Metrics;
use crate::part::{Part, Stop, Unfinished};
use crate::words::KubeError;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind, Selector};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// The label on every object the writer owns; objects without it are left alone.
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "replica-guard");

pub struct Writer {
    pub client: kube::Client,
    pub store: Arc<SnapshotStore>,
    pub policy: Policy,
    pub resync: Duration,
    pub metrics: Arc<Metrics>,
    /// The namespaces in scope (`backstop.namespaceSelector`); `None`: every namespace.
    pub scope: Option<Selector>,
}

/// The parameters computed from one registry snapshot.
pub struct Computed {
    table: Arc<crate::limits::table::LimitTable>,
    wanted: BTreeMap<String, BackstopSpec>,
}

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub applied: usize,
    pub deleted: usize,
    pub unchanged: usize,
    pub failed: usize,
}

fn resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, KIND), PLURAL)
}

impl Part for Writer {
    fn name(&self) -> &'static str {
        "backstop writer"
    }

    async fn run(self, stop: Stop) -> Result<(), Unfinished> {
        self.write_until(stop).await;
        Ok(())
    }
}

impl Writer {
    /// Runs until `stop`: a pass under way is completed first (the parameters are never left
    /// half-written by a rollout of the audit pod), then it returns.
    async fn write_until(self, mut stop: Stop) {
        let mut changes = self.store.changes();
        let mut computed = None;
        let mut scope = self.scope.as_ref().map(|s| Scope::watch(self.client.clone(), s));
        if let Some(scope) = &scope {
            scope.ready().await;
        }
        loop {
            let in_scope = scope.as_ref().map(Scope::namespaces);
            match self.pass(&mut computed, in_scope.as_ref()).await {
                Ok(pass) if pass.applied + pass.deleted + pass.failed > 0 => {
                    tracing::info!(?pass, "backstop parameters written")
                }
                Ok(_) => {}
                Err(e) => tracing::error!(
                    error = %KubeError(e),
                    "cannot list the backstop parameters (BackstopLimits); they stay as they were"
                ),
            }
            tokio::select! {
                () = stop.requested() => return,
                _ = changes.changed() => {}
                () = tokio::time::sleep(self.resync) => {}
                () = async { if let Some(s) = scope.as_mut() { s.changed().await } else { std::future::pending().await } } => {}
            }
        }
    }

    /// One comparison of the cluster's parameters with the registry's, writing the difference.
    /// `computed` keeps the parameters of the last snapshot seen, so a pass over an unchanged
    /// registry (every `resync`) only lists and compares. `in_scope`: the namespaces that may have
    /// parameters (`None`: any); the others' are deleted.
    pub async fn pass(
        &self,
        computed: &mut Option<Computed>,
        in_scope: Option<&BTreeSet<String>>,
    ) -> Result<Pass, kube::Error> {
        let table = self.store.snapshot();
        if !computed.as_ref().is_some_and(|c| Arc::ptr_eq(&c.table, &table)) {
            let policy = self.policy.clone();
            let from = table.clone();
            // Thousands of entries: built on the blocking pool, like the registry table itself.
            // (A computation that failed must not read as "no limits": that would delete them all.)
            let Ok(wanted) = tokio::task::spawn_blocking(move || parameters(&from, &policy)).await else {
                tracing::error!("computing the backstop parameters failed; they stay as they were");
                return Ok(Pass::default());
            };
            *computed = Some(Computed { table, wanted });
        }
        let Some(Computed { wanted, .. }) = computed.as_ref() else { return Ok(Pass::default()) };
        let wanted: BTreeMap<&String, &BackstopSpec> =
            wanted.iter().filter(|(namespace, _)| in_scope.is_none_or(|s| s.contains(*namespace))).collect();
        let all: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource());
        let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
        let existing: BTreeMap<String, serde_json::Value> = all
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
            .into_iter()
            .filter(|o| o.metadata.name.as_deref() == Some(PARAMETERS_NAME))
            .filter_map(|o| Some((o.metadata.namespace?, o.data.get("spec").cloned().unwrap_or_default())))
            .collect();
        let mut pass = Pass::default();
        for (&namespace, &spec) in &wanted {
            let value = serde_json::to_value(spec).unwrap_or_default();
            if existing.get(namespace) == Some(&value) {
                pass.unchanged += 1;
                continue;
            }
            match self.apply(namespace, spec).await {
                Ok(()) => pass.applied += 1,
                Err(e) => {
                    pass.failed += 1;
                    // Without a scope, a registry entry for a namespace that does not exist yet is the
                    // usual one.
                    tracing::warn!(namespace, error = %KubeError(e), "backstop parameters not written; retried on the next pass");
                }
            }
        }
        for namespace in existing.keys().filter(|n| !wanted.contains_key(n)) {
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, &resource());
            match api.delete(PARAMETERS_NAME, &DeleteParams::default()).await {
                Ok(_) => pass.deleted += 1,
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    pass.failed += 1;
                    tracing::warn!(namespace, error = %KubeError(e), "stale backstop parameters not deleted");
                }
            }
        }
        self.metrics.audit.backstop_pass(pass.applied, pass.deleted, pass.failed, wanted.len());
        Ok(pass)
    }

    async fn apply(&self, namespace: &str, spec: &BackstopSpec) -> Result<(), kube::Error> {
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, &resource());
        let object = serde_json::json!({
            "apiVersion": format!("{GROUP}/{VERSION}"),
            "kind": KIND,
            "metadata": {"name": PARAMETERS_NAME, "namespace": namespace, "labels": {MANAGED_BY.0: MANAGED_BY.1}},
            "spec": spec,
        });
        api.patch(PARAMETERS_NAME, &PatchParams::apply("replica-guard").force(), &Patch::Apply(object)).await?;
        Ok(())
    }
}
