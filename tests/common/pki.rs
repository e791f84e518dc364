//! A throwaway CA and the certificates it signs: servers (the API server, the webhook) and
//! clients (users, the API server calling a webhook).

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};

/// A CA and what it signs.
pub struct Pki {
    pub ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, name);
        let cert = ca.self_signed(&key).unwrap();
        Self { ca_pem: cert.pem(), issuer: Issuer::new(ca, key) }
    }

    /// (certificate PEM, key PEM) for a server with `names`, or a client `user` in `group`.
    pub fn sign(&self, names: &[&str], user: Option<(&str, &str)>) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        match user {
            Some((user, group)) => {
                params.distinguished_name.push(DnType::CommonName, user);
                if !group.is_empty() {
                    params.distinguished_name.push(DnType::OrganizationName, group);
                }
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            }
            None => {
                params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("server"));
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            }
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}
