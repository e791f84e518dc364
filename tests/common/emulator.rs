//! Firestore's own emulator (Debian package `google-cloud-cli-firestore-emulator`), started for a
//! test and killed with it: the registry the Firestore sources are tested against, on 127.0.0.1
//! (`registry_firestore_emulator.rs`) or inside the real node's network namespace, where the
//! chart's pods reach it (`tests/e2e/freshness.rs`). REST and gRPC (`Listen`) share its port.

use super::process::Process;
use serde_json::{Value, json};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Where Debian's package puts the launcher (a shell script around the jar); `FIRESTORE_EMULATOR`
/// may name another.
const LAUNCHER: &str = "/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud_firestore_emulator";

pub struct Emulator {
    pub address: SocketAddr,
    /// Killed when dropped (and with the thread that started it).
    process: Process,
}

/// The emulator's jar, or what to install.
pub fn jar() -> Result<PathBuf, String> {
    let launcher = PathBuf::from(std::env::var("FIRESTORE_EMULATOR").unwrap_or_else(|_| LAUNCHER.to_string()));
    let jar = launcher.with_file_name("cloud-firestore-emulator.jar");
    if jar.exists() {
        Ok(jar)
    } else {
        Err(format!(
            "Firestore's emulator is missing ({} not found): install Debian's google-cloud-cli-firestore-emulator (and a Java runtime, default-jre-headless), or set FIRESTORE_EMULATOR to its launcher",
            jar.display()
        ))
    }
}

impl Emulator {
    /// Starts the emulator on `ip:port` — inside the network namespace `netns` when given — with
    /// its output in `log`, and waits (at most 90 s) until it listens. It is killed when dropped,
    /// or with the thread that started it (PDEATHSIG).
    pub fn start(ip: IpAddr, port: u16, netns: Option<&str>, log: &Path) -> Result<Self, String> {
        let jar = jar()?;
        let mut command = match netns {
            Some(netns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{netns}")).args(["--", "java"]);
                c
            }
            None => Command::new("java"),
        };
        command
            .args(["-Duser.language=en", "-cp"])
            .arg(&jar)
            .args(["com.google.cloud.datastore.emulator.firestore.CloudFirestore", "start"])
            .arg(format!("--host={ip}"))
            .arg(format!("--port={port}"));
        let process = Process::try_spawn("Firestore's emulator", &mut command, log)
            .map_err(|e| format!("{e}; it needs a Java runtime (default-jre-headless)"))?;
        let mut emulator = Self { address: SocketAddr::new(ip, port), process };
        let deadline = Instant::now() + Duration::from_secs(90);
        while std::net::TcpStream::connect_timeout(&emulator.address, Duration::from_secs(1)).is_err() {
            if !emulator.process.is_running() {
                return Err(format!(
                    "Firestore's emulator exited before it listened on {ip}:{port}; its log: {}",
                    log.display()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!("Firestore's emulator did not listen on {ip}:{port} within 90 s"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(emulator)
    }

    /// The REST API's base URL, as `registry.firestore.url` takes it.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.address)
    }

    /// The onboarding pipeline's write: document `id` of collection `collection` in `project`,
    /// with `fields` as Firestore typed values (created, or replaced whole); the HTTP status.
    pub fn put(&self, project: &str, collection: &str, id: &str, fields: &Value) -> u16 {
        let path = format!("/v1/projects/{project}/databases/(default)/documents/{collection}/{id}");
        request(self.address, "PATCH", &path, Some(&json!({ "fields": fields })))
    }

    pub fn delete(&self, project: &str, collection: &str, id: &str) -> u16 {
        let path = format!("/v1/projects/{project}/databases/(default)/documents/{collection}/{id}");
        request(self.address, "DELETE", &path, None)
    }
}

/// A PED entry's fields as Firestore typed values.
pub fn entry(max: i64, owner: Option<&str>) -> Value {
    let mut fields = json!({"maxReplicas": {"integerValue": max.to_string()}});
    if let Some(owner) = owner {
        fields["owner"] = json!({"stringValue": owner});
    }
    fields
}

/// One HTTP/1.1 request to the emulator (no authentication: the emulator takes any); its status,
/// 0 when there was no answer within 10 s.
pub fn request(address: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> u16 {
    use std::io::{Read, Write};
    let Ok(mut tcp) = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(5)) else { return 0 };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
    let body = body.map(Value::to_string).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: emulator\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if tcp.write_all(head.as_bytes()).and_then(|()| tcp.write_all(body.as_bytes())).is_err() {
        return 0;
    }
    // The status line is all a test needs (the emulator may keep the connection open).
    let mut answer = [0u8; 64];
    let mut read = 0;
    while read < 12 {
        match tcp.read(&mut answer[read..]) {
            Ok(n) if n > 0 => read += n,
            _ => break,
        }
    }
    std::str::from_utf8(&answer[..read]).ok().and_then(|a| a.get(9..12)).and_then(|s| s.parse().ok()).unwrap_or(0)
}
