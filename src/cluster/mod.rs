//! Seeing the cluster, not only the requests: what runs over its registered maximum right now.
//!
//! - `status`: the pure judgement of one running workload against its registry entry.
//! - `inventory`: reading Deployments and HPAs from the API server (paged lists; the fields kept).
//! - `pricing`: the platform's monthly cost formula.
//! - `audit`: the `replica-guard audit` output (table, JSON, CSV) — "audit" is that one-shot
//!   command; the process that keeps watching is `replica-guard watch`.
//! - `view`: what watches the cluster (`watch`): the watches, the passes, and their subscribers:
//!   - `announce`: Events on transitions over and back within the limits, per-workload gauges;
//!   - `reports`: OpenReports Reports or PolicyReports, one per namespace;
//!   - `usage`: the daily usage records, kept across restarts.

pub mod announce;
pub mod audit;
pub mod inventory;
pub mod pricing;
pub mod reports;
pub mod status;
pub mod usage;
pub mod view;
