//! The `replica-guard` command: `serve` runs the webhook, `certs` makes development
//! certificates, `check` decides one AdmissionReview file offline.

use anyhow::Context;
use clap::{Parser, Subcommand};
use replica_guard::audit::AuditLog;
use replica_guard::config::{Config, LogFormat, Source};
use replica_guard::metrics::Metrics;
use replica_guard::webhook::Webhook;
use std::path::PathBuf;
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
        /// The YAML config file.
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
    /// Decide one AdmissionReview JSON file offline, with the config's policy and registry,
    /// and print the AdmissionReview response. Exits 1 if the request would be denied.
    Check {
        #[arg(long, env = "REPLICA_GUARD_CONFIG")]
        config: PathBuf,
        /// The AdmissionReview file (`-` for standard input).
        review: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            let config = Config::load(&config)?;
            init_logging(&config);
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(replica_guard::server::run(&config))?;
            Ok(())
        }
        Command::Certs { out_dir, names } => {
            let names = if names.is_empty() { replica_guard::certs::local_names() } else { names };
            replica_guard::certs::generate(&names)?.write(&out_dir.join("tls.crt"), &out_dir.join("tls.key"))?;
            println!("wrote {0}/ca.crt, {0}/tls.crt and {0}/tls.key for {1}", out_dir.display(), names.join(", "));
            Ok(())
        }
        Command::Check { config, review } => check(&Config::load(&config)?, &review),
    }
}

fn check(config: &Config, review: &std::path::Path) -> anyhow::Result<()> {
    let body = if review.as_os_str() == "-" {
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut body)?;
        body
    } else {
        std::fs::read(review).with_context(|| format!("cannot read {}", review.display()))?
    };
    let metrics = Arc::new(Metrics::new());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let opened = runtime.block_on(replica_guard::limits::open(
        &config.registry,
        config.policy.platform_bounds,
        metrics.clone(),
        kube::Client::try_default,
    ))?;
    if let Some(refresher) = opened.refresher.filter(|_| matches!(config.registry.source(), Source::ConfigMap(_))) {
        // A ConfigMap is read by its watch: run it until the first load.
        runtime.block_on(async {
            let watch = tokio::spawn(refresher);
            let loaded = tokio::time::timeout(std::time::Duration::from_secs(10), async {
                while !opened.source.is_ready() {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            })
            .await;
            watch.abort();
            loaded.map_err(|_| anyhow::anyhow!("the registry ConfigMap was not loaded within 10 s (see the log)"))
        })?;
    }
    let limits = opened.source;
    let webhook = Webhook::new(config.policy.clone(), limits, metrics, AuditLog::to(Box::new(std::io::sink())));
    let answer = runtime.block_on(webhook.review(&body))?;
    let answer: serde_json::Value = serde_json::from_slice(&answer)?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    if answer["response"]["allowed"] == false {
        std::process::exit(1);
    }
    Ok(())
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.logging.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stdout);
    match config.logging.format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).init(),
        LogFormat::Text => builder.init(),
    }
}
