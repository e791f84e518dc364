//! The object `kubectl apply` makes of a manifest and the live object: the manifest laid over the
//! live object, so that what the API server defaulted (strategy, imagePullPolicy, a port's
//! protocol...) and what the manifest leaves out (replicas managed by an HPA) stay as they are,
//! as with apply's strategic merge. Lists of named things (containers, env, volumes, ports,
//! mounts) merge item by item on their key; the manifest's items and order win, and items only
//! the live object has are dropped (apply removes what the previous apply put there). Other
//! lists are replaced. A `null` in the manifest removes the field.
//!
//! Not modelled: fields removed from a manifest since the last apply (apply deletes them, this
//! keeps them), and quantities the API server rewrites (`0.5` CPU is stored as `500m`, seen here
//! as a resources change).

use serde_json::{Map, Value};

/// The key that identifies an item of a list, by the list's field name.
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "containers" | "initContainers" | "ephemeralContainers" | "env" | "volumes" | "imagePullSecrets" => {
            Some("name")
        }
        "ports" => Some("containerPort"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        // tolerations, args, topologySpreadConstraints...: replaced whole, as apply does.
        _ => None,
    }
}

/// `manifest` laid over `live`.
pub fn overlay(live: &Value, manifest: &Value) -> Value {
    merge(live, manifest, "")
}

fn merge(live: &Value, manifest: &Value, field: &str) -> Value {
    match (live, manifest) {
        (Value::Object(live), Value::Object(manifest)) => Value::Object(merge_maps(live, manifest)),
        (Value::Array(live), Value::Array(manifest)) => match merge_key(field) {
            Some(key) => Value::Array(merge_lists(live, manifest, key)),
            None => Value::Array(manifest.clone()),
        },
        (_, manifest) => manifest.clone(),
    }
}

fn merge_maps(live: &Map<String, Value>, manifest: &Map<String, Value>) -> Map<String, Value> {
    let mut out = live.clone();
    for (key, value) in manifest {
        match (value, live.get(key)) {
            (Value::Null, _) => {
                out.remove(key);
            }
            (value, Some(existing)) => {
                out.insert(key.clone(), merge(existing, value, key));
            }
            (value, None) => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    out
}

fn merge_lists(live: &[Value], manifest: &[Value], key: &str) -> Vec<Value> {
    manifest
        .iter()
        .map(|item| {
            let id = item.get(key);
            let existing = id.and_then(|id| live.iter().find(|l| l.get(key) == Some(id)));
            match existing {
                Some(existing) => merge(existing, item, ""),
                None => item.clone(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_of_the_live_object_stay_and_the_manifest_wins() {
        let live = json!({"spec": {
            "replicas": 3, "revisionHistoryLimit": 10,
            "template": {"spec": {"containers": [
                {"name": "api", "image": "api:1", "imagePullPolicy": "IfNotPresent",
                 "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                {"name": "old-sidecar", "image": "s:1"}
            ]}}
        }});
        let manifest = json!({"spec": {
            "replicas": 6,
            "template": {"spec": {"containers": [{"name": "api", "image": "api:2", "ports": [{"containerPort": 80}]}]}}
        }});
        assert_eq!(
            overlay(&live, &manifest),
            json!({"spec": {
                "replicas": 6, "revisionHistoryLimit": 10,
                "template": {"spec": {"containers": [
                    {"name": "api", "image": "api:2", "imagePullPolicy": "IfNotPresent",
                     "ports": [{"containerPort": 80, "protocol": "TCP"}]}
                ]}}
            }})
        );
    }

    #[test]
    fn left_out_fields_stay_and_null_removes() {
        let live = json!({"spec": {"replicas": 5, "paused": true}, "status": {"replicas": 5}});
        let manifest = json!({"spec": {"paused": null}});
        assert_eq!(overlay(&live, &manifest), json!({"spec": {"replicas": 5}, "status": {"replicas": 5}}));
    }

    #[test]
    fn lists_without_a_key_are_replaced() {
        let live = json!({"args": ["a", "b"]});
        assert_eq!(overlay(&live, &json!({"args": ["c"]})), json!({"args": ["c"]}));
    }
}
