//! The chart for real: its rendered objects applied to the API server, its pods run as the
//! kubelet would (see `pods`), reached through its own `service:` clientConfig. This is where the
//! generated certificate's SANs, the caBundle, the webhook rules and the namespaceSelector meet
//! a real API server.

use crate::Scenario;
use crate::cluster::{Cluster, Pki};
use crate::pods::{EndpointSliceSync, Pod, Rendered, render_chart};
use crate::webhook::{denied_with, deployment, replicas};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub fn all() -> Vec<Scenario> {
    vec![
        ("chart: through its own Service, certificate and rules, kubectl sees the denial", chart_for_real),
        ("chart: zero failed admissions while a pod is replaced and the certificate rotated", rollout_without_failures),
        (
            "chart: an exempt group is skipped by the API server itself (matchConditions), others still checked",
            exempt_group_never_reaches_the_webhook,
        ),
    ]
}

/// The chart's default policy in these stories: platform-admins may override.
const POLICY: &str = "override: {groups: [platform-admins]}";

/// Installs the chart's objects in `release_ns` for workloads in `story_ns` and starts `pods`
/// pods behind its Service; returns what was rendered, the pods and the endpoints sync.
fn install(
    c: &Cluster,
    release_ns: &str,
    story_ns: &str,
    pods: u8,
    policy: &str,
    extra_values: &str,
) -> (Rendered, Vec<Pod>, EndpointSliceSync) {
    crate::pods::remove_leftovers();
    crate::pods::check_test_range_is_free().unwrap();
    c.kubectl("admin", &["create", "namespace", release_ns]).success();
    c.namespace(story_ns);
    // Events off: these pods live in network namespaces of their own and cannot reach this API
    // server (it listens on 127.0.0.1); the Events story runs them with the chart's RBAC.
    let values = format!(
        "tls: {{mode: generate}}\nevents: {{enabled: false}}\naudit: {{enabled: false}}\npolicy: {{{policy}}}\nregistry:\n  file:\n    pollIntervalSeconds: 0.5\n    limits: {{entries: [{{namespace: {story_ns}, deployment: payments-api, maxReplicas: 4, owner: payments-team@example.com}}]}}\n{extra_values}"
    );
    let rendered = render_chart(c, release_ns, &values);
    // Everything but the webhook configuration first, so that it never points at no pod.
    let (webhook, others): (Vec<_>, Vec<_>) =
        rendered.objects.iter().partition(|o| o["kind"] == "ValidatingWebhookConfiguration");
    let as_yaml = |objects: &[&serde_json::Value]| {
        objects.iter().map(|o| serde_yaml_ng::to_string(o).unwrap()).collect::<Vec<_>>().join("---\n")
    };
    c.apply("admin", &as_yaml(&others), &[]).success();
    let service = rendered.find("Service")["metadata"]["name"].as_str().unwrap().to_string();
    let sync = EndpointSliceSync::start(c, release_ns, &service, Duration::from_millis(200));
    let mut started = vec![];
    for n in 1..=pods {
        let pod = Pod::start(c, &rendered, release_ns, n).unwrap_or_else(|e| panic!("{e}"));
        sync.watch(&pod);
        started.push(pod);
    }
    sync.wait_for(usize::from(pods), Duration::from_secs(30));
    c.apply("admin", &as_yaml(&webhook), &[]).success();
    // Until the API server calls it: an unregistered Deployment gets the unregistered warning.
    let probe = deployment(story_ns, "probe", 1, "nginx:1");
    let called = (0..100).any(|_| {
        let ran = c.apply("admin", &probe, &["--dry-run=server"]);
        let called = !ran.warnings().is_empty();
        if !called {
            std::thread::sleep(Duration::from_millis(100));
        }
        called
    });
    assert!(
        called,
        "the API server never called the chart's webhook through its Service; pod log:\n{}",
        started[0].log()
    );
    (rendered, started, sync)
}

fn uninstall(c: &Cluster, rendered: &Rendered) {
    let name = rendered.find("ValidatingWebhookConfiguration")["metadata"]["name"].as_str().unwrap().to_string();
    c.kubectl("admin", &["delete", "validatingwebhookconfiguration", &name]).success();
}

