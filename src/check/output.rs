//! What `check` prints: text like kubectl's (a `Warning:` line per warning, the denial as
//! kubectl shows it, one summary line per workload and a total), JSON (`replica-guard.io/check/v1`,
//! documented in the README) and JUnit (one test case per workload, for CI test reports).
//!
//! A workload is a Deployment with the HPAs that target it: an HPA in the input is reported with
//! the Deployment it scales.

use super::{Checked, Outcome};
use crate::decision::messages::change_summary;
use crate::decision::{Path, Rule, Verdict};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write;

/// The name kubectl shows in "admission webhook ... denied the request".
pub const WEBHOOK_NAME: &str = "validate.replica-guard.io";

/// The objects of one workload, in input order.
struct Group<'a> {
    namespace: &'a str,
    name: &'a str,
    objects: Vec<&'a Checked>,
}

impl Group<'_> {
    fn denied(&self) -> bool {
        self.objects.iter().any(|c| c.verdict() == Some(Verdict::Denied))
    }
    fn invalid(&self) -> bool {
        self.objects.iter().any(|c| matches!(c.outcome, Outcome::Invalid(_)))
    }
    fn warnings(&self) -> impl Iterator<Item = &String> {
        self.objects
            .iter()
            .filter_map(|c| match &c.outcome {
                Outcome::Decided(d) => Some(d.decision.warnings.iter()),
                _ => None,
            })
            .flatten()
    }
}

/// Groups the judged objects by workload (namespace, Deployment), in order of first appearance.
fn workloads(checked: &[Checked]) -> Vec<Group<'_>> {
    let mut order: Vec<Group<'_>> = vec![];
    let mut index: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for c in checked {
        let deployment = match &c.outcome {
            Outcome::Decided(d) => d.subject.deployment.as_str(),
            Outcome::Invalid(_) => c.name.as_str(),
            Outcome::PassedOver(_) => continue,
        };
        let key = (c.namespace.as_str(), deployment);
        let i = *index.entry(key).or_insert_with(|| {
            order.push(Group { namespace: key.0, name: key.1, objects: vec![] });
            order.len() - 1
        });
        order[i].objects.push(c);
    }
    order
}

/// Counts for the total line and the JSON summary.
#[derive(Default)]
pub struct Totals {
    pub workloads: usize,
    pub denied: usize,
    pub warned: usize,
    pub allowed: usize,
    pub invalid: usize,
    pub updates: usize,
    pub creates: usize,
    pub passed_over: BTreeMap<String, usize>,
}

pub fn totals(checked: &[Checked]) -> Totals {
    let mut t = Totals::default();
    for w in workloads(checked) {
        t.workloads += 1;
        if w.invalid() {
            t.invalid += 1;
        } else if w.denied() {
            t.denied += 1;
        } else if w.warnings().next().is_some() {
            t.warned += 1;
        } else {
            t.allowed += 1;
        }
    }
    for c in checked {
        match &c.outcome {
            Outcome::PassedOver(kind) => *t.passed_over.entry(kind.clone()).or_default() += 1,
            Outcome::Decided(d) if d.subject.operation == crate::decision::Operation::Update => t.updates += 1,
            Outcome::Decided(_) => t.creates += 1,
            Outcome::Invalid(_) => {}
        }
    }
    t
}

/// One object in a few words: `Deployment UPDATE: changes: replicas 3 -> 6, image of api`.
fn describe(c: &Checked) -> String {
    match &c.outcome {
        Outcome::Decided(d) => {
            let s = &d.subject;
            let what = match &s.path {
                Path::Hpa { hpa } => format!("HPA {hpa} {} maxReplicas {}", s.operation.as_str(), s.new_replicas),
                Path::Deployment | Path::Scale => {
                    format!("Deployment {} replicas {}", s.operation.as_str(), s.new_replicas)
                }
            };
            let detail = match d.decision.rule {
                Rule::NoChange => Some("no change".to_string()),
                Rule::Exempt(e) => Some(format!("exempt: {}", e.as_str())),
                _ => change_summary(s),
            };
            match detail {
                Some(detail) => format!("{what} ({detail})"),
                None => what,
            }
        }
        Outcome::Invalid(why) => format!("{} not valid: {why}", if c.kind.is_empty() { "object" } else { &c.kind }),
        Outcome::PassedOver(kind) => format!("{kind} passed over"),
    }
}

