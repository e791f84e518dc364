//! A real Prometheus (Debian's, `install-tools.sh`) scrapes the chart's pods on the real node the
//! way the chart's ServiceMonitors tell the Prometheus operator to — Kubernetes endpoints
//! discovery in the release namespace, the Services their selectors pick, the `metrics` port, the
//! interval, `honorLabels`, the job named after the Service — and evaluates the chart's
//! PrometheusRule. The story drives what the alerts are for (a denial, an override, a workload
//! over a lowered limit, a registry edit that cannot be read) and asserts each alert goes pending
//! or firing with the labels a receiver routes on, and that every panel query of the shipped
//! dashboard draws at least one series.

use crate::cluster::{Cluster, in_placement};
use crate::common::process::Process;
use crate::node_stories::{RELEASE, TEAM, chart, installed, values};
use crate::webhook::{deployment, deployment_with};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// Where the story's Prometheus listens (inside the node's network, beside the API server).
const PORT: u16 = 9095;

pub fn prometheus_watches_the_pods(c: &Cluster) {
    installed(c);
    let placement = c.placement.clone().expect("the real node's control plane");
    let dir = c.dir.join("prometheus");
    std::fs::create_dir_all(dir.join("data")).unwrap();

    // The chart's monitoring objects, rendered with the values it was installed with.
    let values = values(c);
    let rendered = c.helm(&[
        "template",
        "rg",
        chart(),
        "-n",
        RELEASE,
        "-f",
        &values.display().to_string(),
        "--set",
        "serviceMonitor.enabled=true,serviceMonitor.interval=2s,prometheusRule.enabled=true,grafanaDashboard.enabled=true",
    ]);
    assert!(rendered.ok, "helm template: {}", rendered.stderr);
    let objects: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&rendered.stdout)
        .filter_map(|doc| serde::Deserialize::deserialize(doc).ok())
        .filter(|v: &Value| !v.is_null())
        .collect();
    let of_kind = |kind: &str| objects.iter().filter(|o| o["kind"] == kind).cloned().collect::<Vec<_>>();
    let monitors = of_kind("ServiceMonitor");
    assert_eq!(monitors.len(), 2, "the webhook's and the audit pod's ServiceMonitors");
    let rule = of_kind("PrometheusRule").pop().expect("the PrometheusRule");
    std::fs::write(dir.join("rules.yaml"), json!({ "groups": rule["spec"]["groups"] }).to_string()).unwrap();
    let dashboard = of_kind("ConfigMap")
        .into_iter()
        .find(|o| o["metadata"]["name"] == "rg-replica-guard-dashboard")
        .expect("the dashboard's ConfigMap");
    let dashboard: Value = serde_json::from_str(dashboard["data"]["replica-guard.json"].as_str().unwrap()).unwrap();

    let config = json!({
        "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
        "rule_files": [dir.join("rules.yaml")],
        "scrape_configs": monitors.iter().flat_map(|m| scrape_configs(c, m)).collect::<Vec<_>>(),
    });
    std::fs::write(dir.join("prometheus.yml"), config.to_string()).unwrap();
    let _prometheus = Process::spawn(
        "prometheus",
        in_placement(&c.placement, &c.tools.prometheus).args([
            &format!("--config.file={}", dir.join("prometheus.yml").display()),
            &format!("--storage.tsdb.path={}", dir.join("data").display()),
            &format!("--web.listen-address={}:{PORT}", placement.address),
        ]),
        &dir.join("prometheus.log"),
    );
    let api = Api { base: format!("http://{}:{PORT}", placement.address), log: dir.join("prometheus.log") };

    // Every pod the ServiceMonitors select is scraped: three webhook pods and the audit pod.
    let started = Instant::now();
    api.until("every target up", Duration::from_secs(60), || {
        let targets = api.get("/api/v1/targets?state=active")?;
        let active = targets["data"]["activeTargets"].as_array().cloned().unwrap_or_default();
        let up: Vec<&str> =
            active.iter().filter(|t| t["health"] == "up").filter_map(|t| t["labels"]["job"].as_str()).collect();
        let webhook = up.iter().filter(|j| **j == "rg-replica-guard").count();
        let audit = up.iter().filter(|j| **j == "rg-replica-guard-audit").count();
        if webhook == 3 && audit == 1 { Ok(()) } else { Err(format!("up: {up:?} of {} targets", active.len())) }
    });
    eprintln!("prometheus: 4 targets up {:.1} s after its start", started.elapsed().as_secs_f64());

    // What the alerts are for. A workload the registry will hold to 2 replicas, running 3.
    let registry = |extra: &str| {
        format!(
            "entries:\n- {{namespace: {TEAM}, deployment: payments-api, maxReplicas: 4, owner: payments-team@example.com}}\n{extra}"
        )
    };
    let before = c
        .kubectl(
            "admin",
            &["get", "configmap", "rg-replica-guard-registry", "-n", RELEASE, "-o", "jsonpath={.data.limits\\.yaml}"],
        )
        .success()
        .stdout;
    c.apply("admin", &deployment(TEAM, "metrics-api", 3, "nginx:1"), &[]).success();
    let set_registry = |text: &str| {
        let patch = json!({"data": {"limits.yaml": text}}).to_string();
        c.kubectl(
            "admin",
            &["patch", "configmap", "rg-replica-guard-registry", "-n", RELEASE, "--type=merge", "-p", &patch],
        )
        .success();
    };
    set_registry(&registry(&format!("- {{namespace: {TEAM}, deployment: metrics-api, maxReplicas: 2}}\n")));
    // A denial (enforce), and the break-glass override by platform-admins.
    c.apply("admin", &deployment(TEAM, "payments-api", 3, "nginx:1"), &[]).success();
    let ran = c.apply("alice", &deployment(TEAM, "payments-api", 9, "nginx:1"), &[]);
    assert!(!ran.ok && ran.stderr.contains("exceeds PED max"), "{}", ran.stderr);
    let annotated =
        deployment_with(TEAM, "payments-api", 5, "nginx:1", "    replica-guard.io/override: \"INC-4711 black friday\"");
    let ran = c.apply("bob", &annotated, &[]);
    assert!(ran.ok && ran.warnings().iter().any(|w| w.starts_with("allowed by break-glass override")), "{ran:?}");

    let denied = api.alert("ReplicaGuardDenials", &["firing"], Duration::from_secs(60));
    assert_eq!(
        (&denied["labels"]["namespace"], &denied["labels"]["deployment"]),
        (&json!(TEAM), &json!("payments-api"))
    );
    let overrides = api.query("sum by (namespace, deployment, result) (replica_guard_overrides_total)");
    assert!(
        overrides.iter().any(|s| s["metric"]["result"] == "honoured" && s["metric"]["namespace"] == TEAM),
        "the override, with the workload's own namespace label: {overrides:?}"
    );
    // The lowered limit reaches the pods with the kubelet's volume update: the audit pod sees
    // metrics-api over it (the alert waits 15 minutes before firing: pending is what shows now).
    let over = api.alert("ReplicaGuardReplicasAboveRegistered", &["pending", "firing"], Duration::from_secs(180));
    assert_eq!(over["labels"]["namespace"], TEAM, "{over}");
    assert!(["metrics-api", "payments-api"].contains(&over["labels"]["deployment"].as_str().unwrap()), "{over}");
    // Every panel of the dashboard draws data.
    let mut panels = vec![];
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let title = panel["title"].as_str().unwrap();
            api.until(&format!("panel {title:?}: {expr}"), Duration::from_secs(60), || {
                let series = api.try_query(expr)?;
                if series.is_empty() { Err("no series".into()) } else { Ok(()) }
            });
            panels.push(title.to_string());
        }
    }
    // A registry edit the pods cannot read: they keep the last good one, and say so.
    set_registry("entries: [this is not a registry\n");
    let stale = api.alert("ReplicaGuardRegistryStale", &["firing"], Duration::from_secs(180));
    set_registry(&before);
    c.kubectl("alice", &["scale", "deploy/payments-api", "-n", TEAM, "--replicas=3"]).success();
    c.kubectl("admin", &["delete", "deploy/metrics-api", "-n", TEAM]).success();
    panels.dedup();
    eprintln!(
        "prometheus: firing ReplicaGuardDenials ({}/{}), {} ReplicaGuardReplicasAboveRegistered ({}/{}), firing ReplicaGuardRegistryStale ({} pods' reloads); {} dashboard panels drew data: {}",
        denied["labels"]["namespace"].as_str().unwrap_or_default(),
        denied["labels"]["deployment"].as_str().unwrap_or_default(),
        over["state"].as_str().unwrap_or_default(),
        over["labels"]["namespace"].as_str().unwrap_or_default(),
        over["labels"]["deployment"].as_str().unwrap_or_default(),
        stale["value"].as_str().unwrap_or_default(),
        panels.len(),
        panels.join(", ")
    );
}

