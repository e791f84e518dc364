//! `replica-guard audit` against the real API server: workloads that existed before the webhook
//! (or whose registry entry was lowered since) show up with their status, and the exit status
//! says whether anything runs over its limit.

use crate::Scenario;
use crate::cluster::{Cluster, Ran};
use crate::webhook::deployment;

pub fn all() -> Vec<Scenario> {
    vec![
        ("audit: what runs over its limit now, as a table, JSON and CSV", audit_lists_what_runs_over),
        (
            "audit across clusters: two real API servers in one report with a cluster column; one that cannot be reached is named, the rest reported",
            audit_across_clusters,
        ),
    ]
}

/// A kubeconfig whose contexts `east` and `west` are two clusters (as admin), and `gone` a server
/// that is not there.
fn two_clusters_kubeconfig(east: &Cluster, west: &Cluster, at: &std::path::Path) {
    let mut text = String::from("apiVersion: v1\nkind: Config\nclusters:\n");
    let both = [("east", east), ("west", west)];
    for (name, c) in both {
        text.push_str(&format!(
            "- name: {name}\n  cluster: {{server: 'https://{}', certificate-authority: '{}'}}\n",
            c.api,
            c.dir.join("pki/ca.crt").display()
        ));
    }
    // Nothing listens on port 1 of this machine: refused at once.
    text.push_str(&format!(
        "- name: gone\n  cluster: {{server: 'https://127.0.0.1:1', certificate-authority: '{}'}}\nusers:\n",
        east.dir.join("pki/ca.crt").display()
    ));
    for (name, c) in both {
        text.push_str(&format!(
            "- name: {name}\n  user: {{client-certificate: '{}', client-key: '{}'}}\n",
            c.dir.join("pki/admin.crt").display(),
            c.dir.join("pki/admin.key").display()
        ));
    }
    text.push_str("contexts:\n");
    for name in ["east", "west"] {
        text.push_str(&format!("- name: {name}\n  context: {{cluster: {name}, user: {name}}}\n"));
    }
    text.push_str("- name: gone\n  context: {cluster: gone, user: east}\ncurrent-context: east\n");
    std::fs::write(at, text).unwrap();
}

