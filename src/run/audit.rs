//! `replica-guard audit`: every Deployment of one cluster or many (`--context A --context B`,
//! `--all-contexts`), judged with the config's registry and policy, as one table, JSON or CSV
//! with a cluster column. The clusters are read at once, each within `CLUSTER_TIMEOUT`; one that
//! cannot be reached is named (stderr, and `clusters[].error` in JSON) and the others are still
//! reported. Exit status over all: 1 when anything is over its limit, 3 only when no cluster
//! could be audited (or the config or registry could not be read), else 0.

use super::RunError;
use super::client::client;
use super::offline::{EXIT_DENIED, EXIT_ERROR, print_out, read_registry, runtime};
use crate::cluster::audit::{Audited, Report};
use crate::cluster::{inventory, status};
use crate::config::{Config, Source};
use crate::limits::LimitSource;
use crate::metrics::Metrics;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long one cluster may take to be listed (its connection, both lists, its registry).
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditOutput {
    Table,
    Json,
    Csv,
}

/// What `audit` was asked to do.
pub struct AuditArgs {
    pub config: PathBuf,
    pub namespaces: Vec<String>,
    pub output: AuditOutput,
    /// Kubeconfig contexts to audit (none: the current one, or in-cluster).
    pub contexts: Vec<String>,
    /// Every context of the kubeconfig.
    pub all_contexts: bool,
}

/// A cluster to audit: the name the output gives it, and the context to connect with.
type Target = (Option<String>, Option<String>);

/// Which clusters to audit.
fn targets(config: &Config, args: &AuditArgs) -> Result<Vec<Target>, RunError> {
    let contexts = if args.all_contexts {
        let kubeconfig = kube::config::Kubeconfig::read()
            .map_err(|e| RunError::Client { needed_by: "--all-contexts", error: kube::Error::from(e).into() })?;
        let names: Vec<String> = kubeconfig.contexts.into_iter().map(|c| c.name).collect();
        if names.is_empty() {
            return Err(RunError::NoContexts);
        }
        names
    } else {
        args.contexts.clone()
    };
    if contexts.is_empty() {
        // One cluster: the config's name for it, else the kubeconfig's current context.
        let current = kube::config::Kubeconfig::read().ok().and_then(|k| k.current_context);
        return Ok(vec![(config.cluster.name.clone().or(current), None)]);
    }
    let mut seen = std::collections::HashSet::new();
    Ok(contexts.into_iter().filter(|c| seen.insert(c.clone())).map(|c| (Some(c.clone()), Some(c))).collect())
}

/// A client for `context` (None: the default, in-cluster or the current context).
async fn client_for(context: Option<&str>) -> Result<kube::Client, kube::Error> {
    let Some(context) = context else { return kube::Client::try_default().await };
    let options = kube::config::KubeConfigOptions { context: Some(context.to_string()), ..Default::default() };
    let mut config = kube::Config::from_kubeconfig(&options).await?;
    config.connect_timeout = Some(Duration::from_secs(10));
    kube::Client::try_from(config)
}

/// One cluster: connect, read the registry when it lives there, list and judge.
async fn audit_one(
    config: &Config,
    context: Option<&str>,
    shared: Option<Arc<dyn LimitSource>>,
    metrics: &Arc<Metrics>,
    namespaces: &[String],
) -> Result<Vec<status::Judged>, RunError> {
    let kube = client(async || client_for(context).await, "the audit").await?;
    let limits = match shared {
        Some(limits) => limits,
        None => read_registry(config, metrics, Some(kube.clone())).await?,
    };
    let workloads = inventory::workloads(kube, namespaces).await?;
    let mut judged = Vec::with_capacity(workloads.len());
    for w in workloads {
        let lookup = limits.lookup(&w.namespace, &w.deployment).await;
        judged.extend(status::judge(w, lookup, &config.policy));
    }
    Ok(judged)
}

pub fn audit(args: AuditArgs) -> Result<u8, RunError> {
    let config = Config::load(&args.config)?;
    let metrics = Arc::new(Metrics::new());
    let runtime = runtime()?;
    let targets = targets(&config, &args)?;
    let single = args.contexts.is_empty() && !args.all_contexts;
    // A registry outside the clusters is read once; a ConfigMap registry is each cluster's own.
    let shared = match config.registry.source() {
        Source::ConfigMap(_) => None,
        _ => Some(runtime.block_on(read_registry(&config, &metrics, None))?),
    };
    let mut results = runtime.block_on(futures_util::future::join_all(targets.iter().map(|(name, context)| {
        let shared = shared.clone();
        let (config, metrics, namespaces) = (&config, &metrics, &args.namespaces);
        async move {
            let one = audit_one(config, context.as_deref(), shared, metrics, namespaces);
            let judged = tokio::time::timeout(CLUSTER_TIMEOUT, one)
                .await
                .unwrap_or(Err(RunError::ClusterTimeout(CLUSTER_TIMEOUT.as_secs())));
            (name.clone(), judged)
        }
    })));
    // One cluster asked for, and it could not be read: its error, as for any command.
    if single
        && matches!(results.first(), Some((_, Err(_))))
        && let Some((_, Err(e))) = results.pop()
    {
        return Err(e);
    }
    let audited: Vec<Audited> = results
        .into_iter()
        .map(|(cluster, judged)| Audited { cluster, judged: judged.map_err(|e| e.to_string()) })
        .collect();
    for a in &audited {
        if let Err(why) = &a.judged {
            eprintln!("error: cluster {}: {why}", a.cluster.as_deref().unwrap_or("(default)"));
        }
    }
    let report = Report::new(&audited, config.pricing.as_ref());
    let text = match args.output {
        AuditOutput::Table => report.table(),
        AuditOutput::Json => report.json(),
        AuditOutput::Csv => report.csv(),
    };
    print_out(text.trim_end())?;
    let reached = audited.iter().filter(|a| a.judged.is_ok()).count();
    let over = audited.iter().filter_map(|a| a.judged.as_ref().ok()).flatten().any(|j| j.status.is_over());
    Ok(match () {
        _ if reached == 0 => EXIT_ERROR,
        _ if over => EXIT_DENIED,
        _ => 0,
    })
}
