//! The captured AdmissionReview bodies, sent over TLS to a real server on 127.0.0.1 with both
//! HTTP/1.1 and HTTP/2 on kept-alive connections, as the API server sends them.

mod common;

use common::{FIXTURE_SETS, Protocol, REGISTRY, TestServer, fixture, fixture_in, fixture_json, fixture_json_in};
use serde_json::Value;

struct Case {
    fixture: &'static str,
    allowed: bool,
    /// Each expected warning, in order (exact text).
    warnings: &'static [&'static str],
    /// A part of the deny message.
    denial: Option<&'static str>,
    /// Audit annotations that must be present with these values.
    annotations: &'static [(&'static str, &'static str)],
}

const ENFORCE: &str = "mode: enforce\noverride: {groups: [platform-admins]}";

/// The design's fixture table, decided with the example registry (both APIs registered at 4).
const ENFORCE_CASES: &[Case] = &[
    Case {
        fixture: "deployment-create-replicas-3.json",
        allowed: true,
        warnings: &[],
        denial: None,
        annotations: &[
            ("decision", "allowed"),
            ("rule", "within-limit"),
            ("requested-replicas", "3"),
            ("max-replicas", "4"),
        ],
    },
    Case {
        fixture: "deployment-redeploy-replicas-3-to-6-and-image.json",
        allowed: false,
        warnings: &[],
        denial: Some(
            "replicas 3 -> 6 exceeds PED max 4 for team-a/payments-api. To deploy, lower spec.replicas to 4 or less, or raise maxReplicas in the PED config of team-a/payments-api",
        ),
        annotations: &[
            ("decision", "denied"),
            ("rule", "violation"),
            ("mode", "enforce"),
            ("previous-replicas", "3"),
            ("requested-replicas", "6"),
            ("changed-fields", "replicas,image"),
        ],
    },
    Case {
        fixture: "deployment-patch-4-to-7.json",
        allowed: false,
        warnings: &[],
        denial: Some("replicas 4 -> 7 exceeds PED max 4 for team-a/payments-api"),
        annotations: &[("decision", "denied"), ("changed-fields", "replicas")],
    },
    Case {
        fixture: "deployment-server-side-apply-3-to-4-and-image.json",
        allowed: true,
        warnings: &[],
        denial: None,
        annotations: &[("decision", "allowed"), ("changed-fields", "replicas,image")],
    },
    Case {
        fixture: "deployment-create-without-replicas-field.json",
        allowed: true,
        warnings: &[],
        denial: None,
        annotations: &[("requested-replicas", "1")],
    },
    Case {
        fixture: "deployment-env-and-memory-change.json",
        allowed: true,
        warnings: &[],
        denial: None,
        annotations: &[("decision", "allowed"), ("changed-fields", "resources,env")],
    },
    Case {
        fixture: "deployment-rollout-restart.json",
        allowed: true,
        warnings: &[],
        denial: None,
        annotations: &[("decision", "allowed"), ("changed-fields", "other")],
    },
    Case {
        fixture: "deployment-dry-run-3-to-12.json",
        allowed: false,
        warnings: &[],
        denial: Some("replicas 3 -> 12 exceeds PED max 4 for team-a/payments-api"),
        annotations: &[("decision", "denied")],
    },
    Case {
        fixture: "deployment-override-annotation-by-platform-admin-7-to-8.json",
        allowed: true,
        warnings: &[
            "allowed by break-glass override: replicas 7 -> 8 exceeds PED max 4 for team-a/payments-api",
            "override recorded: INC-4711 black friday (by bob@example.com)",
            "changes: replicas 7 -> 8, annotation replica-guard.io/override",
        ],
        denial: None,
        annotations: &[
            ("decision", "warned"),
            ("override", "INC-4711 black friday"),
            ("override-user", "bob@example.com"),
        ],
    },
];

