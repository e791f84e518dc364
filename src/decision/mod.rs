//! Where the decision is made: a pure function of the request, the registered limit and the
//! policy. No I/O, no clock, no globals, so every rule is tested exhaustively in
//! `tests/decision_rules.rs` and the same code can run in an offline CLI.

pub mod changes;
pub mod field;
pub mod limit;
pub mod messages;
pub mod patch;
pub mod policy;
pub mod recorded;
pub mod subject;
pub mod tree;

pub use changes::{Field, FieldChange};
pub use limit::{Limit, Lookup, Scope};
use policy::{ChangeSummary, Exemption, FailurePolicy, Mode, Policy, Unregistered};
pub use subject::{Operation, Path, Subject, WorkloadKey};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Allowed, with warnings shown to the user.
    Warned,
    Denied,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Warned => "warned",
            Verdict::Denied => "denied",
        }
    }
}

/// The rule that settled the request; recorded in audit annotations, logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// An UPDATE that changes nothing a person wrote: allowed silently before every other rule,
    /// since refusing one can leave an object stuck in Terminating.
    NoChange,
    Exempt(Exemption),
    WithinLimit,
    /// Requested replicas exceed the maximum (creating above it, or raising above it).
    Violation,
    /// Already above the maximum before this UPDATE, and not raised further.
    Ratchet,
    Unregistered,
    RegistryUnavailable,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::NoChange => "no-change",
            Rule::Exempt(_) => "exempt",
            Rule::WithinLimit => "within-limit",
            Rule::Violation => "violation",
            Rule::Ratchet => "ratchet",
            Rule::Unregistered => "unregistered",
            Rule::RegistryUnavailable => "registry-unavailable",
        }
    }
}

/// What the break-glass annotation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Override {
    /// No annotation, or one that was not needed.
    NotUsed,
    /// A would-be denial was allowed because the user is in an override group.
    Honoured,
    /// The user is not in an override group; the annotation changed nothing.
    Ignored,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub rule: Rule,
    /// The effective mode, when a registered limit applied.
    pub mode: Option<Mode>,
    /// The registered limit that applied, if any.
    pub limit: Option<Limit>,
    pub override_use: Override,
    /// The registered maximum is outside the platform bounds.
    pub out_of_bounds: bool,
    /// At most `messages::MAX_WARNINGS`, each at most `messages::MAX_WARNING_CHARS`, most important first.
    pub warnings: Vec<String>,
    /// Set exactly when `verdict` is `Denied`.
    pub deny_message: Option<String>,
}

impl Decision {
    /// A violation was found, whatever the mode made of it.
    pub fn is_violation(&self) -> bool {
        self.rule == Rule::Violation
    }
}

/// Decides one admission request. Deterministic: the API server may send the same request twice
/// (it retries a denied UPDATE with fresh data) and must get the same answer.
pub fn decide(subject: &Subject, lookup: &Lookup, policy: &Policy) -> Decision {
    if subject.is_no_op() {
        return Outcome::allowed(Rule::NoChange).finish(subject, policy);
    }
    if let Some(exemption) = policy.exemption(&subject.namespace, &subject.user, &subject.groups) {
        return Outcome::allowed(Rule::Exempt(exemption)).finish(subject, policy);
    }
    match lookup {
        Lookup::Registered(limit) => evaluate_limit(subject, limit, policy).finish(subject, policy),
        Lookup::Unregistered => {
            let text = messages::unregistered(subject);
            match policy.unregistered {
                Unregistered::Allow => Outcome::allowed(Rule::Unregistered),
                Unregistered::Warn => Outcome::allowed(Rule::Unregistered).warn(text),
                // The ratchet again: an existing workload's fix or scale-down must get through.
                Unregistered::Deny if subject.does_not_raise() => {
                    Outcome::allowed(Rule::Unregistered).warn(messages::unregistered_not_raised(subject))
                }
                Unregistered::Deny => Outcome::denied(Rule::Unregistered, messages::unregistered_denied(subject)),
            }
            .finish(subject, policy)
        }
        Lookup::Unavailable(reason) => match policy.registry_failure {
            FailurePolicy::Open => {
                Outcome::allowed(Rule::RegistryUnavailable).warn(messages::registry_unavailable_open(subject, reason))
            }
            FailurePolicy::Closed => {
                Outcome::denied(Rule::RegistryUnavailable, messages::registry_unavailable_closed(subject, reason))
            }
        }
        .finish(subject, policy),
    }
}

