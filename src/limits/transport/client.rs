//! The HTTPS client every remote source (the HTTP registry, Firestore, BigQuery) talks through:
//! rustls with the system's CAs plus the source's `caFile`, a connect timeout, HTTP/1.1.

use axum::body::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("registry: no system CA certificates could be loaded ({0}); set the registry's caFile")]
    Roots(String),
    #[error("registry caFile: cannot read {path}: {error}")]
    CaFile { path: std::path::PathBuf, error: std::io::Error },
    #[error("registry caFile: {path} holds no usable PEM certificate")]
    NoCa { path: std::path::PathBuf },
}

/// The system's CA certificates, plus those of `ca_file`.
fn trust_roots(ca_file: Option<&std::path::Path>) -> Result<rustls::RootCertStore, ClientError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (system, _) = roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|error| ClientError::CaFile { path: path.to_path_buf(), error })?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok).collect();
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(ClientError::NoCa { path: path.to_path_buf() });
        }
    } else if system == 0 {
        return Err(ClientError::Roots(native.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")));
    }
    Ok(roots)
}

/// An HTTPS (or plain HTTP) client trusting the system's CAs and `ca_file`'s; every remote source
/// makes its own with this.
pub fn https_client(ca_file: Option<&std::path::Path>, connect_timeout: Duration) -> Result<HttpClient, ClientError> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.enforce_http(false);
    http.set_nodelay(true);
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(trust_roots(ca_file)?)
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(60)).build(https))
}

/// An HTTP client error with its causes: hyper's own text is "client error (Connect)", the
/// reason (connection refused, no such host, a certificate problem) is in the source chain.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
