//! The `replica-guard` binary as a user runs it: `serve` until SIGTERM (exit 0, in-flight
//! requests answered), `check` offline, and config errors that name the key.

mod common;

use common::{Client, Protocol, ServeProcess, fixture};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_replica-guard");

fn write_config(dir: &std::path::Path, extra_server: &str) -> std::path::PathBuf {
    common::write_serve_config(dir, extra_server)
}

#[tokio::test]
async fn serve_answers_over_tls_and_exits_0_on_sigterm_after_in_flight_requests() {
    let server = ServeProcess::start("  shutdownDelaySeconds: 0.3");
    assert!(server.dir.path().join("certs/ca.crt").exists(), "the dev certificate was created");
    let (https, admin, ca) = (server.https, server.admin, server.ca_pem.clone());

    let mut client = Client::connect(https, &ca, Protocol::Http1).await;
    let response = client.review(fixture("deployment-redeploy-replicas-3-to-6-and-image.json")).await;
    assert_eq!(response["allowed"], false);

    // SIGTERM: readiness drops at once, requests keep being answered during the delay, then exit 0.
    server.signal("TERM");
    let mut not_ready = false;
    for _ in 0..20 {
        let body = http_get(admin, "/readyz").await;
        if body.starts_with("HTTP/1.1 503") {
            not_ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(not_ready, "readyz must turn 503 after SIGTERM");
    let mut second = Client::connect(https, &ca, Protocol::Http2).await;
    let response = second.review(fixture("deployment-create-replicas-3.json")).await;
    assert_eq!(response["allowed"], true, "still serving during the shutdown delay");

    let (exit, log) = tokio::task::spawn_blocking(move || server.wait(Duration::from_secs(30))).await.unwrap();
    assert_eq!(exit.and_then(|e| e.code()), Some(0));
    assert!(log.iter().any(|l| l.contains("\"log\":\"replica-guard-audit\"")), "audit records go to stdout: {log:?}");
    assert!(log.iter().any(|l| l.contains("all connections drained")), "{log:?}");
}

#[tokio::test]
async fn a_requests_log_line_names_its_uid_namespace_object_and_operation() {
    let server = ServeProcess::start("");
    let mut hpa: serde_json::Value = serde_json::from_slice(&fixture("hpa-apply-create-max-12.json")).unwrap();
    hpa["request"]["object"]["spec"]["scaleTargetRef"]["kind"] = "StatefulSet".into();
    let mut client = Client::connect(server.https, &server.ca_pem, Protocol::Http1).await;
    let response = client.review(serde_json::to_vec(&hpa).unwrap()).await;
    assert_eq!(response["allowed"], true, "an HPA of a StatefulSet is not replica-guard's to judge");

    server.signal("TERM");
    let (_, log) = tokio::task::spawn_blocking(move || server.wait(Duration::from_secs(30))).await.unwrap();
    let line = log
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "not a replica path; allowed")
        .unwrap_or_else(|| panic!("no log line for the HPA: {log:?}"));
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["span"]["name"], "admission");
    assert_eq!(line["span"]["uid"], "5973228a-712a-4680-af31-d69ad51cdc37");
    assert_eq!(line["span"]["namespace"], "team-a");
    assert_eq!(line["span"]["object_name"], "orders-api");
    assert_eq!(line["span"]["operation"], "CREATE");
}

/// A minimal HTTP/1.1 GET on the admin port; returns the raw response.
async fn http_get(address: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(address).await else { return String::new() };
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    response
}

#[test]
fn check_exit_codes_tell_a_denial_from_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let review = dir.path().join("review.json");
    std::fs::write(&review, fixture("deployment-patch-4-to-7.json")).unwrap();
    let check = |config: &std::path::Path, review: &std::path::Path| {
        Command::new(BIN).args(["check", "--config"]).arg(config).arg(review).output().unwrap()
    };
    assert_eq!(check(&config, &review).status.code(), Some(1), "would be denied: 1");
    let cases: [(&str, std::path::PathBuf, std::path::PathBuf, &str); 3] = [
        ("missing file", config.clone(), dir.path().join("nope.json"), "cannot read"),
        ("bad config", dir.path().join("missing-config.yaml"), review.clone(), "cannot read the config file"),
        (
            "not a Kubernetes object",
            config.clone(),
            config.clone(),
            "not a Kubernetes object (it has no apiVersion and kind)",
        ),
    ];
    for (what, config, review, says) in cases {
        let out = check(&config, &review);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{what}: an error is 3, never 1: {stderr}");
        assert!(stderr.starts_with("error: ") && stderr.contains(says), "{what}: {stderr}");
    }
}

