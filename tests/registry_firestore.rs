//! The Firestore snapshot source against a local server that speaks the Firestore REST listing
//! (`GET …/documents/{collection}?pageSize=N&pageToken=T` → `{documents, nextPageToken}`, typed
//! values, `integerValue` as a string): paging, the requests it sends, all-or-nothing snapshots,
//! the shrink guard, and a 401 that refreshes the token once — the faults and hostile pages
//! Firestore's emulator cannot be made to send (`registry_firestore_emulator.rs` has the rest).
//! The local server speaks REST only: the processes started here run with `listen: false`.

mod common;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use replica_guard::config::FirestoreRegistryConfig;
use replica_guard::decision::{Lookup, Scope};
use replica_guard::limits::entry::TooMany;
use replica_guard::limits::firestore_source::FirestoreLister;
use replica_guard::limits::store::SnapshotStore;
use replica_guard::limits::sync::{Applier, Synced, Syncer};
use replica_guard::limits::{LimitSource, RegistryError};
use replica_guard::metrics::{Metrics, SourceKind};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Collection {
    documents: Vec<Value>,
    /// Every request: (query parameters, Authorization header).
    requests: Vec<(HashMap<String, String>, String)>,
    /// Answer this page (from 1) with HTTP 500.
    failing_page: Option<usize>,
    /// The Authorization header required (401 otherwise).
    required_auth: Option<String>,
    /// This page (from 1) is answered after this long.
    slow_page: Option<(usize, Duration)>,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<Collection>>);

/// The query parameters (the test's page tokens need no decoding); a repeated one (the field
/// mask) with its values joined by commas.
fn query(uri: &Uri) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = HashMap::new();
    for (k, v) in uri.query().unwrap_or_default().split('&').filter_map(|p| p.split_once('=')) {
        let v = v.replace("%2F", "/");
        out.entry(k.to_string()).and_modify(|all| *all = format!("{all},{v}")).or_insert(v);
    }
    out
}

async fn list(State(fake): State<Fake>, uri: Uri, headers: HeaderMap) -> Response {
    let q = query(&uri);
    let size: usize = q.get("pageSize").and_then(|s| s.parse().ok()).unwrap_or(20);
    let offset: usize = q.get("pageToken").map_or(0, |t| t.trim_start_matches("tok/").parse().unwrap());
    let slow = fake.0.lock().unwrap().slow_page.filter(|(page, _)| *page == offset / size + 1);
    if let Some((_, delay)) = slow {
        tokio::time::sleep(delay).await;
    }
    let mut c = fake.0.lock().unwrap();
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    c.requests.push((q.clone(), auth.clone()));
    if c.required_auth.as_ref().is_some_and(|want| *want != auth) {
        return (StatusCode::UNAUTHORIZED, "{\"error\": {\"code\": 401}}").into_response();
    }
    // (The page token is the offset, made opaque the way Firestore's are.)
    if c.failing_page == Some(offset / size + 1) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "backend error").into_response();
    }
    let end = (offset + size).min(c.documents.len());
    let mut page = json!({"documents": c.documents[offset..end]});
    if end < c.documents.len() {
        page["nextPageToken"] = json!(format!("tok/{end}"));
    }
    axum::Json(page).into_response()
}

impl Fake {
    async fn start(&self) -> String {
        let app =
            Router::new().route("/v1/projects/p/databases/(default)/documents/ped", get(list)).with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{address}/v1")
    }
    fn set(&self, documents: Vec<Value>) {
        self.0.lock().unwrap().documents = documents;
    }
}

/// A document as the onboarding pipeline writes it: fields, or the id `<namespace>--<deployment>`.
fn document(namespace: &str, deployment: &str, max: i64, by_id: bool) -> Value {
    let name = format!("projects/p/databases/(default)/documents/ped/{namespace}--{deployment}");
    let mut fields = json!({"maxReplicas": {"integerValue": max.to_string()}, "owner": {"stringValue": "team@x"}});
    if !by_id {
        fields["namespace"] = json!({"stringValue": namespace});
        fields["deployment"] = json!({"stringValue": deployment});
    }
    json!({"name": name, "fields": fields, "createTime": "2026-11-01T00:00:00Z", "updateTime": "2026-11-01T00:00:00Z"})
}

