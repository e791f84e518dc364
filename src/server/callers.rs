//! Who may ask the admission port (`server.tls.clientAuth`): only a client presenting a
//! certificate signed by the configured CA — the API server, through its `AdmissionConfiguration`
//! `kubeConfigFile` — and, when `names` is set, naming one of them (its subject's common name or a
//! DNS name). Anything else is refused before a byte of HTTP is read: no decision, no Event, no
//! decision record, no per-workload metric; only `replica_guard_unauthenticated_connections_total
//! {reason}` counts it (a few fixed reasons, never a label per client).

use crate::metrics::Metrics;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum CallersError {
    #[error("server.tls.clientAuth.caFile: cannot read {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("server.tls.clientAuth.caFile: {path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("server.tls.clientAuth.caFile: {path}: {detail}")]
    Unusable { path: PathBuf, detail: String },
}

/// The callers the admission port accepts.
pub struct Callers {
    verifier: Arc<dyn ClientCertVerifier>,
    /// Names one of which the client certificate must carry (empty: any the CA signed).
    names: Vec<String>,
    metrics: Arc<Metrics>,
}

impl Callers {
    /// The CA of `ca_file` (PEM, one or more certificates) and the allowed `names`.
    pub fn load(ca_file: &Path, names: &[String], metrics: Arc<Metrics>) -> Result<Self, CallersError> {
        let pem = std::fs::read(ca_file).map_err(|error| CallersError::Read { path: ca_file.to_path_buf(), error })?;
        let mut roots = rustls::RootCertStore::empty();
        let certificates: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok).collect();
        let (added, _) = roots.add_parsable_certificates(certificates);
        if added == 0 {
            return Err(CallersError::NoCertificate { path: ca_file.to_path_buf() });
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| CallersError::Unusable { path: ca_file.to_path_buf(), detail: e.to_string() })?;
        Ok(Self { verifier, names: names.to_vec(), metrics })
    }

    /// What the TLS handshake checks: a certificate, signed by the CA.
    pub fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        self.verifier.clone()
    }

    /// After the handshake: whether the certificate names an allowed caller; counted when not.
    pub fn admits(&self, certificates: Option<&[CertificateDer<'_>]>) -> bool {
        if self.names.is_empty() {
            return true;
        }
        let named = certificates.and_then(|c| c.first()).is_some_and(|leaf| {
            certificate_names(leaf).iter().any(|name| self.names.iter().any(|allowed| allowed == name))
        });
        if !named {
            self.refused("name-not-allowed");
        }
        named
    }

    /// A handshake that failed: counted when it failed for want of a good client certificate
    /// (`no-certificate`, `untrusted-certificate`); other failures (a scanner, a client that
    /// hung up) are not callers.
    pub fn handshake_failed(&self, error: &std::io::Error) {
        let reason = match error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
            Some(rustls::Error::NoCertificatesPresented) => "no-certificate",
            Some(rustls::Error::InvalidCertificate(_)) => "untrusted-certificate",
            _ => return,
        };
        self.refused(reason);
    }

    fn refused(&self, reason: &'static str) {
        self.metrics.server.unauthenticated(reason);
        tracing::debug!(reason, "an unauthenticated caller was refused");
    }
}

/// The subject's common name and the DNS names of a certificate.
fn certificate_names(certificate: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let Ok((_, parsed)) = X509Certificate::from_der(certificate.as_ref()) else { return vec![] };
    let mut names: Vec<String> =
        parsed.subject().iter_common_name().filter_map(|cn| cn.as_str().ok()).map(str::to_string).collect();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                names.push((*dns).to_string());
            }
        }
    }
    names
}