fn chart_for_real(c: &Cluster) {
    let (release_ns, ns) = ("rg-chart", "s-chart");
    let (rendered, _pods, _sync) = install(c, release_ns, ns, 2, POLICY, "");
    c.apply("alice", &deployment(ns, "payments-api", 3, "nginx:1"), &[]).success();
    let ran = c.apply("alice", &deployment(ns, "payments-api", 6, "nginx:2"), &[]);
    assert!(denied_with(&ran, &format!("replicas 3 -> 6 exceeds PED max 4 for {ns}/payments-api")), "{}", ran.stderr);
    let ran = c.kubectl("alice", &["scale", "deploy/payments-api", "-n", ns, "--replicas=9"]);
    assert!(denied_with(&ran, "replicas 3 -> 9 exceeds PED max 4"), "deployments/scale is registered: {}", ran.stderr);
    let ran = c.apply("alice", &deployment(ns, "other", 3, "nginx:1"), &[]).success();
    assert_eq!(
        ran.warnings(),
        vec![format!(
            "not registered in PED; register it with the onboarding pipeline to set its maxReplicas ({ns}/other)"
        )]
    );
    // An HPA as kubectl 1.3x and GitOps tools write it today: autoscaling/v2, in the chart's rules.
    let hpa = format!(
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {{name: payments-api, namespace: {ns}}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: payments-api}}\n  minReplicas: 2\n  maxReplicas: 10\n"
    );
    let ran = c.apply("alice", &hpa, &[]);
    assert!(denied_with(&ran, "HPA maxReplicas 10 exceeds PED max 4"), "autoscaling/v2: {}", ran.stderr);
    c.apply("alice", &hpa.replace("maxReplicas: 10", "maxReplicas: 4"), &[]).success();
    // The namespaceSelector: the release namespace and kube-system are never sent, and a
    // namespace can opt out with the chart's label.
    for skipped in [release_ns, "kube-system"] {
        let ran =
            c.apply("admin", &deployment(skipped, "payments-api", 50, "nginx:1"), &["--dry-run=server"]).success();
        assert!(ran.warnings().is_empty(), "{skipped} is not evaluated: {:?}", ran.warnings());
    }
    assert_eq!(replicas(c, ns, "payments-api"), "3");
    uninstall(c, &rendered);
}

/// Bounded writers: Deployment patches through the API server (replicas 2 and 3 in turn, each
/// admitted by the webhook) until stopped; counts the ones that failed.
pub struct Writers {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

use std::sync::Mutex;

impl Writers {
    pub fn start(c: &Cluster, ns: &str, names: &[&str]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failed: Arc<Mutex<Vec<String>>> = Arc::default();
        let threads = names
            .iter()
            .map(|name| {
                let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                let (kubectl, kubeconfig, ns, name) =
                    (c.tools.kubectl.clone(), c.kubeconfig.display().to_string(), ns.to_string(), name.to_string());
                std::thread::spawn(move || {
                    for i in 0..10_000 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let patch = format!("{{\"spec\":{{\"replicas\":{}}}}}", 2 + i % 2);
                        let out = std::process::Command::new(&kubectl)
                            .args([
                                "--kubeconfig",
                                &kubeconfig,
                                "--context",
                                "alice",
                                "patch",
                                "deploy",
                                &name,
                                "-n",
                                &ns,
                            ])
                            .args(["--type=merge", "-p", &patch])
                            .output()
                            .unwrap();
                        if out.status.success() {
                            ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            failed.lock().unwrap().push(String::from_utf8_lossy(&out.stderr).trim().to_string());
                        }
                    }
                })
            })
            .collect();
        Self { stop, ok, failed, threads }
    }

    pub fn stop(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        (self.ok.load(Ordering::Relaxed), self.failed.lock().unwrap().clone())
    }
}

