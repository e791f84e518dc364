//! The README's user stories, each in a namespace of its own, asserting on what kubectl and helm
//! show their users: the exit status, the `Warning:` lines, the denial message.

use crate::Scenario;
use crate::cluster::Cluster;
use crate::webhook::{POLICY, Registered, denied_with, deployment, deployment_with, registry, replicas};

pub fn all() -> Vec<Scenario> {
    vec![
        ("apply within the limit is silent", apply_within_the_limit_is_silent),
        ("a redeploy raising replicas and the image is denied with both named", redeploy_raising_replicas_is_denied),
        ("kubectl scale above is denied, to 0 and back passes", kubectl_scale_above_to_zero_and_back),
        ("kubectl patch above the limit is denied", kubectl_patch_above_the_limit_is_denied),
        ("server-side apply of an unchanged manifest is silent", server_side_apply_no_op_is_silent),
        (
            "server-side apply that migrates field ownership: several UPDATEs, one change summary",
            server_side_apply_migration_says_it_once,
        ),
        ("apply --dry-run=server gets the same answer and changes nothing", dry_run_same_answer_no_side_effects),
        ("rollout restart of an over-limit workload gets the ratchet warning", rollout_restart_over_limit_ratchets),
        ("HPAs above the limit are denied, within pass (kubectl autoscale and autoscaling/v2)", hpa_above_and_within),
        ("the override works for platform-admins and is refused for others", override_by_admin_and_by_others),
        ("unregistered under warn warns; under deny a create is refused, a fix passes", unregistered_warn_and_deny),
        (
            "deleting an unregistered Deployment with --cascade=foreground under deny completes",
            foreground_delete_completes,
        ),
        ("helm install within the limit passes, helm upgrade above it fails", helm_install_and_upgrade),
        ("a registry edit is picked up by the next apply", registry_edit_is_picked_up),
        ("webhook down: failurePolicy Fail refuses, Ignore lets through", webhook_down_fail_and_ignore),
        (
            "who may ask: the API server's calls pass (its client certificate); a forged review from a pod without one leaves no Event, no record, no metric",
            a_forged_review_leaves_nothing,
        ),
    ]
}

