//! The chart as users run it: its image built from the release binary (`tests/e2e/image.sh`),
//! `helm install` of the unchanged chart on a real node (`crate::node`: kubelet, containerd,
//! kube-scheduler, kube-proxy, the controller manager's workload controllers), the pods started by
//! the kubelet, probed by it, reached through the chart's Service, the audit pod's in-cluster
//! client on its projected token. Every story asserts what a user sees.

use crate::Scenario;
use crate::cluster::{Cluster, Placement, Ran, Tools};
use crate::node::{self, Node};
use crate::pods::Host;
use crate::webhook::deployment;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub fn all() -> Vec<Scenario> {
    vec![
        (
            "node: the image starts as the Dockerfile says, and building it twice gives the same digest",
            image_is_the_dockerfiles,
        ),
        (
            "node: helm install of the chart, client-certificate mode on: pods Ready through the kubelet's probes, a denial through the Service, a forged review from the node refused, parameters written by the audit pod's in-cluster client",
            helm_install_on_a_real_node,
        ),
        (
            "node: the README's kubectl and Helm stories through the real pods: apply, redeploy, scale, autoscale, dry run, override, helm upgrade, warnings, and the Events and usage state the pods write",
            readme_stories_through_the_real_pods,
        ),
        (
            "node: every webhook pod gone, the backstop refuses over-limit changes; pods back, the webhook's warnings return",
            every_webhook_pod_gone,
        ),
        (
            "node: kubectl rollout restart of the webhook under steady writes: 0 failed admissions, failurePolicy Ignore (the default) and Fail",
            rollout_restart_under_writes,
        ),
        (
            "node: a registry edit in the chart's ConfigMap reaches the pods through the kubelet's volume update (the file source's delay, measured)",
            registry_edit_through_the_kubelet,
        ),
        (
            "node: the TLS Secret updated: the kubelet swaps the files, every pod serves the new certificate without a restart, no failed admission",
            certificate_rotation_through_the_kubelet,
        ),
        (
            "node: a thousand held 3 MiB uploads against a webhook pod: no OOM kill, no restart, memory inside the chart's limit as the kernel counts it, reviews still answered",
            hostile_load_within_the_memory_limit,
        ),
        (
            "node: PED raises a limit in Firestore (the emulator) or the platform's ConfigMap: kubectl apply two seconds later is allowed, webhook up and with every webhook pod gone; lowered, refused",
            crate::fresh_limits::a_raised_limit_is_honoured_within_seconds,
        ),
        (
            "node: kubectl rollout restart of the audit pod loses nothing: highs reached a second before it are saved, a workload that went over meanwhile gets exactly one Event",
            audit_pod_rollout_loses_nothing,
        ),
        (
            "node: a real Prometheus scrapes the pods as the chart's ServiceMonitors say: a denial, an override, a workload over a lowered limit and an unreadable registry edit show in the chart's alerts, every dashboard panel draws data",
            crate::prometheus_story::prometheus_watches_the_pods,
        ),
        ("node: kubectl drain of the node stops at the PodDisruptionBudget", drain_respects_the_budget),
    ]
}

/// The stand-in's stories (`chart_stories`: the binary in a network namespace, the harness playing
/// the kubelet and the EndpointSlice controller) that these stories replay on the real node, and
/// that are not run where the node runs. The stand-in stays for the oldest minor (no node is
/// built for it) and for what the node does not replay: the API server's own selection of
/// requests (`scope_stories`, the exempt-group matchConditions story, the backstop story's
/// registry edits), which no kubelet takes part in.
pub const REPLACED_STAND_INS: [&str; 2] = [
    "chart: through its own Service, certificate and rules, kubectl sees the denial",
    "chart: zero failed admissions while a pod is replaced and the certificate rotated",
];

/// Whether the minor's build module builds a kubelet: the node stories run where it does (the
/// newest minor; the oldest is covered by the stories on 127.0.0.1).
pub fn available(tools: &Tools) -> bool {
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/e2e/kube/{}/tools.go", tools.minor));
    std::fs::read_to_string(module).unwrap_or_default().contains("k8s.io/kubernetes/cmd/kubelet")
}

/// The release namespace of the stories' install, and the teams' namespaces.
pub const RELEASE: &str = "replica-guard";
pub const TEAM: &str = "team-a";
/// A team that deploys with Helm.
const HELM_TEAM: &str = "team-b";
/// A team whose entry is in warn mode: the webhook's alone (the backstop enforces only enforce-mode entries).
pub const WARN_TEAM: &str = "team-w";
/// The chart's image as the chart names it by default (repository and appVersion).
const IMAGE: &str = "ghcr.io/example/replica-guard:0.1.0";

/// The node, its control plane and its network, removed in that order.
pub struct Environment {
    node: Option<Node>,
    pub cluster: Cluster,
    _host: Host,
    _images: tempfile::TempDir,
}

impl Drop for Environment {
    fn drop(&mut self) {
        // The node's containers and runtime before the API server they report to.
        self.node.take();
    }
}

/// `tests/e2e/image.sh ARGS OUT`: the manifest digest it prints.
fn build_image(args: &[&str], out: &Path) -> Result<String, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/image.sh");
    let ran =
        std::process::Command::new("bash").arg(&script).args(args).arg(out).output().map_err(|e| e.to_string())?;
    if !ran.status.success() {
        return Err(format!("image.sh {}: {}", args.join(" "), String::from_utf8_lossy(&ran.stderr)));
    }
    Ok(String::from_utf8_lossy(&ran.stdout).trim().to_string())
}

fn release_binary() -> Result<String, String> {
    std::env::var("REPLICA_GUARD_RELEASE_BIN").map_err(|_| {
        "REPLICA_GUARD_RELEASE_BIN is not set: the image holds the release binary (tests/e2e/run.sh builds it)"
            .to_string()
    })
}

/// The replica-guard image the node runs, and its digest (set once per run by `images`).
static BUILT: std::sync::OnceLock<(PathBuf, String)> = std::sync::OnceLock::new();

