//! What a decision is about: the workload, the path the request came through, the operation,
//! the replicas asked for and what changed — read from the request at the edge (`admission`),
//! judged here.

use super::changes::{self, FieldChange};

/// Which API path the request came through; it decides how replicas are named in messages and
/// what the user is told to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Path {
    /// `apps/v1` Deployment: `kubectl apply`, `helm upgrade`, `kubectl patch`.
    Deployment,
    /// `deployments/scale`: `kubectl scale` and the HPA controller.
    Scale,
    /// A HorizontalPodAutoscaler targeting the Deployment; `hpa` is its own name.
    Hpa { hpa: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
        }
    }
}

/// Everything the decision needs to know about one admission request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub path: Path,
    pub operation: Operation,
    pub namespace: String,
    /// The Deployment whose registered limit applies (an HPA's scale target).
    pub deployment: String,
    /// What the change asks for: Deployment/Scale `spec.replicas`, HPA `spec.maxReplicas`.
    pub new_replicas: i32,
    /// The same value before the change (UPDATE only).
    pub old_replicas: Option<i32>,
    /// HPA `spec.minReplicas`, named in messages when it too is above the maximum.
    pub min_replicas: Option<i32>,
    /// The break-glass annotation's value on the new object, if present.
    pub override_reason: Option<String>,
    pub user: String,
    pub groups: Vec<String>,
    pub dry_run: bool,
    /// Classified field changes (UPDATE only; empty for CREATE), the first
    /// `changes::MAX_LISTED` of them.
    pub changes: Vec<FieldChange>,
    /// The changes beyond those, counted with their fields.
    pub unlisted_changes: changes::Unlisted,
    /// What the recorded values of the listed changes left out (`recorded`).
    pub omitted_values: super::recorded::Omitted,
}

/// A workload as users and the registry name it: a Deployment in a namespace. The key of every
/// per-workload map (the registry cache, `watch`, the day's usage, Event buckets).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadKey {
    pub namespace: String,
    pub deployment: String,
}

impl WorkloadKey {
    pub fn new(namespace: &str, deployment: &str) -> Self {
        Self { namespace: namespace.to_string(), deployment: deployment.to_string() }
    }
}

impl std::fmt::Display for WorkloadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.deployment)
    }
}

impl Subject {
    /// `namespace/deployment`, the name users and the registry know the workload by.
    pub fn workload(&self) -> String {
        format!("{}/{}", self.namespace, self.deployment)
    }

    /// An UPDATE that changes nothing a person wrote: no change in spec, labels or annotations
    /// (managedFields churn, a controller's bookkeeping, the garbage collector removing a
    /// finalizer while it deletes the object). The replica counts are compared too, because a
    /// Scale carries only them.
    pub fn is_no_op(&self) -> bool {
        self.operation == Operation::Update && self.changes.is_empty() && self.old_replicas == Some(self.new_replicas)
    }

    /// An UPDATE that does not ask for more replicas than before: a fix or a scale-down, which
    /// the ratchet always lets through.
    pub fn does_not_raise(&self) -> bool {
        self.operation == Operation::Update && self.old_replicas.is_some_and(|old| self.new_replicas <= old)
    }
}
