//! The registry YAML format shared by the file and ConfigMap sources, and its validation.
//!
//! ```yaml
//! default:                 # optional: applies to every workload without an entry
//!   maxReplicas: 2
//! entries:
//!   - namespace: team-a
//!     deployment: payments-api   # omit for a namespace-wide default
//!     maxReplicas: 4
//!     minReplicas: 2             # optional
//!     mode: enforce              # optional: enforce | warn | audit
//!     owner: payments@example.com  # optional
//! ```

use super::table::LimitTable;
use super::{Limit, Scope};
use crate::decision::policy::Mode;
use serde::Deserialize;
use std::sync::Arc;

/// Anything above this is a typo or a unit mix-up, not a replica count.
pub const ABSURD_REPLICAS: i64 = 100_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitsFileError {
    #[error("registry YAML is invalid: {0}")]
    Syntax(String),
    #[error("registry entry {place}: {problem}")]
    Entry { place: String, problem: String },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    default: Option<RawFields>,
    #[serde(default)]
    entries: Vec<RawEntry>,
}

/// One entry. (serde's `flatten` would share the limit fields with `RawFields` but cannot be
/// combined with `deny_unknown_fields`, and catching a misspelt key matters more.)
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawEntry {
    namespace: String,
    #[serde(default)]
    deployment: Option<String>,
    max_replicas: i64,
    #[serde(default)]
    min_replicas: Option<i64>,
    #[serde(default)]
    mode: Option<Mode>,
    #[serde(default)]
    owner: Option<String>,
}

impl RawEntry {
    fn fields(self) -> RawFields {
        RawFields {
            max_replicas: self.max_replicas,
            min_replicas: self.min_replicas,
            mode: self.mode,
            owner: self.owner,
        }
    }
}

/// The limit fields of the global default.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawFields {
    max_replicas: i64,
    #[serde(default)]
    min_replicas: Option<i64>,
    #[serde(default)]
    mode: Option<Mode>,
    #[serde(default)]
    owner: Option<String>,
}

/// Parses and validates a registry document. Every error names the entry and the key to fix.
pub fn parse(text: &str) -> Result<LimitTable, LimitsFileError> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let raw: RawFile = match serde_path_to_error::deserialize(de) {
        Ok(raw) => raw,
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            return Err(LimitsFileError::Syntax(if path == "." {
                inner.to_string()
            } else {
                format!("{path}: {inner}")
            }));
        }
    };
    let mut owners = Owners::default();
    let global = raw.default.map(|f| to_limit(f, Scope::GlobalDefault, "default", &mut owners)).transpose()?;
    let mut table = LimitTable::with_global_default(global);
    for (i, entry) in raw.entries.into_iter().enumerate() {
        let place = match &entry.deployment {
            Some(d) => format!("entries[{i}] ({}/{d})", entry.namespace),
            None => format!("entries[{i}] ({} namespace default)", entry.namespace),
        };
        check_name(&entry.namespace, &place, "namespace")?;
        if let Some(d) = &entry.deployment {
            check_name(d, &place, "deployment")?;
        }
        let scope = if entry.deployment.is_some() { Scope::Deployment } else { Scope::NamespaceDefault };
        let (namespace, deployment) = (entry.namespace.clone(), entry.deployment.clone());
        let limit = to_limit(entry.fields(), scope, &place, &mut owners)?;
        table.insert(&namespace, deployment.as_deref(), limit).map_err(|_| LimitsFileError::Entry {
            place: place.clone(),
            problem: "duplicate: an earlier entry has the same namespace and deployment; keep one".into(),
        })?;
    }
    Ok(table)
}

fn check_name(value: &str, place: &str, key: &str) -> Result<(), LimitsFileError> {
    let valid = !value.is_empty()
        && value.len() <= 253
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if valid {
        Ok(())
    } else {
        Err(LimitsFileError::Entry {
            place: place.to_string(),
            problem: format!("{key} {value:?} is not a Kubernetes name (lowercase letters, digits, '-', '.')"),
        })
    }
}

fn to_limit(f: RawFields, scope: Scope, place: &str, owners: &mut Owners) -> Result<Limit, LimitsFileError> {
    let owner = f.owner.map(|o| owners.intern(o));
    validated_limit(f.max_replicas, f.min_replicas, f.mode, owner, scope, place)
}