fn registered(w: &Group<'_>) -> Option<i32> {
    w.objects.iter().find_map(|c| match &c.outcome {
        Outcome::Decided(d) => d.decision.limit.as_ref().map(|l| l.max_replicas),
        _ => None,
    })
}

/// kubectl-like text.
pub fn text(checked: &[Checked], judged_as_updates: bool) -> String {
    let mut out = String::new();
    for w in workloads(checked) {
        for warning in w.warnings() {
            let _ = writeln!(out, "Warning: {warning}");
        }
        for c in &w.objects {
            if let Outcome::Decided(d) = &c.outcome
                && let Some(message) = &d.decision.deny_message
            {
                let _ = writeln!(
                    out,
                    "Error from server (Forbidden): admission webhook \"{WEBHOOK_NAME}\" denied the request: {message}"
                );
            }
        }
        let result = if w.invalid() {
            "could not be judged"
        } else if w.denied() {
            "would be denied"
        } else if w.warnings().next().is_some() {
            "allowed with warnings"
        } else {
            "allowed"
        };
        let limit = registered(&w).map(|m| format!(" [PED max {m}]")).unwrap_or_default();
        let parts: Vec<String> = w.objects.iter().map(|c| describe(c)).collect();
        let _ = writeln!(out, "{}/{}: {result}{limit}: {}", w.namespace, w.name, parts.join("; "));
    }
    let t = totals(checked);
    let how = if judged_as_updates {
        format!("{} as UPDATE of the live object, {} as CREATE (not in the cluster)", t.updates, t.creates)
    } else {
        "each as a CREATE (no --cluster: updates of live objects are not known)".to_string()
    };
    let passed: Vec<String> = t.passed_over.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let passed = if passed.is_empty() { String::new() } else { format!("; passed over: {}", passed.join(", ")) };
    let _ = writeln!(
        out,
        "{} workload{}: {} would be denied, {} allowed with warnings, {} allowed{}; judged {how}{passed}",
        t.workloads,
        if t.workloads == 1 { "" } else { "s" },
        t.denied,
        t.warned,
        t.allowed,
        if t.invalid > 0 { format!(", {} could not be judged", t.invalid) } else { String::new() },
    );
    out
}

fn object_json(c: &Checked) -> Value {
    let base = json!({
        "source": c.source, "document": c.document, "kind": c.kind, "namespace": c.namespace, "name": c.name,
    });
    let mut object = base.as_object().cloned().unwrap_or_default();
    let fields = match &c.outcome {
        Outcome::Decided(d) => json!({
            "deployment": d.subject.deployment,
            "operation": d.subject.operation.as_str(),
            "decision": d.decision.verdict.as_str(),
            "rule": d.decision.rule.as_str(),
            "requestedReplicas": d.subject.new_replicas,
            "previousReplicas": d.subject.old_replicas,
            "registeredMaxReplicas": d.decision.limit.as_ref().map(|l| l.max_replicas),
            "changes": change_summary(&d.subject),
            // The decision record's patch, for a manifest judged against `--cluster`'s object.
            "patch": crate::decision::patch::of_subject(&d.subject),
            "warnings": d.decision.warnings,
            "message": d.decision.deny_message,
        }),
        // The same keys for every object, `null` where there is nothing to say (the schema).
        Outcome::Invalid(why) => json!({
            "deployment": null, "operation": null, "decision": "invalid", "rule": null,
            "requestedReplicas": null, "previousReplicas": null, "registeredMaxReplicas": null,
            "changes": null, "patch": null, "warnings": [], "message": why,
        }),
        Outcome::PassedOver(_) => json!({"decision": "passed-over"}),
    };
    object.extend(fields.as_object().cloned().unwrap_or_default());
    Value::Object(object)
}

