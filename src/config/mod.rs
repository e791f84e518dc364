//! The config file (`replica-guard serve --config FILE`), read once at start. Every error names
//! the key and says what would be right; relative paths are taken from the config file's folder.

mod auth;
mod cluster;
mod registry;
mod server;
mod snapshot;

use crate::decision::policy::Policy;
pub use auth::*;
pub use cluster::*;
pub use registry::*;
use serde::Deserialize;
pub use server::*;
pub use snapshot::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("config file {path}: {key}: {problem}")]
    Invalid { path: PathBuf, key: String, problem: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Which cluster this is (the name records for other systems carry).
    #[serde(default)]
    pub cluster: ClusterConfig,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub policy: Policy,
    pub registry: RegistryConfig,
    #[serde(default)]
    pub logging: LoggingConfig,
    #[serde(default)]
    pub events: EventsConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    /// The backstop policy's parameters, written by `watch`.
    #[serde(default)]
    pub backstop: BackstopConfig,
    /// How much per-object detail `/metrics` exports.
    #[serde(default)]
    pub metrics: crate::metrics::Detail,
    /// The platform's monthly cost formula, for `audit` (optional).
    #[serde(default)]
    pub pricing: Option<Pricing>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoggingConfig {
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter such as `info` or `replica_guard=debug,info`; `RUST_LOG` overrides it.
    #[serde(default = "default_log_level")]
    pub level: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

fn default_log_level() -> String {
    "info".to_string()
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self { format: LogFormat::default(), level: default_log_level() }
    }
}

/// Seconds from the config as a Duration (validated to be finite and non-negative first).
pub fn seconds(value: f64) -> Duration {
    Duration::from_secs_f64(value.max(0.0))
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: path.to_path_buf(), error })?;
        let mut config = Self::parse(&text).map_err(|(key, problem)| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            problem,
        })?;
        config.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        if config.policy.own_namespace.is_none() {
            // Set from the downward API by the chart, so the webhook never evaluates its own namespace.
            config.policy.own_namespace = std::env::var("POD_NAMESPACE").ok().filter(|n| !n.is_empty());
        }
        Ok(config)
    }

    /// Parses and validates config text; the error is (key, problem).
    pub fn parse(text: &str) -> Result<Self, (String, String)> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            // serde_yaml names the enclosing path itself ("server: unknown field ..."); the key says it already.
            let problem = crate::words::without_path(&key, &e.into_inner().to_string());
            let problem = crate::words::in_words(&key, &problem);
            (if key == "." { "(top level)".to_string() } else { key }, problem)
        })?;
        config.validate().map_err(|(k, p)| (k.to_string(), p))?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), (&'static str, String)> {
        let s = &self.server;
        if !(1024..=64 * 1024 * 1024).contains(&s.max_body_bytes) {
            return Err((
                "server.maxBodyBytes",
                format!(
                    "must be between 1024 and 67108864, got {}; AdmissionReviews are rarely above 1 MiB",
                    s.max_body_bytes
                ),
            ));
        }
        if s.buffered_bytes_budget() < s.max_body_bytes || s.buffered_bytes_budget() > 4 << 30 {
            return Err((
                "server.maxBufferedBytes",
                format!(
                    "must be at least server.maxBodyBytes ({}) and at most 4294967296, got {}",
                    s.max_body_bytes,
                    s.buffered_bytes_budget()
                ),
            ));
        }
        if !(1..=65536).contains(&s.max_connections) {
            return Err(("server.maxConnections", format!("must be between 1 and 65536, got {}", s.max_connections)));
        }
        check_seconds("server.idleTimeoutSeconds", s.idle_timeout_seconds, 1.0, 3600.0)?;
        check_seconds("server.requestTimeoutSeconds", s.request_timeout_seconds, 0.1, 30.0)?;
        check_seconds("server.headerTimeoutSeconds", s.header_timeout_seconds, 0.1, 60.0)?;
        check_seconds("server.shutdownDelaySeconds", s.shutdown_delay_seconds, 0.0, 300.0)?;
        check_seconds("server.shutdownTimeoutSeconds", s.shutdown_timeout_seconds, 0.0, 300.0)?;
        check_seconds("server.tls.reloadIntervalSeconds", s.tls.reload_interval_seconds, 0.1, 3600.0)?;
        if s.address == s.admin_address && s.address.port() != 0 {
            return Err(("server.adminAddress", format!("must differ from server.address ({})", s.address)));
        }
        check_log_level(&self.logging.level)?;
        check_seconds("audit.intervalSeconds", self.audit.interval_seconds, 0.1, 86_400.0)?;
        self.cluster.validate()?;
        if !(1..=1_000_000).contains(&self.events.queue_size) {
            return Err(("events.queueSize", format!("must be between 1 and 1000000, got {}", self.events.queue_size)));
        }
        self.registry.validate()?;
        self.backstop.scope()?;
        let b = &self.policy.platform_bounds;
        if b.min_replicas < 0 || b.min_replicas > b.max_replicas {
            return Err((
                "policy.platformBounds",
                format!("minReplicas ({}) must be between 0 and maxReplicas ({})", b.min_replicas, b.max_replicas),
            ));
        }
        if !is_qualified_name(&self.policy.override_rule.annotation) {
            return Err((
                "policy.override.annotation",
                format!(
                    "{:?} is not a valid annotation key (e.g. replica-guard.io/override)",
                    self.policy.override_rule.annotation
                ),
            ));
        }
        Ok(())
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.server.tls.cert_file);
        resolve(&mut self.server.tls.key_file);
        if let Some(f) = &mut self.registry.file {
            resolve(&mut f.path);
        }
        // Every source that reads files of its own: the token and the CA of the remote ones.
        let r = &mut self.registry;
        let remote = [
            r.http.as_mut().map(|h| (&mut h.auth, &mut h.ca_file)),
            r.firestore.as_mut().map(|f| (&mut f.auth, &mut f.ca_file)),
            r.bigquery.as_mut().map(|b| (&mut b.auth, &mut b.ca_file)),
        ];
        for (auth, ca_file) in remote.into_iter().flatten() {
            for path in [auth.bearer_token_file.as_mut(), ca_file.as_mut()].into_iter().flatten() {
                resolve(path);
            }
        }
    }
}

