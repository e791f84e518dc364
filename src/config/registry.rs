//! The `registry:` section: which source the PED limits come from, and the cache in front of a
//! remote one.

use super::auth::HttpAuth;
use super::{check_seconds, default_poll_interval};
use serde::Deserialize;
use std::path::PathBuf;

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
    /// A whole Firestore collection, listed in the background (`config::snapshot`).
    #[serde(default)]
    pub firestore: Option<super::snapshot::FirestoreRegistryConfig>,
    /// A BigQuery query over the registry table, run in the background (`config::snapshot`).
    #[serde(default)]
    pub bigquery: Option<super::snapshot::BigQueryRegistryConfig>,
    /// The cache in front of the `http` source.
    #[serde(default)]
    pub cache: CacheConfig,
    /// The most entries a registry may hold, whichever source: a sync or a document with more
    /// fails, naming this key, and the last good registry stays (`limits::entry`).
    #[serde(default = "default_max_entries")]
    pub max_entries: usize,
}

/// How many entries a registry may hold unless `registry.maxEntries` says otherwise.
pub const DEFAULT_MAX_ENTRIES: usize = 200_000;

fn default_max_entries() -> usize {
    DEFAULT_MAX_ENTRIES
}

/// The source chosen in `registry`.
pub enum Source<'a> {
    File(&'a FileRegistryConfig),
    Http(&'a HttpRegistryConfig),
    ConfigMap(&'a ConfigMapRegistryConfig),
    Firestore(&'a super::snapshot::FirestoreRegistryConfig),
    BigQuery(&'a super::snapshot::BigQueryRegistryConfig),
}

impl RegistryConfig {
    /// Exactly one source, and its settings in range; the error is (key, problem).
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        let r = self;
        let chosen =
            [r.file.is_some(), r.http.is_some(), r.config_map.is_some(), r.firestore.is_some(), r.bigquery.is_some()]
                .iter()
                .filter(|c| **c)
                .count();
        if chosen != 1 {
            return Err((
                "registry",
                "choose exactly one source: registry.file, registry.http, registry.configMap, registry.firestore or registry.bigquery"
                    .into(),
            ));
        }
        if !(1..=10_000_000).contains(&r.max_entries) {
            return Err(("registry.maxEntries", format!("must be between 1 and 10000000, got {}", r.max_entries)));
        }
        if let Some(f) = &r.firestore {
            f.validate()?;
        }
        if let Some(b) = &r.bigquery {
            b.validate()?;
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
            check_seconds("registry.cache.rereadTimeoutSeconds", c.reread_timeout_seconds, 0.0, 10.0)?;
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

    pub fn source(&self) -> Source<'_> {
        match (&self.file, &self.http, &self.config_map, &self.firestore, &self.bigquery) {
            (Some(f), ..) => Source::File(f),
            (_, Some(h), ..) => Source::Http(h),
            (_, _, Some(c), ..) => Source::ConfigMap(c),
            (_, _, _, Some(f), _) => Source::Firestore(f),
            (.., Some(b)) => Source::BigQuery(b),
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
    /// PEM CA certificates to trust besides the system's, for a registry behind an internal CA.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
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
    /// Before refusing on a cached entry, the entry is read again from the registry, waiting at
    /// most this long (a share of the webhook's time budget, 3 s in the chart); on timeout or
    /// error the cached answer stands. 0: never read again.
    #[serde(default = "default_reread_timeout")]
    pub reread_timeout_seconds: f64,
}

fn default_reread_timeout() -> f64 {
    1.0
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
            reread_timeout_seconds: default_reread_timeout(),
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
