//! The daily usage records of the continuous audit, against the real API server and with the
//! chart's RBAC: the day's highest replicas are kept in the chart's ConfigMap as they happen, a
//! restart does not lose them, and the first start after midnight prints the finished day.

use crate::Scenario;
use crate::audit_stories::{start_watch, wait_for_metric};
use crate::cluster::Cluster;
use crate::webhook::deployment;
use std::time::{Duration, Instant};

pub fn all() -> Vec<Scenario> {
    vec![
        ("usage records: a day of 3 -> 6 -> 4 replicas is recorded as 6, across a restart at midnight", day_of_3_6_4),
        (
            "usage records: a day too large for one ConfigMap is sharded, a change rewrites one shard, and a restart at midnight loses no high",
            sharded_day_across_midnight,
        ),
        (
            "SIGTERM to watch loses nothing: highs reached 1 s before it are saved and billed, and a workload that went over meanwhile gets exactly one Event from the next watch",
            sigterm_loses_nothing,
        ),
    ]
}

/// The chart's names with `fullnameOverride: usage-rg` in release namespace `rg-usage`.
const RELEASE_NS: &str = "rg-usage";
const STATE: &str = "usage-rg-usage";

/// The state ConfigMap's (date, highs of `ns`/`name` as [replicas, hpaMax, cpu, memGiB, registered,
/// owner, announcedOver]).
fn saved(c: &Cluster, ns: &str, name: &str) -> Option<(String, serde_json::Value)> {
    let ran = c.kubectl("admin", &["get", "configmap", STATE, "-n", RELEASE_NS, "-o", "json"]);
    let cm: serde_json::Value = serde_json::from_str(&ran.stdout).ok()?;
    let rows: Vec<serde_json::Value> = serde_json::from_str(cm["data"]["workloads"].as_str()?).ok()?;
    let row = rows.into_iter().find(|r| r[0] == ns && r[1] == name)?;
    Some((cm["data"]["date"].as_str()?.to_string(), serde_json::json!(row.as_array()?[2..])))
}

/// Waits (bounded) until the saved highs of `name` are `want`; returns the saved date.
fn wait_for_saved(c: &Cluster, ns: &str, name: &str, want: serde_json::Value) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = saved(c, ns, name);
        match got {
            Some((date, highs)) if highs == want => return date,
            _ if Instant::now() > deadline => panic!("saved highs of {ns}/{name}: {got:?}, want {want}"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn day_of_3_6_4(c: &Cluster) {
    let ns = "s-usage";
    c.namespace(ns);
    c.apply("admin", &deployment(ns, "api", 3, "nginx:1"), &[]).success();
    // The chart's audit account and its usage Role, in a release namespace of its own.
    let kinds = ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"];
    let (_, kubeconfig) = c.chart_account(RELEASE_NS, "fullnameOverride: usage-rg\n", &kinds, "usage-rg-audit");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("limits.yaml"),
        format!("entries:\n  - {{namespace: {ns}, deployment: api, maxReplicas: 4, owner: payments-team}}\n"),
    )
    .unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "server: {{adminAddress: '127.0.0.1:0'}}\nregistry: {{file: {{path: limits.yaml}}}}\npricing: {{base: 180, perVcpu: 19, perGib: 19, divisor: 4}}\naudit: {{intervalSeconds: 0.5, usage: {{enabled: true, state: {{namespace: {RELEASE_NS}, name: {STATE}}}}}}}\ncluster: {{name: e2e-east}}\nmetrics: {{workloads: all}}\nlogging: {{format: json}}\n"
        ),
    )
    .unwrap();
    let replicas = |n: i32| format!("replica_guard_workload_replicas{{deployment=\"api\",namespace=\"{ns}\"}} {n}");

    let watching = start_watch(&kubeconfig, &config);
    wait_for_metric(&watching, &replicas(3));
    let today = wait_for_saved(c, ns, "api", serde_json::json!([3, null, 2.0, 4.0, 4, "payments-team", false]));
    assert_eq!(today, replica_guard::cluster::usage::day::today().to_string(), "the UTC day");
    for n in [6, 4] {
        c.kubectl("admin", &["scale", "deploy/api", "-n", ns, &format!("--replicas={n}")]).success();
        wait_for_metric(&watching, &replicas(n));
    }
    wait_for_saved(c, ns, "api", serde_json::json!([6, null, 2.0, 4.0, 4, "payments-team", false]));
    drop(watching);

    // The pod was down over midnight: its saved day is yesterday's now.
    let yesterday = replica_guard::cluster::usage::day::today().yesterday().unwrap();
    let patch = format!("{{\"data\":{{\"date\":\"{yesterday}\"}}}}");
    c.kubectl("admin", &["patch", "configmap", STATE, "-n", RELEASE_NS, "--type=merge", "-p", &patch]).success();
    let watching = start_watch(&kubeconfig, &config);
    let deadline = Instant::now() + Duration::from_secs(20);
    let record = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let record = watching.usage.recv_timeout(left).expect("no usage record for the day before the restart");
        if record["namespace"] == ns && record["deployment"] == "api" {
            break record;
        }
    };
    let days = f64::from(yesterday.days_in_month());
    let per_day = |monthly: f64| (monthly / days * 10_000.0).round() / 10_000.0;
    assert_eq!(
        record,
        serde_json::json!({
            "log": "replica-guard-usage", "date": yesterday.to_string(), "cluster": "e2e-east", "namespace": ns, "deployment": "api",
            // The revision is not saved with the day: a day printed at start has none.
            "owner": "payments-team", "registeredMaxReplicas": 4, "registryRevision": null,
            "maxReplicasSeen": 6, "hpaMaxReplicasSeen": null,
            "cpuRequests": 2.0, "memoryRequestsGib": 4.0,
            "dayCost": per_day(294.0), "dayCostAtMaxSeen": per_day(351.0),
        })
    );
    // Today starts with what runs now.
    let date = wait_for_saved(c, ns, "api", serde_json::json!([4, null, 2.0, 4.0, 4, "payments-team", false]));
    assert_eq!(date, today);
}

