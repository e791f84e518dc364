//! What a deploy pays for admission at the API server, against what any webhook costs. Writers
//! (1, 10 and 50 at once, each on its own kept-alive connection with the admin certificate) patch
//! their own Deployment and update its Scale, as pipelines' `kubectl apply` and `kubectl scale`
//! do, in rounds that rotate through five set-ups so that the machine's noise hits all alike:
//! no admission; the backstop policy alone (the chart's ValidatingAdmissionPolicy); a
//! fixed-answer webhook (the benchmarks' floor server, `benches/loadgen.rs floor`: the same TLS and
//! HTTP stack, parses the body, answers "allowed"), registered exactly like replica-guard;
//! replica-guard alone; replica-guard with the backstop (the chart's default). The API server's
//! own admission metrics, read before and after each round, cross-check the clock of the writers.
//!
//! A benchmark, not a test (BENCHMARKS.md): `bash tests/e2e/run.sh --bench-latency [ROUNDS]
//! [SECONDS]` runs both webhooks as processes on 127.0.0.1; `--bench-latency-node` runs them as
//! pods on the real node, reached through their Services (the chart's, installed by Helm).

use crate::cluster::Cluster;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use std::time::{Duration, Instant};

/// How many writers write at once, in turn.
const WRITERS: [usize; 3] = [1, 10, 50];
/// The writers' namespace; writer `i` owns the Deployment `writer-i`.
const NS: &str = "bench-latency";
/// The fixed-answer webhook's name in the API server's metrics.
const FLOOR_WEBHOOK: &str = "floor.bench.replica-guard.test";
/// replica-guard's webhook (the chart's name for it).
const GUARD_WEBHOOK: &str = "validate.replica-guard.io";
/// Each writer's most writes in one round, whatever its length: the loop stops by itself.
const MOST_WRITES_PER_ROUND: usize = 20_000;
/// A write that takes longer counts as failed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);
/// Writes before the measured part of a round (connections warm, caches filled).
const WARM_UP: Duration = Duration::from_secs(1);

/// The five set-ups: their names and whether each has (the fixed-answer webhook, replica-guard's
/// webhook, the backstop's binding).
const SETUPS: [(&str, [bool; 3]); 5] = [
    ("no admission", [false, false, false]),
    ("backstop policy alone", [false, false, true]),
    ("fixed-answer webhook", [true, false, false]),
    ("replica-guard webhook alone", [false, true, false]),
    ("replica-guard webhook + backstop (the chart's default)", [false, true, true]),
];
const FLOOR_SETUP: usize = 2;
const GUARD_SETUP: usize = 3;

/// An object a set-up has or lacks: applied before its rounds, deleted before the others'.
pub struct Toggle {
    kind: &'static str,
    name: String,
    manifest: String,
}

impl Toggle {
    fn set(&self, c: &Cluster, present: bool) {
        if present {
            c.apply("admin", &self.manifest, &[]).success();
        } else {
            let _ = c.kubectl("admin", &["delete", self.kind, &self.name, "--ignore-not-found"]);
        }
    }
}

/// What the rotation switches: the fixed-answer webhook's configuration, replica-guard's, and
/// the backstop's binding.
pub struct Rotation {
    pub floor: Toggle,
    pub guard: Toggle,
    pub backstop: Toggle,
    /// The webhooks' processes when they run here (the fixed-answer webhook's, replica-guard's):
    /// their CPU time per call is measured too.
    pub processes: Option<[u32; 2]>,
}

impl Rotation {
    fn set(&self, c: &Cluster, setup: [bool; 3]) {
        for (toggle, present) in [&self.floor, &self.guard, &self.backstop].into_iter().zip(setup) {
            toggle.set(c, present);
        }
    }
}

pub fn webhook_configuration(manifest: String, name: &str) -> Toggle {
    Toggle { kind: "validatingwebhookconfiguration", name: name.into(), manifest }
}

pub fn binding(manifest: String, name: &str) -> Toggle {
    Toggle { kind: "validatingadmissionpolicybinding", name: name.into(), manifest }
}

fn writer(i: usize) -> String {
    format!("writer-{i:02}")
}

/// The registry entries of the writers' Deployments (4 replicas each), as YAML list items
/// indented by `indent`.
pub fn registry_entries(indent: &str) -> String {
    (0..WRITERS[2])
        .map(|i| format!("{indent}- {{namespace: {NS}, deployment: {}, maxReplicas: 4}}\n", writer(i)))
        .collect()
}

