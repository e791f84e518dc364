//! Shared by the integration tests: a real replica-guard on 127.0.0.1 with freshly generated
//! certificates, and a TLS client that talks HTTP/1.1 or HTTP/2 to it like the API server.
#![allow(dead_code)]

pub mod emulator;
pub mod pki;
pub mod process;
use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo};
use replica_guard::config::Config;
use replica_guard::json_lines::JsonLines;
use replica_guard::run::serve::{self as server, Running};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The example registry: both fixture workloads registered with maxReplicas 4.
pub const REGISTRY: &str = "entries:
  - {namespace: team-a, deployment: payments-api, maxReplicas: 4, owner: payments-team@example.com}
  - {namespace: team-a, deployment: orders-api, maxReplicas: 4}
";

/// The sets of captured AdmissionReview bodies, oldest first: what kube-apiserver 1.20 sent, and
/// what the newest tested version (1.37) sends (`tests/fixtures/README.md`). Both hold the same
/// stories under the same file names; the decision tables run on every set.
pub const FIXTURE_SETS: [&str; 2] = ["k8s-1.20", "k8s-1.37"];

/// A body of the newest set.
pub fn fixture(name: &str) -> Vec<u8> {
    fixture_in(FIXTURE_SETS[FIXTURE_SETS.len() - 1], name)
}

pub fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

