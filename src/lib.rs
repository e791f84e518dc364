//! replica-guard: a Kubernetes validating admission webhook that holds Deployments to the
//! replica limits their teams registered through the platform's onboarding pipeline (PED).
//!
//! Where things are (README "Where things are" has the files):
//! - `decision`: where the decision is made (pure; imports nothing else of the crate).
//! - `admission`: an AdmissionReview body into a decision input, the decision into a response and
//!   a decision record; `webhook` runs it with its I/O.
//! - `limits`: where limits come from (the PED registry: its format, entries, sources, transport).
//! - `backstop`: the parameters of the API server's own policy, written from the registry.
//! - `cluster`: what watches the cluster: `replica-guard audit` and `watch`, PolicyReports, usage.
//! - `run`: how each process is put together, and `run::shutdown` (what happens on SIGTERM).
//! - `server`: the HTTPS and admin listeners, health, TLS, connection and body bounds.
//! - `check`: `replica-guard check` (manifests before deploying).
//! - `config`, `logging`, `metrics`, `events`, `certs`, `file_change`, `json_lines`, `words`:
//!   configuration, the process's logs, Prometheus metrics, Kubernetes Events, development
//!   certificates, noticing changed files, JSON lines on stdout, and serde's messages in a user's
//!   words.

pub mod admission;
pub mod backstop;
pub mod certs;
pub mod check;
pub mod cluster;
pub mod config;
pub mod decision;
pub mod events;
pub mod file_change;
pub mod json_lines;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod part;
pub mod run;
pub mod server;
pub mod webhook;
pub mod words;
