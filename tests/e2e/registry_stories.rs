//! The ConfigMap registry source against the real API server, with the chart's RBAC: a token of
//! the chart's ServiceAccount (TokenRequest) reads and watches its one ConfigMap and nothing
//! else; the registry follows edits, survives a broken edit, a deletion and an API server restart.

use crate::Scenario;
use crate::cluster::Cluster;
use crate::common::ServeProcess;
use crate::webhook::{configuration, denied_with, deployment};
use std::time::Duration;

pub fn all() -> Vec<Scenario> {
    vec![(
        "configMap registry: the chart's RBAC, edits, a broken edit, delete, re-create, API server restart",
        configmap_registry,
    )]
}

fn limits(ns: &str, max: i32) -> String {
    format!("entries:\n  - {{namespace: {ns}, deployment: payments-api, maxReplicas: {max}}}\n")
}

fn configmap(release_ns: &str, text: &str) -> String {
    let indented: String = text.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: ped-limits, namespace: {release_ns}}}\ndata:\n  limits.yaml: |\n{indented}"
    )
}

/// Retries `apply` of `replicas` until the answer matches `denied` (the registry is read by a
/// watch: an edit arrives within a moment, not at once).
fn eventually(c: &Cluster, ns: &str, replicas: i32, expect_denied: Option<&str>) {
    let manifest = deployment(ns, "payments-api", replicas, "nginx:1");
    let mut last = String::new();
    for _ in 0..60 {
        let ran = c.apply("alice", &manifest, &["--dry-run=server"]);
        let ok = match expect_denied {
            Some(text) => denied_with(&ran, text),
            None => ran.ok,
        };
        if ok {
            return;
        }
        last = ran.stderr;
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("replicas {replicas}: expected {expect_denied:?}, last answer: {last}");
}

fn configmap_registry(c: &Cluster) {
    let (release_ns, ns) = ("rg-configmap", "s-configmap");
    c.namespace(ns);
    let values = "registry: {source: configMap}\nevents: {enabled: false}\naudit: {enabled: false}\n";
    // The pod's token, as the kubelet would project it (TokenRequest).
    let kinds = ["ServiceAccount", "Role", "RoleBinding"];
    let (applied, kubeconfig) = c.chart_account(release_ns, values, &kinds, "rg-replica-guard");
    assert_eq!(applied, 3, "the chart grants the configMap source a ServiceAccount, a Role and a RoleBinding");
    c.apply("admin", &configmap(release_ns, &limits(ns, 4)), &[]).success();
    c.apply(
        "admin",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other, namespace: rg-configmap}\ndata: {x: \"1\"}\n",
        &[],
    )
    .success();

    let as_sa = |args: &[&str]| {
        let kubectl = c.tools.kubectl.display().to_string();
        let out = std::process::Command::new(kubectl).arg("--kubeconfig").arg(&kubeconfig).args(args).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    assert!(as_sa(&["get", "configmap", "ped-limits"]).0, "the token reads its ConfigMap");
    for forbidden in [
        &["get", "configmap", "other"][..],
        &["get", "configmaps"],
        &["get", "secrets"],
        &["get", "configmap", "ped-limits", "-n", "default"],
    ] {
        let (ok, stderr) = as_sa(forbidden);
        assert!(!ok && stderr.contains("forbidden"), "{forbidden:?} must be forbidden: {stderr}");
    }

    // replica-guard with the chart's ConfigMap source, authenticated by that token.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "server:\n  address: 127.0.0.1:0\n  adminAddress: 127.0.0.1:0\n  tls: {{certFile: certs/tls.crt, keyFile: certs/tls.key, generateDevCertificate: true}}\nregistry:\n  configMap: {{namespace: {release_ns}, name: ped-limits}}\nlogging: {{format: json}}\n"
        ),
    )
    .unwrap();
    let process = ServeProcess::start_config(dir, &config, &[("KUBECONFIG", kubeconfig.display().to_string())]);
    let name = format!("rg-{ns}");
    let url = format!("https://{}/validate", process.https);
    c.apply("admin", &configuration(&name, ns, &url, &process.ca_pem, "Fail"), &[]).success();

    // Initial load.
    eventually(c, ns, 5, Some("replicas 5 exceeds PED max 4"));
    // An edit raises the limit.
    c.apply("admin", &configmap(release_ns, &limits(ns, 6)), &[]).success();
    eventually(c, ns, 6, None);
    // A broken edit keeps the last good registry.
    c.apply("admin", &configmap(release_ns, "entries: [{namespace: x, maxReplicas: many}]"), &[]).success();
    std::thread::sleep(Duration::from_secs(1));
    eventually(c, ns, 7, Some("replicas 7 exceeds PED max 6"));
    // Deleted: still the last good one. Re-created: the new one.
    c.kubectl("admin", &["delete", "configmap", "ped-limits", "-n", release_ns]).success();
    std::thread::sleep(Duration::from_secs(1));
    eventually(c, ns, 7, Some("replicas 7 exceeds PED max 6"));
    c.apply("admin", &configmap(release_ns, &limits(ns, 3)), &[]).success();
    eventually(c, ns, 4, Some("replicas 4 exceeds PED max 3"));
    c.kubectl("admin", &["delete", "validatingwebhookconfiguration", &name]).success();
    // The API server restarts (the webhook configuration is not needed meanwhile); the watch
    // comes back by itself and sees the next edit.
    c.restart_apiserver().unwrap();
    c.apply("admin", &configuration(&name, ns, &url, &process.ca_pem, "Fail"), &[]).success();
    c.apply("admin", &configmap(release_ns, &limits(ns, 5)), &[]).success();
    eventually(c, ns, 6, Some("replicas 6 exceeds PED max 5"));
    eventually(c, ns, 5, None);
    c.kubectl("admin", &["delete", "validatingwebhookconfiguration", &name]).success();
}