fn audit_across_clusters(c: &Cluster) {
    let ns = "s-audit-many";
    let tools = crate::cluster::Tools::find().expect("the same tools start a second cluster");
    let west = Cluster::start(tools).expect("a second control plane");
    for (cluster, replicas) in [(c, 7), (&west, 2)] {
        cluster.namespace(ns);
        cluster.apply("admin", &deployment(ns, "payments-api", replicas, "nginx:1"), &[]).success();
    }
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    two_clusters_kubeconfig(c, &west, &kubeconfig);
    std::fs::write(dir.path().join("limits.yaml"), registry(ns, 4)).unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "registry: {file: {path: limits.yaml}}\n").unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_replica-guard"))
            .args(["audit", "--config"])
            .arg(&config)
            .args(["-n", ns])
            .args(args)
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, json, stderr) = run(&["--context", "east", "--context", "west", "-o", "json"]);
    assert_eq!(code, Some(1), "east runs payments-api over its limit\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let rows: Vec<(String, i64, String)> = report["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["cluster"].as_str().unwrap().into(),
                r["replicas"].as_i64().unwrap(),
                r["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(rows, vec![("east".into(), 7, "over".into()), ("west".into(), 2, "within".into())]);
    assert_eq!(report["summary"]["workloads"], 2);
    assert_eq!(report["clusters"][1]["name"], "west");
    assert_eq!(report["clusters"][1]["summary"]["within"], 1);
    assert_eq!(report["clusters"][0]["error"], serde_json::Value::Null);

    let (code, table, stderr) = run(&["--all-contexts"]);
    assert_eq!(code, Some(1), "the reachable clusters still decide the exit status\n{stderr}");
    assert!(table.starts_with("CLUSTER"), "{table}");
    assert!(
        table.lines().any(|l| l.starts_with("east") && l.contains("payments-api") && l.contains("over")),
        "{table}"
    );
    assert!(table.contains("west: 1 workloads: 0 over"), "{table}");
    assert!(table.contains("gone: could not be audited"), "{table}");
    assert!(table.contains("all clusters: 2 workloads: 1 over"), "{table}");
    assert!(stderr.contains("error: cluster gone:"), "the unreachable cluster is named: {stderr}");

    let (code, csv, _) = run(&["--context", "west", "--context", "gone", "-o", "csv"]);
    assert_eq!(code, Some(0), "west is within; gone is named, not fatal");
    assert!(csv.contains(&format!("{ns},payments-api,2,,,4,deployment,enforce,within,,west")), "{csv}");

    let (code, _, stderr) = run(&["--context", "gone"]);
    assert_eq!(code, Some(3), "no cluster could be audited: {stderr}");
    assert!(stderr.contains("gone"), "{stderr}");
}

fn registry(ns: &str, cart_max: i32) -> String {
    format!(
        "entries:\n  - {{namespace: {ns}, deployment: payments-api, maxReplicas: 4}}\n  - {{namespace: {ns}, deployment: orders-api, maxReplicas: 4}}\n  - {{namespace: {ns}, deployment: search-api, maxReplicas: 12}}\n  - {{namespace: {ns}, deployment: cart-api, maxReplicas: {cart_max}, mode: warn}}\n"
    )
}

fn audit(c: &Cluster, config: &std::path::Path, output: &str) -> (Option<i32>, Ran) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_replica-guard"))
        .args(["audit", "--config"])
        .arg(config)
        .args(["-n", "s-audit", "-o", output])
        .env("KUBECONFIG", &c.kubeconfig)
        .output()
        .unwrap();
    let ran = Ran {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    (out.status.code(), ran)
}

fn audit_lists_what_runs_over(c: &Cluster) {
    let ns = "s-audit";
    c.namespace(ns);
    // Created with no webhook in the way, as before replica-guard was installed.
    for (name, replicas) in [("payments-api", 7), ("orders-api", 3), ("search-api", 2), ("cart-api", 2), ("legacy", 2)]
    {
        c.apply("admin", &deployment(ns, name, replicas, "nginx:1"), &[]).success();
    }
    let hpa = format!(
        "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {{name: orders-api, namespace: {ns}}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: orders-api}}\n  minReplicas: 2\n  maxReplicas: 10\n"
    );
    c.apply("admin", &hpa, &[]).success();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(dir.path().join("limits.yaml"), registry(ns, 4)).unwrap();
    std::fs::write(
        &config,
        "registry: {file: {path: limits.yaml}}\npricing: {base: 180, perVcpu: 19, perGib: 19, divisor: 4}\n",
    )
    .unwrap();

    let (code, ran) = audit(c, &config, "json");
    assert_eq!(code, Some(1), "something runs over its limit: exit 1\n{}", ran.stderr);
    let report: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    let row =
        |name: &str| report["workloads"].as_array().unwrap().iter().find(|r| r["deployment"] == name).cloned().unwrap();
    assert_eq!(row("payments-api")["status"], "over");
    assert_eq!(row("payments-api")["replicas"], 7);
    assert_eq!(row("payments-api")["registeredMaxReplicas"], 4);
    assert_eq!(row("payments-api")["monthlyCost"], 294.0, "2 vCPU / 4 GiB at max 4");
    assert_eq!(row("orders-api")["status"], "ratchet-only");
    assert_eq!(row("orders-api")["hpaMaxReplicas"], 10);
    assert_eq!(row("search-api")["status"], "out-of-bounds");
    assert_eq!(row("cart-api")["status"], "within");
    assert_eq!(row("cart-api")["mode"], "warn");
    assert_eq!(row("legacy")["status"], "unregistered");
    assert_eq!(row("legacy")["registeredMaxReplicas"], serde_json::Value::Null);
    assert_eq!(report["summary"]["over"], 1);
    assert_eq!(report["summary"]["workloads"], 5);

    let (_, table) = audit(c, &config, "table");
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].starts_with("NAMESPACE") && lines[0].contains("STATUS"), "{}", table.stdout);
    assert!(
        lines.iter().any(|l| l.contains("payments-api") && l.contains("over") && l.contains("294.00")),
        "{}",
        table.stdout
    );
    assert!(
        table
            .stdout
            .contains("5 workloads: 1 over, 1 ratchet-only, 1 unregistered, 1 out of platform bounds, 1 within")
    );

    // The PED entry of a compliant workload is lowered: it is over now.
    std::fs::write(dir.path().join("limits.yaml"), registry(ns, 1)).unwrap();
    let (_, csv) = audit(c, &config, "csv");
    assert!(csv.stdout.starts_with(
        "namespace,deployment,replicas,hpa,hpaMaxReplicas,registeredMaxReplicas,scope,mode,status,monthlyCost,cluster\n"
    ));
    // No --context: the kubeconfig's current context names the cluster.
    let cart = csv.stdout.lines().find(|l| l.starts_with(&format!("{ns},cart-api,"))).unwrap_or_default();
    assert!(cart.starts_with(&format!("{ns},cart-api,2,,,1,deployment,warn,over,")), "{}", csv.stdout);
    assert!(cart.ends_with(",admin"), "{}", csv.stdout);
}

