//! Load generator and baseline for BENCHMARKS.md (`benches/run.sh` drives it).
//!
//! - `floor`: the same TLS and HTTP stack as replica-guard (rustls, hyper, axum, the same accept
//!   loop), answering a fixed AdmissionReview after only parsing the body as JSON: what any
//!   webhook on this stack costs at least.
//! - `run`: drives a server over TLS with real fixture bodies, HTTP/1.1 keep-alive (what the API
//!   server uses) or HTTP/2, at a fixed rate (open loop: latency counts from the scheduled send,
//!   so a stalled server cannot hide its queue) or as fast as it answers (closed loop).
//! - `startup`: time from process start to `/readyz` 200.
//! - `registry`: writes a registry file with N entries.
//!
//! `cargo bench --bench loadgen -- <command> ...`

#[path = "../tests/common/mod.rs"]
mod common;

use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use clap::{Parser, Subcommand, ValueEnum};
use common::{Client, Protocol};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Proto {
    H1,
    H2,
}

#[derive(Subcommand)]
enum Command {
    Floor {
        #[arg(long)]
        address: SocketAddr,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
    Run {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long)]
        ca: PathBuf,
        #[arg(long, value_enum, default_value = "h1")]
        protocol: Proto,
        #[arg(long, default_value_t = 16)]
        connections: usize,
        /// Requests per second in total; 0 = as fast as the server answers.
        #[arg(long, default_value_t = 0)]
        rate: u64,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        #[arg(long, default_value_t = 2.0)]
        warmup_seconds: f64,
        /// A label printed with the result.
        #[arg(long, default_value = "")]
        label: String,
        /// The request path (a peer webhook may serve another one, e.g. `/mutate`).
        #[arg(long, default_value = "/validate?timeout=10s")]
        path: String,
    },
    Startup {
        #[arg(long)]
        bin: PathBuf,
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        admin: SocketAddr,
    },
    Registry {
        #[arg(long)]
        entries: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// A Firestore listing or a BigQuery query of N registry entries (for `benches/snapshot.sh`).
    SnapshotFake {
        /// firestore or bigquery.
        #[arg(long)]
        kind: String,
        #[arg(long)]
        entries: usize,
        #[arg(long)]
        address: SocketAddr,
    },
    /// replica-guard's own share, in process: `Webhook::review` per fixture (decode, decision,
    /// response, audit record to /dev/null), against a plain JSON parse of the same body.
    Cost {
        #[arg(long, default_value_t = 20_000)]
        iterations: u32,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
    /// The hostile bodies: UPDATEs at `maxBodyBytes` built to be expensive (many labels,
    /// annotations, containers, env, volumes, long arrays, deep objects), each reviewed `rounds`
    /// times; prints the slowest review's CPU time (thread CPU, getrusage) per body.
    Worst {
        #[arg(long, default_value_t = 3 * 1024 * 1024)]
        max_body_bytes: usize,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Only the bodies whose name contains this (to profile one).
        #[arg(long, default_value = "")]
        only: String,
    },
}

fn main() {
    // `cargo bench` passes `--bench`; it is not ours.
    let args = std::env::args().filter(|a| a != "--bench");
    let cli = Cli::parse_from(args);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    match cli.command {
        Command::Floor { address, cert, key } => runtime.block_on(floor(address, cert, key)),
        Command::Run { target, ca, protocol, connections, rate, seconds, warmup_seconds, label, path } => {
            let ca = std::fs::read_to_string(ca).unwrap();
            let protocol = match protocol {
                Proto::H1 => Protocol::Http1,
                Proto::H2 => Protocol::Http2,
            };
            let settings = Settings { target, ca, protocol, connections, rate, seconds, warmup_seconds, path };
            let result = runtime.block_on(run(&settings));
            println!("{}", result.json(&label, &settings));
        }
        Command::Startup { bin, config, admin } => runtime.block_on(startup(bin, config, admin)),
        Command::Registry { entries, out } => registry(entries, out),
        Command::SnapshotFake { kind, entries, address } => {
            runtime.block_on(snapshot_fakes::serve(&kind, entries, address))
        }
        Command::Cost { iterations, rounds } => cost(iterations, rounds),
        Command::Worst { max_body_bytes, rounds, only } => worst::run(max_body_bytes, rounds, &only),
    }
}

/// The floor: parse the body as JSON, answer a fixed review (allowed) carrying the request's uid,
/// which a kube-apiserver checks: what any webhook must do at least. The end-to-end latency
/// benchmark registers it with the API server beside replica-guard (`tests/e2e/latency.rs`).
async fn floor(address: SocketAddr, cert: PathBuf, key: PathBuf) {
    async fn validate(body: Bytes) -> axum::response::Response {
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(review) => {
                let uid = review["request"]["uid"].as_str().unwrap_or_default();
                let answer = serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                    "response": {"uid": uid, "allowed": true, "status": {}}});
                ([(header::CONTENT_TYPE, "application/json")], answer.to_string()).into_response()
            }
            Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        }
    }
    let key = replica_guard::server::tls::load_certified_key(&cert, &key).unwrap();
    let tls =
        replica_guard::server::tls::server_config(Arc::new(replica_guard::server::tls::CertStore::new(key)), None);
    let app = Router::new().route("/validate", post(validate));
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    eprintln!("floor serving on {address}");
    let limits = replica_guard::server::connections::Bounds::default();
    let metrics =
        replica_guard::metrics::Metrics::new().server.connections(replica_guard::metrics::Listener::Admission);
    let tls = Some(replica_guard::server::connections::Tls::for_anyone(tls));
    replica_guard::server::connections::serve(listener, tls, app, stop_rx, limits, metrics).await;
}

