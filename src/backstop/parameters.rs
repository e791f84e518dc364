//! What the backstop policy needs to know, per namespace, computed from the registry and the
//! policy: the same answer as the webhook's `decision` for enforce-mode entries, and nothing for
//! what stays the webhook's alone (warn and audit entries, unregistered workloads, bounds).

use crate::decision::policy::{Mode, Policy, SYSTEM_NAMESPACES};
use crate::limits::table::LimitTable;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `spec` of one namespace's `BackstopLimits` (field names as the policy's CEL reads them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackstopSpec {
    /// Deployment → its enforce-mode maximum.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub enforced: BTreeMap<String, i32>,
    /// Deployments with an entry of their own in warn or audit mode: the namespace's default does
    /// not apply to them (the webhook looks up the most specific entry, and it is not enforced).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub not_enforced: BTreeMap<String, bool>,
    /// The namespace default's maximum, when that entry is in enforce mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_max: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exempt_users: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exempt_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub override_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub override_annotation: String,
}

impl BackstopSpec {
    /// Whether this namespace has anything to enforce (if not, no object is written).
    fn enforces_anything(&self) -> bool {
        !self.enforced.is_empty() || self.namespace_max.is_some()
    }
}

/// The parameters of every namespace that has an enforce-mode entry. Exempt namespaces (system
/// ones, replica-guard's own, `policy.exemptions.namespaces`) get none, so the policy, which
/// allows when its parameters are missing, leaves them alone.
///
/// The registry's global `default:` is not carried: it would need an object in every namespace
/// of the cluster, including ones created after the last write. The webhook enforces it.
pub fn parameters(table: &LimitTable, policy: &Policy) -> BTreeMap<String, BackstopSpec> {
    let enforced =
        |mode: Option<Mode>, namespace: &str| mode.unwrap_or_else(|| policy.namespace_mode(namespace)) == Mode::Enforce;
    let exempt = |namespace: &str| {
        SYSTEM_NAMESPACES.contains(&namespace)
            || policy.own_namespace.as_deref() == Some(namespace)
            || policy.exemptions.namespaces.contains(namespace)
    };
    let mut out: BTreeMap<String, BackstopSpec> = BTreeMap::new();
    for (namespace, deployment, limit) in table.deployment_entries() {
        if exempt(namespace) {
            continue;
        }
        let spec = out.entry(namespace.to_string()).or_default();
        if enforced(limit.mode, namespace) {
            spec.enforced.insert(deployment.to_string(), limit.max_replicas);
        } else {
            spec.not_enforced.insert(deployment.to_string(), true);
        }
    }
    for (namespace, limit) in table.namespace_defaults() {
        if !exempt(namespace) && enforced(limit.mode, namespace) {
            out.entry(namespace.to_string()).or_default().namespace_max = Some(limit.max_replicas);
        }
    }
    out.retain(|_, spec| spec.enforces_anything());
    for spec in out.values_mut() {
        spec.exempt_users = policy.exemptions.users.iter().cloned().collect();
        spec.exempt_groups = policy.exemptions.groups.iter().cloned().collect();
        spec.override_groups = policy.override_rule.groups.iter().cloned().collect();
        if !spec.override_groups.is_empty() {
            spec.override_annotation = policy.override_rule.annotation.clone();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::file;

    fn policy() -> Policy {
        serde_yaml_ng::from_str(
            "mode: enforce\nnamespaces: {sandbox: {mode: warn}}\nexemptions: {namespaces: [platform], users: [ci-bot], groups: []}\noverride: {annotation: replica-guard.io/override, groups: [sre]}\nownNamespace: replica-guard",
        )
        .unwrap()
    }

    #[test]
    fn enforce_mode_entries_only_and_no_object_where_nothing_is_enforced() {
        let table = file::parse(
            "entries:
  - {namespace: team-a, deployment: api, maxReplicas: 4}
  - {namespace: team-a, deployment: batch, maxReplicas: 2, mode: warn}
  - {namespace: team-a, maxReplicas: 3}
  - {namespace: sandbox, deployment: toy, maxReplicas: 2}
  - {namespace: sandbox, deployment: strict, maxReplicas: 2, mode: enforce}
  - {namespace: team-b, deployment: quiet, maxReplicas: 2, mode: audit}
  - {namespace: platform, deployment: tool, maxReplicas: 2}
  - {namespace: replica-guard, deployment: replica-guard, maxReplicas: 2}
  - {namespace: kube-system, deployment: coredns, maxReplicas: 2}
",
            100,
        )
        .unwrap();
        let params = parameters(&table, &policy());
        assert_eq!(params.keys().collect::<Vec<_>>(), ["sandbox", "team-a"], "{params:#?}");
        let team_a = &params["team-a"];
        assert_eq!(team_a.enforced, BTreeMap::from([("api".to_string(), 4)]));
        assert_eq!(team_a.not_enforced, BTreeMap::from([("batch".to_string(), true)]));
        assert_eq!(team_a.namespace_max, Some(3));
        assert_eq!(team_a.exempt_users, ["ci-bot"]);
        assert_eq!(team_a.override_groups, ["sre"]);
        assert_eq!(team_a.override_annotation, "replica-guard.io/override");
        // sandbox is warn by config: only the entry that says enforce itself.
        assert_eq!(params["sandbox"].enforced, BTreeMap::from([("strict".to_string(), 2)]));
        assert_eq!(
            serde_json::to_value(&params["sandbox"]).unwrap(),
            serde_json::json!({"enforced": {"strict": 2}, "notEnforced": {"toy": true}, "exemptUsers": ["ci-bot"],
                "overrideGroups": ["sre"], "overrideAnnotation": "replica-guard.io/override"})
        );
    }
}
