//! Who may ask (`server.tls.clientAuth`): with a client CA configured, only a caller presenting a
//! certificate from it — and naming an allowed caller — gets a decision. A tenant's pod posting a
//! forged AdmissionReview without one (the `curl -k` of the issue), with one from another CA, or
//! with one the CA signed for someone else, gets no decision, and leaves no decision record and no
//! per-workload metric behind: only `replica_guard_unauthenticated_connections_total{reason}`.

mod common;

use common::pki::Pki;
use common::{Client, Protocol, TestServer, fixture};

/// The webhook, accepting only `kube-apiserver` certificates of `api_server_ca`.
async fn webhook(api_server_ca: &Pki) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("client-ca.crt");
    std::fs::write(&ca_file, &api_server_ca.ca_pem).unwrap();
    let tls = format!(", clientAuth: {{caFile: '{}', names: [kube-apiserver]}}", ca_file.display());
    let registry = "  file: {path: limits.yaml}";
    let server = TestServer::start_tls("mode: enforce", common::REGISTRY, "", registry, None, &tls).await;
    // The CA file is read at start.
    drop(dir);
    server
}

/// A client certificate and its key, PEM.
type Identity<'a> = Option<(&'a str, &'a str)>;

async fn review_as(server: &TestServer, identity: Identity<'_>) -> Result<serde_json::Value, String> {
    let mut client = Client::try_connect_as(server.https, &server.ca_pem, Protocol::Http1, identity).await?;
    let (status, body) = client
        .post("/validate", "application/json", fixture("deployment-patch-4-to-7.json"))
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    if status != 200 {
        return Err(format!("HTTP {status}"));
    }
    Ok(body)
}

#[tokio::test]
async fn only_the_api_server_gets_a_decision() {
    let api_server_ca = Pki::new("the API server's webhook client CA");
    let server = webhook(&api_server_ca).await;
    let (api_cert, api_key) = api_server_ca.sign(&[], Some(("kube-apiserver", "")));
    let (tenant_cert, tenant_key) = api_server_ca.sign(&[], Some(("tenant", "")));
    let elsewhere = Pki::new("a CA of the tenant's own");
    let (forged_cert, forged_key) = elsewhere.sign(&[], Some(("kube-apiserver", "")));

    // The API server: a decision, as always.
    let answer = review_as(&server, Some((&api_cert, &api_key))).await.expect("the API server is answered");
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    assert_eq!(server.audit_records().len(), 1, "its decision is recorded");

    // Everyone else: no decision.
    let callers: [(&str, Identity, &str); 3] = [
        ("no certificate (curl -k)", None, "no-certificate"),
        ("a certificate from another CA", Some((&forged_cert, &forged_key)), "untrusted-certificate"),
        ("the CA's certificate for another name", Some((&tenant_cert, &tenant_key)), "name-not-allowed"),
    ];
    for (who, identity, reason) in callers {
        let answer = review_as(&server, identity).await;
        assert!(answer.is_err(), "{who}: got a decision: {answer:?}");
        let counted = format!("replica_guard_unauthenticated_connections_total{{reason=\"{reason}\"}}");
        assert_eq!(server.metric(&counted).await, 1.0, "{who}: counted as {reason}");
    }
    assert_eq!(server.audit_records().len(), 1, "no decision record for any of them");
    let metrics = server.admin_get("/metrics").await.1;
    let decided: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("replica_guard_admission_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(decided, 1.0, "one admission request counted, the API server's");
    assert!(
        metrics.lines().filter(|l| l.starts_with("replica_guard_field_changes_total{")).all(|l| l.ends_with(" 1")),
        "no per-workload counter moved for the forged reviews"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_ca_that_cannot_be_read_stops_the_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here.crt");
    std::fs::write(dir.path().join("not-a-ca.crt"), "hello").unwrap();
    for (file, said) in
        [(missing.clone(), "cannot read"), (dir.path().join("not-a-ca.crt"), "holds no PEM certificate")]
    {
        let config = format!(
            "server: {{address: '127.0.0.1:0', adminAddress: '127.0.0.1:0', tls: {{generateDevCertificate: true, certFile: '{0}/tls.crt', keyFile: '{0}/tls.key', clientAuth: {{caFile: '{1}'}}}}}}\nregistry: {{file: {{path: '{0}/limits.yaml'}}}}\n",
            dir.path().display(),
            file.display()
        );
        std::fs::write(dir.path().join("limits.yaml"), common::REGISTRY).unwrap();
        std::fs::write(dir.path().join("config.yaml"), config).unwrap();
        let config = replica_guard::config::Config::load(&dir.path().join("config.yaml")).unwrap();
        let started = replica_guard::run::serve::start(&config, replica_guard::json_lines::JsonLines::stdout()).await;
        let error = started.err().expect("the start fails").to_string();
        assert!(error.contains("server.tls.clientAuth.caFile") && error.contains(said), "{error}");
    }
}
