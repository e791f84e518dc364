//! The snapshot sources: `registry.firestore` (a whole Firestore collection) and
//! `registry.bigquery` (a query over the registry table), each read whole in the background and
//! answered from memory (like the file and the ConfigMap), rather than one document per workload
//! inside the admission call (`registry.http`).

use super::auth::HttpAuth;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FirestoreRegistryConfig {
    /// The Google Cloud project.
    pub project: String,
    #[serde(default = "default_database")]
    pub database: String,
    /// The collection's path under `documents/`, e.g. `ped-limits` (or `teams/platform/limits`).
    pub collection: String,
    /// The REST API's base URL (an emulator or a test server may stand in).
    #[serde(default = "default_firestore_url")]
    pub url: String,
    /// Which document fields hold what. Namespace and deployment may instead come from the
    /// document id, `<namespace>--<deployment>`.
    #[serde(default)]
    pub fields: FirestoreFields,
    /// The deployment name that marks a namespace-wide default.
    #[serde(default = "default_namespace_default")]
    pub namespace_default: String,
    /// Documents per page (Firestore allows up to 300 per page when listing).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// How often the whole collection is read again: with `listen`, the safety net behind the
    /// stream; without it, the only way a change arrives.
    #[serde(default = "default_refresh")]
    pub refresh_seconds: f64,
    /// Follow the collection through Firestore's `Listen` stream (gRPC, on the host of `url`), so
    /// a change reaches the snapshot within seconds instead of at the next sync. Off where only
    /// the REST API is reachable (a proxy that does not pass gRPC).
    #[serde(default = "default_true")]
    pub listen: bool,
    /// One whole sync (all pages) at most; a slower one is abandoned and the last snapshot stays.
    #[serde(default = "default_sync_timeout")]
    pub timeout_seconds: f64,
    /// A sync that would remove more than this fraction of the entries at once is held back (a
    /// broken export must not unregister half the platform); 1 turns the guard off.
    #[serde(default = "default_max_shrink")]
    pub max_shrink_fraction: f64,
    #[serde(default)]
    pub auth: HttpAuth,
    /// PEM CA certificates to trust besides the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// Field names (not pointers: Firestore documents are flat maps of typed values).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FirestoreFields {
    #[serde(default = "f_namespace")]
    pub namespace: String,
    #[serde(default = "f_deployment")]
    pub deployment: String,
    #[serde(default = "f_max")]
    pub max_replicas: String,
    #[serde(default = "f_min")]
    pub min_replicas: String,
    #[serde(default = "f_mode")]
    pub mode: String,
    #[serde(default = "f_owner")]
    pub owner: String,
}

impl Default for FirestoreFields {
    fn default() -> Self {
        Self {
            namespace: f_namespace(),
            deployment: f_deployment(),
            max_replicas: f_max(),
            min_replicas: f_min(),
            mode: f_mode(),
            owner: f_owner(),
        }
    }
}

fn f_namespace() -> String {
    "namespace".into()
}
fn f_deployment() -> String {
    "deployment".into()
}
fn f_max() -> String {
    "maxReplicas".into()
}
fn f_min() -> String {
    "minReplicas".into()
}
fn f_mode() -> String {
    "mode".into()
}
fn f_owner() -> String {
    "owner".into()
}
fn default_database() -> String {
    "(default)".into()
}
fn default_firestore_url() -> String {
    "https://firestore.googleapis.com/v1".into()
}
fn default_namespace_default() -> String {
    "_default".into()
}
fn default_page_size() -> u32 {
    300
}
fn default_true() -> bool {
    true
}
fn default_refresh() -> f64 {
    60.0
}
fn default_sync_timeout() -> f64 {
    60.0
}
fn default_max_shrink() -> f64 {
    0.5
}

impl FirestoreRegistryConfig {
    /// Settings in range; the error is (key, problem).
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        let sync =
            Sync { refresh: self.refresh_seconds, timeout: self.timeout_seconds, max_shrink: self.max_shrink_fraction };
        sync.check(&FIRESTORE_KEYS, &self.url, &self.auth)?;
        for (key, value) in [
            ("registry.firestore.project", &self.project),
            ("registry.firestore.collection", &self.collection),
            ("registry.firestore.database", &self.database),
        ] {
            if value.trim().is_empty() {
                return Err((key, "must not be empty".into()));
            }
        }
        if !(1..=300).contains(&self.page_size) {
            return Err(("registry.firestore.pageSize", format!("must be between 1 and 300, got {}", self.page_size)));
        }
        Ok(())
    }

    /// The sync's timing: every `refreshSeconds`, at most `timeoutSeconds`, the shrink guard.
    pub fn sync(&self) -> (std::time::Duration, std::time::Duration, f64) {
        (super::seconds(self.refresh_seconds), super::seconds(self.timeout_seconds), self.max_shrink_fraction)
    }

    /// The gRPC endpoint of the `Listen` stream: `url`'s scheme and host, without the REST path.
    pub fn grpc_url(&self) -> String {
        let url = self.url.trim_end_matches('/');
        let host_start = url.find("://").map_or(0, |i| i + 3);
        match url[host_start..].find('/') {
            Some(path) => url[..host_start + path].to_string(),
            None => url.to_string(),
        }
    }

    /// `projects/{project}/databases/{database}`: the database a `Listen` stream names.
    pub fn database_path(&self) -> String {
        format!("projects/{}/databases/{}", self.project, self.database)
    }

    /// The collection's list URL (without paging parameters).
    pub fn list_url(&self) -> String {
        format!(
            "{}/projects/{}/databases/{}/documents/{}",
            self.url.trim_end_matches('/'),
            self.project,
            self.database,
            self.collection.trim_matches('/')
        )
    }
}

