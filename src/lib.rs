//! replica-guard: a Kubernetes validating admission webhook that holds Deployments to the
//! replica limits their teams registered through the platform's onboarding pipeline (PED).
//!
//! Where things are:
//! - `decision`: where the decision is made (pure; no I/O).
//! - `limits`: where limits come from (the PED registry and its sources).
//! - `admission`: turning an AdmissionReview body into a decision input and the decision into a response.
//! - `cluster`: what watches the cluster: `replica-guard audit` and `watch`, Events, PolicyReports.
//! - `server`: HTTPS and admin listeners, TLS, and `server::shutdown` (what happens on SIGTERM).
//! - `config`, `metrics`, `audit`, `certs`, `watch`: configuration, Prometheus metrics, the audit
//!   log record, development certificates, and noticing changed files.

pub mod admission;
pub mod certs;
pub mod check;
pub mod cluster;
pub mod config;
pub mod decision;
pub mod events;
pub mod file_change;
pub mod json_lines;
pub mod limits;
pub mod metrics;
pub mod run;
pub mod server;
pub mod webhook;
pub mod words;