/// The image archives: (replica-guard, pause), built once per run.
fn images(dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    let image = dir.join("replica-guard.tar");
    let digest = build_image(&["--binary", &release_binary()?], &image)?;
    let pause = dir.join("pause.tar");
    build_image(&["--pause"], &pause)?;
    eprintln!(
        "e2e: image {IMAGE} {digest}, {:.1} MB (tests/e2e/image.sh)",
        std::fs::metadata(&image).map(|m| m.len()).unwrap_or(0) as f64 / 1e6
    );
    let _ = BUILT.set((image.clone(), digest));
    Ok((image, pause))
}

impl Environment {
    pub fn start(tools: Tools) -> Result<Self, String> {
        Self::start_with(tools, &[])
    }

    /// `start`, with more images on the node (each built by `tests/e2e/image.sh ARGUMENTS`).
    pub fn start_with(tools: Tools, more_images: &[Vec<String>]) -> Result<Self, String> {
        crate::pods::remove_leftovers();
        node::remove_leftovers();
        let dir = tempfile::Builder::new().prefix("replica-guard-images-").tempdir().map_err(|e| e.to_string())?;
        let (image, pause) = images(dir.path())?;
        let mut all = vec![pause, image];
        for (i, arguments) in more_images.iter().enumerate() {
            let archive = dir.path().join(format!("more-{i}.tar"));
            let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
            build_image(&arguments, &archive)?;
            all.push(archive);
        }
        let started = Instant::now();
        let (host, placement): (Host, Placement) = node::network()?;
        let cluster = Cluster::start_at(tools, Some(placement))?;
        let node = Node::start(&cluster, &all)?;
        eprintln!(
            "e2e: Kubernetes {} control plane and node {} ready at https://{} in {:.1} s",
            cluster.tools.server_version(),
            node::NAME,
            cluster.api,
            started.elapsed().as_secs_f64()
        );
        Ok(Self { node: Some(node), cluster, _host: host, _images: dir })
    }
}

/// The image archive's runtime config.
fn image_config(archive: &Path) -> serde_json::Value {
    let mut files = std::collections::HashMap::new();
    let listing = std::process::Command::new("tar").arg("tf").arg(archive).output().unwrap();
    for name in String::from_utf8_lossy(&listing.stdout).lines().filter(|n| !n.ends_with('/')) {
        let data = std::process::Command::new("tar").arg("xOf").arg(archive).arg(name).output().unwrap().stdout;
        if data.len() < 1 << 20 {
            files.insert(name.to_string(), data);
        }
    }
    let json = |name: &str| -> serde_json::Value { serde_json::from_slice(&files[name]).unwrap() };
    let index = json("index.json");
    let blob = |digest: &str| format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
    let manifest = json(&blob(index["manifests"][0]["digest"].as_str().unwrap()));
    json(&blob(manifest["config"]["digest"].as_str().unwrap()))
}

/// The Dockerfile's final stage, as the Docker image would start: (user, ports, entrypoint, cmd).
fn dockerfile_final_stage() -> (String, Vec<String>, serde_json::Value, serde_json::Value) {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let last = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    let (mut user, mut ports, mut entrypoint, mut cmd) =
        (String::new(), vec![], serde_json::Value::Null, serde_json::Value::Null);
    for line in &lines[last + 1..] {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "USER" => user = rest.trim().to_string(),
            "EXPOSE" => ports = rest.split_whitespace().map(|p| format!("{p}/tcp")).collect(),
            "ENTRYPOINT" => entrypoint = serde_json::from_str(rest).unwrap(),
            "CMD" => cmd = serde_json::from_str(rest).unwrap(),
            _ => {}
        }
    }
    (user, ports, entrypoint, cmd)
}

fn image_is_the_dockerfiles(_c: &Cluster) {
    let (first, first_digest) = BUILT.get().expect("the node's image was built").clone();
    let config = image_config(&first);
    let (user, ports, entrypoint, cmd) = dockerfile_final_stage();
    assert_eq!(config["config"]["User"], user.as_str(), "the image's user is the Dockerfile's");
    assert_eq!(user, "65532:65532", "non-root");
    let mut exposed: Vec<String> = config["config"]["ExposedPorts"].as_object().unwrap().keys().cloned().collect();
    exposed.sort();
    let mut ports = ports;
    ports.sort();
    assert_eq!(exposed, ports);
    assert_eq!(config["config"]["Entrypoint"], entrypoint);
    assert_eq!(config["config"]["Cmd"], cmd);
    // Twice from the same binary and packages: the same bytes.
    let dir = tempfile::tempdir().unwrap();
    let again = dir.path().join("again.tar");
    let digest = build_image(&["--binary", &release_binary().unwrap()], &again).unwrap();
    assert_eq!(digest, first_digest, "the second build's digest");
    assert_eq!(std::fs::read(&first).unwrap(), std::fs::read(&again).unwrap(), "the same archive, byte for byte");
}

/// The values a platform gives: the registry (the image is the chart's default).
pub fn values(c: &Cluster) -> PathBuf {
    values_with(c, "")
}

/// `values`, with more registry entries.
fn values_with(c: &Cluster, more_entries: &str) -> PathBuf {
    let path = c.dir.join("node-values.yaml");
    // Who may ask: the pods answer only the API server's webhook client certificate.
    let ca: String = c.webhook_client_ca.lines().map(|l| format!("      {l}\n")).collect();
    crate::cluster::write(
        &path,
        &format!(
            "webhook:\n  clientAuth:\n    enabled: true\n    names: [kube-apiserver]\n    caBundle: |\n{ca}policy: {{override: {{groups: [platform-admins]}}}}\nregistry:\n  file:\n    pollIntervalSeconds: 1\n    limits:\n      entries:\n      - {{namespace: {TEAM}, deployment: payments-api, maxReplicas: 4, owner: payments-team@example.com}}\n      - {{namespace: {HELM_TEAM}, deployment: payments-api, maxReplicas: 4}}\n      - {{namespace: {WARN_TEAM}, deployment: api, maxReplicas: 4, mode: warn}}\n{more_entries}"
        ),
    );
    path
}

