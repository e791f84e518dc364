//! What replica-guard adds to a write at the API server: Deployment patches over one kept-alive
//! connection with the admin certificate, in rounds that alternate "no webhook" and
//! "replica-guard registered" (the release binary on 127.0.0.1), so that the machine's noise hits
//! both alike. A benchmark, not a test: `bash tests/e2e/run.sh --bench-latency [ROUNDS] [WRITES]`.

use crate::cluster::Cluster;
use crate::common::ServeProcess;
use crate::webhook::{configuration, deployment, registry};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use std::time::{Duration, Instant};

pub fn run(c: &Cluster, rounds: usize, writes: usize) {
    let ns = "bench-latency";
    c.namespace(ns);
    c.apply("admin", &deployment(ns, "payments-api", 2, "nginx:1"), &[]).success();
    let bin = std::env::var("REPLICA_GUARD_BIN").expect("REPLICA_GUARD_BIN: the release binary (run.sh sets it)");
    let dir = tempfile::tempdir().unwrap();
    let config = crate::common::write_serve_config_with(dir.path(), "", "mode: enforce", &registry(ns, 4));
    let process = ServeProcess::start_binary(&bin, dir, &config, &[]);
    let webhook =
        configuration("rg-bench", ns, &format!("https://{}/validate", process.https), &process.ca_pem, "Fail");

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let api: kube::Api<Deployment> = runtime.block_on(async {
        let kubeconfig = kube::config::Kubeconfig::read_from(&c.kubeconfig).unwrap();
        let options = kube::config::KubeConfigOptions { context: Some("admin".into()), ..Default::default() };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.unwrap();
        kube::Api::namespaced(kube::Client::try_from(config).unwrap(), ns)
    });
    let mut samples: [Vec<f64>; 2] = [vec![], vec![]];
    for round in 0..rounds * 2 {
        let with_webhook = round % 2 == 1;
        if with_webhook {
            c.apply("admin", &webhook, &[]).success();
        } else {
            let _ = c.kubectl("admin", &["delete", "validatingwebhookconfiguration", "rg-bench", "--ignore-not-found"]);
        }
        // Let the API server's webhook configuration informer catch up, then warm the connection.
        std::thread::sleep(Duration::from_secs(2));
        runtime.block_on(async {
            for i in 0..writes + 20 {
                let patch = serde_json::json!({"spec": {"replicas": 2 + i % 2}});
                let started = Instant::now();
                api.patch("payments-api", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
                if i >= 20 {
                    samples[usize::from(with_webhook)].push(started.elapsed().as_secs_f64() * 1000.0);
                }
            }
        });
    }
    let _ = c.kubectl("admin", &["delete", "validatingwebhookconfiguration", "rg-bench"]);
    let calls = process_calls(&process);
    let [none, with] = samples.map(|mut s| {
        s.sort_by(f64::total_cmp);
        s
    });
    let pick = |s: &[f64], q: f64| s[((s.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{}",
        serde_json::json!({
            "rounds_each": rounds, "writes_per_round": writes, "webhook_calls": calls,
            "no_webhook_ms": {"p50": pick(&none, 0.5), "p99": pick(&none, 0.99)},
            "replica_guard_ms": {"p50": pick(&with, 0.5), "p99": pick(&with, 0.99)},
            "added_ms": {"p50": pick(&with, 0.5) - pick(&none, 0.5), "p99": pick(&with, 0.99) - pick(&none, 0.99)},
        })
    );
}

/// How many admission requests the webhook answered (to show the rounds really went through it).
fn process_calls(process: &ServeProcess) -> f64 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(process.admin).unwrap();
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text.lines()
        .filter(|l| l.starts_with("replica_guard_admission_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
