//! Fresh limits on the real node: the PED pipeline raises a team's limit, and the deploy that
//! follows two seconds later is allowed — by the chart's webhook pods, and with every webhook pod
//! gone, by the API server's backstop policy alone (its parameters written by the audit pod). The
//! registry is Firestore's own emulator (inside the node's network namespace, where the pods reach
//! it; the pods follow it through the `Listen` stream) or a ConfigMap the platform manages (a
//! watch). `bash tests/e2e/run.sh --bench-freshness [ROUNDS]` measures the same path over many
//! writes (BENCHMARKS.md).

use crate::cluster::{Cluster, free_port};
use crate::common::emulator::{self, Emulator};
use crate::node_stories::{RELEASE, WEBHOOK_PODS, chart, installed, values, wait_ready};
use crate::webhook::deployment;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use std::time::{Duration, Instant};

/// The team of these stories (its own, so no HPA or override of other stories applies).
const TEAM: &str = "team-f";
const PROJECT: &str = "ped-e2e";
const COLLECTION: &str = "ped";
/// The platform's registry ConfigMap (`registry.source=configMap`).
const CONFIGMAP: &str = "ped-limits";

/// Where the PED pipeline writes.
enum Registry {
    Firestore(Emulator),
    ConfigMap,
}

impl Registry {
    fn name(&self) -> &'static str {
        match self {
            Registry::Firestore(_) => "Firestore (emulator, Listen stream)",
            Registry::ConfigMap => "ConfigMap (watch)",
        }
    }

    /// The pipeline's write: team-f/payments-api may run `max` replicas. Returns when the
    /// registry has taken it.
    fn set(&self, c: &Cluster, max: i64) {
        match self {
            Registry::Firestore(emulator) => {
                let fields = emulator::entry(max, Some("payments-team@example.com"));
                let status = emulator.put(PROJECT, COLLECTION, &format!("{TEAM}--payments-api"), &fields);
                assert_eq!(status, 200, "the emulator took the write");
            }
            Registry::ConfigMap => {
                let data = serde_json::json!({"data": {"limits.yaml": registry_yaml(max)}}).to_string();
                c.kubectl("admin", &["patch", "configmap", CONFIGMAP, "-n", RELEASE, "--type=merge", "-p", &data])
                    .success();
            }
        }
    }
}

/// The ConfigMap registry with team-f/payments-api at `max`.
fn registry_yaml(max: i64) -> String {
    format!(
        "entries:\n- {{namespace: {TEAM}, deployment: payments-api, maxReplicas: {max}, owner: payments-team@example.com}}\n"
    )
}

/// Moves the release onto `registry` (`helm upgrade`, the pods rolled) with payments-api at 4.
fn switch_to(c: &Cluster, firestore: bool) -> Registry {
    installed(c);
    c.namespace(TEAM);
    let (registry, sets) = if firestore {
        let log = c.dir.join("firestore-emulator.log");
        let netns = c.placement.as_ref().map(|p| p.netns.as_str());
        let address = c.placement.as_ref().map_or([127, 0, 0, 1].into(), |p| p.address.into());
        let emulator = Emulator::start(address, free_port(), netns, &log).unwrap_or_else(|e| panic!("{e}"));
        let url = emulator.url();
        let registry = Registry::Firestore(emulator);
        registry.set(c, 4);
        let sets = vec![
            "registry.source=firestore".to_string(),
            format!("registry.firestore.project={PROJECT}"),
            format!("registry.firestore.collection={COLLECTION}"),
            format!("registry.firestore.url={url}"),
        ];
        (registry, sets)
    } else {
        write_configmap(c, &registry_yaml(4));
        (Registry::ConfigMap, vec!["registry.source=configMap".to_string()])
    };
    upgrade(c, &sets);
    c.apply("admin", &deployment(TEAM, "payments-api", 4, "nginx:1"), &[]).success();
    registry
}

