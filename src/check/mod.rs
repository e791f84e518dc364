//! `replica-guard check`: the webhook's decision on manifests, in a pipeline, before deploying.
//!
//! No second copy of any rule: each Deployment or HPA manifest becomes the AdmissionReview the
//! API server would send for it — a CREATE, or with `--cluster` an UPDATE whose old object is the
//! live one and whose new object is the manifest laid over it as `kubectl apply` does
//! (`merge.rs`) — and goes through `Webhook::review`, the server's own path.
//!
//! - `input`: files, folders, standard input, multi-document YAML, Lists, AdmissionReviews.
//! - `live`: the live Deployments and HPAs of the namespaces the manifests name (`--cluster`).
//! - `merge`: the object apply makes of a manifest and the live object.
//! - `output`: text like kubectl's, JSON, JUnit.

pub mod input;
pub mod live;
pub mod merge;
pub mod output;

use crate::decision::{Rule, Verdict};
use crate::webhook::{Decided, Webhook};
use input::{Manifest, resource};
use live::Live;
use serde_json::{Value, json};

/// Who applies, and where manifests without a namespace go.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `kubectl apply -n`: for manifests that carry no namespace ("default" when unset).
    pub namespace: Option<String>,
    pub user: String,
    pub groups: Vec<String>,
}

/// What became of one object of the input.
#[derive(Debug)]
pub struct Checked {
    pub source: String,
    pub document: usize,
    /// `Deployment`, `HorizontalPodAutoscaler`, or the kind an AdmissionReview carried.
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub outcome: Outcome,
}

#[derive(Debug)]
pub enum Outcome {
    /// Judged by the webhook's decision.
    Decided(Box<Decided>),
    /// Not something replica-guard judges (a Service, an HPA scaling a StatefulSet...).
    PassedOver(String),
    /// The webhook would answer 400: the object is not a valid Deployment or HPA.
    Invalid(String),
}

impl Checked {
    pub fn verdict(&self) -> Option<Verdict> {
        match &self.outcome {
            Outcome::Decided(d) => Some(d.decision.verdict),
            _ => None,
        }
    }

    /// Refused only because the registry could not be asked: the check could not run.
    pub fn registry_unreachable(&self) -> bool {
        matches!(&self.outcome, Outcome::Decided(d) if d.decision.rule == Rule::RegistryUnavailable)
    }
}

/// Judges every manifest, in input order.
pub async fn check_all(
    webhook: &Webhook,
    manifests: Vec<Manifest>,
    live: Option<&Live>,
    options: &Options,
) -> Vec<Checked> {
    let mut out = Vec::with_capacity(manifests.len());
    for (i, manifest) in manifests.into_iter().enumerate() {
        out.push(check_one(webhook, manifest, live, options, i).await);
    }
    out
}

async fn check_one(webhook: &Webhook, m: Manifest, live: Option<&Live>, options: &Options, i: usize) -> Checked {
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
    let kind = text(&m.object, "kind");
    let api_version = text(&m.object, "apiVersion");
    let name = m.object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    let namespace = m
        .object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| options.namespace.clone())
        .unwrap_or_else(|| "default".into());
    let mut checked = Checked {
        source: m.source,
        document: m.document,
        kind: kind.clone(),
        namespace: namespace.clone(),
        name: name.clone(),
        outcome: Outcome::PassedOver(kind.clone()),
    };
    if kind.is_empty() || api_version.is_empty() {
        checked.outcome = Outcome::Invalid("not a Kubernetes object: no kind or apiVersion".into());
        return checked;
    }
    let is_review = kind == "AdmissionReview";
    let body = if is_review {
        let request = &m.object["request"];
        checked.kind = text(&request["kind"], "kind");
        checked.namespace = text(request, "namespace");
        checked.name = text(request, "name");
        serde_json::to_vec(&m.object).unwrap_or_default()
    } else {
        let Some((group, plural)) = resource(&kind, &api_version) else { return checked };
        let version = api_version.split_once('/').map_or("", |(_, v)| v);
        let old = live.and_then(|l| l.get(&kind, &namespace, &name));
        let mut object = match old {
            Some(old) => merge::overlay(old, &m.object),
            None => m.object.clone(),
        };
        object["metadata"]["namespace"] = json!(namespace);
        let gvk = json!({"group": group, "version": version, "kind": kind});
        let gvr = json!({"group": group, "version": version, "resource": plural});
        let review = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": format!("check-{i}"),
                "kind": gvk, "requestKind": gvk, "resource": gvr, "requestResource": gvr,
                "name": name, "namespace": namespace,
                "operation": if old.is_some() { "UPDATE" } else { "CREATE" },
                "userInfo": {"username": options.user, "groups": options.groups},
                "object": object,
                "oldObject": old,
                "dryRun": false,
            }
        });
        serde_json::to_vec(&review).unwrap_or_default()
    };
    checked.outcome = match webhook.review(&body).await {
        Ok(answer) => match answer.decided {
            Some(decided) => Outcome::Decided(Box::new(decided)),
            None => Outcome::PassedOver(checked.kind.clone()),
        },
        // Positions in a generated review would point nowhere the user can look.
        Err(e) if !is_review => Outcome::Invalid(without_position(&e.to_string()).to_string()),
        Err(e) => Outcome::Invalid(e.to_string()),
    };
    checked
}

/// A parse error without its trailing ` at line L column C`.
fn without_position(text: &str) -> &str {
    match text.rfind(" at line ") {
        Some(i) if text[i..].contains(" column ") => &text[..i],
        _ => text,
    }
}