/// One shared string per distinct owner.
#[derive(Default)]
struct Owners(std::collections::HashSet<Arc<str>>);

impl Owners {
    fn intern(&mut self, owner: String) -> Arc<str> {
        if let Some(known) = self.0.get(owner.as_str()) {
            return known.clone();
        }
        let owner: Arc<str> = owner.into();
        self.0.insert(owner.clone());
        owner
    }
}

/// The checks every source applies to an entry, wherever it came from.
pub fn validated_limit(
    max_replicas: i64,
    min_replicas: Option<i64>,
    mode: Option<Mode>,
    owner: Option<Arc<str>>,
    scope: Scope,
    place: &str,
) -> Result<Limit, LimitsFileError> {
    let f = RawFields { max_replicas, min_replicas, mode, owner: None };
    let err = |problem: String| LimitsFileError::Entry { place: place.to_string(), problem };
    let replicas = |key: &str, v: i64| -> Result<i32, LimitsFileError> {
        if (0..=ABSURD_REPLICAS).contains(&v) {
            Ok(v as i32)
        } else {
            Err(err(format!("{key} must be between 0 and {ABSURD_REPLICAS}, got {v}")))
        }
    };
    let max_replicas = replicas("maxReplicas", f.max_replicas)?;
    let min_replicas = f.min_replicas.map(|v| replicas("minReplicas", v)).transpose()?;
    if let Some(min) = min_replicas.filter(|&min| min > max_replicas) {
        return Err(err(format!("minReplicas {min} is above maxReplicas {max_replicas}")));
    }
    Ok(Limit { max_replicas, min_replicas, mode: f.mode, owner: owner.filter(|o| !o.is_empty()), scope })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Lookup;

    #[test]
    fn parses_entries_defaults_and_optional_fields() {
        let t = parse(
            "default: {maxReplicas: 2}\nentries:\n- {namespace: team-a, deployment: api, maxReplicas: 4, minReplicas: 2, mode: warn, owner: a@x}\n- {namespace: team-b, maxReplicas: 3}\n",
        )
        .unwrap();
        let Lookup::Registered(l) = t.lookup("team-a", "api") else { panic!() };
        assert_eq!(
            (l.max_replicas, l.min_replicas, l.mode, l.owner.as_deref()),
            (4, Some(2), Some(Mode::Warn), Some("a@x"))
        );
        let Lookup::Registered(l) = t.lookup("team-b", "x") else { panic!() };
        assert_eq!((l.max_replicas, l.scope), (3, Scope::NamespaceDefault));
        let Lookup::Registered(l) = t.lookup("team-c", "x") else { panic!() };
        assert_eq!((l.max_replicas, l.scope), (2, Scope::GlobalDefault));
    }

    #[test]
    fn errors_name_the_entry_and_the_key() {
        let cases = [
            (
                "entries: [{namespace: a, deployment: x, maxReplicas: -1}]",
                "entries[0] (a/x): maxReplicas must be between 0 and 100000, got -1",
            ),
            (
                "entries: [{namespace: a, deployment: x, maxReplicas: 3, minReplicas: 5}]",
                "minReplicas 5 is above maxReplicas 3",
            ),
            (
                "entries: [{namespace: a, deployment: x, maxReplicas: 3}, {namespace: a, deployment: x, maxReplicas: 4}]",
                "entries[1] (a/x): duplicate",
            ),
            ("entries: [{namespace: A_b, maxReplicas: 3}]", "namespace \"A_b\" is not a Kubernetes name"),
            ("entries: [{namespace: a, deployment: x, maxReplicas: \"four\"}]", "entries[0]"),
            ("entries: [{namespace: a, deployment: x, maxReplica: 3}]", "unknown field `maxReplica`"),
            ("entries: [{namespace: a, deployment: x}]", "missing field `maxReplicas`"),
            ("entries: [{namespace: a, deployment: x, maxReplicas: 3, mode: strict}]", "unknown variant `strict`"),
            ("entries: {", "registry YAML is invalid"),
        ];
        for (yaml, expected) in cases {
            let e = parse(yaml).unwrap_err().to_string();
            assert!(e.contains(expected), "{yaml}\n  gave: {e}\n  want: {expected}");
        }
    }

    #[test]
    fn empty_document_is_an_empty_registry() {
        assert!(parse("entries: []").unwrap().is_empty());
    }
}