/// The writers' namespace and Deployments. Their pods select no node: the controllers create
/// and delete them as replicas change (the API server's work, as in a cluster), but no kubelet
/// runs them.
pub fn writers_deployments(c: &Cluster) {
    c.namespace(NS);
    let all: Vec<String> = (0..WRITERS[2])
        .map(|i| {
            crate::webhook::deployment(NS, &writer(i), 2, "nginx:1").replace(
                "    spec:\n      containers:",
                "    spec:\n      nodeSelector: {replica-guard.test/bench: none}\n      containers:",
            )
        })
        .collect();
    c.apply("admin", &all.join("---\n"), &[]).success();
}

/// The backstop's parameters for the writers' namespace, as `watch` writes them.
pub fn backstop_parameters() -> String {
    let enforced: Vec<String> = (0..WRITERS[2]).map(|i| format!("{}: 4", writer(i))).collect();
    format!(
        "apiVersion: replica-guard.io/v1\nkind: BackstopLimits\nmetadata: {{name: replica-guard, namespace: {NS}}}\nspec: {{enforced: {{{}}}}}\n",
        enforced.join(", ")
    )
}

/// One configuration's figures over its rounds.
#[derive(Default)]
struct Figures {
    /// Milliseconds per write, as the writer's clock saw it.
    samples: Vec<f64>,
    failed: u64,
    /// The API server's own account over the same rounds (sums and counts of its histograms).
    server: Account,
    /// The webhook process's time on a CPU and waiting for one, nanoseconds, over the same rounds.
    process: Scheduled,
}

/// A process's time on a CPU and waiting in the run queue, summed over its threads
/// (`/proc/PID/task/*/schedstat`, nanoseconds).
#[derive(Default, Clone, Copy)]
struct Scheduled {
    on_cpu: u64,
    waiting: u64,
}

impl Scheduled {
    fn read(pid: u32) -> Self {
        let mut total = Self::default();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return total };
        for task in tasks.flatten() {
            let text = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().unwrap_or(0));
            total.on_cpu += fields.next().unwrap_or(0);
            total.waiting += fields.next().unwrap_or(0);
        }
        total
    }
}

/// Sums and counts of the API server's admission histograms: the fixed-answer webhook's calls,
/// replica-guard's, and the validating admission step of every UPDATE (the writers' and the
/// controllers'). A policy's checks are timed by the API server only when they deny or fail, so
/// the backstop's allowed writes have no figure of their own there.
#[derive(Default, Clone, Copy)]
struct Account {
    floor: (f64, f64),
    guard: (f64, f64),
    step: (f64, f64),
}

impl Account {
    fn read(c: &Cluster) -> Self {
        let text = c.kubectl("admin", &["get", "--raw", "/metrics"]).success().stdout;
        let mut account = Self::default();
        for line in text.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            let (metric, labels) = series.split_once('{').unwrap_or((series, ""));
            let slot = match metric.trim_end_matches("_sum").trim_end_matches("_count") {
                "apiserver_admission_webhook_admission_duration_seconds"
                    if labels.contains(&format!("name=\"{FLOOR_WEBHOOK}\"")) =>
                {
                    &mut account.floor
                }
                "apiserver_admission_webhook_admission_duration_seconds"
                    if labels.contains(&format!("name=\"{GUARD_WEBHOOK}\"")) =>
                {
                    &mut account.guard
                }
                "apiserver_admission_step_admission_duration_seconds"
                    if labels.contains("type=\"validate\"") && labels.contains("operation=\"UPDATE\"") =>
                {
                    &mut account.step
                }
                _ => continue,
            };
            if metric.ends_with("_sum") {
                slot.0 += value;
            } else if metric.ends_with("_count") {
                slot.1 += value;
            }
        }
        account
    }

    fn add_change(&mut self, before: &Self, after: &Self) {
        for (total, b, a) in [
            (&mut self.floor, before.floor, after.floor),
            (&mut self.guard, before.guard, after.guard),
            (&mut self.step, before.step, after.step),
        ] {
            total.0 += a.0 - b.0;
            total.1 += a.1 - b.1;
        }
    }
}

/// Mean milliseconds per observation and how many, of a (sum, count) change.
fn mean(slot: (f64, f64)) -> serde_json::Value {
    if slot.1 < 1.0 {
        return serde_json::json!(null);
    }
    serde_json::json!({"mean_ms": round(slot.0 / slot.1 * 1000.0), "calls": slot.1})
}

