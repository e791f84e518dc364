//! The `replica-guard` command: `serve` runs the webhook, `certs` makes development
//! certificates, `check` judges manifests before deploying, `audit` lists what runs over
//! its limit in a cluster.

use anyhow::Context;
use clap::{Parser, Subcommand};
use replica_guard::config::{Config, LogFormat, Source};
use replica_guard::json_lines::JsonLines;
use replica_guard::metrics::Metrics;
use replica_guard::webhook::Webhook;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    version,
    about = "Kubernetes admission webhook that holds Deployments to their PED-registered replica limits"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the webhook (HTTPS admission listener and plain-HTTP admin listener).
    Serve {
        /// The YAML config file (README "Configuration reference").
        #[arg(long, env = "REPLICA_GUARD_CONFIG")]
        config: PathBuf,
    },
    /// Write a development CA (ca.crt) and a serving certificate (tls.crt, tls.key) to a folder.
    Certs {
        /// Where to write the files.
        #[arg(long, default_value = "certs/dev")]
        out_dir: PathBuf,
        /// A DNS name or IP address the certificate is valid for (repeatable). Defaults to
        /// localhost, 127.0.0.1 and ::1. For a Service: NAME, NAME.NS, NAME.NS.svc.
        #[arg(long = "name")]
        names: Vec<String>,
    },
    /// Judge manifests before deploying, with the webhook's own decision, config and registry:
    /// files, folders, `-` (standard input), multi-document YAML (`helm template`, `kustomize
    /// build`), Lists and AdmissionReview files. Each Deployment and HPA is judged as a CREATE,
    /// or with --cluster as the UPDATE `kubectl apply` would send when it exists. Exit status: 0
    /// nothing would be denied, 1 something would be denied, 2 warnings only (with
    /// --fail-on-warn), 3 the check could not run (bad config or input, registry unreachable, a mistyped flag).
    Check {
        /// The YAML config file (the same as the server's: policy and registry).
        #[arg(long, env = "REPLICA_GUARD_CONFIG")]
        config: PathBuf,
        /// Files, folders (recursive .yaml/.yml/.json) or `-` for standard input.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// The namespace of manifests that carry none (as `kubectl apply -n`); default "default".
        #[arg(long, short = 'n')]
        namespace: Option<String>,
        /// Judge as this user (exemptions, override groups), as `kubectl apply --as`.
        #[arg(long, default_value = "")]
        user: String,
        /// A group of that user (repeatable), as `kubectl apply --as-group`.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Read the live Deployments and HPAs (kubeconfig or in-cluster) and judge each manifest
        /// as the UPDATE `kubectl apply` would send: the ratchet, no-op silence, the change summary.
        #[arg(long)]
        cluster: bool,
        /// text (like kubectl's), json (replica-guard.io/check/v1) or junit; json and junit are
        /// one well-formed document also when the check could not run.
        #[arg(long, short = 'o', value_enum, default_value_t = CheckOutput::Text)]
        output: CheckOutput,
        /// Exit 2 when nothing would be denied but something is warned about.
        #[arg(long)]
        fail_on_warn: bool,
    },
    /// List every Deployment of a cluster (kubeconfig or in-cluster) with its replicas, its HPA's
    /// maxReplicas, its registered maximum and its status, with the config's registry and
    /// exemptions. Exit status: 0 nothing over its limit, 1 something is (status over or
    /// ratchet-only), 3 the audit could not run.
    Audit {
        /// The YAML config file whose registry and policy the workloads are judged by (the
        /// server's).
        #[arg(long, env = "REPLICA_GUARD_CONFIG")]
        config: PathBuf,
        /// Only these namespaces (repeatable); all when absent.
        #[arg(long = "namespace", short = 'n')]
        namespaces: Vec<String>,
        #[arg(long, short = 'o', value_enum, default_value_t = AuditOutput::Table)]
        output: AuditOutput,
    },
    /// The continuous audit: watch every Deployment and HPA, export per-workload gauges on the
    /// admin listener's /metrics, and emit an Event when a workload goes over its limit or comes
    /// back within (the chart's audit Deployment runs this).
    Watch {
        /// The YAML config file (the chart renders it; the audit reads its registry, policy,
        /// events and audit sections).
        #[arg(long, env = "REPLICA_GUARD_CONFIG")]
        config: PathBuf,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CheckOutput {
    Text,
    Json,
    Junit,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum AuditOutput {
    Table,
    Json,
    Csv,
}

/// `check`: something would be denied; `audit`: a workload is over its limit.
const EXIT_DENIED: u8 = 1;
/// `check --fail-on-warn`: nothing would be denied, but something is warned about.
const EXIT_WARNED: u8 = 2;
/// The command could not do its job (bad config, unreadable input, a server that cannot start).
const EXIT_ERROR: u8 = 3;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e, &args),
    };
    let result = match cli.command {
        Command::Serve { config } => serve(&config),
        Command::Certs { out_dir, names } => certs(out_dir, names),
        Command::Check { config, inputs, namespace, user, groups, cluster, output, fail_on_warn } => {
            let options = replica_guard::check::Options { namespace, user, groups };
            let how = CheckHow { cluster, output, fail_on_warn };
            let result = Config::load(&config).map_err(Into::into).and_then(|c| check(&c, &inputs, &options, how));
            // A pipeline reading the report gets one well-formed document, also when nothing was judged.
            if let Err(e) = &result {
                let message = error_chain(e);
                let document = match output {
                    CheckOutput::Json => Some(replica_guard::check::output::json_error(&message, cluster)),
                    CheckOutput::Junit => Some(replica_guard::check::output::junit_error(&message)),
                    CheckOutput::Text => None,
                };
                if let Some(document) = document {
                    let _ = print_out(&document);
                }
            }
            result
        }
        Command::Watch { config } => watch(&config),
        Command::Audit { config, namespaces, output } => {
            Config::load(&config).map_err(Into::into).and_then(|c| audit(&c, &namespaces, output))
        }
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {}", error_chain(&e));
        ExitCode::from(EXIT_ERROR)
    })
}

