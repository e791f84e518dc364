//! The decision record's `patch` (`decision::patch`): applied with `json_patch::patch` to the old
//! object's recorded view it gives the new object's view — for every captured review and for
//! thousands of generated changes — except where a value is a marker; secrets never reach it;
//! and its budget holds on the largest changes.

mod common;

use common::Lcg;
use replica_guard::admission::decode::decode;
use replica_guard::admission::subject::{Target, target};
use replica_guard::decision::changes::{self, ObjectView};
use replica_guard::decision::patch;
use replica_guard::decision::recorded::{BUDGET_BYTES, OVER_BUDGET, REDACTED};
use replica_guard::decision::tree::Node;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The maps of an object's metadata, as the diff reads them.
fn map(object: &Value, key: &str) -> Option<BTreeMap<String, String>> {
    object["metadata"].get(key).map(|m| serde_json::from_value(m.clone()).unwrap())
}

/// Applies the patch of `old` -> `new` (whole objects) to the old view; the result and the new view.
fn applied(old: &Value, new: &Value) -> (Value, Value, json_patch::Patch, changes::Diff) {
    let (old_spec, new_spec) = (old.get("spec").map(Value::to_string), new.get("spec").map(Value::to_string));
    let old_tree = old_spec.as_deref().map(|s| Node::parse(s).unwrap());
    let new_tree = new_spec.as_deref().map(|s| Node::parse(s).unwrap());
    let (old_labels, new_labels) = (map(old, "labels"), map(new, "labels"));
    let (old_notes, new_notes) = (map(old, "annotations"), map(new, "annotations"));
    let old_view = ObjectView { spec: old_tree.as_ref(), labels: old_labels.as_ref(), annotations: old_notes.as_ref() };
    let new_view = ObjectView { spec: new_tree.as_ref(), labels: new_labels.as_ref(), annotations: new_notes.as_ref() };
    let diff = changes::between(old_view, new_view);
    let operations = patch::of(&diff.listed);
    let mut document = patch::view(old_view);
    if let Err(e) = json_patch::patch(&mut document, &operations) {
        panic!(
            "the patch does not apply: {e}\npatch: {}\nold: {old}\nnew: {new}",
            serde_json::to_string(&operations).unwrap()
        );
    }
    (document, patch::view(new_view), operations, diff)
}

/// `got` equals `want` except where `got` holds a marker (a redacted or over-budget value).
fn same_but_markers(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::String(s), _) if s == REDACTED || s == OVER_BUDGET => true,
        (Value::Object(g), Value::Object(w)) => {
            g.len() == w.len() && g.iter().all(|(k, v)| w.get(k).is_some_and(|x| same_but_markers(v, x)))
        }
        (Value::Array(g), Value::Array(w)) => {
            g.len() == w.len() && g.iter().zip(w).all(|(a, b)| same_but_markers(a, b))
        }
        _ => got == want,
    }
}

#[test]
fn every_captured_update_patches_its_old_view_into_its_new_one() {
    let mut updates = 0;
    for set in common::FIXTURE_SETS {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(set);
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let review: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let request = &review["request"];
            if request["operation"] != "UPDATE" {
                continue;
            }
            updates += 1;
            let (got, want, operations, _) = applied(&request["oldObject"], &request["object"]);
            assert!(same_but_markers(&got, &want), "{}: {got}\n!= {want}\npatch {operations:?}", path.display());
            // The webhook's own reading of the body lists the same operations.
            let body = std::fs::read(&path).unwrap();
            let Ok(Target::Subject(subject)) = target(&decode(&body).unwrap(), "replica-guard.io/override") else {
                panic!("{}: not a subject", path.display())
            };
            assert_eq!(patch::of(&subject.changes), operations, "{}", path.display());
        }
    }
    assert!(updates >= 15, "the captured sets hold UPDATEs of every path: {updates}");
}

