//! The daily usage records of the continuous audit, against the real API server and with the
//! chart's RBAC: the day's highest replicas are kept in the chart's ConfigMap as they happen, a
//! restart does not lose them, and the first start after midnight prints the finished day.

use crate::Scenario;
use crate::audit_stories::{start_watch, wait_for_metric};
use crate::cluster::Cluster;
use crate::webhook::deployment;
use std::time::{Duration, Instant};

pub fn all() -> Vec<Scenario> {
    vec![("usage records: a day of 3 -> 6 -> 4 replicas is recorded as 6, across a restart at midnight", day_of_3_6_4)]
}

/// The chart's names with `fullnameOverride: usage-rg` in release namespace `rg-usage`.
const RELEASE_NS: &str = "rg-usage";
const STATE: &str = "usage-rg-usage";

/// The state ConfigMap's (date, highs of `ns`/`name` as [replicas, hpaMax, cpu, memGiB, registered, owner]).
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
            "server: {{adminAddress: '127.0.0.1:0'}}\nregistry: {{file: {{path: limits.yaml}}}}\npricing: {{base: 180, perVcpu: 19, perGib: 19, divisor: 4}}\naudit: {{intervalSeconds: 0.5, usage: {{enabled: true, state: {{namespace: {RELEASE_NS}, name: {STATE}}}}}}}\nlogging: {{format: json}}\n"
        ),
    )
    .unwrap();
    let replicas = |n: i32| format!("replica_guard_workload_replicas{{deployment=\"api\",namespace=\"{ns}\"}} {n}");

    let watching = start_watch(&kubeconfig, &config);
    wait_for_metric(&watching, &replicas(3));
    let today = wait_for_saved(c, ns, "api", serde_json::json!([3, null, 2.0, 4.0, 4, "payments-team"]));
    assert_eq!(today, replica_guard::cluster::usage::today().to_string(), "the UTC day");
    for n in [6, 4] {
        c.kubectl("admin", &["scale", "deploy/api", "-n", ns, &format!("--replicas={n}")]).success();
        wait_for_metric(&watching, &replicas(n));
    }
    wait_for_saved(c, ns, "api", serde_json::json!([6, null, 2.0, 4.0, 4, "payments-team"]));
    drop(watching);

    // The pod was down over midnight: its saved day is yesterday's now.
    let yesterday = replica_guard::cluster::usage::today().yesterday().unwrap();
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
            "log": "replica-guard-usage", "date": yesterday.to_string(), "namespace": ns, "deployment": "api",
            "owner": "payments-team", "registeredMaxReplicas": 4, "maxReplicasSeen": 6, "hpaMaxReplicasSeen": null,
            "cpuRequests": 2.0, "memoryRequestsGib": 4.0,
            "dayCost": per_day(294.0), "dayCostAtMaxSeen": per_day(351.0),
        })
    );
    // Today starts with what runs now.
    let date = wait_for_saved(c, ns, "api", serde_json::json!([4, null, 2.0, 4.0, 4, "payments-team"]));
    assert_eq!(date, today);
}
