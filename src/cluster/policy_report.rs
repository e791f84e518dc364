//! PolicyReports (`wgpolicyk8s.io/v1alpha2`, the Kubernetes Policy WG's format that Policy
//! Reporter shows and notifies on), written by the continuous audit when the CRD is installed:
//! one report per namespace, `replica-guard`, with one result per Deployment (`source:
//! replica-guard`, policy `registered-max-replicas`), a summary of all results, and no more than
//! `MAX_RESULTS` results (the summary still counts every workload). A report is written only
//! when its results changed.

use super::status::{Judged, Status};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

pub const NAME: &str = "replica-guard";
const GROUP_VERSION: &str = "wgpolicyk8s.io/v1alpha2";
/// Results per report at most: a report is one etcd object, limited to about 1.5 MB.
pub const MAX_RESULTS: usize = 1000;

fn resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("wgpolicyk8s.io", "v1alpha2", "PolicyReport"),
        "policyreports",
    )
}

/// Whether the PolicyReport CRD is installed.
pub async fn crd_installed(client: &kube::Client) -> bool {
    match client.list_api_group_resources(GROUP_VERSION).await {
        Ok(list) => list.resources.iter().any(|r| r.name == "policyreports"),
        Err(e) => {
            tracing::debug!(error = %e, "no PolicyReport CRD; no reports written");
            false
        }
    }
}

/// pass, warn or fail for a status.
pub fn result(status: Status) -> &'static str {
    match status {
        Status::Within => "pass",
        Status::OutOfBounds | Status::Unregistered => "warn",
        Status::Over | Status::RatchetOnly => "fail",
    }
}

fn message(j: &Judged) -> String {
    let w = &j.workload;
    let hpa = w.hpa.as_ref().map(|(n, m)| format!(", HPA {n} maxReplicas {m}")).unwrap_or_default();
    match &j.limit {
        Some(l) => format!("replicas {}{hpa}, PED max {}: {}", w.replicas, l.max_replicas, j.status.as_str()),
        None => format!("replicas {}{hpa}: not registered in PED", w.replicas),
    }
}

/// The reports' bodies by namespace (without timestamps, so that an unchanged state gives the
/// same body and is not written again).
pub fn reports(judged: &[Judged]) -> BTreeMap<String, Value> {
    let mut by_namespace: BTreeMap<&str, Vec<&Judged>> = BTreeMap::new();
    for j in judged {
        by_namespace.entry(&j.workload.namespace).or_default().push(j);
    }
    by_namespace
        .into_iter()
        .map(|(ns, mut items)| {
            items.sort_by(|a, b| a.workload.deployment.cmp(&b.workload.deployment));
            let mut summary = BTreeMap::from([("pass", 0), ("warn", 0), ("fail", 0), ("error", 0), ("skip", 0)]);
            for j in &items {
                *summary.entry(result(j.status)).or_default() += 1;
            }
            // Failures first, so a truncated report keeps what matters.
            items.sort_by_key(|j| match result(j.status) {
                "fail" => 0,
                "warn" => 1,
                _ => 2,
            });
            let results: Vec<Value> = items
                .iter()
                .take(MAX_RESULTS)
                .map(|j| {
                    json!({
                        "source": "replica-guard",
                        "policy": "registered-max-replicas",
                        "result": result(j.status),
                        "message": message(j),
                        "category": "PED replica limits",
                        "severity": if j.status.is_over() { "medium" } else { "info" },
                        "resources": [{"apiVersion": "apps/v1", "kind": "Deployment", "namespace": ns, "name": j.workload.deployment}],
                        "properties": {"status": j.status.as_str()},
                    })
                })
                .collect();
            (ns.to_string(), json!({"results": results, "summary": summary}))
        })
        .collect()
}

/// Writes the reports whose body differs from the last one written; returns what is written now.
pub async fn write(
    client: &kube::Client,
    wanted: BTreeMap<String, Value>,
    mut written: HashMap<String, Value>,
) -> HashMap<String, Value> {
    let now = jiff::Timestamp::now();
    // Namespaces whose workloads are all gone get an empty report.
    let gone: Vec<String> = written.keys().filter(|ns| !wanted.contains_key(*ns)).cloned().collect();
    let empty = json!({"results": [], "summary": {"pass": 0, "warn": 0, "fail": 0, "error": 0, "skip": 0}});
    for (ns, body) in wanted.into_iter().chain(gone.into_iter().map(|ns| (ns, empty.clone()))) {
        if written.get(&ns) == Some(&body) {
            continue;
        }
        let mut report = body.clone();
        for r in report["results"].as_array_mut().into_iter().flatten() {
            r["timestamp"] = json!({"seconds": now.as_second(), "nanos": 0});
        }
        let object = json!({
            "apiVersion": GROUP_VERSION,
            "kind": "PolicyReport",
            "metadata": {"name": NAME, "namespace": ns, "labels": {"app.kubernetes.io/managed-by": "replica-guard"}},
            "scope": {"kind": "Namespace", "name": ns},
            "results": report["results"],
            "summary": report["summary"],
        });
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource());
        // A JSON merge patch replaces `results` whole; not server-side apply, which kube-apiserver
        // 1.20 answers by dropping the connection for a CRD that preserves unknown fields.
        let written_now = match api.patch(NAME, &PatchParams::default(), &Patch::Merge(&object)).await {
            Err(kube::Error::Api(e)) if e.code == 404 => match serde_json::from_value::<DynamicObject>(object) {
                Ok(new) => api.create(&PostParams::default(), &new).await,
                Err(e) => Err(kube::Error::SerdeError(e)),
            },
            other => other,
        };
        match written_now {
            Ok(_) => {
                tracing::info!(namespace = %ns, "PolicyReport written");
                written.insert(ns, body);
            }
            Err(e) => {
                tracing::warn!(error = %e, namespace = %ns, "could not write the PolicyReport; retried next pass")
            }
        }
    }
    written
}
