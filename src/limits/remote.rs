//! JSON over HTTP(S) for the snapshot sources' REST APIs (Firestore, BigQuery): the credentials
//! on every request, one fresh token after a 401, a bounded response, and errors that name the URL.

use super::http_auth::Auth;
use super::http_source::HttpClient;
use axum::body::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, StatusCode};

/// One response is at most this large (a page of a listing or of query results).
const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

pub struct RemoteJson {
    pub client: HttpClient,
    pub auth: Option<Auth>,
}

impl RemoteJson {
    /// Sends a request (a JSON body for POST) and returns the response body; a 401 refreshes the
    /// token once.
    pub async fn send(&self, method: Method, url: &str, body: Option<&serde_json::Value>) -> Result<Bytes, String> {
        let payload = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        for attempt in 0..2 {
            let mut request =
                hyper::Request::builder().method(method.clone()).uri(url).header("Accept", "application/json");
            if body.is_some() {
                request = request.header("Content-Type", "application/json");
            }
            if let Some(auth) = &self.auth {
                request = request.header("Authorization", auth.header(&self.client).await?);
            }
            let request = request.body(Full::new(payload.clone())).map_err(|e| format!("bad URL {url}: {e}"))?;
            let response = self.client.request(request).await.map_err(|e| format!("{url}: {e}"))?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED
                && attempt == 0
                && let Some(auth) = &self.auth
            {
                auth.invalidate().await;
                continue;
            }
            let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .map_err(|e| format!("{url}: cannot read the response: {e}"))?;
            if !status.is_success() {
                let detail = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
                return Err(format!("{url} answered HTTP {status}: {detail}"));
            }
            return Ok(bytes);
        }
        Err(format!("{url} answered HTTP 401 Unauthorized, also with a fresh token"))
    }
}

/// A value in a query string: everything but unreserved characters percent-encoded.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