#[test]
fn the_readme_redeploy_is_two_replaces_with_their_values() {
    let review = common::fixture_json("deployment-redeploy-replicas-3-to-6-and-image.json");
    let (_, _, operations, diff) = applied(&review["request"]["oldObject"], &review["request"]["object"]);
    let image = review["request"]["object"]["spec"]["template"]["spec"]["containers"][0]["image"].clone();
    assert_eq!(
        serde_json::to_value(&operations).unwrap(),
        json!([
            {"op": "replace", "path": "/spec/replicas", "value": 6},
            {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": image},
        ])
    );
    assert_eq!((diff.recorded.omitted.redacted, diff.recorded.omitted.over_budget), (0, 0));
}

/// A Deployment spec with every place a team may paste a credential.
fn with_secrets(secret: &str, replicas: i64, image: &str) -> Value {
    let container = |name: &str| {
        json!({"name": name, "image": image, "args": [format!("--token={secret}")], "command": ["/bin/app", secret],
            "env": [{"name": "API_KEY", "value": secret}, {"name": "FROM", "valueFrom": {"secretKeyRef": {"name": secret, "key": "k"}}}],
            "livenessProbe": {"exec": {"command": ["check", secret]}},
            "lifecycle": {"preStop": {"exec": {"command": ["stop", secret]}}},
            "resources": {"limits": {"memory": "1Gi"}}})
    };
    json!({
        "metadata": {"labels": {"app": "payments-api"}, "annotations": {"vault.example/token": secret, "kubernetes.io/change-cause": "deploy 42"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "payments-api"}},
            "template": {"metadata": {"labels": {"app": "payments-api"}, "annotations": {"note": secret}},
                "spec": {"containers": [container("api")], "initContainers": [container("init")],
                    "volumes": [{"name": "v", "hostPath": {"path": format!("/{secret}")}}]}}}
    })
}

