//! Every text a user reads: warnings (printed by kubectl as `Warning: <text>`) and deny
//! messages. Warnings are at most 120 characters, at most four, most important first; deny
//! messages say what to do next.

use super::limit::Unreachable;
use super::{Field, Path, Subject};
use super::{Limit, Scope};
use crate::decision::policy::{PlatformBounds, Policy};
use std::fmt;

/// Kubernetes asks webhooks to keep warnings to 120 characters.
pub const MAX_WARNING_CHARS: usize = 120;
/// More than a few warnings are not read; the API server also drops them past 4096 bytes.
pub const MAX_WARNINGS: usize = 4;

/// A deny message: a short headline (reused as a warning when an override lets it through),
/// what to do about it, and notes (e.g. an ignored override).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub headline: String,
    pub advice: String,
    pub notes: Vec<String>,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}. {}", self.headline, self.advice)?;
        for note in &self.notes {
            write!(f, " {note}")?;
        }
        Ok(())
    }
}

// Warnings are cut at 120 characters, and a namespace and a Deployment name may take 63 each:
// every warning says its point first (what is wrong, what happens, what to do) and names the
// workload last, so the cut takes the names, which the user knows from the command they ran.

/// What the request asks for, in the words of its path: `replicas 3 -> 6`, `HPA maxReplicas 10`.
fn requested(s: &Subject) -> String {
    let change = match s.old_replicas {
        Some(old) if old != s.new_replicas => format!("{old} -> {}", s.new_replicas),
        _ => s.new_replicas.to_string(),
    };
    match &s.path {
        Path::Deployment | Path::Scale => format!("replicas {change}"),
        Path::Hpa { .. } => format!("HPA maxReplicas {change}"),
    }
}

/// The limit: `PED max 4`, `PED namespace default max 4`, `platform default max 2`.
fn limit_name(limit: &Limit) -> String {
    match limit.scope {
        Scope::Deployment => format!("PED max {}", limit.max_replicas),
        Scope::NamespaceDefault => format!("PED namespace default max {}", limit.max_replicas),
        Scope::GlobalDefault => format!("platform default max {}", limit.max_replicas),
    }
}

/// Whom the limit is for: `team-a/api`, `team-a` (a namespace default), `unregistered team-a/api`;
/// an HPA named unlike its target is named too.
fn whom(s: &Subject, limit: &Limit) -> String {
    let mut text = match limit.scope {
        Scope::Deployment => s.workload(),
        Scope::NamespaceDefault => s.namespace.clone(),
        Scope::GlobalDefault => format!("unregistered {}", s.workload()),
    };
    if let Path::Hpa { hpa } = &s.path
        && *hpa != s.deployment
    {
        text.push_str(&format!(" (HPA {hpa})"));
    }
    text
}

/// How the user brings the request under the limit on this path.
fn how_to_lower(s: &Subject, max: i32) -> String {
    match &s.path {
        Path::Deployment => format!("lower spec.replicas to {max} or less"),
        Path::Scale => format!("scale to {max} or less"),
        Path::Hpa { hpa } => format!("lower maxReplicas (and minReplicas) of HPA {hpa} to {max} or less"),
    }
}

/// `replicas 3 -> 6 exceeds PED max 4 for team-a/api`.
pub fn violation(s: &Subject, limit: &Limit) -> String {
    let min_too = match s.min_replicas.filter(|&m| m > limit.max_replicas) {
        Some(min) => format!(" (minReplicas {min} too)"),
        None => String::new(),
    };
    format!("{}{min_too} exceeds {} for {}", requested(s), limit_name(limit), whom(s, limit))
}

pub fn violation_denied(s: &Subject, limit: &Limit) -> Denial {
    let mut advice = format!(
        "To deploy, {}, or raise maxReplicas in the PED config of {} and rerun the onboarding pipeline",
        how_to_lower(s, limit.max_replicas),
        s.workload()
    );
    if let Some(owner) = &limit.owner {
        advice.push_str(&format!(" (registered owner: {owner})"));
    }
    advice.push('.');
    if let Some(fields) = other_changes(s) {
        advice.push_str(&format!(" Nothing of this request was applied, including its changes to {fields}."));
    }
    Denial { headline: violation(s, limit), advice, notes: vec![] }
}

pub fn ratchet(s: &Subject, limit: &Limit) -> String {
    format!(
        "{} is above {}; allowed as not raised, please lower to {} ({})",
        requested(s),
        limit_name(limit),
        limit.max_replicas,
        whom(s, limit)
    )
}

pub fn below_min(s: &Subject, min: i32) -> String {
    format!("{} is below PED minReplicas {min} ({})", requested(s), s.workload())
}

pub fn out_of_bounds(s: &Subject, limit: &Limit, bounds: &PlatformBounds) -> String {
    format!(
        "{} is outside the platform bounds {}-{}; ask the platform team to correct the PED entry ({})",
        limit_name(limit),
        bounds.min_replicas,
        bounds.max_replicas,
        whom(s, limit)
    )
}

pub fn unregistered(s: &Subject) -> String {
    format!("not registered in PED; register it with the onboarding pipeline to set its maxReplicas ({})", s.workload())
}

pub fn unregistered_denied(s: &Subject) -> Denial {
    Denial {
        headline: format!("{} is not registered in PED", s.workload()),
        advice: "Register it with the onboarding pipeline (PED) with its maxReplicas, then deploy again.".to_string(),
        notes: vec![],
    }
}

