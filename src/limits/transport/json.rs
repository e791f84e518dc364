//! JSON over HTTP(S) for the snapshot sources' REST APIs (Firestore, BigQuery): the credentials
//! on every request, one fresh token after a 401, a bounded response, and errors that name the URL.

use super::auth::Auth;
use super::client::{HttpClient, error_chain};
use crate::limits::RegistryError;
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
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Bytes, RegistryError> {
        self.send_bounded(method, url, body, MAX_RESPONSE_BYTES).await
    }

    /// `send`, refusing a response of more than `max_bytes` before it is all in memory.
    pub async fn send_bounded(
        &self,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
        max_bytes: usize,
    ) -> Result<Bytes, RegistryError> {
        // Errors name the URL without its query (page tokens, field masks).
        let shown = url.split_once('?').map_or(url, |(path, _)| path);
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
            let transport = |detail: String| RegistryError::Transport { url: shown.to_string(), detail };
            let request = request.body(Full::new(payload.clone())).map_err(|e| transport(format!("bad URL: {e}")))?;
            let response = self.client.request(request).await.map_err(|e| transport(error_chain(&e)))?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED
                && attempt == 0
                && let Some(auth) = &self.auth
            {
                auth.invalidate().await;
                continue;
            }
            let bytes = Limited::new(response.into_body(), max_bytes).collect().await.map(|b| b.to_bytes()).map_err(
                |e| match e.downcast_ref::<http_body_util::LengthLimitError>() {
                    Some(_) => RegistryError::TooLarge { url: shown.to_string(), max: max_bytes },
                    None => transport(format!("cannot read the response: {e}")),
                },
            )?;
            if !status.is_success() {
                let detail = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
                return Err(RegistryError::Status { url: shown.to_string(), status: status.to_string(), detail });
            }
            return Ok(bytes);
        }
        Err(RegistryError::Status {
            url: shown.to_string(),
            status: StatusCode::UNAUTHORIZED.to_string(),
            detail: "also with a fresh token".into(),
        })
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
