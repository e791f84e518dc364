//! One scope for the webhook and the backstop (README "Scope"): every knob the chart offers to
//! leave a request out of the webhook leaves it out of the API server's own policy too, with the
//! webhook down and up; the same request in scope and over its limit is refused. And `watch`
//! writes parameters only where they are enforced, removing those of a namespace opted out later.

use crate::Scenario;
use crate::audit_stories::start_watch;
use crate::backstop_stories::refused_by_backstop;
use crate::cluster::{Cluster, Ran};
use crate::pods::{EndpointSliceSync, Pod, render_chart};
use crate::webhook::{deployment, deployment_with, reviews_answered};
use std::time::{Duration, Instant};

pub fn all() -> Vec<Scenario> {
    vec![(
        "scope: an opted-out, excluded or exempt namespace, a skipped object, a matchCondition and an exempt group pass the backstop as they pass the webhook, webhook down and up",
        every_knob_leaves_out_of_both,
    )]
}

const RELEASE: &str = "rg-scope";
/// In scope: the object selector, match condition and exempt group cases live here too.
const IN: &str = "s-scope-in";
/// Labelled `replica-guard.io/ignore` by the platform admin during the story.
const OPTED_OUT: &str = "s-scope-optout";
/// `webhook.excludeNamespaces`.
const EXCLUDED: &str = "s-scope-excluded";
/// `policy.exemptions.namespaces` (moved to the API server by `webhook.skipExempt`, the default).
const EXEMPT: &str = "s-scope-exempt";

/// Every namespace's default is 2, in enforce mode: 6 replicas are over it everywhere.
fn values() -> String {
    let entries: Vec<String> = [IN, OPTED_OUT, EXCLUDED, EXEMPT, RELEASE]
        .iter()
        .map(|ns| format!("{{namespace: {ns}, maxReplicas: 2}}"))
        .collect();
    format!(
        r#"tls: {{mode: generate}}
events: {{enabled: false}}
audit: {{enabled: true, usage: {{enabled: false}}}}
policy:
  exemptions: {{namespaces: [{EXEMPT}], groups: [platform-admins]}}
registry:
  file:
    pollIntervalSeconds: 0.5
    limits: {{entries: [{}]}}
webhook:
  excludeNamespaces: [{EXCLUDED}]
  objectSelector: {{matchExpressions: [{{key: replica-guard.io/skip, operator: DoesNotExist}}]}}
  matchConditions:
  - name: not-a-hotfix
    expression: "!(has(object.metadata.annotations) && 'example.com/hotfix' in object.metadata.annotations)"
"#,
        entries.join(", ")
    )
}

/// One request the story makes: who, where, and what it changes.
struct Case {
    what: &'static str,
    user: &'static str,
    namespace: &'static str,
    /// Out of scope: must pass; in scope and over the limit: must be refused.
    out_of_scope: bool,
    manifest: fn(&str, &str) -> String,
}

fn plain(ns: &str, name: &str) -> String {
    deployment(ns, name, 6, "nginx:1")
}

fn skip_labelled(ns: &str, name: &str) -> String {
    plain(ns, name).replacen(
        &format!("  namespace: {ns}\n"),
        &format!("  namespace: {ns}\n  labels: {{replica-guard.io/skip: \"true\"}}\n"),
        1,
    )
}

fn hotfix(ns: &str, name: &str) -> String {
    deployment_with(ns, name, 6, "nginx:1", "    example.com/hotfix: \"INC-4711\"")
}