/// The platform's registry ConfigMap (`registry.source=configMap`), holding `limits`.
pub fn write_configmap(c: &Cluster, limits: &str) {
    let configmap = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": CONFIGMAP, "namespace": RELEASE},
        "data": {"limits.yaml": limits},
    });
    c.apply("admin", &configmap.to_string(), &[]).success();
}

/// `helm upgrade --reuse-values` with `sets`, and both Deployments rolled out.
pub fn upgrade(c: &Cluster, sets: &[String]) {
    let mut args = vec!["upgrade", "rg", chart(), "-n", RELEASE, "--reuse-values"];
    for set in sets {
        args.extend(["--set", set]);
    }
    c.helm(&args).success();
    c.kubectl("admin", &["rollout", "status", "deploy/rg-replica-guard", "-n", RELEASE, "--timeout=240s"]).success();
    c.kubectl("admin", &["rollout", "status", "deploy/rg-replica-guard-audit", "-n", RELEASE, "--timeout=240s"])
        .success();
    wait_ready(c, WEBHOOK_PODS, 3, Duration::from_secs(120));
}

/// Back to the values the other node stories install with (the file registry).
pub fn restore(c: &Cluster) {
    let values = values(c).display().to_string();
    c.helm(&["upgrade", "rg", chart(), "-n", RELEASE, "-f", &values]).success();
    c.kubectl("admin", &["rollout", "status", "deploy/rg-replica-guard", "-n", RELEASE, "--timeout=240s"]).success();
    wait_ready(c, WEBHOOK_PODS, 3, Duration::from_secs(120));
}

/// Scales the webhook to `replicas` pods and waits for them (0: every pod gone).
fn webhook_pods(c: &Cluster, replicas: usize) {
    let count = format!("--replicas={replicas}");
    c.kubectl("admin", &["scale", "deploy/rg-replica-guard", "-n", RELEASE, &count]).success();
    wait_ready(c, WEBHOOK_PODS, replicas, Duration::from_secs(180));
}

/// team-f's Deployments, as the admin's client sees them.
fn deployments(c: &Cluster, runtime: &tokio::runtime::Runtime) -> kube::Api<Deployment> {
    runtime.block_on(async { kube::Api::namespaced(c.client("admin").await, TEAM) })
}

/// How long after now a dry-run change of payments-api to 6 replicas gets `allowed` (polled every
/// 20 ms, at most `limit`); the last refusal when it never does.
async fn until(api: &kube::Api<Deployment>, allowed: bool, limit: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let patch = serde_json::json!({"spec": {"replicas": 6}});
    let params = PatchParams::default().dry_run();
    let mut last = String::new();
    while started.elapsed() < limit {
        match api.patch("payments-api", &params, &Patch::Merge(&patch)).await {
            Ok(_) if allowed => return Ok(started.elapsed()),
            Err(e) if !allowed && e.to_string().contains("exceeds PED max 4") => return Ok(started.elapsed()),
            Ok(_) => last = "allowed".into(),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("not {} within {limit:?}: {last}", if allowed { "allowed" } else { "refused" }))
}

/// The user story, for one registry and with the webhook up or gone: PED raises payments-api from
/// 4 to 6 and `kubectl apply` of 6 replicas two seconds later is allowed; lowered to 4 again, the
/// same apply two seconds later is refused (by the webhook, or by the backstop policy).
fn raise_then_lower(c: &Cluster, registry: &Registry, webhook_up: bool) {
    let who = if webhook_up { "webhook up" } else { "every webhook pod gone" };
    let refusal = if webhook_up {
        "replicas 4 -> 6 exceeds PED max 4 for team-f/payments-api".to_string()
    } else {
        "ValidatingAdmissionPolicy 'rg-replica-guard-backstop'".to_string()
    };
    let ran = c.apply("alice", &deployment(TEAM, "payments-api", 6, "nginx:1"), &[]);
    assert!(
        !ran.ok && ran.stderr.contains(&refusal),
        "{} ({who}): at 4, 6 is refused: {}",
        registry.name(),
        ran.stderr
    );
    registry.set(c, 6);
    std::thread::sleep(Duration::from_secs(2));
    let ran = c.apply("alice", &deployment(TEAM, "payments-api", 6, "nginx:1"), &[]);
    assert!(
        ran.ok,
        "{} ({who}): 6 replicas two seconds after PED raised the limit to 6: {}",
        registry.name(),
        ran.stderr
    );
    c.apply("alice", &deployment(TEAM, "payments-api", 4, "nginx:1"), &[]).success();
    registry.set(c, 4);
    std::thread::sleep(Duration::from_secs(2));
    let ran = c.apply("alice", &deployment(TEAM, "payments-api", 6, "nginx:1"), &[]);
    assert!(
        !ran.ok && ran.stderr.contains(&refusal) && ran.stderr.contains("exceeds PED max 4"),
        "{} ({who}): 6 replicas two seconds after PED lowered the limit to 4: {}",
        registry.name(),
        ran.stderr
    );
}

/// The webhook pods' decision records about team-f (their stdout).
fn records(c: &Cluster) -> Vec<serde_json::Value> {
    let ran = c.kubectl("admin", &["logs", "-n", RELEASE, "-l", WEBHOOK_PODS, "--tail=-1", "--prefix=false"]).success();
    ran.stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["log"] == "replica-guard-audit" && r["namespace"] == TEAM)
        .collect()
}