/// Waits (at most 30 s) until `done`.
fn wait_for(what: &str, done: &dyn Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every shard of the saved day `state` in `release_ns`: (its name, date, rows).
fn shards(c: &Cluster, release_ns: &str, state: &str) -> Vec<(String, String, Vec<serde_json::Value>)> {
    let read = |name: &str| -> Option<serde_json::Value> {
        let ran = c.kubectl("admin", &["get", "configmap", name, "-n", release_ns, "-o", "json"]);
        serde_json::from_str(&ran.stdout).ok()
    };
    let Some(first) = read(state) else { return vec![] };
    let count: usize = first["data"]["shards"].as_str().and_then(|n| n.parse().ok()).unwrap_or(1);
    (0..count)
        .filter_map(|i| {
            let name = replica_guard::cluster::usage::state::shard_name(state, i);
            let cm = if i == 0 { first.clone() } else { read(&name)? };
            let rows = serde_json::from_str(cm["data"]["workloads"].as_str()?).ok()?;
            Some((name, cm["data"]["date"].as_str()?.to_string(), rows))
        })
        .collect()
}

/// The saved replicas high of every Deployment of `ns`, over all shards.
fn saved_highs(c: &Cluster, release_ns: &str, state: &str, ns: &str) -> std::collections::HashMap<String, i64> {
    shards(c, release_ns, state)
        .into_iter()
        .flat_map(|(_, _, rows)| rows)
        .filter(|r| r[0] == ns)
        .map(|r| (r[1].as_str().unwrap().to_string(), r[2].as_i64().unwrap()))
        .collect()
}

fn metric(w: &crate::audit_stories::Watching, name: &str) -> f64 {
    let text = crate::webhook::http_get(w.admin, "/metrics");
    text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()).unwrap_or(0.0)
}