fn rollout_without_failures(c: &Cluster) {
    let (release_ns, ns) = ("rg-rollout", "s-rollout");
    // The chart's default delay; REPLICA_GUARD_E2E_SHUTDOWN_DELAY measures another (BENCHMARKS.md).
    let extra = std::env::var("REPLICA_GUARD_E2E_SHUTDOWN_DELAY")
        .map(|d| format!("server: {{shutdownDelaySeconds: {d}}}\n"))
        .unwrap_or_default();
    let (rendered, mut pods, sync) = install(c, release_ns, ns, 3, POLICY, &extra);
    let config = rendered.find("ConfigMap")["data"]["config.yaml"].as_str().unwrap_or_default().to_string();
    let delay = config.lines().find(|l| l.contains("shutdownDelaySeconds")).unwrap_or("").trim().to_string();
    eprintln!("rollout: the chart's {delay}");
    for name in ["payments-api", "orders-api", "search-api"] {
        c.apply("admin", &deployment(ns, name, 2, "nginx:1"), &[]).success();
    }
    let writers = Writers::start(c, ns, &["payments-api", "orders-api", "search-api"]);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(3));

    // 1. A pod is replaced: SIGTERM, /readyz turns 503, the endpoints drop it, it drains and exits;
    //    a new pod (a new host) takes its place once ready.
    let old = pods.remove(0);
    old.signal("TERM");
    let replacement = Pod::start(c, &rendered, release_ns, 4).unwrap_or_else(|e| panic!("{e}"));
    sync.watch(&replacement);
    let mut old = old;
    let exited = (0..600).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        !old.is_running()
    });
    assert!(exited, "the old pod did not exit after SIGTERM:\n{}", old.log());
    sync.forget(&old);
    pods.push(replacement);
    sync.wait_for(3, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));

    // 2. The serving certificate is rotated on every pod, kubelet-style, to one from a new CA:
    //    first the caBundle trusts both CAs (as cert-manager's CA injector or an upgrade would),
    //    then each pod's Secret volume swaps its ..data symlink.
    let webhook_name =
        rendered.find("ValidatingWebhookConfiguration")["metadata"]["name"].as_str().unwrap().to_string();
    let old_bundle = c
        .kubectl(
            "admin",
            &[
                "get",
                "validatingwebhookconfiguration",
                &webhook_name,
                "-o",
                "jsonpath={.webhooks[0].clientConfig.caBundle}",
            ],
        )
        .success()
        .stdout;
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let old_ca = String::from_utf8(b64.decode(old_bundle.trim()).unwrap()).unwrap();
    let new_pki = Pki::new("rotated CA");
    let service = rendered.find("Service")["metadata"]["name"].as_str().unwrap().to_string();
    let names = [service.clone(), format!("{service}.{release_ns}"), format!("{service}.{release_ns}.svc")];
    let (cert, key) = new_pki.sign(&names.iter().map(String::as_str).collect::<Vec<_>>(), None);
    let bundle = b64.encode(format!("{old_ca}{}", new_pki.ca_pem));
    let patch =
        format!("[{{\"op\":\"replace\",\"path\":\"/webhooks/0/clientConfig/caBundle\",\"value\":\"{bundle}\"}}]");
    c.kubectl("admin", &["patch", "validatingwebhookconfiguration", &webhook_name, "--type=json", "-p", &patch])
        .success();
    std::thread::sleep(Duration::from_secs(2));
    for pod in &pods {
        pod.tls.update(&[("tls.crt", cert.clone()), ("tls.key", key.clone()), ("ca.crt", new_pki.ca_pem.clone())]);
    }
    std::thread::sleep(Duration::from_secs(4));
    let (ok, failed) = writers.stop();
    eprintln!(
        "rollout: {ok} writes admitted, {} failed in {:.0} s; endpoints history {:?}",
        failed.len(),
        started.elapsed().as_secs_f64(),
        sync.history.lock().unwrap()
    );
    assert!(ok > 30, "the writers wrote: {ok}");
    assert!(failed.is_empty(), "failed writes: {failed:#?}");
    for pod in &pods {
        assert!(pod.log().contains("serving certificate reloaded"), "{} did not reload:\n{}", pod.name, pod.log());
    }
    uninstall(c, &rendered);
}

fn exempt_group_never_reaches_the_webhook(c: &Cluster) {
    let (release_ns, ns) = ("rg-exempt", "s-exempt");
    let policy = "override: {groups: [platform-admins]}, exemptions: {groups: [platform-admins]}";
    let (rendered, pods, _sync) = install(c, release_ns, ns, 2, policy, "");
    let reviews = || pods.iter().map(|p| crate::webhook::reviews_answered(p.admin())).sum::<f64>();
    c.apply("alice", &deployment(ns, "payments-api", 3, "nginx:1"), &[]).success();
    let before = reviews();
    assert!(before >= 1.0, "alice's create was reviewed: {before}");
    // bob is in platform-admins: the API server skips the webhook for him (the chart's
    // matchConditions from policy.exemptions), so even 6 replicas pass without a word.
    let ran = c.apply("bob", &deployment(ns, "payments-api", 6, "nginx:1"), &[]).success();
    assert!(ran.warnings().is_empty(), "{:?}", ran.warnings());
    assert_eq!(replicas(c, ns, "payments-api"), "6");
    assert_eq!(reviews(), before, "no AdmissionReview reached a webhook pod for bob's change");
    // alice is not exempt: still reviewed, and raising further is refused.
    let ran = c.kubectl("alice", &["scale", "deploy/payments-api", "-n", ns, "--replicas=7"]);
    assert!(denied_with(&ran, "replicas 6 -> 7 exceeds PED max 4"), "{}", ran.stderr);
    assert!(reviews() > before, "alice's scale reached the webhook");
    uninstall(c, &rendered);
}
