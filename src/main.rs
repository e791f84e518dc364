//! The `replica-guard` command line: parses it and hands each command to `run` (`serve` the
//! webhook, `watch` `watch`, `check`, `audit` and `certs` the offline commands).
//! A command line that makes no sense exits 3, like every other failure.

use clap::{Parser, Subcommand};
use replica_guard::config::Config;
use replica_guard::run::audit::{AuditArgs, AuditOutput};
use replica_guard::run::offline::CheckOutput;
use replica_guard::run::{self, offline};
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// List every Deployment of a cluster (kubeconfig or in-cluster), or of several
    /// (--context, --all-contexts), with its replicas, its HPA's maxReplicas, its registered
    /// maximum and its status, with the config's registry and exemptions. Exit status: 0
    /// nothing over its limit, 1 something is (status over or ratchet-only), 3 the audit could
    /// not run (with several clusters: none of them could be audited).
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
        /// Audit the cluster of this kubeconfig context (repeatable): one report with a cluster
        /// column; a cluster that cannot be reached is named and the others still reported.
        #[arg(long = "context")]
        contexts: Vec<String>,
        /// Audit the cluster of every context in the kubeconfig.
        #[arg(long, conflicts_with = "contexts")]
        all_contexts: bool,
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
    /// Print the usage lines of the day so far (and of any saved day not printed yet) from the
    /// continuous audit's saved state, without waiting for midnight; in the cluster: `kubectl exec
    /// deploy/<release>-audit -- replica-guard usage --config /etc/replica-guard/config/config.yaml`.
    Usage {
        /// The config whose `audit.usage.state`, `cluster` and `pricing` the lines use (the audit's).
        #[arg(long, env = "REPLICA_GUARD_CONFIG")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e, &args),
    };
    let result: anyhow::Result<u8> = match cli.command {
        Command::Serve { config } => long_running(&config, async |config| run::serve::run(config).await),
        Command::Watch { config } => long_running(&config, async |config| run::watch::run(config).await),
        Command::Usage { config } => run::usage::usage(&config).map(|_| 0).map_err(Into::into),
        Command::Certs { out_dir, names } => offline::certs(&out_dir, names).map_err(Into::into),
        Command::Check { config, inputs, namespace, user, groups, cluster, output, fail_on_warn } => {
            let options = replica_guard::check::Options { namespace, user, groups };
            offline::check(offline::CheckArgs { config, inputs, options, cluster, output, fail_on_warn })
                .map_err(Into::into)
        }
        Command::Audit { config, namespaces, output, contexts, all_contexts } => {
            replica_guard::run::audit::audit(AuditArgs { config, namespaces, output, contexts, all_contexts })
                .map_err(Into::into)
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::from(offline::EXIT_ERROR)
        }
    }
}

/// A process that runs until SIGTERM (`serve`, `watch`): config, logging, a multi-threaded runtime.
fn long_running(
    config: &std::path::Path,
    run: impl AsyncFnOnce(&Config) -> Result<(), run::RunError>,
) -> anyhow::Result<u8> {
    let config = Config::load(config)?;
    replica_guard::logging::init(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(&config))?;
    Ok(0)
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
                let _ = offline::print_out(&replica_guard::check::output::json_error(&message, false));
            }
            Some("junit") => {
                let _ = offline::print_out(&replica_guard::check::output::junit_error(&message));
            }
            _ => {}
        }
    }
    let _ = e.print();
    ExitCode::from(offline::EXIT_ERROR)
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
