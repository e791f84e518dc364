//! The BigQuery snapshot source against a local server that speaks the BigQuery REST shapes:
//! `jobs.query` (POST, answering `jobComplete: false` first), `jobs.getQueryResults` (GET, polled
//! until complete, then paged by `pageToken`), rows as `{"f": [{"v": …}]}` with every value a
//! string or null. Requests are checked (method, path, query parameters, body, auth header).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use replica_guard::config::BigQueryRegistryConfig;
use replica_guard::decision::{Lookup, Scope};
use replica_guard::limits::LimitSource;
use replica_guard::limits::bigquery_source::BigQueryLister;
use replica_guard::limits::store::SnapshotStore;
use replica_guard::limits::sync::{Applier, Synced, Syncer};
use replica_guard::metrics::{Metrics, SourceKind};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Table {
    /// namespace, deployment (None: NULL), max_replicas as BigQuery sends INT64: a string.
    rows: Vec<(String, Option<String>, String)>,
    /// (method, path and query, body, Authorization) of every request.
    requests: Vec<(String, String, Value, String)>,
    /// getQueryResults answers `jobComplete: false` this many times first.
    incomplete_polls: usize,
    failing_page: Option<usize>,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<Table>>);

const PAGE: usize = 40;

fn page_of(t: &Table, page: usize) -> Value {
    let rows: Vec<Value> = t
        .rows
        .iter()
        .skip((page - 1) * PAGE)
        .take(PAGE)
        .map(|(ns, d, max)| json!({"f": [{"v": ns}, {"v": d}, {"v": max}, {"v": null}, {"v": "enforce"}]}))
        .collect();
    let mut answer = json!({
        "kind": "bigquery#getQueryResultsResponse", "jobComplete": true,
        "jobReference": {"projectId": "p", "jobId": "job_1", "location": "EU"},
        "schema": {"fields": [{"name": "namespace", "type": "STRING"}, {"name": "deployment", "type": "STRING"},
                              {"name": "MAX_REPLICAS", "type": "INTEGER"}, {"name": "min_replicas", "type": "INTEGER"},
                              {"name": "mode", "type": "STRING"}]},
        "totalRows": t.rows.len().to_string(), "rows": rows,
    });
    if page * PAGE < t.rows.len() {
        answer["pageToken"] = json!(format!("pt=={}", page + 1));
    }
    answer
}

fn auth(headers: &HeaderMap) -> String {
    headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

async fn query(State(fake): State<Fake>, uri: Uri, headers: HeaderMap, body: String) -> Response {
    let mut t = fake.0.lock().unwrap();
    let body: Value = serde_json::from_str(&body).unwrap_or_default();
    t.requests.push(("POST".into(), uri.to_string(), body, auth(&headers)));
    axum::Json(json!({"kind": "bigquery#queryResponse", "jobComplete": false,
                      "jobReference": {"projectId": "p", "jobId": "job_1", "location": "EU"}}))
    .into_response()
}

async fn results(State(fake): State<Fake>, Path(job): Path<String>, uri: Uri, headers: HeaderMap) -> Response {
    let mut t = fake.0.lock().unwrap();
    t.requests.push(("GET".into(), uri.to_string(), Value::Null, auth(&headers)));
    assert_eq!(job, "job_1");
    if t.incomplete_polls > 0 {
        t.incomplete_polls -= 1;
        return axum::Json(json!({"jobComplete": false, "jobReference": {"projectId": "p", "jobId": "job_1"}}))
            .into_response();
    }
    let page = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|p| p.strip_prefix("pageToken=pt%3D%3D"))
        .map_or(1, |n| n.parse().unwrap());
    if t.failing_page == Some(page) {
        return (StatusCode::SERVICE_UNAVAILABLE, "backend error").into_response();
    }
    axum::Json(page_of(&t, page)).into_response()
}

impl Fake {
    async fn start(&self) -> String {
        let app = Router::new()
            .route("/bigquery/v2/projects/p/queries", post(query))
            .route("/bigquery/v2/projects/p/queries/{job}", get(results))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{address}/bigquery/v2")
    }
    fn set(&self, n: usize, max: &str) {
        let mut rows: Vec<_> =
            (0..n).map(|i| (format!("team-{}", i % 5), Some(format!("api-{i}")), max.to_string())).collect();
        rows.push(("sandbox".into(), None, "2".into()));
        self.0.lock().unwrap().rows = rows;
    }
}