#[test]
fn secrets_are_redacted_with_their_paths_kept() {
    let (old_secret, new_secret) = ("s3cr3t-old-AKIA1234", "s3cr3t-new-AKIA5678");
    let old = with_secrets(old_secret, 3, "registry.example/payments-api:1.4.0");
    let mut new = with_secrets(new_secret, 6, "registry.example/payments-api:1.5.0");
    // A container added whole: its image kept, its secrets not.
    let added = new["spec"]["template"]["spec"]["containers"][0].clone();
    new["spec"]["template"]["spec"]["containers"].as_array_mut().unwrap().push(added);
    new["spec"]["template"]["spec"]["containers"][1]["name"] = "sidecar".into();
    let (got, want, operations, diff) = applied(&old, &new);
    assert!(same_but_markers(&got, &want));
    let text = serde_json::to_string(&operations).unwrap();
    assert!(!text.contains("s3cr3t"), "a secret in the patch: {text}");
    for path in [
        "/spec/template/spec/containers/0/env/0/value",
        "/spec/template/spec/containers/0/args/0",
        "/spec/template/spec/containers/0/command/1",
        "/spec/template/spec/initContainers/0/livenessProbe/exec/command/1",
        "/spec/template/metadata/annotations/note",
        "/metadata/annotations/vault.example~1token",
    ] {
        let op = operations.iter().find(|o| o.path().as_str() == path).unwrap_or_else(|| panic!("{path} in {text}"));
        assert!(text.contains(&format!("\"path\":\"{path}\",\"value\":\"{REDACTED}\"")), "{op:?}");
    }
    assert!(text.contains(r#"{"op":"replace","path":"/spec/replicas","value":6}"#), "{text}");
    assert!(
        text.contains(
            r#""path":"/spec/template/spec/containers/0/image","value":"registry.example/payments-api:1.5.0""#
        )
    );
    let sidecar = operations.iter().find(|o| o.path().as_str() == "/spec/template/spec/containers/1").unwrap();
    let sidecar = serde_json::to_value(sidecar).unwrap();
    assert_eq!(sidecar["value"]["image"], "registry.example/payments-api:1.5.0");
    assert_eq!(sidecar["value"]["name"], "sidecar");
    assert_eq!(sidecar["value"]["env"][0], json!({"name": "API_KEY", "value": REDACTED}));
    assert!(diff.recorded.omitted.redacted >= 10, "{:?}", diff.recorded.omitted);
}

#[test]
fn past_the_budget_values_give_way_to_a_marker_and_the_work_stays_bounded() {
    // 1,200 images of 200 bytes changed: their values are 240 KB, past the 64 KiB budget.
    let containers = |tag: &str| -> Value {
        (0..1_200).map(|i| json!({"name": format!("c{i}"), "image": format!("{}:{tag}", "r".repeat(200))})).collect()
    };
    let old = json!({"spec": {"template": {"spec": {"containers": containers("1")}}}});
    let new = json!({"spec": {"template": {"spec": {"containers": containers("2")}}}});
    // Past the first 1,000 changes the patch is not whole: it applies, and says what it left out.
    let (_, _, operations, diff) = applied(&old, &new);
    assert_eq!(operations.len(), changes::MAX_LISTED, "the first 1,000 changes");
    assert_eq!(diff.unlisted.count, 200);
    let each: Vec<String> = operations.iter().map(|o| serde_json::to_string(o).unwrap()).collect();
    let kept = each.iter().take_while(|o| !o.contains(OVER_BUDGET)).count();
    assert!(kept > 100, "values kept until the budget: {kept}");
    assert!(each[kept..].iter().all(|o| o.contains(OVER_BUDGET)), "past the budget, every value gives way");
    assert_eq!(diff.recorded.omitted.over_budget, operations.len() - kept);
    // The kept operations fit the budget; the rest add only their paths and the marker.
    let kept_bytes: usize = each[..kept].iter().map(String::len).sum();
    assert!(kept_bytes <= BUDGET_BYTES, "{kept_bytes} bytes of kept operations");
    assert!(each[kept..].iter().all(|o| o.len() < 120), "{}", each[kept]);
}

/// A random JSON tree over a vocabulary of the places the rules treat apart.
fn tree(rng: &mut Lcg, depth: u32) -> Value {
    const KEYS: [&str; 16] = [
        "replicas",
        "template",
        "metadata",
        "labels",
        "annotations",
        "spec",
        "containers",
        "image",
        "env",
        "name",
        "value",
        "args",
        "resources",
        "selector",
        "k",
        "a/b~c",
    ];
    match if depth == 0 { rng.next(4) } else { rng.next(7) } {
        0 => json!(rng.next(10)),
        1 => json!(format!("v{}", rng.next(5))),
        2 => json!(rng.next(2) == 0),
        3 => Value::Null,
        4 | 5 => Value::Object(
            (0..rng.next(4)).map(|_| (KEYS[rng.next(16) as usize].to_string(), tree(rng, depth - 1))).collect(),
        ),
        _ => Value::Array((0..rng.next(4)).map(|_| tree(rng, depth - 1)).collect()),
    }
}

/// `value` with a few random edits: scalars replaced, keys added and removed, lists grown and cut
/// (from the end and the middle), maps added and removed whole, types changed.
fn edited(rng: &mut Lcg, value: &Value, depth: u32) -> Value {
    if rng.next(12) == 0 {
        return tree(rng, depth.min(3));
    }
    match value {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                match rng.next(10) {
                    0 => {}
                    _ => {
                        out.insert(k.clone(), edited(rng, v, depth.saturating_sub(1)));
                    }
                }
            }
            if rng.next(4) == 0 {
                out.insert(format!("n{}", rng.next(3)), tree(rng, 2));
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            let mut out: Vec<Value> = items.iter().map(|v| edited(rng, v, depth.saturating_sub(1))).collect();
            match rng.next(5) {
                0 => out.truncate(rng.next(out.len() as u64 + 1) as usize),
                1 => out.extend((0..rng.next(3)).map(|_| tree(rng, 1))),
                2 if !out.is_empty() => {
                    out.remove(rng.next(out.len() as u64) as usize);
                }
                _ => {}
            }
            Value::Array(out)
        }
        _ if rng.next(3) == 0 => tree(rng, 0),
        other => other.clone(),
    }
}

/// Labels or annotations: a few keys, some of them the bookkeeping annotations the diff ignores.
fn labels(rng: &mut Lcg) -> Value {
    const KEYS: [&str; 5] = ["app", "team", "kubernetes.io/change-cause", "deployment.kubernetes.io/revision", "x/y"];
    Value::Object(
        (0..rng.next(4))
            .map(|_| (KEYS[rng.next(5) as usize].to_string(), json!(format!("v{}", rng.next(3)))))
            .collect(),
    )
}

fn object(rng: &mut Lcg, spec: Value) -> Value {
    let mut metadata = serde_json::Map::new();
    if rng.next(3) > 0 {
        metadata.insert("labels".into(), labels(rng));
    }
    if rng.next(3) > 0 {
        metadata.insert("annotations".into(), labels(rng));
    }
    json!({"metadata": metadata, "spec": spec})
}

#[test]
fn generated_changes_patch_the_old_view_into_the_new_one() {
    let mut rng = Lcg(20261207);
    let (mut cases, mut operations_seen, mut values_kept) = (0, 0, 0);
    for _ in 0..4_000 {
        // Specs shaped like a Deployment's at the top, random below.
        let spec = json!({"replicas": rng.next(9), "template": {"metadata": {"labels": labels(&mut rng)},
            "spec": {"containers": [{"name": "api", "image": "a:1", "env": tree(&mut rng, 2)}], "x": tree(&mut rng, 3)}},
            "k": tree(&mut rng, 3)});
        let old = object(&mut rng, spec.clone());
        let new_spec = edited(&mut rng, &spec, 5);
        let new = object(&mut rng, new_spec);
        let (got, want, operations, diff) = applied(&old, &new);
        assert!(diff.unlisted.count == 0);
        assert!(
            same_but_markers(&got, &want),
            "got {got}\nwant {want}\npatch {}",
            serde_json::to_string(&operations).unwrap()
        );
        cases += 1;
        operations_seen += operations.len();
        // Operations whose value is kept whole: the comparison above checked them exactly.
        values_kept += serde_json::to_value(&operations)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| {
                o.get("value")
                    .is_some_and(|v| !v.to_string().contains(REDACTED) && !v.to_string().contains(OVER_BUDGET))
            })
            .count();
    }
    assert_eq!(cases, 4_000);
    assert!(operations_seen > 10_000 && values_kept > 2_000, "{operations_seen} operations, {values_kept} values kept");
}

