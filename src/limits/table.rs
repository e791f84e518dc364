//! An immutable snapshot of the registry: lookups are two hash probes and no allocation.

use super::{Limit, Lookup};
use crate::metrics::Exposition;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LimitTable {
    namespaces: HashMap<String, NamespaceLimits>,
    global_default: Option<Limit>,
    entries: usize,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct NamespaceLimits {
    default: Option<Limit>,
    deployments: HashMap<String, Limit>,
}

/// A second entry for the same key; the loader turns it into an error naming both places.
#[derive(Debug)]
pub struct Duplicate;

impl LimitTable {
    pub fn with_global_default(global_default: Option<Limit>) -> Self {
        Self { global_default, ..Self::default() }
    }

    /// Adds an entry; `deployment: None` is the namespace-wide default.
    pub fn insert(&mut self, namespace: &str, deployment: Option<&str>, limit: Limit) -> Result<(), Duplicate> {
        let ns = self.namespaces.entry(namespace.to_string()).or_default();
        match deployment {
            Some(name) if ns.deployments.contains_key(name) => return Err(Duplicate),
            Some(name) => {
                ns.deployments.insert(name.to_string(), limit);
            }
            None if ns.default.is_some() => return Err(Duplicate),
            None => ns.default = Some(limit),
        }
        self.entries += 1;
        Ok(())
    }

    /// Most specific first: the deployment's own entry, its namespace's default, the global default.
    pub fn lookup(&self, namespace: &str, deployment: &str) -> Lookup {
        let ns = self.namespaces.get(namespace);
        ns.and_then(|n| n.deployments.get(deployment))
            .or_else(|| ns.and_then(|n| n.default.as_ref()))
            .or(self.global_default.as_ref())
            .map_or(Lookup::Unregistered, |l| Lookup::Registered(l.clone()))
    }

    /// Returns the spare capacity the maps grew while loading (up to half their memory).
    pub fn shrink_to_fit(&mut self) {
        self.namespaces.shrink_to_fit();
        for ns in self.namespaces.values_mut() {
            ns.deployments.shrink_to_fit();
        }
    }

    /// Number of entries (deployment entries and namespace defaults; not the global default).
    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Every deployment entry, for the `registered_max_replicas` gauge.
    pub fn deployment_entries(&self) -> impl Iterator<Item = (&str, &str, &Limit)> {
        self.namespaces.iter().flat_map(|(ns, n)| n.deployments.iter().map(move |(d, l)| (ns.as_str(), d.as_str(), l)))
    }

    /// Every namespace default, for the `namespace_default_max_replicas` gauge.
    /// How many entries (deployment entries and namespace defaults) lie outside the platform bounds.
    pub fn out_of_bounds(&self, bounds: &crate::decision::policy::PlatformBounds) -> usize {
        self.deployment_entries()
            .map(|(_, _, l)| l)
            .chain(self.namespace_defaults().map(|(_, l)| l))
            .filter(|l| !bounds.contains(l.max_replicas))
            .count()
    }

    pub fn namespace_defaults(&self) -> impl Iterator<Item = (&str, &Limit)> {
        self.namespaces.iter().filter_map(|(ns, n)| n.default.as_ref().map(|l| (ns.as_str(), l)))
    }
}

/// The registered maxima in the text exposition format. Label values are Kubernetes names,
/// which the registry validated (lowercase letters, digits, `-`, `.`): nothing to escape.
impl Exposition for Arc<LimitTable> {
    fn render(&self, out: &mut String) {
        let table = self;
        use std::fmt::Write;
        out.push_str(
            "# HELP replica_guard_registered_max_replicas maxReplicas registered in PED for each Deployment entry.\n",
        );
        out.push_str("# TYPE replica_guard_registered_max_replicas gauge\n");
        for (namespace, deployment, limit) in table.deployment_entries() {
            let _ = writeln!(
                out,
                "replica_guard_registered_max_replicas{{deployment=\"{deployment}\",namespace=\"{namespace}\"}} {}",
                limit.max_replicas
            );
        }
        out.push_str(
        "# HELP replica_guard_namespace_default_max_replicas maxReplicas registered in PED as a namespace-wide default.\n",
    );
        out.push_str("# TYPE replica_guard_namespace_default_max_replicas gauge\n");
        for (namespace, limit) in table.namespace_defaults() {
            let _ = writeln!(
                out,
                "replica_guard_namespace_default_max_replicas{{namespace=\"{namespace}\"}} {}",
                limit.max_replicas
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Scope;

    fn limit(max: i32, scope: Scope) -> Limit {
        Limit { max_replicas: max, min_replicas: None, mode: None, owner: None, scope }
    }

    #[test]
    fn most_specific_entry_wins() {
        let mut t = LimitTable::with_global_default(Some(limit(2, Scope::GlobalDefault)));
        t.insert("team-a", None, limit(3, Scope::NamespaceDefault)).unwrap();
        t.insert("team-a", Some("api"), limit(4, Scope::Deployment)).unwrap();
        assert_eq!(t.lookup("team-a", "api"), Lookup::Registered(limit(4, Scope::Deployment)));
        assert_eq!(t.lookup("team-a", "other"), Lookup::Registered(limit(3, Scope::NamespaceDefault)));
        assert_eq!(t.lookup("team-b", "api"), Lookup::Registered(limit(2, Scope::GlobalDefault)));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn no_entry_and_no_default_is_unregistered() {
        let t = LimitTable::default();
        assert_eq!(t.lookup("team-a", "api"), Lookup::Unregistered);
    }

    #[test]
    fn duplicates_are_refused() {
        let mut t = LimitTable::default();
        t.insert("a", Some("x"), limit(4, Scope::Deployment)).unwrap();
        assert!(t.insert("a", Some("x"), limit(5, Scope::Deployment)).is_err());
        t.insert("a", None, limit(4, Scope::NamespaceDefault)).unwrap();
        assert!(t.insert("a", None, limit(4, Scope::NamespaceDefault)).is_err());
    }
}
