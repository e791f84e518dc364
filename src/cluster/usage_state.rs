//! Where the day's usage survives a restart: a ConfigMap (`audit.usage.state`) holding the day
//! and every Deployment's highs so far. A ConfigMap rather than deriving the day again from the
//! watch: after a restart the watch only knows what runs now, not the 6 replicas of this morning.
//! Rather than a Lease: a ConfigMap is readable by `kubectl get` when someone asks why a record
//! says what it says. Written at most once per audit pass and only when a high changed.

use super::usage::{Day, High};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde::{Deserialize, Serialize};

/// A ConfigMap holds at most 1 MiB; beyond this the day is not saved (and a warning says so).
/// About 60 bytes a Deployment: some 15,000 Deployments fit.
const MAX_BYTES: usize = 900 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read ConfigMap {namespace}/{name}: {error}")]
    Read { namespace: String, name: String, error: crate::words::KubeError },
    #[error("cannot write ConfigMap {namespace}/{name}: {error}")]
    Write { namespace: String, name: String, error: crate::words::KubeError },
    #[error("ConfigMap {namespace}/{name} does not hold a usage day ({why}); starting the day afresh")]
    Unreadable { namespace: String, name: String, why: String },
    #[error("the day's usage of {workloads} Deployments is {bytes} bytes, more than a ConfigMap holds; not saved")]
    TooLarge { workloads: usize, bytes: usize },
}

/// One Deployment's highs, compact: [namespace, deployment, replicas, hpaMax, cpu, memoryGiB,
/// registered, owner].
#[derive(Serialize, Deserialize)]
struct Row(String, String, i32, Option<i32>, f64, f64, Option<i32>, #[serde(default)] Option<String>);

pub struct StateStore {
    api: Api<ConfigMap>,
    namespace: String,
    name: String,
}

impl StateStore {
    pub fn new(client: kube::Client, namespace: &str, name: &str) -> Self {
        Self { api: Api::namespaced(client, namespace), namespace: namespace.into(), name: name.into() }
    }

    /// The saved day, if any.
    pub async fn load(&self) -> Result<Option<Day>, StateError> {
        let found = self.api.get_opt(&self.name).await.map_err(|e| StateError::Read {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            error: e.into(),
        })?;
        let Some(data) = found.and_then(|cm| cm.data) else { return Ok(None) };
        let unreadable =
            |why: String| StateError::Unreadable { namespace: self.namespace.clone(), name: self.name.clone(), why };
        let date = data.get("date").ok_or_else(|| unreadable("no date".into()))?;
        let date = date.parse().map_err(|e| unreadable(format!("date {date:?}: {e}")))?;
        let rows: Vec<Row> = serde_json::from_str(data.get("workloads").map_or("[]", String::as_str))
            .map_err(|e| unreadable(format!("workloads: {e}")))?;
        let mut day = Day::new(date);
        for Row(namespace, deployment, replicas, hpa_max, cpu, memory_gib, registered, owner) in rows {
            let high = High { replicas, hpa_max, cpu, memory_gib, registered, owner };
            day.highs.insert(crate::decision::WorkloadKey { namespace, deployment }, high);
        }
        day.dirty = false;
        Ok(Some(day))
    }

    /// Saves the day (creating the ConfigMap the first time).
    pub async fn save(&self, day: &Day) -> Result<(), StateError> {
        let rows: Vec<Row> = day
            .highs
            .iter()
            .map(|(key, h)| {
                Row(
                    key.namespace.clone(),
                    key.deployment.clone(),
                    h.replicas,
                    h.hpa_max,
                    h.cpu,
                    h.memory_gib,
                    h.registered,
                    h.owner.clone(),
                )
            })
            .collect();
        let workloads = serde_json::to_string(&rows).unwrap_or_else(|_| "[]".into());
        if workloads.len() > MAX_BYTES {
            return Err(StateError::TooLarge { workloads: rows.len(), bytes: workloads.len() });
        }
        let write = |e: kube::Error| StateError::Write {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            error: e.into(),
        };
        let data = serde_json::json!({"date": day.date.to_string(), "workloads": workloads});
        let patch = Patch::Merge(serde_json::json!({"data": data}));
        match self.api.patch(&self.name, &PatchParams::default(), &patch).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => {
                let cm: ConfigMap = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": self.name, "namespace": self.namespace,
                                 "labels": {"app.kubernetes.io/managed-by": "replica-guard"}},
                    "data": data,
                }))
                .unwrap_or_default();
                self.api.create(&PostParams::default(), &cm).await.map(|_| ()).map_err(write)
            }
            Err(e) => Err(write(e)),
        }
    }
}
