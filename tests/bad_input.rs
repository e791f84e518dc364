//! Bad input gets a 4xx with a JSON message that names the problem; never a panic, never a 5xx,
//! and the server keeps serving afterwards.

mod common;

use common::{Protocol, REGISTRY, TestServer, fixture_json};
use serde_json::{Value, json};

/// A real Deployment review with one edit applied.
fn edited(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut review = fixture_json("deployment-redeploy-replicas-3-to-6-and-image.json");
    edit(&mut review);
    serde_json::to_vec(&review).unwrap()
}

/// An UPDATE whose changed spec (which is parsed for the diff) is nested 10,000 deep.
fn deeply_nested() -> Vec<u8> {
    let mut review = fixture_json("deployment-redeploy-replicas-3-to-6-and-image.json");
    review["request"]["object"]["spec"]["deep"] = json!("HERE");
    let nested = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    serde_json::to_string(&review).unwrap().replacen("\"HERE\"", &nested, 1).into_bytes()
}

#[tokio::test]
async fn every_kind_of_bad_body_gets_a_400_naming_the_problem() {
    let server = TestServer::start("mode: enforce", REGISTRY).await;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not JSON", b"this is not json".to_vec(), "body is not valid JSON"),
        ("empty body", vec![], "body is not valid JSON"),
        ("JSON but not an AdmissionReview", br#"{"hello": "world"}"#.to_vec(), "body is not an AdmissionReview"),
        ("a JSON array", b"[1,2,3]".to_vec(), "body is not an AdmissionReview"),
        ("no request", br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(), "has no request"),
        (
            "wrong apiVersion",
            edited(|r| r["apiVersion"] = json!("admission.k8s.io/v1beta1")),
            "apiVersion must be admission.k8s.io/v1",
        ),
        (
            "missing uid",
            edited(|r| r["request"].as_object_mut().unwrap().remove("uid").map(|_| ()).unwrap()),
            "missing field `uid`",
        ),
        ("empty uid", edited(|r| r["request"]["uid"] = json!("")), "request.uid is missing or empty"),
        ("missing object", edited(|r| r["request"]["object"] = Value::Null), "request.object is missing"),
        (
            "missing oldObject on UPDATE",
            edited(|r| r["request"]["oldObject"] = Value::Null),
            "request.oldObject is missing",
        ),
        (
            "says Deployment, object is a ConfigMap",
            edited(|r| {
                r["request"]["object"] =
                    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {}})
            }),
            "request.object is not a valid apps/v1 Deployment: kind is \"ConfigMap\"",
        ),
        (
            "Deployment spec is not an object",
            edited(|r| r["request"]["object"]["spec"] = json!("three")),
            "request.object is not a valid apps/v1 Deployment: spec: invalid type: string \"three\"",
        ),
        (
            "Deployment without spec",
            edited(|r| r["request"]["object"].as_object_mut().unwrap().remove("spec").map(|_| ()).unwrap()),
            "request.object is not a valid apps/v1 Deployment: spec is missing",
        ),
        (
            "containers of the wrong type",
            edited(|r| r["request"]["object"]["spec"]["template"]["spec"]["containers"] = json!({"api": 1})),
            "spec.template.spec.containers: invalid type: map, expected a list",
        ),
        (
            "negative replicas",
            edited(|r| r["request"]["object"]["spec"]["replicas"] = json!(-3)),
            "request.object.spec.replicas must be 0 or more, got -3",
        ),
        (
            "replicas as a string",
            edited(|r| r["request"]["object"]["spec"]["replicas"] = json!("6")),
            "spec.replicas: invalid type: string \"6\", expected a whole number of at most 2147483647",
        ),
        (
            "replicas beyond i32",
            edited(|r| r["request"]["object"]["spec"]["replicas"] = json!(4_294_967_296_i64)),
            "spec.replicas: invalid value: integer `4294967296`, expected a whole number of at most 2147483647",
        ),
        (
            "replicas a float",
            edited(|r| r["request"]["object"]["spec"]["replicas"] = json!(2.5)),
            "spec.replicas: invalid type: floating point",
        ),
        ("deeply nested JSON", deeply_nested(), "recursion limit exceeded"),
        ("no namespace", edited(|r| r["request"]["namespace"] = json!("")), "request.namespace is missing"),
    ];
    for protocol in [Protocol::Http1, Protocol::Http2] {
        let mut client = server.client(protocol).await;
        for (name, body, want) in &cases {
            let (status, json) = client.post("/validate", "application/json", body.clone()).await.unwrap();
            assert_eq!(status.as_u16(), 400, "{name}: {json}");
            let error = json["error"].as_str().unwrap_or_default();
            assert!(error.contains(want), "{name}: got {error:?}, want {want:?}");
            assert_eq!(json["code"], 400, "{name}");
        }
    }
    // Still serving, and counted.
    let mut client = server.client(Protocol::Http1).await;
    let response = client.review(common::fixture("deployment-create-replicas-3.json")).await;
    assert_eq!(response["allowed"], true);
    assert!(server.metric("replica_guard_bad_requests_total{reason=\"invalid-replicas\"}").await >= 2.0);
    server.shutdown().await;
}