/// `replica-guard watch` as a process, killed when dropped.
pub struct Watching {
    child: std::process::Child,
    pub admin: std::net::SocketAddr,
    /// The usage records it prints.
    pub usage: std::sync::mpsc::Receiver<serde_json::Value>,
    /// The message of every log record it prints.
    pub messages: std::sync::mpsc::Receiver<String>,
}

impl Watching {
    /// Sends `signal` (`TERM`, `INT`) as the kubelet or Ctrl-C would.
    pub fn signal(&self, signal: &str) {
        let sent =
            std::process::Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status();
        assert!(sent.unwrap().success(), "kill -{signal}");
    }

    /// Its exit code, if it exits within `limit` (polled every 20 ms).
    pub fn exit_code_within(&mut self, limit: std::time::Duration) -> Option<i32> {
        let started = std::time::Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_watch(kubeconfig: &std::path::Path, config: &std::path::Path) -> Watching {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_replica-guard"))
        .args(["watch", "--config"])
        .arg(config)
        .env("KUBECONFIG", kubeconfig)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // Its warnings and errors go to the suite's output, where a failing story shows them; its
    // usage records (some printed before it listens) to the story.
    let (records, usage) = std::sync::mpsc::channel();
    let (listening, address) = std::sync::mpsc::channel();
    let (said, messages) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let record: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if let Some(message) = record["message"].as_str() {
                let _ = said.send(message.to_string());
            }
            if record["message"] == "replica-guard audit is watching the cluster" {
                let _ = listening.send(record["admin_address"].as_str().unwrap().parse().unwrap());
            } else if record["level"] == "WARN" || record["level"] == "ERROR" {
                eprintln!("watch: {line}");
            } else if record["log"] == "replica-guard-usage" {
                let _ = records.send(record);
            }
        }
    });
    let admin = address.recv_timeout(std::time::Duration::from_secs(30)).expect("watch exited or never listened");
    Watching { child, admin, usage, messages }
}