/// The pods of the release with `label` (`app.kubernetes.io/name=replica-guard`), as JSON.
fn pods(c: &Cluster, selector: &str) -> Vec<serde_json::Value> {
    let ran = c.kubectl("admin", &["get", "pods", "-n", RELEASE, "-l", selector, "-o", "json"]).success();
    let list: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    list["items"].as_array().cloned().unwrap_or_default()
}

pub const WEBHOOK_PODS: &str = "app.kubernetes.io/name=replica-guard,app.kubernetes.io/instance=rg";

/// Whether the pod's Ready condition is True.
fn is_ready(pod: &serde_json::Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// Waits (bounded) until `count` pods of `selector` are Ready, none terminating.
pub fn wait_ready(c: &Cluster, selector: &str, count: usize, limit: Duration) -> Duration {
    let started = Instant::now();
    while started.elapsed() < limit {
        let all = pods(c, selector);
        let ready = all.iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null() && is_ready(p)).count();
        if ready == count && all.len() == count {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let described = c.kubectl("admin", &["describe", "pods", "-n", RELEASE, "-l", selector]);
    panic!("{count} pods of {selector} not Ready within {limit:?}:\n{}", described.stdout);
}

/// The chart, unchanged from the repository.
pub fn chart() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/charts/replica-guard")
}

/// Installs the chart once per run (the stories after the first reuse it).
pub fn installed(c: &Cluster) {
    installed_with(c, "")
}

/// `installed`, with more registry entries (YAML list items indented by six spaces).
pub fn installed_with(c: &Cluster, more_entries: &str) {
    let ran = c.kubectl("admin", &["get", "deploy", "rg-replica-guard", "-n", RELEASE]);
    if ran.ok {
        return;
    }
    for ns in [TEAM, HELM_TEAM, WARN_TEAM] {
        c.namespace(ns);
    }
    let ran = c.helm(&[
        "install",
        "rg",
        chart(),
        "-n",
        RELEASE,
        "--create-namespace",
        "-f",
        &values_with(c, more_entries).display().to_string(),
    ]);
    assert!(ran.ok, "helm install: {}{}", ran.stdout, ran.stderr);
    let webhook = wait_ready(c, WEBHOOK_PODS, 3, Duration::from_secs(180));
    eprintln!("node: helm install, then 3 webhook pods Ready {:.1} s later", webhook.as_secs_f64());
    wait_ready(c, "app.kubernetes.io/name=replica-guard-audit", 1, Duration::from_secs(60));
}

/// The webhook's answer through the Service: retried (bounded) until `check` holds.
fn eventually(what: &str, limit: Duration, check: impl FnMut() -> Result<(), String>) {
    if let Err(last) = retried(limit, check) {
        panic!("{what} not within {limit:?}: {last}");
    }
}

/// Retries `check` every 250 ms until it holds; after `limit`, its last word.
pub fn retried(limit: Duration, mut check: impl FnMut() -> Result<(), String>) -> Result<(), String> {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < limit {
        match check() {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(last)
}

pub fn warned(ran: &Ran, text: &str) -> Result<(), String> {
    if ran.ok && ran.warnings().iter().any(|w| w.contains(text)) {
        Ok(())
    } else {
        Err(format!("no warning {text:?}: {}{}", ran.stdout, ran.stderr))
    }
}

fn helm_install_on_a_real_node(c: &Cluster) {
    installed(c);
    // Pods as the kubelet runs them: the image's user, a read-only root, the memory limit in
    // the kernel's cgroup, no restart.
    for pod in pods(c, WEBHOOK_PODS) {
        let status = &pod["status"]["containerStatuses"][0];
        assert_eq!(status["restartCount"], 0, "{}", pod["metadata"]["name"]);
        assert_eq!(status["image"].as_str().unwrap().trim_start_matches("docker.io/library/"), IMAGE);
        let uid = pod["metadata"]["uid"].as_str().unwrap();
        let (now, _) = Node::pod_memory(uid).expect("the pod's memory cgroup");
        assert!(now > 0 && now < 128 << 20, "{now} bytes, inside the chart's 128 MiB limit");
    }
    // Through the Service: an unregistered Deployment gets the webhook's warning (a dry run), an
    // over-limit one is refused.
    eventually("the webhook's warning through the Service", Duration::from_secs(30), || {
        warned(
            &c.apply("alice", &deployment(TEAM, "unregistered", 2, "nginx:1"), &["--dry-run=server"]),
            "not registered in PED",
        )
    });
    let ran = c.apply("alice", &deployment(TEAM, "payments-api", 6, "nginx:1"), &[]);
    assert!(!ran.ok && ran.stderr.contains("replicas 6 exceeds PED max 4 for team-a/payments-api"), "{}", ran.stderr);
    a_forged_review_from_the_node_gets_nothing(c);
    // The audit pod (in-cluster client: projected token, kube-root-ca.crt, the kubernetes
    // Service through kube-proxy) writes the backstop's parameters under the chart's RBAC.
    eventually("the audit pod's backstop parameters", Duration::from_secs(60), || {
        let ran = c.kubectl(
            "admin",
            &["get", "backstoplimits", "replica-guard", "-n", TEAM, "-o", "jsonpath={.spec.enforced.payments-api}"],
        );
        if ran.ok && ran.stdout == "4" { Ok(()) } else { Err(format!("{}{}", ran.stdout, ran.stderr)) }
    });
}

/// Who may ask, on the node: a review posted to a webhook pod from the node's network without the
/// API server's client certificate is refused in the handshake, counted, and leaves no Event.
fn a_forged_review_from_the_node_gets_nothing(c: &Cluster) {
    let events = c.events_about(TEAM, "payments-api").len();
    let pod = pods(c, WEBHOOK_PODS).into_iter().next().expect("a webhook pod");
    let (name, ip) = (pod["metadata"]["name"].as_str().unwrap(), pod["status"]["podIP"].as_str().unwrap());
    let mut forged = crate::common::fixture_json("deployment-patch-4-to-7.json");
    forged["request"]["namespace"] = TEAM.into();
    forged["request"]["userInfo"]["username"] = "alice@example.com".into();
    let body = c.dir.join("forged-review.json");
    crate::cluster::write(&body, &forged.to_string());
    let curl = crate::cluster::in_placement(&c.placement, Path::new("curl"))
        .args(["-sS", "-k", "--max-time", "5", "-H", "Content-Type: application/json", "--data-binary"])
        .arg(format!("@{}", body.display()))
        .arg(format!("https://{ip}:8443/validate"))
        .output()
        .expect("curl runs");
    let said = String::from_utf8_lossy(&curl.stdout);
    assert!(!curl.status.success() && !said.contains("AdmissionReview"), "a forged review was answered: {said}");
    let refused = pod_metric(c, name, "replica_guard_unauthenticated_connections_total{reason=\"no-certificate\"}");
    assert!(refused.is_some_and(|n| n >= 1.0), "the refused handshake is counted: {refused:?}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(c.events_about(TEAM, "payments-api").len(), events, "no Event for the forged review");
    eprintln!("node: a review without the API server's certificate refused in the handshake ({})", said.trim());
}

/// One sample of a webhook pod's `/metrics` (through the API server's pod proxy).
fn pod_metric(c: &Cluster, pod: &str, series: &str) -> Option<f64> {
    let path = format!("/api/v1/namespaces/{RELEASE}/pods/{pod}:8080/proxy/metrics");
    let metrics = c.kubectl("admin", &["get", "--raw", &path]).success().stdout;
    metrics.lines().find(|l| l.starts_with(series))?.rsplit(' ').next()?.parse().ok()
}

fn every_webhook_pod_gone(c: &Cluster) {
    installed(c);
    c.kubectl("admin", &["scale", "deploy/rg-replica-guard", "-n", RELEASE, "--replicas=0"]).success();
    wait_ready(c, WEBHOOK_PODS, 0, Duration::from_secs(60));
    // failurePolicy Ignore (the default with the backstop): nothing blocks, the policy enforces.
    let ran = c.apply("alice", &deployment(TEAM, "payments-api", 7, "nginx:1"), &[]);
    assert!(
        ran.stderr.contains("ValidatingAdmissionPolicy 'rg-replica-guard-backstop'")
            && ran.stderr.contains("exceeds PED max 4"),
        "{}",
        ran.stderr
    );
    let ran = c.apply("alice", &deployment(TEAM, "unregistered", 2, "nginx:1"), &["--dry-run=server"]).success();
    assert!(ran.warnings().is_empty(), "no webhook, no warning: {:?}", ran.warnings());
    c.kubectl("admin", &["scale", "deploy/rg-replica-guard", "-n", RELEASE, "--replicas=3"]).success();
    wait_ready(c, WEBHOOK_PODS, 3, Duration::from_secs(120));
    eventually("the webhook's warnings back", Duration::from_secs(30), || {
        warned(
            &c.apply("alice", &deployment(TEAM, "unregistered", 2, "nginx:1"), &["--dry-run=server"]),
            "not registered in PED",
        )
    });
}

/// The API server's own count of webhook calls that failed (`fail_open`: ignored under
/// `failurePolicy: Ignore`; `calling_webhook_error`: refused under `Fail`) for replica-guard.
fn failed_calls(c: &Cluster) -> f64 {
    let ran = c.kubectl("admin", &["get", "--raw", "/metrics"]).success();
    ran.stdout
        .lines()
        .filter(|l| l.contains("name=\"validate.replica-guard.io\""))
        .filter(|l| {
            l.starts_with("apiserver_admission_webhook_fail_open_count")
                || (l.starts_with("apiserver_admission_webhook_rejection_count") && l.contains("calling_webhook_error"))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn rollout_restart_under_writes(c: &Cluster) {
    installed(c);
    let names = ["orders-api", "search-api", "cart-api"];
    for name in names {
        c.apply("admin", &deployment(TEAM, name, 2, "nginx:1"), &[]).success();
    }
    for policy in ["Ignore", "Fail"] {
        if policy == "Fail" {
            c.helm(&["upgrade", "rg", chart(), "-n", RELEASE, "--reuse-values", "--set", "webhook.failurePolicy=Fail"])
                .success();
            wait_ready(c, WEBHOOK_PODS, 3, Duration::from_secs(180));
        }
        let hook = c
            .kubectl(
                "admin",
                &[
                    "get",
                    "validatingwebhookconfiguration",
                    "rg-replica-guard",
                    "-o",
                    "jsonpath={.webhooks[0].failurePolicy}",
                ],
            )
            .success();
        assert_eq!(hook.stdout, policy);
        let calls_before = failed_calls(c);
        let writers = crate::chart_stories::Writers::start(c, TEAM, &names);
        let started = Instant::now();
        std::thread::sleep(Duration::from_secs(2));
        c.kubectl("admin", &["rollout", "restart", "deploy/rg-replica-guard", "-n", RELEASE]).success();
        c.kubectl("admin", &["rollout", "status", "deploy/rg-replica-guard", "-n", RELEASE, "--timeout=240s"])
            .success();
        wait_ready(c, WEBHOOK_PODS, 3, Duration::from_secs(120));
        std::thread::sleep(Duration::from_secs(2));
        let (ok, failed) = writers.stop();
        let calls = failed_calls(c) - calls_before;
        eprintln!(
            "node: rollout restart with failurePolicy {policy}: {ok} writes admitted, {} failed, {calls} failed webhook calls (the API server's count) in {:.0} s",
            failed.len(),
            started.elapsed().as_secs_f64()
        );
        assert!(ok > 20, "the writers ran: {ok}");
        assert!(failed.is_empty(), "failed writes during the rollout: {failed:?}");
        assert_eq!(
            calls,
            0.0,
            "webhook calls that failed (and were {})",
            if policy == "Ignore" { "let through unchecked" } else { "refused" }
        );
    }
    c.helm(&["upgrade", "rg", chart(), "-n", RELEASE, "--reuse-values", "--set", "webhook.failurePolicy="]).success();
    wait_ready(c, WEBHOOK_PODS, 3, Duration::from_secs(180));
}

fn registry_edit_through_the_kubelet(c: &Cluster) {
    installed(c);
    // The PED pipeline raises payments-api from 4 to 6 in the chart's registry ConfigMap.
    let patch = format!(
        "{{\"data\":{{\"limits.yaml\":\"entries:\\n- {{namespace: {TEAM}, deployment: payments-api, maxReplicas: 6, owner: payments-team@example.com}}\\n\"}}}}"
    );
    c.kubectl(
        "admin",
        &["patch", "configmap", "rg-replica-guard-registry", "-n", RELEASE, "--type=merge", "-p", &patch],
    )
    .success();
    let edited = Instant::now();
    let mut last = String::new();
    let allowed = (0..900).find_map(|_| {
        let ran = c.apply("alice", &deployment(TEAM, "payments-api", 6, "nginx:1"), &["--dry-run=server"]);
        if ran.ok {
            return Some(edited.elapsed());
        }
        last = ran.stderr;
        std::thread::sleep(Duration::from_millis(250));
        None
    });
    let allowed = allowed.unwrap_or_else(|| panic!("6 replicas still refused 225 s after the registry edit: {last}"));
    eprintln!(
        "node: a registry edit in the chart's ConfigMap allowed the raised replicas (webhook and backstop) after {:.1} s (the kubelet's volume update; the file source's delay)",
        allowed.as_secs_f64()
    );
}

fn drain_respects_the_budget(c: &Cluster) {
    installed(c);
    wait_ready(c, WEBHOOK_PODS, 3, Duration::from_secs(120));
    // One node: the evicted pod's replacement cannot be scheduled (the node is cordoned), so after
    // the first eviction the budget (maxUnavailable 1) refuses the next.
    let ran = c.kubectl(
        "admin",
        &[
            "drain",
            node::NAME,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--pod-selector",
            WEBHOOK_PODS,
            "--timeout=20s",
        ],
    );
    c.kubectl("admin", &["uncordon", node::NAME]).success();
    assert!(!ran.ok, "drain of the only node must stop at the budget: {}", ran.stdout);
    assert!(
        ran.stderr.contains("disruption budget") || ran.stdout.contains("disruption budget"),
        "the budget is what stopped it: {}{}",
        ran.stdout,
        ran.stderr
    );
    let ready = pods(c, WEBHOOK_PODS).iter().filter(|p| is_ready(p)).count();
    assert!(ready >= 2, "the budget kept 2 of 3 webhook pods serving during the drain: {ready}");
    wait_ready(c, WEBHOOK_PODS, 3, Duration::from_secs(120));
}

/// The chart's generated CA (the Secret's `ca.crt`).
fn chart_ca(c: &Cluster) -> String {
    let ran = c
        .kubectl("admin", &["get", "secret", "rg-replica-guard-tls", "-n", RELEASE, "-o", "jsonpath={.data.ca\\.crt}"])
        .success();
    use base64::Engine;
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(ran.stdout.trim()).unwrap()).unwrap()
}

fn hostile_load_within_the_memory_limit(c: &Cluster) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    installed(c);
    wait_ready(c, WEBHOOK_PODS, 3, Duration::from_secs(120));
    let target = pods(c, WEBHOOK_PODS)[0].clone();
    let (name, uid) = (
        target["metadata"]["name"].as_str().unwrap().to_string(),
        target["metadata"]["uid"].as_str().unwrap().to_string(),
    );
    let address: std::net::SocketAddr =
        format!("{}:8443", target["status"]["podIP"].as_str().unwrap()).parse().unwrap();
    let ca = chart_ca(c);
    // As a caller the pods let in (the API server's client certificate): client-certificate mode
    // keeps a tenant out at the handshake (the install story), so what bounds memory for one that
    // gets through is the body budget, and that is what this load must reach.
    let identity = Arc::new((
        std::fs::read_to_string(c.dir.join("pki/webhook-client.crt")).unwrap(),
        std::fs::read_to_string(c.dir.join("pki/webhook-client.key")).unwrap(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let connected = Arc::new(AtomicUsize::new(0));
    // The tenant's load, from inside the node's network (where pod addresses route).
    let load = {
        let (stop, sent, connected) = (stop.clone(), sent.clone(), connected.clone());
        in_node_network_background(c, async move || {
            {
                use tokio::io::AsyncWriteExt;
                let body = Arc::new(vec![b'x'; 3 * 1024 * 1024 - 1]);
                let mut uploads = vec![];
                for _ in 0..1000 {
                    let (ca, body, stop, sent, connected, identity) =
                        (ca.clone(), body.clone(), stop.clone(), sent.clone(), connected.clone(), identity.clone());
                    uploads.push(tokio::spawn(async move {
                        let Ok(Ok(tcp)) = tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect(address)).await else { return };
                        let connector = crate::common::tls_connector_as(&ca, &[b"http/1.1"], Some((&identity.0, &identity.1)));
                        let server = rustls::pki_types::ServerName::try_from("rg-replica-guard.replica-guard.svc").unwrap();
                        let Ok(Ok(mut tls)) = tokio::time::timeout(Duration::from_secs(20), connector.connect(server, tcp)).await else { return };
                        connected.fetch_add(1, Ordering::Relaxed);
                        let head = "POST /validate HTTP/1.1\r\nHost: rg-replica-guard\r\nContent-Type: application/json\r\nContent-Length: 3145728\r\n\r\n";
                        let send = async {
                            tls.write_all(head.as_bytes()).await?;
                            tls.write_all(&body).await?;
                            tls.flush().await
                        };
                        if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(20), send).await {
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                        // Held open, the last byte never sent, until the story ends (bounded).
                        for _ in 0..600 {
                            if stop.load(Ordering::Relaxed) {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }));
                }
                for upload in uploads {
                    let _ = upload.await;
                }
            }
        })
    };
    // Meanwhile the webhook still answers (the API server spreads calls over the three pods).
    std::thread::sleep(Duration::from_secs(8));
    let mut answered = 0;
    for _ in 0..10 {
        let ran = c.apply("alice", &deployment(TEAM, "unregistered", 2, "nginx:1"), &["--dry-run=server"]);
        if warned(&ran, "not registered in PED").is_ok() {
            answered += 1;
        }
    }
    let (_, during) = Node::pod_memory(&uid).expect("the pod's memory cgroup");
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let (now, peak) = Node::pod_memory(&uid).expect("the pod's memory cgroup");
    eprintln!(
        "node: {} TLS clients uploading 3 MiB each against {name} ({} bodies sent whole, the rest held back by the body budget): its cgroup's peak memory {:.1} MiB (limit 128 MiB; {:.1} MiB after), {answered}/10 dry runs answered meanwhile",
        connected.load(Ordering::Relaxed),
        sent.load(Ordering::Relaxed),
        peak.max(during) as f64 / 1048576.0,
        now as f64 / 1048576.0
    );
    assert!(answered >= 8, "reviews answered during the load: {answered}/10");
    let shed = pod_metric(c, &name, "replica_guard_requests_shed_total{reason=\"body-budget\"}").unwrap_or(0.0);
    let uploaded = sent.load(Ordering::Relaxed) as f64 + shed;
    assert!(
        uploaded >= 100.0,
        "the load reached the body budget: {shed} shed, {} sent whole",
        sent.load(Ordering::Relaxed)
    );
    assert!(peak < 128 << 20, "peak {peak} bytes, inside the chart's 128 MiB limit");
    for pod in pods(c, WEBHOOK_PODS) {
        let status = &pod["status"]["containerStatuses"][0];
        assert_eq!(status["restartCount"], 0, "{}: {}", pod["metadata"]["name"], status);
        assert!(status["lastState"]["terminated"].is_null(), "{}: {}", pod["metadata"]["name"], status);
    }
}

/// Runs `work` on a runtime whose threads are in the node's network namespace (pod addresses
/// route there, not on the machine).
fn in_node_network<T: Send + 'static>(c: &Cluster, work: impl AsyncFnOnce() -> T + Send + 'static) -> T {
    in_node_network_background(c, work).join().unwrap()
}

/// `in_node_network` on a thread of its own, returned to join.
fn in_node_network_background<T: Send + 'static>(
    c: &Cluster,
    work: impl AsyncFnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let netns = c.placement.as_ref().unwrap().netns.clone();
    std::thread::spawn(move || {
        let ns = std::fs::File::open(format!("/run/netns/{netns}")).unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: setns(2) on this thread only, with a namespace file we opened; the runtime's
        // threads are this one.
        assert_eq!(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns");
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(work())
    })
}

/// Whether a TLS handshake with `address` succeeds trusting only `ca` (so: whether the server
/// serves a certificate that CA signed).
async fn serves_certificate_of(address: std::net::SocketAddr, ca: &str) -> bool {
    let Ok(Ok(tcp)) = tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(address)).await
    else {
        return false;
    };
    let connector = crate::common::tls_connector(ca, &[b"http/1.1"]);
    let server = rustls::pki_types::ServerName::try_from("rg-replica-guard.replica-guard.svc").unwrap();
    matches!(tokio::time::timeout(Duration::from_secs(3), connector.connect(server, tcp)).await, Ok(Ok(_)))
}

fn certificate_rotation_through_the_kubelet(c: &Cluster) {
    use base64::Engine;
    let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(t);
    installed(c);
    wait_ready(c, WEBHOOK_PODS, 3, Duration::from_secs(120));
    let old_ca = chart_ca(c);
    let new = crate::cluster::Pki::new("rotated CA");
    let (cert, key) = new.sign(
        &[
            "rg-replica-guard",
            "rg-replica-guard.replica-guard",
            "rg-replica-guard.replica-guard.svc",
            "rg-replica-guard.replica-guard.svc.cluster.local",
        ],
        None,
    );
    // 1. The API server trusts both CAs (what cert-manager's CA injector or an upgrade does first).
    let both = format!("{}{}", old_ca, new.ca_pem);
    let patch = format!(r#"[{{"op":"replace","path":"/webhooks/0/clientConfig/caBundle","value":"{}"}}]"#, b64(&both));
    c.kubectl("admin", &["patch", "validatingwebhookconfiguration", "rg-replica-guard", "--type=json", "-p", &patch])
        .success();
    let names = ["orders-api", "search-api", "cart-api"];
    for name in names {
        c.apply("admin", &deployment(TEAM, name, 2, "nginx:1"), &[]).success();
    }
    let calls_before = failed_calls(c);
    let writers = crate::chart_stories::Writers::start(c, TEAM, &names);
    // 2. The Secret is updated; the kubelet rewrites the pods' volume (an atomic ..data swap).
    let patch = format!(
        r#"{{"data":{{"tls.crt":"{}","tls.key":"{}","ca.crt":"{}"}}}}"#,
        b64(&cert),
        b64(&key),
        b64(&new.ca_pem)
    );
    c.kubectl("admin", &["patch", "secret", "rg-replica-guard-tls", "-n", RELEASE, "--type=merge", "-p", &patch])
        .success();
    let updated = Instant::now();
    let addresses: Vec<std::net::SocketAddr> = pods(c, WEBHOOK_PODS)
        .iter()
        .map(|p| format!("{}:8443", p["status"]["podIP"].as_str().unwrap()).parse().unwrap())
        .collect();
    let ca = new.ca_pem.clone();
    let rotated = in_node_network(c, async move || {
        for _ in 0..600 {
            let mut all = true;
            for address in &addresses {
                all &= serves_certificate_of(*address, &ca).await;
            }
            if all {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        false
    });
    let took = updated.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let (ok, failed) = writers.stop();
    let calls = failed_calls(c) - calls_before;
    eprintln!(
        "node: every webhook pod served the new certificate {:.1} s after the Secret update (the kubelet's volume sync, then server.tls.reloadIntervalSeconds); {ok} writes admitted, {} failed, {calls} failed webhook calls",
        took.as_secs_f64(),
        failed.len()
    );
    assert!(rotated, "the pods never served the new certificate");
    assert!(failed.is_empty(), "failed writes during the rotation: {failed:?}");
    assert_eq!(calls, 0.0, "webhook calls that failed during the rotation");
    // 3. The old CA leaves the bundle; admissions still work, no pod restarted.
    let patch =
        format!(r#"[{{"op":"replace","path":"/webhooks/0/clientConfig/caBundle","value":"{}"}}]"#, b64(&new.ca_pem));
    c.kubectl("admin", &["patch", "validatingwebhookconfiguration", "rg-replica-guard", "--type=json", "-p", &patch])
        .success();
    eventually("the webhook's warning with the new CA alone", Duration::from_secs(30), || {
        warned(
            &c.apply("alice", &deployment(TEAM, "unregistered", 2, "nginx:1"), &["--dry-run=server"]),
            "not registered in PED",
        )
    });
    for pod in pods(c, WEBHOOK_PODS) {
        assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0, "{}", pod["metadata"]["name"]);
    }
}

/// What the user reads when the API server's own policy refuses (it runs before any webhook).
fn refused(ran: &Ran, text: &str) -> Result<(), String> {
    if !ran.ok && ran.stderr.contains(text) {
        Ok(())
    } else {
        Err(format!("not refused with {text:?}: {}{}", ran.stdout, ran.stderr))
    }
}

/// The events.k8s.io Events about `name` in `ns` from `controller`'s pods, waited for (bounded).
fn wait_for_event(c: &Cluster, ns: &str, name: &str, reason: &str, limit: Duration) -> serde_json::Value {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(event) = c.events_about(ns, name).into_iter().find(|e| e["reason"] == reason) {
            return event;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("no {reason} Event about {ns}/{name} within {limit:?}: {:?}", c.events_about(ns, name));
}

fn readme_stories_through_the_real_pods(c: &Cluster) {
    installed(c);
    let mut wrong = vec![];
    let mut check = |what: &str, result: Result<(), String>| {
        if let Err(e) = result {
            wrong.push(format!("{what}: {e}"));
        }
    };
    let app = |replicas, image: &str| deployment(TEAM, "payments-api", replicas, image);
    let ran = c.apply("alice", &app(3, "registry.example/payments:1.4.0"), &[]);
    check(
        "apply within the limit is silent",
        if ran.ok && ran.warnings().is_empty() { Ok(()) } else { Err(ran.stderr) },
    );
    let ran = c.apply("alice", &app(6, "registry.example/payments:1.5.0"), &[]);
    check(
        "a redeploy raising replicas and the image",
        refused(
            &ran,
            "replicas 3 -> 6 exceeds PED max 4 for team-a/payments-api. To deploy, lower spec.replicas to 4 or less",
        ),
    );
    check(
        "nothing of it applied",
        if crate::webhook::replicas(c, TEAM, "payments-api") == "3" { Ok(()) } else { Err("replicas changed".into()) },
    );
    let ran = c.apply("alice", &app(6, "registry.example/payments:1.5.0"), &["--dry-run=server"]);
    check("the same answer to --dry-run=server", refused(&ran, "replicas 3 -> 6 exceeds PED max 4"));
    let ran = c.kubectl("alice", &["scale", "deploy/payments-api", "-n", TEAM, "--replicas=9"]);
    check("kubectl scale above", refused(&ran, "replicas 3 -> 9 exceeds PED max 4"));
    for to in ["0", "3"] {
        let ran = c.kubectl("alice", &["scale", "deploy/payments-api", "-n", TEAM, &format!("--replicas={to}")]);
        check("kubectl scale to 0 and back", if ran.ok { Ok(()) } else { Err(ran.stderr) });
    }
    let ran = c.kubectl("alice", &["autoscale", "deploy/payments-api", "-n", TEAM, "--min=2", "--max=10", "--cpu=70%"]);
    check("kubectl autoscale above", refused(&ran, "HPA maxReplicas 10 exceeds PED max 4"));
    let ran = c.kubectl("alice", &["autoscale", "deploy/payments-api", "-n", TEAM, "--min=2", "--max=4", "--cpu=70%"]);
    check("kubectl autoscale within", if ran.ok { Ok(()) } else { Err(ran.stderr) });
    c.kubectl("alice", &["delete", "hpa", "payments-api", "-n", TEAM]).success();
    // The break-glass override: the backstop lets platform-admins through, the webhook (a real
    // pod) says it was used.
    let annotated = crate::webhook::deployment_with(
        TEAM,
        "payments-api",
        6,
        "registry.example/payments:1.5.0",
        "    replica-guard.io/override: \"INC-4711 black friday\"",
    );
    let ran = c.apply("alice", &annotated, &[]);
    check("the override by a team member", refused(&ran, "replicas 3 -> 6 exceeds PED max 4"));
    let ran = c.apply("bob", &annotated, &[]);
    check(
        "the override by platform-admins",
        if ran.ok
            && ran
                .warnings()
                .iter()
                .any(|w| w.starts_with("allowed by break-glass override: replicas 3 -> 6 exceeds PED max 4"))
        {
            Ok(())
        } else {
            Err(format!("{:?} {}", ran.warnings(), ran.stderr))
        },
    );
    let ran = c.kubectl("alice", &["scale", "deploy/payments-api", "-n", TEAM, "--replicas=3"]);
    check("back within after the incident", if ran.ok { Ok(()) } else { Err(ran.stderr) });
    // A warn-mode entry: the webhook's alone; its warning reaches kubectl from a real pod.
    let ran = c.apply("alice", &deployment(WARN_TEAM, "api", 6, "nginx:1"), &[]);
    check(
        "a warn-mode entry over its limit",
        if ran.ok && ran.warnings().iter().any(|w| w.starts_with("replicas 6 exceeds PED max 4 for team-w/api")) {
            Ok(())
        } else {
            Err(format!("{:?} {}", ran.warnings(), ran.stderr))
        },
    );
    // Helm: install within passes, upgrade above fails and applies nothing.
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/charts/payments-api");
    let ran = c.helm(&["install", "payments", chart, "-n", HELM_TEAM, "--set", "replicas=3"]);
    check("helm install within", if ran.ok { Ok(()) } else { Err(ran.stderr) });
    let ran =
        c.helm(&["upgrade", "payments", chart, "-n", HELM_TEAM, "--set", "replicas=6", "--set", "image.tag=1.5.0"]);
    check("helm upgrade above", refused(&ran, "replicas 3 -> 6 exceeds PED max 4"));
    check(
        "nothing of the upgrade applied",
        if crate::webhook::replicas(c, HELM_TEAM, "payments-api") == "3" {
            Ok(())
        } else {
            Err("replicas changed".into())
        },
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // What the pods write through their in-cluster clients (projected token, the kubernetes
    // Service through kube-proxy), under the chart's RBAC only: the webhook's Events, the audit
    // pod's Event and its usage state.
    let warned = wait_for_event(c, WARN_TEAM, "api", "ReplicasAboveLimit", Duration::from_secs(30));
    assert_eq!(warned["reportingController"], "replica-guard", "{warned}");
    let honoured = wait_for_event(c, TEAM, "payments-api", "OverrideHonoured", Duration::from_secs(30));
    assert!(honoured["note"].as_str().unwrap_or("").contains("bob@example.com"), "{honoured}");
    let over = wait_for_event(c, WARN_TEAM, "api", "AboveRegisteredLimit", Duration::from_secs(90));
    assert!(
        over["reportingInstance"].as_str().unwrap_or("").contains("rg-replica-guard-audit"),
        "the audit pod's: {over}"
    );
    let started = Instant::now();
    let state = loop {
        let ran = c.kubectl("admin", &["get", "configmap", "rg-replica-guard-usage", "-n", RELEASE, "-o", "json"]);
        if ran.ok {
            break ran.stdout;
        }
        assert!(started.elapsed() < Duration::from_secs(90), "no usage state ConfigMap: {}", ran.stderr);
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(state.contains("payments-api") && state.contains("api"), "the day's highs are kept: {state}");
}

/// The saved replicas highs of `ns` in the audit pod's usage state (every shard), and who stands
/// announced over its limit there.
fn saved_usage(c: &Cluster, ns: &str) -> (std::collections::HashMap<String, i64>, Vec<String>) {
    let ran = c.kubectl("admin", &["get", "configmaps", "-n", RELEASE, "-o", "json"]).success();
    let list: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    let rows: Vec<serde_json::Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|cm| cm["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("rg-replica-guard-usage")))
        .filter_map(|cm| serde_json::from_str::<Vec<serde_json::Value>>(cm["data"]["workloads"].as_str()?).ok())
        .flatten()
        .filter(|r| r[0] == ns)
        .collect();
    let highs = rows.iter().map(|r| (r[1].as_str().unwrap().to_string(), r[2].as_i64().unwrap())).collect();
    let announced = rows.iter().filter(|r| r[8] == true).map(|r| r[1].as_str().unwrap().to_string()).collect();
    (highs, announced)
}

/// The chart's audit pod, replaced by `kubectl rollout restart` (the kubelet's SIGTERM, the
/// chart's Recreate strategy): what it held a second before is not lost, and what happened while
/// it was away is announced once by the next pod.
fn audit_pod_rollout_loses_nothing(c: &Cluster) {
    use crate::fresh_limits::{restore, upgrade, write_configmap};
    installed(c);
    let ns = "team-u";
    c.namespace(ns);
    for name in ["grow", "spike", "over"] {
        c.apply("admin", &deployment(ns, name, 3, "nginx:1"), &[]).success();
    }
    let limits = |over: i32| {
        format!(
            "entries:\n- {{namespace: {ns}, deployment: grow, maxReplicas: 8}}\n- {{namespace: {ns}, deployment: spike, maxReplicas: 8}}\n- {{namespace: {ns}, deployment: over, maxReplicas: {over}}}\n"
        )
    };
    write_configmap(c, &limits(4));
    upgrade(c, &["registry.source=configMap".to_string()]);
    eventually("the audit pod's first pass saved", Duration::from_secs(90), || {
        match saved_usage(c, ns).0.get("over") {
            Some(3) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let above = || c.events_about(ns, "over").iter().filter(|e| e["reason"] == "AboveRegisteredLimit").count();
    // A second before the rollout: two new highs, and "over" put over its limit by a lowered entry
    // (the audit's next pass is up to 30 s away).
    c.kubectl("admin", &["scale", "deploy/grow", "-n", ns, "--replicas=7"]).success();
    for n in [7, 3] {
        c.kubectl("admin", &["scale", "deploy/spike", "-n", ns, &format!("--replicas={n}")]).success();
    }
    write_configmap(c, &limits(2));
    std::thread::sleep(Duration::from_secs(1));
    let restarted = Instant::now();
    c.kubectl("admin", &["rollout", "restart", "deploy/rg-replica-guard-audit", "-n", RELEASE]).success();
    c.kubectl("admin", &["rollout", "status", "deploy/rg-replica-guard-audit", "-n", RELEASE, "--timeout=240s"])
        .success();
    wait_ready(c, "app.kubernetes.io/name=replica-guard-audit", 1, Duration::from_secs(120));
    eprintln!(
        "node: the audit pod replaced and Ready {:.1} s after rollout restart",
        restarted.elapsed().as_secs_f64()
    );
    let (highs, _) = saved_usage(c, ns);
    assert_eq!(
        (highs.get("grow"), highs.get("spike")),
        (Some(&7), Some(&7)),
        "the highs of the second before: {highs:?}"
    );
    eventually("one Event for the workload over its limit", Duration::from_secs(60), || match above() {
        1 => Ok(()),
        n => Err(format!("{n} Events")),
    });
    eventually("its announcement saved", Duration::from_secs(60), || {
        if saved_usage(c, ns).1.contains(&"over".to_string()) { Ok(()) } else { Err("not yet".into()) }
    });
    // Replaced once more: nothing to announce again.
    c.kubectl("admin", &["rollout", "restart", "deploy/rg-replica-guard-audit", "-n", RELEASE]).success();
    c.kubectl("admin", &["rollout", "status", "deploy/rg-replica-guard-audit", "-n", RELEASE, "--timeout=240s"])
        .success();
    wait_ready(c, "app.kubernetes.io/name=replica-guard-audit", 1, Duration::from_secs(120));
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(above(), 1, "not announced again by the next audit pod");
    restore(c);
}
