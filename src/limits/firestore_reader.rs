//! A denial's re-read from Firestore (`LimitSource::reread`): one workload's entry, read past the
//! snapshot the lister keeps (`firestore_source`), and the snapshot source that offers it.

use super::BoxFuture;
use super::RegistryError;
use super::firestore_document::{Decoder, Document, MAX_DOCUMENT_BYTES};
use super::store::Revision;
use super::transport::{RemoteJson, percent_encode};
use hyper::Method;
use serde::Deserialize;
use std::sync::Arc;

/// One workload's entry read straight from Firestore, past the snapshot: what a denial checks
/// before it refuses (`LimitSource::reread`), so that a limit the PED pipeline raised since the
/// last sync allows the deploy that follows it. A document is found by its fields (a `runQuery`
/// on namespace and deployment) or by its id `<namespace>--<deployment>`, as the listing reads it;
/// the workload's own entry first, then its namespace's default.
pub struct FirestoreReader {
    pub(super) remote: Arc<RemoteJson>,
    /// `…/documents/{collection}`: documents by id.
    pub(super) list_url: String,
    /// `…/documents[/parent path]:runQuery` and the collection's own id.
    pub(super) query_url: String,
    pub(super) collection_id: String,
    pub(super) decoder: Arc<Decoder>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryResult<'a> {
    #[serde(default, borrow)]
    document: Option<Document<'a>>,
    #[serde(default)]
    read_time: Option<jiff::Timestamp>,
}

impl FirestoreReader {
    /// The entry that applies to the workload now: its own, else its namespace's default; `None`
    /// when the registry has neither. With the revision read (`firestore@<the query's readTime>`).
    pub async fn entry(
        &self,
        namespace: &str,
        deployment: &str,
    ) -> Result<(Option<super::Limit>, Revision), RegistryError> {
        let (own, revision) = self.document(namespace, deployment).await?;
        if own.is_some() {
            return Ok((own, revision));
        }
        self.document(namespace, &self.decoder.namespace_default).await
    }

    /// The document for (namespace, name): by its fields, else by its id.
    async fn document(&self, namespace: &str, name: &str) -> Result<(Option<super::Limit>, Revision), RegistryError> {
        let f = &self.decoder.fields;
        let equal = |field: &str, value: &str| serde_json::json!({"fieldFilter": {"field": {"fieldPath": field}, "op": "EQUAL", "value": {"stringValue": value}}});
        let query = serde_json::json!({"structuredQuery": {
            "from": [{"collectionId": self.collection_id}],
            "where": {"compositeFilter": {"op": "AND", "filters": [equal(&f.namespace, namespace), equal(&f.deployment, name)]}},
            "limit": 1,
        }});
        let body = self.remote.send_bounded(Method::POST, &self.query_url, Some(&query), 64 * 1024).await?;
        let results: Vec<QueryResult> = serde_json::from_slice(&body)
            .map_err(|e| RegistryError::Decode(format!("not a Firestore query result: {e}")))?;
        let read = results.iter().find_map(|r| r.read_time).unwrap_or_else(jiff::Timestamp::now);
        let revision = Revision::at("firestore", read);
        if let Some(doc) = results.iter().find_map(|r| r.document.as_ref()) {
            return self.decoder.entry(doc).map(|listed| (Some(listed.limit), revision));
        }
        let url = format!("{}/{}--{}", self.list_url, percent_encode(namespace), percent_encode(name));
        match self.remote.send_bounded(Method::GET, &url, None, MAX_DOCUMENT_BYTES * 4).await {
            Ok(body) => {
                let doc: Document = serde_json::from_slice(&body)
                    .map_err(|e| RegistryError::Decode(format!("not a Firestore document: {e}")))?;
                self.decoder.entry(&doc).map(|listed| (Some(listed.limit), revision))
            }
            Err(RegistryError::Status { status, .. }) if status.starts_with("404") => Ok((None, revision)),
            Err(e) => Err(e),
        }
    }
}

/// The Firestore snapshot as the webhook asks it: lookups from memory (`store`), and a denial's
/// re-read from Firestore itself (`reader`).
pub struct FirestoreSnapshot {
    pub store: Arc<super::store::SnapshotStore>,
    pub reader: FirestoreReader,
}

impl super::LimitSource for FirestoreSnapshot {
    fn lookup<'a>(&'a self, namespace: &'a str, deployment: &'a str) -> BoxFuture<'a, super::Lookup> {
        self.store.lookup(namespace, deployment)
    }

    fn is_ready(&self) -> bool {
        self.store.is_ready()
    }

    fn first_load(&self) -> BoxFuture<'_, Result<(), super::error::NotRead>> {
        self.store.first_load()
    }

    fn revision<'a>(&'a self, namespace: &'a str, deployment: &'a str) -> BoxFuture<'a, Option<Arc<str>>> {
        super::LimitSource::revision(&*self.store, namespace, deployment)
    }

    fn reread<'a>(&'a self, namespace: &'a str, deployment: &'a str) -> Option<super::Reread<'a>> {
        Some(Box::pin(async move {
            let (entry, revision) = self.reader.entry(namespace, deployment).await.map_err(|e| e.to_string())?;
            Ok((entry.map_or(super::Lookup::Unregistered, super::Lookup::Registered), revision.id))
        }))
    }
}
