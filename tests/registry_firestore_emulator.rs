//! The Firestore sources against Firestore's own emulator (Debian package
//! `google-cloud-cli-firestore-emulator`), not a fake written here: the snapshot source
//! (`registry.firestore`, the whole collection in pages) and the HTTP source's `firestore` format
//! (`registry.http`, one document per workload), each behind the real webhook, with documents
//! written through the emulator's REST API as the onboarding pipeline writes them.
//!
//! The fakes (`registry_firestore.rs`, `registry_http.rs`) stay for what the emulator cannot do:
//! a page that fails halfway, a page slower than the sync timeout, a 401 that asks for a fresh
//! token, hostile pages (100 KB owners, more entries than allowed).
//!
//! They need the emulator and Java: `cargo test` leaves them out (`#[ignore]`), `.ci/run` runs
//! them, and a machine without the emulator fails there, saying what to install.

mod common;

use common::emulator::{Emulator, request};
use common::{TestServer, fixture};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The emulator's address, started once for the test binary (each test writes to a project of
/// its own). It is killed when the test binary exits (PDEATHSIG, from a thread that lives as long
/// as the process: the signal follows the thread that spawned it).
fn emulator() -> SocketAddr {
    static ADDRESS: OnceLock<SocketAddr> = OnceLock::new();
    *ADDRESS.get_or_init(|| {
        let (started, spawned) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let log = std::env::temp_dir().join(format!("replica-guard-firestore-emulator-{port}.log"));
            let emulator = Emulator::start([127, 0, 0, 1].into(), port, None, &log);
            let _ = started.send(emulator.as_ref().map(|e| e.address).map_err(String::clone));
            // This thread, and the emulator, live as long as the test binary.
            let _kept = emulator;
            loop {
                std::thread::park();
            }
        });
        spawned.recv().unwrap().unwrap_or_else(|e| panic!("{e}"))
    })
}

/// The onboarding pipeline's write: document `id` of collection `ped` in `project`, with
/// `fields` as Firestore typed values (created, or replaced whole).
async fn put(project: &str, id: &str, fields: Value) {
    let path = format!("/v1/projects/{project}/databases/(default)/documents/ped/{id}");
    let body = json!({ "fields": fields });
    let status = tokio::task::spawn_blocking(move || request(emulator(), "PATCH", &path, Some(&body))).await.unwrap();
    assert_eq!(status, 200, "PATCH {id}");
}

async fn delete(project: &str, id: &str) {
    let path = format!("/v1/projects/{project}/databases/(default)/documents/ped/{id}");
    let status = tokio::task::spawn_blocking(move || request(emulator(), "DELETE", &path, None)).await.unwrap();
    assert_eq!(status, 200, "DELETE {id}");
}

fn limit(max: i64) -> Value {
    json!({"maxReplicas": {"integerValue": max.to_string()}, "owner": {"stringValue": "payments-team@example.com"}})
}

