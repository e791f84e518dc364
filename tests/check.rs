//! `replica-guard check` as a pipeline runs it: manifests from files, folders and standard input
//! (multi-document YAML, kustomize output, Lists, AdmissionReviews), the webhook's decision and
//! messages, text/JSON/JUnit output, and exit codes that tell "would be denied" (1) from
//! "warnings only" (2, with --fail-on-warn) from "could not check" (3).
//!
//! A `helm template` of `tests/charts/payments-api` is checked in `tests/chart.rs` (it needs
//! Helm), and `--cluster` against a real API server in the end-to-end suite.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_replica-guard");

const REGISTRY: &str = "entries:
  - {namespace: team-a, deployment: payments-api, maxReplicas: 4, owner: payments-team}
  - {namespace: team-a, deployment: orders-api, maxReplicas: 4}
  - {namespace: team-a, deployment: cart-api, maxReplicas: 4, mode: warn}
";

fn config(dir: &Path, policy: &str) -> PathBuf {
    std::fs::write(dir.join("limits.yaml"), REGISTRY).unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!("policy:\n  unregistered: warn\n  override: {{groups: [platform-admins]}}\n{policy}registry: {{file: {{path: limits.yaml}}}}\n"),
    )
    .unwrap();
    config
}

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn check(config: &Path, args: &[&str], stdin: &str) -> Ran {
    let mut child = Command::new(BIN)
        .args(["check", "--config"])
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A check that exits before reading its input (a usage error) closes the pipe: not a failure here.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn deployment(name: &str, replicas: i32, extra_metadata: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n{extra_metadata}spec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers: [{{name: api, image: 'api:1'}}]\n"
    )
}

fn hpa(name: &str, max: i32) -> String {
    format!(
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {{name: {name}}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: {name}}}\n  minReplicas: 2\n  maxReplicas: {max}\n"
    )
}

const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: payments-api}\nspec: {ports: [{port: 80}]}\n";

#[test]
fn a_deployment_its_hpa_and_a_service_on_standard_input() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "");
    let stream = format!("{}---\n{}---\n{SERVICE}", deployment("payments-api", 3, ""), hpa("payments-api", 10));
    let ran = check(&config, &["-n", "team-a", "-"], &stream);
    assert_eq!(ran.code, Some(1), "the HPA would be denied: {}{}", ran.stdout, ran.stderr);
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "Error from server (Forbidden): admission webhook \"validate.replica-guard.io\" denied the request: HPA maxReplicas 10 exceeds PED max 4 for team-a/payments-api. To deploy, lower maxReplicas (and minReplicas) of HPA payments-api to 4 or less, or raise maxReplicas in the PED config of team-a/payments-api and rerun the onboarding pipeline (registered owner: payments-team)."
    );
    assert_eq!(
        lines[1],
        "team-a/payments-api: would be denied [PED max 4]: Deployment CREATE replicas 3; HPA payments-api CREATE maxReplicas 10",
        "the HPA is reported with the Deployment it scales"
    );
    assert_eq!(
        lines[2],
        "1 workload: 1 would be denied, 0 allowed with warnings, 0 allowed; judged each as a CREATE (no --cluster: updates of live objects are not known); passed over: 1 Service"
    );
    assert_eq!(lines.len(), 3);
    assert!(ran.stderr.is_empty(), "{}", ran.stderr);
}

#[test]
fn exit_codes_0_1_2_3() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "");
    let cases = [
        ("within its limit", deployment("payments-api", 4, ""), vec![], Some(0)),
        ("above its limit", deployment("payments-api", 6, ""), vec![], Some(1)),
        ("warn mode: warnings only", deployment("cart-api", 6, ""), vec![], Some(0)),
        ("warnings with --fail-on-warn", deployment("cart-api", 6, ""), vec!["--fail-on-warn"], Some(2)),
        ("unregistered: a warning", deployment("legacy", 2, ""), vec!["--fail-on-warn"], Some(2)),
        ("a denial wins over --fail-on-warn", deployment("payments-api", 6, ""), vec!["--fail-on-warn"], Some(1)),
        ("not valid YAML", "kind: Deployment\nspec: [\n".to_string(), vec![], Some(3)),
        ("a template that rendered nothing", "---\n# Source: app/templates/empty.yaml\n".to_string(), vec![], Some(3)),
        ("not a Kubernetes object", "replicas: 3\n".to_string(), vec![], Some(3)),
        (
            "replicas that are not a number",
            deployment("payments-api", 4, "").replace("replicas: 4", "replicas: four"),
            vec![],
            Some(3),
        ),
    ];
    for (what, manifest, extra, want) in cases {
        let mut args = vec!["-n", "team-a"];
        args.extend(extra);
        args.push("-");
        let ran = check(&config, &args, &manifest);
        assert_eq!(ran.code, want, "{what}: {}{}", ran.stdout, ran.stderr);
    }
    let missing = check(&config, &["no/such/file.yaml"], "");
    assert_eq!(missing.code, Some(3));
    assert!(missing.stderr.starts_with("error: cannot read no/such/file.yaml"), "{}", missing.stderr);
    let bad_config = check(&dir.path().join("nope.yaml"), &["-"], &deployment("payments-api", 6, ""));
    assert_eq!(bad_config.code, Some(3), "a bad config is 3, never 1");
}