fn round(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

fn pick(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() { f64::NAN } else { sorted[((sorted.len() as f64 - 1.0) * q).round() as usize] }
}

/// Plays the rotation: for each number of writers, `rounds` rounds of each set-up (in turn,
/// reversed every other round), each `seconds` long after a warm-up. Prints a JSON summary on
/// stdout and a Markdown table on stderr; leaves every toggle as `end` says.
pub fn measure(c: &Cluster, rotation: &Rotation, rounds: usize, seconds: f64, end: [bool; 3]) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let clients: Vec<kube::Client> = runtime.block_on(async {
        let mut clients = vec![];
        for _ in 0..WRITERS[2] {
            clients.push(c.client("admin").await);
        }
        clients
    });
    let measured = Duration::from_secs_f64(seconds);
    let mut out = serde_json::json!({"rounds_each": rounds, "seconds_per_round": seconds});
    let mut table = String::from(
        "| writers | set-up | writes | p50 ms | p99 ms | max ms | added p50 | added p99 | API server: mean ms per webhook call | per validating step of an UPDATE |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for writers in WRITERS {
        let mut figures: Vec<Figures> = SETUPS.iter().map(|_| Figures::default()).collect();
        for round in 0..rounds {
            let order: Vec<usize> =
                if round % 2 == 0 { (0..SETUPS.len()).collect() } else { (0..SETUPS.len()).rev().collect() };
            for setup in order {
                rotation.set(c, SETUPS[setup].1);
                // The API server's informers pick the configuration up within a second or so.
                std::thread::sleep(Duration::from_secs(2));
                // The process that answers this set-up's webhook calls, when it runs here.
                let pid = rotation.processes.and_then(|[floor, guard]| match SETUPS[setup].1 {
                    [true, ..] => Some(floor),
                    [_, true, _] => Some(guard),
                    _ => None,
                });
                let scheduled = pid.map(Scheduled::read);
                let before = Account::read(c);
                let (samples, failed) = runtime.block_on(write_round(&clients[..writers], measured));
                let after = Account::read(c);
                let f = &mut figures[setup];
                if let (Some(pid), Some(was)) = (pid, scheduled) {
                    let now = Scheduled::read(pid);
                    f.process.on_cpu += now.on_cpu - was.on_cpu;
                    f.process.waiting += now.waiting - was.waiting;
                }
                f.samples.extend(samples);
                f.failed += failed;
                f.server.add_change(&before, &after);
            }
        }
        for f in &mut figures {
            f.samples.sort_by(f64::total_cmp);
        }
        let base = (pick(&figures[0].samples, 0.5), pick(&figures[0].samples, 0.99));
        let mut here = serde_json::json!({});
        for ((name, has), f) in SETUPS.iter().zip(&figures) {
            let (p50, p99, max) = (pick(&f.samples, 0.5), pick(&f.samples, 0.99), pick(&f.samples, 1.0));
            let calls = if has[0] { f.server.floor.1 } else { f.server.guard.1 };
            let per_call = |ns: u64| if calls < 1.0 { f64::NAN } else { round(ns as f64 / calls / 1000.0) };
            let server = serde_json::json!({
                "fixed_answer_webhook": mean(f.server.floor), "replica_guard_webhook": mean(f.server.guard),
                "validating_step_per_update": mean(f.server.step),
                "webhook_process_us_per_call": {"on_cpu": per_call(f.process.on_cpu), "waiting_for_a_cpu": per_call(f.process.waiting)},
            });
            here[*name] = serde_json::json!({
                "writes": f.samples.len(), "failed": f.failed, "p50_ms": round(p50), "p99_ms": round(p99),
                "max_ms": round(max), "added_p50_ms": round(p50 - base.0), "added_p99_ms": round(p99 - base.1),
                "api_server": server,
            });
            let per_call = |slot: (f64, f64)| {
                if slot.1 < 1.0 { String::new() } else { format!("{:.3}", slot.0 / slot.1 * 1000.0) }
            };
            let webhook = if has[0] { per_call(f.server.floor) } else { per_call(f.server.guard) };
            table += &format!(
                "| {writers} | {name} | {}{} | {p50:.2} | {p99:.2} | {max:.1} | {:+.2} | {:+.2} | {webhook} | {} |\n",
                f.samples.len(),
                if f.failed > 0 { format!(" ({} failed)", f.failed) } else { String::new() },
                p50 - base.0,
                p99 - base.1,
                per_call(f.server.step),
            );
        }
        // replica-guard's added latency as a multiple of what the fixed-answer webhook adds.
        let added = |s: usize, q: f64| pick(&figures[s].samples, q) - pick(&figures[0].samples, q);
        here["replica_guard_added_over_fixed_answer_added"] = serde_json::json!({
            "p50": round(added(GUARD_SETUP, 0.5) / added(FLOOR_SETUP, 0.5)),
            "p99": round(added(GUARD_SETUP, 0.99) / added(FLOOR_SETUP, 0.99)),
            "p50_difference_ms": round(added(GUARD_SETUP, 0.5) - added(FLOOR_SETUP, 0.5)),
            "p99_difference_ms": round(added(GUARD_SETUP, 0.99) - added(FLOOR_SETUP, 0.99)),
            // The API server's own clock around the call: replica-guard's mean over the floor's.
            "api_server_call": round(
                (figures[GUARD_SETUP].server.guard.0 / figures[GUARD_SETUP].server.guard.1)
                    / (figures[FLOOR_SETUP].server.floor.0 / figures[FLOOR_SETUP].server.floor.1)
            ),
        });
        eprintln!("bench-latency: {writers} writers: {}", here["replica_guard_added_over_fixed_answer_added"]);
        if rotation.processes.is_some() {
            let per_call = |setup: usize| &here[SETUPS[setup].0]["api_server"]["webhook_process_us_per_call"];
            eprintln!(
                "bench-latency: {writers} writers: per call, µs on a CPU / waiting for one: fixed-answer webhook {} / {}, replica-guard {} / {}",
                per_call(FLOOR_SETUP)["on_cpu"],
                per_call(FLOOR_SETUP)["waiting_for_a_cpu"],
                per_call(GUARD_SETUP)["on_cpu"],
                per_call(GUARD_SETUP)["waiting_for_a_cpu"],
            );
        }
        out[format!("{writers}_writers")] = here;
    }
    rotation.set(c, end);
    eprintln!("\n{table}");
    println!("{out}");
}