pub fn unregistered_not_raised(s: &Subject) -> String {
    format!(
        "not registered in PED; allowed as replicas not raised, register it with the onboarding pipeline ({})",
        s.workload()
    )
}

pub fn registry_unavailable_open(s: &Subject, reason: &Unreachable) -> String {
    format!("PED limit not checked: registry unreachable ({}: {reason})", s.workload())
}

pub fn registry_unavailable_closed(s: &Subject, reason: &Unreachable) -> Denial {
    Denial {
        headline: format!("PED registry unreachable, cannot check the replica limit of {} ({reason})", s.workload()),
        advice: "Retry in a minute; if it persists, tell the platform team.".to_string(),
        notes: vec![],
    }
}

pub fn allowed_by_override(headline: &str) -> String {
    format!("allowed by break-glass override: {headline}")
}

pub fn override_used(s: &Subject, reason: &str) -> String {
    format!("override recorded: {reason} (by {})", s.user)
}

pub fn override_ignored(s: &Subject, policy: &Policy) -> String {
    let groups: Vec<&str> = policy.override_rule.groups.iter().map(String::as_str).collect();
    let who =
        if groups.is_empty() { "nobody may override".to_string() } else { format!("only {} may", groups.join(", ")) };
    format!(
        "The {} annotation was ignored: {} is not allowed to override ({who}).",
        policy.override_rule.annotation, s.user
    )
}

pub fn override_not_on_scale(policy: &Policy) -> String {
    format!(
        "kubectl scale cannot carry the {} annotation: to override, apply the Deployment with the annotation and the new spec.replicas.",
        policy.override_rule.annotation
    )
}

/// Most changes named in a summary or a deny message; the rest are counted.
const MAX_NAMED_CHANGES: usize = 6;

/// `changes: replicas 3 -> 6, image of api, env of api`; None when nothing was classified.
pub fn change_summary(s: &Subject) -> Option<String> {
    describe_changes(s, true).map(|parts| format!("changes: {parts}"))
}

/// The changes in words, each once, at most `MAX_NAMED_CHANGES` of them and then a count of the
/// rest: `replicas 3 -> 6, image of api, pod annotation x and 79995 more`. Linear in the number
/// of changes: a request may change tens of thousands of labels.
fn describe_changes(s: &Subject, with_replicas: bool) -> Option<String> {
    let mut seen = std::collections::HashSet::new();
    let mut named: Vec<String> = vec![];
    let mut more = 0usize;
    for change in &s.changes {
        let part = match (change.field, &change.container) {
            (Field::Replicas, _) if !with_replicas => continue,
            (Field::Replicas, _) => match s.old_replicas {
                Some(old) => format!("replicas {old} -> {}", s.new_replicas),
                None => "replicas".to_string(),
            },
            (Field::Other, _) => describe_path(&change.path),
            (field, Some(container)) => format!("{} of {container}", field.as_str()),
            (field, None) => field.as_str().to_string(),
        };
        if seen.contains(&part) {
            continue;
        }
        if named.len() < MAX_NAMED_CHANGES {
            named.push(part.clone());
        } else {
            more += 1;
        }
        seen.insert(part);
    }
    if named.is_empty() {
        return None;
    }
    more += s.unlisted_changes.count;
    let mut text = named.join(", ");
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    Some(text)
}

/// A short name for an unclassified change: `annotation team/x`, `pod annotation
/// kubectl.kubernetes.io/restartedAt`, `paused`, `template.spec.nodeSelector`.
fn describe_path(pointer: &str) -> String {
    let decode = |s: &str| s.replace("~1", "/").replace("~0", "~");
    let prefixes = [
        ("/metadata/annotations/", "annotation "),
        ("/metadata/labels/", "label "),
        ("/spec/template/metadata/annotations/", "pod annotation "),
        ("/spec/template/metadata/labels/", "pod label "),
    ];
    for (prefix, name) in prefixes {
        if let Some(key) = pointer.strip_prefix(prefix) {
            return format!("{name}{}", decode(key));
        }
    }
    let path = pointer.strip_prefix("/spec/").unwrap_or(pointer);
    // Stop at the first list index: `template.spec.containers` rather than `...containers.0.ports.1`.
    let tokens: Vec<String> = path.split('/').take_while(|t| t.parse::<usize>().is_err()).map(decode).collect();
    tokens.join(".")
}

/// What else a refused request would have changed.
fn other_changes(s: &Subject) -> Option<String> {
    describe_changes(s, false)
}

/// Applies the warning limits: at most `MAX_WARNINGS`, each cut to `MAX_WARNING_CHARS`.
pub fn limit_warnings(warnings: Vec<String>) -> Vec<String> {
    warnings.into_iter().take(MAX_WARNINGS).map(|w| truncate(w, MAX_WARNING_CHARS)).collect()
}

/// Cuts a text to `max` characters (not bytes: names may be non-ASCII), marking the cut with `…`.
pub fn truncate(text: String, max: usize) -> String {
    if text.chars().count() <= max {
        return text;
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_counts_characters_and_marks_the_cut() {
        assert_eq!(truncate("abc".into(), 3), "abc");
        assert_eq!(truncate("abcd".into(), 3), "ab…");
        assert_eq!(truncate("ééééé".into(), 4).chars().count(), 4);
    }
}
