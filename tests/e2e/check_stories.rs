//! `replica-guard check --cluster` against the real API server: each manifest is judged as the
//! UPDATE `kubectl apply` would send, and gets the same answer the webhook gives that apply —
//! compared here with a real `kubectl apply` of the same manifest, by the same user.

use crate::Scenario;
use crate::cluster::{Cluster, Ran};
use crate::webhook::{POLICY, Registered, deployment, registry};
use std::io::Write;

pub fn all() -> Vec<Scenario> {
    vec![(
        "check --cluster answers as kubectl apply does: raise denied, image-only ratchet, identical silent",
        check_answers_as_apply_does,
    )]
}

/// `replica-guard check --cluster -o json` of `manifest` on standard input, as `user`.
fn check(c: &Cluster, config: &std::path::Path, user: &str, manifest: &str) -> (Option<i32>, serde_json::Value) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_replica-guard"))
        .args(["check", "--cluster", "-o", "json", "--user", user, "--config"])
        .arg(config)
        .arg("-")
        .env("KUBECONFIG", &c.kubeconfig)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(manifest.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), report)
}

/// What the user of `kubectl apply` saw from the webhook: its warnings, and its denial message.
fn seen_by_kubectl(ran: &Ran) -> (Vec<String>, Option<String>) {
    let marker = "admission webhook \"validate.replica-guard.io\" denied the request: ";
    let denial = ran.stderr.lines().find_map(|l| l.split_once(marker).map(|(_, m)| m.to_string()));
    (ran.warnings(), denial)
}

/// The same, as `check` reports it for the manifest's one object.
fn seen_by_check(report: &serde_json::Value) -> (Vec<String>, Option<String>) {
    let object = &report["objects"][0];
    let warnings = object["warnings"].as_array().unwrap().iter().map(|w| w.as_str().unwrap().to_string()).collect();
    (warnings, object["message"].as_str().map(str::to_string))
}

fn check_answers_as_apply_does(c: &Cluster) {
    let ns = "s-check";
    c.namespace(ns);
    // Running above its PED maximum since before the webhook: 6 replicas, max 4.
    let image = |tag: &str| format!("registry.example/payments:{tag}");
    c.apply("admin", &deployment(ns, "payments-api", 6, &image("1.4.0")), &[]).success();
    let mut rg = Registered::start(c, ns, POLICY, &registry(ns, 4), "Fail");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("limits.yaml"), registry(ns, 4)).unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!("policy: {{{}}}\nregistry: {{file: {{path: limits.yaml}}}}\n", POLICY.replace('\n', ", ")),
    )
    .unwrap();

    // Raising replicas further: denied, with the message kubectl shows.
    let raise = deployment(ns, "payments-api", 7, &image("1.4.0"));
    let (code, report) = check(c, &config, "alice", &raise);
    let applied = c.apply("alice", &raise, &[]);
    assert!(!applied.ok, "the webhook denies it: {}", applied.stderr);
    assert_eq!(code, Some(1));
    assert_eq!(report["objects"][0]["operation"], "UPDATE", "judged as the update it is");
    assert_eq!(report["objects"][0]["rule"], "violation");
    assert_eq!(seen_by_check(&report), seen_by_kubectl(&applied));
    assert!(
        seen_by_check(&report)
            .1
            .unwrap()
            .starts_with(&format!("replicas 6 -> 7 exceeds PED max 4 for {ns}/payments-api"))
    );
    // The change itself, as the decision record will keep it.
    let raise_patch = report["objects"][0]["patch"].clone();
    assert_eq!(raise_patch, serde_json::json!([{"op": "replace", "path": "/spec/replicas", "value": 7}]));

    // Identical to the live object: silent (kubectl does not even send it).
    let same = deployment(ns, "payments-api", 6, &image("1.4.0"));
    let (code, report) = check(c, &config, "alice", &same);
    let applied = c.apply("alice", &same, &[]).success();
    assert_eq!(code, Some(0));
    assert_eq!(report["objects"][0]["rule"], "no-change");
    assert!(applied.stdout.contains("unchanged"), "{}", applied.stdout);
    assert_eq!(seen_by_check(&report), seen_by_kubectl(&applied));
    assert_eq!(seen_by_check(&report), (vec![], None));

    // Only the image: allowed by the ratchet, with its warning.
    let image_only = deployment(ns, "payments-api", 6, &image("1.5.0"));
    let (code, report) = check(c, &config, "alice", &image_only);
    let applied = c.apply("alice", &image_only, &[]).success();
    assert_eq!(code, Some(0));
    assert_eq!(report["objects"][0]["rule"], "ratchet");
    assert_eq!(report["objects"][0]["changes"], "changes: image of api");
    let image_patch = report["objects"][0]["patch"].clone();
    assert_eq!(
        image_patch,
        serde_json::json!([{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": image("1.5.0")}])
    );
    assert_eq!(seen_by_check(&report), seen_by_kubectl(&applied));
    assert!(!seen_by_check(&report).0.is_empty(), "the ratchet warns");

    // Not in the cluster: judged as the CREATE it will be, again as the webhook answers.
    let new = deployment(ns, "orders-api", 5, &image("1.0.0"));
    let (code, report) = check(c, &config, "alice", &new);
    let applied = c.apply("alice", &new, &[]);
    assert_eq!((code, report["objects"][0]["operation"].as_str()), (Some(1), Some("CREATE")));
    assert_eq!(seen_by_check(&report), seen_by_kubectl(&applied));
    assert!(report["objects"][0]["patch"].is_null(), "a CREATE has no old object to patch");

    // The webhook's decision records of the two updates carry the very patches check printed.
    rg.process.signal("TERM");
    let (_, log) = rg.process.wait_here(std::time::Duration::from_secs(30));
    let records: Vec<serde_json::Value> = log
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["log"] == "replica-guard-audit" && r["name"] == "payments-api" && r["operation"] == "UPDATE")
        .collect();
    let patch_of = |rule: &str| records.iter().find(|r| r["rule"] == rule).map(|r| r["patch"].clone());
    assert_eq!(patch_of("violation"), Some(raise_patch), "{records:?}");
    assert_eq!(patch_of("ratchet"), Some(image_patch), "{records:?}");
}