#[test]
fn the_registry_unreachable_with_registry_failure_closed_is_3() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    // Nothing listens on port 9 of this machine's loopback: the lookup fails at once.
    std::fs::write(
        &config,
        "policy: {registryFailure: closed}\nregistry: {http: {url: 'http://127.0.0.1:9/limits/{namespace}/{name}'}}\n",
    )
    .unwrap();
    let ran = check(&config, &["-n", "team-a", "-"], &deployment("payments-api", 2, ""));
    assert_eq!(ran.code, Some(3), "{}{}", ran.stdout, ran.stderr);
    assert!(ran.stderr.contains("error: STDIN (document 1) Deployment team-a/payments-api:"), "{}", ran.stderr);
}

#[test]
fn yaml_errors_name_the_file_the_document_and_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "");
    let file = dir.path().join("app.yaml");
    std::fs::write(&file, format!("{SERVICE}---\n{}  bad: [\n", deployment("payments-api", 3, ""))).unwrap();
    let ran = check(&config, &[file.to_str().unwrap()], "");
    assert_eq!(ran.code, Some(3));
    let want = format!("error: {}: document 2, line ", file.display());
    assert!(ran.stderr.starts_with(&want), "{}", ran.stderr);
    assert!(ran.stdout.is_empty(), "no partial report: {}", ran.stdout);
}

#[test]
fn kustomize_output_in_a_folder_with_json_output() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kustomize");
    // The folder holds the kustomization's sources too: every .yaml under it is read, so the
    // rendered output alone is given here, as a pipeline would.
    let ran = check(&config, &["-o", "json", fixtures.join("production-build.yaml").to_str().unwrap()], "");
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    let report: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(report["apiVersion"], "replica-guard.io/check/v1");
    assert_eq!(report["judgedAgainstCluster"], false);
    assert_eq!(report["passedOver"], serde_json::json!({"ConfigMap": 1, "Service": 1}));
    let objects = report["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 2);
    let hpa = objects.iter().find(|o| o["kind"] == "HorizontalPodAutoscaler").unwrap();
    assert_eq!(hpa["decision"], "denied");
    assert_eq!(hpa["rule"], "violation");
    assert_eq!(hpa["requestedReplicas"], 8);
    assert_eq!(hpa["registeredMaxReplicas"], 4);
    assert_eq!(hpa["namespace"], "team-a");
    assert_eq!(hpa["deployment"], "orders-api");
    assert!(hpa["source"].as_str().unwrap().ends_with("production-build.yaml"));
    assert_eq!(hpa["document"], 4);
    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    assert_eq!((deployment["decision"].as_str(), deployment["operation"].as_str()), (Some("allowed"), Some("CREATE")));
    assert_eq!(report["summary"]["denied"], 1);
    assert_eq!(report["summary"]["workloads"], 1);

    // A folder: read recursively (the base and overlay sources are manifests too).
    let folder = check(&config, &[fixtures.to_str().unwrap(), "-n", "team-a"], "");
    assert!(folder.stdout.contains("team-a/orders-api: would be denied"), "{}", folder.stdout);
    assert!(folder.stdout.contains("passed over: ") && folder.stdout.contains("2 Kustomization"), "{}", folder.stdout);
    assert_eq!(folder.code, Some(1), "kustomize's own files are passed over, not errors: {}", folder.stderr);
}

#[test]
fn junit_has_one_test_case_per_workload() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "");
    let stream = format!(
        "{}---\n{}---\n{}---\n{}",
        deployment("payments-api", 6, ""),
        hpa("payments-api", 4),
        deployment("orders-api", 2, ""),
        deployment("cart-api", 9, "")
    );
    let ran = check(&config, &["-n", "team-a", "-o", "junit", "--fail-on-warn", "-"], &stream);
    assert_eq!(ran.code, Some(1));
    let xml = ran.stdout;
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites"), "{xml}");
    assert_eq!(xml.matches("<testcase ").count(), 3, "{xml}");
    assert!(xml.contains("tests=\"3\" failures=\"2\""), "a denial, and a warning under --fail-on-warn: {xml}");
    assert!(xml.contains("<testcase classname=\"team-a\" name=\"payments-api\" file=\"STDIN#1 STDIN#2\">"), "{xml}");
    assert!(xml.contains("type=\"denied\""));
    assert!(xml.contains("type=\"warning\""));
}

