//! Kubernetes Events from admission, as `kubectl get events` shows them to a platform team.

use crate::Scenario;
use crate::cluster::Cluster;
use crate::common::ServeProcess;
use crate::webhook::{configuration, denied_with, deployment, registry};
use std::time::Duration;

pub fn all() -> Vec<Scenario> {
    vec![("events: a denial leaves an Event, repeats aggregate, a dry run leaves none", denial_events)]
}

fn denial_events(c: &Cluster) {
    let ns = "s-events";
    c.namespace(ns);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("limits.yaml"), registry(ns, 4)).unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "server:\n  address: 127.0.0.1:0\n  adminAddress: 127.0.0.1:0\n  tls: {certFile: certs/tls.crt, keyFile: certs/tls.key, generateDevCertificate: true}\nregistry: {file: {path: limits.yaml}}\nevents: {enabled: true}\nlogging: {format: json}\n",
    )
    .unwrap();
    // The chart's RBAC for Events, through a token of its ServiceAccount.
    let kinds = ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"];
    let (applied, kubeconfig) = c.chart_account("rg-events", "audit: {enabled: false}\n", &kinds, "rg-replica-guard");
    assert_eq!(applied, 3, "the chart's ServiceAccount and the Events ClusterRole and binding");
    let process = ServeProcess::start_config(dir, &config, &[("KUBECONFIG", kubeconfig.display().to_string())]);
    let name = format!("rg-{ns}");
    c.apply(
        "admin",
        &configuration(&name, ns, &format!("https://{}/validate", process.https), &process.ca_pem, "Fail"),
        &[],
    )
    .success();
    std::thread::sleep(Duration::from_secs(1));
    for deployment_name in ["payments-api", "orders-api"] {
        c.apply("admin", &deployment(ns, deployment_name, 3, "nginx:1"), &[]).success();
    }
    // A dry run: the same answer, no Event.
    let dry = c.apply("alice", &deployment(ns, "orders-api", 12, "nginx:1"), &["--dry-run=server"]);
    assert!(denied_with(&dry, "replicas 3 -> 12 exceeds PED max 4"), "{}", dry.stderr);
    // Three denied applies of the same change.
    for _ in 0..3 {
        let ran = c.apply("alice", &deployment(ns, "payments-api", 6, "nginx:2"), &[]);
        assert!(denied_with(&ran, "replicas 3 -> 6 exceeds PED max 4"), "{}", ran.stderr);
    }
    let mut events = vec![];
    for _ in 0..50 {
        events = c.events_about(ns, "payments-api");
        if events.first().is_some_and(|e| e["series"]["count"].as_i64().unwrap_or(1) >= 3) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(events.len(), 1, "repeats aggregate into one Event: {events:#?}");
    let event = &events[0];
    assert_eq!(event["reason"], "ReplicasAboveLimitDenied");
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["action"], "Denied");
    assert_eq!(event["reportingController"], "replica-guard");
    assert_eq!(event["regarding"]["kind"], "Deployment");
    let note = event["note"].as_str().unwrap();
    assert!(note.starts_with("replicas 3 -> 6 exceeds PED max 4 for s-events/payments-api."), "{note}");
    assert!(note.contains("(user: alice@example.com, UPDATE Deployment)"), "{note}");
    assert!(event["series"]["count"].as_i64().unwrap() >= 3, "{event:#}");
    // What `kubectl get events` shows a platform team.
    let listed = c.kubectl("admin", &["get", "events", "-n", ns]).success().stdout;
    assert!(listed.contains("ReplicasAboveLimitDenied") && listed.contains("deployment/payments-api"), "{listed}");
    assert!(c.events_about(ns, "orders-api").is_empty(), "the dry run left no Event");
    c.kubectl("admin", &["delete", "validatingwebhookconfiguration", &name]).success();
}