fn syncer(url: &str, token: &std::path::Path) -> (Syncer<BigQueryLister>, Arc<SnapshotStore>) {
    let config: BigQueryRegistryConfig = serde_json::from_value(json!({
        "project": "p", "url": url, "pageSize": PAGE, "location": "EU",
        "query": "SELECT namespace, deployment, max_replicas, min_replicas, mode FROM ped.user_replicas_limits",
        "auth": {"bearerTokenFile": token},
    }))
    .unwrap();
    let metrics = Arc::new(Metrics::new());
    let store = Arc::new(SnapshotStore::new(SourceKind::BigQuery, &metrics));
    let applier = Arc::new(Applier::new(
        SourceKind::BigQuery,
        store.clone(),
        metrics,
        Default::default(),
        config.max_shrink_fraction,
    ));
    let syncer = Syncer {
        lister: BigQueryLister::new(&config).unwrap(),
        applier,
        max_entries: 200_000,
        refresh: Duration::from_secs(60),
        timeout: Duration::from_secs(10),
    };
    (syncer, store)
}

async fn max_of(store: &SnapshotStore, namespace: &str, deployment: &str) -> Option<(i32, Scope)> {
    match store.lookup(namespace, deployment).await {
        Lookup::Registered(l) => Some((l.max_replicas, l.scope)),
        _ => None,
    }
}

#[tokio::test]
async fn a_query_polled_until_complete_then_paged_becomes_the_snapshot() {
    let fake = Fake::default();
    let url = fake.start().await;
    fake.set(100, "4");
    fake.0.lock().unwrap().incomplete_polls = 2;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "bq-token").unwrap();
    let (syncer, store) = syncer(&url, &dir.path().join("token"));
    assert_eq!(syncer.sync_once().await, Synced::Applied { entries: 101 });
    assert_eq!(max_of(&store, "team-0", "api-0").await, Some((4, Scope::Deployment)));
    assert_eq!(max_of(&store, "sandbox", "anything").await, Some((2, Scope::NamespaceDefault)), "NULL deployment");

    let requests = fake.0.lock().unwrap().requests.clone();
    let (method, path, body, auth) = &requests[0];
    assert_eq!(
        (method.as_str(), path.as_str(), auth.as_str()),
        ("POST", "/bigquery/v2/projects/p/queries", "Bearer bq-token")
    );
    assert_eq!(body["useLegacySql"], false);
    assert_eq!(body["maxResults"], PAGE);
    assert_eq!(body["location"], "EU");
    assert!(body["query"].as_str().unwrap().contains("user_replicas_limits"));
    // Two polls of the incomplete job, then pages 1, 2 and 3 (101 rows in pages of 40).
    let gets: Vec<&str> = requests[1..].iter().map(|r| r.1.as_str()).collect();
    assert_eq!(gets.len(), 5, "{gets:?}");
    assert!(gets.iter().all(|g| g.starts_with("/bigquery/v2/projects/p/queries/job_1?maxResults=40&timeoutMs=")));
    assert!(gets.iter().all(|g| g.contains("&location=EU")));
    assert!(gets[3].ends_with("&pageToken=pt%3D%3D2"), "the token percent-encoded: {}", gets[3]);
    assert!(requests.iter().all(|r| r.3 == "Bearer bq-token"));
}

#[tokio::test]
async fn a_bad_row_or_a_failed_page_keeps_the_last_snapshot() {
    let fake = Fake::default();
    let url = fake.start().await;
    fake.set(100, "4");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "t").unwrap();
    let (syncer, store) = syncer(&url, &dir.path().join("token"));
    assert_eq!(syncer.sync_once().await, Synced::Applied { entries: 101 });

    fake.set(100, "8");
    fake.0.lock().unwrap().rows[45].2 = "eight".into();
    let Synced::Failed(why) = syncer.sync_once().await else { panic!("a bad row") };
    let why = why.to_string();
    assert_eq!(why, "page 2, row 6: column max_replicas: \"eight\" is not a whole number");
    assert_eq!(max_of(&store, "team-0", "api-0").await, Some((4, Scope::Deployment)), "nothing of it applied");

    // Names as Kubernetes allows them: a namespace of 64 characters is not one.
    fake.set(100, "8");
    fake.0.lock().unwrap().rows[12].0 = "n".repeat(64);
    let Synced::Failed(why) = syncer.sync_once().await else { panic!("a namespace too long") };
    let why = why.to_string();
    assert!(why.starts_with("page 1, row 13: column namespace: \"nnnn"), "{why}");
    assert!(why.contains("(64 characters) is not a namespace name (at most 63"), "{why}");

    fake.set(100, "8");
    fake.0.lock().unwrap().failing_page = Some(3);
    let Synced::Failed(why) = syncer.sync_once().await else { panic!("page 3 fails") };
    let why = why.to_string();
    assert!(why.starts_with("jobs.getQueryResults, page 3: ") && why.contains("503"), "{why}");
    assert_eq!(max_of(&store, "team-0", "api-0").await, Some((4, Scope::Deployment)));
    fake.0.lock().unwrap().failing_page = None;
    assert_eq!(syncer.sync_once().await, Synced::Applied { entries: 101 });
    assert_eq!(max_of(&store, "team-0", "api-0").await, Some((8, Scope::Deployment)));
}