/// Waits (bounded) until /metrics contains `sample`.
pub fn wait_for_metric(w: &Watching, sample: &str) {
    for _ in 0..100 {
        if crate::webhook::http_get(w.admin, "/metrics").lines().any(|l| l == sample) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("no {sample} in:\n{}", crate::webhook::http_get(w.admin, "/metrics"));
}

pub fn continuous() -> Vec<Scenario> {
    vec![
        (
            "continuous audit: gauges, PolicyReports, and one Event when a lowered entry puts a workload over",
            continuous_audit,
        ),
        (
            "continuous audit: SIGTERM drains like the webhook (not ready, still live, exits 0); a second signal exits at once",
            continuous_audit_drains,
        ),
        (
            "continuous audit: OpenReports Reports where the cluster serves them, PolicyReports too when asked",
            open_reports,
        ),
    ]
}

/// Installs a report CRD from the test data and waits until it is served.
fn install_crd(c: &Cluster, file: &str, name: &str) {
    let crd = format!("{}/tests/e2e/data/{file}", env!("CARGO_MANIFEST_DIR"));
    c.kubectl("admin", &["apply", "-f", &crd]).success();
    c.kubectl("admin", &["wait", "--for=condition=Established", &format!("crd/{name}"), "--timeout=30s"]).success();
}

/// replica-guard's report of `kind` (`reports.openreports.io`, `policyreports.wgpolicyk8s.io`) in `ns`.
fn report_of(c: &Cluster, kind: &str, ns: &str) -> Option<serde_json::Value> {
    let ran = c.kubectl("admin", &["get", kind, "replica-guard", "-n", ns, "-o", "json", "--ignore-not-found"]);
    serde_json::from_str(&ran.stdout).ok()
}

fn open_reports(c: &Cluster) {
    let ns = "s-openreports";
    c.namespace(ns);
    // Both APIs served, as on a cluster with Kyverno 1.15 and an older Policy Reporter.
    install_crd(c, "policyreport-crd.yaml", "policyreports.wgpolicyk8s.io");
    install_crd(c, "openreports-crd.yaml", "reports.openreports.io");
    // Leave the API server as the other stories expect it, PolicyReports only, pass or fail.
    struct Removed<'a>(&'a Cluster);
    impl Drop for Removed<'_> {
        fn drop(&mut self) {
            self.0.kubectl("admin", &["delete", "crd", "reports.openreports.io", "--wait=true", "--timeout=60s"]);
        }
    }
    let _removed = Removed(c);
    c.apply("admin", &deployment(ns, "payments-api", 7, "nginx:1"), &[]).success();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("limits.yaml"), registry(ns, 4)).unwrap();
    let kinds = ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"];
    let (_, kubeconfig) = c.chart_account("rg-openreports", "", &kinds, "rg-replica-guard-audit");
    let watch_with = |reports: &str| {
        let config = dir.path().join("config.yaml");
        std::fs::write(
            &config,
            format!("server: {{adminAddress: '127.0.0.1:0'}}\nregistry: {{file: {{path: limits.yaml}}}}\ncluster: {{name: e2e-east}}\naudit: {{intervalSeconds: 0.5, reports: {reports}}}\nlogging: {{format: json}}\n"),
        )
        .unwrap();
        start_watch(&kubeconfig, &config)
    };
    let wait_for_report = |kind: &str| {
        for _ in 0..100 {
            if let Some(r) = report_of(c, kind, ns).filter(|r| r["summary"]["fail"] == 1) {
                return r;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("no {kind} with the failing result in {ns}");
    };

    let w = watch_with("auto");
    let report = wait_for_report("reports.openreports.io");
    assert_eq!(report["apiVersion"], "openreports.io/v1alpha1");
    assert_eq!(report["source"], "replica-guard", "a Report names its source at the top");
    assert_eq!(report["metadata"]["labels"]["replica-guard.io/cluster"], "e2e-east");
    let result = &report["results"][0];
    assert_eq!((result["policy"].as_str(), result["result"].as_str()), (Some("registered-max-replicas"), Some("fail")));
    assert_eq!(result["message"], "replicas 7, PED max 4: over");
    assert_eq!(result["properties"], serde_json::json!({"status": "over", "cluster": "e2e-east"}));
    assert_eq!(result["resources"][0]["name"], "payments-api");
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(report_of(c, "policyreports.wgpolicyk8s.io", ns), None, "auto writes one API, not each result twice");
    drop(w);

    let w = watch_with("both");
    let policy_report = wait_for_report("policyreports.wgpolicyk8s.io");
    let untimed = |mut r: serde_json::Value| {
        for result in r["results"].as_array_mut().unwrap() {
            result.as_object_mut().unwrap().remove("timestamp");
        }
        r["results"].take()
    };
    assert_eq!(untimed(policy_report.clone()), untimed(wait_for_report("reports.openreports.io")), "the same results");
    assert_eq!(policy_report["source"], serde_json::Value::Null, "a PolicyReport has no top-level source");
    drop(w);
}

/// The kubelet stops the audit pod (a rollout, a node drain): it says it is not ready at once,
/// stays live through `shutdownDelaySeconds`, and exits 0; someone who sends a second signal
/// wants it gone now.
fn continuous_audit_drains(c: &Cluster) {
    let ns = "s-watch-drain";
    c.namespace(ns);
    c.apply("admin", &deployment(ns, "cart-api", 1, "nginx:1"), &[]).success();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("limits.yaml"), registry(ns, 4)).unwrap();
    let kinds = ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"];
    let (_, kubeconfig) = c.chart_account("rg-watch-drain", "", &kinds, "rg-replica-guard-audit");
    let start = |delay_seconds: u32| {
        let config = dir.path().join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "server: {{adminAddress: '127.0.0.1:0', shutdownDelaySeconds: {delay_seconds}}}\nregistry: {{file: {{path: limits.yaml}}}}\naudit: {{intervalSeconds: 0.5}}\nlogging: {{format: json}}\n"
            ),
        )
        .unwrap();
        let w = start_watch(&kubeconfig, &config);
        for _ in 0..100 {
            if crate::webhook::http_get(w.admin, "/readyz").starts_with("HTTP/1.1 200") {
                return w;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the audit never became ready: {}", crate::webhook::http_get(w.admin, "/readyz"));
    };

    let mut w = start(3);
    w.signal("TERM");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let readyz = crate::webhook::http_get(w.admin, "/readyz");
    assert!(readyz.starts_with("HTTP/1.1 503"), "not ready once told to stop: {readyz}");
    assert!(readyz.contains("shutting down"), "{readyz}");
    assert!(crate::webhook::http_get(w.admin, "/healthz").starts_with("HTTP/1.1 200"), "still live in the delay");
    assert!(
        crate::webhook::http_get(w.admin, "/metrics").contains("replica_guard_workload_replicas"),
        "still scraped in the delay"
    );
    assert_eq!(w.exit_code_within(std::time::Duration::from_secs(15)), Some(0), "exits 0 after the delay");
    let said: Vec<String> = w.messages.try_iter().collect();
    assert!(said.iter().any(|m| m.starts_with("shutting down: not ready")), "{said:?}");
    assert!(said.iter().any(|m| m == "all connections drained"), "{said:?}");
    assert!(said.iter().any(|m| m == "cluster view stopped"), "{said:?}");
    assert!(said.last().is_some_and(|m| m == "exiting"), "{said:?}");

    let mut w = start(30);
    w.signal("TERM");
    std::thread::sleep(std::time::Duration::from_millis(300));
    w.signal("TERM");
    assert_eq!(w.exit_code_within(std::time::Duration::from_secs(3)), Some(1), "a second SIGTERM ends the drain");
    let said: Vec<String> = w.messages.try_iter().collect();
    assert!(said.iter().any(|m| m.starts_with("received again while draining")), "{said:?}");
}

