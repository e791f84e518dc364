//! Finding what a request asks for, on each path to more replicas: the Deployment itself, its
//! scale subresource, and HorizontalPodAutoscalers that target it.

use super::ReviewError;
use super::decode::{KubernetesObject, Request, parse};
use crate::decision::changes::{self, ObjectView};
use crate::decision::tree::Node;
use crate::decision::{Operation, Path, Subject};
use k8s_openapi::api::autoscaling::v1::ScaleSpec;
use k8s_openapi::api::autoscaling::v2::CrossVersionObjectReference;
use kube::core::admission::Operation as KubeOperation;
use serde::Deserialize;
use serde_json::value::RawValue;

/// What the webhook makes of a request.
#[derive(Debug)]
pub enum Target {
    /// A request on a replica path: decide it. (Boxed: a subject is large beside a reason.)
    Subject(Box<Subject>),
    /// Not a replica path (another kind, DELETE, an HPA on a StatefulSet...): allowed and logged.
    NotHandled(String),
}

/// The fields of a Deployment spec read here: the replicas, and the shape of the pod template
/// (whose container names the change summary uses).
#[derive(Deserialize)]
struct DeploymentSpec {
    #[serde(default)]
    replicas: Option<i32>,
    #[serde(default)]
    #[allow(dead_code)] // parsed to check its shape
    template: Option<PodTemplate>,
}

#[derive(Deserialize)]
struct PodTemplate {
    #[serde(default)]
    #[allow(dead_code)]
    spec: Option<PodSpec>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct PodSpec {
    #[serde(default)]
    containers: Vec<NamedContainer>,
    #[serde(default)]
    init_containers: Vec<NamedContainer>,
}

/// A container is checked to be a map; its fields are not kept (the change summary reads the
/// names from the parsed spec), so nothing is allocated for them.
#[derive(Deserialize)]
#[allow(dead_code)]
struct NamedContainer {
    #[serde(default)]
    name: serde::de::IgnoredAny,
}

/// The fields of a HorizontalPodAutoscaler spec that matter here; the same in `autoscaling/v1`,
/// `v2beta2` and `v2` (only the metrics differ between versions, and they are not read).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HpaSpec {
    scale_target_ref: CrossVersionObjectReference,
    #[serde(default)]
    min_replicas: Option<i32>,
    max_replicas: i32,
}

pub fn target(req: &Request<'_>, override_annotation: &str) -> Result<Target, ReviewError> {
    let operation = match &req.operation {
        KubeOperation::Create => Operation::Create,
        KubeOperation::Update => Operation::Update,
        other => return Ok(Target::NotHandled(format!("operation {other:?}"))),
    };
    let resource = (req.resource.group.as_str(), req.resource.resource.as_str(), req.sub_resource.as_deref());
    let path = match resource {
        ("apps", "deployments", None) => PathKind::Deployment,
        ("apps", "deployments", Some("scale")) => PathKind::Scale,
        ("autoscaling", "horizontalpodautoscalers", None) => PathKind::Hpa,
        (group, resource, sub) => {
            let sub = sub.map(|s| format!("/{s}")).unwrap_or_default();
            return Ok(Target::NotHandled(format!("resource {group}/{resource}{sub}")));
        }
    };
    let namespace = req.namespace.clone().filter(|n| !n.is_empty()).ok_or(ReviewError::MissingField("namespace"))?;
    let new = req.object.as_ref().ok_or(ReviewError::MissingField("object"))?;
    let old = match operation {
        Operation::Update => Some(req.old_object.as_ref().ok_or(ReviewError::MissingField("oldObject"))?),
        Operation::Create => None,
    };
    let new_view = path.read(new, "object")?;
    let old_view = old.map(|o| path.read(o, "oldObject")).transpose()?;

    let (path, deployment) = match (path, &new_view.hpa_target) {
        (PathKind::Hpa, Some(target)) if target.kind != "Deployment" => {
            return Ok(Target::NotHandled(format!("HPA targets a {}, not a Deployment", target.kind)));
        }
        (PathKind::Hpa, Some(target)) => (Path::Hpa { hpa: object_name(req, new) }, target.name.clone()),
        (PathKind::Scale, _) => (Path::Scale, object_name(req, new)),
        _ => (Path::Deployment, object_name(req, new)),
    };
    let changes = match old {
        Some(old) => spec_changes(old, new)?,
        None => changes::Diff::default(),
    };
    let override_reason = new
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(override_annotation))
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    Ok(Target::Subject(Box::new(Subject {
        path,
        operation,
        namespace,
        deployment,
        new_replicas: new_view.replicas,
        old_replicas: old_view.as_ref().map(|v| v.replicas),
        min_replicas: new_view.min_replicas,
        override_reason,
        user: req.user_info.username.clone().unwrap_or_default(),
        groups: req.user_info.groups.clone().unwrap_or_default(),
        dry_run: req.dry_run,
        changes: changes.listed,
        unlisted_changes: changes.unlisted,
        omitted_values: changes.recorded.omitted,
    })))
}