const CASES: [Case; 8] = [
    Case {
        what: "the release namespace (always out)",
        user: "admin",
        namespace: RELEASE,
        out_of_scope: true,
        manifest: plain,
    },
    Case {
        what: "a namespace labelled replica-guard.io/ignore",
        user: "alice",
        namespace: OPTED_OUT,
        out_of_scope: true,
        manifest: plain,
    },
    Case { what: "webhook.excludeNamespaces", user: "alice", namespace: EXCLUDED, out_of_scope: true, manifest: plain },
    Case {
        what: "policy.exemptions.namespaces",
        user: "alice",
        namespace: EXEMPT,
        out_of_scope: true,
        manifest: plain,
    },
    Case { what: "webhook.objectSelector", user: "alice", namespace: IN, out_of_scope: true, manifest: skip_labelled },
    Case { what: "webhook.matchConditions", user: "alice", namespace: IN, out_of_scope: true, manifest: hotfix },
    Case { what: "policy.exemptions.groups", user: "bob", namespace: IN, out_of_scope: true, manifest: plain },
    Case { what: "in scope and over the limit", user: "alice", namespace: IN, out_of_scope: false, manifest: plain },
];

/// Plays every case once, creating Deployments named after the round; the failures, in words.
fn play(c: &Cluster, round: &str) -> Vec<String> {
    let mut wrong = vec![];
    for (i, case) in CASES.iter().enumerate() {
        let name = format!("api-{i}-{round}");
        let ran: Ran = c.apply(case.user, &(case.manifest)(case.namespace, &name), &[]);
        let refused = refused_by_backstop(
            &ran,
            &format!("replicas 6 exceeds PED namespace default max 2 for {}", case.namespace),
        );
        if case.out_of_scope && !ran.ok {
            wrong.push(format!("{round}: {} ({}/{name}) was refused: {}", case.what, case.namespace, ran.stderr));
        }
        if !case.out_of_scope && !refused {
            wrong.push(format!(
                "{round}: {} ({}/{name}) was not refused by the backstop: {}{}",
                case.what, case.namespace, ran.stdout, ran.stderr
            ));
        }
    }
    wrong
}

/// The namespaces that have replica-guard's parameters, waited for (bounded) until they are
/// `expected`.
fn wait_for_parameters_in(c: &Cluster, expected: &[&str]) -> Duration {
    let started = Instant::now();
    let mut seen = String::new();
    for _ in 0..300 {
        let ran = c.kubectl(
            "admin",
            &[
                "get",
                "backstoplimits",
                "-A",
                "-l",
                "app.kubernetes.io/managed-by=replica-guard",
                "-o",
                "jsonpath={.items[*].metadata.namespace}",
            ],
        );
        seen = ran.stdout.clone();
        let mut now: Vec<&str> = seen.split_whitespace().collect();
        now.sort();
        if ran.ok && now == expected {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the parameters never were in exactly {expected:?}: they are in {seen:?}");
}

/// Removes the story's cluster-wide objects, also when it fails (the next story renders the same
/// names).
struct ClusterWide<'a>(&'a Cluster);

impl Drop for ClusterWide<'_> {
    fn drop(&mut self) {
        for (kind, name) in [
            ("validatingwebhookconfiguration", "rg-replica-guard"),
            ("validatingadmissionpolicybinding", "rg-replica-guard-backstop"),
        ] {
            let _ = self.0.kubectl("admin", &["delete", kind, name, "--ignore-not-found"]);
        }
    }
}

