//! The change itself, as the decision record keeps it: an RFC 6902 JSON Patch (the `json-patch`
//! crate's types) from the old object's recorded view to the new one's, one operation per listed
//! change of `changes` (the same walk, order and bound: the first `changes::MAX_LISTED`), each
//! value as `recorded` keeps it (kept, `REDACTED` or `OVER_BUDGET`).
//!
//! The recorded view of an object is `{"metadata": {"labels": {..}, "annotations": {..}},
//! "spec": ..}`: what the diff compares (maps present even when empty, the bookkeeping
//! annotations left out), see `view`. Applying a record's patch to the old view gives the new
//! view, except where a value is a marker (`tests/record_patch.rs` proves it).

use super::changes::{FieldChange, ObjectView};
use super::recorded::Edit;
use super::subject::{Operation, Subject};
use serde_json::{Map, Value};

/// The decision record's patch of a subject: its listed changes for an UPDATE; `None` for a
/// CREATE, which has no old object (the record's and `check -o json`'s `patch`).
pub fn of_subject(subject: &Subject) -> Option<json_patch::Patch> {
    (subject.operation == Operation::Update).then(|| of(&subject.changes))
}

/// The record's patch of `changes` (a subject's listed changes), in their order.
pub fn of(changes: &[FieldChange]) -> json_patch::Patch {
    use json_patch::jsonptr::PointerBuf;
    use json_patch::{AddOperation, PatchOperation, RemoveOperation, ReplaceOperation};
    let mut operations = Vec::with_capacity(changes.len());
    for change in changes {
        // The walk writes valid pointers ("/spec/..", tokens escaped); one that is not is skipped.
        let Ok(path) = PointerBuf::parse(change.path.as_str()) else { continue };
        let map = || PointerBuf::parse(parent(&change.path)).ok();
        match &change.edit {
            Edit::Add { value, new_map } => {
                if *new_map && let Some(map) = map() {
                    operations.push(PatchOperation::Add(AddOperation { path: map, value: Value::Object(Map::new()) }));
                }
                operations.push(PatchOperation::Add(AddOperation { path, value: value.clone() }));
            }
            Edit::Replace { value } => {
                operations.push(PatchOperation::Replace(ReplaceOperation { path, value: value.clone() }))
            }
            Edit::Remove { emptied_map } => {
                operations.push(PatchOperation::Remove(RemoveOperation { path }));
                if *emptied_map && let Some(map) = map() {
                    operations.push(PatchOperation::Remove(RemoveOperation { path: map }));
                }
            }
        }
    }
    json_patch::Patch(operations)
}

/// The pointer of the map a key's pointer is in.
fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(map, _)| map)
}

/// The recorded view of an object (see the module's doc): what the patch applies to.
pub fn view(object: ObjectView<'_>) -> Value {
    use super::changes::NOISE_ANNOTATIONS;
    let labels: Map<String, Value> =
        object.labels.into_iter().flatten().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    let annotations: Map<String, Value> = object
        .annotations
        .into_iter()
        .flatten()
        .filter(|(k, _)| !NOISE_ANNOTATIONS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let spec = object.spec.map_or(Value::Null, super::recorded::whole);
    serde_json::json!({"metadata": {"labels": labels, "annotations": annotations}, "spec": spec})
}
