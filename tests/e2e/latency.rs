//! What replica-guard adds to a write at the API server: Deployment patches over one kept-alive
//! connection with the admin certificate, in rounds that rotate through "no admission", "the
//! backstop policy alone" (the chart's ValidatingAdmissionPolicy, binding and parameters),
//! "replica-guard registered" (the release binary on 127.0.0.1) and "both", so that the machine's
//! noise hits all alike. A benchmark, not a test:
//! `bash tests/e2e/run.sh --bench-latency [ROUNDS] [WRITES]`.

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
    // The backstop as the chart renders it, with the parameters `watch` would write.
    let rendered = crate::pods::render_chart(c, "rg-bench-backstop", "audit: {enabled: true}\n");
    c.apply_kinds(&rendered, &["CustomResourceDefinition", "ValidatingAdmissionPolicy"]);
    c.kubectl(
        "admin",
        &["wait", "--for=condition=Established", "crd/backstoplimits.replica-guard.io", "--timeout=30s"],
    )
    .success();
    let parameters = format!(
        "apiVersion: replica-guard.io/v1\nkind: BackstopLimits\nmetadata: {{name: replica-guard, namespace: {ns}}}\nspec: {{enforced: {{payments-api: 4}}}}\n"
    );
    c.apply("admin", &parameters, &[]).success();
    let binding = rendered.objects.iter().find(|o| o["kind"] == "ValidatingAdmissionPolicyBinding").unwrap();
    let binding = serde_yaml_ng::to_string(binding).unwrap();
    let binding_name = "rg-replica-guard-backstop";
    const MODES: [&str; 4] = ["no_admission", "backstop_alone", "webhook_alone", "backstop_and_webhook"];
    let mut samples: [Vec<f64>; 4] = Default::default();
    for round in 0..rounds * 4 {
        let mode = round % 4;
        let (with_backstop, with_webhook) = (mode == 1 || mode == 3, mode >= 2);
        if with_webhook {
            c.apply("admin", &webhook, &[]).success();
        } else {
            let _ = c.kubectl("admin", &["delete", "validatingwebhookconfiguration", "rg-bench", "--ignore-not-found"]);
        }
        if with_backstop {
            c.apply("admin", &binding, &[]).success();
        } else {
            let _ =
                c.kubectl("admin", &["delete", "validatingadmissionpolicybinding", binding_name, "--ignore-not-found"]);
        }
        // Let the API server's webhook configuration informer catch up, then warm the connection.
        std::thread::sleep(Duration::from_secs(2));
        runtime.block_on(async {
            for i in 0..writes + 20 {
                let patch = serde_json::json!({"spec": {"replicas": 2 + i % 2}});
                let started = Instant::now();
                api.patch("payments-api", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
                if i >= 20 {
                    samples[mode].push(started.elapsed().as_secs_f64() * 1000.0);
                }
            }
        });
    }
    let _ = c.kubectl("admin", &["delete", "validatingwebhookconfiguration", "rg-bench"]);
    let _ = c.kubectl("admin", &["delete", "validatingadmissionpolicybinding", binding_name, "--ignore-not-found"]);
    let calls = process_calls(&process);
    let sorted = samples.map(|mut s| {
        s.sort_by(f64::total_cmp);
        s
    });
    let pick = |s: &[f64], q: f64| s[((s.len() as f64 - 1.0) * q).round() as usize];
    let mut out = serde_json::json!({"rounds_each": rounds, "writes_per_round": writes, "webhook_calls": calls});
    for (mode, s) in MODES.iter().zip(&sorted) {
        out[format!("{mode}_ms")] = serde_json::json!({"p50": pick(s, 0.5), "p99": pick(s, 0.99)});
    }
    for (mode, s) in MODES.iter().zip(&sorted).skip(1) {
        out[format!("{mode}_added_ms")] = serde_json::json!({
            "p50": pick(s, 0.5) - pick(&sorted[0], 0.5), "p99": pick(s, 0.99) - pick(&sorted[0], 0.99)
        });
    }
    println!("{out}");
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