/// The namespace's PolicyReport from replica-guard.
fn policy_report(c: &Cluster, ns: &str) -> serde_json::Value {
    let ran = c.kubectl("admin", &["get", "policyreports.wgpolicyk8s.io", "replica-guard", "-n", ns, "-o", "json"]);
    serde_json::from_str(&ran.stdout).unwrap_or_default()
}

/// Waits (bounded) until the report's result for `deployment` is `result`.
fn wait_for_result(c: &Cluster, ns: &str, deployment: &str, result: &str) -> serde_json::Value {
    for _ in 0..100 {
        let report = policy_report(c, ns);
        let found =
            report["results"].as_array().into_iter().flatten().find(|r| r["resources"][0]["name"] == deployment);
        if found.is_some_and(|r| r["result"] == result) {
            return report;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{deployment} never got {result}: {:#}", policy_report(c, ns));
}

fn continuous_audit(c: &Cluster) {
    let ns = "s-watch";
    c.namespace(ns);
    let crd = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/data/policyreport-crd.yaml");
    c.kubectl("admin", &["apply", "-f", crd]).success();
    c.kubectl("admin", &["wait", "--for=condition=Established", "crd/policyreports.wgpolicyk8s.io", "--timeout=30s"])
        .success();
    for (name, replicas) in [("payments-api", 7), ("cart-api", 2)] {
        c.apply("admin", &deployment(ns, name, replicas, "nginx:1"), &[]).success();
    }
    let dir = tempfile::tempdir().unwrap();
    let limits = dir.path().join("limits.yaml");
    std::fs::write(&limits, registry(ns, 4)).unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "server: {adminAddress: '127.0.0.1:0'}\nregistry: {file: {path: limits.yaml, pollIntervalSeconds: 0.2}}\nevents: {enabled: true}\naudit: {intervalSeconds: 0.5}\nmetrics: {workloads: all}\nlogging: {format: json}\n",
    )
    .unwrap();
    // The chart's audit account: list/watch Deployments and HPAs, create/patch Events.
    let kinds = ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"];
    let (_, kubeconfig) = c.chart_account("rg-watch", "", &kinds, "rg-replica-guard-audit");
    let w = start_watch(&kubeconfig, &config);
    wait_for_metric(
        &w,
        &format!("replica_guard_workload_over_limit{{deployment=\"payments-api\",namespace=\"{ns}\"}} 1"),
    );
    wait_for_metric(&w, &format!("replica_guard_workload_over_limit{{deployment=\"cart-api\",namespace=\"{ns}\"}} 0"));
    wait_for_metric(
        &w,
        &format!("replica_guard_workload_replicas{{deployment=\"payments-api\",namespace=\"{ns}\"}} 7"),
    );
    assert!(crate::webhook::http_get(w.admin, "/readyz").starts_with("HTTP/1.1 200"));
    let report = wait_for_result(c, ns, "payments-api", "fail");
    assert_eq!(report["summary"], serde_json::json!({"pass": 1, "fail": 1, "warn": 0, "error": 0, "skip": 0}));
    let failed = &report["results"][0];
    assert_eq!(failed["source"], "replica-guard");
    assert_eq!(failed["policy"], "registered-max-replicas");
    assert_eq!(failed["message"], "replicas 7, PED max 4: over");
    assert_eq!(
        failed["resources"][0],
        serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "namespace": ns, "name": "payments-api"})
    );
    assert!(failed["timestamp"]["seconds"].as_i64().unwrap() > 0);
    // Written only when a result changes: passes with nothing new leave it alone.
    let version = report["metadata"]["resourceVersion"].clone();
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(policy_report(c, ns)["metadata"]["resourceVersion"], version, "rewritten without a change");
    // Lowering cart-api's entry puts it over: the gauge and one Event, not one per pass.
    let next = dir.path().join("limits.next");
    std::fs::write(&next, registry(ns, 1)).unwrap();
    std::fs::rename(&next, &limits).unwrap();
    wait_for_metric(&w, &format!("replica_guard_workload_over_limit{{deployment=\"cart-api\",namespace=\"{ns}\"}} 1"));
    let report = wait_for_result(c, ns, "cart-api", "fail");
    assert_eq!(report["summary"]["fail"], 2);
    std::thread::sleep(std::time::Duration::from_secs(3));
    let events = c.events_about(ns, "cart-api");
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["reason"], "AboveRegisteredLimit");
    assert!(events[0]["series"].is_null(), "once, not on every pass: {:#}", events[0]);
    assert!(events[0]["note"].as_str().unwrap().contains("replicas 2 is above PED max 1 for s-watch/cart-api (over)"));
    assert!(c.events_about(ns, "payments-api").is_empty(), "the first pass announces nothing");
    // Scaled down within it: back within, announced once.
    c.kubectl("admin", &["scale", "deploy/cart-api", "-n", ns, "--replicas=1"]).success();
    wait_for_metric(&w, &format!("replica_guard_workload_over_limit{{deployment=\"cart-api\",namespace=\"{ns}\"}} 0"));
    std::thread::sleep(std::time::Duration::from_secs(1));
    let reasons: Vec<String> =
        c.events_about(ns, "cart-api").iter().map(|e| e["reason"].as_str().unwrap().to_string()).collect();
    assert!(reasons.contains(&"BackWithinRegisteredLimit".to_string()), "{reasons:?}");
}
