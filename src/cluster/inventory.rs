//! Reading what runs: every Deployment and every HPA, one paged list per kind (500 a page), so
//! 10,000 Deployments are a few requests. Only the fields the audit needs are kept.

use super::pricing::quantity;
use super::status::RunningWorkload;
use crate::decision::WorkloadKey;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler;
use kube::api::{Api, ListParams};
use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("cannot list {what}: {error}")]
    List { what: &'static str, error: crate::words::KubeError },
}

const PAGE: u32 = 500;

/// Every item of a list, page by page, each handed to `each` as it arrives: what the caller
/// keeps of 50,000 Deployments is its business, never all the objects at once.
pub async fn list_each<K>(api: Api<K>, what: &'static str, mut each: impl FnMut(K)) -> Result<(), InventoryError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut params = ListParams::default().limit(PAGE);
    // Bounded: a million pages is far beyond any cluster; the API server ends the list sooner.
    for _ in 0..1_000_000 {
        let page = api.list(&params).await.map_err(|e| InventoryError::List { what, error: e.into() })?;
        page.items.into_iter().for_each(&mut each);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    Ok(())
}

/// The Deployments of `namespaces` (all namespaces when empty), each with the largest
/// `maxReplicas` of the HPAs that target it.
pub async fn workloads(client: kube::Client, namespaces: &[String]) -> Result<Vec<RunningWorkload>, InventoryError> {
    let scopes: Vec<Option<&str>> =
        if namespaces.is_empty() { vec![None] } else { namespaces.iter().map(|n| Some(n.as_str())).collect() };
    let mut out: Vec<RunningWorkload> = vec![];
    let mut hpa_of: HashMap<WorkloadKey, (String, i32)> = HashMap::new();
    for scope in scopes {
        let (d, h): (Api<Deployment>, Api<HorizontalPodAutoscaler>) = match scope {
            Some(ns) => (Api::namespaced(client.clone(), ns), Api::namespaced(client.clone(), ns)),
            None => (Api::all(client.clone()), Api::all(client.clone())),
        };
        list_each(d, "Deployments", |d| out.extend(workload(d, None))).await?;
        list_each(h, "HorizontalPodAutoscalers", |h| {
            if let Some((target, (name, max))) = hpa_target(h) {
                let entry = hpa_of.entry(target).or_insert((name.clone(), max));
                if max > entry.1 {
                    *entry = (name, max);
                }
            }
        })
        .await?;
    }
    for w in &mut out {
        w.hpa = hpa_of.remove(&WorkloadKey::new(&w.namespace, &w.deployment));
    }
    out.sort_by(|a, b| (&a.namespace, &a.deployment).cmp(&(&b.namespace, &b.deployment)));
    Ok(out)
}

/// The Deployment an HPA scales, with the HPA's (name, maxReplicas); None for an HPA that scales
/// anything else.
pub fn hpa_target(hpa: HorizontalPodAutoscaler) -> Option<(WorkloadKey, (String, i32))> {
    let (namespace, name, spec) = (hpa.metadata.namespace?, hpa.metadata.name?, hpa.spec?);
    (spec.scale_target_ref.kind == "Deployment")
        .then_some((WorkloadKey { namespace, deployment: spec.scale_target_ref.name }, (name, spec.max_replicas)))
}

/// What the audit keeps of a Deployment: replicas and the pod's summed requests.
pub fn workload(d: Deployment, hpa: Option<(String, i32)>) -> Option<RunningWorkload> {
    let (namespace, deployment) = (d.metadata.namespace?, d.metadata.name?);
    let spec = d.spec?;
    let (mut cpu, mut memory) = (0.0, 0.0);
    for container in spec.template.spec.map(|s| s.containers).unwrap_or_default() {
        let requests = container.resources.and_then(|r| r.requests).unwrap_or_default();
        cpu += requests.get("cpu").and_then(|q| quantity(&q.0)).unwrap_or(0.0);
        memory += requests.get("memory").and_then(|q| quantity(&q.0)).unwrap_or(0.0);
    }
    Some(RunningWorkload {
        namespace,
        deployment,
        replicas: spec.replicas.unwrap_or(1),
        hpa,
        cpu_requests: cpu,
        memory_requests_gib: memory / f64::from(1u32 << 30),
    })
}
