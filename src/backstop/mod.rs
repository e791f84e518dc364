//! The backstop: a ValidatingAdmissionPolicy (the chart's `backstop/policy.yaml`) that the API
//! server evaluates on its own, so that the core rule holds while no webhook pod answers. Its
//! parameters are one `BackstopLimits` object per namespace, in that namespace (the binding leaves
//! `paramRef.namespace` unset, so the API server reads only the request's own namespace's object:
//! the cost of a request does not grow with the number of teams). `parameters` computes them from
//! the registry (pure); `writer` keeps them in the cluster (`watch`'s process).
//!
//! Tenants cannot edit them: `BackstopLimits` is a kind of replica-guard's own, which the
//! `edit` and `admin` roles do not aggregate.

pub mod parameters;
pub mod scope;
pub mod writer;

/// The name of every namespace's parameters object, which the chart's binding names.
pub const PARAMETERS_NAME: &str = "replica-guard";
/// The API group, version and kind of the parameters (the chart's CRD).
pub const GROUP: &str = "replica-guard.io";
pub const VERSION: &str = "v1";
pub const KIND: &str = "BackstopLimits";
pub const PLURAL: &str = "backstoplimits";
