//! The HTTP registry source against a real HTTP registry on 127.0.0.1 started by the test:
//! custom and Firestore-shaped documents, bearer-token and metadata-server auth, injected
//! latency, 5xx, timeouts and malformed bodies, coalescing, and an outage with recovery.

mod common;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::{Protocol, TestServer, fixture, fixture_json, warnings};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the fake registry behaves right now.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Behaviour {
    Normal,
    Slow(Duration),
    ServerError,
    Malformed,
}

#[derive(Default)]
struct RegistryState {
    /// "namespace/name" -> maxReplicas (served in the custom and the Firestore shape).
    entries: HashMap<String, i64>,
    behaviour: Option<Behaviour>,
    /// Requests per path.
    hits: HashMap<String, usize>,
    /// The Authorization header every registry request must carry, if any.
    required_auth: Option<String>,
    token_requests: usize,
}

#[derive(Clone, Default)]
struct FakeRegistry(Arc<Mutex<RegistryState>>);

impl FakeRegistry {
    fn set(&self, key: &str, max: i64) {
        self.0.lock().unwrap().entries.insert(key.into(), max);
    }
    fn behave(&self, b: Behaviour) {
        self.0.lock().unwrap().behaviour = Some(b);
    }
    fn hits(&self, path: &str) -> usize {
        self.0.lock().unwrap().hits.get(path).copied().unwrap_or(0)
    }
    fn require_auth(&self, header: &str) {
        self.0.lock().unwrap().required_auth = Some(header.into());
    }

    async fn start(&self) -> SocketAddr {
        let app = Router::new()
            .route("/limits/{ns}/{name}", get(custom))
            .route("/v1/projects/p/databases/(default)/documents/ped/{doc}", get(firestore))
            .route("/token", get(token))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        address
    }

    /// Common handling: count, check auth, apply the behaviour; `Ok(max)` for the entry.
    async fn serve(&self, path: String, key: &str, headers: &HeaderMap) -> Result<i64, Response> {
        let (behaviour, required, max) = {
            let mut s = self.0.lock().unwrap();
            *s.hits.entry(path).or_default() += 1;
            (s.behaviour.unwrap_or(Behaviour::Normal), s.required_auth.clone(), s.entries.get(key).copied())
        };
        if let Some(required) = required {
            let got = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
            if got != required {
                return Err((StatusCode::UNAUTHORIZED, "bad token").into_response());
            }
        }
        match behaviour {
            Behaviour::Slow(d) => tokio::time::sleep(d).await,
            Behaviour::ServerError => {
                return Err((StatusCode::SERVICE_UNAVAILABLE, "down for maintenance").into_response());
            }
            Behaviour::Malformed => return Err((StatusCode::OK, "{\"maxReplicas\": ").into_response()),
            Behaviour::Normal => {}
        }
        max.ok_or_else(|| (StatusCode::NOT_FOUND, "{\"error\": \"not found\"}").into_response())
    }
}

async fn custom(
    State(r): State<FakeRegistry>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/limits/{ns}/{name}");
    match r.serve(path, &format!("{ns}/{name}"), &headers).await {
        // Numbers as strings too: the source accepts both.
        Ok(max) => {
            axum::Json(json!({"limits": {"maxReplicas": max.to_string(), "owner": "team@example.com"}})).into_response()
        }
        Err(response) => response,
    }
}

async fn firestore(State(r): State<FakeRegistry>, Path(doc): Path<String>, headers: HeaderMap) -> Response {
    let key = doc.replacen("--", "/", 1);
    match r.serve(format!("/firestore/{doc}"), &key, &headers).await {
        Ok(max) => axum::Json(json!({
            "name": format!("projects/p/databases/(default)/documents/ped/{doc}"),
            "fields": {"maxReplicas": {"integerValue": max.to_string()}, "mode": {"stringValue": "enforce"}},
            "createTime": "2026-11-01T00:00:00Z"
        }))
        .into_response(),
        Err(response) => response,
    }
}

