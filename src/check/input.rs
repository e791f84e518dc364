//! Reading what a pipeline has: files and folders (recursive `.yaml`, `.yml`, `.json`), `-` for
//! standard input, multi-document YAML (`helm template`, `kustomize build`), `List` objects, and
//! AdmissionReview files, told apart by their `kind`. Errors name the file, the document and the
//! line.

use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path}: document {document}{line}: not valid YAML: {detail}")]
    Yaml { path: String, document: usize, line: String, detail: String },
    #[error("{path}: no .yaml, .yml or .json files in this folder")]
    EmptyFolder { path: String },
    #[error("no objects in the input (an empty file, or a template that rendered nothing)")]
    Nothing,
    #[error("{path}: no objects in this file (empty, or only comments): a template that rendered nothing?")]
    EmptyFile { path: String },
    #[error(
        "{path}: document {document}: not a Kubernetes object (it has no {missing}); only manifests can be checked"
    )]
    NotKubernetes { path: String, document: usize, missing: &'static str },
}

/// How standard input is named in reports (as kubectl names it).
pub const STDIN: &str = "STDIN";

/// One object of the input, and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The file (`STDIN` for standard input).
    pub source: String,
    /// The document's index in its file, from 1 (items of a `List` share their document's).
    pub document: usize,
    pub object: Value,
}

/// Every object in `paths`, in order (folders sorted by name).
pub fn read_all(paths: &[PathBuf]) -> Result<Vec<Manifest>, InputError> {
    let mut manifests = vec![];
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|error| InputError::Read { path: "standard input".into(), error })?;
            parse(STDIN, &text, &mut manifests)?;
        } else if path.is_dir() {
            let files = files_under(path)?;
            if files.is_empty() {
                return Err(InputError::EmptyFolder { path: path.display().to_string() });
            }
            for file in files {
                read_file(&file, &mut manifests)?;
            }
        } else {
            read_file(path, &mut manifests)?;
        }
    }
    if manifests.is_empty() {
        return Err(InputError::Nothing);
    }
    Ok(manifests)
}

fn read_file(path: &Path, out: &mut Vec<Manifest>) -> Result<(), InputError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| InputError::Read { path: name.clone(), error })?;
    let before = out.len();
    parse(&name, &text, out)?;
    // Next to other files an empty one would pass unnoticed; it is as suspicious as an empty input.
    if out.len() == before {
        return Err(InputError::EmptyFile { path: name });
    }
    Ok(())
}

/// The manifest files under a folder, recursively, sorted.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>, InputError> {
    let mut files = vec![];
    let mut folders = vec![dir.to_path_buf()];
    // Bounded by the tree itself; symlinked folders are not followed (no cycles).
    while let Some(folder) = folders.pop() {
        let read = |error| InputError::Read { path: folder.display().to_string(), error };
        for entry in std::fs::read_dir(&folder).map_err(read)? {
            let entry = entry.map_err(read)?;
            let kind = entry.file_type().map_err(read)?;
            let path = entry.path();
            if kind.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Splits a text into its documents (JSON is YAML), and `List`s into their items.
pub fn parse(source: &str, text: &str, out: &mut Vec<Manifest>) -> Result<(), InputError> {
    for (i, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let document_number = i + 1;
        let value: Value = serde::Deserialize::deserialize(document).map_err(|e| InputError::Yaml {
            path: source.to_string(),
            document: document_number,
            line: e.location().map(|l| format!(", line {}", l.line())).unwrap_or_default(),
            detail: e.to_string(),
        })?;
        push_object(source, document_number, value, out)?;
    }
    Ok(())
}

fn push_object(source: &str, document: usize, value: Value, out: &mut Vec<Manifest>) -> Result<(), InputError> {
    let not_kubernetes = |missing| InputError::NotKubernetes { path: source.to_string(), document, missing };
    match value {
        // An empty document (`---` with comments only, as Helm leaves between templates).
        Value::Null => {}
        Value::Object(mut map) if map.get("kind").and_then(Value::as_str).is_some_and(|k| k.ends_with("List")) => {
            if let Some(Value::Array(items)) = map.remove("items") {
                for item in items {
                    push_object(source, document, item, out)?;
                }
            }
        }
        Value::Object(mut map) => {
            // kustomize's own file may leave out apiVersion and kind; it is passed over like any
            // object that is not a Deployment or HPA (a folder of kustomize sources has them).
            let file = Path::new(source).file_name().and_then(|f| f.to_str()).unwrap_or_default();
            if matches!(file, "kustomization.yaml" | "kustomization.yml" | "Kustomization") {
                map.entry("apiVersion").or_insert_with(|| "kustomize.config.k8s.io/v1beta1".into());
                map.entry("kind").or_insert_with(|| "Kustomization".into());
            }
            let has = |key: &str| map.get(key).and_then(Value::as_str).is_some_and(|v| !v.is_empty());
            match (has("apiVersion"), has("kind")) {
                (true, true) => out.push(Manifest { source: source.to_string(), document, object: Value::Object(map) }),
                (false, true) => return Err(not_kubernetes("apiVersion")),
                (true, false) => return Err(not_kubernetes("kind")),
                (false, false) => return Err(not_kubernetes("apiVersion and kind")),
            }
        }
        _ => return Err(not_kubernetes("apiVersion and kind: it is not even a mapping")),
    }
    Ok(())
}

/// The group, version and plural of the kinds judged; None for everything else.
pub fn resource(kind: &str, api_version: &str) -> Option<(&'static str, &'static str)> {
    match (kind, api_version.split_once('/').map_or("", |(g, _)| g)) {
        ("Deployment", "apps") => Some(("apps", "deployments")),
        ("HorizontalPodAutoscaler", "autoscaling") => Some(("autoscaling", "horizontalpodautoscalers")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(usize, String)> {
        let mut out = vec![];
        parse("t.yaml", text, &mut out).unwrap();
        out.into_iter().map(|m| (m.document, m.object["kind"].as_str().unwrap_or("?").to_string())).collect()
    }

    #[test]
    fn documents_lists_and_empty_documents() {
        let text = "---\n# Source: chart/templates/a.yaml\n---\n{apiVersion: v1, kind: Service}\n---\nkind: List\nitems:\n- {apiVersion: apps/v1, kind: Deployment}\n- {apiVersion: autoscaling/v2, kind: HorizontalPodAutoscaler}\n";
        assert_eq!(
            kinds(text),
            vec![(2, "Service".into()), (3, "Deployment".into()), (3, "HorizontalPodAutoscaler".into())],
            "the comment-only document counts: it is the first"
        );
        assert_eq!(
            kinds("{\"apiVersion\": \"admission.k8s.io/v1\", \"kind\": \"AdmissionReview\"}"),
            vec![(1, "AdmissionReview".into())]
        );
    }

    #[test]
    fn yaml_errors_name_the_file_the_document_and_the_line() {
        let mut out = vec![];
        let e = parse(
            "deploy.yaml",
            "{apiVersion: v1, kind: Service}\n---\nkind: Deployment\nspec:\n  replicas: [1\n",
            &mut out,
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("deploy.yaml: document 2, line "), "{text}");
    }

    #[test]
    fn a_document_that_is_not_a_kubernetes_object_is_named() {
        let mut out = vec![];
        let e = parse("values.yaml", "{apiVersion: v1, kind: Service}\n---\nreplicas: 3\nimage: {tag: x}\n", &mut out);
        assert_eq!(
            e.unwrap_err().to_string(),
            "values.yaml: document 2: not a Kubernetes object (it has no apiVersion and kind); only manifests can be checked"
        );
    }
}
