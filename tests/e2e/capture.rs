//! What this API server sends a webhook: a recording webhook (allows everything, keeps every body)
//! and the kubectl commands of `tests/fixtures/README.md`, played in namespace `team-a`.
//!
//! `bash tests/e2e/run.sh --capture-fixtures` writes the bodies into `tests/fixtures/k8s-MINOR/`
//! (the committed set of the newest version came from there). Every run of the suite plays the
//! same commands against its own server and checks that each committed body still has the shape
//! this server sends (kinds, versions, operations, replicas, users), so a server that starts
//! sending something else fails the suite instead of leaving the fixture tests testing the past.

use crate::Scenario;
use crate::cluster::{Cluster, Ran};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub fn all() -> Vec<Scenario> {
    vec![("fixtures: the committed bodies have the shape this API server sends", committed_fixtures_match_this_server)]
}

/// The namespace the fixtures were captured in.
const NAMESPACE: &str = "team-a";

/// A validating webhook on 127.0.0.1 that allows every request and keeps its body.
pub struct Recorder {
    pub url: String,
    pub ca_pem: String,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Recorder {
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let certs = replica_guard::certs::generate(&replica_guard::certs::local_names()).unwrap();
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(certs.cert_pem.as_bytes()).map(Result::unwrap).collect();
        let key = PrivateKeyDer::from_pem_slice(certs.key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("https://{}/validate", listener.local_addr().unwrap());
        let bodies: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let kept = bodies.clone();
        runtime.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, kept) = (acceptor.clone(), kept.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = hyper::service::service_fn(move |request| record(request, kept.clone()));
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
                });
            }
        });
        Self { url, ca_pem: certs.ca_pem, bodies, _runtime: runtime }
    }

    /// How many bodies arrived so far.
    pub fn count(&self) -> usize {
        self.bodies.lock().unwrap().len()
    }

    /// The bodies that arrived after the first `from`.
    pub fn since(&self, from: usize) -> Vec<Vec<u8>> {
        self.bodies.lock().unwrap()[from..].to_vec()
    }
}

async fn record(
    request: hyper::Request<Incoming>,
    kept: Arc<Mutex<Vec<Vec<u8>>>>,
) -> Result<hyper::Response<Full<Bytes>>, hyper::Error> {
    let body = request.into_body().collect().await?.to_bytes().to_vec();
    let uid = serde_json::from_slice::<Value>(&body).ok().and_then(|r| r["request"]["uid"].as_str().map(String::from));
    kept.lock().unwrap().push(body);
    let answer = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "response": {"uid": uid.unwrap_or_default(), "allowed": true}});
    Ok(hyper::Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(answer.to_string())))
        .unwrap())
}

/// The Deployment manifest of the fixtures (2 vCPU / 4 GiB per pod unless `memory` says otherwise).
fn deployment(
    name: &str,
    replicas: Option<u32>,
    image: &str,
    log_level: &str,
    memory: &str,
    annotations: &str,
) -> String {
    let replicas = replicas.map(|r| format!("  replicas: {r}\n")).unwrap_or_default();
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {NAMESPACE}
  labels: {{app: {name}, team: payments}}
  annotations: {{{annotations}}}
spec:
{replicas}  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: api
        image: {image}
        env: [{{name: LOG_LEVEL, value: {log_level}}}]
        ports: [{{containerPort: 8080}}]
        resources: {{requests: {{cpu: "2", memory: {memory}}}, limits: {{cpu: "2", memory: {memory}}}}}
"#
    )
}

fn hpa(name: &str, max: u32) -> String {
    format!(
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {{name: {name}, namespace: {NAMESPACE}}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: {name}}}\n  minReplicas: 2\n  maxReplicas: {max}\n  metrics:\n  - type: Resource\n    resource: {{name: cpu, target: {{type: Utilization, averageUtilization: 70}}}}\n"
    )
}