fn evaluate_limit(subject: &Subject, limit: &Limit, policy: &Policy) -> Outcome {
    let mode = limit.mode.unwrap_or_else(|| policy.namespace_mode(&subject.namespace));
    let max = limit.max_replicas;
    let new = subject.new_replicas;
    let already_over = subject.operation == Operation::Update && subject.old_replicas.is_some_and(|old| old > max);

    let mut outcome = if new <= max {
        let outcome = Outcome::allowed(Rule::WithinLimit);
        match limit.min_replicas {
            Some(min) if new > 0 && new < min && !matches!(subject.path, Path::Hpa { .. }) => {
                outcome.warn(messages::below_min(subject, min))
            }
            _ => outcome,
        }
    } else if already_over && subject.does_not_raise() {
        Outcome::allowed(Rule::Ratchet).warn(messages::ratchet(subject, limit))
    } else {
        match mode {
            Mode::Enforce => Outcome::denied(Rule::Violation, messages::violation_denied(subject, limit)),
            Mode::Warn => Outcome::allowed(Rule::Violation).warn(messages::violation(subject, limit)),
            Mode::Audit => Outcome::allowed(Rule::Violation),
        }
    };
    outcome.mode = Some(mode);
    outcome.limit = Some(limit.clone());
    if !policy.platform_bounds.contains(max) {
        outcome.out_of_bounds = true;
        // Reported on every path, but only to people who see warnings anyway: in audit mode
        // the audit annotation and the metric carry it.
        if mode != Mode::Audit {
            outcome.later_warnings.push(messages::out_of_bounds(subject, limit, &policy.platform_bounds));
        }
    }
    outcome
}

/// A decision under construction: the rules above fill it, `finish` applies what every rule
/// shares (the break-glass override, the change summary, the warning limits).
struct Outcome {
    rule: Rule,
    denial: Option<messages::Denial>,
    warnings: Vec<String>,
    /// Warnings that come after the main ones (bounds, change summary).
    later_warnings: Vec<String>,
    mode: Option<Mode>,
    limit: Option<Limit>,
    out_of_bounds: bool,
}

impl Outcome {
    fn allowed(rule: Rule) -> Self {
        Self {
            rule,
            denial: None,
            warnings: vec![],
            later_warnings: vec![],
            mode: None,
            limit: None,
            out_of_bounds: false,
        }
    }

    fn denied(rule: Rule, message: messages::Denial) -> Self {
        Self { denial: Some(message), ..Self::allowed(rule) }
    }

    fn warn(mut self, text: String) -> Self {
        self.warnings.push(text);
        self
    }

    fn finish(mut self, subject: &Subject, policy: &Policy) -> Decision {
        let override_use = self.apply_override(subject, policy);
        let exempt = matches!(self.rule, Rule::Exempt(_));
        let mut warnings = self.warnings;
        warnings.append(&mut self.later_warnings);
        let summarize = match policy.change_summary {
            ChangeSummary::Never => false,
            ChangeSummary::WithWarnings => !warnings.is_empty() || self.denial.is_some(),
            ChangeSummary::Always => true,
        };
        if summarize
            && !exempt
            && self.denial.is_none()
            && let Some(summary) = messages::change_summary(subject)
        {
            warnings.push(summary);
        }
        let warnings = messages::limit_warnings(warnings);
        let verdict = match (&self.denial, warnings.is_empty()) {
            (Some(_), _) => Verdict::Denied,
            (None, true) => Verdict::Allowed,
            (None, false) => Verdict::Warned,
        };
        Decision {
            verdict,
            rule: self.rule,
            mode: self.mode,
            limit: self.limit,
            override_use,
            out_of_bounds: self.out_of_bounds,
            warnings,
            deny_message: self.denial.map(|d| d.to_string()),
        }
    }

    /// The break-glass annotation turns a denial into a warning, for members of the override
    /// groups only; anyone else is told it was ignored.
    fn apply_override(&mut self, subject: &Subject, policy: &Policy) -> Override {
        let Some(reason) = subject.override_reason.as_deref() else {
            // A Scale request carries none of its Deployment's annotations, so the override
            // cannot be expressed there: tell a user who could override how to do it.
            if let (Path::Scale, Some(denial)) = (&subject.path, &mut self.denial)
                && policy.may_override(&subject.groups)
            {
                denial.notes.push(messages::override_not_on_scale(policy));
            }
            return Override::NotUsed;
        };
        let needed = self.denial.is_some() || self.rule == Rule::Violation;
        if !needed {
            return Override::NotUsed;
        }
        if !policy.may_override(&subject.groups) {
            let note = messages::override_ignored(subject, policy);
            match &mut self.denial {
                Some(denial) => denial.notes.push(note),
                None => self.warnings.push(note),
            }
            return Override::Ignored;
        }
        if let Some(denial) = self.denial.take() {
            self.warnings.insert(0, messages::allowed_by_override(&denial.headline));
        }
        self.warnings.insert(usize::from(!self.warnings.is_empty()), messages::override_used(subject, reason));
        Override::Honoured
    }
}
