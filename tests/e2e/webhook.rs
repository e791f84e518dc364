//! replica-guard as the API server meets it in the user stories: the release binary as a process
//! on 127.0.0.1 (a dev certificate with the `IP:127.0.0.1` SAN), registered with a `url:`
//! clientConfig and a namespaceSelector for its story's namespace only, so a story that fails
//! leaves nothing that touches the next one. It answers only the API server: every story runs
//! with `server.tls.clientAuth` on, trusting the CA of the client certificate the suite's API
//! server presents to webhooks (`Cluster::webhook_client_ca`).

use crate::cluster::{Cluster, Ran};
use crate::common::ServeProcess;
use base64::Engine;

/// The registry of the stories: `payments-api` and `orders-api` may run 4 replicas in every
/// story namespace (a namespace default would hide "unregistered"; the entries are per namespace).
pub fn registry(namespace: &str, max: i32) -> String {
    format!(
        "entries:\n  - {{namespace: {namespace}, deployment: payments-api, maxReplicas: {max}, owner: payments-team@example.com}}\n  - {{namespace: {namespace}, deployment: orders-api, maxReplicas: {max}}}\n"
    )
}

/// A running webhook registered for one namespace; unregistered and stopped when dropped.
pub struct Registered<'a> {
    pub cluster: &'a Cluster,
    pub process: ServeProcess,
    pub name: String,
    pub namespace: String,
}

/// The policy the README's examples use: enforce, platform-admins may override.
pub const POLICY: &str = "mode: enforce\noverride: {groups: [platform-admins]}";

impl<'a> Registered<'a> {
    /// Starts replica-guard with `policy` and `registry` and registers it for `namespace`, with
    /// `failurePolicy`.
    pub fn start(cluster: &'a Cluster, namespace: &str, policy: &str, registry: &str, failure: &str) -> Self {
        Self::start_reporting(cluster, namespace, policy, registry, failure, None)
    }

    /// `start`, writing Events through `events` (a kubeconfig of the chart's ServiceAccount) when given.
    pub fn start_reporting(
        cluster: &'a Cluster,
        namespace: &str,
        policy: &str,
        registry: &str,
        failure: &str,
        events: Option<&std::path::Path>,
    ) -> Self {
        let process = Self::answering_only_the_api_server(cluster, policy, registry, events);
        let name = format!("rg-{namespace}");
        let url = format!("https://{}/validate", process.https);
        cluster.apply("admin", &configuration(&name, namespace, &url, &process.ca_pem, failure), &[]).success();
        let registered = Self { cluster, process, name, namespace: namespace.to_string() };
        registered.wait_until_called();
        registered
    }

    /// `serve` with `server.tls.clientAuth`: the API server's client CA, its name.
    fn answering_only_the_api_server(
        cluster: &Cluster,
        policy: &str,
        registry: &str,
        events: Option<&std::path::Path>,
    ) -> ServeProcess {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("api-server-client-ca.crt");
        std::fs::write(&ca, &cluster.webhook_client_ca).unwrap();
        let tls = format!(", clientAuth: {{caFile: '{}', names: [kube-apiserver]}}", ca.display());
        // The lines after `server:`'s own: an unindented one starts the top-level `events:`.
        let after_server = if events.is_some() { "events: {enabled: true}" } else { "" };
        let config = crate::common::write_serve_config_tls(dir.path(), after_server, policy, registry, &tls);
        let env: Vec<(&str, String)> = events.map(|k| ("KUBECONFIG", k.display().to_string())).into_iter().collect();
        ServeProcess::start_config(dir, &config, &env)
    }

    /// The API server picks up a new webhook configuration within a second or so: dry-run the
    /// create of an unregistered Deployment until the webhook answers it (a warning or a denial).
    fn wait_until_called(&self) {
        let probe = deployment(&self.namespace, "rg-probe", 1, "nginx:1");
        for _ in 0..100 {
            let ran = self.cluster.apply("admin", &probe, &["--dry-run=server"]);
            if !ran.warnings().is_empty() || ran.stderr.contains("replica-guard") {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the API server never called the webhook {}", self.name);
    }

    /// The webhook's metric sample, e.g. `replica_guard_violations_total{...}`; 0 when absent.
    pub fn metric(&self, name_and_labels: &str) -> f64 {
        let text = http_get(self.process.admin, "/metrics");
        text.lines().find_map(|l| l.strip_prefix(name_and_labels).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
    }

    /// How many AdmissionReviews the webhook answered so far, whatever the decision.
    pub fn reviews(&self) -> f64 {
        reviews_answered(self.process.admin)
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        let _ = self.cluster.kubectl("admin", &["delete", "validatingwebhookconfiguration", &self.name]);
    }
}

/// The chart's webhook rules, for one namespace.
pub fn configuration(name: &str, namespace: &str, url: &str, ca_pem: &str, failure: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: {name}}}
webhooks:
- name: validate.replica-guard.io
  clientConfig: {{url: "{url}", caBundle: {ca}}}
  rules:
  - {{apiGroups: [apps], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [deployments]}}
  - {{apiGroups: [apps], apiVersions: [v1], operations: [UPDATE], resources: [deployments/scale]}}
  - {{apiGroups: [autoscaling], apiVersions: ["*"], operations: [CREATE, UPDATE], resources: [horizontalpodautoscalers]}}
  namespaceSelector: {{matchLabels: {{replica-guard-e2e: {namespace}}}}}
  admissionReviewVersions: [v1]
  sideEffects: NoneOnDryRun
  timeoutSeconds: 3
  failurePolicy: {failure}
"#
    )
}

/// A Deployment manifest as a team keeps it in Git (2 vCPU / 4Gi per pod).
pub fn deployment(namespace: &str, name: &str, replicas: i32, image: &str) -> String {
    deployment_with(namespace, name, replicas, image, "")
}

/// `deployment` with extra annotations (YAML lines indented by four spaces, e.g. the override).
pub fn deployment_with(namespace: &str, name: &str, replicas: i32, image: &str, annotations: &str) -> String {
    let annotations = if annotations.is_empty() { String::new() } else { format!("  annotations:\n{annotations}\n") };
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {namespace}
{annotations}spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: api
        image: {image}
        resources: {{requests: {{cpu: "2", memory: 4Gi}}}}
"#
    )
}

/// The replicas of a live Deployment.
pub fn replicas(cluster: &Cluster, namespace: &str, name: &str) -> String {
    cluster
        .kubectl("admin", &["get", "deploy", name, "-n", namespace, "-o", "jsonpath={.spec.replicas}"])
        .success()
        .stdout
}

/// Whether a command's error output is replica-guard's denial containing `text`.
pub fn denied_with(ran: &Ran, text: &str) -> bool {
    !ran.ok
        && ran.stderr.contains("admission webhook \"validate.replica-guard.io\" denied the request")
        && ran.stderr.contains(text)
}

/// A plain HTTP/1.1 GET (an admin listener); the whole response, or empty when it does not answer.
pub fn http_get(address: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(address) else { return String::new() };
    let _ = write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text
}

/// The sum of `replica_guard_admission_requests_total` over its labels on one admin listener:
/// how many AdmissionReviews that process answered.
pub fn reviews_answered(admin: std::net::SocketAddr) -> f64 {
    let text = http_get(admin, "/metrics");
    text.lines()
        .filter(|l| l.starts_with("replica_guard_admission_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
