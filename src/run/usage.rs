//! `replica-guard usage`: the usage lines of the day so far (and of any saved day not printed
//! yet), read from `watch`'s saved state — what an operator runs to see today's
//! billing lines without waiting for midnight: `kubectl exec deploy/<release>-audit -n <ns> --
//! replica-guard usage --config /etc/replica-guard/config/config.yaml`. It prints and changes
//! nothing else: the day's own lines still come at midnight from `watch`.

use super::RunError;
use super::client::client;
use crate::cluster::usage::log::write_day;
use crate::cluster::usage::state::StateStore;
use crate::config::Config;
use crate::json_lines::JsonLines;
use crate::metrics::Metrics;
use std::path::Path;
use std::sync::Arc;

/// Prints the saved days' lines, oldest first; returns how many.
pub fn usage(config: &Path) -> Result<usize, RunError> {
    let config = Config::load(config)?;
    let state = config.audit.usage.state.clone().ok_or(RunError::NoUsageState)?;
    let runtime = super::offline::runtime()?;
    runtime.block_on(async {
        let kube = client(kube::Client::try_default, "replica-guard usage").await?;
        let cluster = super::watch::cluster_name(&config, &kube).await.unwrap_or_default();
        let mut store = StateStore::new(kube, &state.namespace, &state.name, Arc::new(Metrics::new()));
        let days = store.load().await?;
        let out = JsonLines::stdout();
        let pricing = config.pricing.as_ref();
        Ok(days.iter().map(|day| write_day(day, &cluster, pricing, &config.policy, &out)).sum())
    })
}