/// One round: every writer patches its Deployment and updates its Scale in turn (replicas 2 and
/// 3, within the limit of 4), each on its own client, for `WARM_UP` then `measured`. The measured
/// writes' milliseconds, and how many failed.
async fn write_round(clients: &[kube::Client], measured: Duration) -> (Vec<f64>, u64) {
    let warm = Instant::now() + WARM_UP;
    let end = warm + measured;
    let tasks: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(i, client)| {
            let api: kube::Api<Deployment> = kube::Api::namespaced(client.clone(), NS);
            let name = writer(i);
            tokio::spawn(async move {
                let (mut samples, mut failed) = (vec![], 0u64);
                let params = PatchParams::default();
                for n in 0..MOST_WRITES_PER_ROUND {
                    let sent = Instant::now();
                    if sent >= end {
                        break;
                    }
                    let patch = serde_json::json!({"spec": {"replicas": 2 + n % 2}});
                    let written = if n % 2 == 0 {
                        tokio::time::timeout(WRITE_TIMEOUT, api.patch(&name, &params, &Patch::Merge(&patch)))
                            .await
                            .map(|r| r.is_ok())
                    } else {
                        tokio::time::timeout(WRITE_TIMEOUT, api.patch_scale(&name, &params, &Patch::Merge(&patch)))
                            .await
                            .map(|r| r.is_ok())
                    };
                    if sent < warm {
                        continue;
                    }
                    match written {
                        Ok(true) => samples.push(sent.elapsed().as_secs_f64() * 1000.0),
                        _ => failed += 1,
                    }
                }
                (samples, failed)
            })
        })
        .collect();
    let (mut samples, mut failed) = (vec![], 0);
    for task in tasks {
        let (s, f) = task.await.unwrap();
        samples.extend(s);
        failed += f;
    }
    (samples, failed)
}

