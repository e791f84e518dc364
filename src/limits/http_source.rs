//! The HTTP source: one GET per workload (through the cache), to a registry service or straight
//! to Firestore's REST API. 404 means "not registered"; then the namespace-default URL, if set,
//! is asked the same way.

use super::RegistryError;
use super::cache::Fetch;
use super::entry::{self, ABSURD_REPLICAS, Fields};
use super::transport::{Auth, ClientError, HttpClient, error_chain, https_client};
use super::{Limit, Scope};
use crate::config::{DocumentFormat, FieldPointers, HttpRegistryConfig, seconds};
use axum::body::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::StatusCode;
use serde_json::Value;
use std::time::Duration;

/// A registry document larger than this is not a registry document.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

pub struct HttpFetcher {
    client: HttpClient,
    url: String,
    namespace_default_url: Option<String>,
    fields: FieldPointers,
    auth: Option<Auth>,
    timeout: Duration,
}

impl HttpFetcher {
    pub fn new(config: &HttpRegistryConfig) -> Result<Self, ClientError> {
        let client = https_client(config.ca_file.as_deref(), seconds(config.connect_timeout_seconds))?;
        let auth = Auth::from_config(&config.auth);
        let fields = match config.format {
            DocumentFormat::Custom => config.fields.clone(),
            DocumentFormat::Firestore => FieldPointers::firestore(),
        };
        Ok(Self {
            client,
            url: config.url.clone(),
            namespace_default_url: config.namespace_default_url.clone(),
            fields,
            auth,
            timeout: seconds(config.timeout_seconds),
        })
    }

    async fn fetch_uncapped(&self, namespace: &str, deployment: &str) -> Result<Option<Limit>, RegistryError> {
        fn entry(url: &str) -> impl FnOnce(String) -> RegistryError + '_ {
            move |problem| RegistryError::Entry { place: url.to_string(), problem }
        }
        let url = fill(&self.url, namespace, deployment);
        if let Some(doc) = self.get(&url).await? {
            return parse_document(&doc, &self.fields, Scope::Deployment).map(Some).map_err(entry(&url));
        }
        let Some(template) = &self.namespace_default_url else { return Ok(None) };
        let url = fill(template, namespace, deployment);
        match self.get(&url).await? {
            Some(doc) => parse_document(&doc, &self.fields, Scope::NamespaceDefault).map(Some).map_err(entry(&url)),
            None => Ok(None),
        }
    }

    /// GETs a document; `None` for 404.
    async fn get(&self, url: &str) -> Result<Option<Value>, RegistryError> {
        let transport = |detail: String| RegistryError::Transport { url: url.to_string(), detail };
        let mut request = hyper::Request::get(url).header("Accept", "application/json");
        if let Some(auth) = &self.auth {
            request = request.header("Authorization", auth.header(&self.client).await?);
        }
        let request = request.body(Full::new(Bytes::new())).map_err(|e| transport(format!("bad registry URL: {e}")))?;
        let response = self.client.request(request).await.map_err(|e| transport(error_chain(&e)))?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            let detail = "no registry document".to_string();
            return Err(RegistryError::Status { url: url.to_string(), status: status.to_string(), detail });
        }
        let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map_err(|e| transport(format!("cannot read the document: {e}")))?
            .to_bytes();
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| RegistryError::Decode(format!("{url}: the document is not JSON: {e}")))
    }
}

impl Fetch for HttpFetcher {
    async fn fetch(&self, namespace: &str, deployment: &str) -> Result<Option<Limit>, RegistryError> {
        match tokio::time::timeout(self.timeout, self.fetch_uncapped(namespace, deployment)).await {
            Ok(answer) => answer,
            Err(_) => Err(RegistryError::Timeout(format!("no answer within {} s", self.timeout.as_secs_f64()))),
        }
    }
}

