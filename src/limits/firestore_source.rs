//! The Firestore snapshot source: lists a whole collection through the Firestore REST API
//! (`GET …/documents/{collection}?pageSize=N&pageToken=T`, page by page) for `sync.rs`. Fields are
//! Firestore's typed values (`{"integerValue": "4"}` — a string —, `{"stringValue": "warn"}`);
//! namespace and deployment come from fields or from the document id `<namespace>--<deployment>`.

use super::http_auth::Auth;
use super::http_source::{HttpSourceError, https_client};
use super::remote::{RemoteJson, percent_encode};
use super::sync::{ListRegistry, Listed};
use super::{BoxFuture, Scope};
use crate::config::{FirestoreFields, FirestoreRegistryConfig};
use hyper::Method;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::time::Duration;

/// Pages per sync at most: 10,000 pages of 300 are 3 million documents.
const MAX_PAGES: usize = 10_000;

pub struct FirestoreLister {
    remote: RemoteJson,
    list_url: String,
    page_size: u32,
    fields: FirestoreFields,
    namespace_default: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    #[serde(default)]
    documents: Vec<Document>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct Document {
    name: String,
    #[serde(default)]
    fields: Map<String, Value>,
}

impl FirestoreLister {
    pub fn new(config: &FirestoreRegistryConfig) -> Result<Self, HttpSourceError> {
        Ok(Self {
            remote: RemoteJson {
                client: https_client(config.ca_file.as_deref(), Duration::from_secs(5))?,
                auth: Auth::from_config(&config.auth),
            },
            list_url: config.list_url(),
            page_size: config.page_size,
            fields: config.fields.clone(),
            namespace_default: config.namespace_default.clone(),
        })
    }

    async fn list_all(&self) -> Result<Vec<Listed>, String> {
        let mut entries = vec![];
        let mut token: Option<String> = None;
        for page in 1..=MAX_PAGES {
            let mut url = format!("{}?pageSize={}", self.list_url, self.page_size);
            if let Some(token) = &token {
                url.push_str("&pageToken=");
                url.push_str(&percent_encode(token));
            }
            let body = self.remote.send(Method::GET, &url, None).await.map_err(|e| format!("page {page}: {e}"))?;
            let listed: Page =
                serde_json::from_slice(&body).map_err(|e| format!("page {page}: not a Firestore listing: {e}"))?;
            for doc in &listed.documents {
                entries.push(self.entry(doc)?);
            }
            match listed.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) => token = Some(next),
                None => return Ok(entries),
            }
        }
        Err(format!("more than {MAX_PAGES} pages"))
    }

    /// One document as an entry; an error names the document and the field.
    fn entry(&self, doc: &Document) -> Result<Listed, String> {
        let id = doc.name.rsplit('/').next().unwrap_or_default();
        let at = |field: &str, problem: String| format!("document {}: field {field}: {problem}", doc.name);
        let text = |field: &str| -> Result<Option<String>, String> {
            match doc.fields.get(field) {
                None => Ok(None),
                Some(v) => match v.get("stringValue").and_then(Value::as_str) {
                    Some(s) => Ok(Some(s.to_string())),
                    None if v.get("nullValue").is_some() => Ok(None),
                    None => Err(at(field, format!("expected a stringValue, got {v}"))),
                },
            }
        };
        let integer = |field: &str| -> Result<Option<i64>, String> {
            match doc.fields.get(field) {
                None => Ok(None),
                Some(v) if v.get("nullValue").is_some() => Ok(None),
                Some(v) => match v.get("integerValue") {
                    Some(Value::String(s)) => {
                        s.parse().map(Some).map_err(|_| at(field, format!("integerValue {s:?} is not a whole number")))
                    }
                    Some(Value::Number(n)) => {
                        n.as_i64().map(Some).ok_or_else(|| at(field, format!("{n} is not whole")))
                    }
                    _ => Err(at(field, format!("expected an integerValue, got {v}"))),
                },
            }
        };
        let f = &self.fields;
        let (namespace, deployment) = match (text(&f.namespace)?, text(&f.deployment)?) {
            (Some(ns), Some(d)) => (ns, d),
            _ => match id.split_once("--") {
                Some((ns, d)) if !ns.is_empty() && !d.is_empty() => (ns.to_string(), d.to_string()),
                _ => {
                    return Err(format!(
                        "document {}: no {} and {} fields, and its id is not <namespace>--<deployment>",
                        doc.name, f.namespace, f.deployment
                    ));
                }
            },
        };
        let max = integer(&f.max_replicas)?.ok_or_else(|| at(&f.max_replicas, "missing".into()))?;
        let mode = match text(&f.mode)?.as_deref() {
            None => None,
            Some("enforce") => Some(crate::decision::policy::Mode::Enforce),
            Some("warn") => Some(crate::decision::policy::Mode::Warn),
            Some("audit") => Some(crate::decision::policy::Mode::Audit),
            Some(other) => return Err(at(&f.mode, format!("{other:?}; expected enforce, warn or audit"))),
        };
        let deployment = (deployment != self.namespace_default).then_some(deployment);
        let scope = if deployment.is_some() { Scope::Deployment } else { Scope::NamespaceDefault };
        let owner = text(&f.owner)?.map(std::sync::Arc::from);
        let limit = super::file::validated_limit(max, integer(&f.min_replicas)?, mode, owner, scope, &doc.name)
            .map_err(|e| format!("document {}: {e}", doc.name))?;
        Ok(Listed { place: format!("document {}", doc.name), namespace, deployment, limit })
    }
}

impl ListRegistry for FirestoreLister {
    fn list(&self) -> BoxFuture<'_, Result<Vec<Listed>, String>> {
        Box::pin(self.list_all())
    }
}
