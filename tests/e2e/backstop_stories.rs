//! The backstop under a real API server: with no webhook pod running, the API server enforces
//! the registry's enforce-mode limits itself (the chart's ValidatingAdmissionPolicy and the
//! parameters `watch` writes), and a team cannot raise its own limit through them.

use crate::Scenario;
use crate::audit_stories::start_watch;
use crate::cluster::{Cluster, Ran};
use crate::pods::{EndpointSliceSync, Pod, render_chart};
use crate::webhook::{deployment, deployment_with, replicas};
use std::time::{Duration, Instant};

pub fn all() -> Vec<Scenario> {
    vec![(
        "backstop: every webhook pod gone, the API server still refuses over-limit apply, scale, autoscale and helm upgrade, and lets the rest through",
        webhook_pods_gone,
    )]
}

const RELEASE: &str = "rg-backstop";
const NS: &str = "s-backstop";
const HELM_NS: &str = "s-backstop-helm";

fn registry(max: i32) -> String {
    format!(
        "entries:\n  - {{namespace: {NS}, deployment: payments-api, maxReplicas: {max}}}\n  - {{namespace: {NS}, deployment: batch, maxReplicas: 1, mode: warn}}\n  - {{namespace: {NS}, deployment: cart-api, maxReplicas: 2}}\n  - {{namespace: {HELM_NS}, deployment: payments-api, maxReplicas: 4}}\n"
    )
}

/// What the user reads when the API server's own policy refuses.
pub fn refused_by_backstop(ran: &Ran, text: &str) -> bool {
    !ran.ok
        && ran.stderr.contains("ValidatingAdmissionPolicy 'rg-replica-guard-backstop'")
        && ran.stderr.contains(text)
        && ran.stderr.contains("replica-guard backstop policy")
}

