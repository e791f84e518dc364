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
    Unavailable(String),
}
