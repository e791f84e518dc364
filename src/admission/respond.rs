//! Writing the answer: the AdmissionResponse the API server reads, with warnings, the deny
//! status and audit annotations (the API server prefixes their keys with the webhook's name).
//!
//! Our own types rather than kube's `AdmissionResponse`: that one is built for every kind of
//! webhook (patches, a `Status` with metadata and details, a flattened envelope, a `HashMap` of
//! owned strings for the annotations), and building and serialising it was a twelfth of a
//! request's instructions (BENCHMARKS.md). These borrow what they can and serialise in one pass;
//! the wire format is the same `admission.k8s.io/v1` fields, pinned by `tests/admission_over_tls.rs`.

use crate::decision::{Decision, Override, Subject, Verdict};
use serde::Serialize;
use serde::ser::SerializeMap;
use std::borrow::Cow;

/// The `response` of an `admission.k8s.io/v1` AdmissionReview.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub uid: String,
    pub allowed: bool,
    /// `{}` when allowed; the 403 with the user's message when denied.
    pub status: Status,
    #[serde(skip_serializing_if = "AuditAnnotations::is_empty")]
    pub audit_annotations: AuditAnnotations,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The `metav1.Status` of a denial: what `kubectl` prints after "admission webhook ... denied
/// the request:".
#[derive(Debug, Default, Serialize)]
pub struct Status {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

/// Audit annotations in the order they are added; serialised as a JSON object.
#[derive(Debug, Default)]
pub struct AuditAnnotations(Vec<(&'static str, Cow<'static, str>)>);

impl AuditAnnotations {
    pub(crate) fn add(&mut self, key: &'static str, value: impl Into<Cow<'static, str>>) {
        self.0.push((key, value.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for AuditAnnotations {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl Response {
    /// The whole AdmissionReview to send back, as JSON.
    pub fn into_review_json(self) -> Vec<u8> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Review {
            api_version: &'static str,
            kind: &'static str,
            response: Response,
        }
        let review = Review { api_version: super::decode::API_VERSION, kind: "AdmissionReview", response: self };
        // Cannot fail: string keys only, no floats, no maps with non-string keys.
        serde_json::to_vec(&review).unwrap_or_default()
    }
}

/// The response to a decided request.
pub fn decided(uid: &str, subject: &Subject, decision: &Decision) -> Response {
    let mut response = allowed(uid);
    if let (Verdict::Denied, Some(message)) = (decision.verdict, &decision.deny_message) {
        response.allowed = false;
        response.status =
            Status { status: Some("Failure"), code: Some(403), message: message.clone(), reason: Some("Forbidden") };
    }
    response.warnings.clone_from(&decision.warnings);
    response.audit_annotations = audit_annotations(subject, decision);
    response
}

/// An answer allowing request `uid`, with nothing more to say.
pub fn allowed(uid: &str) -> Response {
    Response {
        uid: uid.to_string(),
        allowed: true,
        status: Status::default(),
        audit_annotations: AuditAnnotations::default(),
        warnings: Vec::new(),
    }
}

/// Keys must be valid label-like names without a prefix: the API server adds `<webhook>/`.
pub fn audit_annotations(subject: &Subject, decision: &Decision) -> AuditAnnotations {
    let mut a = AuditAnnotations::default();
    a.add("decision", decision.verdict.as_str());
    a.add("rule", decision.rule.as_str());
    if let crate::decision::Rule::Exempt(e) = decision.rule {
        a.add("exempt", e.as_str());
        return a;
    }
    a.add("requested-replicas", subject.new_replicas.to_string());
    if let Some(old) = subject.old_replicas {
        a.add("previous-replicas", old.to_string());
    }
    if let Some(limit) = &decision.limit {
        a.add("max-replicas", limit.max_replicas.to_string());
        a.add("limit-scope", limit.scope.as_str());
    }
    if let Some(mode) = decision.mode {
        a.add("mode", mode.as_str());
    }
    let fields = changed_fields(subject);
    if !fields.is_empty() {
        a.add("changed-fields", fields.join(","));
    }
    match decision.override_use {
        Override::Honoured => {
            a.add("override", subject.override_reason.clone().unwrap_or_default());
            a.add("override-user", subject.user.clone());
        }
        Override::Ignored => a.add("override-ignored", subject.user.clone()),
        Override::NotUsed => {}
    }
    if decision.out_of_bounds {
        a.add("out-of-platform-bounds", "true");
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

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::admission::AdmissionResponse;
    use serde_json::{Value, json};

    /// What kube's own type writes for the same answer: the API server reads both alike.
    fn kube_review(uid: &str, denial: Option<&str>, annotations: &[(&str, &str)], warnings: &[&str]) -> Value {
        let mut r = AdmissionResponse::invalid("");
        r.uid = uid.to_string();
        r.allowed = true;
        r.result = kube::core::Status::default();
        if let Some(message) = denial {
            r = r.deny(message);
            r.result.code = 403;
            r.result.reason = "Forbidden".to_string();
            r.result.status = Some(kube::core::response::StatusSummary::Failure);
        }
        r.audit_annotations = annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        if !warnings.is_empty() {
            r.warnings = Some(warnings.iter().map(|w| w.to_string()).collect());
        }
        serde_json::to_value(r.into_review()).unwrap()
    }

    fn ours(response: Response) -> Value {
        serde_json::from_slice(&response.into_review_json()).unwrap()
    }

    #[test]
    fn an_allowed_answer_is_what_kube_would_write() {
        let got = ours(allowed("c0ffee"));
        assert_eq!(got, kube_review("c0ffee", None, &[], &[]));
        assert_eq!(got["response"], json!({"uid": "c0ffee", "allowed": true, "status": {}}));
    }

    #[test]
    fn a_denial_with_annotations_and_warnings_is_what_kube_would_write() {
        let mut response = allowed("u-1");
        response.allowed = false;
        response.status =
            Status { status: Some("Failure"), code: Some(403), message: "6 > 4".into(), reason: Some("Forbidden") };
        response.audit_annotations.add("decision", "denied");
        response.audit_annotations.add("requested-replicas", 6.to_string());
        response.warnings = vec!["near the limit".into()];
        let got = ours(response);
        let want = kube_review(
            "u-1",
            Some("6 > 4"),
            &[("decision", "denied"), ("requested-replicas", "6")],
            &["near the limit"],
        );
        assert_eq!(got, want);
        assert_eq!(got["response"]["status"]["code"], 403);
        assert_eq!(got["apiVersion"], "admission.k8s.io/v1");
    }
}
