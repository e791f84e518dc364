//! Credentials for a remote registry: a bearer token from a file (re-read when it changes, as
//! projected service-account tokens are rotated), or a GCE/GKE metadata-server token (Workload
//! Identity), cached until a minute before it expires.

use super::client::HttpClient;
use crate::file_change::Fingerprint;
use crate::limits::RegistryError;
use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A metadata token is renewed this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(60);

pub enum Auth {
    TokenFile { path: PathBuf, cached: std::sync::Mutex<Option<(Fingerprint, String)>> },
    GceMetadata { url: String, cached: tokio::sync::Mutex<Option<(String, Instant)>> },
}

impl Auth {
    pub fn token_file(path: PathBuf) -> Self {
        Auth::TokenFile { path, cached: std::sync::Mutex::new(None) }
    }

    pub fn gce_metadata(url: String) -> Self {
        Auth::GceMetadata { url, cached: tokio::sync::Mutex::new(None) }
    }

    /// The configured credentials, if any (`validate` refuses both at once).
    pub fn from_config(auth: &crate::config::HttpAuth) -> Option<Self> {
        match (&auth.bearer_token_file, &auth.gce_metadata) {
            (Some(path), _) => Some(Auth::token_file(path.clone())),
            (None, Some(gce)) => Some(Auth::gce_metadata(gce.url.clone())),
            (None, None) => None,
        }
    }

    /// Forgets the cached token: the server refused it (401), so the next `header` fetches or
    /// reads a fresh one.
    pub async fn invalidate(&self) {
        match self {
            Auth::TokenFile { cached, .. } => *cached.lock().unwrap_or_else(|p| p.into_inner()) = None,
            Auth::GceMetadata { cached, .. } => *cached.lock().await = None,
        }
    }

    /// The value of the Authorization header.
    pub async fn header(&self, client: &HttpClient) -> Result<String, RegistryError> {
        let token = match self {
            Auth::TokenFile { path, cached } => {
                let unreadable = |e: std::io::Error| {
                    RegistryError::Auth(format!("cannot read the token file {}: {e}", path.display()))
                };
                let fingerprint = Fingerprint::of(path).map_err(unreadable)?;
                let mut cached = cached.lock().unwrap_or_else(|p| p.into_inner());
                match &*cached {
                    Some((seen, token)) if *seen == fingerprint => token.clone(),
                    _ => {
                        let token = std::fs::read_to_string(path).map_err(unreadable)?.trim().to_string();
                        *cached = Some((fingerprint, token.clone()));
                        token
                    }
                }
            }
            Auth::GceMetadata { url, cached } => {
                let mut cached = cached.lock().await;
                match &*cached {
                    Some((token, expires)) if *expires > Instant::now() + RENEW_BEFORE => token.clone(),
                    _ => {
                        let (token, lifetime) = fetch_metadata_token(client, url).await.map_err(RegistryError::Auth)?;
                        *cached = Some((token.clone(), Instant::now() + lifetime));
                        token
                    }
                }
            }
        };
        Ok(format!("Bearer {token}"))
    }
}

#[derive(serde::Deserialize)]
struct MetadataToken {
    access_token: String,
    expires_in: u64,
}

async fn fetch_metadata_token(client: &HttpClient, url: &str) -> Result<(String, Duration), String> {
    let request = hyper::Request::get(url)
        .header("Metadata-Flavor", "Google")
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("bad metadata URL {url}: {e}"))?;
    let response = client.request(request).await.map_err(|e| format!("metadata server {url}: {e}"))?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(|e| format!("metadata server {url}: {e}"))?.to_bytes();
    if !status.is_success() {
        return Err(format!("metadata server {url} answered HTTP {status}"));
    }
    let token: MetadataToken =
        serde_json::from_slice(&body).map_err(|e| format!("metadata server {url} sent no token: {e}"))?;
    Ok((token.access_token, Duration::from_secs(token.expires_in)))
}
