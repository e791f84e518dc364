//! Where each process is put together, one file per command: `serve` (the webhook), `watch`
//! (the cluster view) and `offline` (`check`, `audit`, `certs`). The long-running two share
//! one `Lifecycle` (health, listeners, the parts and their stop signal) and one `shutdown` (what
//! SIGTERM does); each process makes at most one Kubernetes client (`client`) and hands it to every
//! part that needs it. Why a command failed: `error`.
//! Only this layer knows both the admission side (`server`, `webhook`) and the cluster side
//! (`cluster`, `events`); they never import each other.

pub mod audit;
pub mod client;
pub mod error;
pub mod lifecycle;
pub mod offline;
pub mod serve;
pub mod shutdown;
pub mod usage;
pub mod watch;

pub use error::RunError;