fn serve(config: &std::path::Path) -> anyhow::Result<ExitCode> {
    long_running(config, async |config| replica_guard::server::run(config).await)
}

fn watch(config: &std::path::Path) -> anyhow::Result<ExitCode> {
    long_running(config, async |config| replica_guard::server::run_audit(config).await)
}

/// A process that runs until SIGTERM (`serve`, `watch`): config, logging, a multi-threaded runtime.
fn long_running(
    config: &std::path::Path,
    run: impl AsyncFnOnce(&Config) -> Result<(), replica_guard::server::ServerError>,
) -> anyhow::Result<ExitCode> {
    let config = Config::load(config)?;
    init_logging(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(&config))?;
    Ok(ExitCode::SUCCESS)
}

fn certs(out_dir: PathBuf, names: Vec<String>) -> anyhow::Result<ExitCode> {
    let names = if names.is_empty() { replica_guard::certs::local_names() } else { names };
    replica_guard::certs::generate(&names)?.write(&out_dir.join("tls.crt"), &out_dir.join("tls.key"))?;
    print_out(&format!("wrote {0}/ca.crt, {0}/tls.crt and {0}/tls.key for {1}", out_dir.display(), names.join(", ")))?;
    Ok(ExitCode::SUCCESS)
}

/// A command line clap could not make sense of: exit 3, "could not run" (clap's own 2 would read
/// as `check`'s "warnings only" to a pipeline). `--help` and `--version` exit 0. A `check -o json`
/// or `-o junit` still prints a well-formed document saying what was wrong.
fn usage_error(e: &clap::Error, args: &[std::ffi::OsString]) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let args: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    if args.get(1).map(String::as_str) == Some("check") {
        // The value of -o / --output, however it was written.
        let output = args.windows(2).find_map(|w| match w[0].as_str() {
            "-o" | "--output" => Some(w[1].clone()),
            flag => flag.strip_prefix("--output=").or_else(|| flag.strip_prefix("-o")).map(str::to_string),
        });
        let said = e.to_string();
        let message = format!("usage: {}", said.lines().next().unwrap_or_default().trim_start_matches("error: "));
        match output.as_deref() {
            Some("json") => {
                let _ = print_out(&replica_guard::check::output::json_error(&message, false));
            }
            Some("junit") => {
                let _ = print_out(&replica_guard::check::output::junit_error(&message));
            }
            _ => {}
        }
    }
    let _ = e.print();
    ExitCode::from(EXIT_ERROR)
}

/// An error and its causes in one line, each cause once: our errors often already include
/// their source's text, and repeating it helps nobody.
fn error_chain(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain().map(ToString::to_string) {
        if !text.contains(&cause) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause);
        }
    }
    text
}

