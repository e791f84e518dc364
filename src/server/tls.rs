//! The serving certificate. New handshakes ask `CertStore` for the current certificate, so a
//! rotated Secret takes effect without a restart and without touching open connections.

use crate::file_change::ChangeDetector;
use crate::metrics::Metrics;
use arc_swap::ArcSwap;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, version};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {error} (set server.tls.certFile/keyFile, or mount the TLS Secret there)")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key: {detail}")]
    NoKey { path: PathBuf, detail: String },
    #[error("the key in {path} cannot sign: {detail}")]
    UnusableKey { path: PathBuf, detail: String },
    #[error("the certificate in {cert} does not belong to the key in {key}")]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("development certificate: {0}")]
    DevCertificate(#[from] crate::certs::CertError),
}

/// Loads the serving certificate of `config` (creating a development one first when it says
/// so) and returns its store with the task that reloads it when the files change.
pub fn load(
    config: &crate::config::TlsConfig,
    metrics: &Arc<Metrics>,
) -> Result<(Arc<CertStore>, impl Future<Output = ()> + Send + 'static), TlsError> {
    if config.generate_dev_certificate && crate::certs::ensure_dev_certificate(&config.cert_file, &config.key_file)? {
        tracing::warn!(
            cert = %config.cert_file.display(),
            "CREATED A SELF-SIGNED DEVELOPMENT CERTIFICATE (generateDevCertificate: true); never use this in production"
        );
    }
    // Made before the first read, so a change between that read and the first poll is seen.
    let detector = ChangeDetector::new([config.cert_file.as_path(), config.key_file.as_path()]);
    let certified = load_certified_key(&config.cert_file, &config.key_file)?;
    publish_expiry(&certified, metrics);
    let store = Arc::new(CertStore::new(certified));
    let reload = reload_on_change(
        store.clone(),
        detector,
        config.cert_file.clone(),
        config.key_file.clone(),
        crate::config::seconds(config.reload_interval_seconds),
        metrics.clone(),
    );
    Ok((store, reload))
}

/// Reads a PEM certificate chain and private key and checks that they belong together.
pub fn load_certified_key(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, TlsError> {
    let read = |p: &Path| std::fs::read(p).map_err(|error| TlsError::Read { path: p.to_path_buf(), error });
    let cert_pem = read(cert_file)?;
    let key_pem = read(key_file)?;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&cert_pem).filter_map(Result::ok).collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert_file.to_path_buf() });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| TlsError::NoKey { path: key_file.to_path_buf(), detail: e.to_string() })?;
    let signing_key = any_supported_type(&key)
        .map_err(|e| TlsError::UnusableKey { path: key_file.to_path_buf(), detail: e.to_string() })?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified
        .keys_match()
        .map_err(|_| TlsError::Mismatch { cert: cert_file.to_path_buf(), key: key_file.to_path_buf() })?;
    Ok(certified)
}

/// When the leaf certificate stops being valid, as Unix seconds (for the expiry metric).
pub fn not_after(key: &CertifiedKey) -> Option<i64> {
    let leaf = key.cert.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// The current serving certificate, swapped whole on rotation.
#[derive(Debug)]
pub struct CertStore {
    current: ArcSwap<CertifiedKey>,
}

impl CertStore {
    pub fn new(key: CertifiedKey) -> Self {
        Self { current: ArcSwap::from_pointee(key) }
    }

    pub fn replace(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }

    /// Whether the certificate being served has expired (readiness reports it).
    pub fn expired(&self) -> bool {
        not_after(&self.current.load()).is_some_and(|t| t <= jiff::Timestamp::now().as_second())
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// TLS 1.2 and 1.3 only; ALPN offers HTTP/2 and HTTP/1.1 (the API server uses HTTP/1.1). With
/// `clients`, a client certificate that it verifies is required (`server.tls.clientAuth`).
pub fn server_config(
    store: Arc<CertStore>,
    clients: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3");
    let mut config = match clients {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    }
    .with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Reloads the certificate when either file changes (including a Secret volume's symlink swap).
/// A half-written or mismatched pair is logged and retried on the next change; the old
/// certificate keeps serving meanwhile.
/// `detector` must have been made before the files were first read, so that a change landing
/// between that read and the first poll is not missed.
pub async fn reload_on_change(
    store: Arc<CertStore>,
    mut detector: ChangeDetector<2>,
    cert_file: PathBuf,
    key_file: PathBuf,
    interval: Duration,
    metrics: Arc<Metrics>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        if !detector.changed([cert_file.as_path(), key_file.as_path()]) {
            continue;
        }
        match load_certified_key(&cert_file, &key_file) {
            Ok(key) => {
                publish_expiry(&key, &metrics);
                store.replace(key);
                tracing::info!(cert = %cert_file.display(), "serving certificate reloaded");
            }
            Err(e) => tracing::error!(error = %e, "serving certificate not reloaded; the previous one stays in use"),
        }
    }
}

/// Sets `replica_guard_tls_cert_expiry_timestamp_seconds` from the serving certificate.
pub fn publish_expiry(key: &CertifiedKey, metrics: &Metrics) {
    match not_after(key) {
        Some(expiry) => metrics.server.tls_cert_expires_at(expiry),
        None => tracing::warn!("cannot read the serving certificate's expiry; the expiry metric is not set"),
    }
}