/// What the Prometheus operator generates from one ServiceMonitor endpoint, by hand: endpoints
/// discovery in the ServiceMonitor's namespace through the API server, keep the Services its
/// selector matches and the named port, and label the targets as the operator does.
fn scrape_configs(c: &Cluster, monitor: &Value) -> Vec<Value> {
    let name = monitor["metadata"]["name"].as_str().unwrap();
    let namespace = monitor["metadata"]["namespace"].as_str().unwrap();
    let pki = |file: &str| c.dir.join("pki").join(file);
    let mut keep: Vec<Value> = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(key, value)| {
            let label = key.replace(['.', '/', '-'], "_");
            json!({
                "action": "keep",
                "source_labels": [format!("__meta_kubernetes_service_label_{label}"), format!("__meta_kubernetes_service_labelpresent_{label}")],
                "regex": format!("{};true", value.as_str().unwrap()),
            })
        })
        .collect();
    let endpoints = monitor["spec"]["endpoints"].as_array().unwrap();
    endpoints
        .iter()
        .enumerate()
        .map(|(i, endpoint)| {
            let port = endpoint["port"].as_str().unwrap();
            let mut relabel = std::mem::take(&mut keep);
            relabel.extend([
                json!({"action": "keep", "source_labels": ["__meta_kubernetes_endpoint_port_name"], "regex": port}),
                json!({"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"}),
                json!({"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"}),
                json!({"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"}),
                json!({"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job"}),
                json!({"target_label": "endpoint", "replacement": port}),
            ]);
            json!({
                "job_name": format!("serviceMonitor/{namespace}/{name}/{i}"),
                "scrape_interval": endpoint["interval"],
                "metrics_path": endpoint["path"],
                "honor_labels": endpoint["honorLabels"].as_bool().unwrap_or(false),
                "kubernetes_sd_configs": [{
                    "role": "endpoints",
                    "api_server": format!("https://{}", c.api),
                    "tls_config": {"ca_file": pki("ca.crt"), "cert_file": pki("admin.crt"), "key_file": pki("admin.key")},
                    "namespaces": {"names": [namespace]},
                }],
                "relabel_configs": relabel,
            })
        })
        .collect()
}

