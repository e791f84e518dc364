//! `replica-guard check` on 10,000 manifests in one multi-document stream, as a pipeline runs it
//! (`helm template … | replica-guard check --config … -`): the whole process, wall time, median
//! of ROUNDS runs. Baselines measured in the same run: the same command on a one-manifest stream
//! (process start, config, registry), and a plain YAML parse of the stream in this process
//! (what reading the input costs at the least).
//!
//! `cargo bench --bench check -- [MANIFESTS] [ROUNDS]` (defaults 10000 and 7).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

/// One `helm template`-like workload: a Deployment, its HPA and a Service (three documents).
fn workload(i: usize) -> String {
    format!(
        r#"---
# Source: app/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api-{i}
  labels: {{app: api-{i}, release: app, helm.sh/chart: app-1.0.0}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: api-{i}}}}}
  template:
    metadata: {{labels: {{app: api-{i}}}}}
    spec:
      containers:
      - name: api
        image: "registry.example/api-{i}:1.4.0"
        ports: [{{containerPort: 8080}}]
        env: [{{name: LOG_LEVEL, value: info}}, {{name: REGION, value: eu-west-1}}]
        resources: {{requests: {{cpu: "2", memory: 4Gi}}, limits: {{memory: 4Gi}}}}
---
# Source: app/templates/hpa.yaml
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {{name: api-{i}}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: api-{i}}}
  minReplicas: 2
  maxReplicas: {hpa_max}
  metrics: [{{type: Resource, resource: {{name: cpu, target: {{type: Utilization, averageUtilization: 70}}}}}}]
---
# Source: app/templates/service.yaml
apiVersion: v1
kind: Service
metadata: {{name: api-{i}}}
spec: {{selector: {{app: api-{i}}}, ports: [{{port: 80, targetPort: 8080, protocol: TCP}}]}}
"#,
        replicas = 2 + i % 4,
        hpa_max = 3 + i % 4,
    )
}

fn stream(manifests: usize) -> String {
    (0..manifests.div_ceil(3)).map(workload).collect()
}

fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

/// Seconds of one `replica-guard check` over `input`, and its exit code.
fn run_check(config: &std::path::Path, input: &str) -> (f64, Option<i32>) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_replica-guard"))
        .args(["check", "-n", "team-a", "-o", "json", "--config"])
        .arg(config)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let status = child.wait().unwrap();
    (started.elapsed().as_secs_f64(), status.code())
}

fn main() {
    let numbers: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let manifests = numbers.first().copied().unwrap_or(10_000);
    let rounds = numbers.get(1).copied().unwrap_or(7).max(1);
    let dir = tempfile::tempdir().unwrap();
    // Every other workload registered (max 4); the rest unregistered (a warning each).
    let entries: String = (0..manifests.div_ceil(3))
        .step_by(2)
        .map(|i| format!("  - {{namespace: team-a, deployment: api-{i}, maxReplicas: 4}}\n"))
        .collect();
    std::fs::write(dir.path().join("limits.yaml"), format!("entries:\n{entries}")).unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "registry: {file: {path: limits.yaml}}\n").unwrap();
    let input = stream(manifests);
    let one = stream(1);

    let mut whole = vec![];
    let mut single = vec![];
    let mut parse_only = vec![];
    let mut code = None;
    for _ in 0..rounds {
        let (seconds, exit) = run_check(&config, &input);
        whole.push(seconds);
        code = exit;
        single.push(run_check(&config, &one).0);
        let started = Instant::now();
        let mut docs = 0;
        for document in serde_yaml_ng::Deserializer::from_str(&input) {
            let value = <serde_json::Value as serde::Deserialize>::deserialize(document).unwrap();
            docs += usize::from(!value.is_null());
        }
        parse_only.push(started.elapsed().as_secs_f64());
        assert_eq!(docs, manifests.div_ceil(3) * 3);
    }
    let (whole, single, parse_only) = (median(whole), median(single), median(parse_only));
    println!(
        "{}",
        serde_json::json!({
            "manifests": manifests.div_ceil(3) * 3,
            "input_bytes": input.len(),
            "rounds": rounds,
            "exit_code": code,
            "check_seconds_median": whole,
            "one_manifest_seconds_median": single,
            "yaml_parse_only_seconds_median": parse_only,
            "check_over_yaml_parse": whole / parse_only,
            "per_manifest_microseconds": (whole - single) / manifests as f64 * 1e6,
        })
    );
}
