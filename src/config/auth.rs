//! How a remote registry (`registry.http`, `registry.firestore`, `registry.bigquery`) is
//! authenticated to: the settings every such source shares.

use serde::Deserialize;
use std::path::PathBuf;

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
