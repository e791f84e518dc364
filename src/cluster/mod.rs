//! Seeing the cluster, not only the requests: what runs over its registered maximum right now.
//!
//! - `status`: the pure judgement of one running workload against its registry entry.
//! - `inventory`: reading every Deployment and HPA from the API server (paged lists).
//! - `report`: the `replica-guard audit` output (table, JSON, CSV).
//! - `pricing`: the platform's monthly cost formula.
//! - `watch`: the continuous audit (`replica-guard watch`): what watches the cluster.
//! - `policy_report`: PolicyReports for Policy Reporter, written by the continuous audit.
//! - `events`: Kubernetes Events from admission decisions, off the request path.

pub mod events;
pub mod inventory;
pub mod policy_report;
pub mod pricing;
pub mod report;
pub mod status;
pub mod watch;
