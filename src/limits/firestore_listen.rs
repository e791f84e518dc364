//! The Firestore listener: follows the registry collection through Firestore's `Listen` stream
//! (gRPC, the generated client of `googleapis-tonic-google-firestore-v1` over tonic's HTTP/2
//! channel), so a limit the PED pipeline raises reaches the snapshot — and the backstop's
//! parameters, which follow the snapshot — within a second instead of at the next sync.
//!
//! The periodic sync (`sync::Syncer`) stays as the safety net: it runs at its own interval, a
//! listing that began before a pushed change is dropped as older, and a listing that disagrees
//! with what the stream built makes the stream start over from a full read. What the stream
//! delivers passes the same checks as a sync (`sync::Applier`: all or nothing, the shrink guard,
//! `registry.maxEntries`), and is applied only at the stream's consistent points (a global
//! `NO_CHANGE` with a read time, once the target is `CURRENT`), whose read time is the revision.
//!
//! A dropped stream resumes from the last consistent point's resume token, after a backoff of 1 s
//! doubling to 60 s; the stream is reopened every 30 minutes (a fresh token for a long-lived
//! stream). `/readyz` is the store's: ready after the first complete sync or stream snapshot.

use super::RegistryError;
use super::entry::TooMany;
use super::firestore_document::{Decoder, Document, Integer, Typed};
use super::firestore_reader::FirestoreReader;
use super::store::Revision;
use super::sync::{Applier, Listed, Listing};
use super::transport::RemoteJson;
use crate::config::FirestoreRegistryConfig;
use crate::part::Stop;
use googleapis_tonic_google_firestore_v1::google::firestore::v1 as fs;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

/// The one target the stream listens to.
const TARGET: i32 = 1;
/// A stream is reopened (resuming) after this long, so its token never outlives it.
const STREAM_LIFETIME: Duration = Duration::from_secs(30 * 60);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a closed stream is given to end on the way out.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("registry.firestore.url: {url} is not a usable gRPC endpoint for the listener: {detail}")]
    Endpoint { url: String, detail: String },
    #[error("registry.firestore.caFile: cannot read {path}: {error}")]
    CaFile { path: std::path::PathBuf, error: std::io::Error },
}

pub struct Listener {
    channel: Channel,
    /// `projects/{p}/databases/{d}`.
    database: String,
    /// The collection's parent (`…/documents` or `…/documents/<parent document>`) and its id.
    parent: String,
    collection_id: String,
    remote: Arc<RemoteJson>,
    decoder: Arc<Decoder>,
    applier: Arc<Applier>,
    max_entries: usize,
    grpc_url: String,
}

/// What the stream has told so far: every document of the collection as decoded (an entry, or why
/// it is not one), and where to resume.
#[derive(Default)]
struct Feed {
    documents: HashMap<String, Result<Listed, RegistryError>>,
    /// The resume token of the last consistent point applied.
    resume_token: Option<Vec<u8>>,
}

/// How one stream ended.
enum Ended {
    /// Its planned end (`STREAM_LIFETIME`), or a full read asked for: reopen at once.
    Reopen,
    /// The server or the network ended it: reopen after a backoff.
    Failed(String),
    /// The process is stopping: the request side was closed and the server ended the stream.
    Stopped,
}

