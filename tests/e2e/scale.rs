//! The platform at scale, against the real API server: DEPLOYMENTS Deployments (namespaces of
//! 500) and a registry of twice as many entries (one per Deployment, as many for Deployments
//! that are gone). Measures what each part costs: `replica-guard audit` and `check --cluster`
//! (whole process: wall time and peak RSS), the webhook's registry gauges (`serve`: RSS and a
//! /metrics scrape), and the continuous audit with usage records (`watch`: RSS, pass time, the
//! sharded usage day: shards, bytes, bytes written by the first save and by a pass in which 100
//! Deployments scaled), then a restart across midnight: every Deployment's line of the day
//! before, the scaled ones with their high. A benchmark, not a test:
//! `bash tests/e2e/run.sh --bench-scale [DEPLOYMENTS]` (prints one JSON line).

use crate::cluster::Cluster;
use crate::webhook::deployment;
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PER_NAMESPACE: usize = 500;
const SCALED: usize = 100;

/// (wall seconds, peak RSS MiB) of one run of the binary, through `/usr/bin/time`.
fn measured(bin: &str, args: &[&str], c: &Cluster, stdin: Option<&Path>) -> (f64, f64, std::process::Output) {
    let times = tempfile::NamedTempFile::new().unwrap();
    let mut command = Command::new("/usr/bin/time");
    command.args(["-f", "%e %M", "-o"]).arg(times.path()).arg(bin).args(args).env("KUBECONFIG", &c.kubeconfig);
    if let Some(file) = stdin {
        command.stdin(std::fs::File::open(file).unwrap());
    }
    let out = command.output().expect("/usr/bin/time runs");
    let text = std::fs::read_to_string(times.path()).unwrap();
    let last = text.lines().last().unwrap_or_default().to_string();
    let mut fields = last.split_whitespace();
    let seconds = fields.next().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
    let kib: f64 = fields.next().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
    (seconds, kib / 1024.0, out)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |field: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.trim_start_matches(':').trim().strip_suffix(" kB")?.parse().ok())
            .unwrap_or(0.0)
    };
    (kib("VmRSS") / 1024.0, kib("VmHWM") / 1024.0)
}

/// A long-running command of the binary, its stdout lines on a channel; killed when dropped.
struct Process {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<serde_json::Value>,
}

