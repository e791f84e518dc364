//! What a change changed: a diff of the old and new object, classified into the fields people
//! ask about (replicas, image, resources, env, volumes, strategy, other). One walk over both
//! trees, leaf by leaf, in the places a JSON patch names; only the first `MAX_LISTED` changes get
//! a path and their patch operation (`patch`: the value, kept or redacted, within the record's
//! budget; the rest are counted), so a hostile body costs about what parsing it does. Items
//! removed from the end of a list are listed last first, so that the patch applies in order.
//!
//! Only `spec`, labels and annotations are compared: status, managedFields, resourceVersion,
//! generation and the like change on every write and say nothing about what the user did, and
//! `last-applied-configuration` / revision annotations are copies or counters of other fields.

pub use super::field::Field;
use super::field::{Step, classify, escape, pointer};
use super::recorded::{Edit, Recorder, keeps_annotation};
use super::tree::Node;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// One changed place in the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    pub field: Field,
    /// JSON pointer of the change, e.g. `/spec/template/spec/containers/0/image`.
    pub path: String,
    /// The container the change is in, by name, when it is in one.
    pub container: Option<String>,
    /// The change as a patch operation, with its value as the record keeps it.
    pub edit: Edit,
}

/// Annotations that are bookkeeping, not intent.
pub const NOISE_ANNOTATIONS: [&str; 2] =
    ["kubectl.kubernetes.io/last-applied-configuration", "deployment.kubernetes.io/revision"];

/// The parts of an object that are compared.
#[derive(Debug, Clone, Copy, Default)]
pub struct ObjectView<'a> {
    pub spec: Option<&'a Node<'a>>,
    pub labels: Option<&'a BTreeMap<String, String>>,
    pub annotations: Option<&'a BTreeMap<String, String>>,
}

/// Most changes listed with their path; beyond, a change is only counted with its field, so that
/// a request rewriting 100,000 keys costs a walk of its trees, not 100,000 paths nobody reads (a
/// record lists 50, a message names 6).
pub const MAX_LISTED: usize = 1_000;

/// What a change changed: the first `MAX_LISTED` changes with their paths, and the rest counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    pub listed: Vec<FieldChange>,
    pub unlisted: Unlisted,
    /// What the listed changes' values took of the record's budget, and left out.
    pub recorded: Recorder,
}

/// The changes beyond `MAX_LISTED`: how many, and which fields they touched (in `Field` order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unlisted {
    pub count: usize,
    pub fields: Vec<Field>,
}

impl Diff {
    fn push(&mut self, change: impl FnOnce(&mut Recorder) -> FieldChange, field: Field) {
        if self.listed.len() < MAX_LISTED {
            self.listed.push(change(&mut self.recorded));
        } else {
            self.unlisted.count += 1;
            if let Err(at) = self.unlisted.fields.binary_search(&field) {
                self.unlisted.fields.insert(at, field);
            }
        }
    }
}

/// The classified changes from `old` to `new`, in a stable order (spec first, in key order; for
/// each object the keys of the old one, then those only the new one has).
pub fn between(old: ObjectView<'_>, new: ObjectView<'_>) -> Diff {
    let null = Node::Null;
    let (old_spec, new_spec) = (old.spec.unwrap_or(&null), new.spec.unwrap_or(&null));
    let mut walk = Walk { old_spec, new_spec, at: vec![], diff: Diff::default() };
    walk.compare(old_spec, new_spec);
    let mut diff = walk.diff;
    changed_keys(old.labels, new.labels, &[], "/metadata/labels", &mut diff);
    changed_keys(old.annotations, new.annotations, &NOISE_ANNOTATIONS, "/metadata/annotations", &mut diff);
    diff
}

/// A walk over the old and the new spec at once: equal leaves cost a comparison, and a path is
/// only written out for a change that is listed.
struct Walk<'a> {
    old_spec: &'a Node<'a>,
    new_spec: &'a Node<'a>,
    at: Vec<Step<'a>>,
    diff: Diff,
}

impl<'a> Walk<'a> {
    fn compare(&mut self, old: &'a Node<'a>, new: &'a Node<'a>) {
        match (old, new) {
            (Node::Object(o), Node::Object(n)) => {
                // Both sorted by key: one merge for the old keys, one for the keys only new has.
                let mut rest = n.as_slice();
                for (key, old_value) in o {
                    rest = skip_below(rest, key);
                    self.at.push(Step::Key(key));
                    match rest.first() {
                        Some((k, new_value)) if k == key => self.compare(old_value, new_value),
                        _ => self.removed(old_value),
                    }
                    self.at.pop();
                }
                let mut rest = o.as_slice();
                for (key, new_value) in n {
                    rest = skip_below(rest, key);
                    if rest.first().is_some_and(|(k, _)| k == key) {
                        continue;
                    }
                    self.at.push(Step::Key(key));
                    self.added(new_value);
                    self.at.pop();
                }
            }
            (Node::Array(o), Node::Array(n)) => {
                for (i, (old_value, new_value)) in o.iter().zip(n).enumerate() {
                    self.at.push(Step::Index(i));
                    self.compare(old_value, new_value);
                    self.at.pop();
                }
                for (i, new_value) in n.iter().enumerate().skip(o.len()) {
                    self.at.push(Step::Index(i));
                    self.change(Kind::Add(new_value, false));
                    self.at.pop();
                }
                // Last first: removing item i moves those after it.
                for i in (n.len()..o.len()).rev() {
                    self.at.push(Step::Index(i));
                    self.change(Kind::Remove(false));
                    self.at.pop();
                }
            }
            _ if old == new => {}
            _ => self.change(Kind::Replace(new)),
        }
    }