struct Settings {
    target: SocketAddr,
    ca: String,
    protocol: Protocol,
    connections: usize,
    rate: u64,
    seconds: f64,
    warmup_seconds: f64,
    path: String,
}

/// The request mix: small create, large redeploy (old and new objects), scale, HPA.
fn bodies() -> Vec<Bytes> {
    [
        "deployment-create-replicas-3.json",
        "deployment-redeploy-replicas-3-to-6-and-image.json",
        "scale-6-to-9.json",
        "hpa-apply-create-max-12.json",
    ]
    .iter()
    .map(|f| Bytes::from(common::fixture(f)))
    .collect()
}

#[derive(Default)]
struct Outcome {
    latencies_us: Vec<u64>,
    errors: u64,
    non_200: u64,
}

struct RunResult {
    outcome: Outcome,
    elapsed: Duration,
}

async fn run(s: &Settings) -> RunResult {
    let bodies = Arc::new(bodies());
    let warmup = Duration::from_secs_f64(s.warmup_seconds);
    let measure = Duration::from_secs_f64(s.seconds);
    let start = Instant::now() + Duration::from_millis(200);
    let (measure_from, measure_until) = (start + warmup, start + warmup + measure);
    let mut tasks = vec![];
    for c in 0..s.connections {
        let mut client = Client::connect(s.target, &s.ca, s.protocol).await;
        let bodies = bodies.clone();
        let path = s.path.clone();
        // Open loop: this connection's share of the rate, its sends spread over the interval.
        let interval = (s.rate > 0).then(|| Duration::from_secs_f64(s.connections as f64 / s.rate as f64));
        // Connection c's first send is c/connections into the first interval, so sends are spread out.
        let offset = interval.map_or(Duration::ZERO, |i| i.mul_f64(c as f64 / s.connections as f64));
        tasks.push(tokio::spawn(async move {
            let mut outcome = Outcome::default();
            let mut next = start + offset;
            let mut i = c;
            loop {
                // Latency counts from the scheduled send when the client is behind schedule (the
                // server's queue), and from the actual send otherwise: tokio's timer wakes up to
                // a millisecond late, and that delay is the client's, not the server's.
                let sent = match interval {
                    Some(_) if Instant::now() < next => {
                        tokio::time::sleep_until(next.into()).await;
                        Instant::now()
                    }
                    Some(_) => next,
                    None => {
                        next = Instant::now();
                        next
                    }
                };
                if next >= measure_until {
                    break;
                }
                let status = client.send_to(&path, bodies[i % bodies.len()].clone()).await;
                let latency = sent.elapsed();
                if next >= measure_from {
                    match status {
                        Ok(200) => outcome.latencies_us.push(latency.as_micros() as u64),
                        Ok(_) => outcome.non_200 += 1,
                        Err(_) => outcome.errors += 1,
                    }
                }
                i += 1;
                if let Some(interval) = interval {
                    next += interval;
                }
            }
            outcome
        }));
    }
    let mut outcome = Outcome::default();
    for task in tasks {
        let o = task.await.unwrap();
        outcome.latencies_us.extend(o.latencies_us);
        outcome.errors += o.errors;
        outcome.non_200 += o.non_200;
    }
    outcome.latencies_us.sort_unstable();
    RunResult { outcome, elapsed: measure }
}