async fn token(State(r): State<FakeRegistry>, headers: HeaderMap) -> Response {
    r.0.lock().unwrap().token_requests += 1;
    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        return (StatusCode::FORBIDDEN, "missing Metadata-Flavor").into_response();
    }
    axum::Json(json!({"access_token": "ya29.test-token", "expires_in": 3599, "token_type": "Bearer"})).into_response()
}

fn custom_source(address: SocketAddr, extra: &str) -> String {
    format!(
        "  http:\n    url: http://{address}/limits/{{namespace}}/{{name}}\n    fields: {{maxReplicas: /limits/maxReplicas, owner: /limits/owner}}\n    timeoutSeconds: 0.3\n{extra}  cache: {{ttlSeconds: 0.2, negativeTtlSeconds: 0.2, errorTtlSeconds: 0.1}}"
    )
}

async fn decide(server: &TestServer, fixture_name: &str) -> Value {
    server.review(fixture(fixture_name)).await
}

#[tokio::test]
async fn custom_documents_decide_and_404_means_unregistered() {
    let registry = FakeRegistry::default();
    registry.set("team-a/payments-api", 4);
    let address = registry.start().await;
    let server = TestServer::start_full("mode: enforce", "", "", &custom_source(address, ""), None).await;
    let denied = decide(&server, "deployment-redeploy-replicas-3-to-6-and-image.json").await;
    assert_eq!(denied["allowed"], false);
    assert!(denied["status"]["message"].as_str().unwrap().contains("(registered owner: team@example.com)"));
    let unregistered = decide(&server, "deployment-create-without-replicas-field.json").await;
    assert_eq!(unregistered["allowed"], true);
    assert_eq!(
        warnings(&unregistered)[0],
        "not registered in PED; register it with the onboarding pipeline to set its maxReplicas (team-a/orders-api)"
    );
    assert_eq!(server.metric("replica_guard_registry_lookups_total{result=\"miss\",source=\"http\"}").await, 1.0);
    assert_eq!(server.metric("replica_guard_registry_lookups_total{result=\"negative\",source=\"http\"}").await, 1.0);
    server.shutdown().await;
}

