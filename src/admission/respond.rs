//! Writing the answer: the AdmissionResponse the API server reads, with warnings, the deny
//! status and audit annotations (the API server prefixes their keys with the webhook's name).

use crate::decision::{Decision, Override, Subject, Verdict};
use kube::core::Status;
use kube::core::admission::AdmissionResponse;
use kube::core::response::StatusSummary;
use std::collections::HashMap;

/// The response to a decided request.
pub fn decided(uid: &str, subject: &Subject, decision: &Decision) -> AdmissionResponse {
    let mut response = allowed(uid);
    if let (Verdict::Denied, Some(message)) = (decision.verdict, &decision.deny_message) {
        response = response.deny(message);
        response.result.code = 403;
        response.result.reason = "Forbidden".to_string();
        response.result.status = Some(StatusSummary::Failure);
    }
    if !decision.warnings.is_empty() {
        response.warnings = Some(decision.warnings.clone());
    }
    response.audit_annotations = audit_annotations(subject, decision);
    response
}

/// An `admission.k8s.io/v1` answer allowing request `uid`. (kube builds its responses from its
/// own request type; `invalid` is its one constructor that needs none, and sets the v1 types.)
pub fn allowed(uid: &str) -> AdmissionResponse {
    let mut response = AdmissionResponse::invalid("");
    response.uid = uid.to_string();
    response.allowed = true;
    response.result = Status::default();
    response
}

/// Keys must be valid label-like names without a prefix: the API server adds `<webhook>/`.
pub fn audit_annotations(subject: &Subject, decision: &Decision) -> HashMap<String, String> {
    let mut a = HashMap::new();
    a.insert("decision".to_string(), decision.verdict.as_str().to_string());
    a.insert("rule".to_string(), decision.rule.as_str().to_string());
    if let crate::decision::Rule::Exempt(e) = decision.rule {
        a.insert("exempt".to_string(), e.as_str().to_string());
        return a;
    }
    a.insert("requested-replicas".to_string(), subject.new_replicas.to_string());
    if let Some(old) = subject.old_replicas {
        a.insert("previous-replicas".to_string(), old.to_string());
    }
    if let Some(limit) = &decision.limit {
        a.insert("max-replicas".to_string(), limit.max_replicas.to_string());
        a.insert("limit-scope".to_string(), limit.scope.as_str().to_string());
    }
    if let Some(mode) = decision.mode {
        a.insert("mode".to_string(), mode.as_str().to_string());
    }
    let fields = changed_fields(subject);
    if !fields.is_empty() {
        a.insert("changed-fields".to_string(), fields.join(","));
    }
    match decision.override_use {
        Override::Honoured => {
            a.insert("override".to_string(), subject.override_reason.clone().unwrap_or_default());
            a.insert("override-user".to_string(), subject.user.clone());
        }
        Override::Ignored => {
            a.insert("override-ignored".to_string(), subject.user.clone());
        }
        Override::NotUsed => {}
    }
    if decision.out_of_bounds {
        a.insert("out-of-platform-bounds".to_string(), "true".to_string());
    }
    a
}

/// The distinct classified fields a request changed, in `Field` order.
pub fn changed_fields(subject: &Subject) -> Vec<&'static str> {
    let mut fields: Vec<_> =
        subject.changes.iter().map(|c| c.field).chain(subject.unlisted_changes.fields.iter().copied()).collect();
    fields.sort();
    fields.dedup();
    fields.into_iter().map(|f| f.as_str()).collect()
}