#[tokio::test]
async fn deep_nesting_where_nothing_is_read_is_skipped_safely() {
    let server = TestServer::start("mode: enforce", REGISTRY).await;
    let mut review = fixture_json("deployment-create-replicas-3.json");
    review["request"]["object"]["status"] = json!("HERE");
    let nested = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let body = serde_json::to_string(&review).unwrap().replacen("\"HERE\"", &nested, 1).into_bytes();
    let response = server.client(Protocol::Http1).await.review(body).await;
    assert_eq!(response["allowed"], true, "status is never read: {response}");
    server.shutdown().await;
}

#[tokio::test]
async fn transport_level_mistakes_get_their_own_4xx() {
    let server = TestServer::start_with("mode: enforce", REGISTRY, "  maxBodyBytes: 65536").await;
    let mut client = server.client(Protocol::Http1).await;
    let review = common::fixture("deployment-create-replicas-3.json");

    let (status, json) = client.post("/validate", "text/plain", review.clone()).await.unwrap();
    assert_eq!(status.as_u16(), 415, "{json}");
    assert!(json["error"].as_str().unwrap().contains("Content-Type must be application/json, got \"text/plain\""));

    let (status, json) = client.post("/validate", "", review.clone()).await.unwrap();
    assert_eq!(status.as_u16(), 415, "{json}");

    let (status, json) = client.post("/validate", "application/json; charset=utf-8", review.clone()).await.unwrap();
    assert_eq!(status.as_u16(), 200, "a charset parameter is fine: {json}");

    let huge = format!(r#"{{"apiVersion":"admission.k8s.io/v1","pad":"{}"}}"#, "x".repeat(200_000)).into_bytes();
    let mut client = server.client(Protocol::Http1).await;
    let (status, json) = client.post("/validate", "application/json", huge).await.unwrap();
    assert_eq!(status.as_u16(), 413, "{json}");
    assert!(json["error"].as_str().unwrap().contains("larger than 65536 bytes (server.maxBodyBytes)"));

    let mut client = server.client(Protocol::Http1).await;
    let (status, _) = client.post("/other", "application/json", review).await.unwrap();
    assert_eq!(status.as_u16(), 404);
    server.shutdown().await;
}

#[tokio::test]
async fn a_kind_replica_guard_does_not_handle_is_allowed() {
    let server = TestServer::start("mode: enforce", REGISTRY).await;
    let mut client = server.client(Protocol::Http1).await;
    let pod = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "0b0e2d7e-0000-4000-8000-000000000001",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "p", "namespace": "team-a", "operation": "CREATE",
            "userInfo": {"username": "admin"},
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": []}},
            "dryRun": false
        }
    });
    let response = client.review(serde_json::to_vec(&pod).unwrap()).await;
    assert_eq!(response["allowed"], true);
    assert_eq!(response["uid"], "0b0e2d7e-0000-4000-8000-000000000001");
    assert_eq!(
        server
            .metric(
                "replica_guard_admission_requests_total{decision=\"not-handled\",kind=\"other\",operation=\"CREATE\"}"
            )
            .await,
        1.0
    );

    let mut delete = fixture_json("deployment-create-replicas-3.json");
    delete["request"]["operation"] = json!("DELETE");
    let response = client.review(serde_json::to_vec(&delete).unwrap()).await;
    assert_eq!(response["allowed"], true, "DELETE is not a replica path");
    server.shutdown().await;
}