/// Writes a line to stdout; a reader that went away (`check … | head`) ends the output quietly.
fn print_out(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

struct CheckHow {
    cluster: bool,
    output: CheckOutput,
    fail_on_warn: bool,
}

fn check(
    config: &Config,
    inputs: &[PathBuf],
    options: &replica_guard::check::Options,
    how: CheckHow,
) -> anyhow::Result<ExitCode> {
    use replica_guard::check::{self, Outcome, input, live::Live, output};
    use replica_guard::decision::Verdict;
    let manifests = input::read_all(inputs)?;
    let metrics = Arc::new(Metrics::new());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let limits = open_registry(config, &runtime, &metrics)?;
    let webhook = Webhook::new(config.policy.clone(), limits, metrics, JsonLines::to(Box::new(std::io::sink())));
    let checked = runtime.block_on(async {
        let live = match how.cluster {
            true => {
                let client = kube::Client::try_default()
                    .await
                    .context("--cluster: no Kubernetes client configuration (in-cluster or kubeconfig)")?;
                let namespace = options.namespace.as_deref().unwrap_or("default");
                Some(
                    Live::read(client, &manifests, namespace)
                        .await
                        .context("--cluster: cannot read the live objects")?,
                )
            }
            false => None,
        };
        anyhow::Ok(check::check_all(&webhook, manifests, live.as_ref(), options).await)
    })?;
    let text = match how.output {
        CheckOutput::Text => output::text(&checked, how.cluster),
        CheckOutput::Json => output::json(&checked, how.cluster),
        CheckOutput::Junit => output::junit(&checked, how.fail_on_warn),
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
    Ok(ExitCode::from(match () {
        _ if could_not => EXIT_ERROR,
        _ if denied => EXIT_DENIED,
        _ if warned && how.fail_on_warn => EXIT_WARNED,
        _ => 0,
    }))
}

/// The config's registry, read once for an offline command (a ConfigMap through kubeconfig, or a
/// Firestore collection: its refresher runs until the first load).
fn open_registry(
    config: &Config,
    runtime: &tokio::runtime::Runtime,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Arc<dyn replica_guard::limits::LimitSource>> {
    let opened = runtime.block_on(replica_guard::limits::open(
        &config.registry,
        config.policy.platform_bounds,
        metrics.clone(),
        kube::Client::try_default,
    ))?;
    let first_read_in_background =
        matches!(config.registry.source(), Source::ConfigMap(_) | Source::Firestore(_) | Source::BigQuery(_));
    if let Some(refresher) = opened.refresher.filter(|_| first_read_in_background) {
        runtime.block_on(async {
            let watch = tokio::spawn(refresher);
            let loaded = tokio::time::timeout(std::time::Duration::from_secs(10), opened.source.first_load()).await;
            watch.abort();
            match loaded {
                Ok(Ok(())) => Ok(()),
                Ok(Err(why)) => Err(anyhow::anyhow!("the registry could not be read: {why}")),
                Err(_) => Err(anyhow::anyhow!("the registry did not answer within 10 s")),
            }
        })?;
    }
    Ok(opened.source)
}

fn audit(config: &Config, namespaces: &[String], output: AuditOutput) -> anyhow::Result<ExitCode> {
    use replica_guard::cluster::{inventory, report::Report, status};
    let metrics = Arc::new(Metrics::new());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let limits = open_registry(config, &runtime, &metrics)?;
    let judged: Vec<status::Judged> = runtime.block_on(async {
        let client = kube::Client::try_default()
            .await
            .context("no Kubernetes client configuration (in-cluster or kubeconfig)")?;
        let workloads = inventory::workloads(client, namespaces).await?;
        let mut judged = Vec::with_capacity(workloads.len());
        for w in workloads {
            let lookup = limits.lookup(&w.namespace, &w.deployment).await;
            judged.extend(status::judge(w, lookup, &config.policy));
        }
        anyhow::Ok(judged)
    })?;
    let report = Report::new(&judged, config.pricing.as_ref());
    let text = match output {
        AuditOutput::Table => report.table(),
        AuditOutput::Json => report.json(),
        AuditOutput::Csv => report.csv(),
    };
    print_out(text.trim_end())?;
    let over = judged.iter().any(|j| j.status.is_over());
    Ok(if over { ExitCode::from(EXIT_DENIED) } else { ExitCode::SUCCESS })
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.logging.level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stdout).with_ansi(ansi);
    match config.logging.format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).init(),
        LogFormat::Text => builder.init(),
    }
}
