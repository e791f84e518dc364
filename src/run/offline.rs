//! The commands that run once and exit: `check` (manifests before deploying), `audit` (what runs
//! over its limit now, `audit.rs`) and `certs` (development certificates). Their exit status is what
//! pipelines branch on: 0 fine, 1 denied / over its limit, 2 warnings only (`check
//! --fail-on-warn`), 3 could not run.

use super::RunError;
use super::client::client;
use crate::check::{self, Outcome, input, live::Live, output};
use crate::config::{Config, Source};
use crate::decision::Verdict;
use crate::json_lines::JsonLines;
use crate::limits::LimitSource;
use crate::metrics::Metrics;
use crate::webhook::Webhook;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// `check`: something would be denied; `audit`: a workload is over its limit.
pub const EXIT_DENIED: u8 = 1;
/// `check --fail-on-warn`: nothing would be denied, but something is warned about.
pub const EXIT_WARNED: u8 = 2;
/// The command could not do its job (bad config or input, a mistyped flag, a registry or API
/// server that cannot be read, a server that cannot start).
pub const EXIT_ERROR: u8 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckOutput {
    Text,
    Json,
    Junit,
}

/// What `check` was asked to do.
pub struct CheckArgs {
    pub config: PathBuf,
    pub inputs: Vec<PathBuf>,
    pub options: check::Options,
    /// Judge manifests as UPDATEs of the live objects.
    pub cluster: bool,
    pub output: CheckOutput,
    pub fail_on_warn: bool,
}

/// Writes a line to stdout; a reader that went away (`check … | head`) ends the output quietly.
pub fn print_out(text: &str) -> Result<(), RunError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(RunError::Output),
    }
}

/// A runtime on this thread, for a command that talks to a registry or an API server once.
pub(super) fn runtime() -> Result<tokio::runtime::Runtime, RunError> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(RunError::Runtime)
}

/// `replica-guard check`. When it cannot run and the output is JSON or JUnit, the one document
/// a pipeline reads says why (the error is returned too, for stderr and the exit status).
pub fn check(args: CheckArgs) -> Result<u8, RunError> {
    let result = Config::load(&args.config).map_err(RunError::from).and_then(|config| judge(&config, &args));
    if let Err(e) = &result {
        let message = e.to_string();
        let document = match args.output {
            CheckOutput::Json => Some(output::json_error(&message, args.cluster)),
            CheckOutput::Junit => Some(output::junit_error(&message)),
            CheckOutput::Text => None,
        };
        if let Some(document) = document {
            let _ = print_out(&document);
        }
    }
    result
}

fn judge(config: &Config, args: &CheckArgs) -> Result<u8, RunError> {
    let manifests = input::read_all(&args.inputs)?;
    let metrics = Arc::new(Metrics::new());
    let runtime = runtime()?;
    let needed_by = match config.registry.source() {
        _ if args.cluster => Some("--cluster"),
        Source::ConfigMap(_) => Some("registry.configMap"),
        _ => None,
    };
    let kube = match needed_by {
        Some(needed_by) => Some(runtime.block_on(client(kube::Client::try_default, needed_by))?),
        None => None,
    };
    let limits = open_registry(config, &runtime, &metrics, kube.clone())?;
    let webhook = Webhook::new(config.policy.clone(), limits, metrics, JsonLines::to(Box::new(std::io::sink())));
    let checked = runtime.block_on(async {
        let live = match kube.filter(|_| args.cluster) {
            Some(kube) => {
                let namespace = args.options.namespace.as_deref().unwrap_or("default");
                Some(Live::read(kube, &manifests, namespace).await.map_err(RunError::Live)?)
            }
            None => None,
        };
        Ok::<_, RunError>(check::check_all(&webhook, manifests, live.as_ref(), &args.options).await)
    })?;
    let text = match args.output {
        CheckOutput::Text => output::text(&checked, args.cluster),
        CheckOutput::Json => output::json(&checked, args.cluster),
        CheckOutput::Junit => output::junit(&checked, args.fail_on_warn),
    };
    print_out(text.trim_end())?;
    // What kept the check from judging goes to stderr, and is never a 1.
    let mut could_not = false;
    for c in &checked {
        let why = match &c.outcome {
            Outcome::Invalid(why) => why.clone(),
            Outcome::Decided(d) if c.registry_unreachable() && d.decision.verdict == Verdict::Denied => {
                d.decision.deny_message.clone().unwrap_or_default()
            }
            _ => continue,
        };
        eprintln!("error: {} (document {}) {} {}/{}: {why}", c.source, c.document, c.kind, c.namespace, c.name);
        could_not = true;
    }
    let denied = checked.iter().any(|c| c.verdict() == Some(Verdict::Denied));
    let warned = checked.iter().any(|c| matches!(&c.outcome, Outcome::Decided(d) if !d.decision.warnings.is_empty()));
    Ok(match () {
        _ if could_not => EXIT_ERROR,
        _ if denied => EXIT_DENIED,
        _ if warned && args.fail_on_warn => EXIT_WARNED,
        _ => 0,
    })
}

/// The config's registry, read once for an offline command: a file at once; a ConfigMap or a
/// Firestore/BigQuery snapshot by running its refresh until the first load says how it went.
fn open_registry(
    config: &Config,
    runtime: &tokio::runtime::Runtime,
    metrics: &Arc<Metrics>,
    kube: Option<kube::Client>,
) -> Result<Arc<dyn LimitSource>, RunError> {
    runtime.block_on(read_registry(config, metrics, kube))
}

/// `open_registry` inside a runtime (the audit reads one per cluster at once).
pub(super) async fn read_registry(
    config: &Config,
    metrics: &Arc<Metrics>,
    kube: Option<kube::Client>,
) -> Result<Arc<dyn LimitSource>, RunError> {
    let opened = crate::limits::open(&config.registry, config.policy.platform_bounds, metrics.clone(), kube).await?;
    let first_read_in_background =
        matches!(config.registry.source(), Source::ConfigMap(_) | Source::Firestore(_) | Source::BigQuery(_));
    if let Some(refresh) = opened.refresh.filter(|_| first_read_in_background) {
        let refreshing = tokio::spawn(crate::part::Part::run(refresh, crate::part::Stop::never()));
        let loaded = tokio::time::timeout(Duration::from_secs(10), opened.source.first_load()).await;
        refreshing.abort();
        match loaded {
            Ok(Ok(())) => {}
            Ok(Err(why)) => return Err(RunError::RegistryNotRead(why)),
            Err(_) => return Err(RunError::RegistryTimeout),
        }
    }
    Ok(opened.source)
}

/// `replica-guard certs`: a development CA and a serving certificate in `out_dir`.
pub fn certs(out_dir: &Path, names: Vec<String>) -> Result<u8, RunError> {
    let names = if names.is_empty() { crate::certs::local_names() } else { names };
    crate::certs::generate(&names)?.write(&out_dir.join("tls.crt"), &out_dir.join("tls.key"))?;
    print_out(&format!("wrote {0}/ca.crt, {0}/tls.crt and {0}/tls.key for {1}", out_dir.display(), names.join(", ")))?;
    Ok(0)
}
