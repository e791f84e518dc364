//! Shutdown under load, as on SIGTERM: readiness drops, kept-alive clients keep being answered
//! during the delay (until, like the API server after the endpoints update, they stop sending),
//! and a request still in flight when the listener closes is answered. Zero failed requests.

mod common;

use common::{BackgroundLoad, Protocol, REGISTRY, TestServer, fixture, tls_connector};
use rustls::pki_types::ServerName;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn draining_answers_every_request_in_flight() {
    let server =
        TestServer::start_with("mode: enforce", REGISTRY, "  shutdownDelaySeconds: 0.5\n  shutdownTimeoutSeconds: 5")
            .await;
    let (https, admin) = (server.https, server.admin);

    // A request whose body is only half sent when shutdown starts, finished after the listener closed.
    let body = fixture("deployment-redeploy-replicas-3-to-6-and-image.json");
    let tcp = tokio::net::TcpStream::connect(https).await.unwrap();
    let mut slow = tls_connector(&server.ca_pem, &[b"http/1.1"])
        .connect(ServerName::IpAddress(https.ip().into()), tcp)
        .await
        .unwrap();
    let head = format!(
        "POST /validate?timeout=10s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&body[..body.len() / 2]).await.unwrap();
    slow.flush().await.unwrap();

    // Load on kept-alive connections of both protocols.
    let mut clients = vec![];
    for protocol in [Protocol::Http1, Protocol::Http1, Protocol::Http2, Protocol::Http2] {
        clients.push(server.client(protocol).await);
    }
    let load = BackgroundLoad::start(clients, fixture("deployment-create-replicas-3.json"));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let shutdown = tokio::spawn(server.shutdown());
    // Readiness drops at once; requests are still answered during the delay.
    let mut not_ready = false;
    for _ in 0..50 {
        if admin_status(admin).await == Some(503) {
            not_ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(not_ready, "/readyz did not turn 503");
    let during_delay = load.ok();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(load.ok() > during_delay, "requests are answered during the shutdown delay");
    // The endpoints are updated: clients stop sending new requests.
    let (ok, failed) = load.stop().await;

    // Past the delay the listener closes: new connections are refused...
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(tokio::net::TcpStream::connect(https).await.is_err(), "the listener must be closed after the delay");
    // ...while the request in flight is still answered.
    slow.write_all(&body[body.len() / 2..]).await.unwrap();
    slow.flush().await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut response)).await.unwrap().unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("exceeds PED max 4"), "{response}");

    tokio::time::timeout(Duration::from_secs(5), shutdown).await.expect("drain finished").unwrap();
    assert_eq!(failed, 0, "no request may fail during shutdown");
    assert!(ok > 0);
}

async fn admin_status(address: std::net::SocketAddr) -> Option<u16> {
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    stream.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    response.get(9..12)?.parse().ok()
}
