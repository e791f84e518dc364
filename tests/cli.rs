//! The `replica-guard` binary as a user runs it: `serve` until SIGTERM (exit 0, in-flight
//! requests answered), `check` offline, and config errors that name the key.

mod common;

use common::{Client, Protocol, fixture};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_replica-guard");

fn write_config(dir: &std::path::Path, extra_server: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("limits.yaml"), common::REGISTRY).unwrap();
    let config = format!(
        "server:\n  address: 127.0.0.1:0\n  adminAddress: 127.0.0.1:0\n  tls: {{certFile: certs/tls.crt, keyFile: certs/tls.key, generateDevCertificate: true}}\n{extra_server}\nregistry:\n  file: {{path: limits.yaml}}\nlogging: {{format: json}}\n"
    );
    let path = dir.join("config.yaml");
    std::fs::write(&path, config).unwrap();
    path
}

#[tokio::test]
async fn serve_answers_over_tls_and_exits_0_on_sigterm_after_in_flight_requests() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "  shutdownDelaySeconds: 0.3");
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // The JSON log says where it listens (port 0 in the config).
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (https, admin) = loop {
        let line = lines.next().expect("server exited before serving").unwrap();
        let record: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if record["message"] == "replica-guard is serving" {
            let address = |k: &str| record[k].as_str().unwrap().parse::<SocketAddr>().unwrap();
            break (address("https_address"), address("admin_address"));
        }
    };
    let log = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<String>>());
    assert!(dir.path().join("certs/ca.crt").exists(), "the dev certificate was created");
    let ca = std::fs::read_to_string(dir.path().join("certs/ca.crt")).unwrap();

    let mut client = Client::connect(https, &ca, Protocol::Http1).await;
    let response = client.review(fixture("deployment-redeploy-replicas-3-to-6-and-image.json")).await;
    assert_eq!(response["allowed"], false);

    // SIGTERM: readiness drops at once, requests keep being answered during the delay, then exit 0.
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
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

    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert_eq!(exit.code(), Some(0));
    let log = log.join().unwrap();
    assert!(log.iter().any(|l| l.contains("\"log\":\"replica-guard-audit\"")), "audit records go to stdout: {log:?}");
    assert!(log.iter().any(|l| l.contains("all connections drained")), "{log:?}");
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
fn check_decides_a_review_file_offline() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let review = dir.path().join("review.json");
    std::fs::write(&review, fixture("deployment-patch-4-to-7.json")).unwrap();
    let out = Command::new(BIN).args(["check", "--config"]).arg(&config).arg(&review).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "a denial exits 1");
    let response: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(response["response"]["status"]["code"], 403);

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
    let table = replica_guard::limits::file::parse(&std::fs::read_to_string(&file.path).unwrap()).unwrap();
    for deployment in ["payments-api", "orders-api"] {
        let replica_guard::limits::Lookup::Registered(limit) = table.lookup("team-a", deployment) else {
            panic!("team-a/{deployment} is registered")
        };
        assert_eq!(limit.max_replicas, 4);
    }
}
