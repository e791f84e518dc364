//! One registry entry, checked the same way whichever source it came from (the file, a
//! ConfigMap, the HTTP registry, Firestore, BigQuery). A registry is input like any other: the
//! bounds of what it may say live here, and nowhere else.
//!
//! - namespace: a DNS-1123 label (at most 63 characters), as Kubernetes names namespaces;
//! - deployment: a DNS-1123 subdomain (at most 253), as Kubernetes names Deployments;
//! - maxReplicas / minReplicas: 0 to `ABSURD_REPLICAS`, min not above max;
//! - mode: enforce, warn or audit;
//! - owner: at most `MAX_OWNER_CHARS` characters, no control characters;
//! - a whole registry: at most `registry.maxEntries` entries (`DEFAULT_MAX_ENTRIES`).
//!
//! A bad value is quoted in the error cut to a few dozen characters, so an error about a 100 KB
//! owner is not itself 100 KB.

use super::{Limit, Scope};
use crate::decision::policy::Mode;
use std::sync::Arc;

/// Anything above this is a typo or a unit mix-up, not a replica count.
pub const ABSURD_REPLICAS: i64 = 100_000;
/// An owner is an e-mail address or a team name: RFC 5321 allows 254 characters for an address.
pub const MAX_OWNER_CHARS: usize = 256;
/// How many entries a registry may hold unless `registry.maxEntries` says otherwise.
pub use crate::config::DEFAULT_MAX_ENTRIES;
/// A namespace name: a DNS-1123 label.
pub const MAX_NAMESPACE_CHARS: usize = 63;
/// A Deployment name: a DNS-1123 subdomain.
pub const MAX_DEPLOYMENT_CHARS: usize = 253;

/// What is wrong with one field of an entry: the field's key (`owner`, `maxReplicas`) and the
/// problem in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct EntryError {
    pub field: &'static str,
    pub problem: String,
}

fn bad(field: &'static str, problem: String) -> EntryError {
    EntryError { field, problem }
}

/// A value as an error message quotes it: at most 40 characters, then how long it really was.
pub fn quoted(value: &str) -> String {
    let count = value.chars().count();
    if count <= 40 {
        format!("{value:?}")
    } else {
        let start: String = value.chars().take(40).collect();
        format!("{start:?}… ({count} characters)")
    }
}

/// A name as a place in an error shows it: whole when short, else its start and its length.
pub fn shortened(value: &str) -> String {
    let count = value.chars().count();
    if count <= 64 {
        value.to_string()
    } else {
        format!("{}… ({count} characters)", value.chars().take(40).collect::<String>())
    }
}

/// A namespace as Kubernetes allows it: lowercase letters, digits and '-', starting and ending
/// with a letter or digit, at most 63 characters.
pub fn check_namespace(value: &str) -> Result<(), EntryError> {
    if is_dns_label(value) {
        Ok(())
    } else {
        Err(bad(
            "namespace",
            format!(
                "{} is not a namespace name (at most {MAX_NAMESPACE_CHARS} lowercase letters, digits and '-', starting and ending with a letter or digit)",
                quoted(value)
            ),
        ))
    }
}

/// A Deployment name as Kubernetes allows it: DNS labels joined by '.', at most 253 characters.
pub fn check_deployment(value: &str) -> Result<(), EntryError> {
    let valid = !value.is_empty() && value.len() <= MAX_DEPLOYMENT_CHARS && value.split('.').all(is_dns_label);
    if valid {
        Ok(())
    } else {
        Err(bad(
            "deployment",
            format!(
                "{} is not a Deployment name (at most {MAX_DEPLOYMENT_CHARS} lowercase letters, digits, '-' and '.', each part starting and ending with a letter or digit)",
                quoted(value)
            ),
        ))
    }
}

