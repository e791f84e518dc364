//! Faults, all on 127.0.0.1, bounded in requests and time: a slow, a black-holed and a dead HTTP
//! registry under load; a burst of 1,000 concurrent connections; slowloris clients.
//! The bounds asserted here are correctness bounds (a lookup never waits past its timeout), not
//! performance figures; those are in BENCHMARKS.md.

mod common;

use axum::Router;
use axum::routing::get;
use common::{Protocol, REGISTRY, TestServer, fixture_json, tls_connector};
use rustls::pki_types::ServerName;
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// A registry that answers after `delay` (a slow one).
async fn slow_registry(delay: Duration) -> SocketAddr {
    let app = Router::new().route(
        "/limits/{ns}/{name}",
        get(move || async move {
            tokio::time::sleep(delay).await;
            axum::Json(json!({"maxReplicas": 4}))
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

/// A registry that accepts connections and never answers.
async fn black_hole() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = vec![];
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    address
}

/// An address nothing listens on.
async fn dead() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// `n` reviews of distinct workloads (no coalescing to hide behind), 8 at a time.
fn reviews(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut r = fixture_json("deployment-patch-4-to-7.json");
            r["request"]["name"] = json!(format!("api-{i}"));
            r["request"]["uid"] = json!(format!("00000000-0000-4000-8000-{i:012}"));
            serde_json::to_vec(&r).unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_black_holed_and_dead_registries_under_load_follow_the_failure_policy() {
    let slow = slow_registry(Duration::from_secs(5)).await;
    let hole = black_hole().await;
    let gone = dead().await;
    for (name, address, policy, allowed) in [
        ("slow", slow, "open", true),
        ("black hole", hole, "closed", false),
        ("dead", gone, "open", true),
        ("dead", gone, "closed", false),
    ] {
        let section = format!(
            "  http: {{url: 'http://{address}/limits/{{namespace}}/{{name}}', timeoutSeconds: 0.3, connectTimeoutSeconds: 0.2}}\n  cache: {{errorTtlSeconds: 0}}"
        );
        let server =
            TestServer::start_full(&format!("mode: enforce\nregistryFailure: {policy}"), "", "", &section, None).await;
        let started = Instant::now();
        let mut tasks = vec![];
        for chunk in reviews(80).chunks(10) {
            let mut client = server.client(if tasks.len() % 2 == 0 { Protocol::Http1 } else { Protocol::Http2 }).await;
            let chunk = chunk.to_vec();
            tasks.push(tokio::spawn(async move {
                let mut answers = vec![];
                for body in chunk {
                    let sent = Instant::now();
                    let (status, json) = client.post("/validate", "application/json", body).await.unwrap();
                    answers.push((status.as_u16(), json["response"].clone(), sent.elapsed()));
                }
                answers
            }));
        }
        for task in tasks {
            for (status, response, took) in task.await.unwrap() {
                assert_eq!(status, 200, "{name}/{policy}: never a 5xx");
                assert_eq!(response["allowed"], allowed, "{name}/{policy}: {response}");
                assert_eq!(response["auditAnnotations"]["rule"], "registry-unavailable");
                assert!(
                    took < Duration::from_millis(1500),
                    "{name}/{policy}: a lookup waited {took:?}, past its 0.3 s timeout"
                );
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{name}/{policy}: 80 requests took {:?}",
            started.elapsed()
        );
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_1000_concurrent_connections_is_served() {
    let server = TestServer::start("mode: enforce", REGISTRY).await;
    let body = common::fixture("deployment-create-replicas-3.json");
    let mut tasks = vec![];
    for i in 0..1000 {
        let (address, ca, body) = (server.https, server.ca_pem.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let protocol = if i % 2 == 0 { Protocol::Http1 } else { Protocol::Http2 };
            let mut client = common::Client::connect(address, &ca, protocol).await;
            client.post("/validate", "application/json", body).await.map(|(status, _)| status.as_u16())
        }));
    }
    let mut ok = 0;
    for task in tasks {
        if task.await.unwrap() == Ok(200) {
            ok += 1;
        }
    }
    assert_eq!(ok, 1000);
    assert_eq!(server.admin_get("/readyz").await.0, 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_clients_do_not_starve_others_and_are_cut_off() {
    let server = TestServer::start_with("mode: enforce", REGISTRY, "  headerTimeoutSeconds: 1").await;
    let address = server.https;
    // 100 clients that never finish the TLS handshake, 100 that never finish their headers.
    let mut slow = vec![];
    for _ in 0..100 {
        let mut tcp = TcpStream::connect(address).await.unwrap();
        tcp.write_all(&[0x16, 0x03, 0x01, 0x00]).await.unwrap(); // the start of a ClientHello
        slow.push(tokio::spawn(async move { common::closed_within(&mut tcp, Duration::from_secs(5)).await }));
    }
    for _ in 0..100 {
        let tcp = TcpStream::connect(address).await.unwrap();
        let mut tls = tls_connector(&server.ca_pem, &[b"http/1.1"])
            .connect(ServerName::IpAddress(address.ip().into()), tcp)
            .await
            .unwrap();
        tls.write_all(b"POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\n").await.unwrap();
        tls.flush().await.unwrap();
        slow.push(tokio::spawn(async move { common::closed_within(&mut tls, Duration::from_secs(5)).await }));
    }
    // Meanwhile an ordinary client is served.
    let mut client = server.client(Protocol::Http1).await;
    for _ in 0..50 {
        assert_eq!(client.review(common::fixture("deployment-create-replicas-3.json")).await["allowed"], true);
    }
    for task in slow {
        assert!(task.await.unwrap(), "a slow client was not disconnected after the header timeout");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn forged_reviews_with_made_up_names_do_not_grow_the_metrics() {
    // Anything that reaches the Service can post reviews; the API server is not the only client.
    // Per workload (the opt-in): the labels a forger could choose.
    let server = TestServer::start_with("mode: warn", REGISTRY, "metrics: {changesPerWorkload: true}").await;
    let mut client = server.client(Protocol::Http2).await;
    for i in 0..300 {
        let mut review = fixture_json("deployment-redeploy-replicas-3-to-6-and-image.json");
        review["request"]["namespace"] = json!(format!("made-up-{i}"));
        review["request"]["name"] = json!(format!("app-{i}"));
        assert_eq!(client.review(serde_json::to_vec(&review).unwrap()).await["allowed"], true);
    }
    client.review(common::fixture("deployment-redeploy-replicas-3-to-6-and-image.json")).await;
    let (_, metrics) = server.admin_get("/metrics").await;
    assert!(!metrics.contains("made-up-"), "made-up names became series");
    let series = metrics.lines().filter(|l| l.starts_with("replica_guard_field_changes_total{")).count();
    assert!(series <= 2 * 7, "{series} field-change series");
    assert!(metrics.contains("replica_guard_field_changes_total{deployment=\"_unregistered\",field=\"image\",namespace=\"_unregistered\"} 300"));
    assert!(metrics.contains(
        "replica_guard_field_changes_total{deployment=\"payments-api\",field=\"image\",namespace=\"team-a\"} 1"
    ));
    server.shutdown().await;
}