/// Plays the fixtures' commands in `team-a` against a recorder registered for that namespace;
/// returns each body with its fixture name (a command that sends several UPDATEs, as a
/// server-side apply that migrates field ownership does, names the later ones `-update-N`).
pub fn play(c: &Cluster) -> Vec<(String, Vec<u8>)> {
    c.namespace(NAMESPACE);
    let recorder = Recorder::start();
    let name = "rg-capture";
    let configuration = crate::webhook::configuration(name, NAMESPACE, &recorder.url, &recorder.ca_pem, "Fail");
    c.apply("admin", &configuration, &[]).success();
    // Until the API server calls it (it picks up a new configuration within a second or so).
    let probe = crate::webhook::deployment(NAMESPACE, "rg-probe", 1, "nginx:1");
    let called = (0..100).any(|_| {
        let before = recorder.count();
        c.apply("admin", &probe, &["--dry-run=server"]).success();
        let called = recorder.count() > before;
        if !called {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        called
    });
    assert!(called, "the API server never called the recording webhook");

    let mut captured = vec![];
    let mut step = |fixture: &str, command: &dyn Fn() -> Ran| {
        let before = recorder.count();
        command().success();
        let bodies = recorder.since(before);
        assert!(!bodies.is_empty(), "{fixture}: the command reached no webhook");
        for (i, body) in bodies.into_iter().enumerate() {
            let name = if i == 0 { format!("{fixture}.json") } else { format!("{fixture}-update-{}.json", i + 1) };
            captured.push((name, body));
        }
    };
    let payments = |replicas, image: &str, annotations: &str| {
        deployment("payments-api", Some(replicas), image, "info", "4Gi", annotations)
    };
    let kubectl = |user: &'static str, args: Vec<String>| {
        move || c.kubectl(user, &args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let words = |text: &str| text.split(' ').map(String::from).collect::<Vec<_>>();
    let ns = format!("-n {NAMESPACE}");

    step("deployment-create-replicas-3", &|| {
        c.apply("admin", &payments(3, "registry.example.com/payments/api:1.4.0", ""), &[])
    });
    step("deployment-redeploy-replicas-3-to-6-and-image", &|| {
        c.apply("admin", &payments(6, "registry.example.com/payments/api:1.5.0", ""), &[])
    });
    step("scale-6-to-9", &kubectl("admin", words(&format!("scale deploy/payments-api {ns} --replicas=9"))));
    step(
        "scale-9-to-0-no-replicas-field",
        &kubectl("admin", words(&format!("scale deploy/payments-api {ns} --replicas=0"))),
    );
    step("scale-0-to-3", &kubectl("admin", words(&format!("scale deploy/payments-api {ns} --replicas=3"))));
    step("deployment-rollout-restart", &kubectl("admin", words(&format!("rollout restart deploy/payments-api {ns}"))));
    step("deployment-dry-run-3-to-12", &|| {
        c.apply("admin", &payments(12, "registry.example.com/payments/api:1.5.0", ""), &["--dry-run=server"])
    });
    step("deployment-server-side-apply-3-to-4-and-image", &|| {
        c.apply(
            "admin",
            &payments(4, "registry.example.com/payments/api:1.5.1", ""),
            &["--server-side", "--force-conflicts"],
        )
    });
    step("deployment-patch-4-to-7", &|| {
        c.kubectl(
            "admin",
            &["patch", "deploy/payments-api", "-n", NAMESPACE, "--type=merge", "-p", r#"{"spec":{"replicas":7}}"#],
        )
    });
    step("deployment-override-annotation-by-platform-admin-7-to-8", &|| {
        let manifest = payments(
            8,
            "registry.example.com/payments/api:1.5.1",
            r#"replica-guard.io/override: "INC-4711 black friday""#,
        );
        c.apply("bob", &manifest, &[])
    });
    step("deployment-create-without-replicas-field", &|| {
        c.apply(
            "admin",
            &deployment("orders-api", None, "registry.example.com/orders/api:2.0.0", "info", "4Gi", ""),
            &[],
        )
    });
    step("deployment-env-and-memory-change", &|| {
        c.apply(
            "admin",
            &deployment("orders-api", None, "registry.example.com/orders/api:2.0.0", "debug", "6Gi", ""),
            &[],
        )
    });
    step("scale-by-team-user-1-to-5", &kubectl("alice", words(&format!("scale deploy/orders-api {ns} --replicas=5"))));
    step(
        "hpa-autoscale-create-max-10",
        &kubectl("admin", words(&format!("autoscale deploy/payments-api {ns} --min=2 --max=10 --cpu=70%"))),
    );
    step("hpa-apply-create-max-12", &|| c.apply("admin", &hpa("orders-api", 12), &[]));
    step("hpa-patch-max-12-to-4", &|| {
        c.kubectl(
            "admin",
            &["patch", "hpa/orders-api", "-n", NAMESPACE, "--type=merge", "-p", r#"{"spec":{"maxReplicas":4}}"#],
        )
    });
    c.kubectl("admin", &["delete", "validatingwebhookconfiguration", name]).success();
    captured
}

/// The committed fixture sets, oldest first (`k8s-1.20`, `k8s-1.37`).
pub fn committed_sets() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut sets: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("k8s-")))
        .collect();
    sets.sort_by_key(|p| {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        name.trim_start_matches("k8s-").split('.').map(|n| n.parse::<u32>().unwrap_or(0)).collect::<Vec<_>>()
    });
    sets
}

/// `run.sh --capture-fixtures`: writes what this server sent into `tests/fixtures/k8s-MINOR/`.
pub fn write_set(c: &Cluster) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/k8s-{}", c.tools.minor));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, body) in play(c) {
        let pretty = serde_json::to_string_pretty(&serde_json::from_slice::<Value>(&body).unwrap()).unwrap();
        std::fs::write(dir.join(&name), pretty + "\n").unwrap();
        eprintln!("capture: {}", dir.join(&name).display());
    }
}

