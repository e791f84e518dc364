//! Reading an AdmissionReview body. Every way a body can be wrong maps to a `ReviewError` whose
//! text names the problem; the server answers it with HTTP 400 and never panics on it.
//!
//! The envelope is read with kube's and k8s-openapi's types, but the objects stay raw JSON until
//! a replica path asks for them, and then only labels, annotations and `spec` are read. A
//! validating webhook runs after the API server has validated the object against its schema, so
//! nothing is lost; skipping `managedFields`, `status` and the last-applied copy halves the cost
//! of a request (BENCHMARKS.md: the decode was 1.6 times a plain JSON parse of the body with
//! kube's `AdmissionReview<DynamicObject>`, whose flattened fields buffer the object twice).

use crate::decision::changes::NOISE_ANNOTATIONS;
use k8s_openapi::api::authentication::v1::UserInfo;
use kube::core::admission::Operation;
use kube::core::{GroupVersionKind, GroupVersionResource};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

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
    #[error("request.{which} is not a valid {kind}: {detail}")]
    InvalidObject { which: &'static str, kind: &'static str, detail: String },
    #[error("request.{which}.{field} must be 0 or more, got {value}")]
    InvalidReplicas { which: &'static str, field: &'static str, value: i64 },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Review<'a> {
    api_version: String,
    kind: String,
    #[serde(default, borrow)]
    request: Option<Request<'a>>,
}

/// The request of an `admission.k8s.io/v1` AdmissionReview; `object` and `oldObject` are the
/// raw JSON of the body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request<'a> {
    pub uid: String,
    pub kind: GroupVersionKind,
    pub resource: GroupVersionResource,
    #[serde(default)]
    pub sub_resource: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    pub operation: Operation,
    pub user_info: UserInfo,
    /// Read in the same pass as the envelope: one scan of the body, not one for the envelope and
    /// another for each object (BENCHMARKS.md, "where the time goes").
    #[serde(default, borrow)]
    pub object: Option<KubernetesObject<'a>>,
    #[serde(default, borrow)]
    pub old_object: Option<KubernetesObject<'a>>,
    #[serde(default)]
    pub dry_run: bool,
}

/// The parts of a Kubernetes object replica-guard reads. `spec` stays raw JSON: its replica
/// fields are read straight from it, and it is parsed into a tree only when an UPDATE changed it.
#[derive(Debug, Default, Deserialize)]
pub struct KubernetesObject<'a> {
    // (`kind` is checked against the request's resource in `subject`.)
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub metadata: Metadata,
    #[serde(default, borrow)]
    pub spec: Option<&'a RawValue>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// Without the bookkeeping annotations, which are never read: `last-applied-configuration`
    /// alone is an escaped copy of the whole manifest.
    #[serde(default, deserialize_with = "annotations_without_noise")]
    pub annotations: Option<BTreeMap<String, String>>,
}

fn annotations_without_noise<'de, D: serde::Deserializer<'de>>(
    de: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Option<BTreeMap<String, String>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of annotations")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
            de.deserialize_map(self)
        }
        fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if NOISE_ANNOTATIONS.contains(&key.as_ref()) {
                    map.next_value::<serde::de::IgnoredAny>()?;
                } else {
                    out.insert(key.into_owned(), map.next_value()?);
                }
            }
            Ok(Some(out))
        }
    }
    de.deserialize_option(Visitor)
}

/// A parse error and where it happened (`request.object.spec.replicas`; `.` at the top).
pub struct Located {
    pub path: String,
    pub error: serde_json::Error,
}

impl Located {
    /// `path: message`, or just the message at the top level.
    pub fn text(&self) -> String {
        if self.path == "." || self.path.is_empty() {
            self.error.to_string()
        } else {
            format!("{}: {}", self.path, self.error)
        }
    }
}

/// Deserializes `T` from all of `json`. The happy path is a plain serde_json parse; only a
/// failure parses again with `serde_path_to_error`, so the error names where it is without every
/// good request paying for path bookkeeping (a tenth of a request's CPU, BENCHMARKS.md).
pub fn parse<'a, T: Deserialize<'a>>(json: &'a [u8]) -> Result<T, Located> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let first = match T::deserialize(&mut de).and_then(|value| de.end().map(|()| value)) {
        Ok(value) => return Ok(value),
        Err(e) => e,
    };
    let mut de = serde_json::Deserializer::from_slice(json);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Err(e) => Err(Located { path: e.path().to_string(), error: e.into_inner() }),
        // The value parsed but something followed it (trailing characters): the first error.
        Ok(_) => Err(Located { path: ".".into(), error: first }),
    }
}

/// Decodes an `admission.k8s.io/v1` AdmissionReview and returns its request.
pub fn decode(body: &[u8]) -> Result<Request<'_>, ReviewError> {
    let review: Review<'_> = parse(body).map_err(|e| {
        if e.error.is_data() { ReviewError::NotAdmissionReview(e.text()) } else { ReviewError::NotJson(e.text()) }
    })?;
    if review.api_version != API_VERSION {
        return Err(ReviewError::WrongApiVersion(review.api_version));
    }
    if review.kind != "AdmissionReview" {
        return Err(ReviewError::WrongKind(review.kind));
    }
    let request = review.request.ok_or(ReviewError::NoRequest)?;
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
    fn deep_nesting_in_an_ignored_field_is_skipped_without_overflow() {
        let body = format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","x":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        // serde_json skips unread values iteratively: no stack overflow, and the error is the real one.
        assert_eq!(decode(body.as_bytes()).unwrap_err(), ReviewError::NoRequest);
    }
}