    /// Whether the walk is at a labels or annotations map. One added or removed whole (the pod
    /// template had none before a `kubectl rollout restart`, say) is one change per key, so the
    /// summary can name the key.
    fn at_a_map(&self) -> bool {
        matches!(self.at.as_slice(), [.., Step::Key("metadata"), Step::Key("labels" | "annotations")])
    }

    fn added(&mut self, value: &'a Node<'a>) {
        match value {
            Node::Object(map) if self.at_a_map() && !map.is_empty() => {
                for (i, (key, value)) in map.iter().enumerate() {
                    self.at.push(Step::Key(key));
                    self.change(Kind::Add(value, i == 0));
                    self.at.pop();
                }
            }
            _ => self.change(Kind::Add(value, false)),
        }
    }

    fn removed(&mut self, value: &'a Node<'a>) {
        match value {
            Node::Object(map) if self.at_a_map() && !map.is_empty() => {
                for (i, (key, _)) in map.iter().enumerate() {
                    self.at.push(Step::Key(key));
                    self.change(Kind::Remove(i + 1 == map.len()));
                    self.at.pop();
                }
            }
            _ => self.change(Kind::Remove(false)),
        }
    }

    fn change(&mut self, kind: Kind<'a>) {
        let (field, list_index) = classify(&self.at);
        let (at, old_spec, new_spec) = (&mut self.at, self.old_spec, self.new_spec);
        let change = |recorded: &mut Recorder| {
            let path = pointer(at);
            recorded.path(&path);
            let edit = match kind {
                Kind::Add(value, new_map) => Edit::Add { value: recorded.spec_value(at, value), new_map },
                Kind::Replace(value) => Edit::Replace { value: recorded.spec_value(at, value) },
                Kind::Remove(emptied_map) => Edit::Remove { emptied_map },
            };
            FieldChange {
                field,
                path,
                container: list_index.and_then(|(list, i)| {
                    container_name(new_spec, list, i).or_else(|| container_name(old_spec, list, i))
                }),
                edit,
            }
        };
        self.diff.push(change, field);
    }
}

/// What happened at a place, and the new value there: added (the first key of a new map:
/// `true`), replaced, removed (the last key of a map removed whole: `true`).
enum Kind<'a> {
    Add(&'a Node<'a>, bool),
    Replace(&'a Node<'a>),
    Remove(bool),
}