fn check(case: &Case, response: &Value, fixture_uid: &str) {
    let name = case.fixture;
    assert_eq!(response["uid"], fixture_uid, "{name}: the uid must be echoed");
    assert_eq!(response["allowed"], case.allowed, "{name}: {response}");
    let warnings: Vec<&str> =
        response["warnings"].as_array().map(|w| w.iter().map(|w| w.as_str().unwrap()).collect()).unwrap_or_default();
    assert_eq!(warnings, case.warnings, "{name}");
    for w in &warnings {
        assert!(w.chars().count() <= 120 && !w.starts_with("Warning"), "{name}: {w}");
    }
    match case.denial {
        Some(text) => {
            assert_eq!(response["status"]["code"], 403, "{name}");
            assert_eq!(response["status"]["reason"], "Forbidden", "{name}");
            let message = response["status"]["message"].as_str().unwrap();
            assert!(message.contains(text), "{name}: {message}");
        }
        None => assert!(response["status"]["code"].is_null(), "{name}: {response}"),
    }
    for (key, value) in case.annotations {
        assert_eq!(response["auditAnnotations"][key], *value, "{name}: annotation {key} in {response}");
    }
}

/// The table on every fixture set (what kube-apiserver 1.20 and 1.37 sent).
async fn run_cases(protocol: Protocol) {
    let server = TestServer::start(ENFORCE, REGISTRY).await;
    let mut client = server.client(protocol).await;
    let expected_alpn: &[u8] = if protocol == Protocol::Http2 { b"h2" } else { b"http/1.1" };
    assert_eq!(client.alpn.as_deref(), Some(expected_alpn));
    // One connection for every case: keep-alive as the API server uses it.
    for set in FIXTURE_SETS {
        eprintln!("fixture set {set}");
        for case in ENFORCE_CASES {
            let uid = fixture_json_in(set, case.fixture)["request"]["uid"].as_str().unwrap().to_string();
            let response = client.review(fixture_in(set, case.fixture)).await;
            check(case, &response, &uid);
        }
    }
    server.shutdown().await;
}

/// One `kubectl apply --server-side` on a modern server: the first UPDATE carries the change, the
/// ones that follow while field ownership migrates (kubectl-last-applied, then kubectl) change
/// only managedFields and the last-applied annotation. Each is silent, before every other rule.
#[tokio::test]
async fn the_updates_of_a_server_side_apply_migration_are_silent() {
    // Even with the workload registered far below what it runs, and unregistered denied.
    let lowered = "entries:\n  - {namespace: team-a, deployment: payments-api, maxReplicas: 2}\n";
    let server = TestServer::start("mode: enforce\nunregistered: deny\nchangeSummary: always", lowered).await;
    let mut client = server.client(Protocol::Http1).await;
    let first = client.review(fixture("deployment-server-side-apply-3-to-4-and-image.json")).await;
    assert_eq!(first["allowed"], false, "the first UPDATE raises 3 -> 4 above 2: {first}");
    let mut followers = 0;
    for n in 2..10 {
        let name = format!("deployment-server-side-apply-3-to-4-and-image-update-{n}.json");
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/k8s-1.37").join(&name);
        if !path.exists() {
            break;
        }
        let response = client.review(fixture(&name)).await;
        assert_eq!(response["allowed"], true, "{name}: {response}");
        assert!(response["warnings"].is_null(), "{name}: {response}");
        assert_eq!(response["auditAnnotations"]["rule"], "no-change", "{name}: {response}");
        followers += 1;
    }
    assert!(followers >= 2, "the 1.37 set holds the UPDATEs that follow the first: {followers}");
    server.shutdown().await;
}

#[tokio::test]
async fn fixtures_over_http1_keep_alive() {
    run_cases(Protocol::Http1).await;
}

#[tokio::test]
async fn fixtures_over_http2() {
    run_cases(Protocol::Http2).await;
}

