//! The chart's alert rules, unit-tested with `promtool test rules` (Prometheus' own rule engine):
//! the PrometheusRule is rendered by `helm template` as a user installs it, written as a rule file,
//! checked (`promtool check rules`) and run against `tests/alerts/*.test.yaml`, where every alert
//! has a case that fires it and one that keeps it silent. The series those cases feed in must be
//! ones the binary exports (or kube-state-metrics' and Prometheus' own `up`): a renamed metric
//! fails here, not in a customer's silent alert.
//!
//! Needs Helm and promtool (`tests/e2e/install-tools.sh helm` caches both): `cargo test` leaves
//! these out (`#[ignore]`), `.ci/run` runs them with `HELM` and `PROMTOOL` set.

#[path = "chart/helm.rs"]
mod helm;

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn promtool() -> String {
    std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".to_string())
}

fn alerts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/alerts")
}

/// The PrometheusRule's groups for `values`, as a Prometheus rule file, rendered for a cluster
/// that serves ValidatingAdmissionPolicy (the backstop is on by default there).
fn rule_file(values: &str) -> String {
    let objects = helm::template_with(values, &["--kube-version", "1.37.0"]).unwrap_or_else(|e| panic!("{e}"));
    let rule = helm::find(&objects, "PrometheusRule", "rg-replica-guard");
    serde_json::json!({ "groups": rule["spec"]["groups"] }).to_string()
}

fn run(args: &[&str], dir: &Path) -> String {
    let out = Command::new(promtool()).args(args).current_dir(dir).output().expect("promtool runs (set PROMTOOL)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {}:\n{text}", args.join(" "));
    text
}

/// The rendered rules beside their tests, checked and tested.
fn test_rules(values: &str, rules: &str, tests: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(rules), rule_file(values)).unwrap();
    std::fs::copy(alerts_dir().join(tests), dir.path().join(tests)).unwrap();
    run(&["check", "rules", rules], dir.path());
    run(&["test", "rules", tests], dir.path())
}

/// Every alert the rule file holds.
fn alerts(values: &str) -> BTreeSet<String> {
    let rules: Value = serde_json::from_str(&rule_file(values)).unwrap();
    rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter_map(|r| r["alert"].as_str().map(str::to_string))
        .collect()
}

/// The alerts a test file has a firing case for, and those it has a silent case for.
fn cases(tests: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let text = std::fs::read_to_string(alerts_dir().join(tests)).unwrap();
    let doc: Value = serde_yaml_ng::from_str(&text).unwrap();
    let (mut firing, mut silent) = (BTreeSet::new(), BTreeSet::new());
    for test in doc["tests"].as_array().unwrap() {
        for case in test["alert_rule_test"].as_array().into_iter().flatten() {
            let name = case["alertname"].as_str().unwrap().to_string();
            if case["exp_alerts"].as_array().is_some_and(|a| a.is_empty()) {
                silent.insert(name);
            } else {
                firing.insert(name);
            }
        }
    }
    (firing, silent)
}

const DEFAULT: &str = "prometheusRule: {enabled: true}\n";
const WITHOUT_AUDIT: &str =
    "prometheusRule: {enabled: true}\naudit: {enabled: false}\nmetrics: {registryEntries: true}\n";

#[test]
#[ignore = "needs Helm and promtool; .ci/run runs it"]
fn every_shipped_alert_fires_when_it_should_and_stays_silent_when_it_should_not() {
    let said = test_rules(DEFAULT, "default.rules.yaml", "default.test.yaml");
    assert!(said.contains("SUCCESS"), "{said}");
    let shipped = alerts(DEFAULT);
    assert_eq!(shipped.len(), 7, "{shipped:?}");
    let (firing, silent) = cases("default.test.yaml");
    assert_eq!(firing, shipped, "a firing case for every alert");
    assert_eq!(silent, shipped, "a silent case for every alert");
}

#[test]
#[ignore = "needs Helm and promtool; .ci/run runs it"]
fn without_the_audit_pod_the_over_limit_alert_and_the_billing_rules_work_on_the_per_entry_series() {
    let said = test_rules(WITHOUT_AUDIT, "without-audit.rules.yaml", "without-audit.test.yaml");
    assert!(said.contains("SUCCESS"), "{said}");
    let (firing, silent) = cases("without-audit.test.yaml");
    let over = BTreeSet::from(["ReplicaGuardReplicasAboveRegistered".to_string()]);
    assert_eq!((firing, silent), (over.clone(), over));
}

/// The metric names the test cases feed in are exported by the binary (named in its source),
/// by kube-state-metrics or by Prometheus itself.
#[test]
fn the_test_series_are_metrics_the_binary_exports() {
    let mut exported = BTreeSet::new();
    let mut dirs = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for (at, _) in text.match_indices("replica_guard_") {
                    let name: String = text[at..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                    exported.insert(name);
                }
            }
        }
    }
    assert!(exported.contains("replica_guard_violations_total"), "{exported:?}");
    for tests in ["default.test.yaml", "without-audit.test.yaml"] {
        let text = std::fs::read_to_string(alerts_dir().join(tests)).unwrap();
        let doc: Value = serde_yaml_ng::from_str(&text).unwrap();
        for test in doc["tests"].as_array().unwrap() {
            for series in test["input_series"].as_array().unwrap() {
                let series = series["series"].as_str().unwrap();
                let name = series.split('{').next().unwrap();
                let histogram = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s));
                let known = exported.contains(name)
                    || histogram.is_some_and(|h| exported.contains(h))
                    || name.starts_with("kube_deployment_")
                    || name == "apiserver_validating_admission_policy_check_total"
                    || name == "up";
                assert!(known, "{tests}: {name} is not a metric anything exports");
                if name.starts_with("replica_guard_") {
                    assert!(
                        series.contains("job=\"rg-replica-guard"),
                        "{tests}: {series}: scraped from the release's pods"
                    );
                }
            }
        }
    }
}