fn every_knob_leaves_out_of_both(c: &Cluster) {
    crate::pods::remove_leftovers();
    crate::pods::check_test_range_is_free().unwrap();
    c.kubectl("admin", &["create", "namespace", RELEASE]).success();
    for ns in [IN, OPTED_OUT, EXCLUDED, EXEMPT] {
        c.namespace(ns);
    }
    let rendered = render_chart(c, RELEASE, &values());
    let _cleanup = ClusterWide(c);
    // Everything but the pods: with no pod, the webhook configuration points at a Service with no
    // endpoint, as when every webhook pod is gone (failurePolicy Ignore, the default with the backstop).
    crate::pods::apply_all_but_the_pods(c, &rendered);

    // The audit pod's process on the chart's own config (its namespaceSelector) and registry,
    // with the chart's audit account.
    let dir = tempfile::tempdir().unwrap();
    let config_map = |suffix: &str, key: &str| -> String {
        let name = format!("rg-replica-guard-{suffix}");
        let o = rendered
            .objects
            .iter()
            .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == name.as_str())
            .unwrap();
        o["data"][key].as_str().unwrap().to_string()
    };
    std::fs::write(dir.path().join("limits.yaml"), config_map("registry", "limits.yaml")).unwrap();
    let mut config: serde_json::Value = serde_yaml_ng::from_str(&config_map("config", "config.yaml")).unwrap();
    config["server"]["adminAddress"] = "127.0.0.1:0".into();
    config["server"]["address"] = "127.0.0.1:0".into();
    config["registry"]["file"]["path"] = "limits.yaml".into();
    config["audit"]["intervalSeconds"] = 1.into();
    config["policy"]["ownNamespace"] = RELEASE.into();
    assert!(config["backstop"]["namespaceSelector"].is_object(), "the chart gives watch its scope: {config}");
    std::fs::write(dir.path().join("config.yaml"), serde_yaml_ng::to_string(&config).unwrap()).unwrap();
    let kubeconfig = c.service_account_kubeconfig("rg-replica-guard-audit", RELEASE);
    let watching = start_watch(&kubeconfig, &dir.path().join("config.yaml"));

    // Parameters only where the policy applies: not in the excluded, exempt or release namespace.
    wait_for_parameters_in(c, &[IN, OPTED_OUT]);
    // The platform admin opts a namespace out: its parameters go, at once.
    c.kubectl("admin", &["label", "namespace", OPTED_OUT, "replica-guard.io/ignore=true"]).success();
    let removed = wait_for_parameters_in(c, &[IN]);
    eprintln!(
        "scope: the opted-out namespace's parameters were removed {:.0} ms after the label",
        removed.as_secs_f64() * 1000.0
    );
    // Parameters left in namespaces out of scope (by an earlier version, or by hand) change
    // nothing: the binding does not apply there.
    for ns in [RELEASE, OPTED_OUT, EXCLUDED, EXEMPT] {
        let stale = format!(
            "apiVersion: replica-guard.io/v1\nkind: BackstopLimits\nmetadata: {{name: replica-guard, namespace: {ns}}}\nspec: {{namespaceMax: 2}}\n"
        );
        c.apply("admin", &stale, &[]).success();
    }

    let mut wrong = play(c, "down");

    // A webhook pod behind the chart's Service: out-of-scope requests never reach it, the
    // in-scope ones do.
    let hook = rendered.find("ValidatingWebhookConfiguration");
    let service = hook["webhooks"][0]["clientConfig"]["service"]["name"].as_str().unwrap().to_string();
    let sync = EndpointSliceSync::start(c, RELEASE, &service, Duration::from_millis(200));
    let pod = Pod::start(c, &rendered, RELEASE, 1).unwrap_or_else(|e| panic!("{e}"));
    sync.watch(&pod);
    sync.wait_for(1, Duration::from_secs(30));
    // Up: an in-scope request within its limit is answered by the webhook (a dry run, counted
    // on the pod's own metrics).
    let before = reviews_answered(pod.admin());
    let up = (0..100).any(|_| {
        c.apply("alice", &deployment(IN, "probe", 2, "nginx:1"), &["--dry-run=server"]).success();
        let answered = reviews_answered(pod.admin()) > before;
        if !answered {
            std::thread::sleep(Duration::from_millis(100));
        }
        answered
    });
    assert!(
        up,
        "the webhook pod answers in-scope requests; its metrics:\n{}\nits log:\n{}",
        crate::webhook::http_get(pod.admin(), "/metrics")
            .lines()
            .filter(|l| l.contains("admission"))
            .collect::<Vec<_>>()
            .join("\n"),
        pod.log()
    );
    let before = reviews_answered(pod.admin());
    wrong.extend(play(c, "up"));
    let answered = reviews_answered(pod.admin()) - before;
    // Only the one in-scope case reaches the webhook (the policy refuses it first, so the API
    // server may not call the webhook at all: at most one review per in-scope case).
    let in_scope = CASES.iter().filter(|c| !c.out_of_scope).count() as f64;
    assert!(
        answered <= in_scope,
        "out-of-scope requests reached the webhook: {answered} reviews for {in_scope} in-scope case(s)"
    );
    drop(watching);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