fn documents(n: usize, max: i64) -> Vec<Value> {
    (0..n).map(|i| document(&format!("team-{}", i % 7), &format!("api-{i}"), max, i % 2 == 0)).collect()
}

fn syncer(url: &str, extra: Value) -> (Syncer<FirestoreLister>, Arc<SnapshotStore>) {
    let mut config = json!({"project": "p", "collection": "ped", "url": url, "pageSize": 300});
    config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let config: FirestoreRegistryConfig = serde_json::from_value(config).unwrap();
    let metrics = Arc::new(Metrics::new());
    let store = Arc::new(SnapshotStore::new(SourceKind::Firestore, &metrics));
    let applier = Arc::new(Applier::new(
        SourceKind::Firestore,
        store.clone(),
        metrics,
        Default::default(),
        config.max_shrink_fraction,
    ));
    let syncer = Syncer {
        lister: FirestoreLister::new(&config).unwrap(),
        applier,
        max_entries: 200_000,
        refresh: Duration::from_secs(60),
        timeout: Duration::from_secs_f64(config.timeout_seconds),
    };
    (syncer, store)
}

async fn max_of(store: &SnapshotStore, namespace: &str, deployment: &str) -> Option<i32> {
    match store.lookup(namespace, deployment).await {
        Lookup::Registered(l) => Some(l.max_replicas),
        _ => None,
    }
}

#[tokio::test]
async fn a_collection_in_pages_becomes_the_snapshot() {
    let fake = Fake::default();
    let url = fake.start().await;
    let mut docs = documents(1000, 4);
    docs.push(json!({"name": "projects/p/databases/(default)/documents/ped/sandbox--_default",
        "fields": {"maxReplicas": {"integerValue": "2"}, "mode": {"stringValue": "warn"}}}));
    fake.set(docs);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "t1\n").unwrap();
    let (syncer, store) = syncer(&url, json!({"auth": {"bearerTokenFile": dir.path().join("token")}}));
    assert!(!store.is_ready(), "not ready before the first complete sync");
    assert_eq!(syncer.sync_once().await, Synced::Applied { entries: 1001 });
    assert!(store.is_ready());

    let requests = fake.0.lock().unwrap().requests.clone();
    assert_eq!(requests.len(), 4, "1,001 documents in pages of 300");
    assert_eq!(
        requests[0].0,
        HashMap::from([
            ("pageSize".to_string(), "300".to_string()),
            // Only the fields read: a document's other fields never cross the wire.
            ("mask.fieldPaths".to_string(), "namespace,deployment,maxReplicas,minReplicas,mode,owner".to_string()),
        ])
    );
    assert_eq!(requests[1].0.get("pageToken").map(String::as_str), Some("tok/300"), "the token is sent back as given");
    assert!(requests.iter().all(|(_, auth)| auth == "Bearer t1"));

    assert_eq!(max_of(&store, "team-0", "api-0").await, Some(4), "namespace and deployment from fields");
    assert_eq!(max_of(&store, "team-1", "api-1").await, Some(4), "from the document id");
    match store.lookup("sandbox", "anything").await {
        Lookup::Registered(l) => assert_eq!((l.max_replicas, l.scope), (2, Scope::NamespaceDefault)),
        other => panic!("the namespace default: {other:?}"),
    }
    assert_eq!(max_of(&store, "team-0", "not-there").await, None);
}

#[tokio::test]
async fn a_sync_that_fails_halfway_keeps_the_last_snapshot() {
    let fake = Fake::default();
    let url = fake.start().await;
    fake.set(documents(1000, 4));
    let (syncer, store) = syncer(&url, json!({}));
    assert_eq!(syncer.sync_once().await, Synced::Applied { entries: 1000 });
    fake.set(documents(1000, 8));
    fake.0.lock().unwrap().failing_page = Some(3);
    let Synced::Failed(why) = syncer.sync_once().await else { panic!("page 3 fails") };
    let why = why.to_string();
    assert!(why.starts_with("page 3: ") && why.contains("500"), "{why}");
    assert_eq!(max_of(&store, "team-0", "api-0").await, Some(4), "pages 1 and 2 were not applied");
    fake.0.lock().unwrap().failing_page = None;
    assert_eq!(syncer.sync_once().await, Synced::Applied { entries: 1000 });
    assert_eq!(max_of(&store, "team-0", "api-0").await, Some(8));
}