/// Waits (bounded) until `ns`'s parameters say `payments-api` may have `max`; returns how long.
fn wait_for_parameters(c: &Cluster, ns: &str, max: i32) -> Duration {
    let started = Instant::now();
    for _ in 0..200 {
        let ran = c.kubectl(
            "admin",
            &["get", "backstoplimits", "replica-guard", "-n", ns, "-o", "jsonpath={.spec.enforced.payments-api}"],
        );
        if ran.ok && ran.stdout.trim() == max.to_string() {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "the parameters of {ns} never said {max}: {:?}",
        c.kubectl("admin", &["get", "backstoplimits", "-A", "-o", "yaml"]).stdout
    );
}

fn webhook_pods_gone(c: &Cluster) {
    crate::pods::remove_leftovers();
    crate::pods::check_test_range_is_free().unwrap();
    c.kubectl("admin", &["create", "namespace", RELEASE]).success();
    c.namespace(NS);
    c.namespace(HELM_NS);
    let values = format!(
        "tls: {{mode: generate}}\nevents: {{enabled: false}}\naudit: {{enabled: true, usage: {{enabled: false}}}}\npolicy: {{override: {{groups: [platform-admins]}}}}\nregistry:\n  file:\n    pollIntervalSeconds: 0.5\n    limits: {{entries: [{{namespace: {NS}, deployment: payments-api, maxReplicas: 4}}]}}\n"
    );
    let rendered = render_chart(c, RELEASE, &values);
    // Everything but the pods: the webhook configuration points at a Service with no endpoint,
    // as when every webhook pod is gone.
    crate::pods::apply_all_but_the_pods(c, &rendered);
    let hook = rendered.objects.iter().find(|o| o["kind"] == "ValidatingWebhookConfiguration").unwrap();
    assert_eq!(hook["webhooks"][0]["failurePolicy"], "Ignore", "the chart's default with the backstop");

    // The audit pod's process, with the chart's audit account: it writes the parameters.
    let dir = tempfile::tempdir().unwrap();
    let limits = dir.path().join("limits.yaml");
    std::fs::write(&limits, registry(4)).unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!("server: {{adminAddress: '127.0.0.1:0'}}\npolicy: {{override: {{groups: [platform-admins]}}, ownNamespace: {RELEASE}}}\nregistry: {{file: {{path: limits.yaml, pollIntervalSeconds: 0.2}}}}\nbackstop: {{enabled: true}}\naudit: {{intervalSeconds: 1}}\nlogging: {{format: json}}\n"),
    )
    .unwrap();
    let kubeconfig = c.service_account_kubeconfig("rg-replica-guard-audit", RELEASE);
    let watching = start_watch(&kubeconfig, &config);
    wait_for_parameters(c, NS, 4);
    wait_for_parameters(c, HELM_NS, 4);
    let parameters = c.kubectl("admin", &["get", "backstoplimits", "replica-guard", "-n", NS, "-o", "json"]).success();
    let parameters: serde_json::Value = serde_json::from_str(&parameters.stdout).unwrap();
    assert_eq!(parameters["spec"]["notEnforced"], serde_json::json!({"batch": true}), "a warn entry is the webhook's");
    // Written only when they change: passes over an unchanged registry (every second here) leave
    // the object alone.
    std::thread::sleep(Duration::from_millis(2500));
    let again = c.kubectl(
        "admin",
        &["get", "backstoplimits", "replica-guard", "-n", NS, "-o", "jsonpath={.metadata.resourceVersion}"],
    );
    assert_eq!(again.stdout, parameters["metadata"]["resourceVersion"].as_str().unwrap(), "rewritten without a change");

    let (mut over_admitted, mut within_refused) = (vec![], vec![]);
    let mut over = |what: &str, ran: Ran, text: &str| {
        if !refused_by_backstop(&ran, text) {
            over_admitted.push(format!("{what}: {}{}", ran.stdout, ran.stderr));
        }
    };
    let mut within = |what: &str, ran: Ran| {
        if !ran.ok {
            within_refused.push(format!("{what}: {}", ran.stderr));
        }
    };
    within("apply 3", c.apply("alice", &deployment(NS, "payments-api", 3, "nginx:1"), &[]));
    over(
        "apply 3 -> 6",
        c.apply("alice", &deployment(NS, "payments-api", 6, "nginx:1"), &[]),
        &format!(
            "replicas 3 -> 6 exceeds PED max 4 for {NS}/payments-api. To deploy, lower spec.replicas to 4 or less"
        ),
    );
    over(
        "create 5",
        c.apply("alice", &deployment(NS, "cart-api", 5, "nginx:1"), &[]),
        &format!("replicas 5 exceeds PED max 2 for {NS}/cart-api"),
    );
    within(
        "apply the same manifest again (no-op)",
        c.apply("alice", &deployment(NS, "payments-api", 3, "nginx:1"), &[]),
    );
    over(
        "scale to 9",
        c.kubectl("alice", &["scale", "deploy/payments-api", "-n", NS, "--replicas=9"]),
        "replicas 3 -> 9 exceeds PED max 4",
    );
    within("scale down to 2", c.kubectl("alice", &["scale", "deploy/payments-api", "-n", NS, "--replicas=2"]));
    over(
        "autoscale max 10",
        c.kubectl("alice", &["autoscale", "deploy/payments-api", "-n", NS, "--min=2", "--max=10", "--cpu=70%"]),
        "HPA maxReplicas 10 exceeds PED max 4",
    );
    within(
        "autoscale max 4",
        c.kubectl("alice", &["autoscale", "deploy/payments-api", "-n", NS, "--min=2", "--max=4", "--cpu=70%"]),
    );
    within("delete the HPA", c.kubectl("alice", &["delete", "hpa", "payments-api", "-n", NS]));
    within(
        "a warn-mode entry over its limit (the webhook's to judge)",
        c.apply("alice", &deployment(NS, "batch", 3, "nginx:1"), &[]),
    );
    within("an unregistered workload", c.apply("alice", &deployment(NS, "other", 7, "nginx:1"), &[]));
    // The break-glass override: honoured for platform-admins, not for a team member.
    let annotated = |replicas| {
        deployment_with(NS, "payments-api", replicas, "nginx:1", "    replica-guard.io/override: \"incident 4711\"")
    };
    over("override by a team member", c.apply("alice", &annotated(6), &[]), "replicas 2 -> 6 exceeds PED max 4");
    within("override by platform-admins", c.apply("bob", &annotated(6), &[]));
    within("back to 2", c.apply("admin", &deployment(NS, "payments-api", 2, "nginx:1"), &[]));

    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/charts/payments-api");
    within("helm install 3", c.helm(&["install", "payments", chart, "-n", HELM_NS, "--set", "replicas=3"]));
    over(
        "helm upgrade 3 -> 6",
        c.helm(&["upgrade", "payments", chart, "-n", HELM_NS, "--set", "replicas=6", "--set", "image.tag=1.5.0"]),
        "replicas 3 -> 6 exceeds PED max 4",
    );
    assert_eq!(replicas(c, HELM_NS, "payments-api"), "3", "nothing of the upgrade was applied");

    // A registry edit reaches the parameters and the next apply; the ratchet lets the
    // now-over workload roll out a fix and scale down, not up.
    let next = dir.path().join("limits.next");
    std::fs::write(&next, registry(1)).unwrap();
    let edited = Instant::now();
    std::fs::rename(&next, &limits).unwrap();
    wait_for_parameters(c, NS, 1);
    eprintln!("backstop: a registry edit reached the parameters in {:.0} ms", edited.elapsed().as_secs_f64() * 1000.0);
    within(
        "a fix of a workload now over (ratchet)",
        c.apply("alice", &deployment(NS, "payments-api", 2, "nginx:2"), &[]),
    );
    over(
        "raise 2 -> 3 over the lowered limit",
        c.apply("alice", &deployment(NS, "payments-api", 3, "nginx:2"), &[]),
        "replicas 2 -> 3 exceeds PED max 1",
    );
    within("scale down to 1", c.kubectl("alice", &["scale", "deploy/payments-api", "-n", NS, "--replicas=1"]));

    // A team cannot raise its own limit through the parameters.
    let patch = r#"{"spec":{"enforced":{"payments-api":100}}}"#;
    for (what, args) in [
        ("patch", vec!["patch", "backstoplimits", "replica-guard", "-n", NS, "--type=merge", "-p", patch]),
        ("delete", vec!["delete", "backstoplimits", "replica-guard", "-n", NS]),
        ("create in another namespace", vec!["create", "-n", "default", "-f", "-"]),
    ] {
        let stdin = "apiVersion: replica-guard.io/v1\nkind: BackstopLimits\nmetadata: {name: replica-guard}\nspec: {enforced: {payments-api: 100}}\n";
        let ran = c.kubectl_in("alice", &args, what.starts_with("create").then_some(stdin));
        assert!(!ran.ok && ran.stderr.contains("forbidden"), "a team member's {what}: {}", ran.stderr);
    }
    wait_for_parameters(c, NS, 1);

    assert!(over_admitted.is_empty(), "over-limit writes admitted:\n{}", over_admitted.join("\n"));
    assert!(within_refused.is_empty(), "within-limit writes refused:\n{}", within_refused.join("\n"));

    // The webhook back: its warnings reach the user again (the backstop has none). A denial by
    // both reads the backstop's message: the API server runs admission policies before any
    // webhook, so the policy's message carries the webhook's headline and advice.
    let service = hook["webhooks"][0]["clientConfig"]["service"]["name"].as_str().unwrap().to_string();
    let sync = EndpointSliceSync::start(c, RELEASE, &service, Duration::from_millis(200));
    let pod = Pod::start(c, &rendered, RELEASE, 1).unwrap_or_else(|e| panic!("{e}"));
    sync.watch(&pod);
    sync.wait_for(1, Duration::from_secs(30));
    let warned = (0..100).any(|_| {
        let ran = c.apply("alice", &deployment(NS, "another", 7, "nginx:1"), &["--dry-run=server"]);
        let warned = ran.warnings().iter().any(|w| w.starts_with("not registered in PED"));
        if !warned {
            std::thread::sleep(Duration::from_millis(100));
        }
        warned
    });
    assert!(warned, "the webhook's warnings are back; pod log:\n{}", pod.log());
    let ran = c.apply("alice", &deployment(NS, "payments-api", 6, "nginx:2"), &[]);
    assert!(refused_by_backstop(&ran, "replicas 1 -> 6 exceeds PED max 1"), "{}", ran.stderr);
    drop(watching);
    c.kubectl("admin", &["delete", "validatingwebhookconfiguration", hook["metadata"]["name"].as_str().unwrap()])
        .success();
    c.kubectl("admin", &["delete", "validatingadmissionpolicybinding", "rg-replica-guard-backstop"]).success();
}