/// On 127.0.0.1: replica-guard (the release binary) and the fixed-answer webhook as processes,
/// with the same development certificate, registered with the same rules and `url:`
/// clientConfig; the backstop as the chart renders it, with the parameters `watch` would write.
pub fn run(c: &Cluster, rounds: usize, seconds: f64) {
    writers_deployments(c);
    let bin = std::env::var("REPLICA_GUARD_BIN").expect("REPLICA_GUARD_BIN: the release binary (run.sh sets it)");
    let dir = tempfile::tempdir().unwrap();
    let registry = format!("entries:\n{}", registry_entries("  "));
    let config = crate::common::write_serve_config_with(dir.path(), "", "mode: enforce", &registry);
    let guard = crate::common::ServeProcess::start_binary(&bin, dir, &config, &[]);
    let floor = Floor::start(&guard.dir.path().join("certs"));
    let registered = |name: &str, address: std::net::SocketAddr| {
        crate::webhook::configuration(name, NS, &format!("https://{address}/validate"), &guard.ca_pem, "Fail")
    };
    let floor_configuration = registered("rg-bench-floor", floor.address)
        .replace(&format!("name: {GUARD_WEBHOOK}"), &format!("name: {FLOOR_WEBHOOK}"));
    let rendered = crate::pods::render_chart(c, "rg-bench-backstop", "audit: {enabled: true}\n");
    c.apply_kinds(&rendered, &["CustomResourceDefinition", "ValidatingAdmissionPolicy"]);
    c.kubectl(
        "admin",
        &["wait", "--for=condition=Established", "crd/backstoplimits.replica-guard.io", "--timeout=30s"],
    )
    .success();
    c.apply("admin", &backstop_parameters(), &[]).success();
    let policy_binding = rendered.objects.iter().find(|o| o["kind"] == "ValidatingAdmissionPolicyBinding").unwrap();
    let rotation = Rotation {
        floor: webhook_configuration(floor_configuration, "rg-bench-floor"),
        guard: webhook_configuration(registered("rg-bench", guard.https), "rg-bench"),
        backstop: binding(
            serde_yaml_ng::to_string(policy_binding).unwrap(),
            policy_binding["metadata"]["name"].as_str().unwrap(),
        ),
        processes: Some([floor.child.id(), guard.child.id()]),
    };
    measure(c, &rotation, rounds, seconds, [false, false, false]);
    let reviews = crate::webhook::reviews_answered(guard.admin);
    eprintln!("bench-latency: replica-guard answered {reviews} reviews");
}

/// The fixed-answer webhook as a process (`REPLICA_GUARD_FLOOR_BIN`: the load generator's
/// `floor`), stopped when dropped.
struct Floor {
    child: std::process::Child,
    address: std::net::SocketAddr,
}

