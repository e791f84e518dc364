//! Why a command could not do its job: one error for the commands, every message saying what to fix.

use crate::words::KubeError;
use std::net::SocketAddr;

/// Why a command could not do its job; every message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot listen on {address} ({key}): {error}")]
    Bind { address: SocketAddr, key: &'static str, error: std::io::Error },
    #[error("serving certificate: {0}")]
    Tls(#[from] crate::server::tls::TlsError),
    #[error("{0}")]
    Callers(#[from] crate::server::callers::CallersError),
    #[error("audit.usage.state is not set: there is no saved day to read (the chart sets it with audit.usage.enabled)")]
    NoUsageState,
    #[error("{0}")]
    UsageState(#[from] crate::cluster::usage::state::StateError),
    #[error("{0}")]
    Registry(#[from] crate::limits::OpenError),
    #[error("the registry could not be read: {0}")]
    RegistryNotRead(#[from] crate::limits::error::NotRead),
    #[error("the registry did not answer within 10 s")]
    RegistryTimeout,
    #[error("{needed_by}: no Kubernetes client configuration (in-cluster or kubeconfig): {error}")]
    Client { needed_by: &'static str, error: KubeError },
    #[error("{0}")]
    Inventory(#[from] crate::cluster::inventory::InventoryError),
    #[error("--all-contexts: the kubeconfig has no contexts")]
    NoContexts,
    #[error("did not answer within {0} s")]
    ClusterTimeout(u64),
    #[error("--cluster: cannot read the live objects: {0}")]
    Live(crate::cluster::inventory::InventoryError),
    #[error("{0}")]
    Input(#[from] crate::check::input::InputError),
    #[error("{0}")]
    Certs(#[from] crate::certs::CertError),
    #[error("stopped without finishing what these held: {0} (see the log above)")]
    Unfinished(String),
    #[error("cannot listen for signals: {0}")]
    Signals(std::io::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot write the output: {0}")]
    Output(std::io::Error),
}