impl RunResult {
    fn json(&self, label: &str, s: &Settings) -> String {
        let l = &self.outcome.latencies_us;
        let pct = |p: f64| if l.is_empty() { 0 } else { l[((l.len() as f64 * p) as usize).min(l.len() - 1)] };
        serde_json::json!({
            "label": label,
            "protocol": match s.protocol { Protocol::Http1 => "h1", Protocol::Http2 => "h2" },
            "connections": s.connections,
            "rate": s.rate,
            "requests": l.len(),
            "throughput_rps": l.len() as f64 / self.elapsed.as_secs_f64(),
            "p50_us": pct(0.50), "p90_us": pct(0.90), "p99_us": pct(0.99), "max_us": l.last().copied().unwrap_or(0),
            "errors": self.outcome.errors, "non_200": self.outcome.non_200,
        })
        .to_string()
    }
}

async fn startup(bin: PathBuf, config: PathBuf, admin: SocketAddr) {
    let started = Instant::now();
    let mut child = std::process::Command::new(bin)
        .args(["serve", "--config"])
        .arg(config)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let ready = loop {
        if started.elapsed() > Duration::from_secs(60) {
            break None;
        }
        if let Ok(mut tcp) = tokio::net::TcpStream::connect(admin).await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut response = String::new();
            if tcp.write_all(url.as_bytes()).await.is_ok()
                && tcp.read_to_string(&mut response).await.is_ok()
                && response.starts_with("HTTP/1.1 200")
            {
                break Some(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    println!("{}", serde_json::json!({"startup_ms": ready.map(|d| d.as_secs_f64() * 1000.0)}));
}

/// N entries in a few hundred namespaces, plus the fixtures' two workloads at maxReplicas 4.
fn registry(entries: usize, out: PathBuf) {
    use std::fmt::Write;
    let mut text = String::from("entries:\n");
    text.push_str("  - {namespace: team-a, deployment: payments-api, maxReplicas: 4}\n");
    text.push_str("  - {namespace: team-a, deployment: orders-api, maxReplicas: 4}\n");
    for i in 0..entries.saturating_sub(2) {
        let _ = writeln!(
            text,
            "  - {{namespace: team-{}, deployment: api-{i}, maxReplicas: {}, owner: team-{}@example.com}}",
            i % 500,
            2 + i % 7,
            i % 500
        );
    }
    std::fs::write(out, text).unwrap();
}

/// A webhook on the example registry with the default policy, writing audit records to
/// /dev/null: what `cost` and `worst` measure.
fn in_process_webhook() -> replica_guard::webhook::Webhook {
    use replica_guard::limits::store::{Revision, SnapshotStore, apply_document};
    use replica_guard::metrics::SourceKind;
    let metrics = Arc::new(replica_guard::metrics::Metrics::new());
    let policy = replica_guard::decision::policy::Policy::default();
    let store = Arc::new(SnapshotStore::new(SourceKind::File, &metrics));
    apply_document(
        common::REGISTRY,
        Revision::digest(common::REGISTRY),
        SourceKind::File,
        &store,
        &metrics,
        &policy.platform_bounds,
        200_000,
    )
    .unwrap();
    let devnull = std::fs::OpenOptions::new().write(true).open("/dev/null").unwrap();
    let audit = replica_guard::json_lines::JsonLines::to(Box::new(devnull));
    replica_guard::webhook::Webhook::new(policy, store, metrics, audit)
}

mod snapshot_fakes;
mod worst;

fn cost(iterations: u32, rounds: usize) {
    let webhook = in_process_webhook();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let median_us = |f: &mut dyn FnMut()| {
        let mut per_call: Vec<f64> = (0..rounds)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..iterations {
                    f();
                }
                t.elapsed().as_secs_f64() * 1e6 / f64::from(iterations)
            })
            .collect();
        per_call.sort_by(f64::total_cmp);
        per_call[per_call.len() / 2]
    };
    for name in [
        "deployment-create-replicas-3.json",
        "deployment-redeploy-replicas-3-to-6-and-image.json",
        "scale-6-to-9.json",
        "hpa-apply-create-max-12.json",
    ] {
        let body = common::fixture(name);
        let review = median_us(&mut || {
            runtime.block_on(webhook.review(&body)).unwrap();
        });
        let parse = median_us(&mut || {
            serde_json::from_slice::<serde_json::Value>(&body).unwrap();
        });
        println!(
            "{}",
            serde_json::json!({"fixture": name, "bytes": body.len(), "review_us": review, "json_parse_us": parse, "ratio": review / parse})
        );
    }
}