#[tokio::test]
async fn a_bad_document_fails_the_whole_sync_and_says_which_and_where() {
    let fake = Fake::default();
    let url = fake.start().await;
    let mut docs = documents(10, 4);
    docs[7]["fields"]["maxReplicas"] = json!({"integerValue": "four"});
    fake.set(docs);
    let (syncer, store) = syncer(&url, json!({}));
    let Synced::Failed(why) = syncer.sync_once().await else { panic!("a bad document") };
    let why = why.to_string();
    assert!(why.contains("documents/ped/team-0--api-7: field maxReplicas: integerValue \"four\""), "{why}");
    assert!(!store.is_ready(), "nothing applied, still not ready");

    let mut twice = documents(3, 4);
    twice.push(document("team-0", "api-0", 6, true));
    fake.set(twice);
    let Synced::Failed(why) = syncer.sync_once().await else { panic!("a duplicate") };
    let why = why.to_string();
    assert!(why.contains("both register team-0 deployment api-0"), "{why}");
}

#[tokio::test]
async fn a_registry_that_loses_more_than_half_at_once_is_held_back() {
    let fake = Fake::default();
    let url = fake.start().await;
    fake.set(documents(100, 4));
    let (syncer, store) = syncer(&url, json!({}));
    assert_eq!(syncer.sync_once().await, Synced::Applied { entries: 100 });
    fake.set(documents(40, 4));
    assert_eq!(syncer.sync_once().await, Synced::HeldBack { entries: 40, previous: 100 });
    let exposed = syncer.applier.metrics.render();
    assert!(
        exposed.contains("replica_guard_registry_reloads_total{result=\"held-back\",source=\"firestore\"} 1"),
        "told apart from an error: {exposed}"
    );
    assert_eq!(max_of(&store, "team-1", "api-99").await, Some(4), "the last good snapshot stays");
    fake.set(documents(60, 4));
    assert_eq!(syncer.sync_once().await, Synced::Applied { entries: 60 }, "losing 40% is allowed");
    let (unguarded, _) = self::syncer(&url, json!({"maxShrinkFraction": 1.0}));
    fake.set(documents(1, 4));
    assert_eq!(unguarded.sync_once().await, Synced::Applied { entries: 1 });
}

#[tokio::test]
async fn a_401_reads_a_fresh_token_once() {
    let fake = Fake::default();
    let url = fake.start().await;
    fake.set(documents(5, 4));
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "old").unwrap();
    let (syncer, store) = syncer(&url, json!({"auth": {"bearerTokenFile": token}}));
    assert_eq!(syncer.sync_once().await, Synced::Applied { entries: 5 }, "warms the token cache with 'old'");
    // The token was rotated and the old one revoked: a 401, then the fresh one from the file.
    fake.0.lock().unwrap().required_auth = Some("Bearer new".into());
    std::fs::write(&token, "new").unwrap();
    fake.0.lock().unwrap().requests.clear();
    assert_eq!(syncer.sync_once().await, Synced::Applied { entries: 5 });
    let auths: Vec<String> = fake.0.lock().unwrap().requests.iter().map(|r| r.1.clone()).collect();
    assert_eq!(auths.last().map(String::as_str), Some("Bearer new"));
    assert!(auths.len() <= 2, "at most one retry: {auths:?}");
    // A token the server keeps refusing: one retry, then the sync fails.
    fake.0.lock().unwrap().required_auth = Some("Bearer other".into());
    fake.0.lock().unwrap().requests.clear();
    let Synced::Failed(why) = syncer.sync_once().await else { panic!("refused") };
    let why = why.to_string();
    assert!(why.contains("401"), "{why}");
    assert_eq!(fake.0.lock().unwrap().requests.len(), 2, "one request and one retry");
    assert!(store.is_ready());
}

#[tokio::test]
async fn a_page_slower_than_the_sync_timeout_keeps_the_last_snapshot() {
    let fake = Fake::default();
    let url = fake.start().await;
    fake.set(documents(1000, 4));
    let (syncer, store) = syncer(&url, json!({"timeoutSeconds": 0.5}));
    assert_eq!(syncer.sync_once().await, Synced::Applied { entries: 1000 });
    fake.set(documents(1000, 8));
    fake.0.lock().unwrap().slow_page = Some((2, Duration::from_secs(3)));
    let started = std::time::Instant::now();
    let Synced::Failed(why) = syncer.sync_once().await else { panic!("too slow") };
    let why = why.to_string();
    assert!(why.contains("took longer than 0.5 s"), "{why}");
    assert!(started.elapsed() < Duration::from_secs(2), "abandoned at the timeout, not after the page");
    assert_eq!(max_of(&store, "team-0", "api-0").await, Some(4));
}

