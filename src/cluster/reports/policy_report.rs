//! Policy reports in the two formats Policy Reporter reads: `openreports.io/v1alpha1` Report
//! (the Policy WG's API since it moved to OpenReports; Kyverno writes it since 1.15) and
//! `wgpolicyk8s.io/v1alpha2` PolicyReport, written by `watch` into whichever the
//! cluster serves (`audit.reports`): one report per namespace, `replica-guard`, with one result
//! per Deployment (`source: replica-guard`, policy `registered-max-replicas`), a summary of all
//! results, and no more than `MAX_RESULTS` results (the summary still counts every workload). A
//! report is written only when its results changed. Both formats have the same results and
//! summary; a Report also names its source at the top.

use crate::cluster::status::{Judged, Status};
use crate::config::ReportsConfig;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

pub const NAME: &str = "replica-guard";
/// Results per report at most: a report is one etcd object, limited to about 1.5 MB.
pub const MAX_RESULTS: usize = 1000;

/// One of the report APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportApi {
    /// `openreports.io/v1alpha1` Report.
    OpenReports,
    /// `wgpolicyk8s.io/v1alpha2` PolicyReport.
    PolicyReports,
}

impl ReportApi {
    fn group_version(self) -> &'static str {
        match self {
            Self::OpenReports => "openreports.io/v1alpha1",
            Self::PolicyReports => "wgpolicyk8s.io/v1alpha2",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Self::OpenReports => "Report",
            Self::PolicyReports => "PolicyReport",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Self::OpenReports => "reports",
            Self::PolicyReports => "policyreports",
        }
    }

    fn resource(self) -> ApiResource {
        let (group, version) = self.group_version().split_once('/').unwrap_or_default();
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, self.kind()), self.plural())
    }

    /// Whether the cluster serves this report API (its CRD is installed).
    async fn served(self, client: &kube::Client) -> bool {
        match client.list_api_group_resources(self.group_version()).await {
            Ok(list) => list.resources.iter().any(|r| r.name == self.plural()),
            Err(e) => {
                tracing::debug!(error = %e, api = self.group_version(), "report API not served");
                false
            }
        }
    }
}

/// The report APIs to write now: what `audit.reports` asks for, among what the cluster serves
/// (asked every pass: a CRD installed later needs no restart). `auto` takes OpenReports when
/// served, else PolicyReports, so that Policy Reporter does not show every result twice.
pub async fn targets(client: &kube::Client, wanted: ReportsConfig) -> Vec<ReportApi> {
    let candidates: &[ReportApi] = match wanted {
        ReportsConfig::Off => &[],
        ReportsConfig::Openreports => &[ReportApi::OpenReports],
        ReportsConfig::Policyreports => &[ReportApi::PolicyReports],
        ReportsConfig::Both | ReportsConfig::Auto => &[ReportApi::OpenReports, ReportApi::PolicyReports],
    };
    let mut served = vec![];
    for api in candidates {
        if api.served(client).await {
            served.push(*api);
            if wanted == ReportsConfig::Auto {
                break;
            }
        }
    }
    served
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
/// same body and is not written again); each result names the cluster when `cluster` is set.
pub fn reports(judged: &[Judged], cluster: Option<&str>) -> BTreeMap<String, Value> {
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
                    let mut properties = json!({"status": j.status.as_str()});
                    if let Some(cluster) = cluster {
                        properties["cluster"] = json!(cluster);
                    }
                    json!({
                        "source": "replica-guard",
                        "policy": "registered-max-replicas",
                        "result": result(j.status),
                        "message": message(j),
                        "category": "PED replica limits",
                        "severity": if j.status.is_over() { "medium" } else { "info" },
                        "resources": [{"apiVersion": "apps/v1", "kind": "Deployment", "namespace": ns, "name": j.workload.deployment}],
                        "properties": properties,
                    })
                })
                .collect();
            (ns.to_string(), json!({"results": results, "summary": summary}))
        })
        .collect()
}

/// Writes the reports of `api` whose body differs from the last one written; returns what is
/// written now.
pub async fn write(
    client: &kube::Client,
    api_kind: ReportApi,
    cluster: Option<&str>,
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
        let mut labels = json!({"app.kubernetes.io/managed-by": "replica-guard"});
        if let Some(cluster) = cluster {
            labels["replica-guard.io/cluster"] = json!(cluster);
        }
        let mut object = json!({
            "apiVersion": api_kind.group_version(),
            "kind": api_kind.kind(),
            "metadata": {"name": NAME, "namespace": ns, "labels": labels},
            "scope": {"kind": "Namespace", "name": ns},
            "results": report["results"],
            "summary": report["summary"],
        });
        if api_kind == ReportApi::OpenReports {
            object["source"] = json!("replica-guard");
        }
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &api_kind.resource());
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
                tracing::info!(namespace = %ns, kind = api_kind.kind(), "report written");
                written.insert(ns, body);
            }
            Err(kube::Error::Api(e)) if e.code == 403 => {
                // The account may not write this API (RBAC without it): one request a pass, not
                // one per namespace, and a warning that says what to grant.
                tracing::warn!(
                    kind = api_kind.kind(),
                    api = api_kind.group_version(),
                    "the audit's account may not write {}: grant get/create/patch/delete on {} (the chart's audit ClusterRole does), or set audit.reports; retried next pass",
                    api_kind.plural(),
                    api_kind.plural(),
                );
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, namespace = %ns, kind = api_kind.kind(), "could not write the report; retried next pass")
            }
        }
    }
    written
}

/// Removes the reports of `api` written before (the audit now writes the other API: `auto` found
/// OpenReports installed later), so that Policy Reporter does not keep showing stale results.
pub async fn remove(client: &kube::Client, api_kind: ReportApi, written: HashMap<String, Value>) {
    for ns in written.into_keys() {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &api_kind.resource());
        match api.delete(NAME, &Default::default()).await {
            Ok(_) => {
                tracing::info!(namespace = %ns, kind = api_kind.kind(), "report removed: written to the other report API now")
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                tracing::warn!(error = %e, namespace = %ns, kind = api_kind.kind(), "could not remove the old report")
            }
        }
    }
}
