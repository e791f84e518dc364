//! A real Prometheus (Debian's, `install-tools.sh`) scrapes the chart's pods on the real node the
//! way the chart's ServiceMonitors tell the Prometheus operator to — the endpoints of the Services
//! their selectors pick in the release namespace, the `metrics` port, the interval, `honorLabels`,
//! the job named after the Service — and evaluates the chart's PrometheusRule. The story drives what the alerts are for (a denial, an override, a workload
//! over a lowered limit, a registry edit that cannot be read) and asserts each alert goes pending
//! or firing with the labels a receiver routes on, and that every panel query of the shipped
//! dashboard draws at least one series.

use crate::cluster::{Cluster, in_placement};
use crate::common::process::Process;
use crate::node_stories::{RELEASE, TEAM, WARN_TEAM, chart, installed, retried, values, warned};
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

    // The chart's monitoring objects, rendered with the values it was installed with, for this
    // API server's version (whether the backstop is rendered depends on it).
    let values = values(c);
    let version = c.tools.server_version();
    let rendered = c.helm(&[
        "template",
        "rg",
        chart(),
        "-n",
        RELEASE,
        "--kube-version",
        &version,
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
        "scrape_configs": monitors.iter().flat_map(|m| scrape_configs(c, &dir, m)).chain([apiserver(c)]).collect::<Vec<_>>(),
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

    // What the alerts are for. A registry that holds metrics-api (running 3) to 2, and warns
    // about team-w's api above 4; it reaches the pods with the kubelet's volume update.
    let before = c
        .kubectl(
            "admin",
            &["get", "configmap", "rg-replica-guard-registry", "-n", RELEASE, "-o", "jsonpath={.data.limits\\.yaml}"],
        )
        .success()
        .stdout;
    let set_registry = |text: &str| {
        let patch = json!({"data": {"limits.yaml": text}}).to_string();
        c.kubectl(
            "admin",
            &["patch", "configmap", "rg-replica-guard-registry", "-n", RELEASE, "--type=merge", "-p", &patch],
        )
        .success();
    };
    c.apply("admin", &deployment(TEAM, "metrics-api", 3, "nginx:1"), &[]).success();
    c.apply("admin", &deployment(TEAM, "payments-api", 3, "nginx:1"), &[]).success();
    c.apply("admin", &deployment(WARN_TEAM, "api", 3, "nginx:1"), &[]).success();
    set_registry(&format!(
        "entries:\n- {{namespace: {TEAM}, deployment: payments-api, maxReplicas: 4, owner: payments-team@example.com}}\n- {{namespace: {TEAM}, deployment: metrics-api, maxReplicas: 2}}\n- {{namespace: {WARN_TEAM}, deployment: api, maxReplicas: 4, mode: warn}}\n"
    ));
    // A denial: the backstop policy refuses it (the API server runs it before any webhook).
    let ran = c.apply("alice", &deployment(TEAM, "payments-api", 9, "nginx:1"), &[]);
    assert!(!ran.ok && ran.stderr.contains("exceeds PED max"), "{}", ran.stderr);
    // The break-glass override by platform-admins: past the backstop, honoured by the webhook.
    let annotated =
        deployment_with(TEAM, "payments-api", 5, "nginx:1", "    replica-guard.io/override: \"INC-4711 black friday\"");
    let ran = c.apply("bob", &annotated, &[]);
    assert!(ran.ok && ran.warnings().iter().any(|w| w.starts_with("allowed by break-glass override")), "{ran:?}");

    api.until("the API server's count of the backstop's denial", Duration::from_secs(60), || {
        let counted =
            api.try_query("sum by (policy, enforcement_action) (apiserver_validating_admission_policy_check_total)")?;
        if counted.iter().any(|s| s["metric"]["enforcement_action"] == "deny") {
            return Ok(());
        }
        let targets = api.get("/api/v1/targets?state=active")?;
        let apiserver: Vec<String> = targets["data"]["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["labels"]["job"] == "apiserver")
            .map(|t| format!("{} {} {}", t["scrapeUrl"], t["health"], t["lastError"]))
            .collect();
        Err(format!("counted: {counted:?}; the API server's target: {apiserver:?}"))
    });
    // alice's denial, by the backstop: counted by the API server, named by the policy.
    let denied = api.alert_where("ReplicaGuardDenials", &["firing"], Duration::from_secs(60), |a| {
        a["labels"]["policy"] == "rg-replica-guard-backstop"
    });
    // bob's override went past the backstop (his group is exempt from it) to the webhook, which
    // counts the violation it let through, per workload.
    let overridden = api.alert_where("ReplicaGuardDenials", &["firing"], Duration::from_secs(60), |a| {
        a["labels"]["namespace"] == TEAM && a["labels"]["deployment"] == "payments-api"
    });
    let overrides = api.query("sum by (namespace, deployment, result) (replica_guard_overrides_total)");
    assert!(
        overrides.iter().any(|s| s["metric"]["result"] == "honoured" && s["metric"]["namespace"] == TEAM),
        "the override, with the workload's own namespace label: {overrides:?}"
    );
    // The audit pod sees metrics-api over its lowered limit (the alert waits 15 minutes before
    // firing: pending is what shows now), and payments-api over its own after the override.
    // (Other stories may have left workloads over their limits elsewhere: team-w's warn-mode api.)
    let over =
        api.alert_where("ReplicaGuardReplicasAboveRegistered", &["pending", "firing"], Duration::from_secs(180), |a| {
            a["labels"]["namespace"] == TEAM
                && ["metrics-api", "payments-api"].contains(&a["labels"]["deployment"].as_str().unwrap_or(""))
        });
    // A warn-mode entry: the webhook warns and counts the violation (the backstop enforces only).
    api.until("a warn-mode violation", Duration::from_secs(180), || {
        warned(&c.apply("alice", &deployment(WARN_TEAM, "api", 6, "nginx:1"), &[]), "exceeds PED max 4")
    });
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
    c.kubectl("admin", &["scale", "deploy/api", "-n", WARN_TEAM, "--replicas=3"]).success();
    panels.dedup();
    eprintln!(
        "prometheus: firing ReplicaGuardDenials ({} and {}/{}), {} ReplicaGuardReplicasAboveRegistered ({}/{}), firing ReplicaGuardRegistryStale (value {}); {} dashboard panels drew data: {}",
        denied["labels"]["policy"].as_str().unwrap_or_default(),
        overridden["labels"]["namespace"].as_str().unwrap_or_default(),
        overridden["labels"]["deployment"].as_str().unwrap_or_default(),
        over["state"].as_str().unwrap_or_default(),
        over["labels"]["namespace"].as_str().unwrap_or_default(),
        over["labels"]["deployment"].as_str().unwrap_or_default(),
        stale["value"].as_str().unwrap_or_default(),
        panels.len(),
        panels.join(", ")
    );
}

/// What the Prometheus operator generates from one ServiceMonitor endpoint, by hand: the Services
/// its selector matches in its namespace, their endpoints on the named port (the operator's
/// endpoints discovery, done here through the API server because Debian builds Prometheus without
/// Kubernetes discovery; written as a file of targets Prometheus re-reads), labelled as the operator
/// labels them (namespace, service, pod, job = the Service, endpoint), scraped at the endpoint's
/// interval and path with its `honorLabels`.
fn scrape_configs(c: &Cluster, dir: &Path, monitor: &Value) -> Vec<Value> {
    let name = monitor["metadata"]["name"].as_str().unwrap();
    let namespace = monitor["metadata"]["namespace"].as_str().unwrap();
    let selector: Vec<String> = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(key, value)| format!("{key}={}", value.as_str().unwrap()))
        .collect();
    let services =
        c.kubectl("admin", &["get", "services", "-n", namespace, "-l", &selector.join(","), "-o", "json"]).success();
    let services: Value = serde_json::from_str(&services.stdout).unwrap();
    let endpoints = monitor["spec"]["endpoints"].as_array().unwrap();
    endpoints
        .iter()
        .enumerate()
        .map(|(i, endpoint)| {
            let port = endpoint["port"].as_str().unwrap();
            let mut groups = vec![];
            for service in services["items"].as_array().unwrap() {
                let service = service["metadata"]["name"].as_str().unwrap();
                let slices = c
                    .kubectl(
                        "admin",
                        &[
                            "get",
                            "endpointslices",
                            "-n",
                            namespace,
                            "-l",
                            &format!("kubernetes.io/service-name={service}"),
                            "-o",
                            "json",
                        ],
                    )
                    .success();
                let slices: Value = serde_json::from_str(&slices.stdout).unwrap();
                for slice in slices["items"].as_array().unwrap() {
                    let Some(number) = slice["ports"]
                        .as_array()
                        .and_then(|ps| ps.iter().find(|p| p["name"] == port))
                        .map(|p| &p["port"])
                    else {
                        continue;
                    };
                    for address in slice["endpoints"].as_array().into_iter().flatten() {
                        groups.push(json!({
                            "targets": [format!("{}:{number}", address["addresses"][0].as_str().unwrap())],
                            "labels": {
                                "namespace": namespace,
                                "service": service,
                                "pod": address["targetRef"]["name"],
                                "job": service,
                                "endpoint": port,
                            },
                        }));
                    }
                }
            }
            let targets = dir.join(format!("{name}-{i}.json"));
            std::fs::write(&targets, Value::from(groups).to_string()).unwrap();
            json!({
                "job_name": format!("serviceMonitor/{namespace}/{name}/{i}"),
                "scrape_interval": endpoint["interval"],
                "metrics_path": endpoint["path"],
                "honor_labels": endpoint["honorLabels"].as_bool().unwrap_or(false),
                "file_sd_configs": [{"files": [targets], "refresh_interval": "5s"}],
            })
        })
        .collect()
}

/// The API server's own metrics, scraped as kube-prometheus scrapes them (job `apiserver`): the
/// backstop policy's denials are counted there, never by the webhook.
fn apiserver(c: &Cluster) -> Value {
    let pki = |file: &str| c.dir.join("pki").join(file);
    json!({
        "job_name": "apiserver",
        "scheme": "https",
        "scrape_interval": "2s",
        "tls_config": {"ca_file": pki("ca.crt"), "cert_file": pki("admin.crt"), "key_file": pki("admin.key")},
        "static_configs": [{"targets": [c.api.to_string()], "labels": {"job": "apiserver"}}],
    })
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
        self.alert_where(name, states, limit, |_| true)
    }

    /// `alert`, for an instance of it that `wanted` picks (by its labels).
    fn alert_where(&self, name: &str, states: &[&str], limit: Duration, wanted: impl Fn(&Value) -> bool) -> Value {
        let mut found = Value::Null;
        self.until(&format!("alert {name} {states:?}"), limit, || {
            let alerts = self.get("/api/v1/alerts")?;
            let all = alerts["data"]["alerts"].as_array().cloned().unwrap_or_default();
            let found_now = all.iter().find(|a| {
                a["labels"]["alertname"] == name && states.contains(&a["state"].as_str().unwrap_or("")) && wanted(a)
            });
            match found_now {
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

    /// Retries `check` until it holds; after `limit`, fails with its last word and the end of
    /// Prometheus' log.
    fn until(&self, what: &str, limit: Duration, check: impl FnMut() -> Result<(), String>) {
        if let Err(last) = retried(limit, check) {
            let log = crate::cluster::tail(Path::new(&self.log), 20);
            panic!("{what}: not within {limit:?}: {last}\nprometheus log:\n{log}");
        }
    }
}