/// The classified changes from `old` to `new`. Byte-identical specs (a controller touching
/// metadata, a server-side-apply migration) are not parsed at all.
fn spec_changes<'a>(old: &KubernetesObject<'a>, new: &KubernetesObject<'a>) -> Result<changes::Diff, ReviewError> {
    let tree = |object: &KubernetesObject<'a>, which: &'static str| -> Result<Option<Node<'a>>, ReviewError> {
        object
            .spec
            .map(|raw| Node::parse(raw.get()))
            .transpose()
            .map_err(|e| ReviewError::NotJson(format!("request.{which}.spec: {e}")))
    };
    let same_spec = old.spec.map(RawValue::get) == new.spec.map(RawValue::get);
    let (old_spec, new_spec) = if same_spec { (None, None) } else { (tree(old, "oldObject")?, tree(new, "object")?) };
    Ok(changes::between(view(old, old_spec.as_ref()), view(new, new_spec.as_ref())))
}

fn view<'a>(object: &'a KubernetesObject<'_>, spec: Option<&'a Node<'a>>) -> ObjectView<'a> {
    ObjectView { spec, labels: object.metadata.labels.as_ref(), annotations: object.metadata.annotations.as_ref() }
}

/// The request's name, or the object's when the request carries none.
fn object_name(req: &Request<'_>, object: &KubernetesObject<'_>) -> String {
    if req.name.is_empty() { object.metadata.name.clone().unwrap_or_default() } else { req.name.clone() }
}

#[derive(Clone, Copy)]
enum PathKind {
    Deployment,
    Scale,
    Hpa,
}

/// The replica fields read from one object (new or old).
struct ReplicaView {
    replicas: i32,
    min_replicas: Option<i32>,
    hpa_target: Option<CrossVersionObjectReference>,
}

impl PathKind {
    fn kind(self) -> &'static str {
        match self {
            PathKind::Deployment => "apps/v1 Deployment",
            PathKind::Scale => "autoscaling/v1 Scale",
            PathKind::Hpa => "autoscaling HorizontalPodAutoscaler",
        }
    }

    fn expected_kind(self) -> &'static str {
        match self {
            PathKind::Deployment => "Deployment",
            PathKind::Scale => "Scale",
            PathKind::Hpa => "HorizontalPodAutoscaler",
        }
    }

    /// Reads the replica fields, with the defaults the API server applies: a Deployment without
    /// `spec.replicas` has 1, a Scale without it has 0 (0 is omitted from the JSON).
    fn read(self, object: &KubernetesObject<'_>, which: &'static str) -> Result<ReplicaView, ReviewError> {
        if let Some(kind) = &object.kind
            && kind != self.expected_kind()
        {
            return Err(self.invalid(which, format!("kind is {kind:?}")));
        }
        let spec = object.spec;
        let view = match self {
            PathKind::Deployment => {
                let spec: DeploymentSpec = self.spec(spec, which)?;
                ReplicaView { replicas: spec.replicas.unwrap_or(1), min_replicas: None, hpa_target: None }
            }
            PathKind::Scale => {
                let spec: ScaleSpec = match spec {
                    Some(spec) => self.spec(Some(spec), which)?,
                    None => ScaleSpec::default(),
                };
                ReplicaView { replicas: spec.replicas.unwrap_or(0), min_replicas: None, hpa_target: None }
            }
            PathKind::Hpa => {
                let spec: HpaSpec = self.spec(spec, which)?;
                ReplicaView {
                    replicas: spec.max_replicas,
                    min_replicas: spec.min_replicas,
                    hpa_target: Some(spec.scale_target_ref),
                }
            }
        };
        let field = match self {
            PathKind::Hpa => "spec.maxReplicas",
            _ => "spec.replicas",
        };
        check_replicas(which, field, view.replicas)?;
        if let Some(min) = view.min_replicas {
            check_replicas(which, "spec.minReplicas", min)?;
        }
        Ok(view)
    }

    fn spec<'a, T: Deserialize<'a>>(self, spec: Option<&'a RawValue>, which: &'static str) -> Result<T, ReviewError> {
        let spec = spec.ok_or_else(|| self.invalid(which, "spec is missing".into()))?;
        parse(spec.get().as_bytes()).map_err(|e| {
            let at = if e.path == "." { "spec".to_string() } else { format!("spec.{}", e.path) };
            // A replica count is an int32: "expected a whole number", not `expected i32`.
            let problem = crate::words::in_words(&at, &e.error.to_string());
            self.invalid(which, format!("{at}: {problem}"))
        })
    }

    fn invalid(self, which: &'static str, detail: String) -> ReviewError {
        ReviewError::InvalidObject { which, kind: self.kind(), detail }
    }
}

/// Any int32 from 0 up is a replica count the API server accepts, so it is decided, however
/// large; only a negative one (which no API server sends) is bad input. Non-integers and values
/// beyond int32 already fail to parse.
fn check_replicas(which: &'static str, field: &'static str, value: i32) -> Result<(), ReviewError> {
    if value >= 0 { Ok(()) } else { Err(ReviewError::InvalidReplicas { which, field, value: value.into() }) }
}