/// The stable JSON schema (README "Checking manifests before deploying").
pub fn json(checked: &[Checked], judged_as_updates: bool) -> String {
    let t = totals(checked);
    let objects: Vec<Value> =
        checked.iter().filter(|c| !matches!(c.outcome, Outcome::PassedOver(_))).map(object_json).collect();
    let report = json!({
        "apiVersion": "replica-guard.io/check/v1",
        "judgedAgainstCluster": judged_as_updates,
        "objects": objects,
        "passedOver": t.passed_over,
        "summary": {
            "workloads": t.workloads, "denied": t.denied, "warned": t.warned, "allowed": t.allowed,
            "invalid": t.invalid, "updates": t.updates, "creates": t.creates,
        },
    });
    serde_json::to_string_pretty(&report).unwrap_or_default()
}

/// The JSON report of a check that could not run (bad config or input, the registry
/// unreachable): the same schema, no objects, and `error` saying why.
pub fn json_error(message: &str, judged_as_updates: bool) -> String {
    let report = json!({
        "apiVersion": "replica-guard.io/check/v1",
        "judgedAgainstCluster": judged_as_updates,
        "error": message,
        "objects": [],
        "passedOver": {},
        "summary": {"workloads": 0, "denied": 0, "warned": 0, "allowed": 0, "invalid": 0, "updates": 0, "creates": 0},
    });
    serde_json::to_string_pretty(&report).unwrap_or_default()
}

/// The JUnit report of a check that could not run: one test case in error, saying why, so a CI
/// report shows the cause rather than an empty or unreadable file.
pub fn junit_error(message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"replica-guard check\" tests=\"1\" failures=\"0\" errors=\"1\">\n  <testsuite name=\"replica-guard\" tests=\"1\" failures=\"0\" errors=\"1\" skipped=\"0\">\n    <testcase classname=\"replica-guard\" name=\"check\">\n      <error message=\"{0}\" type=\"could-not-check\"/>\n      <system-err>{0}</system-err>\n    </testcase>\n  </testsuite>\n</testsuites>",
        xml(message)
    )
}

fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML: one test case per workload; a denial (or, with `fail_on_warn`, a warning) fails it.
pub fn junit(checked: &[Checked], fail_on_warn: bool) -> String {
    let all = workloads(checked);
    let mut cases = String::new();
    let mut failures = 0;
    for w in &all {
        let sources: Vec<String> = w.objects.iter().map(|c| format!("{}#{}", c.source, c.document)).collect();
        let _ = writeln!(
            cases,
            "    <testcase classname=\"{}\" name=\"{}\" file=\"{}\">",
            xml(w.namespace),
            xml(w.name),
            xml(&sources.join(" "))
        );
        let denials: Vec<String> = w
            .objects
            .iter()
            .filter_map(|c| match &c.outcome {
                Outcome::Decided(d) => d.decision.deny_message.clone(),
                Outcome::Invalid(why) => Some(why.clone()),
                Outcome::PassedOver(_) => None,
            })
            .collect();
        let warnings: Vec<&String> = w.warnings().collect();
        if !denials.is_empty() {
            failures += 1;
            let _ = writeln!(cases, "      <failure message=\"{}\" type=\"denied\"/>", xml(&denials.join("; ")));
        } else if fail_on_warn && !warnings.is_empty() {
            failures += 1;
            let warnings: Vec<&str> = warnings.iter().map(|w| w.as_str()).collect();
            let _ = writeln!(cases, "      <failure message=\"{}\" type=\"warning\"/>", xml(&warnings.join("; ")));
        }
        let lines: Vec<String> =
            w.objects.iter().map(|c| describe(c)).chain(warnings.iter().map(|w| format!("Warning: {w}"))).collect();
        let _ = writeln!(cases, "      <system-out>{}</system-out>\n    </testcase>", xml(&lines.join("\n")));
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"replica-guard check\" tests=\"{n}\" failures=\"{failures}\">\n  <testsuite name=\"replica-guard\" tests=\"{n}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\">\n{cases}  </testsuite>\n</testsuites>",
        n = all.len()
    )
}
