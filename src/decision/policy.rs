//! The policy half of the configuration: everything the pure decision needs besides the request
//! and the registered limit. Parsed straight from the `policy:` section of the config file.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// What happens to a violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Deny the request.
    Enforce,
    /// Allow it, with a warning the user sees in kubectl/helm output.
    Warn,
    /// Allow it silently; only audit annotations, the audit log and metrics record it.
    Audit,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Warn => "warn",
            Mode::Audit => "audit",
        }
    }
}

/// What happens to a workload with no entry (and no namespace or global default) in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unregistered {
    Allow,
    Warn,
    Deny,
}

/// What happens when the registry cannot answer and no earlier answer is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    /// Allow, with a warning that the limit could not be checked.
    Open,
    /// Deny, saying the registry is unreachable.
    Closed,
}

/// The replica range the platform allows a registry entry to declare. An entry outside it is
/// reported (warning, audit annotation, metric) but still enforced as registered: the registry
/// is what the team is billed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlatformBounds {
    pub min_replicas: i32,
    pub max_replicas: i32,
}

impl Default for PlatformBounds {
    fn default() -> Self {
        Self { min_replicas: 2, max_replicas: 8 }
    }
}

impl PlatformBounds {
    pub fn contains(&self, max_replicas: i32) -> bool {
        (self.min_replicas..=self.max_replicas).contains(&max_replicas)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespacePolicy {
    pub mode: Option<Mode>,
}

/// Requests that are allowed without evaluation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Exemptions {
    #[serde(default)]
    pub namespaces: BTreeSet<String>,
    #[serde(default)]
    pub users: BTreeSet<String>,
    #[serde(default)]
    pub groups: BTreeSet<String>,
}

/// The break-glass override: an annotation with a reason, honoured only for users in `groups`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OverrideRule {
    #[serde(default = "default_override_annotation")]
    pub annotation: String,
    #[serde(default)]
    pub groups: BTreeSet<String>,
}

fn default_override_annotation() -> String {
    "replica-guard.io/override".to_string()
}

impl Default for OverrideRule {
    fn default() -> Self {
        Self { annotation: default_override_annotation(), groups: BTreeSet::new() }
    }
}

/// When a one-line summary of the changed fields is added to the warnings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ChangeSummary {
    /// Never: the audit log and metrics still record every change.
    Never,
    /// Only when there is already something to warn about, as context for it.
    #[default]
    WithWarnings,
    /// On every request that changed something (a deploy log of every rollout).
    Always,
}

/// Namespaces that are never evaluated, whatever the config says.
pub const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    #[serde(default = "default_mode")]
    pub mode: Mode,
    #[serde(default = "default_unregistered")]
    pub unregistered: Unregistered,
    #[serde(default = "default_failure_policy")]
    pub registry_failure: FailurePolicy,
    #[serde(default)]
    pub platform_bounds: PlatformBounds,
    /// Per-namespace overrides of the global mode.
    #[serde(default)]
    pub namespaces: BTreeMap<String, NamespacePolicy>,
    #[serde(default)]
    pub exemptions: Exemptions,
    #[serde(default, rename = "override")]
    pub override_rule: OverrideRule,
    #[serde(default)]
    pub change_summary: ChangeSummary,
    /// The namespace replica-guard itself runs in: always exempt, so it can never lock itself out.
    #[serde(default)]
    pub own_namespace: Option<String>,
}

fn default_mode() -> Mode {
    Mode::Enforce
}
fn default_unregistered() -> Unregistered {
    Unregistered::Warn
}
fn default_failure_policy() -> FailurePolicy {
    FailurePolicy::Open
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            mode: default_mode(),
            unregistered: default_unregistered(),
            registry_failure: default_failure_policy(),
            platform_bounds: PlatformBounds::default(),
            namespaces: BTreeMap::new(),
            exemptions: Exemptions::default(),
            override_rule: OverrideRule::default(),
            change_summary: ChangeSummary::default(),
            own_namespace: None,
        }
    }
}

impl Policy {
    /// The mode of a namespace before any registry entry says otherwise.
    pub fn namespace_mode(&self, namespace: &str) -> Mode {
        self.namespaces.get(namespace).and_then(|n| n.mode).unwrap_or(self.mode)
    }

    /// Why a request is exempt, if it is.
    pub fn exemption(&self, namespace: &str, user: &str, groups: &[String]) -> Option<Exemption> {
        if SYSTEM_NAMESPACES.contains(&namespace) || self.own_namespace.as_deref() == Some(namespace) {
            return Some(Exemption::SystemNamespace);
        }
        if self.exemptions.namespaces.contains(namespace) {
            return Some(Exemption::Namespace);
        }
        if self.exemptions.users.contains(user) {
            return Some(Exemption::User);
        }
        if groups.iter().any(|g| self.exemptions.groups.contains(g)) {
            return Some(Exemption::Group);
        }
        None
    }

    pub fn may_override(&self, groups: &[String]) -> bool {
        groups.iter().any(|g| self.override_rule.groups.contains(g))
    }
}

/// Which exemption let a request through (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exemption {
    SystemNamespace,
    Namespace,
    User,
    Group,
}

impl Exemption {
    pub fn as_str(self) -> &'static str {
        match self {
            Exemption::SystemNamespace => "system-namespace",
            Exemption::Namespace => "namespace",
            Exemption::User => "user",
            Exemption::Group => "group",
        }
    }
}
