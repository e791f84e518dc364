//! `loadgen firestore-fake`: a Firestore REST listing of N registry documents on 127.0.0.1, for
//! timing replica-guard's Firestore snapshot source (`benches/firestore.sh`). Pages are built
//! once, up front, so the server's own cost stays out of the figure.

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

pub async fn serve(entries: usize, address: SocketAddr) {
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
    async fn list(State(pages): State<Arc<Vec<String>>>, uri: Uri) -> impl IntoResponse {
        let page = uri
            .query()
            .unwrap_or_default()
            .split('&')
            .find_map(|p| p.strip_prefix("pageToken=p"))
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0);
        ([("content-type", "application/json")], pages.get(page).cloned().unwrap_or_else(|| "{}".into()))
    }
    let app = Router::new().route("/v1/projects/p/databases/(default)/documents/ped", get(list)).with_state(pages);
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    eprintln!("firestore-fake: {entries} documents on {}", listener.local_addr().unwrap());
    axum::serve(listener, app).await.unwrap();
}
