//! Reading a request body without letting clients decide how much memory the server holds.
//!
//! - A body whose `Content-Length` is over `server.maxBodyBytes` is refused before a byte of it
//!   is read: 413 with `Connection: close`. Without `Expect: 100-continue` the client is sending
//!   it already, so the rest is read and dropped in the background for up to
//!   `server.requestTimeoutSeconds`: closing a socket with unread data resets the connection, and
//!   the client would see a broken pipe instead of the 413.
//! - Every body being read or decided holds its size (its declared length, or `maxBodyBytes`
//!   when it declares none) of the budget `server.maxBufferedBytes`; one that cannot get its share
//!   within `BUDGET_WAIT` is answered 503 unread (the API server counts that as a failed call and
//!   retries or applies its failurePolicy — never an out-of-memory kill of the pod).

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use futures_util::StreamExt;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a body waits for its share of the budget before it is turned away.
pub const BUDGET_WAIT: Duration = Duration::from_millis(500);

/// The memory budget for request bodies in flight, counted in KiB.
#[derive(Clone)]
pub struct BodyBudget {
    kib: Arc<Semaphore>,
    total_kib: usize,
}

/// A body's share of the budget; given back when dropped.
pub struct Share(#[allow(dead_code)] OwnedSemaphorePermit);

impl BodyBudget {
    pub fn new(bytes: usize) -> Self {
        let total_kib = bytes.div_ceil(1024).max(1);
        Self { kib: Arc::new(Semaphore::new(total_kib)), total_kib }
    }

    /// Takes `bytes` of the budget, waiting up to `BUDGET_WAIT`.
    pub async fn take(&self, bytes: usize) -> Option<Share> {
        let kib = u32::try_from(bytes.div_ceil(1024).clamp(1, self.total_kib)).ok()?;
        let permit = tokio::time::timeout(BUDGET_WAIT, self.kib.clone().acquire_many_owned(kib)).await.ok()?.ok()?;
        Some(Share(permit))
    }
}

/// Why a body was not read.
#[derive(Debug)]
pub enum BodyError {
    /// Over `maxBodyBytes` (declared, or found while reading).
    TooLarge,
    /// The budget was in use.
    OverBudget,
    Unreadable(String),
    TimedOut,
}

pub struct Bounds {
    pub max_bytes: usize,
    pub timeout: Duration,
}

/// The declared length, if the request has a valid one.
pub fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// Reads a whole body within the limits and the budget.
pub async fn read(
    headers: &HeaderMap,
    body: Body,
    limits: &Bounds,
    budget: &BodyBudget,
) -> Result<(Bytes, Share), BodyError> {
    let declared = content_length(headers);
    if declared.is_some_and(|n| n > limits.max_bytes) {
        discard_unless_waiting(headers, body, limits.timeout);
        return Err(BodyError::TooLarge);
    }
    let share = budget.take(declared.unwrap_or(limits.max_bytes)).await.ok_or(BodyError::OverBudget)?;
    match tokio::time::timeout(limits.timeout, Limited::new(body, limits.max_bytes).collect()).await {
        Ok(Ok(collected)) => Ok((collected.to_bytes(), share)),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(BodyError::TooLarge),
        Ok(Err(e)) => Err(BodyError::Unreadable(e.to_string())),
        Err(_) => Err(BodyError::TimedOut),
    }
}

/// Reads and drops the rest of a refused body in the background, for at most `timeout`, so the
/// client gets to read the answer (see the module doc). A client that asked to wait for
/// `100 Continue` sends nothing more; reading would make hyper invite the upload.
fn discard_unless_waiting(headers: &HeaderMap, body: Body, timeout: Duration) {
    let expects_continue = headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if expects_continue {
        return;
    }
    tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        let _ = tokio::time::timeout(timeout, async { while let Some(Ok(_)) = stream.next().await {} }).await;
    });
}
