//! HTTP routes: `POST /validate` on the admission listener; `/healthz`, `/readyz` and
//! `/metrics` on the admin listener. What gets no decision is a `Refused` (`refused.rs`): JSON
//! with a 4xx status (a 503 only for the shared body budget), never a 500.

use super::body::{self, BodyBudget};
use super::health::Health;
use super::refused::Refused;
use crate::metrics::Metrics;
use crate::webhook::Webhook;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
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

async fn not_found() -> Refused {
    Refused::NotFound
}

async fn validate(State(s): State<AdmissionState>, headers: HeaderMap, body: Body) -> Result<Response, Refused> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        let got = (!content_type.is_empty()).then(|| content_type.to_string());
        return Err(Refused::ContentType(got).counted(&s.metrics));
    }
    let limits = body::Bounds { max_bytes: s.max_body_bytes, timeout: s.body_timeout };
    let (bytes, _share) = body::read(&headers, body, &limits, &s.budget).await.map_err(|error| {
        Refused::Body { error, max_bytes: s.max_body_bytes, timeout: s.body_timeout }.counted(&s.metrics)
    })?;
    let answer = if bytes.len() > DECIDE_ON_BLOCKING_POOL_ABOVE {
        let webhook = s.webhook.clone();
        let runtime = tokio::runtime::Handle::current();
        match tokio::task::spawn_blocking(move || runtime.block_on(webhook.review(&bytes))).await {
            Ok(answer) => answer,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => return Err(Refused::ShuttingDown),
        }
    } else {
        s.webhook.review(&bytes).await
    };
    let answer = answer.map_err(Refused::Review)?;
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], answer.into_json()).into_response())
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
