//! HTTP routes: `POST /validate` on the admission listener; `/healthz`, `/readyz` and
//! `/metrics` on the admin listener. Input errors are JSON with a 4xx status, never a 5xx.

use super::Health;
use crate::metrics::Metrics;
use crate::webhook::Webhook;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct AdmissionState {
    pub webhook: Arc<Webhook>,
    pub metrics: Arc<Metrics>,
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
}

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
        s.metrics.bad_requests.with_label_values(&["content-type"]).inc();
        let got = if content_type.is_empty() { "none".to_string() } else { format!("{content_type:?}") };
        return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("Content-Type must be application/json, got {got}"));
    }
    let bytes = match tokio::time::timeout(s.body_timeout, Limited::new(body, s.max_body_bytes).collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => {
            s.metrics.bad_requests.with_label_values(&["too-large"]).inc();
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body is larger than {} bytes (server.maxBodyBytes)", s.max_body_bytes),
            );
        }
        Ok(Err(e)) => {
            s.metrics.bad_requests.with_label_values(&["unreadable"]).inc();
            return error(StatusCode::BAD_REQUEST, format!("cannot read the request body: {e}"));
        }
        Err(_) => {
            s.metrics.bad_requests.with_label_values(&["timeout"]).inc();
            return error(
                StatusCode::REQUEST_TIMEOUT,
                format!("request body not received within {} s", s.body_timeout.as_secs_f64()),
            );
        }
    };
    match s.webhook.review(&bytes).await {
        Ok(json) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], json).into_response(),
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
