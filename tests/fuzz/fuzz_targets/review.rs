//! Fuzzes the whole admission path as the server runs it: body decoding, subject extraction,
//! the diff, the registry lookup, the decision, the response and the audit record.
//! Invariants: never a panic; an answer is a well-formed AdmissionReview response whose warnings
//! keep the Kubernetes limits, and a denial carries 403.

#![no_main]

use libfuzzer_sys::fuzz_target;
use replica_guard::json_lines::JsonLines;
use replica_guard::decision::policy::{ChangeSummary, Mode, Policy};
use replica_guard::limits::store::{Revision, SnapshotStore, apply_document};
use replica_guard::metrics::Metrics;
use replica_guard::webhook::Webhook;
use std::sync::{Arc, LazyLock};

const REGISTRY: &str = "default: {maxReplicas: 2}\nentries:\n  - {namespace: team-a, deployment: payments-api, maxReplicas: 4, owner: p@example.com}\n  - {namespace: team-a, deployment: orders-api, maxReplicas: 12, mode: warn}\n  - {namespace: team-b, maxReplicas: 3, mode: audit}\n";

static SETUP: LazyLock<(tokio::runtime::Runtime, Webhook)> = LazyLock::new(|| {
    let metrics = Arc::new(Metrics::new());
    let mut policy = Policy { mode: Mode::Enforce, change_summary: ChangeSummary::Always, ..Policy::default() };
    policy.override_rule.groups.insert("platform-admins".into());
    let store = Arc::new(SnapshotStore::new("file", &metrics));
    apply_document(REGISTRY, Revision::digest(REGISTRY), "file", &store, &metrics, &policy.platform_bounds, 200_000).unwrap();
    let webhook = Webhook::new(policy, store, metrics, JsonLines::to(Box::new(std::io::sink())));
    (tokio::runtime::Builder::new_current_thread().build().unwrap(), webhook)
});

fuzz_target!(|body: &[u8]| {
    let (runtime, webhook) = &*SETUP;
    let Ok(answer) = runtime.block_on(webhook.review(body)) else { return };
    let review: serde_json::Value = serde_json::from_slice(&answer).expect("the answer is JSON");
    assert_eq!(review["kind"], "AdmissionReview");
    let response = &review["response"];
    assert!(response["uid"].as_str().is_some_and(|uid| !uid.is_empty()));
    let warnings = response["warnings"].as_array().cloned().unwrap_or_default();
    assert!(warnings.len() <= 4);
    for w in &warnings {
        assert!(w.as_str().unwrap().chars().count() <= 120);
    }
    if response["allowed"] == false {
        assert_eq!(response["status"]["code"], 403);
        assert!(!response["status"]["message"].as_str().unwrap().is_empty());
    }
});