/// The webhook itself on a Firestore registry: ready only after the first sync, and then a review
/// is answered from memory — the registry sees no request for it.
#[tokio::test(flavor = "multi_thread")]
async fn the_webhook_answers_from_the_synced_collection_without_asking_it() {
    let fake = Fake::default();
    let url = fake.start().await;
    let mut docs = documents(50, 4);
    docs.push(document("team-a", "payments-api", 4, false));
    fake.set(docs);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "server: {{address: 127.0.0.1:0, adminAddress: 127.0.0.1:0, tls: {{certFile: certs/tls.crt, keyFile: certs/tls.key, generateDevCertificate: true}}}}\nregistry: {{firestore: {{project: p, collection: ped, url: '{url}', refreshSeconds: 3600, listen: false}}}}\nlogging: {{format: json}}\n"
        ),
    )
    .unwrap();
    let server = common::ServeProcess::start_config(dir, &config, &[]);
    let mut ready = false;
    for _ in 0..100 {
        if readyz(server.admin).await.starts_with("HTTP/1.1 200") {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "ready after the first sync");
    let asked = fake.0.lock().unwrap().requests.len();
    let mut client = common::Client::connect(server.https, &server.ca_pem, common::Protocol::Http1).await;
    let response = client.review(common::fixture("deployment-patch-4-to-7.json")).await;
    assert_eq!(response["allowed"], false, "replicas 4 -> 7 above the synced max 4: {response}");
    assert!(response["status"]["message"].as_str().unwrap().contains("PED max 4 for team-a/payments-api"));
    assert_eq!(fake.0.lock().unwrap().requests.len(), asked, "no listing on the admission path");
    // Only a denial asks Firestore, for its one entry (this fake speaks no runQuery: the snapshot's
    // answer stands, and the answer says so; tests/registry_firestore_emulator.rs has the rest).
    assert_eq!(response["auditAnnotations"]["registry-reread"], "error", "{response}");
}

/// The admin listener's `/readyz` answer (empty when it does not answer).
async fn readyz(admin: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut tcp) = tokio::net::TcpStream::connect(admin).await else { return String::new() };
    let _ = tcp.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    let mut text = String::new();
    let _ = tcp.read_to_string(&mut text).await;
    text
}

/// A registry gone wrong: every document carries a 100 KB owner and other fields the mask did
/// not ask for, 300 documents a page (30 MB), 40 pages; each page is made when asked for.
async fn huge_pages(uri: Uri) -> Response {
    let q = query(&uri);
    let page: usize = q.get("pageToken").map_or(1, |t| t.trim_start_matches("p/").parse().unwrap());
    let owner = "x".repeat(100 * 1024);
    let documents: Vec<Value> = (0..300)
        .map(|i| {
            json!({"name": format!("projects/p/databases/(default)/documents/ped/team-{page}--api-{i}"),
                "fields": {"maxReplicas": {"integerValue": "4"}, "owner": {"stringValue": owner}}})
        })
        .collect();
    let mut body = json!({"documents": documents});
    if page < 40 {
        body["nextPageToken"] = json!(format!("p/{}", page + 1));
    }
    axum::Json(body).into_response()
}

