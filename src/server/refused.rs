//! Why a request to a listener got no decision, and the one place where each reason becomes its
//! response — status, JSON body `{"error": "...", "code": N}`, headers — and its metric. Input
//! errors are 4xx; the shared body budget is 503 with `Retry-After`; never a 500.

use super::body::BodyError;
use crate::admission::ReviewError;
use crate::metrics::Metrics;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

pub enum Refused {
    /// Not `POST /validate` (or an admin path that does not exist).
    NotFound,
    /// Not JSON; what the request said it was (`None`: nothing).
    ContentType(Option<String>),
    /// The body could not be had within the bounds (`server.maxBodyBytes`, the request timeout,
    /// the buffered-bytes budget).
    Body { error: BodyError, max_bytes: usize, timeout: Duration },
    /// A body that is not a usable AdmissionReview (counted where it was found: `webhook`).
    Review(ReviewError),
    /// The process is stopping and the review's worker was cancelled.
    ShuttingDown,
}

impl Refused {
    /// Counts the refusal on its metric; returns it, to be answered.
    pub fn counted(self, metrics: &Metrics) -> Self {
        match &self {
            Refused::ContentType(_) => metrics.server.bad_request("content-type"),
            Refused::Body { error: BodyError::TooLarge, .. } => metrics.server.bad_request("too-large"),
            Refused::Body { error: BodyError::OverBudget, .. } => metrics.server.shed("body-budget"),
            Refused::Body { error: BodyError::Unreadable(_), .. } => metrics.server.bad_request("unreadable"),
            Refused::Body { error: BodyError::TimedOut, .. } => metrics.server.bad_request("timeout"),
            Refused::NotFound | Refused::Review(_) | Refused::ShuttingDown => {}
        }
        self
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let (status, message, close, retry) = match self {
            Refused::NotFound => (
                StatusCode::NOT_FOUND,
                "no such endpoint: admission reviews go to POST /validate".to_string(),
                false,
                false,
            ),
            Refused::ContentType(got) => {
                let got = got.map_or_else(|| "none".to_string(), |t| format!("{t:?}"));
                (
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!("Content-Type must be application/json, got {got}"),
                    false,
                    false,
                )
            }
            Refused::Body { error, max_bytes, timeout } => match error {
                BodyError::TooLarge => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("body is larger than {max_bytes} bytes (server.maxBodyBytes)"),
                    true,
                    false,
                ),
                BodyError::OverBudget => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many large requests in flight (server.maxBufferedBytes); retry".to_string(),
                    true,
                    true,
                ),
                BodyError::Unreadable(e) => {
                    (StatusCode::BAD_REQUEST, format!("cannot read the request body: {e}"), false, false)
                }
                BodyError::TimedOut => (
                    StatusCode::REQUEST_TIMEOUT,
                    format!("request body not received within {} s", timeout.as_secs_f64()),
                    false,
                    false,
                ),
            },
            Refused::Review(e) => (StatusCode::BAD_REQUEST, e.to_string(), false, false),
            Refused::ShuttingDown => {
                (StatusCode::SERVICE_UNAVAILABLE, "shutting down; retry".to_string(), false, false)
            }
        };
        let body = serde_json::json!({ "error": message, "code": status.as_u16() });
        let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
        if close {
            // The rest of an oversized or unaffordable body is not read: the connection cannot be reused.
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if retry {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
