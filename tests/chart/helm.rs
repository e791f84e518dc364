//! `helm template` of the chart, for the chart checks (`tests/chart.rs`, `tests/chart_values.rs`).
#![allow(dead_code)]

use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

pub fn helm() -> String {
    std::env::var("HELM").unwrap_or_else(|_| "helm".to_string())
}

pub fn chart() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("charts/replica-guard")
}

/// `helm template` with `values` (YAML); Ok(objects) or Err(helm's error text).
pub fn template(values: &str) -> Result<Vec<Value>, String> {
    template_with(values, &[])
}

/// The cluster name every render gets unless its values name one (the chart requires it while
/// the usage records are on, as they are by default).
pub const CLUSTER: &str = "cluster: {name: test-cluster}\n";

/// `template` with extra `helm template` arguments (`--set` as a user types it).
pub fn template_with(values: &str, args: &[&str]) -> Result<Vec<Value>, String> {
    let named = values.lines().any(|l| l.starts_with("cluster:")) || args.iter().any(|a| a.contains("cluster.name"));
    let values = if named { values.to_string() } else { format!("{CLUSTER}{values}") };
    template_exactly(&values, args)
}

/// `helm template` with these values and arguments and nothing added.
pub fn template_exactly(values: &str, args: &[&str]) -> Result<Vec<Value>, String> {
    let mut child = Command::new(helm())
        .args(["template", "rg"])
        .arg(chart())
        .args(["--namespace", "replica-guard", "-f", "-"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("helm runs (set HELM to its path)");
    child.stdin.take().unwrap().write_all(values.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8(out.stdout).unwrap();
    let mut objects = vec![];
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let value: Value = serde::Deserialize::deserialize(doc).unwrap();
        if !value.is_null() {
            objects.push(value);
        }
    }
    Ok(objects)
}

pub fn render(values: &str) -> Vec<Value> {
    template(values).unwrap_or_else(|e| panic!("helm template failed: {e}"))
}

pub fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {:?}", kinds(objects)))
}

pub fn kinds(objects: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = objects
        .iter()
        .map(|o| format!("{}/{}", o["kind"].as_str().unwrap(), o["metadata"]["name"].as_str().unwrap()))
        .collect();
    k.sort();
    k
}

pub fn webhook(objects: &[Value]) -> &Value {
    &find(objects, "ValidatingWebhookConfiguration", "rg-replica-guard")["webhooks"][0]
}

/// The config.yaml the pods get, through the real parser.
pub fn rendered_config(objects: &[Value]) -> replica_guard::config::Config {
    let text = find(objects, "ConfigMap", "rg-replica-guard-config")["data"]["config.yaml"].as_str().unwrap();
    replica_guard::config::Config::parse(text)
        .unwrap_or_else(|(k, p)| panic!("rendered config rejected: {k}: {p}\n{text}"))
}
