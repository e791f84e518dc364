//! Seeing the cluster, not only the requests: what runs over its registered maximum right now.
//!
//! - `status`: the pure judgement of one running workload against its registry entry.
//! - `inventory`: reading every Deployment and HPA from the API server (paged lists).
//! - `report`: the `replica-guard audit` output (table, JSON, CSV).
//! - `pricing`: the platform's monthly cost formula.
//! - `watch`: the continuous audit (`replica-guard watch`): what watches the cluster.
//! - `policy_report`: OpenReports Reports and PolicyReports for Policy Reporter, written by the
//!   continuous audit.
//! - `usage`: the daily usage records (pure); `usage_log` prints them, `usage_state` keeps the
//!   day in ConfigMaps (sharded) across restarts.

pub mod inventory;
pub mod policy_report;
pub mod pricing;
pub mod report;
pub mod status;
pub mod usage;
pub mod usage_log;
pub mod usage_state;
pub mod watch;
