//! The typed labels of the metrics: recording methods take these, never bare strings, so a
//! label value can only be one the code names (and the series stay bounded).

/// Which request path a request came through (the `kind` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Deployment,
    Scale,
    Hpa,
    /// Not a replica path: allowed without a decision.
    Other,
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Deployment => "deployment",
            RequestKind::Scale => "scale",
            RequestKind::Hpa => "hpa",
            RequestKind::Other => "other",
        }
    }
}

/// Which registry source a registry metric is about (the `source` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    File,
    ConfigMap,
    Http,
    Firestore,
    BigQuery,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::File => "file",
            SourceKind::ConfigMap => "configmap",
            SourceKind::Http => "http",
            SourceKind::Firestore => "firestore",
            SourceKind::BigQuery => "bigquery",
        }
    }
}

/// How a registry lookup was answered (the `result` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupResult {
    Hit,
    Miss,
    Negative,
    Stale,
    Error,
}

impl LookupResult {
    pub fn as_str(self) -> &'static str {
        match self {
            LookupResult::Hit => "hit",
            LookupResult::Miss => "miss",
            LookupResult::Negative => "negative",
            LookupResult::Stale => "stale",
            LookupResult::Error => "error",
        }
    }
}

/// The `namespace`/`deployment` labels of a per-workload metric. The webhook builds them
/// (`webhook::metric_labels`) only from names the registry knows, which bounds their cardinality.
#[derive(Debug, Clone, Copy)]
pub struct WorkloadLabels<'a> {
    pub namespace: &'a str,
    pub deployment: &'a str,
}

/// Which listener a connection metric is about.
#[derive(Debug, Clone, Copy)]
pub enum Listener {
    Admission,
    Admin,
}