/// `registry.bigquery`: a SQL query over the table the onboarding pipeline fills, run in the
/// background every `refreshSeconds`; its columns are `namespace`, `deployment`, `max_replicas`
/// and optionally `min_replicas`, `mode`, `owner`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BigQueryRegistryConfig {
    /// The project the query job runs (and is billed) in.
    pub project: String,
    /// Standard SQL, e.g. `SELECT namespace, deployment, max_replicas FROM ped.user_replicas_limits`.
    pub query: String,
    /// The job's location (`EU`, `US`, a region), when the dataset is not in the default one.
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default = "default_bigquery_url")]
    pub url: String,
    /// Rows per page of results.
    #[serde(default = "default_rows_per_page")]
    pub page_size: u32,
    /// The deployment value (besides NULL) that marks a namespace-wide default.
    #[serde(default = "default_namespace_default")]
    pub namespace_default: String,
    #[serde(default = "default_refresh")]
    pub refresh_seconds: f64,
    #[serde(default = "default_sync_timeout")]
    pub timeout_seconds: f64,
    #[serde(default = "default_max_shrink")]
    pub max_shrink_fraction: f64,
    #[serde(default)]
    pub auth: HttpAuth,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_bigquery_url() -> String {
    "https://bigquery.googleapis.com/bigquery/v2".into()
}
fn default_rows_per_page() -> u32 {
    10_000
}

impl BigQueryRegistryConfig {
    /// The sync's timing: every `refreshSeconds`, at most `timeoutSeconds`, the shrink guard.
    pub fn sync(&self) -> (std::time::Duration, std::time::Duration, f64) {
        (super::seconds(self.refresh_seconds), super::seconds(self.timeout_seconds), self.max_shrink_fraction)
    }

    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        let sync =
            Sync { refresh: self.refresh_seconds, timeout: self.timeout_seconds, max_shrink: self.max_shrink_fraction };
        sync.check(&BIGQUERY_KEYS, &self.url, &self.auth)?;
        for (key, value) in [("registry.bigquery.project", &self.project), ("registry.bigquery.query", &self.query)] {
            if value.trim().is_empty() {
                return Err((key, "must not be empty".into()));
            }
        }
        if !(1..=50_000).contains(&self.page_size) {
            return Err(("registry.bigquery.pageSize", format!("must be between 1 and 50000, got {}", self.page_size)));
        }
        Ok(())
    }
}

/// The config keys of one snapshot source's shared settings, for error messages.
struct Keys {
    refresh: &'static str,
    timeout: &'static str,
    max_shrink: &'static str,
    url: &'static str,
    auth: &'static str,
}

const FIRESTORE_KEYS: Keys = Keys {
    refresh: "registry.firestore.refreshSeconds",
    timeout: "registry.firestore.timeoutSeconds",
    max_shrink: "registry.firestore.maxShrinkFraction",
    url: "registry.firestore.url",
    auth: "registry.firestore.auth",
};

const BIGQUERY_KEYS: Keys = Keys {
    refresh: "registry.bigquery.refreshSeconds",
    timeout: "registry.bigquery.timeoutSeconds",
    max_shrink: "registry.bigquery.maxShrinkFraction",
    url: "registry.bigquery.url",
    auth: "registry.bigquery.auth",
};

/// What every snapshot source has: how often, how long, how much may go at once.
struct Sync {
    refresh: f64,
    timeout: f64,
    max_shrink: f64,
}

impl Sync {
    fn check(&self, keys: &Keys, url: &str, auth: &HttpAuth) -> Result<(), (&'static str, String)> {
        super::check_seconds(keys.refresh, self.refresh, 1.0, 86400.0)?;
        super::check_seconds(keys.timeout, self.timeout, 0.1, 3600.0)?;
        if !(0.0..=1.0).contains(&self.max_shrink) {
            let problem = format!("must be between 0 and 1 (a fraction of the entries), got {}", self.max_shrink);
            return Err((keys.max_shrink, problem));
        }
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err((keys.url, format!("{url:?} is not an http(s) URL")));
        }
        if auth.bearer_token_file.is_some() && auth.gce_metadata.is_some() {
            return Err((keys.auth, "set bearerTokenFile or gceMetadata, not both".into()));
        }
        Ok(())
    }
}
