//! The sections of the cluster-facing features: `cluster:` (which cluster this is), `events:`
//! (Kubernetes Events), `audit:` (`watch`, `replica-guard watch`) and `pricing:` (the
//! cost formula of its records).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::Selector;
use serde::Deserialize;

/// `cluster:` the name every record read by other systems carries (usage records, audit output,
/// reports, Events' reporting instance), so that one billing table holds many clusters' lines.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterConfig {
    #[serde(default)]
    pub name: Option<String>,
}

impl ClusterConfig {
    /// A name as it goes into a BigQuery column and a Kubernetes label value: 1 to 63 lowercase
    /// letters, digits, `-`, `.` or `_`, starting and ending with a letter or digit. Optional:
    /// without one, `watch` names the cluster by its `kube-system` namespace's UID (and says so).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let Some(name) = &self.name else { return Ok(()) };
        let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let valid = (1..=63).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
            && edge(name.chars().next())
            && edge(name.chars().last());
        if valid {
            Ok(())
        } else {
            Err((
                "cluster.name",
                format!(
                    "{name:?} is not a cluster name: use 1 to 63 lowercase letters, digits, '-', '.' or '_', \
                     starting and ending with a letter or digit (e.g. prod-eu-1)"
                ),
            ))
        }
    }
}

/// `replica-guard watch`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditConfig {
    /// How often every workload is judged again (also when nothing changed: the registry may have).
    #[serde(default = "default_audit_interval")]
    pub interval_seconds: f64,
    /// The daily usage records (`crate::cluster::usage`).
    #[serde(default)]
    pub usage: UsageConfig,
    /// Which policy report API to write (`crate::cluster::policy_report`).
    #[serde(default)]
    pub reports: ReportsConfig,
}

/// `audit.reports`: where the audit's results go for Policy Reporter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportsConfig {
    /// OpenReports when the cluster serves it, else PolicyReports when served, else none.
    #[default]
    Auto,
    /// `openreports.io/v1alpha1` Reports only (when served).
    Openreports,
    /// `wgpolicyk8s.io/v1alpha2` PolicyReports only (when served).
    Policyreports,
    /// Both, where served (Policy Reporter then shows each result twice).
    Both,
    Off,
}

/// `backstop`: whether `watch` writes the backstop policy's parameters (`crate::backstop`). The
/// chart sets it when it renders the policy; the parameters' kind must exist.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackstopConfig {
    #[serde(default)]
    pub enabled: bool,
    /// The namespaces in scope: the very `namespaceSelector` of the webhook and the policy's
    /// binding (the chart renders all three from one definition). Only namespaces it selects get
    /// parameters, so `kubectl get backstoplimits -A` lists what is enforced. Absent: every
    /// namespace with enforce-mode entries (but the exempt ones).
    #[serde(default)]
    pub namespace_selector: Option<LabelSelector>,
}

impl BackstopConfig {
    /// The scope's namespace selector as a label selector the API server filters a watch by.
    pub fn scope(&self) -> Result<Option<Selector>, (&'static str, String)> {
        let Some(selector) = &self.namespace_selector else { return Ok(None) };
        let problem = |what: String| {
            Err((
                "backstop.namespaceSelector",
                format!("{what}: use matchLabels and matchExpressions with In, NotIn, Exists or DoesNotExist"),
            ))
        };
        for e in selector.match_expressions.iter().flatten() {
            let needs_values = matches!(e.operator.as_str(), "In" | "NotIn");
            if needs_values && e.values.as_ref().is_none_or(Vec::is_empty) {
                return problem(format!("{}: a {} needs values", e.key, e.operator));
            }
            if e.key.is_empty() {
                return problem("a matchExpression without a key".into());
            }
        }
        match Selector::try_from(selector.clone()) {
            Ok(s) => Ok(Some(s)),
            Err(e) => problem(e.0.trim_end_matches('.').to_string()),
        }
    }
}

/// `audit.usage`: one JSON line per Deployment per UTC day.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UsageConfig {
    #[serde(default)]
    pub enabled: bool,
    /// The ConfigMap that keeps the day across restarts (the chart sets it; without it a restart
    /// loses the day's highs so far).
    #[serde(default)]
    pub state: Option<ConfigMapRef>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigMapRef {
    pub namespace: String,
    pub name: String,
}

fn default_audit_interval() -> f64 {
    30.0
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            interval_seconds: default_audit_interval(),
            usage: UsageConfig::default(),
            reports: ReportsConfig::default(),
        }
    }
}

/// Kubernetes Events from admission decisions (`crate::events`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventsConfig {
    /// Needs a Kubernetes client (in-cluster or kubeconfig) allowed to create and patch
    /// `events.k8s.io` events; off unless set (the chart sets it).
    #[serde(default)]
    pub enabled: bool,
    /// Events waiting to be published; when full, new ones are dropped and counted.
    #[serde(default = "default_event_queue")]
    pub queue_size: usize,
}

fn default_event_queue() -> usize {
    1024
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self { enabled: false, queue_size: default_event_queue() }
    }
}

/// `pricing:` the platform's monthly cost formula, `base + (perVcpu * vCPU + perGib * memGiB) *
/// maxReplicas / divisor` (`crate::cluster::pricing` computes it).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pricing {
    pub base: f64,
    pub per_vcpu: f64,
    pub per_gib: f64,
    pub divisor: f64,
}
