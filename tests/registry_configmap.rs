//! The ConfigMap registry source against a fake Kubernetes API server on 127.0.0.1 that speaks
//! the list and watch protocol kube's watcher uses: initial list, updates, a broken edit, a
//! delete, and watch restarts (a closed stream, and a 410 Gone that forces a re-list).

mod common;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::{Protocol, TestServer, fixture};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Default)]
struct ApiState {
    /// The registry YAML in the ConfigMap; None when it does not exist.
    data: Option<String>,
    resource_version: u64,
    watchers: Vec<mpsc::UnboundedSender<String>>,
    lists: usize,
    watches: usize,
}

#[derive(Clone, Default)]
struct FakeApi(Arc<Mutex<ApiState>>);

fn configmap(data: &str, rv: u64) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "ped-limits", "namespace": "replica-guard", "resourceVersion": rv.to_string()},
        "data": {"limits.yaml": data}
    })
}

impl FakeApi {
    async fn start(&self) -> SocketAddr {
        let app = Router::new()
            .route("/api/v1/namespaces/replica-guard/configmaps", get(configmaps))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        address
    }

    fn send(&self, event_type: &str, object: Value) {
        let line = format!("{}\n", json!({"type": event_type, "object": object}));
        self.0.lock().unwrap().watchers.retain(|w| w.send(line.clone()).is_ok());
    }

    fn update(&self, data: &str) {
        let rv = {
            let mut s = self.0.lock().unwrap();
            s.resource_version += 1;
            s.data = Some(data.to_string());
            s.resource_version
        };
        self.send("MODIFIED", configmap(data, rv));
    }

    fn delete(&self) {
        let (data, rv) = {
            let mut s = self.0.lock().unwrap();
            s.resource_version += 1;
            (s.data.take().unwrap_or_default(), s.resource_version)
        };
        self.send("DELETED", configmap(&data, rv));
    }

    /// Changes the ConfigMap without telling the open watches, then expires them with 410 Gone:
    /// only a re-list can see the change.
    fn change_behind_watch_and_expire(&self, data: &str) {
        {
            let mut s = self.0.lock().unwrap();
            s.resource_version += 1;
            s.data = Some(data.to_string());
        }
        self.send(
            "ERROR",
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": "too old resource version", "reason": "Expired", "code": 410}),
        );
        self.0.lock().unwrap().watchers.clear();
    }

    fn close_watches(&self) {
        self.0.lock().unwrap().watchers.clear();
    }

    fn counts(&self) -> (usize, usize) {
        let s = self.0.lock().unwrap();
        (s.lists, s.watches)
    }
}

async fn configmaps(State(api): State<FakeApi>, uri: Uri) -> Response {
    let query = uri.query().unwrap_or_default();
    let params: Vec<&str> = query.split('&').collect();
    assert!(params.contains(&"fieldSelector=metadata.name%3Dped-limits"), "{query}");
    if params.contains(&"watch=true") {
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        {
            let mut s = api.0.lock().unwrap();
            s.watches += 1;
            s.watchers.push(tx);
        }
        let stream =
            futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|line| line.map(Ok::<_, std::io::Error>)));
        return ([("content-type", "application/json")], Body::from_stream(stream)).into_response();
    }
    let mut s = api.0.lock().unwrap();
    s.lists += 1;
    let items: Vec<Value> = s.data.iter().map(|d| configmap(d, s.resource_version)).collect();
    axum::Json(json!({
        "apiVersion": "v1", "kind": "ConfigMapList",
        "metadata": {"resourceVersion": s.resource_version.to_string()},
        "items": items
    }))
    .into_response()
}

fn registry(max: i32) -> String {
    format!("entries:\n  - {{namespace: team-a, deployment: payments-api, maxReplicas: {max}}}\n")
}

const SECTION: &str = "  configMap: {namespace: replica-guard, name: ped-limits, key: limits.yaml}";

/// Waits (bounded) until the 4 -> 7 patch gets the wanted answer.
async fn eventually_allowed(server: &TestServer, want: bool, what: &str) {
    let mut client = server.client(Protocol::Http1).await;
    for _ in 0..100 {
        if client.review(fixture("deployment-patch-4-to-7.json")).await["allowed"] == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not picked up within 5 s");
}

#[tokio::test]
async fn list_update_broken_edit_delete_and_watch_restarts() {
    let api = FakeApi::default();
    api.update(&registry(4));
    let address = api.start().await;
    let server =
        TestServer::start_full("mode: enforce", "", "metrics: {registryEntries: true}", SECTION, Some(address)).await;
    eventually_allowed(&server, false, "initial list (max 4)").await;
    assert_eq!(server.admin_get("/readyz").await.0, 200);

    api.update(&registry(8));
    eventually_allowed(&server, true, "update to max 8").await;

    api.update("entries: [{namespace: team-a, deployment: payments-api, maxReplicas: lots}]");
    for _ in 0..100 {
        if server.metric("replica_guard_registry_reloads_total{result=\"error\",source=\"configmap\"}").await >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.metric("replica_guard_registry_reloads_total{result=\"error\",source=\"configmap\"}").await, 1.0);
    eventually_allowed(&server, true, "a broken edit keeps max 8").await;

    api.delete();
    tokio::time::sleep(Duration::from_millis(200)).await;
    eventually_allowed(&server, true, "a deleted ConfigMap keeps the last good registry").await;
    assert_eq!(server.metric("replica_guard_registry_reloads_total{result=\"error\",source=\"configmap\"}").await, 2.0);
    let failures = |reason: &'static str| {
        let server = &server;
        async move {
            let series =
                format!("replica_guard_registry_reload_failures_total{{reason=\"{reason}\",source=\"configmap\"}}");
            server.metric(&series).await
        }
    };
    assert_eq!(failures("decode").await, 1.0, "the broken edit: `lots` is not a number");
    assert_eq!(failures("missing").await, 1.0, "the deletion");

    // The stream ends (API server restart, watch timeout): the watcher watches again.
    api.update(&registry(8));
    api.close_watches();
    tokio::time::sleep(Duration::from_millis(300)).await;
    api.update(&registry(4));
    eventually_allowed(&server, false, "an update on the restarted watch").await;

    // 410 Gone: the watcher re-lists and sees what changed meanwhile.
    let lists_before = api.counts().0;
    api.change_behind_watch_and_expire(&registry(9));
    eventually_allowed(&server, true, "a change seen only by the re-list").await;
    assert!(api.counts().0 > lists_before, "the watcher re-listed");
    assert_eq!(
        server.metric("replica_guard_registered_max_replicas{deployment=\"payments-api\",namespace=\"team-a\"}").await,
        9.0
    );
    server.shutdown().await;
}

#[tokio::test]
async fn not_ready_until_the_configmap_exists() {
    let api = FakeApi::default();
    let address = api.start().await;
    let server = TestServer::start_full("mode: enforce", "", "", SECTION, Some(address)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = server.admin_get("/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("registry not read yet"), "{body}");

    api.update(&registry(4));
    api.close_watches(); // the create arrives on the next watch or list
    for _ in 0..100 {
        if server.admin_get("/readyz").await.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.admin_get("/readyz").await.0, 200);
    eventually_allowed(&server, false, "the created ConfigMap").await;
    server.shutdown().await;
}
