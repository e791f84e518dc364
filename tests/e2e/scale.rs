//! The audit at scale: 10,000 Deployments (20 namespaces of 500) in the API server, then how long
//! one `replica-guard audit` takes and how much memory `replica-guard watch` holds after its
//! first pass. A benchmark, not a test: `bash tests/e2e/run.sh --bench-scale [DEPLOYMENTS]`.

use crate::cluster::Cluster;
use crate::webhook::deployment;
use std::io::BufRead;
use std::time::{Duration, Instant};

pub fn run(c: &Cluster, total: usize) {
    let bin = std::env::var("REPLICA_GUARD_BIN").expect("REPLICA_GUARD_BIN: the release binary (run.sh sets it)");
    let per_namespace = 500;
    let namespaces = total.div_ceil(per_namespace);
    let created = Instant::now();
    let mut registry = String::from("entries:\n");
    for n in 0..namespaces {
        let ns = format!("scale-{n}");
        c.kubectl("admin", &["create", "namespace", &ns]).success();
        let count = per_namespace.min(total - n * per_namespace);
        let manifests: Vec<String> =
            (0..count).map(|i| deployment(&ns, &format!("app-{i}"), 2 + (i % 4) as i32, "nginx:1")).collect();
        c.apply("admin", &manifests.join("---\n"), &[]).success();
        registry.push_str(&format!("  - {{namespace: {ns}, maxReplicas: 4}}\n"));
    }
    eprintln!("scale: {total} Deployments created in {:.0} s", created.elapsed().as_secs_f64());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("limits.yaml"), &registry).unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "server: {adminAddress: '127.0.0.1:0'}\nregistry: {file: {path: limits.yaml}}\naudit: {intervalSeconds: 1, usage: {enabled: true, state: {namespace: default, name: scale-usage}}}\npricing: {base: 180, perVcpu: 19, perGib: 19, divisor: 4}\nlogging: {format: json}\n").unwrap();

    let mut audit_seconds = vec![];
    for _ in 0..3 {
        let t = Instant::now();
        let out = std::process::Command::new(&bin)
            .args(["audit", "--config"])
            .arg(&config)
            .args(["-o", "json"])
            .env("KUBECONFIG", &c.kubeconfig)
            .output()
            .unwrap();
        audit_seconds.push(t.elapsed().as_secs_f64());
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            report["summary"]["workloads"].as_u64(),
            Some(total as u64),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    audit_seconds.sort_by(f64::total_cmp);

    let mut child = std::process::Command::new(&bin)
        .args(["watch", "--config"])
        .arg(&config)
        .env("KUBECONFIG", &c.kubeconfig)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let admin: std::net::SocketAddr = loop {
        let line = lines.next().expect("watch exited").unwrap();
        let record: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if record["message"] == "replica-guard audit is watching the cluster" {
            break record["admin_address"].as_str().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
    let started = Instant::now();
    while !crate::webhook::http_get(admin, "/readyz").starts_with("HTTP/1.1 200") {
        assert!(started.elapsed() < Duration::from_secs(300), "watch never ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let first_pass = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(5));
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let kib = |field: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.trim_start_matches(':').trim().strip_suffix(" kB")?.parse().ok())
            .unwrap_or(0)
    };
    let (rss, hwm) = (kib("VmRSS"), kib("VmHWM"));
    // The usage records' day, saved after the first pass: how much of a ConfigMap's 1 MiB it takes.
    let state = c.kubectl("admin", &["get", "configmap", "scale-usage", "-n", "default", "-o", "json"]).success();
    let state: serde_json::Value = serde_json::from_str(&state.stdout).unwrap();
    let state_bytes = state["data"]["workloads"].as_str().map_or(0, str::len);
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "{}",
        serde_json::json!({
            "deployments": total,
            "audit_seconds": {"median": audit_seconds[1], "runs": audit_seconds},
            "watch_ready_seconds": first_pass,
            "watch_rss_mib": rss as f64 / 1024.0,
            "watch_peak_rss_mib": hwm as f64 / 1024.0,
            "usage_state_bytes": state_bytes,
        })
    );
}