fn sharded_day_across_midnight(c: &Cluster) {
    let (ns, release_ns, state) = ("s-usage-shards", "rg-usage-shards", "shards-rg-usage");
    c.namespace(ns);
    // 1,000 Deployments with 230-character names: some 290 KB of state, more than one shard holds.
    let name = |i: usize| format!("app-{i:04}-{}", "x".repeat(221));
    let manifests: Vec<String> = (0..1_000)
        .map(|i| {
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {}, namespace: {ns}}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: shard}}}}\n  template:\n    metadata: {{labels: {{app: shard}}}}\n    spec: {{containers: [{{name: api, image: 'nginx:1', resources: {{requests: {{cpu: 250m, memory: 256Mi}}}}}}]}}\n",
                name(i)
            )
        })
        .collect();
    c.apply("admin", &manifests.join("---\n"), &[]).success();
    let kinds = ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"];
    let (_, kubeconfig) = c.chart_account(release_ns, "fullnameOverride: shards-rg\n", &kinds, "shards-rg-audit");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("limits.yaml"), format!("entries:\n  - {{namespace: {ns}, maxReplicas: 4}}\n"))
        .unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "server: {{adminAddress: '127.0.0.1:0'}}\nregistry: {{file: {{path: limits.yaml}}}}\ncluster: {{name: e2e-east}}\naudit: {{intervalSeconds: 0.5, usage: {{enabled: true, state: {{namespace: {release_ns}, name: {state}}}}}}}\nlogging: {{format: json}}\n"
        ),
    )
    .unwrap();
    let watching = start_watch(&kubeconfig, &config);
    wait_for("the whole day saved", &|| saved_highs(c, release_ns, state, ns).len() == 1_000);
    let saved = shards(c, release_ns, state);
    assert!(saved.len() >= 2, "more than one ConfigMap: {} shard(s)", saved.len());
    let today = replica_guard::cluster::usage::day::today().to_string();
    for (shard, date, rows) in &saved {
        assert_eq!(date, &today, "{shard}");
        assert!(!rows.is_empty(), "{shard} holds part of the day");
    }
    // One Deployment goes up to a new high of 4 (its limit) and back: its shard is rewritten, no
    // other. (Going over its limit would also, rightly, save its announcement: a second write.)
    std::thread::sleep(Duration::from_secs(1));
    let written_before = metric(&watching, "replica_guard_usage_state_writes_total{result=\"written\"}");
    for n in [4, 2] {
        c.kubectl("admin", &["scale", &format!("deploy/{}", name(7)), "-n", ns, &format!("--replicas={n}")]).success();
    }
    wait_for("the high of 4 saved", &|| saved_highs(c, release_ns, state, ns).get(&name(7)) == Some(&4));
    std::thread::sleep(Duration::from_secs(1));
    let written = metric(&watching, "replica_guard_usage_state_writes_total{result=\"written\"}") - written_before;
    assert_eq!(written, 1.0, "one changed Deployment rewrites one shard of {}", saved.len());
    drop(watching);

    // Down over midnight: every shard's day is yesterday's now.
    let yesterday = replica_guard::cluster::usage::day::today().yesterday().unwrap();
    for (shard, _, _) in &saved {
        let patch = format!("{{\"data\":{{\"date\":\"{yesterday}\"}}}}");
        c.kubectl("admin", &["patch", "configmap", shard, "-n", release_ns, "--type=merge", "-p", &patch]).success();
    }
    let watching = start_watch(&kubeconfig, &config);
    let mut printed = std::collections::HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while printed.len() < 1_000 {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(record) = watching.usage.recv_timeout(left) else { break };
        if record["namespace"] == ns && record["date"] == yesterday.to_string() {
            assert_eq!(record["cluster"], "e2e-east");
            printed.insert(
                record["deployment"].as_str().unwrap().to_string(),
                record["maxReplicasSeen"].as_i64().unwrap(),
            );
        }
    }
    assert_eq!(printed.len(), 1_000, "every Deployment of the day before the restart has its line");
    assert_eq!(printed[&name(7)], 4, "the high of the day survived the restart");
    assert!(printed.iter().filter(|(k, _)| **k != name(7)).all(|(_, r)| *r == 2));
    // Today starts with what runs now, in every shard.
    wait_for("today saved afresh", &|| {
        let now = shards(c, release_ns, state);
        !now.is_empty() && now.iter().all(|(_, date, _)| *date == today)
    });
    assert_eq!(saved_highs(c, release_ns, state, ns)[&name(7)], 2);
}

