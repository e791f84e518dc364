//! The sections of the cluster-facing features: `events:` (Kubernetes Events), `audit:` (the
//! continuous audit, `replica-guard watch`) and `pricing:` (the cost formula of its records).

use serde::Deserialize;

/// The continuous audit (`replica-guard watch`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditConfig {
    /// How often every workload is judged again (also when nothing changed: the registry may have).
    #[serde(default = "default_audit_interval")]
    pub interval_seconds: f64,
    /// The daily usage records (`crate::cluster::usage`).
    #[serde(default)]
    pub usage: UsageConfig,
}

/// `backstop`: whether `watch` writes the backstop policy's parameters (`crate::backstop`). The
/// chart sets it when it renders the policy; the parameters' kind must exist.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackstopConfig {
    #[serde(default)]
    pub enabled: bool,
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
        Self { interval_seconds: default_audit_interval(), usage: UsageConfig::default() }
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
