//! Why a registry could not be read: one error for every source, whose text names the place
//! (the URL, the page, the document or row, the field) and whose `metric_label` is one of a few
//! fixed words, so `replica_guard_registry_reload_failures_total{reason}` can say why without a
//! label per URL or document.

use super::entry::TooMany;
use super::file::LimitsFileError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// No answer, or not the whole answer, within the time allowed (saying how long that was).
    #[error("{0}")]
    Timeout(String),
    /// The registry could not be reached (connection refused, TLS, DNS).
    #[error("{url}: {detail}")]
    Transport { url: String, detail: String },
    /// It answered with an error status.
    #[error("{url} answered HTTP {status}: {detail}")]
    Status { url: String, status: String, detail: String },
    /// An answer larger than any the registry should send.
    #[error("{url}: the response is larger than {max} bytes; refused unread")]
    TooLarge { url: String, max: usize },
    /// No credentials could be had (a token file, the metadata server).
    #[error("{0}")]
    Auth(String),
    /// An answer that is not what the registry's API sends (not JSON, not a listing).
    #[error("{0}")]
    Decode(String),
    /// One entry out of bounds (`limits::entry`): `place` names the document or row and field.
    #[error("{place}: {problem}")]
    Entry { place: String, problem: String },
    /// Two entries for one workload.
    #[error("{place} and {first} both register {namespace} {what}; one must go")]
    Duplicate { place: String, first: String, namespace: String, what: String },
    #[error("{0}")]
    TooMany(#[from] TooMany),
    /// Where it happened (`page 3`, `jobs.getQueryResults, page 2`), around what happened.
    #[error("{context}: {error}")]
    At { context: String, error: Box<RegistryError> },
}

/// Why the registry has not been read yet: what a command waiting for its first read is told
/// (`LimitSource::first_load`), and what `/readyz` waits out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotRead {
    /// A file or a ConfigMap whose document is not a valid registry.
    #[error("{0}")]
    Invalid(#[from] LimitsFileError),
    /// A remote registry's listing failed.
    #[error("{0}")]
    Registry(#[from] RegistryError),
    /// The registry ConfigMap cannot be used: `problem` says why (not found, deleted, no such key,
    /// the watch failing).
    #[error("the ConfigMap {namespace}/{name} {problem}")]
    ConfigMap { namespace: String, name: String, problem: String },
    /// What read the registry is gone (the process is stopping).
    #[error("the registry source stopped before its first read")]
    Stopped,
}

impl RegistryError {
    /// `error`, said to have happened at `context`.
    pub fn at(context: impl Into<String>, error: RegistryError) -> Self {
        Self::At { context: context.into(), error: Box::new(error) }
    }

    /// One of a fixed set of words, for a metric label.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::Transport { .. } => "transport",
            Self::Status { .. } => "status",
            Self::TooLarge { .. } => "too-large",
            Self::Auth(_) => "auth",
            Self::Decode(_) => "decode",
            Self::Entry { .. } => "entry",
            Self::Duplicate { .. } => "duplicate",
            Self::TooMany(_) => "too-many",
            Self::At { error, .. } => error.metric_label(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_label_is_the_cause_wherever_it_happened() {
        let e = RegistryError::at(
            "page 3",
            RegistryError::Status { url: "u".into(), status: "503".into(), detail: "busy".into() },
        );
        assert_eq!(e.to_string(), "page 3: u answered HTTP 503: busy");
        assert_eq!(e.metric_label(), "status");
        assert_eq!(RegistryError::from(TooMany { max: 2 }).metric_label(), "too-many");
    }
}