/// Waits (bounded) for `/readyz`: the first sync of the collection is complete.
async fn synced(server: &TestServer) {
    let started = Instant::now();
    while server.admin_get("/readyz").await.0 != 200 {
        assert!(started.elapsed() < Duration::from_secs(30), "no first sync from the emulator within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The webhook on the snapshot of `project`'s collection `ped`, synced every `refresh` seconds
/// (and followed by the Listen stream, unless `extra` says `listen: false`), once its first sync
/// is complete. `extra`: more keys of `registry.firestore`, and then of `registry`.
async fn snapshot_webhook(project: &str, refresh: u32, extra: &str) -> TestServer {
    let section = format!(
        "  firestore:\n    project: {project}\n    collection: ped\n    url: http://{}/v1\n    refreshSeconds: {refresh}\n{extra}",
        emulator()
    );
    let server = TestServer::start_full("mode: enforce", "", "", &section, None).await;
    synced(&server).await;
    server
}

async fn allowed(server: &TestServer, fixture_name: &str) -> Value {
    let response = server.review(fixture(fixture_name)).await;
    response["allowed"].clone()
}

/// Waits (bounded) until the webhook's answer to the fixture is `want`.
async fn until_answer(server: &TestServer, fixture_name: &str, want: bool, limit: Duration) -> Duration {
    let started = Instant::now();
    while started.elapsed() < limit {
        if allowed(server, fixture_name).await == want {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the webhook never answered allowed={want} within {limit:?}");
}

#[tokio::test]
#[ignore = "needs Firestore's emulator; .ci/run runs it"]
async fn the_snapshot_source_syncs_a_collection_from_the_emulator_and_the_webhook_answers_from_it() {
    let project = "snapshot";
    // More than a page (pageSize 300): namespace and deployment in fields, or in the document id.
    for i in 0..320 {
        let mut fields = limit(4);
        if i % 2 == 0 {
            fields["namespace"] = json!({"stringValue": format!("team-{}", i % 5)});
            fields["deployment"] = json!({"stringValue": format!("api-{i}")});
        }
        put(project, &format!("team-{}--api-{i}", i % 5), fields).await;
    }
    put(project, "team-a--payments-api", limit(4)).await;
    put(project, "sandbox--_default", json!({"maxReplicas": {"integerValue": "2"}, "mode": {"stringValue": "warn"}}))
        .await;
    // The sync alone (no stream): what a cluster without gRPC egress runs.
    let server = snapshot_webhook(project, 1, "    listen: false\n").await;
    // 4 -> 7 for team-a/payments-api (max 4): refused, from the emulator's document.
    assert_eq!(allowed(&server, "deployment-patch-4-to-7.json").await, false);
    assert_eq!(
        server.metric("replica_guard_registry_entries").await,
        322.0,
        "every document of the collection, over two pages"
    );
    // The pipeline raises the limit; the next sync (refreshSeconds 1) allows.
    put(project, "team-a--payments-api", limit(8)).await;
    let took = until_answer(&server, "deployment-patch-4-to-7.json", true, Duration::from_secs(15)).await;
    eprintln!(
        "a raised limit was honoured {:.0} ms after the emulator's write (refreshSeconds 1)",
        took.as_secs_f64() * 1000.0
    );
    // Lowered again, and a document removed: both seen on the next sync.
    put(project, "team-a--payments-api", limit(4)).await;
    until_answer(&server, "deployment-patch-4-to-7.json", false, Duration::from_secs(15)).await;
    delete(project, "team-a--payments-api").await;
    let started = Instant::now();
    loop {
        let response = server.review(fixture("deployment-patch-4-to-7.json")).await;
        if response["auditAnnotations"]["rule"] == "unregistered" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "the deleted document still counts: {response}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.shutdown().await;
}

#[tokio::test]
#[ignore = "needs Firestore's emulator; .ci/run runs it"]
async fn the_snapshot_source_holds_back_a_collection_that_lost_most_of_its_documents() {
    // Through the sync (every second, no stream), and through the stream (deletions pushed one by
    // one, no sync for an hour): the same guard.
    for (project, refresh, extra) in [("shrink-sync", 1, "    listen: false\n"), ("shrink-stream", 3600, "")] {
        for i in 0..10 {
            put(project, &format!("team-a--api-{i}"), limit(4)).await;
        }
        put(project, "team-a--payments-api", limit(4)).await;
        let server = snapshot_webhook(project, refresh, extra).await;
        assert_eq!(allowed(&server, "deployment-patch-4-to-7.json").await, false);
        // A broken export deletes 8 of 11: more than maxShrinkFraction (0.5) at once is held back.
        for i in 0..8 {
            delete(project, &format!("team-a--api-{i}")).await;
        }
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let entries = server.metric("replica_guard_registry_entries").await;
        assert!(entries >= 6.0, "{project}: no more than half of the 11 entries may go, {entries} left");
        assert!(
            server.metric("replica_guard_registry_reloads_total{result=\"held-back\",source=\"firestore\"}").await
                >= 1.0,
            "{project}: the guard held a change back"
        );
        assert_eq!(
            allowed(&server, "deployment-patch-4-to-7.json").await,
            false,
            "{project}: the last good snapshot still answers"
        );
        server.shutdown().await;
    }
}

#[tokio::test]
#[ignore = "needs Firestore's emulator; .ci/run runs it"]
async fn the_http_source_reads_one_document_per_workload_from_the_emulator() {
    let project = "perworkload";
    put(project, "team-a--payments-api", limit(4)).await;
    let base = format!("http://{}/v1/projects/{project}/databases/(default)/documents/ped", emulator());
    let section = format!(
        "  http:\n    url: {base}/{{namespace}}--{{name}}\n    namespaceDefaultUrl: {base}/{{namespace}}--_default\n    format: firestore\n  cache: {{ttlSeconds: 0.2, negativeTtlSeconds: 0.2}}\n"
    );
    let server = TestServer::start_full("mode: enforce", "", "", &section, None).await;
    let response = server.review(fixture("deployment-patch-4-to-7.json")).await;
    assert_eq!(response["allowed"], false, "{response}");
    assert!(
        response["status"]["message"].as_str().unwrap().contains("registered owner: payments-team@example.com"),
        "the owner from the document: {response}"
    );
    put(project, "team-a--payments-api", limit(8)).await;
    until_answer(&server, "deployment-patch-4-to-7.json", true, Duration::from_secs(5)).await;
    // No document for the workload, a namespace default instead (404, then the default's document).
    delete(project, "team-a--payments-api").await;
    put(project, "team-a--_default", limit(5)).await;
    until_answer(&server, "deployment-patch-4-to-7.json", false, Duration::from_secs(5)).await;
    let response = server.review(fixture("deployment-patch-4-to-7.json")).await;
    assert!(
        response["status"]["message"].as_str().unwrap().contains("exceeds PED namespace default max 5"),
        "{response}"
    );
    server.shutdown().await;
}

/// The PED pipeline raises a limit in Firestore; the snapshot is not due for another hour. The
/// deploy that follows is not refused on the old limit: the denial reads the entry from
/// Firestore itself first (by its fields, or by its id) and the raised limit allows.
#[tokio::test]
#[ignore = "needs Firestore's emulator; .ci/run runs it"]
async fn a_limit_raised_since_the_last_sync_allows_the_next_deploy_at_once() {
    for (project, by_fields) in [("reread-fields", true), ("reread-id", false)] {
        let fields = |max: i64| {
            let mut f = limit(max);
            if by_fields {
                f["namespace"] = json!({"stringValue": "team-a"});
                f["deployment"] = json!({"stringValue": "payments-api"});
            }
            f
        };
        // By fields, the document id is the pipeline's own; by id, the id names the workload.
        let id = if by_fields { "ped-4711" } else { "team-a--payments-api" };
        put(project, id, fields(4)).await;
        // No stream: only the re-read can see the raised limit.
        let server = snapshot_webhook(project, 3600, "    listen: false\n").await;
        let denied = server.review(fixture("deployment-patch-4-to-7.json")).await;
        assert_eq!(denied["allowed"], false, "{project}: {denied}");
        assert_eq!(denied["auditAnnotations"]["registry-reread"], "confirmed", "{project}");
        put(project, id, fields(8)).await;
        let started = Instant::now();
        let allowed = server.review(fixture("deployment-patch-4-to-7.json")).await;
        eprintln!("{project}: a denial's re-read took {:.0} ms", started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(allowed["allowed"], true, "{project}: {allowed}");
        assert_eq!(allowed["auditAnnotations"]["registry-reread"], "changed", "{project}");
        assert_eq!(allowed["auditAnnotations"]["max-replicas"], "8", "{project}");
        server.shutdown().await;
    }
}

/// The PED pipeline raises payments-api's limit in Firestore and lowers it again, twenty times;
/// the snapshot is not due for an hour and the denial's re-read is off: only the Listen stream can
/// tell the webhook. Each change is honoured within seconds, and the records name the revision.
#[tokio::test]
#[ignore = "needs Firestore's emulator; .ci/run runs it"]
async fn the_listener_brings_a_changed_limit_to_the_webhook_within_seconds() {
    let project = "listen";
    put(project, "team-a--payments-api", limit(4)).await;
    put(project, "team-a--orders-api", limit(4)).await;
    let server = snapshot_webhook(project, 3600, "  cache: {rereadTimeoutSeconds: 0}\n").await;
    assert_eq!(allowed(&server, "deployment-patch-4-to-7.json").await, false);
    let mut took = vec![];
    for round in 0..20 {
        let raise = round % 2 == 0;
        put(project, "team-a--payments-api", limit(if raise { 8 } else { 4 })).await;
        took.push(until_answer(&server, "deployment-patch-4-to-7.json", raise, Duration::from_secs(10)).await);
    }
    took.sort();
    eprintln!(
        "listener: write to webhook answer over {} changes: p50 {:.0} ms, max {:.0} ms",
        took.len(),
        took[took.len() / 2].as_secs_f64() * 1000.0,
        took[took.len() - 1].as_secs_f64() * 1000.0
    );
    // A document added and one deleted arrive the same way.
    delete(project, "team-a--orders-api").await;
    put(project, "team-a--_default", limit(2)).await;
    let started = Instant::now();
    while server.metric("replica_guard_registry_entries").await != 2.0 {
        assert!(started.elapsed() < Duration::from_secs(10), "the deletion and the new default did not arrive");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Provenance: the answer and the decision record name the revision (Firestore's read time).
    let denied = server.review(fixture("deployment-patch-4-to-7.json")).await;
    let revision = denied["auditAnnotations"]["registry-revision"].as_str().unwrap_or_default().to_string();
    assert!(revision.starts_with("firestore@20"), "{denied}");
    let records = server.audit_records();
    let last = records.last().expect("a decision record");
    assert_eq!(last["registryRevision"], revision.as_str(), "{last}");
    let age = server.metric("replica_guard_registry_revision_age_seconds").await;
    assert!((0.0..60.0).contains(&age), "the revision's age: {age}");
    assert_eq!(server.admin_get("/readyz").await.0, 200);
    // On the way out the stream is closed (its request side first, then Firestore ends it), not
    // left to the grace period: every part finishes, in far less than it.
    let started = Instant::now();
    let unfinished = server.shutdown().await;
    assert!(unfinished.is_empty(), "every part finished: {unfinished:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "closed in {:?}", started.elapsed());
    eprintln!(
        "listener: the process drained, its stream closed, in {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
}

/// Firestore goes away and comes back (a new emulator on the same port, its data written again by
/// the pipeline): the stream reconnects on its own, past its old resume token, and the raised
/// limit arrives without waiting for the hourly sync.
#[tokio::test]
#[ignore = "needs Firestore's emulator; .ci/run runs it"]
async fn the_listener_reconnects_after_firestore_comes_back() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = std::env::temp_dir().join(format!("replica-guard-firestore-emulator-{port}.log"));
    let start = move || Emulator::start([127, 0, 0, 1].into(), port, None, &log).unwrap_or_else(|e| panic!("{e}"));
    let first = start();
    assert_eq!(first.put("comeback", "ped", "team-a--payments-api", &limit(4)), 200);
    let section = format!(
        "  firestore:\n    project: comeback\n    collection: ped\n    url: {}\n    refreshSeconds: 3600\n  cache: {{rereadTimeoutSeconds: 0}}\n",
        first.url()
    );
    let server = TestServer::start_full("mode: enforce", "", "", &section, None).await;
    synced(&server).await;
    assert_eq!(allowed(&server, "deployment-patch-4-to-7.json").await, false);
    drop(first);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = tokio::task::spawn_blocking(start).await.unwrap();
    assert_eq!(second.put("comeback", "ped", "team-a--payments-api", &limit(8)), 200);
    let took = until_answer(&server, "deployment-patch-4-to-7.json", true, Duration::from_secs(60)).await;
    eprintln!("the listener brought the raised limit {:.1} s after Firestore came back", took.as_secs_f64());
    server.shutdown().await;
}