#[test]
fn the_user_and_groups_of_whoever_applies_count() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "  exemptions: {users: ['system:serviceaccount:ci:deployer']}\n");
    let annotated =
        deployment("payments-api", 6, "  annotations: {replica-guard.io/override: 'INC-1234 Black Friday'}\n");
    let as_developer = check(&config, &["-n", "team-a", "--user", "alice", "-"], &annotated);
    assert_eq!(as_developer.code, Some(1), "{}", as_developer.stdout);
    let as_admin = check(&config, &["-n", "team-a", "--user", "bob", "--group", "platform-admins", "-"], &annotated);
    assert_eq!(as_admin.code, Some(0), "{}", as_admin.stdout);
    assert!(as_admin.stdout.contains("Warning: "), "the override is announced: {}", as_admin.stdout);
    let exempt = check(
        &config,
        &["-n", "team-a", "--user", "system:serviceaccount:ci:deployer", "-"],
        &deployment("payments-api", 6, ""),
    );
    assert_eq!(exempt.code, Some(0), "{}", exempt.stdout);
    assert!(exempt.stdout.contains("exempt"), "{}", exempt.stdout);
}

#[test]
fn admission_review_files_are_told_apart_by_their_kind() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "");
    let review = dir.path().join("review.json");
    std::fs::write(&review, common::fixture("deployment-redeploy-replicas-3-to-6-and-image.json")).unwrap();
    let ran = check(&config, &["-o", "json", review.to_str().unwrap()], "");
    let report: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    let object = &report["objects"][0];
    assert_eq!(object["operation"], "UPDATE");
    assert_eq!(object["previousReplicas"], 3);
    assert_eq!(object["requestedReplicas"], 6);
    assert!(object["changes"].as_str().unwrap().starts_with("changes: replicas 3 -> 6, image of"), "{object}");
    // The decision record's patch, in the README's order: replicas, then the image.
    let image = review_image();
    assert_eq!(
        object["patch"],
        serde_json::json!([{"op": "replace", "path": "/spec/replicas", "value": 6},
            {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": image}])
    );
}

/// The new image of the captured redeploy.
fn review_image() -> serde_json::Value {
    let review = common::fixture_json("deployment-redeploy-replicas-3-to-6-and-image.json");
    review["request"]["object"]["spec"]["template"]["spec"]["containers"][0]["image"].clone()
}

#[test]
fn a_list_and_a_closed_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "");
    let list = format!(
        "{{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [{}]}}",
        serde_json::to_string(
            &serde_yaml_ng::from_str::<serde_json::Value>(&deployment("payments-api", 6, "")).unwrap()
        )
        .unwrap()
    );
    let mut child = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&config)
        .args(["-n", "team-a", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(list.as_bytes()).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "the List's Deployment would be denied: {stderr}");
}

/// `check` with raw arguments (no `--config` added), for usage errors.
fn check_raw(args: &[&str]) -> Ran {
    let out = Command::new(BIN).args(args).stdin(Stdio::null()).output().unwrap();
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn a_usage_error_is_could_not_check_never_warnings_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "");
    let config = config.to_str().unwrap();
    for (args, says) in [
        (vec!["check", "--config", config, "--namespce", "team-a", "-"], "unexpected argument '--namespce'"),
        (vec!["check", "--config", config, "-o", "yaml", "-"], "invalid value 'yaml'"),
        (vec!["check", "--config", config], "required arguments were not provided"),
        (vec!["chekc"], "unrecognized subcommand 'chekc'"),
    ] {
        let ran = check_raw(&args);
        assert_eq!(
            ran.code,
            Some(3),
            "{args:?}: a pipeline that tolerates 2 must not pass a broken command: {}",
            ran.stderr
        );
        assert!(ran.stderr.contains(says), "{args:?}: {}", ran.stderr);
    }
    assert_eq!(check_raw(&["check", "--help"]).code, Some(0));
    assert_eq!(check_raw(&["--version"]).code, Some(0));
    // -o json with a mistyped flag: still one JSON document, saying what was wrong.
    let ran = check_raw(&["check", "--config", config, "-o", "json", "--fail-on-warning", "-"]);
    assert_eq!(ran.code, Some(3));
    let report: serde_json::Value = serde_json::from_str(&ran.stdout).expect("a JSON document");
    assert!(report["error"].as_str().unwrap().contains("unexpected argument '--fail-on-warning'"), "{report}");
    let ran = check_raw(&["check", "--config", config, "--output=junit", "--bogus", "-"]);
    assert!(ran.stdout.contains("<error message=\"usage: unexpected argument &apos;--bogus&apos;"), "{}", ran.stdout);
}

