//! What a change changed: a json-patch diff of the old and new object, classified into the
//! fields people ask about (replicas, image, resources, env, volumes, strategy, other).
//!
//! Only `spec`, labels and annotations are compared: status, managedFields, resourceVersion,
//! generation and the like change on every write and say nothing about what the user did, and
//! `last-applied-configuration` / revision annotations are copies or counters of other fields.

use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    Replicas,
    Image,
    Resources,
    Env,
    Volumes,
    Strategy,
    Other,
}

impl Field {
    pub const ALL: [Field; 7] =
        [Field::Replicas, Field::Image, Field::Resources, Field::Env, Field::Volumes, Field::Strategy, Field::Other];

    pub fn as_str(self) -> &'static str {
        match self {
            Field::Replicas => "replicas",
            Field::Image => "image",
            Field::Resources => "resources",
            Field::Env => "env",
            Field::Volumes => "volumes",
            Field::Strategy => "strategy",
            Field::Other => "other",
        }
    }
}

/// One changed place in the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    pub field: Field,
    /// JSON pointer of the change, e.g. `/spec/template/spec/containers/0/image`.
    pub path: String,
    /// The container the change is in, by name, when it is in one.
    pub container: Option<String>,
}

/// Annotations that are bookkeeping, not intent.
pub const NOISE_ANNOTATIONS: [&str; 2] =
    ["kubectl.kubernetes.io/last-applied-configuration", "deployment.kubernetes.io/revision"];

/// The parts of an object that are compared.
#[derive(Debug, Clone, Copy, Default)]
pub struct ObjectView<'a> {
    pub spec: Option<&'a Value>,
    pub labels: Option<&'a BTreeMap<String, String>>,
    pub annotations: Option<&'a BTreeMap<String, String>>,
}

/// The classified changes from `old` to `new`, in a stable order (spec first, in diff order).
pub fn between(old: ObjectView<'_>, new: ObjectView<'_>) -> Vec<FieldChange> {
    let null = Value::Null;
    let (old_spec, new_spec) = (old.spec.unwrap_or(&null), new.spec.unwrap_or(&null));
    let mut changes: Vec<FieldChange> = json_patch::diff(old_spec, new_spec)
        .0
        .iter()
        .flat_map(|op| per_key(op.path().as_str(), old_spec, new_spec))
        .map(|path| classify_spec_path(&path, old_spec, new_spec))
        .collect();
    changed_keys(old.labels, new.labels, &[], "/metadata/labels", &mut changes);
    changed_keys(old.annotations, new.annotations, &NOISE_ANNOTATIONS, "/metadata/annotations", &mut changes);
    changes
}

fn changed_keys(
    old: Option<&BTreeMap<String, String>>,
    new: Option<&BTreeMap<String, String>>,
    ignore: &[&str],
    prefix: &str,
    out: &mut Vec<FieldChange>,
) {
    let empty = BTreeMap::new();
    let (old, new) = (old.unwrap_or(&empty), new.unwrap_or(&empty));
    let keys = old.keys().chain(new.keys().filter(|k| !old.contains_key(*k)));
    for key in keys.filter(|k| !ignore.contains(&k.as_str())) {
        if old.get(key) != new.get(key) {
            out.push(FieldChange { field: Field::Other, path: format!("{prefix}/{}", escape(key)), container: None });
        }
    }
}

/// A map key as a JSON pointer token.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// A whole labels/annotations map added or removed (the pod template had none before a
/// `kubectl rollout restart`, say) becomes one change per key, so the summary can name the key.
fn per_key(path: &str, old_spec: &Value, new_spec: &Value) -> Vec<String> {
    if !(path.ends_with("/metadata/annotations") || path.ends_with("/metadata/labels")) {
        return vec![path.to_string()];
    }
    let empty = serde_json::Map::new();
    let [old, new] = [old_spec, new_spec].map(|spec| spec.pointer(path).and_then(Value::as_object).unwrap_or(&empty));
    let keys = old.keys().chain(new.keys().filter(|k| !old.contains_key(*k)));
    let changed: Vec<String> =
        keys.filter(|k| old.get(*k) != new.get(*k)).map(|k| format!("{path}/{}", escape(k))).collect();
    if changed.is_empty() { vec![path.to_string()] } else { changed }
}

/// `path` is a JSON pointer below `spec`, e.g. `/template/spec/containers/0/image`.
fn classify_spec_path(path: &str, old_spec: &Value, new_spec: &Value) -> FieldChange {
    // Only the tokens matched below are compared, none of which contains `~` or `/`: no decoding needed.
    let t: Vec<&str> = path.split('/').skip(1).collect();
    let (field, container) = match t.as_slice() {
        ["replicas" | "maxReplicas" | "minReplicas", ..] => (Field::Replicas, None),
        ["strategy" | "minReadySeconds" | "progressDeadlineSeconds", ..] => (Field::Strategy, None),
        ["template", "spec", "volumes", ..] => (Field::Volumes, None),
        ["template", "spec", list @ ("containers" | "initContainers"), index, rest @ ..] => {
            let name = container_name(new_spec, list, index).or_else(|| container_name(old_spec, list, index));
            let field = match rest.first() {
                Some(&"image") => Field::Image,
                Some(&"resources") => Field::Resources,
                Some(&("env" | "envFrom")) => Field::Env,
                Some(&("volumeMounts" | "volumeDevices")) => Field::Volumes,
                _ => Field::Other,
            };
            (field, name)
        }
        _ => (Field::Other, None),
    };
    FieldChange { field, path: format!("/spec{path}"), container }
}

fn container_name(spec: &Value, list: &str, index: &str) -> Option<String> {
    let i: usize = index.parse().ok()?;
    spec.get("template")?.get("spec")?.get(list)?.get(i)?.get("name")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec_changes(old: Value, new: Value) -> Vec<(Field, String, Option<String>)> {
        between(
            ObjectView { spec: Some(&old), ..Default::default() },
            ObjectView { spec: Some(&new), ..Default::default() },
        )
        .into_iter()
        .map(|c| (c.field, c.path, c.container))
        .collect()
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
        let spec = json!({"replicas": 1});
        let got = between(
            ObjectView { spec: Some(&spec), labels: None, annotations: Some(&old_a) },
            ObjectView { spec: Some(&spec), labels: Some(&labels), annotations: Some(&new_a) },
        );
        let paths: Vec<&str> = got.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, vec!["/metadata/labels/app", "/metadata/annotations/team~1x"]);
    }

    #[test]
    fn identical_objects_have_no_changes() {
        assert!(spec_changes(containers("a", "1Gi", "x"), containers("a", "1Gi", "x")).is_empty());
    }
}
