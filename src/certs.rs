//! Development certificates: a throwaway CA and a serving certificate signed by it, with the SANs
//! the API server checks (it ignores the CommonName). Used by `replica-guard certs`, by the
//! example config when its files are missing, and by the tests. Production uses cert-manager,
//! the chart's generated CA or an existing Secret.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot create a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {error}")]
    Write { path: PathBuf, error: std::io::Error },
}

/// PEM text of a CA certificate, and of a serving certificate and its key.
pub struct DevCertificates {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// The names a local webhook is reached by: `url: https://127.0.0.1:PORT/validate` needs the IP SAN.
pub fn local_names() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]
}

/// Creates a CA and a serving certificate for `names` (DNS names or IP addresses), valid from
/// yesterday for one year.
pub fn generate(names: &[String]) -> Result<DevCertificates, CertError> {
    let today = jiff::Zoned::now().date();
    let date = |d: jiff::civil::Date| rcgen::date_time_ymd(d.year().into(), d.month() as u8, d.day() as u8);
    let not_before = date(today.yesterday().unwrap_or(today));
    let not_after = date(today.checked_add(jiff::Span::new().years(1)).unwrap_or(today));

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "replica-guard development CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    (ca.not_before, ca.not_after) = (not_before, not_after);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate()?;
    let mut serving = CertificateParams::new(names.to_vec())?;
    serving.distinguished_name.push(DnType::CommonName, names.first().map_or("replica-guard", |n| n.as_str()));
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    serving.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    (serving.not_before, serving.not_after) = (not_before, not_after);
    let cert = serving.signed_by(&key, &issuer)?;
    Ok(DevCertificates { ca_pem: ca_cert.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

impl DevCertificates {
    /// Writes `ca.crt` beside the certificate, the certificate, and the key (mode 0600).
    pub fn write(&self, cert_file: &Path, key_file: &Path) -> Result<(), CertError> {
        let ca_file = cert_file.with_file_name("ca.crt");
        for (path, text, private) in [
            (ca_file.as_path(), &self.ca_pem, false),
            (cert_file, &self.cert_pem, false),
            (key_file, &self.key_pem, true),
        ] {
            write_file(path, text, private).map_err(|error| CertError::Write { path: path.to_path_buf(), error })?;
        }
        Ok(())
    }
}

fn write_file(path: &Path, text: &str, private: bool) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)?;
    file.write_all(text.as_bytes())
}

/// For `generateDevCertificate: true`: creates local development certificates when either file
/// is missing. Returns whether it created them.
pub fn ensure_dev_certificate(cert_file: &Path, key_file: &Path) -> Result<bool, CertError> {
    if cert_file.exists() && key_file.exists() {
        return Ok(false);
    }
    generate(&local_names())?.write(cert_file, key_file)?;
    Ok(true)
}