/// A body of one set (`k8s-1.20`, `k8s-1.37`).
pub fn fixture_in(set: &str, name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(set).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn fixture_json_in(set: &str, name: &str) -> Value {
    serde_json::from_slice(&fixture_in(set, name)).unwrap()
}

/// The warnings of an AdmissionReview response (none: empty).
pub fn warnings(response: &Value) -> Vec<String> {
    response["warnings"]
        .as_array()
        .map(|w| w.iter().map(|w| w.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// The deny message of an AdmissionReview response (allowed: empty).
pub fn message(response: &Value) -> String {
    response["status"]["message"].as_str().unwrap_or_default().to_string()
}

/// An audit sink the test can read.
#[derive(Clone, Default)]
pub struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub https: SocketAddr,
    pub admin: SocketAddr,
    pub ca_pem: String,
    audit: SharedBuf,
    running: Option<Running>,
}

impl TestServer {
    /// Starts a server with `policy` (YAML of the `policy:` section) and `registry` (the limits file).
    pub async fn start(policy: &str, registry: &str) -> Self {
        Self::start_with(policy, registry, "").await
    }

    /// Like `start`, with extra YAML lines for the `server:` section (each indented by two spaces).
    pub async fn start_with(policy: &str, registry: &str, server_extra: &str) -> Self {
        let section = "  file: {path: limits.yaml, pollIntervalSeconds: 0.1}";
        Self::start_full(policy, registry, server_extra, section, None).await
    }

    /// The general case: `registry_section` is the body of the config's `registry:` section
    /// (indented by two spaces), `kube_api` the address of a (fake) Kubernetes API server.
    pub async fn start_full(
        policy: &str,
        registry: &str,
        server_extra: &str,
        registry_section: &str,
        kube_api: Option<SocketAddr>,
    ) -> Self {
        Self::start_tls(policy, registry, server_extra, registry_section, kube_api, "").await
    }

    /// `start_full` with more keys of `server.tls` (`clientAuth: {...}`), in flow style.
    pub async fn start_tls(
        policy: &str,
        registry: &str,
        server_extra: &str,
        registry_section: &str,
        kube_api: Option<SocketAddr>,
        tls_extra: &str,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let certs = replica_guard::certs::generate(&replica_guard::certs::local_names()).unwrap();
        certs.write(&dir.path().join("tls.crt"), &dir.path().join("tls.key")).unwrap();
        std::fs::write(dir.path().join("limits.yaml"), registry).unwrap();
        let config = format!(
            "server:\n  address: 127.0.0.1:0\n  adminAddress: 127.0.0.1:0\n  tls: {{certFile: tls.crt, keyFile: tls.key, reloadIntervalSeconds: 0.1{tls_extra}}}\n{server_extra}\npolicy:\n{}\nregistry:\n{registry_section}\n",
            indent(policy)
        );
        std::fs::write(dir.path().join("config.yaml"), config).unwrap();
        let config = Config::load(&dir.path().join("config.yaml")).unwrap();
        let audit = SharedBuf::default();
        let kube_client = async move || match kube_api {
            Some(address) => {
                let url: hyper::Uri = format!("http://{address}").parse().unwrap();
                kube::Client::try_from(kube::Config::new(url))
            }
            None => kube::Client::try_default().await,
        };
        let running = server::start_with(&config, JsonLines::to(Box::new(audit.clone())), kube_client).await.unwrap();
        Self {
            https: running.https_address,
            admin: running.admin_address,
            ca_pem: certs.ca_pem,
            dir,
            audit,
            running: Some(running),
        }
    }

    pub async fn client(&self, protocol: Protocol) -> Client {
        Client::connect(self.https, &self.ca_pem, protocol).await
    }

    /// Sends one AdmissionReview on a fresh HTTP/1.1 connection; returns its `response` object.
    pub async fn review(&self, body: Vec<u8>) -> Value {
        self.client(Protocol::Http1).await.review(body).await
    }

    /// The audit records written so far, parsed.
    pub fn audit_records(&self) -> Vec<Value> {
        let text = String::from_utf8(self.audit.0.lock().unwrap().clone()).unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// GET on the admin listener: (status, body).
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        let stream = TcpStream::connect(self.admin).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::get(path).header("host", "localhost").body(Full::new(Bytes::new())).unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// The value of one metric sample, e.g. `replica_guard_violations_total{...}`; 0 when absent.
    pub async fn metric(&self, name_and_labels: &str) -> f64 {
        let (_, text) = self.admin_get("/metrics").await;
        text.lines()
            .find_map(|l| l.strip_prefix(name_and_labels).and_then(|rest| rest.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    /// Drains as on SIGTERM; returns the parts that could not finish what they held.
    pub async fn shutdown(mut self) -> Vec<&'static str> {
        match self.running.take() {
            Some(r) => r.shutdown().await,
            None => vec![],
        }
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }
}

fn indent(yaml: &str) -> String {
    yaml.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// One kept-alive TLS connection, as the API server holds them.
pub struct Client {
    sender: Sender,
    /// The protocol ALPN settled on.
    pub alpn: Option<Vec<u8>>,
    /// The certificate the server presented (DER).
    pub server_cert: Vec<u8>,
}

pub fn tls_connector(ca_pem: &str, alpn: &[&[u8]]) -> TlsConnector {
    tls_connector_as(ca_pem, alpn, None)
}

/// A client presenting `identity` (PEM certificate and key) when the server asks for one.
pub fn tls_connector_as(ca_pem: &str, alpn: &[&[u8]], identity: Option<(&str, &str)>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.as_bytes()).map(Result::unwrap).collect();
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            config.with_client_auth_cert(chain, key).unwrap()
        }
        None => config.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

impl Client {
    pub async fn connect(address: SocketAddr, ca_pem: &str, protocol: Protocol) -> Self {
        Self::try_connect(address, ca_pem, protocol).await.unwrap()
    }

    pub async fn try_connect(address: SocketAddr, ca_pem: &str, protocol: Protocol) -> Result<Self, String> {
        Self::try_connect_as(address, ca_pem, protocol, None).await
    }

    /// `try_connect`, presenting `identity` (PEM certificate and key) when asked for one.
    pub async fn try_connect_as(
        address: SocketAddr,
        ca_pem: &str,
        protocol: Protocol,
        identity: Option<(&str, &str)>,
    ) -> Result<Self, String> {
        let alpn: &[u8] = match protocol {
            Protocol::Http1 => b"http/1.1",
            Protocol::Http2 => b"h2",
        };
        let connector = tls_connector_as(ca_pem, &[alpn], identity);
        let tcp = TcpStream::connect(address).await.map_err(|e| e.to_string())?;
        // As Go's net/http does: without it, Nagle and delayed ACKs add ~40 ms to some requests.
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let tls =
            connector.connect(ServerName::IpAddress(address.ip().into()), tcp).await.map_err(|e| e.to_string())?;
        let (_, session) = tls.get_ref();
        let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
        let server_cert = session.peer_certificates().unwrap()[0].to_vec();
        let io = TokioIo::new(tls);
        let sender = match protocol {
            Protocol::Http1 => {
                let (sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                Sender::H1(sender)
            }
            Protocol::Http2 => {
                let (sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                Sender::H2(sender)
            }
        };
        Ok(Self { sender, alpn, server_cert })
    }

    /// POSTs `body` to `path` with a Content-Type (none when empty); returns status and JSON body.
    pub async fn post(&mut self, path: &str, content_type: &str, body: Vec<u8>) -> Result<(StatusCode, Value), String> {
        let (status, body) = self.dispatch(path, content_type, Bytes::from(body)).await?;
        let json = serde_json::from_slice(&body).map_err(|e| format!("{status}: not JSON ({e}): {body:?}"))?;
        Ok((status, json))
    }

    /// POSTs an AdmissionReview and returns only the status, reading but not parsing the body
    /// (for the load generator, whose own cost should stay small).
    pub async fn send(&mut self, body: Bytes) -> Result<u16, String> {
        self.send_to("/validate?timeout=10s", body).await
    }

    /// `send` to another path (a peer webhook that serves `/mutate`).
    pub async fn send_to(&mut self, path: &str, body: Bytes) -> Result<u16, String> {
        Ok(self.dispatch(path, "application/json", body).await?.0.as_u16())
    }

    async fn dispatch(&mut self, path: &str, content_type: &str, body: Bytes) -> Result<(StatusCode, Bytes), String> {
        let mut req = hyper::Request::post(format!("https://127.0.0.1{path}")).header("host", "127.0.0.1");
        if !content_type.is_empty() {
            req = req.header("content-type", content_type);
        }
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        let resp = match &mut self.sender {
            Sender::H1(s) => {
                s.ready().await.map_err(|e| e.to_string())?;
                s.send_request(req).await
            }
            Sender::H2(s) => {
                s.ready().await.map_err(|e| e.to_string())?;
                s.send_request(req).await
            }
        }
        .map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((status, body))
    }

    /// POSTs an AdmissionReview the way the API server does and returns its `response` object.
    pub async fn review(&mut self, body: Vec<u8>) -> Value {
        let (status, json) = self.post("/validate?timeout=10s", "application/json", body).await.unwrap();
        assert_eq!(status, StatusCode::OK, "{json}");
        assert_eq!(json["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(json["kind"], "AdmissionReview");
        json["response"].clone()
    }
}

/// Kept-alive clients sending one body in a loop until stopped, counting the answers: the load
/// under which rotation and shutdown must not fail a request.
pub struct BackgroundLoad {
    stop: Arc<std::sync::atomic::AtomicBool>,
    ok: Arc<std::sync::atomic::AtomicUsize>,
    failed: Arc<std::sync::atomic::AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl BackgroundLoad {
    pub fn start(clients: Vec<Client>, body: Vec<u8>) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        let load = Self { stop: Arc::default(), ok: Arc::default(), failed: Arc::default(), tasks: vec![] };
        let tasks = clients
            .into_iter()
            .map(|mut client| {
                let (stop, ok, failed, body) = (load.stop.clone(), load.ok.clone(), load.failed.clone(), body.clone());
                tokio::spawn(async move {
                    while !stop.load(Relaxed) {
                        match client.post("/validate", "application/json", body.clone()).await {
                            Ok((status, _)) if status == 200 => ok.fetch_add(1, Relaxed),
                            other => {
                                eprintln!("failed: {other:?}");
                                failed.fetch_add(1, Relaxed)
                            }
                        };
                    }
                })
            })
            .collect();
        Self { tasks, ..load }
    }

    /// Requests answered with 200 so far.
    pub fn ok(&self) -> usize {
        self.ok.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops sending (each client finishes its request in flight); returns (ok, failed).
    pub async fn stop(self) -> (usize, usize) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        (self.ok.load(std::sync::atomic::Ordering::Relaxed), self.failed.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// A config for the binary in `dir`: the example registry, a dev certificate made at start,
/// ports chosen by the system, JSON logs; `extra_server` lines go into `server:`.
pub fn write_serve_config(dir: &std::path::Path, extra_server: &str) -> PathBuf {
    write_serve_config_with(dir, extra_server, "mode: enforce", REGISTRY)
}

/// `write_serve_config` with a `policy:` section (YAML, unindented) and a registry file.
pub fn write_serve_config_with(dir: &std::path::Path, extra_server: &str, policy: &str, registry: &str) -> PathBuf {
    write_serve_config_tls(dir, extra_server, policy, registry, "")
}

/// `write_serve_config_with`, with more keys of `server.tls` in flow style (`, clientAuth: {...}`).
pub fn write_serve_config_tls(
    dir: &std::path::Path,
    extra_server: &str,
    policy: &str,
    registry: &str,
    tls_extra: &str,
) -> PathBuf {
    std::fs::write(dir.join("limits.yaml"), registry).unwrap();
    let config = format!(
        "server:\n  address: 127.0.0.1:0\n  adminAddress: 127.0.0.1:0\n  tls: {{certFile: certs/tls.crt, keyFile: certs/tls.key, generateDevCertificate: true{tls_extra}}}\n{extra_server}\npolicy:\n{}\nregistry:\n  file: {{path: limits.yaml, pollIntervalSeconds: 0.2}}\nlogging: {{format: json}}\n",
        indent(policy)
    );
    let path = dir.join("config.yaml");
    std::fs::write(&path, config).unwrap();
    path
}

/// The `replica-guard serve` binary as a separate process (for what only a process shows: its
/// memory, its exit status, its signals), with a dev certificate and the example registry.
pub struct ServeProcess {
    pub child: std::process::Child,
    pub https: SocketAddr,
    pub admin: SocketAddr,
    pub ca_pem: String,
    pub dir: tempfile::TempDir,
    log: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl ServeProcess {
    /// Starts `serve` with extra YAML lines for the `server:` section (indented by two spaces)
    /// and returns once it listens.
    pub fn start(extra_server: &str) -> Self {
        Self::start_with(extra_server, "mode: enforce", REGISTRY)
    }

    /// `start` with a policy (the `policy:` section, unindented) and a registry file.
    pub fn start_with(extra_server: &str, policy: &str, registry: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = write_serve_config_with(dir.path(), extra_server, policy, registry);
        Self::start_config(dir, &config, &[])
    }

    /// Starts `serve --config CONFIG` (a config that listens on port 0, with JSON logs and
    /// `certs/` in `dir` for the dev certificate), with extra environment variables.
    pub fn start_config(dir: tempfile::TempDir, config: &std::path::Path, env: &[(&str, String)]) -> Self {
        Self::start_binary(env!("CARGO_BIN_EXE_replica-guard"), dir, config, env)
    }

    /// `start_config` with another build of the binary (the release build, for benchmarks).
    pub fn start_binary(bin: &str, dir: tempfile::TempDir, config: &std::path::Path, env: &[(&str, String)]) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(bin)
            .args(["serve", "--config"])
            .arg(config)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        // The JSON log says where it listens (port 0 in the config).
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let (https, admin) = loop {
            let line = lines.next().expect("server exited before serving").unwrap();
            let record: Value = serde_json::from_str(&line).unwrap_or_default();
            if record["message"] == "replica-guard is serving" {
                let address = |k: &str| record[k].as_str().unwrap().parse::<SocketAddr>().unwrap();
                break (address("https_address"), address("admin_address"));
            }
        };
        let log = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<String>>());
        let ca_pem = std::fs::read_to_string(dir.path().join("certs/ca.crt")).unwrap();
        Self { child, https, admin, ca_pem, dir, log: Some(log) }
    }

    /// Replaces the registry file (picked up within its 0.2 s poll interval).
    pub fn set_registry(&self, registry: &str) {
        let path = self.dir.path().join("limits.yaml");
        let next = self.dir.path().join("limits.yaml.next");
        std::fs::write(&next, registry).unwrap();
        std::fs::rename(next, path).unwrap();
    }

    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// A line of `/proc/PID/status` in KiB, e.g. `VmHWM` (peak resident memory) or `VmRSS`.
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix(" kB")?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/PID/status"))
    }

    /// Waits up to `limit` for the process to exit; returns its status and its log lines.
    pub fn wait(mut self, limit: std::time::Duration) -> (Option<std::process::ExitStatus>, Vec<String>) {
        self.wait_here(limit)
    }

    /// `wait`, for a process owned by something else (its log lines are read once).
    pub fn wait_here(&mut self, limit: std::time::Duration) -> (Option<std::process::ExitStatus>, Vec<String>) {
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break Some(status);
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let log = self.log.take().map(|l| l.join().unwrap()).unwrap_or_default();
        (status, log)
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads until the server closes the connection or `limit` passes; whether it closed.
pub async fn closed_within<S: tokio::io::AsyncReadExt + Unpin>(stream: &mut S, limit: std::time::Duration) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// A plain HTTP/1.1 GET of `path` on an admin listener; the response body, or empty.
pub async fn http_get_text(address: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut tcp) = TcpStream::connect(address).await else { return String::new() };
    let _ = tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await;
    let mut text = String::new();
    let _ = tcp.read_to_string(&mut text).await;
    text.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default()
}

/// A small deterministic generator for generated test cases (no crate needed for this).
pub struct Lcg(pub u64);

#[allow(dead_code)]
impl Lcg {
    /// A number below `n` (`n` > 0).
    pub fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.next(items.len() as u64) as usize]
    }
}