/// The webhook as users run it: a redeploy whose objects carry secrets in every place is denied,
/// its decision record has the patch, and no line on stdout holds a secret.
#[tokio::test]
async fn no_secret_reaches_a_log_line() {
    let server = common::ServeProcess::start("");
    let (old_secret, new_secret) = ("s3cr3t-old-AKIA1234", "s3cr3t-new-AKIA5678");
    let mut review = common::fixture_json("deployment-redeploy-replicas-3-to-6-and-image.json");
    for (which, secret, replicas, tag) in [("oldObject", old_secret, 3, "1.4.0"), ("object", new_secret, 6, "1.5.0")] {
        let seeded = with_secrets(secret, replicas, &format!("registry.example/payments-api:{tag}"));
        let object = &mut review["request"][which];
        object["spec"] = seeded["spec"].clone();
        object["metadata"]["annotations"] = seeded["metadata"]["annotations"].clone();
    }
    let mut client = common::Client::connect(server.https, &server.ca_pem, common::Protocol::Http1).await;
    let response = client.review(serde_json::to_vec(&review).unwrap()).await;
    assert_eq!(response["allowed"], false, "6 is over payments-api's 4: {response}");
    server.signal("TERM");
    let (_, log) = tokio::task::spawn_blocking(move || server.wait(std::time::Duration::from_secs(30))).await.unwrap();
    let record = log
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["log"] == "replica-guard-audit")
        .unwrap_or_else(|| panic!("no decision record: {log:?}"));
    let patch = record["patch"].as_array().unwrap();
    assert_eq!(patch[0], json!({"op": "replace", "path": "/spec/replicas", "value": 6}));
    assert!(
        patch.iter().any(|o| o["path"] == "/spec/template/spec/containers/0/env/0/value" && o["value"] == REDACTED)
    );
    assert!(record["patchOmitted"]["redacted"].as_u64().unwrap() >= 8, "{}", record["patchOmitted"]);
    for line in &log {
        assert!(!line.contains("s3cr3t"), "a secret on stdout: {line}");
    }
}