/// The URL of a workload: `{namespace}` and `{name}` replaced (Kubernetes names need no escaping).
fn fill(template: &str, namespace: &str, deployment: &str) -> String {
    template.replace("{namespace}", namespace).replace("{name}", deployment)
}

/// Reads an entry through the field pointers; numbers may be JSON integers or numeric strings
/// (Firestore's `integerValue` is a string).
pub fn parse_document(doc: &Value, fields: &FieldPointers, scope: Scope) -> Result<Limit, String> {
    let integer = |pointer: &str| -> Result<Option<i64>, String> {
        match doc.pointer(pointer) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => {
                n.as_i64().map(Some).ok_or_else(|| format!("{pointer} is not a whole number: {n}"))
            }
            Some(Value::String(s)) => s
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| format!("{pointer} is not a whole number: {s:?} (at most {ABSURD_REPLICAS})")),
            Some(other) => Err(format!("{pointer} is not a number: {other}")),
        }
    };
    let text = |pointer: &str| -> Result<Option<String>, String> {
        match doc.pointer(pointer) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!("{pointer} is not a string: {other}")),
        }
    };
    let max = integer(&fields.max_replicas)?.ok_or_else(|| format!("no maxReplicas at {}", fields.max_replicas))?;
    let pointer_of = |e: entry::EntryError| {
        let pointer = match e.field {
            "maxReplicas" => &fields.max_replicas,
            "minReplicas" => &fields.min_replicas,
            "mode" => &fields.mode,
            _ => &fields.owner,
        };
        format!("{pointer}: {}", e.problem)
    };
    let mode = text(&fields.mode)?.as_deref().map(entry::mode).transpose().map_err(pointer_of)?;
    let owner = text(&fields.owner)?.as_deref().map(entry::owner).transpose().map_err(pointer_of)?.flatten();
    Fields { max_replicas: max, min_replicas: integer(&fields.min_replicas)?, mode, owner }
        .limit(scope)
        .map_err(pointer_of)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::policy::Mode;
    use serde_json::json;

    #[test]
    fn reads_custom_and_firestore_documents() {
        let custom = json!({"maxReplicas": 4, "minReplicas": "2", "mode": "warn", "owner": "a@x"});
        let l = parse_document(&custom, &FieldPointers::default(), Scope::Deployment).unwrap();
        assert_eq!(
            (l.max_replicas, l.min_replicas, l.mode, l.owner.as_deref()),
            (4, Some(2), Some(Mode::Warn), Some("a@x"))
        );
        let firestore = json!({"name": "projects/p/databases/(default)/documents/ped/team-a--api",
            "fields": {"maxReplicas": {"integerValue": "6"}, "owner": {"stringValue": "b@x"}}});
        let l = parse_document(&firestore, &FieldPointers::firestore(), Scope::Deployment).unwrap();
        assert_eq!((l.max_replicas, l.min_replicas, l.owner.as_deref()), (6, None, Some("b@x")));
    }

    #[test]
    fn bad_documents_say_what_is_wrong() {
        let f = FieldPointers::default();
        for (doc, want) in [
            (json!({}), "no maxReplicas at /maxReplicas"),
            (json!({"maxReplicas": "four"}), "/maxReplicas is not a whole number: \"four\""),
            (json!({"maxReplicas": 4.5}), "/maxReplicas is not a whole number"),
            (json!({"maxReplicas": -1}), "/maxReplicas: must be between 0 and 100000, got -1"),
            (
                json!({"maxReplicas": 4, "mode": "strict"}),
                "/mode: \"strict\" is not a mode; use enforce, warn or audit",
            ),
            (json!({"maxReplicas": 4, "owner": "o".repeat(1000)}), "/owner: is 1000 characters long, at most 256"),
            (json!({"maxReplicas": [4]}), "/maxReplicas is not a number"),
        ] {
            let e = parse_document(&doc, &f, Scope::Deployment).unwrap_err();
            assert!(e.contains(want), "{doc}: {e}");
        }
    }
}
