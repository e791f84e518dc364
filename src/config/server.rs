//! The `server:` section: the two listeners, TLS files, and the limits and timeouts every
//! connection and request is held to.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerConfig {
    /// The HTTPS admission listener.
    #[serde(default = "default_address")]
    pub address: SocketAddr,
    /// The plain-HTTP listener for /healthz, /readyz and /metrics.
    #[serde(default = "default_admin_address")]
    pub admin_address: SocketAddr,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// The memory budget for request bodies being read or decided at once; a body that cannot
    /// get its share is answered 503. Default: 8 times `maxBodyBytes`.
    #[serde(default)]
    pub max_buffered_bytes: Option<usize>,
    /// Most connections open at once on each listener.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A kept-alive connection with no request in flight for this long is closed.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_seconds: f64,
    /// How long one request may take, from its first byte to the answer.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_seconds: f64,
    /// How long a client may take to finish the TLS handshake, and then each request's headers;
    /// a client that trickles bytes (slowloris) is disconnected after it.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_seconds: f64,
    /// After SIGTERM, how long to keep serving while not ready, so that endpoints are updated
    /// before the listener closes.
    #[serde(default)]
    pub shutdown_delay_seconds: f64,
    /// After the listener closes, how long in-flight requests may take to finish.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout_seconds: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default = "default_cert_file")]
    pub cert_file: PathBuf,
    #[serde(default = "default_key_file")]
    pub key_file: PathBuf,
    /// Development only: create a CA and a serving certificate for localhost/127.0.0.1 next to
    /// `certFile` when the files are missing. Production configs leave this off.
    #[serde(default)]
    pub generate_dev_certificate: bool,
    /// How often the certificate files are checked for a new version.
    #[serde(default = "default_poll_interval")]
    pub reload_interval_seconds: f64,
    /// Only callers with a client certificate from this CA (the API server, through its
    /// `AdmissionConfiguration` `kubeConfigFile`) may ask the admission port.
    #[serde(default)]
    pub client_auth: Option<ClientAuthConfig>,
}

/// `server.tls.clientAuth`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientAuthConfig {
    /// PEM CA certificate(s) the client certificate must chain to.
    pub ca_file: PathBuf,
    /// When set, the client certificate's common name or one of its DNS names must be one of these.
    #[serde(default)]
    pub names: Vec<String>,
}

fn default_address() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8443))
}
fn default_admin_address() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
}
fn default_max_body_bytes() -> usize {
    3 * 1024 * 1024
}
fn default_max_connections() -> usize {
    256
}
fn default_idle_timeout() -> f64 {
    90.0
}
fn default_request_timeout() -> f64 {
    10.0
}
fn default_header_timeout() -> f64 {
    10.0
}
fn default_shutdown_timeout() -> f64 {
    25.0
}
fn default_cert_file() -> PathBuf {
    PathBuf::from("/etc/replica-guard/tls/tls.crt")
}
fn default_key_file() -> PathBuf {
    PathBuf::from("/etc/replica-guard/tls/tls.key")
}
pub(crate) fn default_poll_interval() -> f64 {
    1.0
}
impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            address: default_address(),
            admin_address: default_admin_address(),
            tls: TlsConfig::default(),
            max_body_bytes: default_max_body_bytes(),
            max_buffered_bytes: None,
            max_connections: default_max_connections(),
            idle_timeout_seconds: default_idle_timeout(),
            request_timeout_seconds: default_request_timeout(),
            header_timeout_seconds: default_header_timeout(),
            shutdown_delay_seconds: 0.0,
            shutdown_timeout_seconds: default_shutdown_timeout(),
        }
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert_file: default_cert_file(),
            key_file: default_key_file(),
            generate_dev_certificate: false,
            reload_interval_seconds: default_poll_interval(),
            client_auth: None,
        }
    }
}

impl ServerConfig {
    /// `maxBufferedBytes`, or its default.
    pub fn buffered_bytes_budget(&self) -> usize {
        self.max_buffered_bytes.unwrap_or(8 * self.max_body_bytes)
    }
}
