//! The config file (`replica-guard serve --config FILE`), read once at start. Every error names
//! the key and says what would be right; relative paths are taken from the config file's folder.

use crate::decision::policy::Policy;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {key}: {problem}")]
    Invalid { path: PathBuf, key: String, problem: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub policy: Policy,
    pub registry: RegistryConfig,
    #[serde(default)]
    pub logging: LoggingConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerConfig {
    /// The HTTPS admission listener.
    #[serde(default = "default_address")]
    pub address: SocketAddr,
    /// The plain-HTTP listener for /healthz, /readyz and /metrics.
    #[serde(default = "default_admin_address")]
    pub admin_address: SocketAddr,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// How long one request may take, from its first byte to the answer.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_seconds: f64,
    /// How long a client may take to finish the TLS handshake, and then each request's headers;
    /// a client that trickles bytes (slowloris) is disconnected after it.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_seconds: f64,
    /// After SIGTERM, how long to keep serving while not ready, so that endpoints are updated
    /// before the listener closes.
    #[serde(default)]
    pub shutdown_delay_seconds: f64,
    /// After the listener closes, how long in-flight requests may take to finish.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout_seconds: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default = "default_cert_file")]
    pub cert_file: PathBuf,
    #[serde(default = "default_key_file")]
    pub key_file: PathBuf,
    /// Development only: create a CA and a serving certificate for localhost/127.0.0.1 next to
    /// `certFile` when the files are missing. Production configs leave this off.
    #[serde(default)]
    pub generate_dev_certificate: bool,
    /// How often the certificate files are checked for a new version.
    #[serde(default = "default_poll_interval")]
    pub reload_interval_seconds: f64,
}

/// Where the PED registry is read from: exactly one source.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistryConfig {
    /// A registry YAML file (in Kubernetes: a mounted ConfigMap).
    #[serde(default)]
    pub file: Option<FileRegistryConfig>,
    /// A registry service or Firestore, asked per workload through the cache.
    #[serde(default)]
    pub http: Option<HttpRegistryConfig>,
    /// A ConfigMap holding the registry YAML, watched through the Kubernetes API.
    #[serde(default)]
    pub config_map: Option<ConfigMapRegistryConfig>,
    /// The cache in front of the `http` source.
    #[serde(default)]
    pub cache: CacheConfig,
}