pub fn a_raised_limit_is_honoured_within_seconds(c: &Cluster) {
    for firestore in [true, false] {
        let registry = switch_to(c, firestore);
        raise_then_lower(c, &registry, true);
        // Provenance: the decision record of the allowed raise names the registry revision it
        // used. (The refusals come from the backstop policy, which the API server asks before
        // the webhook: a change it refuses never reaches the webhook.)
        let want = if firestore { "firestore@".to_string() } else { format!("configmap/{RELEASE}/{CONFIGMAP}@") };
        let records = records(c);
        let raised = records
            .iter()
            .rev()
            .find(|r| r["decision"] == "allowed" && r["newReplicas"] == 6 && r["maxReplicas"] == 6)
            .unwrap_or_else(|| panic!("{}: no record of the allowed raise among {records:?}", registry.name()));
        let revision = raised["registryRevision"].as_str().unwrap_or_default().to_string();
        assert!(revision.starts_with(&want), "{}: the record names the revision: {raised}", registry.name());
        webhook_pods(c, 0);
        raise_then_lower(c, &registry, false);
        webhook_pods(c, 3);
        eprintln!(
            "node: {}: raised and lowered within 2 s, webhook up and gone (revision {revision})",
            registry.name()
        );
    }
    restore(c);
}

/// `--bench-freshness`: from a registry write to enforcement, `rounds` writes (raise, then lower)
/// per registry, with the webhook up and with every webhook pod gone. Prints one JSON line.
pub fn bench(c: &Cluster, rounds: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let api = deployments(c, &runtime);
    let mut out = serde_json::json!({"rounds": rounds});
    for firestore in [true, false] {
        let registry = switch_to(c, firestore);
        for webhook_up in [true, false] {
            webhook_pods(c, if webhook_up { 3 } else { 0 });
            runtime.block_on(until(&api, false, Duration::from_secs(60))).expect("at 4, 6 is refused");
            let mut samples = vec![];
            for round in 0..rounds {
                let raise = round % 2 == 0;
                registry.set(c, if raise { 6 } else { 4 });
                let took = runtime.block_on(until(&api, raise, Duration::from_secs(30))).unwrap();
                samples.push(took.as_secs_f64() * 1000.0);
            }
            samples.sort_by(f64::total_cmp);
            let pick = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
            let key = format!(
                "{}_{}_ms",
                if firestore { "firestore" } else { "configmap" },
                if webhook_up { "webhook_up" } else { "backstop_alone" }
            );
            out[key] = serde_json::json!({"p50": pick(0.5), "p99": pick(0.99), "max": pick(1.0)});
            eprintln!("{}: {}", registry.name(), out);
        }
        webhook_pods(c, 3);
    }
    restore(c);
    println!("{out}");
}
