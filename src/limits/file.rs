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

use super::entry::{self, EntryBudget, Fields};
use super::table::LimitTable;
use super::{Limit, Scope};
use crate::decision::policy::Mode;
use serde::Deserialize;
use std::sync::Arc;

pub use entry::ABSURD_REPLICAS;

/// A registry document larger than this is not a registry (a ConfigMap holds at most 1 MiB; at
/// about 100 bytes an entry, 64 MiB is over half a million entries).
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LimitsFileError {
    #[error("registry YAML is invalid: {0}")]
    Syntax(String),
    #[error("registry entry {place}: {problem}")]
    Entry { place: String, problem: String },
    #[error("{0}")]
    TooMany(#[from] entry::TooMany),
    #[error("the registry document is {bytes} bytes, more than {MAX_DOCUMENT_BYTES}: not a registry")]
    TooLarge { bytes: usize },
}

impl LimitsFileError {
    /// One of `RegistryError::metric_label`'s words.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Syntax(_) => "decode",
            Self::Entry { problem, .. } if problem.starts_with("duplicate") => "duplicate",
            Self::Entry { .. } => "entry",
            Self::TooMany(_) => "too-many",
            Self::TooLarge { .. } => "too-large",
        }
    }
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

/// Parses and validates a registry document of at most `max_entries` entries
/// (`registry.maxEntries`). Every error names the entry and the key to fix.
pub fn parse(text: &str, max_entries: usize) -> Result<LimitTable, LimitsFileError> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(LimitsFileError::TooLarge { bytes: text.len() });
    }
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let raw: RawFile = match serde_path_to_error::deserialize(de) {
        Ok(raw) => raw,
        Err(e) => {
            let path = e.path().to_string();
            let inner = crate::words::without_path(&path, &e.into_inner().to_string());
            let inner = crate::words::in_words(&path, &inner);
            return Err(LimitsFileError::Syntax(if path == "." { inner } else { format!("{path}: {inner}") }));
        }
    };
    let mut budget = EntryBudget::new(max_entries);
    let mut owners = Owners::default();
    let global = raw.default.map(|f| to_limit(f, Scope::GlobalDefault, "default", &mut owners)).transpose()?;
    let mut table = LimitTable::with_global_default(global);
    for (i, entry) in raw.entries.into_iter().enumerate() {
        budget.take()?;
        let place = match &entry.deployment {
            Some(d) => format!("entries[{i}] ({}/{})", entry::shortened(&entry.namespace), entry::shortened(d)),
            None => format!("entries[{i}] ({} namespace default)", entry::shortened(&entry.namespace)),
        };
        entry::check_names(&entry.namespace, entry.deployment.as_deref())
            .map_err(|e| LimitsFileError::Entry { place: place.clone(), problem: e.to_string() })?;
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

fn to_limit(f: RawFields, scope: Scope, place: &str, owners: &mut Owners) -> Result<Limit, LimitsFileError> {
    let err = |e: entry::EntryError| LimitsFileError::Entry { place: place.to_string(), problem: e.to_string() };
    let owner = match f.owner {
        Some(o) => entry::owner(&o).map_err(err)?.map(|o| owners.intern(o)),
        None => None,
    };
    Fields { max_replicas: f.max_replicas, min_replicas: f.min_replicas, mode: f.mode, owner }.limit(scope).map_err(err)
}

/// One shared string per distinct owner.
#[derive(Default)]
struct Owners(std::collections::HashSet<Arc<str>>);

impl Owners {
    fn intern(&mut self, owner: Arc<str>) -> Arc<str> {
        if let Some(known) = self.0.get(&*owner) {
            return known.clone();
        }
        self.0.insert(owner.clone());
        owner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Lookup;

    #[test]
    fn parses_entries_defaults_and_optional_fields() {
        let t = parse(
            "default: {maxReplicas: 2}\nentries:\n- {namespace: team-a, deployment: api, maxReplicas: 4, minReplicas: 2, mode: warn, owner: a@x}\n- {namespace: team-b, maxReplicas: 3}\n",
            10,
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
                "entries[0] (a/x): maxReplicas: must be between 0 and 100000, got -1",
            ),
            (
                "entries: [{namespace: a, deployment: x, maxReplicas: 3, minReplicas: 5}]",
                "minReplicas: 5 is above maxReplicas 3",
            ),
            (
                "entries: [{namespace: a, deployment: x, maxReplicas: 3}, {namespace: a, deployment: x, maxReplicas: 4}]",
                "entries[1] (a/x): duplicate",
            ),
            ("entries: [{namespace: A_b, maxReplicas: 3}]", "namespace: \"A_b\" is not a namespace name"),
            ("entries: [{namespace: a, deployment: x, maxReplicas: \"four\"}]", "entries[0]"),
            ("entries: [{namespace: a, deployment: x, maxReplica: 3}]", "unknown field `maxReplica`"),
            ("entries: [{namespace: a, deployment: x}]", "missing field `maxReplicas`"),
            ("entries: [{namespace: a, deployment: x, maxReplicas: 3, mode: strict}]", "unknown variant `strict`"),
            ("entries: {", "registry YAML is invalid"),
        ];
        for (yaml, expected) in cases {
            let e = parse(yaml, 10).unwrap_err().to_string();
            assert!(e.contains(expected), "{yaml}\n  gave: {e}\n  want: {expected}");
        }
    }

    #[test]
    fn bounds_of_a_registry_document() {
        let owner = "o".repeat(300);
        let e = parse(&format!("entries: [{{namespace: a, deployment: x, maxReplicas: 3, owner: {owner}}}]"), 10);
        assert_eq!(
            e.unwrap_err().to_string(),
            "registry entry entries[0] (a/x): owner: is 300 characters long, at most 256 (an e-mail address or a team name)"
        );
        let three =
            "entries: [{namespace: a, maxReplicas: 3}, {namespace: b, maxReplicas: 3}, {namespace: c, maxReplicas: 3}]";
        assert_eq!(
            parse(three, 2).unwrap_err().to_string(),
            "the registry holds more than 2 entries (registry.maxEntries); raise registry.maxEntries if it really is that large"
        );
        assert_eq!(parse(three, 3).unwrap().len(), 3);
        let long = "n".repeat(64);
        let e = parse(&format!("entries: [{{namespace: {long}, maxReplicas: 3}}]"), 10).unwrap_err().to_string();
        assert!(e.contains("is not a namespace name (at most 63"), "{e}");
    }

    #[test]
    fn a_registry_that_is_not_a_mapping_is_said_in_words() {
        let e = parse("just some text", 10).unwrap_err().to_string();
        assert!(e.contains("expected a mapping of keys and values") && !e.contains("struct"), "{e}");
    }

    #[test]
    fn a_type_error_names_its_path_once() {
        let e = parse("entries: [{namespace: a, deployment: x, maxReplicas: four}]", 10).unwrap_err().to_string();
        assert_eq!(e.matches("entries[0].maxReplicas").count(), 1, "{e}");
    }

    #[test]
    fn empty_document_is_an_empty_registry() {
        assert!(parse("entries: []", 10).unwrap().is_empty());
    }
}