#[test]
fn check_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let review = dir.path().join("review.json");
    std::fs::write(&review, fixture("deployment-patch-4-to-7.json")).unwrap();
    // `check … | head -c0`: the reader is gone before anything is written.
    let mut child = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&config)
        .arg(&review)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "still says what it found: {stderr}");
}

#[test]
fn error_causes_are_not_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "registry: {file: {path: missing.yaml}}\n").unwrap();
    let review = dir.path().join("review.json");
    std::fs::write(&review, fixture("deployment-patch-4-to-7.json")).unwrap();
    let out = Command::new(BIN).args(["check", "--config"]).arg(&config).arg(&review).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("No such file or directory").count(), 1, "{stderr}");
}

#[test]
fn check_decides_a_review_file_offline() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let review = dir.path().join("review.json");
    std::fs::write(&review, fixture("deployment-patch-4-to-7.json")).unwrap();
    let out =
        Command::new(BIN).args(["check", "--config"]).arg(&config).args(["-o", "json"]).arg(&review).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "a denial exits 1");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["objects"][0]["decision"], "denied");
    assert_eq!(report["objects"][0]["operation"], "UPDATE");

    std::fs::write(&review, fixture("deployment-create-replicas-3.json")).unwrap();
    let out = Command::new(BIN).args(["check", "--config"]).arg(&config).arg(&review).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_config_error_names_the_key_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "registry: {file: {path: x.yaml}}\npolicy: {mode: block}\n").unwrap();
    let out = Command::new(BIN).args(["serve", "--config"]).arg(&config).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("policy.mode: unknown variant `block`, expected one of `enforce`, `warn`, `audit`"),
        "{stderr}"
    );

    std::fs::write(&config, "registry: {file: {path: missing.yaml}}\nserver: {tls: {generateDevCertificate: true, certFile: c/tls.crt, keyFile: c/tls.key}, address: '127.0.0.1:0', adminAddress: '127.0.0.1:0'}\n").unwrap();
    let out = Command::new(BIN).args(["serve", "--config"]).arg(&config).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot read the registry file") && stderr.contains("missing.yaml"), "{stderr}");
}

#[test]
fn the_example_config_the_readme_runs_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config.yaml");
    let config = replica_guard::config::Config::load(&path).expect("examples/config.yaml loads");
    assert_eq!(config.server.address.to_string(), "127.0.0.1:8443");
    assert_eq!(config.server.admin_address.to_string(), "127.0.0.1:8080");
    assert!(config.server.tls.generate_dev_certificate, "the first command must work without certificates");
    assert_eq!(config.policy.mode, replica_guard::decision::policy::Mode::Enforce);
    let replica_guard::config::Source::File(file) = config.registry.source() else { panic!("file registry") };
    let table = replica_guard::limits::file::parse(&std::fs::read_to_string(&file.path).unwrap(), 200_000).unwrap();
    for deployment in ["payments-api", "orders-api"] {
        let replica_guard::limits::Lookup::Registered(limit) = table.lookup("team-a", deployment) else {
            panic!("team-a/{deployment} is registered")
        };
        assert_eq!(limit.max_replicas, 4);
    }
}

#[test]
fn an_unreachable_api_server_is_said_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!("apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{port}'}}}}]\nusers: [{{name: u, user: {{token: t}}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: u}}}}]\ncurrent-context: c\n"),
    )
    .unwrap();
    let out =
        Command::new(BIN).args(["audit", "--config"]).arg(&config).env("KUBECONFIG", &kubeconfig).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("cannot reach the Kubernetes API server: Connection refused"), "{stderr}");
    assert!(!stderr.contains("ServiceError") && !stderr.contains("client error (Connect)"), "{stderr}");
}