/// `watch` with the chart's audit account, usage state and Events, passing every 30 s (so nothing
/// but the stop itself can save what happens just before it): two Deployments reach new highs and
/// one goes over its limit, a second before SIGTERM. Nothing is lost: the stop saves the highs,
/// the next `watch` announces the workload over its limit once, a third announces nothing again,
/// and the day's usage lines carry the highs.
fn sigterm_loses_nothing(c: &Cluster) {
    let (ns, release_ns, state) = ("s-drain", "rg-drain", "drain-rg-usage");
    c.namespace(ns);
    for name in ["grow", "spike", "over"] {
        c.apply("admin", &deployment(ns, name, 3, "nginx:1"), &[]).success();
    }
    let kinds = ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"];
    let (_, kubeconfig) = c.chart_account(release_ns, "fullnameOverride: drain-rg\n", &kinds, "drain-rg-audit");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("limits.yaml"),
        format!(
            "entries:\n  - {{namespace: {ns}, deployment: grow, maxReplicas: 8}}\n  - {{namespace: {ns}, deployment: spike, maxReplicas: 8}}\n  - {{namespace: {ns}, deployment: over, maxReplicas: 4}}\n"
        ),
    )
    .unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "server: {{adminAddress: '127.0.0.1:0', shutdownDelaySeconds: 0, shutdownTimeoutSeconds: 20}}\nregistry: {{file: {{path: limits.yaml}}}}\nevents: {{enabled: true}}\naudit: {{intervalSeconds: 30, usage: {{enabled: true, state: {{namespace: {release_ns}, name: {state}}}}}}}\ncluster: {{name: e2e-east}}\nlogging: {{format: json}}\n"
        ),
    )
    .unwrap();
    let highs = |name: &str| saved_highs(c, release_ns, state, ns).get(name).copied();
    let above = |name: &str| c.events_about(ns, name).iter().filter(|e| e["reason"] == "AboveRegisteredLimit").count();

    let mut watching = start_watch(&kubeconfig, &config);
    wait_for("the first pass saved", &|| highs("over") == Some(3));
    c.kubectl("admin", &["scale", "deploy/grow", "-n", ns, "--replicas=7"]).success();
    for n in [7, 3] {
        c.kubectl("admin", &["scale", "deploy/spike", "-n", ns, &format!("--replicas={n}")]).success();
    }
    c.kubectl("admin", &["scale", "deploy/over", "-n", ns, "--replicas=6"]).success();
    std::thread::sleep(Duration::from_secs(1));
    let signalled = Instant::now();
    watching.signal("TERM");
    let code = watching.exit_code_within(Duration::from_secs(25));
    let drained = signalled.elapsed();
    assert_eq!(code, Some(0), "watch drains and exits 0");
    eprintln!("watch: SIGTERM to exit {:.2} s, the day's usage saved", drained.as_secs_f64());
    assert_eq!(highs("grow"), Some(7), "the new high, reached 1 s before SIGTERM, is saved");
    assert_eq!(highs("spike"), Some(7), "3 -> 7 -> 3 within that second is saved as 7");
    assert_eq!(above("over"), 0, "no pass ran between going over and the signal");

    // The next watch announces the workload that went over while none was judging it: once.
    let watching = start_watch(&kubeconfig, &config);
    wait_for("one Event for the workload over its limit", &|| above("over") == 1);
    let mut watching = {
        // Saved as announced by that pass: a third watch does not announce it again.
        let started = Instant::now();
        while !saved_announced(c, release_ns, state, ns, "over") {
            assert!(started.elapsed() < Duration::from_secs(20), "the announcement was not saved");
            std::thread::sleep(Duration::from_millis(200));
        }
        watching.signal("TERM");
        let mut watching = watching;
        assert_eq!(watching.exit_code_within(Duration::from_secs(25)), Some(0));
        start_watch(&kubeconfig, &config)
    };
    wait_for_metric(
        &watching,
        &format!("replica_guard_workload_over_limit{{deployment=\"over\",namespace=\"{ns}\"}} 1"),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(above("over"), 1, "not announced again after a restart");
    watching.signal("TERM");
    assert_eq!(watching.exit_code_within(Duration::from_secs(25)), Some(0));

    // The operator's look at the day so far, without waiting for midnight.
    let ran = std::process::Command::new(env!("CARGO_BIN_EXE_replica-guard"))
        .args(["usage", "--config"])
        .arg(&config)
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .unwrap();
    assert!(ran.status.success(), "replica-guard usage: {}", String::from_utf8_lossy(&ran.stderr));
    let today: Vec<serde_json::Value> =
        String::from_utf8_lossy(&ran.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let grow = today.iter().find(|r| r["namespace"] == ns && r["deployment"] == "grow").expect("grow's line");
    assert_eq!(grow["maxReplicasSeen"], 7, "{grow}");
    assert_eq!(grow["date"], replica_guard::cluster::usage::day::today().to_string());

    // The day's lines (the saved day made yesterday's, as after midnight) carry both highs.
    let yesterday = replica_guard::cluster::usage::day::today().yesterday().unwrap();
    for (shard, _, _) in shards(c, release_ns, state) {
        let patch = format!("{{\"data\":{{\"date\":\"{yesterday}\"}}}}");
        c.kubectl("admin", &["patch", "configmap", &shard, "-n", release_ns, "--type=merge", "-p", &patch]).success();
    }
    let watching = start_watch(&kubeconfig, &config);
    let mut seen = std::collections::HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        let record = watching.usage.recv_timeout(left).expect("the day's usage lines");
        if record["namespace"] == ns {
            seen.insert(record["deployment"].as_str().unwrap().to_string(), record["maxReplicasSeen"].clone());
        }
    }
    assert_eq!(seen["grow"], 7);
    assert_eq!(seen["spike"], 7);
    assert_eq!(seen["over"], 6);
}

/// Whether the saved day marks `ns`/`name` as announced over its limit.
fn saved_announced(c: &Cluster, release_ns: &str, state: &str, ns: &str, name: &str) -> bool {
    shards(c, release_ns, state)
        .iter()
        .flat_map(|(_, _, rows)| rows)
        .any(|r| r[0] == ns && r[1] == name && r[8] == true)
}
