//! HTTP routes: `POST /validate` on the admission listener; `/healthz`, `/readyz` and
//! `/metrics` on the admin listener. Input errors are JSON with a 4xx status, never a 5xx.

use super::body::{self, BodyBudget, BodyError};
use super::health::Health;
use crate::metrics::Metrics;
use crate::webhook::Webhook;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct AdmissionState {
    pub webhook: Arc<Webhook>,
    pub metrics: Arc<Metrics>,
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
    pub budget: BodyBudget,
}

/// Bodies above this size are decided on tokio's blocking pool, so that one expensive review
/// (tens of thousands of changed keys) cannot hold the async workers that serve every other
/// request and the health probes. Real AdmissionReviews are a few KiB.
const DECIDE_ON_BLOCKING_POOL_ABOVE: usize = 64 * 1024;

pub fn admission(state: AdmissionState) -> Router {
    Router::new().route("/validate", post(validate)).fallback(not_found).with_state(state)
}

#[derive(Clone)]
pub struct AdminState {
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
}

pub fn admin(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(state)
}

/// A JSON error body: `{"error": "...", "code": 400}`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": message.into(), "code": status.as_u16() });
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint: admission reviews go to POST /validate")
}

async fn validate(State(s): State<AdmissionState>, headers: HeaderMap, body: Body) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        s.metrics.server.bad_request("content-type");
        let got = if content_type.is_empty() { "none".to_string() } else { format!("{content_type:?}") };
        return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("Content-Type must be application/json, got {got}"));
    }
    let limits = body::Bounds { max_bytes: s.max_body_bytes, timeout: s.body_timeout };
    let (bytes, _share) = match body::read(&headers, body, &limits, &s.budget).await {
        Ok(read) => read,
        Err(BodyError::TooLarge) => {
            s.metrics.server.bad_request("too-large");
            let text = format!("body is larger than {} bytes (server.maxBodyBytes)", s.max_body_bytes);
            let mut response = error(StatusCode::PAYLOAD_TOO_LARGE, text);
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
        Err(BodyError::OverBudget) => {
            s.metrics.server.shed("body-budget");
            let text = "too many large requests in flight (server.maxBufferedBytes); retry";
            let mut response = error(StatusCode::SERVICE_UNAVAILABLE, text);
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
        Err(BodyError::Unreadable(e)) => {
            s.metrics.server.bad_request("unreadable");
            return error(StatusCode::BAD_REQUEST, format!("cannot read the request body: {e}"));
        }
        Err(BodyError::TimedOut) => {
            s.metrics.server.bad_request("timeout");
            return error(
                StatusCode::REQUEST_TIMEOUT,
                format!("request body not received within {} s", s.body_timeout.as_secs_f64()),
            );
        }
    };
    let answer = if bytes.len() > DECIDE_ON_BLOCKING_POOL_ABOVE {
        let webhook = s.webhook.clone();
        let runtime = tokio::runtime::Handle::current();
        match tokio::task::spawn_blocking(move || runtime.block_on(webhook.review(&bytes))).await {
            Ok(answer) => answer,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down; retry"),
        }
    } else {
        s.webhook.review(&bytes).await
    };
    match answer {
        Ok(answer) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], answer.into_json()).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn readyz(State(s): State<AdminState>) -> Response {
    let problems = s.health.problems();
    if problems.is_empty() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        let body = serde_json::json!({ "ready": false, "problems": problems });
        (StatusCode::SERVICE_UNAVAILABLE, [(header::CONTENT_TYPE, "application/json")], body.to_string())
            .into_response()
    }
}

async fn metrics(State(s): State<AdminState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s.metrics.render()).into_response()
}