/// Prometheus' HTTP API, through curl (inside the node's network, where it listens).
struct Api {
    base: String,
    log: std::path::PathBuf,
}

impl Api {
    fn get(&self, path: &str) -> Result<Value, String> {
        self.curl(&[&format!("{}{path}", self.base)])
    }

    fn curl(&self, args: &[&str]) -> Result<Value, String> {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "5"])
            .args(args)
            .output()
            .map_err(|e| format!("curl: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    fn try_query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let url = format!("{}/api/v1/query", self.base);
        let answer = self.curl(&["--data-urlencode", &format!("query={expr}"), &url])?;
        if answer["status"] != "success" {
            return Err(answer.to_string());
        }
        Ok(answer["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    fn query(&self, expr: &str) -> Vec<Value> {
        self.try_query(expr).unwrap_or_else(|e| panic!("{expr}: {e}"))
    }

    /// The alert `name` once it is in one of `states`, waiting (bounded) for it.
    fn alert(&self, name: &str, states: &[&str], limit: Duration) -> Value {
        let mut found = Value::Null;
        self.until(&format!("alert {name} {states:?}"), limit, || {
            let alerts = self.get("/api/v1/alerts")?;
            let all = alerts["data"]["alerts"].as_array().cloned().unwrap_or_default();
            match all
                .iter()
                .find(|a| a["labels"]["alertname"] == name && states.contains(&a["state"].as_str().unwrap_or("")))
            {
                Some(alert) => {
                    found = alert.clone();
                    Ok(())
                }
                None => Err(format!(
                    "alerts now: {}",
                    all.iter()
                        .map(|a| format!("{} {}", a["labels"]["alertname"], a["state"]))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        });
        found
    }

    /// Retries `check` every 500 ms until it holds; after `limit`, fails with its last word and
    /// the end of Prometheus' log.
    fn until(&self, what: &str, limit: Duration, mut check: impl FnMut() -> Result<(), String>) {
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < limit {
            match check() {
                Ok(()) => return,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!(
            "{what}: not within {limit:?}: {last}\nprometheus log:\n{}",
            crate::cluster::tail(Path::new(&self.log), 20)
        );
    }
}
