//! The Firestore snapshot source: lists a whole collection through the Firestore REST API
//! (`GET …/documents/{collection}?pageSize=N&pageToken=T&mask.fieldPaths=…`, page by page) for
//! `sync.rs`. Fields are Firestore's typed values (`{"integerValue": "4"}` — a string —,
//! `{"stringValue": "warn"}`); namespace and deployment come from fields or from the document id
//! `<namespace>--<deployment>`.
//!
//! Memory stays a bounded multiple of what is kept: the field mask asks Firestore for the six
//! fields read and nothing else, a page larger than `page_size` documents can be is refused before
//! it is parsed, a page is decoded once into borrowed values (off the async runtime, so admission
//! keeps its threads), and the entry budget (`registry.maxEntries`) stops a listing that grows
//! past it.

use super::BoxFuture;
use super::RegistryError;
use super::entry::EntryBudget;
use super::firestore_document::{Decoder, Document, MAX_DOCUMENT_BYTES};
use super::firestore_reader::FirestoreReader;
use super::store::Revision;
use super::sync::{ListRegistry, Listed, Listing};
use super::transport::{Auth, ClientError, RemoteJson, https_client, percent_encode};
use crate::config::FirestoreRegistryConfig;
use hyper::Method;
use serde::Deserialize;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

/// Pages per sync at most: 10,000 pages of 300 are 3 million documents.
const MAX_PAGES: usize = 10_000;
pub struct FirestoreLister {
    /// Shared with the `FirestoreReader` it makes: one connection pool, one cached token.
    remote: Arc<RemoteJson>,
    list_url: String,
    page_size: u32,
    decoder: Arc<Decoder>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page<'a> {
    #[serde(default, borrow)]
    documents: Vec<Document<'a>>,
    #[serde(default, borrow)]
    next_page_token: Option<Cow<'a, str>>,
}

impl FirestoreLister {
    pub fn new(config: &FirestoreRegistryConfig) -> Result<Self, ClientError> {
        Ok(Self {
            remote: Arc::new(RemoteJson {
                client: https_client(config.ca_file.as_deref(), Duration::from_secs(5))?,
                auth: Auth::from_config(&config.auth),
            }),
            list_url: config.list_url(),
            page_size: config.page_size,
            decoder: Arc::new(Decoder {
                fields: config.fields.clone(),
                namespace_default: config.namespace_default.clone(),
            }),
        })
    }

    /// The listing URL of one page: only the fields read (`mask.fieldPaths`).
    fn page_url(&self, token: Option<&str>) -> String {
        let f = &self.decoder.fields;
        let mut url = format!("{}?pageSize={}", self.list_url, self.page_size);
        for field in [&f.namespace, &f.deployment, &f.max_replicas, &f.min_replicas, &f.mode, &f.owner] {
            url.push_str("&mask.fieldPaths=");
            url.push_str(&percent_encode(field));
        }
        if let Some(token) = token {
            url.push_str("&pageToken=");
            url.push_str(&percent_encode(token));
        }
        url
    }

    async fn list_all(&self, mut budget: EntryBudget) -> Result<Listing, RegistryError> {
        // A listing of pages has no read time of its own: it shows Firestore as of its start, or later.
        let revision = Revision::at("firestore", jiff::Timestamp::now());
        let mut entries = vec![];
        let mut token: Option<String> = None;
        let max_bytes = self.page_size as usize * MAX_DOCUMENT_BYTES + 64 * 1024;
        for page in 1..=MAX_PAGES {
            let url = self.page_url(token.as_deref());
            let body = self
                .remote
                .send_bounded(Method::GET, &url, None, max_bytes)
                .await
                .map_err(|e| RegistryError::at(format!("page {page}"), e))?;
            let decoder = self.decoder.clone();
            let (listed, next, left) =
                tokio::task::spawn_blocking(move || decoder.page(&body, page, budget))
                    .await
                    .map_err(|e| RegistryError::Decode(format!("page {page}: the decoding task failed: {e}")))??;
            budget = left;
            entries.extend(listed);
            match next {
                Some(next) => token = Some(next),
                None => return Ok(Listing { entries, revision }),
            }
        }
        Err(RegistryError::Decode(format!("the listing has more than {MAX_PAGES} pages")))
    }
}

type DecodedPage = (Vec<Listed>, Option<String>, EntryBudget);

impl Decoder {
    /// One page's entries, the next page token, and what is left of the budget.
    fn page(&self, body: &[u8], page: usize, mut budget: EntryBudget) -> Result<DecodedPage, RegistryError> {
        let listed: Page = serde_json::from_slice(body)
            .map_err(|e| RegistryError::Decode(format!("page {page}: not a Firestore listing: {e}")))?;
        let mut entries = Vec::with_capacity(listed.documents.len());
        for doc in &listed.documents {
            budget.take()?;
            entries.push(self.entry(doc)?);
        }
        let next = listed.next_page_token.filter(|t| !t.is_empty()).map(Cow::into_owned);
        Ok((entries, next, budget))
    }
}

impl ListRegistry for FirestoreLister {
    fn list(&self, budget: EntryBudget) -> BoxFuture<'_, Result<Listing, RegistryError>> {
        Box::pin(self.list_all(budget))
    }
}

impl FirestoreLister {
    /// The reader of single entries of the same collection, through the same client and token.
    pub fn reader(&self) -> FirestoreReader {
        let (parent, collection_id) = self.list_url.rsplit_once('/').unwrap_or((&self.list_url, ""));
        FirestoreReader {
            remote: self.remote.clone(),
            query_url: format!("{parent}:runQuery"),
            collection_id: collection_id.to_string(),
            list_url: self.list_url.clone(),
            decoder: self.decoder.clone(),
        }
    }
}
