//! Reading an AdmissionReview body. Every way a body can be wrong maps to a `ReviewError` whose
//! text names the problem; the server answers it with HTTP 400 and never panics on it.

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionReview};

pub const API_VERSION: &str = "admission.k8s.io/v1";

/// A request the webhook cannot evaluate because the body itself is wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReviewError {
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    #[error("body is not an AdmissionReview: {0}")]
    NotAdmissionReview(String),
    #[error("apiVersion must be {API_VERSION}, got {0:?} (register the webhook with admissionReviewVersions: [v1])")]
    WrongApiVersion(String),
    #[error("kind must be AdmissionReview, got {0:?}")]
    WrongKind(String),
    #[error("AdmissionReview has no request")]
    NoRequest,
    #[error("request.uid is missing or empty")]
    MissingUid,
    #[error("request.{0} is missing")]
    MissingField(&'static str),
    #[error("request.object is not a valid {kind}: {detail}")]
    InvalidObject { kind: &'static str, detail: String },
    #[error("request.{which}.{field} must be between 0 and {max}, got {value}")]
    InvalidReplicas { which: &'static str, field: &'static str, value: i64, max: i32 },
}

/// Decodes an `admission.k8s.io/v1` AdmissionReview and returns its request.
pub fn decode(body: &[u8]) -> Result<AdmissionRequest<DynamicObject>, ReviewError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let review: AdmissionReview<DynamicObject> = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let text = if path == "." || path.is_empty() { inner.to_string() } else { format!("{path}: {inner}") };
        if inner.is_data() { ReviewError::NotAdmissionReview(text) } else { ReviewError::NotJson(text) }
    })?;
    de.end().map_err(|e| ReviewError::NotJson(e.to_string()))?;
    if review.types.api_version != API_VERSION {
        return Err(ReviewError::WrongApiVersion(review.types.api_version));
    }
    if review.types.kind != "AdmissionReview" {
        return Err(ReviewError::WrongKind(review.types.kind));
    }
    let request: AdmissionRequest<DynamicObject> = review.try_into().map_err(|_| ReviewError::NoRequest)?;
    if request.uid.trim().is_empty() {
        return Err(ReviewError::MissingUid);
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_what_is_wrong() {
        let cases: [(&str, &str); 8] = [
            ("{", "body is not valid JSON"),
            ("[]", "body is not an AdmissionReview"),
            (r#"{"apiVersion":"admission.k8s.io/v1"}"#, "missing field `kind`"),
            (
                r#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview"}"#,
                "apiVersion must be admission.k8s.io/v1",
            ),
            (r#"{"apiVersion":"admission.k8s.io/v1","kind":"Pod"}"#, "kind must be AdmissionReview"),
            (r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#, "has no request"),
            (r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}"#, "request: missing field"),
            (r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"} x"#, "trailing characters"),
        ];
        for (body, want) in cases {
            let got = decode(body.as_bytes()).unwrap_err().to_string();
            assert!(got.contains(want), "{body}: got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let body = format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","x":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(decode(body.as_bytes()).unwrap_err().to_string().contains("recursion limit"));
    }
}
