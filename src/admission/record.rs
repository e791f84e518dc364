//! The decision record: one JSON line per admission that changed something or violated something.
//! This is the trail the original design wanted in BigQuery; a log sink picks the lines up by
//! `"log": "replica-guard-audit"` (the name log pipelines already match on). The field set is
//! fixed: absent values are `null`, never missing. `crate::json_lines` writes it.

use crate::decision::{Decision, Subject};
use serde::Serialize;

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DecisionRecord<'a> {
    pub log: &'static str,
    pub time: String,
    pub uid: &'a str,
    pub user: &'a str,
    pub namespace: &'a str,
    /// The Deployment whose limit applied.
    pub name: &'a str,
    /// deployment, scale or hpa.
    pub path: &'static str,
    /// The HPA's own name on the hpa path.
    pub hpa: Option<&'a str>,
    pub operation: &'static str,
    pub old_replicas: Option<i32>,
    pub new_replicas: i32,
    pub max_replicas: Option<i32>,
    pub mode: Option<&'static str>,
    pub decision: &'static str,
    pub rule: &'static str,
    pub changed_fields: Vec<&'static str>,
    pub changed_paths: Vec<&'a str>,
    /// What changed, as an RFC 6902 JSON Patch of the objects' recorded views
    /// (`decision::patch`); null for a CREATE (no old object; the review of a CREATE reads only
    /// what it decides on, and its cost stays there).
    pub patch: Option<json_patch::Patch>,
    /// What the patch leaves out: values redacted, values past the budget, changes past the
    /// first 1,000.
    pub patch_omitted: PatchOmitted,
    pub override_reason: Option<&'a str>,
    pub override_result: &'static str,
    pub warnings: &'a [String],
    pub message: Option<&'a str>,
    pub dry_run: bool,
    /// A denial's entry read again from the registry first (`webhook`): confirmed, changed,
    /// timeout or error; null when it was not.
    pub registry_reread: Option<&'static str>,
    /// The registry revision the limit came from (`limits::store::Revision`: Firestore's read
    /// time, the ConfigMap's resourceVersion, the file's digest…); null when no limit was asked.
    pub registry_revision: Option<&'a str>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PatchOmitted {
    pub redacted: usize,
    pub over_budget: usize,
    pub unlisted: usize,
}

/// Most paths a record lists; a rewrite of a whole object would otherwise make one huge line.
const MAX_PATHS: usize = 50;

impl<'a> DecisionRecord<'a> {
    pub fn new(uid: &'a str, subject: &'a Subject, decision: &'a Decision, time: String) -> Self {
        use crate::decision::{Override, Path};
        let (path, hpa) = match &subject.path {
            Path::Deployment => ("deployment", None),
            Path::Scale => ("scale", None),
            Path::Hpa { hpa } => ("hpa", Some(hpa.as_str())),
        };
        Self {
            log: "replica-guard-audit",
            time,
            uid,
            user: &subject.user,
            namespace: &subject.namespace,
            name: &subject.deployment,
            path,
            hpa,
            operation: subject.operation.as_str(),
            old_replicas: subject.old_replicas,
            new_replicas: subject.new_replicas,
            max_replicas: decision.limit.as_ref().map(|l| l.max_replicas),
            mode: decision.mode.map(|m| m.as_str()),
            decision: decision.verdict.as_str(),
            rule: decision.rule.as_str(),
            changed_fields: super::respond::changed_fields(subject),
            changed_paths: subject.changes.iter().take(MAX_PATHS).map(|c| c.path.as_str()).collect(),
            patch: crate::decision::patch::of_subject(subject),
            patch_omitted: PatchOmitted {
                redacted: subject.omitted_values.redacted,
                over_budget: subject.omitted_values.over_budget,
                unlisted: subject.unlisted_changes.count,
            },
            override_reason: subject.override_reason.as_deref(),
            override_result: match decision.override_use {
                Override::NotUsed => "none",
                Override::Honoured => "honoured",
                Override::Ignored => "ignored",
            },
            warnings: &decision.warnings,
            message: decision.deny_message.as_deref(),
            dry_run: subject.dry_run,
            registry_reread: None,
            registry_revision: None,
        }
    }

    /// Whether this admission is worth a record: it changed something, or broke or bent a rule.
    pub fn is_worth_recording(subject: &Subject, decision: &Decision) -> bool {
        !subject.changes.is_empty()
            || subject.operation == crate::decision::Operation::Create
            || decision.verdict != crate::decision::Verdict::Allowed
            || decision.is_violation()
    }
}
