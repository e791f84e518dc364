//! What one Firestore document says: its typed fields (REST JSON, borrowed from the page or the
//! query result it came in) and the registry entry they make, with an error that names the
//! document and the field. Shared by the lister (`firestore_source`), the reader of single entries
//! (`firestore_reader`) and the Listen stream (`firestore_listen`), so all three read a document
//! the same way.

use super::RegistryError;
use super::Scope;
use super::entry::{self, Fields};
use super::sync::Listed;
use crate::config::FirestoreFields;
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::HashMap;

/// What one document of a masked listing may take on the wire: its name (a path of at most a few
/// hundred bytes), two timestamps and six fields at their longest (`limits::entry`) are under
/// 2 KiB; the rest is room for an emulator that ignores the mask.
pub(super) const MAX_DOCUMENT_BYTES: usize = 8 * 1024;

/// What turns a page into entries (shared with the blocking task that decodes it, the reader and
/// the listener).
pub(super) struct Decoder {
    pub(super) fields: FirestoreFields,
    pub(super) namespace_default: String,
}

#[derive(Deserialize)]
pub(super) struct Document<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(default, borrow)]
    pub fields: HashMap<Cow<'a, str>, Typed<'a>>,
}

/// A Firestore typed value: exactly one of these keys is set; any other kind (doubleValue,
/// mapValue, …) leaves all of them empty.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct Typed<'a> {
    #[serde(default, borrow)]
    pub string_value: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub integer_value: Option<Integer<'a>>,
    #[serde(default)]
    pub null_value: Option<serde::de::IgnoredAny>,
}

/// `integerValue` is a string in the REST API (int64 does not fit a JSON number); accept both.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Integer<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Number(i64),
}

impl Decoder {
    /// One document as an entry; an error names the document and the field.
    pub(super) fn entry(&self, doc: &Document) -> Result<Listed, RegistryError> {
        let name = entry::shortened(&doc.name);
        let id = doc.name.rsplit('/').next().unwrap_or_default();
        let at = |field: &str, problem: String| RegistryError::Entry {
            place: format!("document {name}: field {field}"),
            problem,
        };
        let text = |field: &str| -> Result<Option<&str>, RegistryError> {
            match doc.fields.get(field) {
                None => Ok(None),
                Some(Typed { string_value: Some(s), .. }) => Ok(Some(s)),
                Some(Typed { null_value: Some(_), .. }) => Ok(None),
                Some(_) => Err(at(field, "expected a stringValue".into())),
            }
        };
        let integer = |field: &str| -> Result<Option<i64>, RegistryError> {
            match doc.fields.get(field) {
                None => Ok(None),
                Some(Typed { integer_value: Some(Integer::Number(n)), .. }) => Ok(Some(*n)),
                Some(Typed { integer_value: Some(Integer::Text(s)), .. }) => s
                    .parse()
                    .map(Some)
                    .map_err(|_| at(field, format!("integerValue {} is not a whole number", entry::quoted(s)))),
                Some(Typed { null_value: Some(_), .. }) => Ok(None),
                Some(_) => Err(at(field, "expected an integerValue".into())),
            }
        };
        let f = &self.fields;
        let (namespace, deployment) = match (text(&f.namespace)?, text(&f.deployment)?) {
            (Some(ns), Some(d)) => (ns, d),
            _ => match id.split_once("--") {
                Some((ns, d)) if !ns.is_empty() && !d.is_empty() => (ns, d),
                _ => {
                    return Err(RegistryError::Entry {
                        place: format!("document {name}"),
                        problem: format!(
                            "no {} and {} fields, and its id is not <namespace>--<deployment>",
                            f.namespace, f.deployment
                        ),
                    });
                }
            },
        };
        let deployment = (deployment != self.namespace_default).then_some(deployment);
        let field_error = |e: entry::EntryError| {
            let key = match e.field {
                "namespace" => &f.namespace,
                "deployment" => &f.deployment,
                "maxReplicas" => &f.max_replicas,
                "minReplicas" => &f.min_replicas,
                "mode" => &f.mode,
                _ => &f.owner,
            };
            at(key, e.problem)
        };
        entry::check_names(namespace, deployment).map_err(field_error)?;
        let max = integer(&f.max_replicas)?.ok_or_else(|| at(&f.max_replicas, "missing".into()))?;
        let mode = text(&f.mode)?.map(entry::mode).transpose().map_err(field_error)?;
        let owner = text(&f.owner)?.map(entry::owner).transpose().map_err(field_error)?.flatten();
        let scope = if deployment.is_some() { Scope::Deployment } else { Scope::NamespaceDefault };
        let limit = Fields { max_replicas: max, min_replicas: integer(&f.min_replicas)?, mode, owner }
            .limit(scope)
            .map_err(field_error)?;
        Ok(Listed {
            place: format!("document {name}"),
            namespace: namespace.to_string(),
            deployment: deployment.map(str::to_string),
            limit,
        })
    }
}