/// The source chosen in `registry`.
pub enum Source<'a> {
    File(&'a FileRegistryConfig),
    Http(&'a HttpRegistryConfig),
    ConfigMap(&'a ConfigMapRegistryConfig),
}

impl RegistryConfig {
    pub fn source(&self) -> Source<'_> {
        match (&self.file, &self.http, &self.config_map) {
            (Some(f), _, _) => Source::File(f),
            (_, Some(h), _) => Source::Http(h),
            (_, _, Some(c)) => Source::ConfigMap(c),
            // `validate` refuses a config without exactly one source, so a loaded Config has one.
            _ => unreachable!("registry source checked by Config::validate"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRegistryConfig {
    /// The entry of one workload, e.g. `https://ped.example.com/limits/{namespace}/{name}`.
    pub url: String,
    /// Asked when `url` answers 404: the namespace-wide default, e.g. `.../limits/{namespace}/_default`.
    #[serde(default)]
    pub namespace_default_url: Option<String>,
    #[serde(default)]
    pub format: DocumentFormat,
    /// Where the fields are in a `custom` document (JSON pointers).
    #[serde(default)]
    pub fields: FieldPointers,
    #[serde(default)]
    pub auth: HttpAuth,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_seconds: f64,
    /// The whole lookup (token, request, fallback): keep it well under the webhook's timeoutSeconds.
    #[serde(default = "default_registry_timeout")]
    pub timeout_seconds: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocumentFormat {
    /// A JSON document read through `fields` pointers; numbers may be integers or numeric strings.
    #[default]
    Custom,
    /// A Firestore REST document: `fields.maxReplicas.integerValue` (a string) and so on.
    Firestore,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FieldPointers {
    #[serde(default = "ptr_max")]
    pub max_replicas: String,
    #[serde(default = "ptr_min")]
    pub min_replicas: String,
    #[serde(default = "ptr_mode")]
    pub mode: String,
    #[serde(default = "ptr_owner")]
    pub owner: String,
}

fn ptr_max() -> String {
    "/maxReplicas".into()
}
fn ptr_min() -> String {
    "/minReplicas".into()
}
fn ptr_mode() -> String {
    "/mode".into()
}
fn ptr_owner() -> String {
    "/owner".into()
}

impl Default for FieldPointers {
    fn default() -> Self {
        Self { max_replicas: ptr_max(), min_replicas: ptr_min(), mode: ptr_mode(), owner: ptr_owner() }
    }
}

impl FieldPointers {
    /// Where a Firestore REST document keeps each field.
    pub fn firestore() -> Self {
        Self {
            max_replicas: "/fields/maxReplicas/integerValue".into(),
            min_replicas: "/fields/minReplicas/integerValue".into(),
            mode: "/fields/mode/stringValue".into(),
            owner: "/fields/owner/stringValue".into(),
        }
    }
}

/// How the registry is authenticated to: at most one way.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpAuth {
    /// A file holding a bearer token, re-read when it changes (a projected service-account token).
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// A token from the GCE/GKE metadata server (Workload Identity), cached until shortly before it expires.
    #[serde(default)]
    pub gce_metadata: Option<GceMetadataAuth>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GceMetadataAuth {
    #[serde(default = "default_metadata_url")]
    pub url: String,
}

fn default_metadata_url() -> String {
    "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token".into()
}
fn default_connect_timeout() -> f64 {
    0.5
}
fn default_registry_timeout() -> f64 {
    1.0
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CacheConfig {
    #[serde(default = "default_ttl")]
    pub ttl_seconds: f64,
    #[serde(default = "default_negative_ttl")]
    pub negative_ttl_seconds: f64,
    #[serde(default = "default_error_ttl")]
    pub error_ttl_seconds: f64,
    #[serde(default = "default_capacity")]
    pub capacity: u64,
}

fn default_ttl() -> f64 {
    60.0
}
fn default_negative_ttl() -> f64 {
    10.0
}
fn default_error_ttl() -> f64 {
    5.0
}
fn default_capacity() -> u64 {
    100_000
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            ttl_seconds: default_ttl(),
            negative_ttl_seconds: default_negative_ttl(),
            error_ttl_seconds: default_error_ttl(),
            capacity: default_capacity(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigMapRegistryConfig {
    pub namespace: String,
    pub name: String,
    /// The data key holding the registry YAML.
    #[serde(default = "default_configmap_key")]
    pub key: String,
}

fn default_configmap_key() -> String {
    "limits.yaml".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileRegistryConfig {
    pub path: PathBuf,
    #[serde(default = "default_poll_interval")]
    pub poll_interval_seconds: f64,
}

#[derive(Debug, Clone, Default, Deserialize)]
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

fn default_address() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8443))
}
fn default_admin_address() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
}
fn default_max_body_bytes() -> usize {
    3 * 1024 * 1024
}
fn default_request_timeout() -> f64 {
    10.0
}
fn default_header_timeout() -> f64 {
    10.0
}
fn default_shutdown_timeout() -> f64 {
    25.0
}
fn default_cert_file() -> PathBuf {
    PathBuf::from("/etc/replica-guard/tls/tls.crt")
}
fn default_key_file() -> PathBuf {
    PathBuf::from("/etc/replica-guard/tls/tls.key")
}
fn default_poll_interval() -> f64 {
    1.0
}
fn default_log_level() -> String {
    "info".to_string()
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            address: default_address(),
            admin_address: default_admin_address(),
            tls: TlsConfig::default(),
            max_body_bytes: default_max_body_bytes(),
            request_timeout_seconds: default_request_timeout(),
            header_timeout_seconds: default_header_timeout(),
            shutdown_delay_seconds: 0.0,
            shutdown_timeout_seconds: default_shutdown_timeout(),
        }
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert_file: default_cert_file(),
            key_file: default_key_file(),
            generate_dev_certificate: false,
            reload_interval_seconds: default_poll_interval(),
        }
    }
}

/// Seconds from the config as a Duration (validated to be finite and non-negative first).
pub fn seconds(value: f64) -> Duration {
    Duration::from_secs_f64(value.max(0.0))
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
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
            let problem = e.into_inner().to_string();
            // serde_yaml names the enclosing path itself ("server: unknown field ..."); the key says it already.
            let problem = match problem.split_once(": ") {
                Some((prefix, rest)) if key.starts_with(prefix) => rest.to_string(),
                _ => problem,
            };
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
        check_seconds("server.requestTimeoutSeconds", s.request_timeout_seconds, 0.1, 30.0)?;
        check_seconds("server.headerTimeoutSeconds", s.header_timeout_seconds, 0.1, 60.0)?;
        check_seconds("server.shutdownDelaySeconds", s.shutdown_delay_seconds, 0.0, 300.0)?;
        check_seconds("server.shutdownTimeoutSeconds", s.shutdown_timeout_seconds, 0.0, 300.0)?;
        check_seconds("server.tls.reloadIntervalSeconds", s.tls.reload_interval_seconds, 0.1, 3600.0)?;
        if s.address == s.admin_address && s.address.port() != 0 {
            return Err(("server.adminAddress", format!("must differ from server.address ({})", s.address)));
        }
        self.validate_registry()?;
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

    fn validate_registry(&self) -> Result<(), (&'static str, String)> {
        let r = &self.registry;
        let chosen = [r.file.is_some(), r.http.is_some(), r.config_map.is_some()].iter().filter(|c| **c).count();
        if chosen != 1 {
            return Err((
                "registry",
                "choose exactly one source: registry.file, registry.http or registry.configMap".into(),
            ));
        }
        if let Some(f) = &r.file {
            check_seconds("registry.file.pollIntervalSeconds", f.poll_interval_seconds, 0.1, 3600.0)?;
            if f.path.as_os_str().is_empty() {
                return Err(("registry.file.path", "must name the registry YAML file".to_string()));
            }
        }
        if let Some(h) = &r.http {
            check_url("registry.http.url", &h.url, true)?;
            if let Some(url) = &h.namespace_default_url {
                check_url("registry.http.namespaceDefaultUrl", url, false)?;
            }
            check_seconds("registry.http.connectTimeoutSeconds", h.connect_timeout_seconds, 0.01, 10.0)?;
            check_seconds("registry.http.timeoutSeconds", h.timeout_seconds, 0.01, 10.0)?;
            if h.auth.bearer_token_file.is_some() && h.auth.gce_metadata.is_some() {
                return Err(("registry.http.auth", "set bearerTokenFile or gceMetadata, not both".into()));
            }
            for (key, pointer) in [
                ("registry.http.fields.maxReplicas", &h.fields.max_replicas),
                ("registry.http.fields.minReplicas", &h.fields.min_replicas),
                ("registry.http.fields.mode", &h.fields.mode),
                ("registry.http.fields.owner", &h.fields.owner),
            ] {
                if !pointer.starts_with('/') {
                    return Err((key, format!("{pointer:?} is not a JSON pointer (e.g. /maxReplicas)")));
                }
            }
            let c = &r.cache;
            check_seconds("registry.cache.ttlSeconds", c.ttl_seconds, 0.0, 86400.0)?;
            check_seconds("registry.cache.negativeTtlSeconds", c.negative_ttl_seconds, 0.0, 86400.0)?;
            check_seconds("registry.cache.errorTtlSeconds", c.error_ttl_seconds, 0.0, 3600.0)?;
            if c.capacity == 0 {
                return Err(("registry.cache.capacity", "must be at least 1".into()));
            }
        }
        if let Some(c) = &r.config_map {
            for (key, value) in [("registry.configMap.namespace", &c.namespace), ("registry.configMap.name", &c.name)] {
                if value.is_empty() {
                    return Err((key, "must not be empty".into()));
                }
            }
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
        if let Some(token) = self.registry.http.as_mut().and_then(|h| h.auth.bearer_token_file.as_mut()) {
            resolve(token);
        }
    }
}

fn check_seconds(key: &'static str, value: f64, min: f64, max: f64) -> Result<(), (&'static str, String)> {
    if value.is_finite() && (min..=max).contains(&value) {
        Ok(())
    } else {
        Err((key, format!("must be between {min} and {max} seconds, got {value}")))
    }
}

/// An http(s) URL; the per-workload one must contain `{namespace}` and `{name}`.
fn check_url(key: &'static str, url: &str, per_workload: bool) -> Result<(), (&'static str, String)> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err((key, format!("{url:?} must start with http:// or https://")));
    }
    if url.parse::<axum::http::Uri>().is_err() && url.replace(['{', '}'], "").parse::<axum::http::Uri>().is_err() {
        return Err((key, format!("{url:?} is not a valid URL")));
    }
    if !url.contains("{namespace}") || (per_workload && !url.contains("{name}")) {
        let need = if per_workload { "{namespace} and {name}" } else { "{namespace}" };
        return Err((key, format!("{url:?} must contain {need}, replaced by the workload's")));
    }
    Ok(())
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
mod tests {
    use super::*;
    use crate::decision::policy::Mode;

    const MINIMAL: &str = "registry:\n  file:\n    path: limits.yaml\n";

    #[test]
    fn minimal_config_gets_production_defaults() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.server.address.port(), 8443);
        assert_eq!(c.server.admin_address.port(), 8080);
        assert_eq!(c.policy.mode, Mode::Enforce);
        assert!(!c.server.tls.generate_dev_certificate, "dev certificates must be opt-in");
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("registry: {file: {path: x}}\nserver: {adress: 1}", "server.adress", "unknown field `adress`"),
            ("registry: {file: {path: x}}\nserver: {address: nowhere}", "server.address", "invalid socket address"),
            ("registry: {file: {path: x}}\npolicy: {mode: block}", "policy.mode", "unknown variant `block`"),
            ("registry: {file: {path: x}}\nserver: {maxBodyBytes: 10}", "server.maxBodyBytes", "between 1024"),
            (
                "registry: {file: {path: x}}\nserver: {requestTimeoutSeconds: 60}",
                "server.requestTimeoutSeconds",
                "between",
            ),
            (
                "registry: {file: {path: x}}\npolicy: {platformBounds: {minReplicas: 9, maxReplicas: 8}}",
                "policy.platformBounds",
                "minReplicas (9)",
            ),
            (
                "registry: {file: {path: x}}\npolicy: {override: {annotation: 'a b'}}",
                "policy.override.annotation",
                "not a valid annotation key",
            ),
            ("registry: {htp: {}}", "registry.htp", "unknown field `htp`"),
            ("registry: {}", "registry", "choose exactly one source"),
            (
                "registry: {file: {path: x}, configMap: {namespace: a, name: b}}",
                "registry",
                "choose exactly one source",
            ),
            ("registry: {http: {url: 'https://ped/x'}}", "registry.http.url", "must contain {namespace} and {name}"),
            ("registry: {http: {url: 'ftp://ped/{namespace}/{name}'}}", "registry.http.url", "must start with http"),
            (
                "registry: {http: {url: 'https://p/{namespace}/{name}', timeoutSeconds: 30}}",
                "registry.http.timeoutSeconds",
                "between",
            ),
            (
                "registry: {http: {url: 'https://p/{namespace}/{name}', format: xml}}",
                "registry.http.format",
                "unknown variant `xml`",
            ),
            (
                "registry: {http: {url: 'https://p/{namespace}/{name}', fields: {maxReplicas: max}}}",
                "registry.http.fields.maxReplicas",
                "not a JSON pointer",
            ),
            (
                "registry: {http: {url: 'https://p/{namespace}/{name}', auth: {bearerTokenFile: t, gceMetadata: {}}}}",
                "registry.http.auth",
                "not both",
            ),
            ("server: {}", "(top level)", "missing field `registry`"),
        ];
        for (yaml, key, problem) in cases {
            let (k, p) = Config::parse(yaml).unwrap_err();
            assert_eq!(k, key, "{yaml}: {p}");
            assert!(p.contains(problem), "{yaml}: got {p:?}, want {problem:?}");
        }
    }

    #[test]
    fn relative_paths_are_taken_from_the_config_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, format!("{MINIMAL}server: {{tls: {{certFile: certs/tls.crt, keyFile: /abs/tls.key}}}}"))
            .unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.server.tls.cert_file, dir.path().join("certs/tls.crt"));
        assert_eq!(c.server.tls.key_file, PathBuf::from("/abs/tls.key"));
        let Source::File(f) = c.registry.source() else { panic!("a file source") };
        assert_eq!(f.path, dir.path().join("limits.yaml"));
    }
}
