//! The registry's answer as the decision sees it. The decision owns these types; registry
//! sources (`crate::limits`) produce them, so the dependency runs from the edge to the core.

use crate::decision::policy::Mode;
use std::sync::Arc;

/// One registry entry as the decision sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub max_replicas: i32,
    pub min_replicas: Option<i32>,
    /// Overrides the namespace and global mode for this workload.
    pub mode: Option<Mode>,
    /// Who to talk to: shown in deny messages so the developer knows whose PED file it is.
    /// Shared: a registry has far fewer owners than entries.
    pub owner: Option<Arc<str>>,
    pub scope: Scope,
}

/// Which level of the registry an answer came from; messages name it so a developer knows
/// whether to edit their own entry or ask for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Deployment,
    NamespaceDefault,
    GlobalDefault,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Deployment => "deployment",
            Scope::NamespaceDefault => "namespace-default",
            Scope::GlobalDefault => "global-default",
        }
    }
}

/// The registry's answer for one namespace/deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Registered(Limit),
    Unregistered,
    /// The registry could not answer and nothing earlier is known; the reason is shown to users.
    Unavailable(Unreachable),
}

/// Why the registry could not answer: the source's own error (a timeout, a refused connection,
/// an HTTP status), kept as it is, whose words are what the user is shown. Typed by the source
/// that made it (`limits::RegistryError` for a remote registry); the decision only says it.
#[derive(Debug, Clone)]
pub struct Unreachable(Arc<dyn std::error::Error + Send + Sync>);

impl Unreachable {
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(error))
    }

    /// A reason given in words only (a rule table, a fake source).
    pub fn said(words: &str) -> Self {
        #[derive(Debug)]
        struct Said(String);
        impl std::fmt::Display for Said {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::error::Error for Said {}
        Self::new(Said(words.to_string()))
    }

    /// The source's own error, to ask what kind it is (`downcast_ref`).
    pub fn error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self.0.as_ref()
    }
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Two reasons are the same when they say the same: what a user sees.
impl PartialEq for Unreachable {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for Unreachable {}
