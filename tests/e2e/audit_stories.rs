//! `replica-guard audit` against the real API server: workloads that existed before the webhook
//! (or whose registry entry was lowered since) show up with their status, and the exit status
//! says whether anything runs over its limit.

use crate::Scenario;
use crate::cluster::{Cluster, Ran};
use crate::webhook::deployment;

pub fn all() -> Vec<Scenario> {
    vec![("audit: what runs over its limit now, as a table, JSON and CSV", audit_lists_what_runs_over)]
}

fn registry(ns: &str, cart_max: i32) -> String {
    format!(
        "entries:\n  - {{namespace: {ns}, deployment: payments-api, maxReplicas: 4}}\n  - {{namespace: {ns}, deployment: orders-api, maxReplicas: 4}}\n  - {{namespace: {ns}, deployment: search-api, maxReplicas: 12}}\n  - {{namespace: {ns}, deployment: cart-api, maxReplicas: {cart_max}, mode: warn}}\n"
    )
}

fn audit(c: &Cluster, config: &std::path::Path, output: &str) -> (Option<i32>, Ran) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_replica-guard"))
        .args(["audit", "--config"])
        .arg(config)
        .args(["-n", "s-audit", "-o", output])
        .env("KUBECONFIG", &c.kubeconfig)
        .output()
        .unwrap();
    let ran = Ran {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    (out.status.code(), ran)
}

fn audit_lists_what_runs_over(c: &Cluster) {
    let ns = "s-audit";
    c.namespace(ns);
    // Created with no webhook in the way, as before replica-guard was installed.
    for (name, replicas) in [("payments-api", 7), ("orders-api", 3), ("search-api", 2), ("cart-api", 2), ("legacy", 2)]
    {
        c.apply("admin", &deployment(ns, name, replicas, "nginx:1"), &[]).success();
    }
    let hpa = format!(
        "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {{name: orders-api, namespace: {ns}}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: orders-api}}\n  minReplicas: 2\n  maxReplicas: 10\n"
    );
    c.apply("admin", &hpa, &[]).success();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(dir.path().join("limits.yaml"), registry(ns, 4)).unwrap();
    std::fs::write(
        &config,
        "registry: {file: {path: limits.yaml}}\npricing: {base: 180, perVcpu: 19, perGib: 19, divisor: 4}\n",
    )
    .unwrap();

    let (code, ran) = audit(c, &config, "json");
    assert_eq!(code, Some(1), "something runs over its limit: exit 1\n{}", ran.stderr);
    let report: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    let row =
        |name: &str| report["workloads"].as_array().unwrap().iter().find(|r| r["deployment"] == name).cloned().unwrap();
    assert_eq!(row("payments-api")["status"], "over");
    assert_eq!(row("payments-api")["replicas"], 7);
    assert_eq!(row("payments-api")["registeredMaxReplicas"], 4);
    assert_eq!(row("payments-api")["monthlyCost"], 294.0, "2 vCPU / 4 GiB at max 4");
    assert_eq!(row("orders-api")["status"], "ratchet-only");
    assert_eq!(row("orders-api")["hpaMaxReplicas"], 10);
    assert_eq!(row("search-api")["status"], "out-of-bounds");
    assert_eq!(row("cart-api")["status"], "within");
    assert_eq!(row("cart-api")["mode"], "warn");
    assert_eq!(row("legacy")["status"], "unregistered");
    assert_eq!(row("legacy")["registeredMaxReplicas"], serde_json::Value::Null);
    assert_eq!(report["summary"]["over"], 1);
    assert_eq!(report["summary"]["workloads"], 5);

    let (_, table) = audit(c, &config, "table");
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].starts_with("NAMESPACE") && lines[0].contains("STATUS"), "{}", table.stdout);
    assert!(
        lines.iter().any(|l| l.contains("payments-api") && l.contains("over") && l.contains("294.00")),
        "{}",
        table.stdout
    );
    assert!(
        table
            .stdout
            .contains("5 workloads: 1 over, 1 ratchet-only, 1 unregistered, 1 out of platform bounds, 1 within")
    );

    // The PED entry of a compliant workload is lowered: it is over now.
    std::fs::write(dir.path().join("limits.yaml"), registry(ns, 1)).unwrap();
    let (_, csv) = audit(c, &config, "csv");
    assert!(csv.stdout.starts_with(
        "namespace,deployment,replicas,hpa,hpaMaxReplicas,registeredMaxReplicas,scope,mode,status,monthlyCost\n"
    ));
    assert!(csv.stdout.contains(&format!("{ns},cart-api,2,,,1,deployment,warn,over,")), "{}", csv.stdout);
}