/// `logging.level` is a tracing filter: levels, optionally per module (`replica_guard=debug,info`).
/// A misspelt level would parse as a module name and silence every log, so each level is checked.
fn check_log_level(filter: &str) -> Result<(), (&'static str, String)> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let bad = |what: String| {
        Err((
            "logging.level",
            format!(
                "{what}; use one of trace, debug, info, warn, error, off (optionally per module: replica_guard=debug,info)"
            ),
        ))
    };
    if filter.trim().is_empty() {
        return bad("is empty".to_string());
    }
    for directive in filter.split(',').map(str::trim) {
        let level = directive.rsplit_once('=').map_or(directive, |(_, level)| level);
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return bad(format!("{level:?} in {filter:?} is not a log level"));
        }
    }
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(filter) {
        return bad(format!("{filter:?} is not a valid filter ({e})"));
    }
    Ok(())
}

pub(crate) fn check_seconds(key: &'static str, value: f64, min: f64, max: f64) -> Result<(), (&'static str, String)> {
    if value.is_finite() && (min..=max).contains(&value) {
        Ok(())
    } else {
        Err((key, format!("must be between {min} and {max} seconds, got {value}")))
    }
}

/// An annotation key: optional DNS prefix and `/`, then a name of letters, digits, `-_.`.
fn is_qualified_name(key: &str) -> bool {
    let name = key.rsplit_once('/').map_or(key, |(prefix, name)| if prefix.is_empty() { "" } else { name });
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests;
