//! `check --cluster`: the live Deployments and HPAs the manifests would update, read once per
//! namespace and kind (paged lists, in the manifest's own API version, so that the live object
//! and the manifest have the same shape), never one request per manifest.

use super::input::{Manifest, resource};
use crate::cluster::inventory::{InventoryError, list_each};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::GroupVersionKind;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

/// Live objects by (kind, namespace, name).
#[derive(Debug, Default)]
pub struct Live {
    objects: HashMap<(String, String, String), Value>,
}

impl Live {
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(kind.to_string(), namespace.to_string(), name.to_string()))
    }

    /// Reads what the manifests name: for every (namespace, apiVersion, kind) of a Deployment or
    /// HPA among them, one paged list.
    pub async fn read(
        client: kube::Client,
        manifests: &[Manifest],
        default_namespace: &str,
    ) -> Result<Self, InventoryError> {
        let mut wanted = BTreeSet::new();
        let mut named = std::collections::HashSet::new();
        for m in manifests {
            let field = |pointer: &str| m.object.pointer(pointer).and_then(Value::as_str);
            let (Some(kind), Some(api_version)) = (field("/kind"), field("/apiVersion")) else { continue };
            // The same kinds `check` judges, by the same rule.
            let Some((_, plural)) = resource(kind, api_version) else { continue };
            let namespace = field("/metadata/namespace").unwrap_or(default_namespace);
            wanted.insert((namespace.to_string(), api_version.to_string(), kind.to_string(), plural));
            if let Some(name) = field("/metadata/name") {
                named.insert((kind.to_string(), namespace.to_string(), name.to_string()));
            }
        }
        let mut live = Live::default();
        for (namespace, api_version, kind, plural) in wanted {
            let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
            let resource = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, &kind), plural);
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &resource);
            // Only the objects a manifest names, without what the decision never reads (status,
            // managedFields): 50,000 live Deployments must not all be held as trees.
            list_each(api, plural, |mut object| {
                let Some(name) = object.metadata.name.clone() else { return };
                let key = (kind.clone(), namespace.clone(), name);
                if !named.contains(&key) {
                    return;
                }
                object.metadata.managed_fields = None;
                if let Some(data) = object.data.as_object_mut() {
                    data.remove("status");
                }
                let mut value = serde_json::to_value(object).unwrap_or_default();
                // List items carry no apiVersion and kind; the review's objects do.
                value["apiVersion"] = Value::from(api_version.as_str());
                value["kind"] = Value::from(kind.as_str());
                live.objects.insert(key, value);
            })
            .await?;
        }
        Ok(live)
    }
}