/// What a body says that a test of replica-guard relies on: what was asked, by whom, with which
/// replicas. Timestamps, uids and resource versions differ from run to run and are left out.
fn shape(body: &[u8]) -> Value {
    let review: Value = serde_json::from_slice(body).unwrap();
    let r = &review["request"];
    let replicas = |o: &Value| match o["kind"].as_str() {
        Some("HorizontalPodAutoscaler") => o["spec"]["maxReplicas"].clone(),
        _ => o["spec"]["replicas"].clone(),
    };
    json!({
        "apiVersion": review["apiVersion"], "kind": r["kind"], "resource": r["resource"],
        "subResource": r["subResource"], "requestKind": r["requestKind"], "operation": r["operation"],
        "dryRun": r["dryRun"], "user": r["userInfo"]["username"], "name": r["name"], "namespace": r["namespace"],
        "objectApiVersion": r["object"]["apiVersion"], "replicas": replicas(&r["object"]),
        "oldReplicas": replicas(&r["oldObject"]), "fieldManager": r["options"]["fieldManager"],
    })
}

fn committed_fixtures_match_this_server(c: &Cluster) {
    let newest = committed_sets().pop().expect("no tests/fixtures/k8s-* set");
    let played = play(c);
    let mut compared = 0;
    for (name, body) in &played {
        // The server-side apply migration: how many UPDATEs follow differs between versions.
        if name.contains("-update-") {
            continue;
        }
        let committed = std::fs::read(newest.join(name)).unwrap_or_else(|e| panic!("{}/{name}: {e}", newest.display()));
        assert_eq!(shape(&committed), shape(body), "{name}: the committed body differs from what this server sends");
        compared += 1;
    }
    assert_eq!(compared, 16, "every fixture was compared");
    let migration =
        played.iter().filter(|(n, _)| n.starts_with("deployment-server-side-apply-3-to-4-and-image")).count();
    assert!(migration >= 2, "one server-side apply sends several UPDATEs while field ownership migrates: {migration}");
    eprintln!(
        "fixtures: {compared} bodies match {} in shape; the server-side apply sent {migration} UPDATEs",
        newest.display()
    );
}