/// The pairs of a sorted object from the first whose key is not below `key`.
fn skip_below<'p, 'a>(pairs: &'p [(Cow<'a, str>, Node<'a>)], key: &str) -> &'p [(Cow<'a, str>, Node<'a>)] {
    let below = pairs.iter().take_while(|(k, _)| k.as_ref() < key).count();
    &pairs[below..]
}

fn changed_keys(
    old: Option<&BTreeMap<String, String>>,
    new: Option<&BTreeMap<String, String>>,
    ignore: &[&str],
    prefix: &str,
    out: &mut Diff,
) {
    let empty = BTreeMap::new();
    let (old, new) = (old.unwrap_or(&empty), new.unwrap_or(&empty));
    let keys = old.keys().chain(new.keys().filter(|k| !old.contains_key(*k)));
    let kept = |key: &str| prefix == "/metadata/labels" || keeps_annotation(key);
    for key in keys.filter(|k| !ignore.contains(&k.as_str())) {
        let (before, after) = (old.get(key), new.get(key));
        if before != after {
            let change = |recorded: &mut Recorder| {
                let path = format!("{prefix}/{}", escape(key));
                recorded.path(&path);
                let edit = match (before, after) {
                    (_, None) => Edit::Remove { emptied_map: false },
                    (None, Some(value)) => {
                        Edit::Add { value: recorded.metadata_value(value, kept(key)), new_map: false }
                    }
                    (Some(_), Some(value)) => Edit::Replace { value: recorded.metadata_value(value, kept(key)) },
                };
                FieldChange { field: Field::Other, path, container: None, edit }
            };
            out.push(change, Field::Other);
        }
    }
}

fn container_name(spec: &Node<'_>, list: &str, index: usize) -> Option<String> {
    spec.get("template")?.get("spec")?.get(list)?.at(index)?.get("name")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn spec_diff(old: Value, new: Value) -> Diff {
        let (old, new) = (old.to_string(), new.to_string());
        let (old, new) = (Node::parse(&old).unwrap(), Node::parse(&new).unwrap());
        between(
            ObjectView { spec: Some(&old), ..Default::default() },
            ObjectView { spec: Some(&new), ..Default::default() },
        )
    }

    fn spec_changes(old: Value, new: Value) -> Vec<(Field, String, Option<String>)> {
        spec_diff(old, new).listed.into_iter().map(|c| (c.field, c.path, c.container)).collect()
    }

    fn containers(image: &str, memory: &str, env: &str) -> Value {
        json!({"replicas": 3, "template": {"spec": {"containers": [{"name": "api", "image": image,
            "resources": {"limits": {"memory": memory}}, "env": [{"name": "LOG", "value": env}]}]}}})
    }

    #[test]
    fn classifies_container_fields_with_the_container_name() {
        let mut got = spec_changes(containers("a:1", "4Gi", "info"), containers("a:2", "6Gi", "debug"));
        got.sort();
        let api = Some("api".to_string());
        assert_eq!(
            got,
            vec![
                (Field::Image, "/spec/template/spec/containers/0/image".to_string(), api.clone()),
                (Field::Resources, "/spec/template/spec/containers/0/resources/limits/memory".to_string(), api.clone()),
                (Field::Env, "/spec/template/spec/containers/0/env/0/value".to_string(), api),
            ]
        );
    }

    #[test]
    fn classifies_replicas_strategy_volumes_and_other() {
        let old = json!({"replicas": 3, "strategy": {"type": "RollingUpdate"}, "paused": false,
            "template": {"metadata": {"annotations": {}}, "spec": {"volumes": []}}});
        let new = json!({"replicas": 6, "strategy": {"type": "Recreate"}, "paused": true,
            "template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "now"}},
                         "spec": {"volumes": [{"name": "v"}]}}});
        let mut got: Vec<Field> = spec_changes(old, new).into_iter().map(|c| c.0).collect();
        got.sort();
        assert_eq!(got, vec![Field::Replicas, Field::Volumes, Field::Strategy, Field::Other, Field::Other]);
    }

    #[test]
    fn hpa_bounds_are_replicas() {
        let got =
            spec_changes(json!({"maxReplicas": 12, "minReplicas": 2}), json!({"maxReplicas": 4, "minReplicas": 1}));
        assert!(got.iter().all(|c| c.0 == Field::Replicas) && got.len() == 2);
    }

    #[test]
    fn bookkeeping_annotations_are_noise_but_labels_and_other_annotations_count() {
        let old_a = BTreeMap::from([
            ("kubectl.kubernetes.io/last-applied-configuration".to_string(), "{}".to_string()),
            ("deployment.kubernetes.io/revision".to_string(), "1".to_string()),
        ]);
        let new_a = BTreeMap::from([
            ("kubectl.kubernetes.io/last-applied-configuration".to_string(), "{\"x\":1}".to_string()),
            ("deployment.kubernetes.io/revision".to_string(), "2".to_string()),
            ("team/x".to_string(), "y".to_string()),
        ]);
        let labels = BTreeMap::from([("app".to_string(), "a".to_string())]);
        let spec = Node::parse(r#"{"replicas": 1}"#).unwrap();
        let got = between(
            ObjectView { spec: Some(&spec), labels: None, annotations: Some(&old_a) },
            ObjectView { spec: Some(&spec), labels: Some(&labels), annotations: Some(&new_a) },
        );
        let paths: Vec<&str> = got.listed.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, vec!["/metadata/labels/app", "/metadata/annotations/team~1x"]);
    }

    #[test]
    fn beyond_the_listed_changes_they_are_counted_with_their_fields() {
        let n = MAX_LISTED + 500;
        let old = json!({"template": {"spec": {"x": (0..n).collect::<Vec<_>>(), "containers": [{"name": "api", "image": "a:1"}]}}});
        let new = json!({"template": {"spec": {"x": (1..n + 1).collect::<Vec<_>>(), "containers": [{"name": "api", "image": "a:2"}]}}});
        let diff = spec_diff(old, new);
        assert_eq!(diff.listed.len(), MAX_LISTED);
        assert_eq!(diff.listed.len() + diff.unlisted.count, n + 1, "every change counted once");
        assert_eq!(diff.listed[0].path, "/spec/template/spec/containers/0/image", "keys in order: containers before x");
        assert_eq!(diff.unlisted.fields, vec![Field::Other]);
    }

    #[test]
    fn a_labels_map_added_whole_is_one_change_per_key() {
        let old = json!({"template": {"metadata": {}}});
        let new =
            json!({"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "now", "b": "1"}}}});
        let got: Vec<String> = spec_changes(old, new).into_iter().map(|c| c.1).collect();
        assert_eq!(
            got,
            vec![
                "/spec/template/metadata/annotations/b",
                "/spec/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt"
            ]
        );
    }

    #[test]
    fn identical_objects_have_no_changes() {
        assert!(spec_changes(containers("a", "1Gi", "x"), containers("a", "1Gi", "x")).is_empty());
    }
}