fn is_dns_label(value: &str) -> bool {
    let b = value.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAMESPACE_CHARS
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A mode as a registry writes it.
pub fn mode(value: &str) -> Result<Mode, EntryError> {
    match value {
        "enforce" => Ok(Mode::Enforce),
        "warn" => Ok(Mode::Warn),
        "audit" => Ok(Mode::Audit),
        other => Err(bad("mode", format!("{} is not a mode; use enforce, warn or audit", quoted(other)))),
    }
}

/// An owner of a sensible length; empty means none.
pub fn owner(value: &str) -> Result<Option<Arc<str>>, EntryError> {
    let count = value.chars().count();
    if count > MAX_OWNER_CHARS {
        return Err(bad(
            "owner",
            format!("is {count} characters long, at most {MAX_OWNER_CHARS} (an e-mail address or a team name)"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(bad("owner", format!("{} holds control characters", quoted(value))));
    }
    Ok((!value.is_empty()).then(|| Arc::from(value)))
}

/// A replica count in range.
fn replicas(field: &'static str, value: i64) -> Result<i32, EntryError> {
    if (0..=ABSURD_REPLICAS).contains(&value) {
        Ok(value as i32)
    } else {
        Err(bad(field, format!("must be between 0 and {ABSURD_REPLICAS}, got {value}")))
    }
}

/// The limit fields of one entry, as a source read them; `limit` checks them.
#[derive(Debug, Clone, Default)]
pub struct Fields {
    pub max_replicas: i64,
    pub min_replicas: Option<i64>,
    pub mode: Option<Mode>,
    pub owner: Option<Arc<str>>,
}

impl Fields {
    /// The checked limit.
    pub fn limit(self, scope: Scope) -> Result<Limit, EntryError> {
        let max_replicas = replicas("maxReplicas", self.max_replicas)?;
        let min_replicas = self.min_replicas.map(|v| replicas("minReplicas", v)).transpose()?;
        if let Some(min) = min_replicas.filter(|&min| min > max_replicas) {
            return Err(bad("minReplicas", format!("{min} is above maxReplicas {max_replicas}")));
        }
        Ok(Limit { max_replicas, min_replicas, mode: self.mode, owner: self.owner.filter(|o| !o.is_empty()), scope })
    }
}

/// The names of an entry: a namespace, and a deployment unless it is the namespace's default.
pub fn check_names(namespace: &str, deployment: Option<&str>) -> Result<(), EntryError> {
    check_namespace(namespace)?;
    deployment.map(check_deployment).transpose()?;
    Ok(())
}

/// Counts entries as a source reads them and stops at `max` (`registry.maxEntries`), before a
/// registry far larger than expected costs the memory to hold it.
#[derive(Debug, Clone, Copy)]
pub struct EntryBudget {
    pub max: usize,
    seen: usize,
}

impl EntryBudget {
    pub fn new(max: usize) -> Self {
        Self { max, seen: 0 }
    }

    /// One more entry; an error once there are more than `max`.
    pub fn take(&mut self) -> Result<(), TooMany> {
        self.seen += 1;
        if self.seen > self.max { Err(TooMany { max: self.max }) } else { Ok(()) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the registry holds more than {max} entries (registry.maxEntries); raise registry.maxEntries if it really is that large"
)]
pub struct TooMany {
    pub max: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_kubernetes_allows_them() {
        let label63 = "a".repeat(63);
        for ok in ["team-a", "a", "0team", &label63] {
            assert!(check_namespace(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Team-a", "team_a", "-team", "team-", "team.a", &"a".repeat(64)] {
            assert!(check_namespace(bad).is_err(), "{bad}");
        }
        let long = format!("{0}.{0}.{0}.{1}", "a".repeat(63), "a".repeat(61));
        assert_eq!(long.len(), 253);
        for ok in ["payments-api", "api.v2", &long] {
            assert!(check_deployment(ok).is_ok(), "{ok}");
        }
        for bad in ["", "api..v2", ".api", "api-", "API", &format!("{long}a")] {
            assert!(check_deployment(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_huge_owner_is_refused_and_not_repeated_in_the_error() {
        let e = owner(&"x".repeat(100_000)).unwrap_err();
        assert_eq!(e.to_string(), "owner: is 100000 characters long, at most 256 (an e-mail address or a team name)");
        let e = mode(&"y".repeat(100_000)).unwrap_err().to_string();
        assert!(e.len() < 150 && e.contains("(100000 characters)"), "{e}");
        assert_eq!(owner("").unwrap(), None);
        assert!(owner("a\u{0}b").is_err());
    }

    #[test]
    fn replica_bounds_and_min_above_max() {
        let fields = |max, min| Fields { max_replicas: max, min_replicas: min, ..Fields::default() };
        assert_eq!(fields(4, Some(2)).limit(Scope::Deployment).unwrap().max_replicas, 4);
        assert_eq!(
            fields(-1, None).limit(Scope::Deployment).unwrap_err().to_string(),
            "maxReplicas: must be between 0 and 100000, got -1"
        );
        assert_eq!(
            fields(3, Some(5)).limit(Scope::Deployment).unwrap_err().to_string(),
            "minReplicas: 5 is above maxReplicas 3"
        );
    }

    #[test]
    fn the_budget_stops_past_the_maximum() {
        let mut budget = EntryBudget::new(2);
        assert!(budget.take().is_ok() && budget.take().is_ok());
        assert_eq!(budget.take(), Err(TooMany { max: 2 }));
    }
}