#[tokio::test]
async fn warn_mode_allows_the_redeploy_and_summarises_it() {
    let server = TestServer::start("mode: warn", REGISTRY).await;
    let mut client = server.client(Protocol::Http1).await;
    let response = client.review(fixture("deployment-redeploy-replicas-3-to-6-and-image.json")).await;
    check(
        &Case {
            fixture: "deployment-redeploy-replicas-3-to-6-and-image.json",
            allowed: true,
            warnings: &[
                "replicas 3 -> 6 exceeds PED max 4 for team-a/payments-api",
                "changes: replicas 3 -> 6, image of api",
            ],
            denial: None,
            annotations: &[("decision", "warned"), ("mode", "warn"), ("rule", "violation")],
        },
        &response,
        fixture_json("deployment-redeploy-replicas-3-to-6-and-image.json")["request"]["uid"].as_str().unwrap(),
    );
    assert_eq!(
        server
            .metric("replica_guard_violations_total{deployment=\"payments-api\",mode=\"warn\",namespace=\"team-a\"}")
            .await,
        1.0
    );
    server.shutdown().await;
}

#[tokio::test]
async fn audit_mode_allows_silently_but_records() {
    let server = TestServer::start("mode: audit", REGISTRY).await;
    let mut client = server.client(Protocol::Http1).await;
    let response = client.review(fixture("deployment-patch-4-to-7.json")).await;
    assert_eq!(response["allowed"], true);
    assert!(response["warnings"].is_null(), "{response}");
    assert_eq!(response["auditAnnotations"]["rule"], "violation");
    assert_eq!(response["auditAnnotations"]["mode"], "audit");
    let records = server.audit_records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["rule"], "violation");
    assert_eq!(
        server
            .metric("replica_guard_violations_total{deployment=\"payments-api\",mode=\"audit\",namespace=\"team-a\"}")
            .await,
        1.0
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_denied_update_sent_twice_gets_the_same_answer() {
    // The API server retries a denied UPDATE with fresh data: answers must be idempotent.
    let server = TestServer::start(ENFORCE, REGISTRY).await;
    let mut client = server.client(Protocol::Http1).await;
    let first = client.review(fixture("deployment-patch-4-to-7.json")).await;
    let second = client.review(fixture("deployment-patch-4-to-7.json")).await;
    assert_eq!(first, second);
    server.shutdown().await;
}

#[tokio::test]
async fn audit_record_is_complete_and_dry_runs_are_marked_but_not_counted() {
    let server = TestServer::start(ENFORCE, REGISTRY).await;
    let mut client = server.client(Protocol::Http1).await;
    client.review(fixture("deployment-redeploy-replicas-3-to-6-and-image.json")).await;
    client.review(fixture("deployment-dry-run-3-to-12.json")).await;
    // managedFields-only churn and an unchanged object must stay silent: no record.
    let records = server.audit_records();
    assert_eq!(records.len(), 2, "{records:?}");
    let real = &records[0];
    for key in [
        "time",
        "uid",
        "user",
        "namespace",
        "name",
        "operation",
        "oldReplicas",
        "newReplicas",
        "maxReplicas",
        "decision",
        "changedFields",
        "dryRun",
    ] {
        assert!(real.get(key).is_some(), "audit record lacks {key}: {real}");
    }
    assert_eq!(real["uid"], fixture_json("deployment-redeploy-replicas-3-to-6-and-image.json")["request"]["uid"]);
    assert_eq!(real["user"], "admin");
    assert_eq!(
        (real["oldReplicas"].as_i64(), real["newReplicas"].as_i64(), real["maxReplicas"].as_i64()),
        (Some(3), Some(6), Some(4))
    );
    assert_eq!(real["changedFields"], serde_json::json!(["replicas", "image"]));
    assert_eq!(real["dryRun"], false);
    let dry = &records[1];
    assert_eq!(dry["dryRun"], true);
    assert_eq!(dry["decision"], "denied");
    // Only the real request counts as a violation and as changes.
    let labels = "{deployment=\"payments-api\",mode=\"enforce\",namespace=\"team-a\"}";
    assert_eq!(server.metric(&format!("replica_guard_violations_total{labels}")).await, 1.0);
    // By field only by default (`metrics.changesPerWorkload` adds the workload).
    assert_eq!(server.metric("replica_guard_field_changes_total{field=\"replicas\"}").await, 1.0);
    server.shutdown().await;
}

#[tokio::test]
async fn metrics_follow_the_naming_conventions() {
    let detail = "metrics: {registryEntries: true, changesPerWorkload: true}";
    let server = TestServer::start_with(ENFORCE, REGISTRY, detail).await;
    let mut client = server.client(Protocol::Http2).await;
    client.review(fixture("deployment-create-replicas-3.json")).await;
    let (status, text) = server.admin_get("/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "replica_guard_registered_max_replicas{deployment=\"payments-api\",namespace=\"team-a\"} 4",
        "replica_guard_registered_max_replicas{deployment=\"orders-api\",namespace=\"team-a\"} 4",
        "replica_guard_admission_requests_total{decision=\"allowed\",kind=\"deployment\",operation=\"CREATE\"} 1",
        "replica_guard_registry_entries 2",
        "replica_guard_registry_reloads_total{result=\"success\",source=\"file\"} 1",
        "replica_guard_build_info{version=\"",
        "replica_guard_admission_duration_seconds_bucket{kind=\"deployment\",le=\"",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn health_and_readiness() {
    let server = TestServer::start(ENFORCE, REGISTRY).await;
    assert_eq!(server.admin_get("/healthz").await.0, 200);
    assert_eq!(server.admin_get("/readyz").await, (200, "ok\n".to_string()));
    assert_eq!(server.admin_get("/nope").await.0, 404);
    server.shutdown().await;
}

/// What a webhook pod exports by default grows with what goes wrong (violations, overrides), not
/// with the registry: 20,000 entries add no series until `metrics.registryEntries` asks for them.
#[tokio::test]
async fn the_default_scrape_does_not_grow_with_the_registry() {
    let mut registry = String::from("entries:\n  - {namespace: team-a, deployment: payments-api, maxReplicas: 4}\n");
    for i in 0..20_000 {
        registry.push_str(&format!("  - {{namespace: team-{}, deployment: app-{i}, maxReplicas: 4}}\n", i % 500));
    }
    let scrape = async |extra: &str| {
        let server = TestServer::start_with(ENFORCE, &registry, extra).await;
        let mut client = server.client(Protocol::Http2).await;
        client.review(fixture("deployment-redeploy-replicas-3-to-6-and-image.json")).await;
        let (status, text) = server.admin_get("/metrics").await;
        assert_eq!(status, 200);
        server.shutdown().await;
        text
    };
    let default = scrape("").await;
    let detailed = scrape("metrics: {registryEntries: true}").await;
    let per_entry =
        |text: &str| text.lines().filter(|l| l.starts_with("replica_guard_registered_max_replicas{")).count();
    assert_eq!(per_entry(&default), 0, "no per-entry series by default");
    assert!(default.contains("replica_guard_registry_entries 20001"), "the registry's size is one series");
    // The registry's failure counters exist at 0 from the start: an alert's increase() sees the first failure.
    assert!(default.contains("replica_guard_registry_reloads_total{result=\"error\",source=\"file\"} 0"), "{default}");
    assert!(default.len() < 40_000, "the default scrape is {} bytes", default.len());
    assert_eq!(per_entry(&detailed), 20_001, "one series per entry when asked");
    assert!(detailed.len() > default.len() + 20_000 * 60, "{} bytes with the opt-in", detailed.len());
    // What went wrong is there either way: the violation, per workload.
    let violation =
        "replica_guard_violations_total{deployment=\"payments-api\",mode=\"enforce\",namespace=\"team-a\"} 1";
    assert!(default.contains(violation) && detailed.contains(violation), "{default}");
    eprintln!(
        "/metrics with 20,000 entries: {} bytes by default, {} with registryEntries",
        default.len(),
        detailed.len()
    );
}