/// One well-formed document on stdout, whatever went wrong: JSON that parses with the schema's
/// keys, JUnit with a test case in error.
fn assert_error_documents(config: &Path, args: &[&str], stdin: &str, says: &str) {
    let json = check(config, &[&["-o", "json"], args].concat(), stdin);
    assert_eq!(json.code, Some(3), "{}", json.stderr);
    let report: serde_json::Value =
        serde_json::from_str(&json.stdout).unwrap_or_else(|e| panic!("{e}: {}", json.stdout));
    assert_eq!(report["apiVersion"], "replica-guard.io/check/v1");
    assert_eq!(report["objects"], serde_json::json!([]));
    assert_eq!(report["summary"]["workloads"], 0);
    assert!(report["error"].as_str().unwrap().contains(says), "{report}");
    let junit = check(config, &[&["-o", "junit"], args].concat(), stdin);
    assert_eq!(junit.code, Some(3));
    let xml = junit.stdout.trim();
    assert!(xml.starts_with("<?xml") && xml.ends_with("</testsuites>"), "{xml}");
    assert!(xml.contains("errors=\"1\"") && xml.contains("<error message=\"") && xml.contains(says), "{xml}");
    assert!(junit.stderr.contains(says), "the cause is on stderr too: {}", junit.stderr);
}

#[test]
fn bad_input_still_gives_one_well_formed_document() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "");
    assert_error_documents(&config, &["-"], "kind: Deployment\nspec: [1\n", "STDIN: document 1, line");
    assert_error_documents(
        &config,
        &["-"],
        "replicas: 3\nimage: {tag: x}\n",
        "STDIN: document 1: not a Kubernetes object",
    );
    let missing = dir.path().join("missing.yaml");
    assert_error_documents(&config, &[missing.to_str().unwrap()], "", "cannot read");
    assert_error_documents(&dir.path().join("no-config.yaml"), &["-"], "", "cannot read the config file");
}

#[test]
fn an_empty_file_next_to_a_good_one_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "");
    let (good, empty) = (dir.path().join("good.yaml"), dir.path().join("empty.yaml"));
    std::fs::write(&good, deployment("payments-api", 3, "")).unwrap();
    std::fs::write(&empty, "# rendered nothing\n---\n").unwrap();
    let ran = check(&config, &[good.to_str().unwrap(), empty.to_str().unwrap()], "");
    assert_eq!(ran.code, Some(3), "{}", ran.stdout);
    assert!(ran.stderr.contains(&format!("{}: no objects in this file", empty.display())), "{}", ran.stderr);
}

#[test]
fn an_invalid_object_has_every_key_of_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "");
    let bad = deployment("payments-api", 3, "").replace("replicas: 3", "replicas: three");
    let ran = check(&config, &["-o", "json", "-"], &bad);
    assert_eq!(ran.code, Some(3));
    let report: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    let object = &report["objects"][0];
    assert_eq!(object["decision"], "invalid");
    for key in [
        "deployment",
        "operation",
        "rule",
        "requestedReplicas",
        "previousReplicas",
        "registeredMaxReplicas",
        "changes",
        "patch",
    ] {
        assert!(object.get(key).is_some_and(serde_json::Value::is_null), "{key} is null in {object}");
    }
    assert!(!object["message"].as_str().unwrap().contains("i32"), "in words: {object}");
}

#[test]
fn an_unreachable_snapshot_registry_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(
        &config,
        format!("registry: {{firestore: {{project: p, collection: ped, url: 'http://127.0.0.1:{port}/v1'}}}}\n"),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let ran = check(&config, &["-"], &deployment("payments-api", 3, ""));
    assert_eq!(ran.code, Some(3));
    assert!(ran.stderr.contains("the registry could not be read: page 1: http://127.0.0.1:"), "{}", ran.stderr);
    assert!(ran.stderr.contains("Connection refused"), "the cause, not 'see the log': {}", ran.stderr);
    assert!(started.elapsed() < std::time::Duration::from_secs(8), "it does not wait for a timeout");
}