impl Floor {
    fn start(certs: &std::path::Path) -> Self {
        let bin = std::env::var("REPLICA_GUARD_FLOOR_BIN")
            .expect("REPLICA_GUARD_FLOOR_BIN: the load generator, whose `floor` answers reviews (run.sh sets it)");
        let address = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let child = std::process::Command::new(bin)
            .args(["floor", "--address", &address.to_string(), "--cert"])
            .arg(certs.join("tls.crt"))
            .arg("--key")
            .arg(certs.join("tls.key"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the floor server starts");
        // Dropped (killed and waited for) when it never listens.
        let floor = Self { child, address };
        for _ in 0..500 {
            if std::net::TcpStream::connect(address).is_ok() {
                return floor;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the floor server never listened on {address}");
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fixed-answer webhook's image on the node (`tests/e2e/image.sh --binary LOADGEN`).
pub const FLOOR_IMAGE: &str = "replica-guard.test/floor:bench";
/// The image.sh arguments that build it from `REPLICA_GUARD_FLOOR_BIN`.
pub fn floor_image_arguments() -> Vec<String> {
    let bin =
        std::env::var("REPLICA_GUARD_FLOOR_BIN").expect("REPLICA_GUARD_FLOOR_BIN: the load generator (run.sh sets it)");
    ["--binary", &bin, "--ref", FLOOR_IMAGE, "--install-as", "floor"].map(String::from).to_vec()
}

/// On the real node: the chart installed by Helm (client certificates on, the writers' entries in
/// its registry ConfigMap), its three webhook pods reached through its Service; the fixed-answer
/// webhook as three pods of its own image behind its own Service, registered with a copy of the
/// chart's live webhook configuration (same rules, scope, failure policy and timeout; its own
/// name, Service and CA); the backstop as the chart's binding, with the parameters the audit pod
/// writes.
pub fn run_on_node(c: &Cluster, rounds: usize, seconds: f64) {
    crate::node_stories::installed_with(c, &registry_entries("      "));
    writers_deployments(c);
    crate::node_stories::retried(Duration::from_secs(120), || {
        let ran = c.kubectl(
            "admin",
            &["get", "backstoplimits", "replica-guard", "-n", NS, "-o", "jsonpath={.spec.enforced.writer-49}"],
        );
        if ran.ok && ran.stdout == "4" { Ok(()) } else { Err(format!("{}{}", ran.stdout, ran.stderr)) }
    })
    .expect("the audit pod writes the writers' backstop parameters");
    let ca = floor_pods(c);
    let guard = live(c, "validatingwebhookconfiguration", "rg-replica-guard");
    let mut floor = guard.clone();
    floor["metadata"]["name"] = "rg-bench-floor".into();
    floor["webhooks"][0]["name"] = FLOOR_WEBHOOK.into();
    floor["webhooks"][0]["clientConfig"] = serde_json::json!({
        "service": {"name": "rg-floor", "namespace": "rg-floor", "path": "/validate", "port": 443},
        "caBundle": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, ca),
    });
    let policy_binding = live(c, "validatingadmissionpolicybinding", "rg-replica-guard-backstop");
    let rotation = Rotation {
        floor: webhook_configuration(floor.to_string(), "rg-bench-floor"),
        guard: webhook_configuration(guard.to_string(), "rg-replica-guard"),
        backstop: binding(policy_binding.to_string(), "rg-replica-guard-backstop"),
        // Three pods each, reached through the Services: the API server's clock only.
        processes: None,
    };
    eprintln!(
        "bench-latency: on the node, failurePolicy {} and timeoutSeconds {} as the chart renders them",
        guard["webhooks"][0]["failurePolicy"], guard["webhooks"][0]["timeoutSeconds"]
    );
    // Left as installed: the chart's webhook and binding.
    measure(c, &rotation, rounds, seconds, [false, true, true]);
}

/// A live object as JSON that `kubectl apply` can create again (name and labels kept, the
/// server's bookkeeping dropped).
fn live(c: &Cluster, kind: &str, name: &str) -> serde_json::Value {
    let ran = c.kubectl("admin", &["get", kind, name, "-o", "json"]).success();
    let mut object: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    let metadata = &object["metadata"];
    object["metadata"] = serde_json::json!({"name": metadata["name"], "labels": metadata["labels"]});
    object.as_object_mut().unwrap().remove("status");
    object
}

/// The fixed-answer webhook's Deployment (three pods, the chart's requests and memory limit) and
/// Service, with a serving certificate for the Service's names; its CA's PEM.
fn floor_pods(c: &Cluster) -> String {
    let bin = std::env::var("REPLICA_GUARD_RELEASE_BIN").expect("REPLICA_GUARD_RELEASE_BIN (run.sh sets it)");
    let certs = c.dir.join("floor-certs");
    let made = std::process::Command::new(bin)
        .args(["certs", "--out-dir"])
        .arg(&certs)
        .args(["--name", "rg-floor", "--name", "rg-floor.rg-floor", "--name", "rg-floor.rg-floor.svc"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    c.apply("admin", "apiVersion: v1\nkind: Namespace\nmetadata: {name: rg-floor}\n", &[]).success();
    let file = |name: &str| format!("{name}={}", certs.join(name).display());
    c.kubectl(
        "admin",
        &[
            "create",
            "secret",
            "generic",
            "rg-floor-tls",
            "-n",
            "rg-floor",
            "--from-file",
            &file("tls.crt"),
            "--from-file",
            &file("tls.key"),
        ],
    )
    .success();
    let manifest = format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: rg-floor, namespace: rg-floor}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: rg-floor}}}}
  template:
    metadata: {{labels: {{app: rg-floor}}}}
    spec:
      containers:
      - name: floor
        image: {FLOOR_IMAGE}
        imagePullPolicy: Never
        command: [/usr/local/bin/floor, floor, --address, "0.0.0.0:8443", --cert, /tls/tls.crt, --key, /tls/tls.key]
        ports: [{{containerPort: 8443}}]
        readinessProbe: {{tcpSocket: {{port: 8443}}, periodSeconds: 1}}
        resources: {{requests: {{cpu: 50m, memory: 64Mi}}, limits: {{memory: 128Mi}}}}
        volumeMounts: [{{name: tls, mountPath: /tls, readOnly: true}}]
      volumes: [{{name: tls, secret: {{secretName: rg-floor-tls}}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: rg-floor, namespace: rg-floor}}
spec: {{selector: {{app: rg-floor}}, ports: [{{port: 443, targetPort: 8443}}]}}
"#
    );
    c.apply("admin", &manifest, &[]).success();
    c.kubectl("admin", &["rollout", "status", "deploy/rg-floor", "-n", "rg-floor", "--timeout=180s"]).success();
    std::fs::read_to_string(certs.join("ca.crt")).unwrap()
}
