//! What the re-read before a denial costs (`registry.cache.rereadTimeoutSeconds`): the webhook on
//! a Firestore snapshot of Firestore's own emulator (the sync and the stream idle, so only the
//! re-read talks to Firestore), answering the same allowed and denied reviews with the re-read on
//! (the default, 1 s) and off (0). An allowed review never re-reads, so its cost must not move; a
//! denial pays one `runQuery` (by fields; the document id read after it when the query finds
//! nothing). Medians and p99 of `ROUNDS` reviews each, over one TLS connection (HTTP/1.1, as the
//! API server sends them); prints one JSON line.
//!
//! `cargo bench --bench reread [-- ROUNDS]` (needs the emulator: Debian's
//! google-cloud-cli-firestore-emulator and a Java runtime).

#[path = "../tests/common/mod.rs"]
mod common;

use common::emulator::{Emulator, entry};
use common::{Protocol, TestServer, fixture};
use std::time::{Duration, Instant};

const PROJECT: &str = "bench-reread";

fn main() {
    let rounds: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(300);
    let log = std::env::temp_dir().join("replica-guard-bench-reread-emulator.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let emulator = Emulator::start([127, 0, 0, 1].into(), port, None, &log).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(emulator.put(PROJECT, "ped", "team-a--payments-api", &entry(4, Some("payments-team@example.com"))), 200);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut out = serde_json::json!({"rounds": rounds});
    runtime.block_on(async {
        for (name, reread) in [("reread_on", 1.0), ("reread_off", 0.0)] {
            let section = format!(
                "  firestore: {{project: {PROJECT}, collection: ped, url: '{}', refreshSeconds: 3600, listen: false}}\n  cache: {{rereadTimeoutSeconds: {reread}}}\n",
                emulator.url()
            );
            let server = TestServer::start_full("mode: enforce", "", "", &section, None).await;
            let started = Instant::now();
            while server.admin_get("/readyz").await.0 != 200 {
                assert!(started.elapsed() < Duration::from_secs(30), "no first sync");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let mut client = server.client(Protocol::Http1).await;
            for (kind, body, want) in [
                ("allowed", fixture("deployment-server-side-apply-3-to-4-and-image.json"), true),
                ("denied", fixture("deployment-patch-4-to-7.json"), false),
            ] {
                let mut samples = Vec::with_capacity(rounds);
                for i in 0..rounds + 20 {
                    let started = Instant::now();
                    let answer = client.review(body.clone()).await;
                    let took = started.elapsed().as_secs_f64() * 1000.0;
                    assert_eq!(answer["allowed"], want, "{kind}: {answer}");
                    if i >= 20 {
                        samples.push(took);
                    }
                }
                samples.sort_by(f64::total_cmp);
                let pick = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
                out[format!("{kind}_{name}_ms")] = serde_json::json!({"p50": pick(0.5), "p99": pick(0.99)});
            }
            server.shutdown().await;
        }
    });
    for kind in ["allowed", "denied"] {
        let ratio = out[format!("{kind}_reread_on_ms")]["p50"].as_f64().unwrap()
            / out[format!("{kind}_reread_off_ms")]["p50"].as_f64().unwrap();
        out[format!("{kind}_p50_ratio_on_to_off")] = serde_json::json!((ratio * 100.0).round() / 100.0);
    }
    println!("{out}");
}