impl Listener {
    pub fn new(
        config: &FirestoreRegistryConfig,
        reader: &FirestoreReader,
        applier: Arc<Applier>,
        max_entries: usize,
    ) -> Result<Self, ListenError> {
        let grpc_url = config.grpc_url();
        let bad = |detail: String| ListenError::Endpoint { url: grpc_url.clone(), detail };
        let mut endpoint = Endpoint::from_shared(grpc_url.clone())
            .map_err(|e| bad(e.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        if grpc_url.starts_with("https://") {
            let mut tls = ClientTlsConfig::new().with_native_roots();
            if let Some(path) = &config.ca_file {
                let pem = std::fs::read(path).map_err(|error| ListenError::CaFile { path: path.clone(), error })?;
                tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
            }
            endpoint = endpoint.tls_config(tls).map_err(|e| bad(e.to_string()))?;
        }
        let (parent, collection_id) = query_target(config);
        Ok(Self {
            channel: endpoint.connect_lazy(),
            database: config.database_path(),
            parent,
            collection_id: collection_id.to_string(),
            // The reader's client and token: one connection pool, one metadata token.
            remote: reader.remote.clone(),
            decoder: reader.decoder.clone(),
            applier,
            max_entries,
            grpc_url,
        })
    }

    /// Listens until `stop`: reopens every stream that ends, resuming where the last one was. On
    /// the way out the stream is closed as a client ends it (its request side first), not cut.
    pub async fn run(self, mut stop: Stop) {
        let mut feed = Feed::default();
        let mut backoff = FIRST_BACKOFF;
        loop {
            let opened = Instant::now();
            match self.listen(&mut feed, stop.clone()).await {
                Ended::Stopped => return,
                Ended::Reopen => backoff = FIRST_BACKOFF,
                Ended::Failed(why) => {
                    // A stream that ran a while before failing starts the backoff over.
                    if opened.elapsed() > MAX_BACKOFF {
                        backoff = FIRST_BACKOFF;
                    }
                    tracing::warn!(
                        url = %self.grpc_url,
                        error = %why,
                        retry_in_seconds = backoff.as_secs(),
                        "the Firestore listener's stream ended; the periodic sync keeps the registry meanwhile"
                    );
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = stop.requested() => return,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// One stream, from open to end.
    async fn listen(&self, feed: &mut Feed, mut stop: Stop) -> Ended {
        let request = match self.request(feed, stop.clone()).await {
            Ok(request) => request,
            Err(e) => return Ended::Failed(e.to_string()),
        };
        let mut client = fs::firestore_client::FirestoreClient::new(self.channel.clone());
        let mut stream = match client.listen(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                if status.code() == tonic::Code::Unauthenticated
                    && let Some(auth) = &self.remote.auth
                {
                    auth.invalidate().await;
                }
                if refuses_the_request(&status) {
                    *feed = Feed::default();
                }
                return Ended::Failed(status_words(&status));
            }
        };
        // A full read (no resume token) is applied at its first consistent point even when the
        // collection is empty; a resumed stream only when something changed.
        let mut state = Stream { current: false, pending_token: None, changed: feed.resume_token.is_none() };
        let lifetime = tokio::time::sleep(STREAM_LIFETIME);
        tokio::pin!(lifetime);
        loop {
            let message = tokio::select! {
                message = stream.message() => message,
                () = stop.requested() => return closed(stream).await,
                () = &mut lifetime => return Ended::Reopen,
                () = self.applier.feed_missed() => {
                    tracing::warn!("a sync found a registry the listener had not seen; the listener reads it whole again");
                    *feed = Feed::default();
                    return Ended::Reopen;
                }
            };
            let response = match message {
                Ok(Some(response)) => response,
                Ok(None) => return Ended::Failed("the server closed the stream".into()),
                Err(status) => {
                    if refuses_the_request(&status) {
                        *feed = Feed::default();
                    }
                    return Ended::Failed(status_words(&status));
                }
            };
            if let Err(ended) = self.take(response, feed, &mut state).await {
                return ended;
            }
        }
    }

    /// The stream's one request: listen to the collection, from the last consistent point if any.
    async fn request(
        &self,
        feed: &Feed,
        mut stop: Stop,
    ) -> Result<
        tonic::Request<impl futures_util::Stream<Item = fs::ListenRequest> + Send + 'static + use<>>,
        RegistryError,
    > {
        use futures_util::StreamExt;
        let query = fs::StructuredQuery {
            from: vec![fs::structured_query::CollectionSelector {
                collection_id: self.collection_id.clone(),
                all_descendants: false,
            }],
            ..Default::default()
        };
        let target = fs::Target {
            target_id: TARGET,
            target_type: Some(fs::target::TargetType::Query(fs::target::QueryTarget {
                parent: self.parent.clone(),
                query_type: Some(fs::target::query_target::QueryType::StructuredQuery(query)),
            })),
            resume_type: feed.resume_token.clone().map(fs::target::ResumeType::ResumeToken),
            ..Default::default()
        };
        let add = fs::ListenRequest {
            database: self.database.clone(),
            target_change: Some(fs::listen_request::TargetChange::AddTarget(target)),
            ..Default::default()
        };
        // The request side stays open for the stream's life (closing it ends the stream), until the
        // process stops: then it closes, and the server ends the stream.
        let closing = futures_util::stream::once(async move { stop.requested().await })
            .filter_map(|()| std::future::ready(None::<fs::ListenRequest>));
        let requests = futures_util::stream::once(std::future::ready(add)).chain(closing);
        let mut request = tonic::Request::new(requests);
        let metadata = request.metadata_mut();
        let text =
            |value: &str| value.parse().map_err(|_| RegistryError::Decode(format!("{value:?} is not a header value")));
        // Firestore routes a request by its database.
        metadata.insert("google-cloud-resource-prefix", text(&self.database)?);
        metadata.insert("x-goog-request-params", text(&format!("database={}", self.database.replace('/', "%2F")))?);
        if let Some(auth) = &self.remote.auth {
            metadata.insert("authorization", text(&auth.header(&self.remote.client).await?)?);
        }
        Ok(request)
    }

    /// One message of the stream. `Err` ends the stream.
    async fn take(&self, response: fs::ListenResponse, feed: &mut Feed, state: &mut Stream) -> Result<(), Ended> {
        use fs::listen_response::ResponseType;
        use fs::target_change::TargetChangeType;
        match response.response_type {
            Some(ResponseType::DocumentChange(change)) => {
                let Some(document) = change.document else { return Ok(()) };
                if change.target_ids.contains(&TARGET) {
                    let decoded = self.decode(&document);
                    feed.documents.insert(document.name, decoded);
                    if feed.documents.len() > self.max_entries {
                        let too_many = TooMany { max: self.max_entries };
                        self.applier.apply_pushed(Err(too_many.into())).await;
                        *feed = Feed::default();
                        return Err(Ended::Failed("the collection holds more entries than registry.maxEntries".into()));
                    }
                } else if change.removed_target_ids.contains(&TARGET) {
                    feed.documents.remove(&document.name);
                }
                state.changed = true;
            }
            Some(ResponseType::DocumentDelete(gone)) => {
                state.changed |= feed.documents.remove(&gone.document).is_some();
            }
            Some(ResponseType::DocumentRemove(gone)) => {
                state.changed |= feed.documents.remove(&gone.document).is_some();
            }
            // The server's count disagrees with ours: something was missed; read it all again.
            Some(ResponseType::Filter(filter))
                if filter.target_id == TARGET
                    && state.current
                    && usize::try_from(filter.count).ok() != Some(feed.documents.len()) =>
            {
                *feed = Feed::default();
                return Err(Ended::Reopen);
            }
            Some(ResponseType::Filter(_)) => {}
            Some(ResponseType::TargetChange(change)) => {
                let kind = TargetChangeType::try_from(change.target_change_type).unwrap_or(TargetChangeType::NoChange);
                if !change.resume_token.is_empty() {
                    state.pending_token = Some(change.resume_token.clone());
                }
                match kind {
                    TargetChangeType::Reset => {
                        feed.documents.clear();
                        state.current = false;
                        state.changed = true;
                    }
                    TargetChangeType::Current => state.current = true,
                    TargetChangeType::Remove => {
                        // Firestore refused the target (a resume token it no longer knows, a
                        // database that changed): the next stream reads the collection whole.
                        let cause = change.cause.map_or_else(|| "no cause given".to_string(), |c| c.message);
                        *feed = Feed::default();
                        return Err(Ended::Failed(format!("Firestore removed the listen target: {cause}")));
                    }
                    TargetChangeType::Add => {}
                    TargetChangeType::NoChange if change.target_ids.is_empty() && state.current => {
                        if let Some(read_time) = change.read_time {
                            let time = jiff::Timestamp::new(read_time.seconds, read_time.nanos);
                            self.consistent(feed, state, time.unwrap_or_else(|_| jiff::Timestamp::now())).await;
                        }
                    }
                    TargetChangeType::NoChange => {}
                }
            }
            None => {}
        }
        Ok(())
    }

    /// A consistent point: the documents as they are at `read_time`. Applied when anything changed
    /// since the last one; the resume token moves here, never ahead of what was applied.
    async fn consistent(&self, feed: &mut Feed, state: &mut Stream, time: jiff::Timestamp) {
        if state.changed {
            let listing = feed
                .documents
                .values()
                .cloned()
                .collect::<Result<Vec<_>, _>>()
                .map(|entries| Listing { entries, revision: Revision::at("firestore", time) });
            self.applier.apply_pushed(listing).await;
            state.changed = false;
        }
        if let Some(token) = state.pending_token.take() {
            feed.resume_token = Some(token);
        }
    }

    /// A streamed document as the REST listing's decoder reads it.
    fn decode(&self, document: &fs::Document) -> Result<Listed, RegistryError> {
        let fields = document.fields.iter().map(|(k, v)| (Cow::Borrowed(k.as_str()), typed(v))).collect();
        self.decoder.entry(&Document { name: Cow::Borrowed(&document.name), fields })
    }
}

/// Where one stream is: whether its target is current (its consistent points count), the resume
/// token not yet committed, and whether documents changed since the last consistent point.
/// Waits (a little) for the server to end a stream whose request side was closed.
async fn closed(mut stream: tonic::Streaming<fs::ListenResponse>) -> Ended {
    let ended = async { while let Ok(Some(_)) = stream.message().await {} };
    if tokio::time::timeout(CLOSE_WAIT, ended).await.is_err() {
        tracing::debug!("the Firestore listener's stream did not end within 2 s of its close; dropped");
    }
    Ended::Stopped
}

struct Stream {
    current: bool,
    pending_token: Option<Vec<u8>>,
    changed: bool,
}

/// What the stream listens to: the collection's parent (`projects/P/databases/D/documents`, or
/// below a document for a nested collection) and the collection's own id.
fn query_target(config: &FirestoreRegistryConfig) -> (String, String) {
    let documents = format!("{}/documents", config.database_path());
    let path = config.collection.trim_matches('/');
    match path.rsplit_once('/') {
        Some((parent, id)) => (format!("{documents}/{parent}"), id.to_string()),
        None => (documents, path.to_string()),
    }
}

/// A streamed value as the REST decoder's typed value: the kinds an entry reads, or none.
fn typed(value: &fs::Value) -> Typed<'_> {
    use fs::value::ValueType;
    match &value.value_type {
        Some(ValueType::StringValue(s)) => Typed { string_value: Some(Cow::Borrowed(s)), ..Typed::default() },
        Some(ValueType::IntegerValue(n)) => Typed { integer_value: Some(Integer::Number(*n)), ..Typed::default() },
        Some(ValueType::NullValue(_)) => Typed { null_value: Some(serde::de::IgnoredAny), ..Typed::default() },
        _ => Typed::default(),
    }
}

/// Whether the server refused what the stream asked (not a passing outage): resuming with the same
/// token would be refused again, so the next stream starts over.
fn refuses_the_request(status: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(status.code(), Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange | Code::NotFound)
}

/// A gRPC status in words: its code and message.
fn status_words(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> FirestoreRegistryConfig {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn the_stream_goes_to_the_rest_urls_host_and_listens_to_the_collection() {
        let cases = [
            (
                "{project: p, collection: ped-limits}",
                "https://firestore.googleapis.com",
                "projects/p/databases/(default)/documents",
                "ped-limits",
            ),
            (
                "{project: p, database: reg, collection: /teams/platform/limits/, url: 'http://127.0.0.1:8080/v1'}",
                "http://127.0.0.1:8080",
                "projects/p/databases/reg/documents/teams/platform",
                "limits",
            ),
        ];
        for (yaml, grpc, parent, id) in cases {
            let c = config(yaml);
            assert_eq!(c.grpc_url(), grpc, "{yaml}");
            assert_eq!(query_target(&c), (parent.to_string(), id.to_string()), "{yaml}");
        }
    }

    #[test]
    fn streamed_values_read_as_the_rest_listing_reads_them() {
        use fs::value::ValueType;
        let value = |v: ValueType| fs::Value { value_type: Some(v) };
        assert_eq!(typed(&value(ValueType::StringValue("warn".into()))).string_value.as_deref(), Some("warn"));
        assert!(matches!(typed(&value(ValueType::IntegerValue(6))).integer_value, Some(Integer::Number(6))));
        assert!(typed(&value(ValueType::NullValue(0))).null_value.is_some());
        let double = value(ValueType::DoubleValue(6.0));
        let other = typed(&double);
        assert!(other.string_value.is_none() && other.integer_value.is_none() && other.null_value.is_none());
    }
}