/// Every story's webhook answers only the API server (`Registered`: `server.tls.clientAuth` with the
/// CA of the API server's webhook client certificate). A tenant who reaches the port posts the
/// review of the issue — alice scaling payments-api in this namespace — without a certificate.
fn a_forged_review_leaves_nothing(c: &Cluster) {
    let ns = "s-forged";
    c.namespace(ns);
    // With Events on, through the chart's ServiceAccount, as installed.
    let kinds = ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"];
    let (_, events) = c.chart_account("rg-forged", "audit: {enabled: false}\n", &kinds, "rg-replica-guard");
    let rg = Registered::start_reporting(c, ns, POLICY, &registry(ns, 4), "Fail", Some(&events));
    c.apply("alice", &deployment(ns, "payments-api", 3, "nginx:1"), &[]).success();
    // The API server's call: answered, as in every other story, and its Event written.
    let ran = c.apply("alice", &deployment(ns, "payments-api", 6, "nginx:1"), &[]);
    assert!(denied_with(&ran, "exceeds PED max 4"), "{}", ran.stderr);
    let reviews = rg.reviews();
    let mut events = 0;
    for _ in 0..50 {
        events = c.events_about(ns, "payments-api").len();
        if events > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(events, 1, "the API server's call left its Event");
    let mut forged = crate::common::fixture_json("deployment-patch-4-to-7.json");
    forged["request"]["namespace"] = ns.into();
    forged["request"]["userInfo"]["username"] = "alice@example.com".into();
    let body = serde_json::to_vec(&forged).unwrap();
    let (address, ca) = (rg.process.https, rg.process.ca_pem.clone());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let answered = runtime.block_on(async move {
        let protocol = crate::common::Protocol::Http1;
        let mut client = crate::common::Client::try_connect_as(address, &ca, protocol, None).await?;
        client.post("/validate", "application/json", body).await.map(|(status, _)| status.as_u16())
    });
    assert!(answered.is_err(), "a review without the API server's certificate was answered: {answered:?}");
    assert_eq!(rg.metric("replica_guard_unauthenticated_connections_total{reason=\"no-certificate\"}"), 1.0);
    assert_eq!(rg.reviews(), reviews, "no decision");
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(c.events_about(ns, "payments-api").len(), events, "no Event");
    assert_eq!(
        rg.metric(&format!(
            "replica_guard_violations_total{{deployment=\"payments-api\",mode=\"enforce\",namespace=\"{ns}\"}}"
        )),
        1.0,
        "only the API server's call counted"
    );
}

fn apply_within_the_limit_is_silent(c: &Cluster) {
    let ns = "s-within";
    c.namespace(ns);
    let _rg = Registered::start(c, ns, POLICY, &registry(ns, 4), "Fail");
    let ran = c.apply("alice", &deployment(ns, "payments-api", 3, "registry.example/payments:1.4.0"), &[]).success();
    assert!(ran.warnings().is_empty(), "{:?}", ran.warnings());
    assert!(ran.stdout.contains("deployment.apps/payments-api created"), "{}", ran.stdout);
}

fn redeploy_raising_replicas_is_denied(c: &Cluster) {
    let ns = "s-redeploy";
    c.namespace(ns);
    let rg = Registered::start(c, ns, POLICY, &registry(ns, 4), "Fail");
    c.apply("alice", &deployment(ns, "payments-api", 3, "registry.example/payments:1.4.0"), &[]).success();
    let ran = c.apply("alice", &deployment(ns, "payments-api", 6, "registry.example/payments:1.5.0"), &[]).failure();
    let expected = format!(
        "replicas 3 -> 6 exceeds PED max 4 for {ns}/payments-api. To deploy, lower spec.replicas to 4 or less, or raise maxReplicas in the PED config of {ns}/payments-api and rerun the onboarding pipeline (registered owner: payments-team@example.com). Nothing of this request was applied, including its changes to image of api."
    );
    assert!(denied_with(&ran, &expected), "{}", ran.stderr);
    assert_eq!(replicas(c, ns, "payments-api"), "3", "nothing was applied");
    let violations =
        format!("replica_guard_violations_total{{deployment=\"payments-api\",mode=\"enforce\",namespace=\"{ns}\"}}");
    assert!(rg.metric(&violations) >= 1.0, "the violation is counted");
}

fn kubectl_scale_above_to_zero_and_back(c: &Cluster) {
    let ns = "s-scale";
    c.namespace(ns);
    let _rg = Registered::start(c, ns, POLICY, &registry(ns, 4), "Fail");
    c.apply("admin", &deployment(ns, "payments-api", 2, "nginx:1"), &[]).success();
    let ran = c.kubectl("alice", &["scale", "deploy/payments-api", "-n", ns, "--replicas=9"]);
    assert!(denied_with(&ran, "replicas 2 -> 9 exceeds PED max 4"), "{}", ran.stderr);
    assert!(ran.stderr.contains("To deploy, scale to 4 or less"), "{}", ran.stderr);
    let ran = c.kubectl("bob", &["scale", "deploy/payments-api", "-n", ns, "--replicas=9"]);
    assert!(
        ran.stderr.contains("kubectl scale cannot carry the replica-guard.io/override annotation"),
        "an override-group member is told how: {}",
        ran.stderr
    );
    let ran = c.kubectl("alice", &["scale", "deploy/payments-api", "-n", ns, "--replicas=0"]).success();
    assert!(ran.warnings().is_empty(), "{:?}", ran.warnings());
    assert_eq!(replicas(c, ns, "payments-api"), "0");
    let ran = c.kubectl("alice", &["scale", "deploy/payments-api", "-n", ns, "--replicas=3"]).success();
    assert!(ran.warnings().is_empty(), "{:?}", ran.warnings());
    assert_eq!(replicas(c, ns, "payments-api"), "3");
}

fn kubectl_patch_above_the_limit_is_denied(c: &Cluster) {
    let ns = "s-patch";
    c.namespace(ns);
    let _rg = Registered::start(c, ns, POLICY, &registry(ns, 4), "Fail");
    c.apply("admin", &deployment(ns, "payments-api", 4, "nginx:1"), &[]).success();
    let ran = c.kubectl(
        "alice",
        &["patch", "deploy/payments-api", "-n", ns, "--type=merge", "-p", r#"{"spec":{"replicas":7}}"#],
    );
    assert!(denied_with(&ran, "replicas 4 -> 7 exceeds PED max 4"), "{}", ran.stderr);
}

fn server_side_apply_no_op_is_silent(c: &Cluster) {
    let ns = "s-ssa";
    c.namespace(ns);
    let _rg = Registered::start(c, ns, "mode: enforce\nchangeSummary: always", &registry(ns, 4), "Fail");
    let manifest = deployment(ns, "payments-api", 3, "nginx:1");
    c.apply("admin", &manifest, &[]).success();
    // The first server-side apply migrates kubectl's client-side bookkeeping (managedFields only).
    for _ in 0..2 {
        let ran = c.apply("admin", &manifest, &["--server-side", "--force-conflicts"]).success();
        assert!(ran.warnings().is_empty(), "nothing a person wrote changed: {:?}", ran.warnings());
    }
}

fn server_side_apply_migration_says_it_once(c: &Cluster) {
    let ns = "s-ssa-migration";
    c.namespace(ns);
    let rg = Registered::start(c, ns, "mode: enforce\nchangeSummary: always", &registry(ns, 4), "Fail");
    c.apply("admin", &deployment(ns, "payments-api", 3, "nginx:1"), &[]).success();
    let before = rg.reviews();
    // The first server-side apply of an object kubectl applied client-side: the change, then the
    // UPDATEs that move field ownership (kubectl-last-applied, kubectl), each through the webhook.
    let ran = c.apply("alice", &deployment(ns, "payments-api", 4, "nginx:2"), &["--server-side", "--force-conflicts"]);
    let ran = ran.success();
    assert_eq!(ran.warnings(), vec!["changes: replicas 3 -> 4, image of api".to_string()], "said once");
    let updates = rg.reviews() - before;
    assert!(updates >= 2.0, "one server-side apply reached the webhook as {updates} UPDATEs");
    assert_eq!(replicas(c, ns, "payments-api"), "4");
    // Raising above the maximum: the first UPDATE is refused and nothing follows.
    let ran = c.apply("alice", &deployment(ns, "payments-api", 6, "nginx:2"), &["--server-side", "--force-conflicts"]);
    assert!(denied_with(&ran, "replicas 4 -> 6 exceeds PED max 4"), "{}", ran.stderr);
    assert_eq!(replicas(c, ns, "payments-api"), "4");
}

fn dry_run_same_answer_no_side_effects(c: &Cluster) {
    let ns = "s-dryrun";
    c.namespace(ns);
    let rg = Registered::start(c, ns, POLICY, &registry(ns, 4), "Fail");
    c.apply("admin", &deployment(ns, "payments-api", 3, "nginx:1"), &[]).success();
    let violations =
        format!("replica_guard_violations_total{{deployment=\"payments-api\",mode=\"enforce\",namespace=\"{ns}\"}}");
    let before = rg.metric(&violations);
    let dry = c.apply("alice", &deployment(ns, "payments-api", 12, "nginx:1"), &["--dry-run=server"]);
    assert!(denied_with(&dry, "replicas 3 -> 12 exceeds PED max 4"), "{}", dry.stderr);
    assert_eq!(rg.metric(&violations), before, "a dry run changes no counter");
    let real = c.apply("alice", &deployment(ns, "payments-api", 12, "nginx:1"), &[]);
    let message = |stderr: &str| {
        stderr.lines().find(|l| l.contains("denied the request")).map(|l| l[l.find("denied").unwrap()..].to_string())
    };
    assert_eq!(message(&dry.stderr), message(&real.stderr), "the same answer");
    // The API server retries a denied patch once with fresh data: one apply, one or two calls.
    assert!(rg.metric(&violations) > before, "the real apply is counted");
    assert_eq!(replicas(c, ns, "payments-api"), "3");
}

fn rollout_restart_over_limit_ratchets(c: &Cluster) {
    let ns = "s-ratchet";
    c.namespace(ns);
    let rg = Registered::start(c, ns, POLICY, &registry(ns, 8), "Fail");
    c.apply("admin", &deployment(ns, "payments-api", 7, "nginx:1"), &[]).success();
    // The PED entry is lowered after the workload grew.
    rg.process.set_registry(&registry(ns, 4));
    std::thread::sleep(std::time::Duration::from_millis(600));
    let ran = c.kubectl("alice", &["rollout", "restart", "deploy/payments-api", "-n", ns]).success();
    assert_eq!(
        ran.warnings(),
        vec![
            format!("replicas 7 is above PED max 4; allowed as not raised, please lower to 4 ({ns}/payments-api)"),
            "changes: pod annotation kubectl.kubernetes.io/restartedAt".to_string(),
        ]
    );
    let ran = c.kubectl("alice", &["scale", "deploy/payments-api", "-n", ns, "--replicas=8"]);
    assert!(denied_with(&ran, "replicas 7 -> 8 exceeds PED max 4"), "raising further is refused: {}", ran.stderr);
}

fn hpa_above_and_within(c: &Cluster) {
    let ns = "s-hpa";
    c.namespace(ns);
    let _rg = Registered::start(c, ns, POLICY, &registry(ns, 4), "Fail");
    c.apply("admin", &deployment(ns, "payments-api", 2, "nginx:1"), &[]).success();
    let ran = c.kubectl("alice", &["autoscale", "deploy/payments-api", "-n", ns, "--min=2", "--max=10", "--cpu=70%"]);
    assert!(denied_with(&ran, "HPA maxReplicas 10 exceeds PED max 4"), "{}", ran.stderr);
    c.kubectl("alice", &["autoscale", "deploy/payments-api", "-n", ns, "--min=2", "--max=4", "--cpu=70%"]).success();
    let v2 = format!(
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {{name: orders-api, namespace: {ns}}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: orders-api}}\n  minReplicas: 2\n  maxReplicas: 12\n  metrics:\n  - type: Resource\n    resource: {{name: cpu, target: {{type: Utilization, averageUtilization: 70}}}}\n"
    );
    let ran = c.apply("alice", &v2, &[]);
    assert!(denied_with(&ran, "HPA maxReplicas 12 exceeds PED max 4 for"), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("lower maxReplicas (and minReplicas) of HPA orders-api to 4 or less"),
        "{}",
        ran.stderr
    );
    c.apply("alice", &v2.replace("maxReplicas: 12", "maxReplicas: 4"), &[]).success();
}

fn override_by_admin_and_by_others(c: &Cluster) {
    let ns = "s-override";
    c.namespace(ns);
    let _rg = Registered::start(c, ns, POLICY, &registry(ns, 4), "Fail");
    c.apply("admin", &deployment(ns, "payments-api", 2, "nginx:1"), &[]).success();
    let annotation = "    replica-guard.io/override: \"INC-4711 black friday\"";
    let manifest = deployment_with(ns, "payments-api", 7, "nginx:2", annotation);
    let ran = c.apply("alice", &manifest, &[]);
    assert!(denied_with(&ran, "replicas 2 -> 7 exceeds PED max 4"), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("The replica-guard.io/override annotation was ignored: alice@example.com is not allowed to override (only platform-admins may)."),
        "{}",
        ran.stderr
    );
    let ran = c.apply("bob", &manifest, &[]).success();
    assert_eq!(
        ran.warnings(),
        vec![
            format!("allowed by break-glass override: replicas 2 -> 7 exceeds PED max 4 for {ns}/payments-api"),
            "override recorded: INC-4711 black friday (by bob@example.com)".to_string(),
            "changes: replicas 2 -> 7, image of api, annotation replica-guard.io/override".to_string(),
        ]
    );
    assert_eq!(replicas(c, ns, "payments-api"), "7");
}

fn unregistered_warn_and_deny(c: &Cluster) {
    let ns = "s-unregistered";
    c.namespace(ns);
    let warn = Registered::start(c, ns, "mode: enforce\nunregistered: warn", &registry(ns, 4), "Fail");
    let ran = c.apply("alice", &deployment(ns, "other", 3, "nginx:1"), &[]).success();
    assert_eq!(
        ran.warnings(),
        vec![format!(
            "not registered in PED; register it with the onboarding pipeline to set its maxReplicas ({ns}/other)"
        )]
    );
    drop(warn);
    let _deny = Registered::start(c, ns, "mode: enforce\nunregistered: deny", &registry(ns, 4), "Fail");
    let ran = c.apply("alice", &deployment(ns, "another", 1, "nginx:1"), &[]);
    assert!(
        denied_with(&ran, &format!("{ns}/another is not registered in PED. Register it with the onboarding pipeline")),
        "{}",
        ran.stderr
    );
    // The existing one: a fix that does not raise replicas passes, with a warning; raising is refused.
    let ran = c.apply("alice", &deployment(ns, "other", 3, "nginx:2"), &[]).success();
    assert_eq!(
        ran.warnings()[0],
        format!(
            "not registered in PED; allowed as replicas not raised, register it with the onboarding pipeline ({ns}/other)"
        )
    );
    let ran = c.kubectl("alice", &["scale", "deploy/other", "-n", ns, "--replicas=5"]);
    assert!(denied_with(&ran, "is not registered in PED"), "{}", ran.stderr);
}

fn foreground_delete_completes(c: &Cluster) {
    let ns = "s-foreground";
    c.namespace(ns);
    c.apply("admin", &deployment(ns, "legacy", 2, "nginx:1"), &[]).success();
    let _rg = Registered::start(c, ns, "mode: enforce\nunregistered: deny", &registry(ns, 4), "Fail");
    // The garbage collector removes the foregroundDeletion finalizer with an UPDATE the webhook
    // sees; refusing it would leave the Deployment in Terminating for ever.
    c.kubectl("alice", &["delete", "deploy/legacy", "-n", ns, "--cascade=foreground", "--timeout=60s"]).success();
    let ran = c.kubectl("admin", &["get", "deploy/legacy", "-n", ns]);
    assert!(!ran.ok && ran.stderr.contains("NotFound"), "the Deployment is gone: {} {}", ran.stdout, ran.stderr);
}

fn helm_install_and_upgrade(c: &Cluster) {
    let ns = "s-helm";
    c.namespace(ns);
    let _rg = Registered::start(c, ns, POLICY, &registry(ns, 4), "Fail");
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/charts/payments-api");
    let ran = c.helm(&["install", "payments", chart, "-n", ns, "--set", "replicas=3"]).success();
    assert!(ran.warnings().is_empty(), "{:?}", ran.warnings());
    let ran =
        c.helm(&["upgrade", "payments", chart, "-n", ns, "--set", "replicas=6", "--set", "image.tag=1.5.0"]).failure();
    assert!(
        ran.stderr.contains(
            "admission webhook \"validate.replica-guard.io\" denied the request: replicas 3 -> 6 exceeds PED max 4"
        ),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("including its changes to image of api"), "{}", ran.stderr);
    assert_eq!(replicas(c, ns, "payments-api"), "3");
}

fn registry_edit_is_picked_up(c: &Cluster) {
    let ns = "s-registry-edit";
    c.namespace(ns);
    let rg = Registered::start(c, ns, POLICY, &registry(ns, 4), "Fail");
    c.apply("admin", &deployment(ns, "payments-api", 3, "nginx:1"), &[]).success();
    let ran = c.apply("alice", &deployment(ns, "payments-api", 6, "nginx:1"), &[]);
    assert!(denied_with(&ran, "replicas 3 -> 6 exceeds PED max 4"), "{}", ran.stderr);
    // The onboarding pipeline raises maxReplicas to 6.
    rg.process.set_registry(&registry(ns, 6));
    std::thread::sleep(std::time::Duration::from_millis(600));
    c.apply("alice", &deployment(ns, "payments-api", 6, "nginx:1"), &[]).success();
}

fn webhook_down_fail_and_ignore(c: &Cluster) {
    let ns = "s-down";
    c.namespace(ns);
    let rg = Registered::start(c, ns, POLICY, &registry(ns, 4), "Fail");
    let (name, url, ca) =
        (rg.name.clone(), format!("https://{}/validate", rg.process.https), rg.process.ca_pem.clone());
    drop(rg);
    // The webhook process is gone but its configuration stays, as when every pod is down.
    c.apply("admin", &crate::webhook::configuration(&name, ns, &url, &ca, "Fail"), &[]).success();
    std::thread::sleep(std::time::Duration::from_secs(1));
    let ran = c.apply("alice", &deployment(ns, "payments-api", 2, "nginx:1"), &[]).failure();
    assert!(ran.stderr.contains("failed calling webhook \"validate.replica-guard.io\""), "{}", ran.stderr);
    c.apply("admin", &crate::webhook::configuration(&name, ns, &url, &ca, "Ignore"), &[]).success();
    std::thread::sleep(std::time::Duration::from_secs(1));
    c.apply("alice", &deployment(ns, "payments-api", 2, "nginx:1"), &[]).success();
    c.kubectl("admin", &["delete", "validatingwebhookconfiguration", &name]).success();
}
