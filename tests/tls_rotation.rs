//! Certificate rotation under load: clients keep sending reviews over kept-alive HTTP/1.1 and
//! HTTP/2 connections while the certificate is replaced the way kubelet updates a Secret volume
//! (an atomic `..data` symlink swap). No request fails, and new handshakes get the new certificate.

mod common;

use common::{BackgroundLoad, Client, Protocol, REGISTRY, TestServer, fixture};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

/// Publishes a certificate version into a kubelet-style Secret volume at `volume`.
fn publish(volume: &Path, version: &str, certs: &replica_guard::certs::DevCertificates) {
    let dir = volume.join(version);
    certs.write(&dir.join("tls.crt"), &dir.join("tls.key")).unwrap();
    let tmp = volume.join("..data_tmp");
    symlink(version, &tmp).unwrap();
    std::fs::rename(&tmp, volume.join("..data")).unwrap();
}

/// Points `link` at `target` atomically.
fn relink(target: &Path, link: &Path) {
    let tmp = link.with_extension("tmp");
    symlink(target, &tmp).unwrap();
    std::fs::rename(&tmp, link).unwrap();
}

fn der_of(pem: &str) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap().to_vec()
}

#[tokio::test]
async fn symlink_swap_rotates_the_certificate_without_failing_a_request() {
    let server = TestServer::start("mode: enforce", REGISTRY).await;
    let volume = server.dir.path().join("secret");
    std::fs::create_dir(&volume).unwrap();
    let first = replica_guard::certs::generate(&replica_guard::certs::local_names()).unwrap();
    let second = replica_guard::certs::generate(&replica_guard::certs::local_names()).unwrap();
    publish(&volume, "..v1", &first);
    symlink("..data/tls.crt", volume.join("tls.crt")).unwrap();
    symlink("..data/tls.key", volume.join("tls.key")).unwrap();
    // Move the server's configured files onto the volume (as the chart mounts the Secret).
    relink(&volume.join("tls.crt"), &server.dir.path().join("tls.crt"));
    relink(&volume.join("tls.key"), &server.dir.path().join("tls.key"));
    let trusted = format!("{}{}{}", server.ca_pem, first.ca_pem, second.ca_pem);

    // Wait until new handshakes present the first volume certificate.
    let wait_for = |wanted: Vec<u8>| {
        let trusted = trusted.clone();
        let address = server.https;
        async move {
            for _ in 0..100 {
                if Client::connect(address, &trusted, Protocol::Http1).await.server_cert == wanted {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        }
    };
    assert!(wait_for(der_of(&first.cert_pem)).await, "the volume certificate was not picked up");

    // Load: kept-alive connections of both protocols, sending until told to stop.
    let mut clients = vec![];
    for protocol in [Protocol::Http1, Protocol::Http1, Protocol::Http2, Protocol::Http2] {
        clients.push(Client::connect(server.https, &trusted, protocol).await);
    }
    let load = BackgroundLoad::start(clients, fixture("deployment-redeploy-replicas-3-to-6-and-image.json"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before_swap = load.ok();
    publish(&volume, "..v2", &second);
    assert!(wait_for(der_of(&second.cert_pem)).await, "new handshakes never got the rotated certificate");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (ok, failed) = load.stop().await;
    assert_eq!(failed, 0, "requests failed during rotation");
    assert!(before_swap > 0 && ok > before_swap, "the kept-alive connections kept working");

    // The expiry metric follows the rotated certificate (a year from now).
    let expiry = server.metric("replica_guard_tls_cert_expiry_timestamp_seconds").await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(expiry > now + 300.0 * 86400.0, "expiry {expiry} vs now {now}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_broken_rotation_keeps_the_old_certificate() {
    let server = TestServer::start("mode: enforce", REGISTRY).await;
    let before = Client::connect(server.https, &server.ca_pem, Protocol::Http1).await.server_cert;
    // A half-written pair: a new certificate with the old key.
    let other = replica_guard::certs::generate(&replica_guard::certs::local_names()).unwrap();
    std::fs::write(server.dir.path().join("tls.crt"), &other.cert_pem).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut client = Client::connect(server.https, &server.ca_pem, Protocol::Http1).await;
    assert_eq!(client.server_cert, before, "a mismatched pair must not replace a working certificate");
    assert_eq!(client.review(fixture("deployment-create-replicas-3.json")).await["allowed"], true);
    server.shutdown().await;
}