/// The binary's peak memory (VmHWM) after syncing `url`'s collection once or failing to; whether
/// it became ready.
async fn peak_after_sync(url: &str) -> (u64, bool, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "server: {{address: 127.0.0.1:0, adminAddress: 127.0.0.1:0, tls: {{certFile: certs/tls.crt, keyFile: certs/tls.key, generateDevCertificate: true}}}}\nregistry: {{firestore: {{project: p, collection: ped, url: '{url}', refreshSeconds: 3600, timeoutSeconds: 30, listen: false}}}}\nlogging: {{format: json}}\n"
        ),
    )
    .unwrap();
    let server = common::ServeProcess::start_config(dir, &config, &[]);
    let mut ready = false;
    // Until ready, or the first sync has failed (counted): at most 10 s.
    for _ in 0..200 {
        if readyz(server.admin).await.starts_with("HTTP/1.1 200") {
            ready = true;
            break;
        }
        let metrics = common::http_get_text(server.admin, "/metrics").await;
        // (The error count exists at 0 from the start: a failure is one above it.)
        let failed = |l: &&str| {
            l.starts_with("replica_guard_registry_reloads_total{") && l.contains("error") && !l.ends_with(" 0")
        };
        if metrics.lines().any(|l| failed(&l)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let peak = server.memory_kib("VmHWM");
    server.signal("TERM");
    let (_, log) = server.wait(Duration::from_secs(30));
    (peak, ready, log)
}

#[tokio::test]
async fn a_registry_of_100_kb_owners_costs_no_more_memory_than_a_small_registry() {
    // A good registry of the same shape (12,000 documents) for comparison.
    let fake = Fake::default();
    let url = fake.start().await;
    fake.set(documents(12_000, 4));
    let (good_peak, good_ready, _) = peak_after_sync(&url).await;
    assert!(good_ready, "the good registry synced");

    let app = Router::new().route("/v1/projects/p/databases/(default)/documents/ped", get(huge_pages));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (peak, ready, log) = peak_after_sync(&format!("http://{address}/v1")).await;
    eprintln!("peak RSS: good registry {good_peak} KiB, 100 KB owners {peak} KiB");
    assert!(!ready, "a registry it cannot read whole never makes the webhook ready");
    let error = log.iter().find(|l| l.contains("registry sync failed")).expect("the failed sync is logged");
    assert!(error.contains("page 1: ") && error.contains("refused unread"), "{error}");
    // The chart's limit is 128 MiB; before the bounds this took 2.4 GB.
    assert!(peak < 64 * 1024, "peak {peak} KiB");
    assert!(peak < good_peak + 16 * 1024, "peak {peak} KiB against {good_peak} KiB for a good registry");
}

#[tokio::test]
async fn entries_out_of_bounds_fail_the_sync_naming_the_document_and_the_field() {
    let fake = Fake::default();
    let url = fake.start().await;
    for (bad, want) in [
        (
            json!({"owner": {"stringValue": "o".repeat(1000)}}),
            "document projects/p/databases/(default)/documents/ped/team-5--api-5: field owner: is 1000 characters long, at most 256",
        ),
        (json!({"mode": {"stringValue": "m".repeat(5000)}}), "field mode: \"mmmmmmmm"),
        (json!({"deployment": {"stringValue": "Api_5"}}), "field deployment: \"Api_5\" is not a Deployment name"),
        (json!({"maxReplicas": {"integerValue": "-3"}}), "field maxReplicas: must be between 0 and 100000, got -3"),
    ] {
        let mut docs = documents(20, 4);
        docs[5]["fields"].as_object_mut().unwrap().extend(bad.as_object().unwrap().clone());
        if bad.get("deployment").is_some() {
            docs[5]["fields"]["namespace"] = json!({"stringValue": "team-5"});
        }
        fake.set(docs);
        let (syncer, store) = syncer(&url, json!({}));
        let Synced::Failed(why) = syncer.sync_once().await else { panic!("{bad}: the sync must fail") };
        let why = why.to_string();
        assert!(why.contains(want), "{why}\nwant: {want}");
        assert!(why.len() < 300, "the error does not repeat the bad value: {} bytes", why.len());
        assert!(!store.is_ready());
    }
}

#[tokio::test]
async fn more_entries_than_registry_max_entries_fail_the_sync_at_the_limit() {
    let fake = Fake::default();
    let url = fake.start().await;
    fake.set(documents(1000, 4));
    let (mut syncer, store) = syncer(&url, json!({}));
    syncer.max_entries = 400;
    assert_eq!(syncer.sync_once().await, Synced::Failed(RegistryError::TooMany(TooMany { max: 400 })));
    assert_eq!(
        RegistryError::TooMany(TooMany { max: 400 }).to_string(),
        "the registry holds more than 400 entries (registry.maxEntries); raise registry.maxEntries if it really is that large"
    );
    assert!(!store.is_ready());
    assert_eq!(fake.0.lock().unwrap().requests.len(), 2, "the listing stopped at the page that went past 400");
}