impl Process {
    fn start(bin: &str, args: &[&str], c: &Cluster) -> Self {
        let mut child = Command::new(bin)
            .args(args)
            .env("KUBECONFIG", &c.kubeconfig)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in out.map_while(Result::ok) {
                let _ = send.send(serde_json::from_str(&line).unwrap_or_default());
            }
        });
        Self { child, lines }
    }

    /// The admin address its start message names.
    fn admin(&self, message: &str) -> std::net::SocketAddr {
        loop {
            let line = self.lines.recv_timeout(Duration::from_secs(120)).expect("never started");
            if line["message"] == message {
                return line["admin_address"].as_str().unwrap().parse().unwrap();
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_ready(admin: std::net::SocketAddr) -> f64 {
    let started = Instant::now();
    while !crate::webhook::http_get(admin, "/readyz").starts_with("HTTP/1.1 200") {
        assert!(started.elapsed() < Duration::from_secs(600), "never ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    started.elapsed().as_secs_f64()
}

fn metric(admin: std::net::SocketAddr, name: &str) -> f64 {
    let text = crate::webhook::http_get(admin, "/metrics");
    text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()).unwrap_or(0.0)
}

fn create(c: &Cluster, total: usize) -> (Vec<String>, f64) {
    let created = Instant::now();
    let namespaces: Vec<String> = (0..total.div_ceil(PER_NAMESPACE)).map(|n| format!("scale-{n}")).collect();
    // Four writers at once: the API server, not kubectl, is what this waits on.
    std::thread::scope(|s| {
        for chunk in namespaces.chunks(namespaces.len().div_ceil(4)) {
            s.spawn(move || {
                for ns in chunk {
                    let n: usize = ns.trim_start_matches("scale-").parse().unwrap();
                    c.kubectl("admin", &["create", "namespace", ns]).success();
                    let count = PER_NAMESPACE.min(total - n * PER_NAMESPACE);
                    let manifests: Vec<String> = (0..count)
                        .map(|i| deployment(ns, &format!("app-{i}"), 2 + (i % 4) as i32, "nginx:1"))
                        .collect();
                    c.apply("admin", &manifests.join("---\n"), &[]).success();
                }
            });
        }
    });
    (namespaces, created.elapsed().as_secs_f64())
}

pub fn run(c: &Cluster, total: usize) {
    let bin = std::env::var("REPLICA_GUARD_BIN").expect("REPLICA_GUARD_BIN: the release binary (run.sh sets it)");
    let (namespaces, create_seconds) = create(c, total);
    eprintln!("scale: {total} Deployments created in {create_seconds:.0} s");
    let dir = tempfile::tempdir().unwrap();
    let mut registry = String::from("entries:\n");
    let mut manifests = String::new();
    for (n, ns) in namespaces.iter().enumerate() {
        for i in 0..PER_NAMESPACE.min(total - n * PER_NAMESPACE) {
            registry
                .push_str(&format!("  - {{namespace: {ns}, deployment: app-{i}, maxReplicas: 4, owner: team-{n}}}\n"));
            registry
                .push_str(&format!("  - {{namespace: {ns}, deployment: gone-{i}, maxReplicas: 4, owner: team-{n}}}\n"));
            manifests.push_str(&deployment(ns, &format!("app-{i}"), 3, "nginx:1"));
            manifests.push_str("---\n");
        }
    }
    let entries = 2 * total;
    std::fs::write(dir.path().join("limits.yaml"), &registry).unwrap();
    let manifests_file = dir.path().join("manifests.yaml");
    std::fs::write(&manifests_file, &manifests).unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "cluster: {name: scale}\nserver: {address: '127.0.0.1:0', adminAddress: '127.0.0.1:0', tls: {certFile: tls.crt, keyFile: tls.key, generateDevCertificate: true}}\nregistry: {file: {path: limits.yaml}}\naudit: {intervalSeconds: 5, usage: {enabled: true, state: {namespace: default, name: scale-usage}}}\npricing: {base: 180, perVcpu: 19, perGib: 19, divisor: 4}\nlogging: {format: json}\n",
    )
    .unwrap();
    let config_arg = config.display().to_string();

    let mut audit = (vec![], vec![]);
    for _ in 0..3 {
        let (seconds, mib, out) = measured(&bin, &["audit", "--config", &config_arg, "-o", "json"], c, None);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        assert_eq!(
            report["summary"]["workloads"].as_u64(),
            Some(total as u64),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        audit.0.push(seconds);
        audit.1.push(mib);
    }
    let mut check = (vec![], vec![]);
    for _ in 0..3 {
        let args = ["check", "--config", &config_arg, "--cluster", "-o", "json", "-"];
        let (seconds, mib, out) = measured(&bin, &args, c, Some(&manifests_file));
        assert_eq!(
            out.status.code(),
            Some(0),
            "within their entries as updates: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        check.0.push(seconds);
        check.1.push(mib);
    }

    // The webhook's side: the registry's gauges with every entry.
    let serve = Process::start(&bin, &["serve", "--config", &config_arg], c);
    let serve_admin = serve.admin("replica-guard is serving");
    let serve_ready = wait_ready(serve_admin);
    let mut scrapes = vec![];
    let mut scrape_bytes = 0;
    for _ in 0..5 {
        let t = Instant::now();
        scrape_bytes = crate::webhook::http_get(serve_admin, "/metrics").len();
        scrapes.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (serve_rss, serve_peak) = rss_mib(serve.child.id());
    drop(serve);

    // The continuous audit with usage records.
    let watch_args = ["watch", "--config", &config_arg];
    let watch = Process::start(&bin, &watch_args, c);
    let admin = watch.admin("replica-guard audit is watching the cluster");
    let ready = wait_ready(admin);
    let saved = Instant::now();
    while metric(admin, "replica_guard_usage_state_shards") == 0.0 {
        assert!(saved.elapsed() < Duration::from_secs(120), "the day was never saved");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(11));
    let (watch_rss, watch_peak) = rss_mib(watch.child.id());
    let pass_seconds = metric(admin, "replica_guard_audit_pass_seconds");
    let shards = metric(admin, "replica_guard_usage_state_shards");
    let state_bytes = metric(admin, "replica_guard_usage_state_bytes");
    let first_bytes = metric(admin, "replica_guard_usage_state_written_bytes_total");
    let written = |r: &str| metric(admin, &format!("replica_guard_usage_state_writes_total{{result=\"{r}\"}}"));
    let first_writes = written("written");
    // Passes with nothing new write nothing; then 100 Deployments scale up (an incident).
    std::thread::sleep(Duration::from_secs(10));
    let idle_bytes = metric(admin, "replica_guard_usage_state_written_bytes_total") - first_bytes;
    let scaled: Vec<(String, String)> = (0..SCALED)
        .map(|k| (namespaces[k % namespaces.len()].clone(), format!("app-{}", k / namespaces.len())))
        .collect();
    for (ns, name) in &scaled {
        c.kubectl("admin", &["scale", &format!("deploy/{name}"), "-n", ns, "--replicas=6"]).success();
    }
    std::thread::sleep(Duration::from_secs(12));
    let change_bytes = metric(admin, "replica_guard_usage_state_written_bytes_total") - first_bytes - idle_bytes;
    let change_writes = written("written") - first_writes;
    let failed = written("failed");
    drop(watch);

    // Down over midnight: every shard's day is yesterday's now; the restart prints that day.
    let yesterday = replica_guard::cluster::usage::day::today().yesterday().unwrap().to_string();
    for i in 0..shards as usize {
        let name = replica_guard::cluster::usage::state::shard_name("scale-usage", i);
        let patch = format!("{{\"data\":{{\"date\":\"{yesterday}\"}}}}");
        c.kubectl("admin", &["patch", "configmap", &name, "-n", "default", "--type=merge", "-p", &patch]).success();
    }
    let restarted = Instant::now();
    let watch = Process::start(&bin, &watch_args, c);
    let mut lines = std::collections::HashMap::new();
    while lines.len() < total {
        let Ok(line) = watch.lines.recv_timeout(Duration::from_secs(120)) else { break };
        if line["log"] == "replica-guard-usage" && line["date"] == yesterday.as_str() {
            let key = format!("{}/{}", line["namespace"].as_str().unwrap(), line["deployment"].as_str().unwrap());
            lines.insert(key, line["maxReplicasSeen"].as_i64().unwrap_or(0));
        }
    }
    let printed_seconds = restarted.elapsed().as_secs_f64();
    let highs_kept = scaled.iter().filter(|(ns, name)| lines.get(&format!("{ns}/{name}")) == Some(&6)).count();
    drop(watch);

    println!(
        "{}",
        serde_json::json!({
            "deployments": total,
            "registry_entries": entries,
            "create_seconds": create_seconds,
            "audit": {"seconds_median": median(audit.0.clone()), "seconds": audit.0, "peak_rss_mib_median": median(audit.1)},
            "check_cluster": {"manifests": total, "seconds_median": median(check.0.clone()), "seconds": check.0, "peak_rss_mib_median": median(check.1)},
            "serve": {"ready_seconds": serve_ready, "rss_mib": serve_rss, "peak_rss_mib": serve_peak,
                      "metrics_scrape_ms_median": median(scrapes), "metrics_bytes": scrape_bytes},
            "watch": {"ready_seconds": ready, "rss_mib": watch_rss, "peak_rss_mib": watch_peak, "pass_seconds": pass_seconds},
            "usage_state": {"shards": shards, "bytes": state_bytes, "first_save_bytes": first_bytes, "first_save_writes": first_writes,
                            "idle_passes_bytes": idle_bytes, "scaled_deployments": SCALED, "after_scaling_bytes": change_bytes,
                            "after_scaling_writes": change_writes, "failed_writes": failed},
            "restart_across_midnight": {"lines_of_the_day_before": lines.len(), "scaled_highs_kept": highs_kept, "seconds": printed_seconds},
        })
    );
}
