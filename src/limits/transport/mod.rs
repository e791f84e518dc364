//! How the remote sources talk to their registries: one HTTPS client factory (`client`), the
//! credentials (`auth`), and JSON requests with a bounded answer and one token refresh (`json`).
//! The sources (`http_source`, `firestore_source`, `bigquery_source`) build on it; it knows none
//! of them.

pub mod auth;
pub mod client;
pub mod json;

pub use auth::Auth;
pub use client::{ClientError, HttpClient, error_chain, https_client};
pub use json::{RemoteJson, percent_encode};