#[tokio::test]
async fn firestore_documents_with_a_metadata_server_token() {
    let registry = FakeRegistry::default();
    registry.set("team-a/payments-api", 4);
    registry.require_auth("Bearer ya29.test-token");
    let address = registry.start().await;
    let section = format!(
        "  http:\n    url: http://{address}/v1/projects/p/databases/(default)/documents/ped/{{namespace}}--{{name}}\n    format: firestore\n    auth: {{gceMetadata: {{url: 'http://{address}/token'}}}}\n  cache: {{ttlSeconds: 0.05}}"
    );
    let server = TestServer::start_full("mode: enforce", "", "", &section, None).await;
    for _ in 0..3 {
        assert_eq!(decide(&server, "deployment-patch-4-to-7.json").await["allowed"], false);
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(registry.hits("/firestore/team-a--payments-api"), 3, "the cache expired between requests");
    assert_eq!(registry.0.lock().unwrap().token_requests, 1, "the token is cached until shortly before it expires");
    server.shutdown().await;
}

#[tokio::test]
async fn bearer_token_file_is_re_read_when_it_changes() {
    let registry = FakeRegistry::default();
    registry.set("team-a/payments-api", 4);
    registry.require_auth("Bearer first");
    let address = registry.start().await;
    let tokens = tempfile::tempdir().unwrap();
    let token_file = tokens.path().join("token");
    std::fs::write(&token_file, "first\n").unwrap();
    let extra = format!("    auth: {{bearerTokenFile: {}}}\n", token_file.display());
    let server = TestServer::start_full("mode: enforce", "", "", &custom_source(address, &extra), None).await;
    assert_eq!(decide(&server, "deployment-patch-4-to-7.json").await["allowed"], false);

    registry.require_auth("Bearer second-rotated");
    std::fs::write(&token_file, "second-rotated").unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let response = decide(&server, "deployment-patch-4-to-7.json").await;
    assert_eq!(response["allowed"], false, "the rotated token was used: {response}");
    assert_eq!(response["auditAnnotations"]["rule"], "violation");
    server.shutdown().await;
}

#[tokio::test]
async fn a_hundred_concurrent_lookups_of_one_missing_key_make_one_request() {
    let registry = FakeRegistry::default();
    registry.behave(Behaviour::Slow(Duration::from_millis(100)));
    let address = registry.start().await;
    let section = custom_source(address, "")
        .replace("ttlSeconds: 0.2, negativeTtlSeconds: 0.2", "ttlSeconds: 60, negativeTtlSeconds: 60");
    let server = TestServer::start_full("mode: enforce", "", "", &section, None).await;
    let body = fixture("deployment-create-without-replicas-field.json");
    // 100 concurrent requests, each on its own HTTP/2 connection, while the registry is slow.
    let mut client = server.client(Protocol::Http2).await;
    let mut tasks = vec![];
    for _ in 0..100 {
        let mut c = server.client(Protocol::Http2).await;
        let body = body.clone();
        tasks.push(tokio::spawn(async move { c.review(body).await }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap()["auditAnnotations"]["rule"], "unregistered");
    }
    assert_eq!(client.review(body).await["auditAnnotations"]["rule"], "unregistered");
    assert_eq!(registry.hits("/limits/team-a/orders-api"), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn slow_failing_and_malformed_registries_get_the_configured_failure_answer() {
    for (behaviour, reason) in [
        (Behaviour::Slow(Duration::from_millis(800)), "no answer within 0.3 s"),
        (Behaviour::ServerError, "answered HTTP 503 Service Unavailable"),
        (Behaviour::Malformed, "the document is not JSON"),
    ] {
        let registry = FakeRegistry::default();
        registry.set("team-a/payments-api", 4);
        registry.behave(behaviour);
        let address = registry.start().await;
        // Fail open: allowed, with a warning that says why.
        let server =
            TestServer::start_full("mode: enforce\nregistryFailure: open", "", "", &custom_source(address, ""), None)
                .await;
        let response = decide(&server, "deployment-patch-4-to-7.json").await;
        assert_eq!(response["allowed"], true, "{behaviour:?}: {response}");
        let warning = &warnings(&response)[0];
        assert!(warning.starts_with("PED limit not checked: registry unreachable (team-a/payments-api: "), "{warning}");
        assert_eq!(response["auditAnnotations"]["rule"], "registry-unavailable");
        server.shutdown().await;
        // Fail closed: denied, saying the registry is unreachable and why.
        let server =
            TestServer::start_full("mode: enforce\nregistryFailure: closed", "", "", &custom_source(address, ""), None)
                .await;
        let response = decide(&server, "deployment-patch-4-to-7.json").await;
        assert_eq!(response["allowed"], false, "{behaviour:?}");
        let message = response["status"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("PED registry unreachable, cannot check the replica limit of team-a/payments-api"),
            "{message}"
        );
        assert!(message.contains(reason), "{behaviour:?}: {message}");
        assert!(server.metric("replica_guard_registry_lookups_total{result=\"error\",source=\"http\"}").await >= 1.0);
        server.shutdown().await;
    }
}

#[tokio::test]
async fn an_outage_after_warm_up_uses_last_known_values_and_recovers() {
    let registry = FakeRegistry::default();
    registry.set("team-a/payments-api", 4);
    let address = registry.start().await;
    let server =
        TestServer::start_full("mode: enforce\nregistryFailure: closed", "", "", &custom_source(address, ""), None)
            .await;
    assert_eq!(decide(&server, "deployment-patch-4-to-7.json").await["allowed"], false, "warm-up");

    registry.behave(Behaviour::ServerError);
    tokio::time::sleep(Duration::from_millis(300)).await; // past the TTL: the next lookup asks the registry
    let stale = decide(&server, "deployment-patch-4-to-7.json").await;
    assert_eq!(stale["allowed"], false);
    assert!(stale["status"]["message"].as_str().unwrap().starts_with("replicas 4 -> 7 exceeds PED max 4"), "{stale}");
    assert!(server.metric("replica_guard_registry_lookups_total{result=\"stale\",source=\"http\"}").await >= 1.0);
    // A key never seen gets the configured fail-closed answer.
    let unseen = decide(&server, "scale-by-team-user-1-to-5.json").await;
    assert!(unseen["status"]["message"].as_str().unwrap().contains("PED registry unreachable"), "{unseen}");

    // Recovery, with a raised limit: picked up after the error TTL.
    registry.set("team-a/payments-api", 8);
    registry.behave(Behaviour::Normal);
    let mut allowed = false;
    for _ in 0..50 {
        if decide(&server, "deployment-patch-4-to-7.json").await["allowed"] == true {
            allowed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(allowed, "recovery was not picked up");
    let mut review = fixture_json("scale-by-team-user-1-to-5.json");
    review["request"]["name"] = json!("payments-api");
    let response = server.client(Protocol::Http1).await.review(serde_json::to_vec(&review).unwrap()).await;
    assert_eq!(response["allowed"], true);
    server.shutdown().await;
}

#[tokio::test]
async fn an_https_registry_behind_an_internal_ca_is_trusted_through_ca_file() {
    // The registry: the same TLS stack as replica-guard, with a certificate from a fresh CA.
    let certs = replica_guard::certs::generate(&replica_guard::certs::local_names()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    certs.write(&dir.path().join("tls.crt"), &dir.path().join("tls.key")).unwrap();
    let key = replica_guard::server::tls::load_certified_key(&dir.path().join("tls.crt"), &dir.path().join("tls.key"))
        .unwrap();
    let tls =
        replica_guard::server::tls::server_config(Arc::new(replica_guard::server::tls::CertStore::new(key)), None);
    let app = Router::new().route("/limits/{ns}/{name}", get(|| async { axum::Json(json!({"maxReplicas": 4})) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let limits = replica_guard::server::connections::Bounds::default();
    let metrics =
        replica_guard::metrics::Metrics::new().server.connections(replica_guard::metrics::Listener::Admission);
    let tls = Some(replica_guard::server::connections::Tls::for_anyone(tls));
    tokio::spawn(replica_guard::server::connections::serve(listener, tls, app, stop_rx, limits, metrics));

    let section = |ca: &str| format!("  http: {{url: 'https://{address}/limits/{{namespace}}/{{name}}'{ca}}}");
    let trusted = section(&format!(", caFile: {}", dir.path().join("ca.crt").display()));
    let server = TestServer::start_full("mode: enforce\nregistryFailure: closed", "", "", &trusted, None).await;
    let response = decide(&server, "deployment-patch-4-to-7.json").await;
    assert!(
        response["status"]["message"].as_str().unwrap().starts_with("replicas 4 -> 7 exceeds PED max 4"),
        "{response}"
    );
    server.shutdown().await;

    let untrusted = TestServer::start_full("mode: enforce\nregistryFailure: closed", "", "", &section(""), None).await;
    let response = decide(&untrusted, "deployment-patch-4-to-7.json").await;
    let message = response["status"]["message"].as_str().unwrap();
    assert!(message.starts_with("PED registry unreachable") && message.contains("certificate"), "{message}");
    untrusted.shutdown().await;
}

/// The PED pipeline raised a limit a moment ago; the webhook's cache still holds the old one
/// (trusted for 60 s). The deploy that follows must not be refused on it: before denying, the
/// webhook asks the registry again, and the raised limit allows. On the common path (allowed,
/// or a denial the registry confirms) nothing more is asked than before.
#[tokio::test]
async fn a_denial_on_a_cached_limit_asks_the_registry_again_and_a_raised_limit_allows() {
    let registry = FakeRegistry::default();
    registry.set("team-a/payments-api", 4);
    let address = registry.start().await;
    let section = format!(
        "  http:\n    url: http://{address}/limits/{{namespace}}/{{name}}\n    fields: {{maxReplicas: /limits/maxReplicas, owner: /limits/owner}}\n  cache: {{ttlSeconds: 60, rereadTimeoutSeconds: 0.5}}"
    );
    let server = TestServer::start_full("mode: enforce", "", "", &section, None).await;
    let path = "/limits/team-a/payments-api";
    // Refused on an answer just fetched: not asked twice.
    let denied = decide(&server, "deployment-patch-4-to-7.json").await;
    assert_eq!(denied["allowed"], false);
    assert_eq!(denied["auditAnnotations"]["registry-reread"], "confirmed");
    assert_eq!(registry.hits(path), 1, "the answer was a moment old");
    // Later (the cache still trusts 4): the registry confirms, the denial stands.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let denied = decide(&server, "deployment-patch-4-to-7.json").await;
    assert_eq!(
        (denied["allowed"].clone(), denied["auditAnnotations"]["registry-reread"].clone()),
        (json!(false), json!("confirmed"))
    );
    assert_eq!(registry.hits(path), 2);
    // The pipeline raises the limit to 8: the next deploy is allowed at once, not after the TTL.
    registry.set("team-a/payments-api", 8);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let allowed = decide(&server, "deployment-patch-4-to-7.json").await;
    assert_eq!(allowed["allowed"], true, "{allowed}");
    assert_eq!(allowed["auditAnnotations"]["registry-reread"], "changed");
    assert_eq!(allowed["auditAnnotations"]["max-replicas"], "8");
    // ... and the cache keeps the fresh entry: the request after asks nothing.
    assert_eq!(decide(&server, "deployment-patch-4-to-7.json").await["allowed"], true);
    assert_eq!(registry.hits(path), 3);
    assert_eq!(server.metric("replica_guard_registry_rereads_total{result=\"changed\"}").await, 1.0);
    let records = server.audit_records();
    assert!(records.iter().any(|r| r["registryReread"] == "changed" && r["decision"] == "allowed"), "{records:?}");
    server.shutdown().await;
}

/// A registry slower than the re-read's budget: the cached answer stands, within the budget,
/// and the record says why.
#[tokio::test]
async fn a_re_read_that_does_not_answer_in_time_leaves_the_cached_denial() {
    let registry = FakeRegistry::default();
    registry.set("team-a/payments-api", 4);
    let address = registry.start().await;
    let section = format!(
        "  http:\n    url: http://{address}/limits/{{namespace}}/{{name}}\n    fields: {{maxReplicas: /limits/maxReplicas}}\n    timeoutSeconds: 5\n  cache: {{ttlSeconds: 60, rereadTimeoutSeconds: 0.2}}"
    );
    let server = TestServer::start_full("mode: enforce", "", "", &section, None).await;
    assert_eq!(decide(&server, "deployment-patch-4-to-7.json").await["allowed"], false);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    registry.set("team-a/payments-api", 8);
    registry.behave(Behaviour::Slow(Duration::from_secs(2)));
    let started = std::time::Instant::now();
    let denied = decide(&server, "deployment-patch-4-to-7.json").await;
    assert!(started.elapsed() < Duration::from_millis(1000), "within the budget: {:?}", started.elapsed());
    assert_eq!(denied["allowed"], false);
    assert_eq!(denied["auditAnnotations"]["registry-reread"], "timeout");
    assert_eq!(server.metric("replica_guard_registry_rereads_total{result=\"timeout\"}").await, 1.0);
    server.shutdown().await;
}
