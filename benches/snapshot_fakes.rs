//! `loadgen snapshot-fake`: a Firestore REST listing or a BigQuery query of N registry entries on
//! 127.0.0.1, for timing replica-guard's snapshot sources (`benches/snapshot.sh`). Pages are
//! built once, up front, so the server's own cost stays out of the figure.

use axum::Router;
use axum::extract::State;
use axum::http::Uri;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;

/// Documents per page, the most Firestore serves.
const PAGE: usize = 300;

pub async fn serve(kind: &str, entries: usize, address: SocketAddr) {
    let app = match kind {
        "bigquery" => bigquery(entries),
        _ => firestore(entries),
    };
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    eprintln!("snapshot-fake: {entries} {kind} entries on {}", listener.local_addr().unwrap());
    axum::serve(listener, app).await.unwrap();
}

/// The page number in a `pageToken=pN` query parameter (0 without one).
fn page_of(uri: &Uri) -> usize {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .find_map(|p| p.strip_prefix("pageToken=p"))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0)
}

async fn page(State(pages): State<Arc<Vec<String>>>, uri: Uri) -> impl IntoResponse {
    ([("content-type", "application/json")], pages.get(page_of(&uri)).cloned().unwrap_or_else(|| "{}".into()))
}

/// BigQuery: `jobs.query` answers with the first page (job complete), getQueryResults the rest,
/// 10,000 rows a page.
fn bigquery(entries: usize) -> Router {
    const ROWS: usize = 10_000;
    let rows: Vec<serde_json::Value> = (0..entries)
        .map(|i| {
            json!({"f": [{"v": format!("ns-{}", i % 300)}, {"v": format!("api-{i}")}, {"v": (2 + i % 7).to_string()},
                         {"v": null}, {"v": null}, {"v": format!("team-{}@example.com", i % 50)}]})
        })
        .collect();
    let columns = ["namespace", "deployment", "max_replicas", "min_replicas", "mode", "owner"];
    let fields: Vec<serde_json::Value> = columns.iter().map(|n| json!({"name": n, "type": "STRING"})).collect();
    let schema = json!({ "fields": fields });
    let pages: Arc<Vec<String>> = Arc::new(
        rows.chunks(ROWS)
            .enumerate()
            .map(|(i, chunk)| {
                let mut page = json!({"jobComplete": true, "schema": schema, "rows": chunk, "totalRows": entries.to_string(),
                                      "jobReference": {"projectId": "p", "jobId": "job_1"}});
                if (i + 1) * ROWS < entries {
                    page["pageToken"] = json!(format!("p{}", i + 1));
                }
                page.to_string()
            })
            .collect(),
    );
    Router::new()
        .route("/bigquery/v2/projects/p/queries", axum::routing::post(page))
        .route("/bigquery/v2/projects/p/queries/{job}", get(page))
        .with_state(pages)
}

fn firestore(entries: usize) -> Router {
    let docs: Vec<serde_json::Value> = (0..entries)
        .map(|i| {
            let (ns, name) = (format!("ns-{}", i % 300), format!("api-{i}"));
            json!({
                "name": format!("projects/p/databases/(default)/documents/ped/{ns}--{name}"),
                "fields": {"namespace": {"stringValue": ns}, "deployment": {"stringValue": name},
                           "maxReplicas": {"integerValue": (2 + i % 7).to_string()},
                           "owner": {"stringValue": format!("team-{}@example.com", i % 50)}},
                "createTime": "2026-11-01T00:00:00Z", "updateTime": "2026-11-01T00:00:00Z"
            })
        })
        .collect();
    let pages: Arc<Vec<String>> = Arc::new(
        docs.chunks(PAGE)
            .enumerate()
            .map(|(i, chunk)| {
                let mut page = json!({"documents": chunk});
                if (i + 1) * PAGE < entries {
                    page["nextPageToken"] = json!(format!("p{}", i + 1));
                }
                page.to_string()
            })
            .collect(),
    );
    Router::new().route("/v1/projects/p/databases/(default)/documents/ped", get(page)).with_state(pages)
}
