//! One admission request from body to answer: decode, find the subject, look up its limit,
//! decide, respond, and record (metrics, decision record, log). The HTTP server and the offline
//! `check` command both call `Webhook::review`.

use crate::admission::decode::Request;
use crate::admission::record::DecisionRecord;
use crate::admission::subject::{self, Target};
use crate::admission::{ReviewError, decode, respond};
use crate::decision::policy::Policy;
use crate::decision::{self, Decision, Override, Path, Rule, Subject};
use crate::decision::{Lookup, Scope};
use crate::events::{EventQueue, WorkloadEvent};
use crate::json_lines::JsonLines;
use crate::limits::LimitSource;
use crate::metrics::{Metrics, RequestKind, WorkloadLabels};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

pub struct Webhook {
    policy: Policy,
    limits: Arc<dyn LimitSource>,
    metrics: Arc<Metrics>,
    records: JsonLines,
    events: Option<EventQueue>,
    /// How long a denial may wait for its entry read again from the registry (zero: never).
    reread: Duration,
}

/// What reading a denial's entry again from the registry found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reread {
    /// The same entry: the denial stands on the registry's word, not only the cache's.
    Confirmed,
    /// Another entry (a limit changed since it was cached): decided anew on it.
    Changed,
    /// No answer within the budget, or an error: the cached answer stands.
    TimedOut,
    Failed,
}

impl Reread {
    fn as_str(self) -> &'static str {
        match self {
            Reread::Confirmed => "confirmed",
            Reread::Changed => "changed",
            Reread::TimedOut => "timeout",
            Reread::Failed => "error",
        }
    }
}

impl ReviewError {
    /// A short label for the bad-request metric.
    pub fn reason(&self) -> &'static str {
        match self {
            ReviewError::NotJson(_) => "not-json",
            ReviewError::NotAdmissionReview(_) => "not-admission-review",
            ReviewError::WrongApiVersion(_) => "wrong-api-version",
            ReviewError::WrongKind(_) => "wrong-kind",
            ReviewError::NoRequest => "no-request",
            ReviewError::MissingUid => "missing-uid",
            ReviewError::MissingField(_) => "missing-field",
            ReviewError::InvalidObject { .. } => "invalid-object",
            ReviewError::InvalidReplicas { .. } => "invalid-replicas",
        }
    }
}

impl Webhook {
    pub fn new(policy: Policy, limits: Arc<dyn LimitSource>, metrics: Arc<Metrics>, records: JsonLines) -> Self {
        Self { policy, limits, metrics, records, events: None, reread: Duration::ZERO }
    }

    /// Before refusing on a cached entry, reads it again from the registry, waiting at most
    /// `budget` (`registry.cache.rereadTimeoutSeconds`), where the source can answer for one
    /// workload.
    pub fn with_reread(mut self, budget: Duration) -> Self {
        self.reread = budget;
        self
    }

    /// Also turns decisions into Kubernetes Events (through the queue; never for dry runs).
    pub fn with_events(mut self, events: EventQueue) -> Self {
        self.events = Some(events);
        self
    }

    /// Answers one AdmissionReview body. An error means the body was unusable (HTTP 400);
    /// everything else, even a denial, is an answer.
    pub async fn review(&self, body: &[u8]) -> Result<Answer, ReviewError> {
        let mut timer = self.metrics.admission.timer();
        let request = self.decoded(body)?;
        // Plain `&str` fields: the JSON log format formats a span's fields when it is created, and
        // `Display`/`Debug` fields cost a `format!` each on every request.
        let span = tracing::info_span!(
            "admission",
            uid = request.uid.as_str(),
            namespace = request.namespace.as_deref().unwrap_or(""),
            // Not `name`: the JSON format gives the span's own name that key.
            object_name = request.name.as_str(),
            operation = operation_name(&request.operation),
            decision = tracing::field::Empty,
        );
        async {
            match subject::target(&request, &self.policy.override_rule.annotation) {
                Ok(Target::Subject(subject)) => {
                    timer.decided_as(request_kind(&subject.path));
                    Ok(self.decide(&request, *subject).await)
                }
                Ok(Target::NotHandled(why)) => {
                    tracing::info!(kind = %request.kind.kind, why, "not a replica path; allowed");
                    record_decision("not-handled");
                    self.metrics.admission.not_handled(operation_name(&request.operation));
                    Ok(Answer { response: respond::allowed(&request.uid), decided: None })
                }
                Err(e) => Err(self.bad_request(e)),
            }
        }
        .instrument(span)
        .await
    }

    fn decoded<'a>(&self, body: &'a [u8]) -> Result<Request<'a>, ReviewError> {
        decode(body).map_err(|e| self.bad_request(e))
    }

    /// Logs and counts a body that cannot be evaluated (answered with HTTP 400).
    fn bad_request(&self, e: ReviewError) -> ReviewError {
        tracing::warn!(error = %e, "bad admission request");
        self.metrics.server.bad_request(e.reason());
        e
    }

    async fn decide(&self, request: &Request<'_>, subject: Subject) -> Answer {
        // A no-op or exempt request is decided without its limit, so the registry is not asked.
        let asked = !(subject.is_no_op()
            || self.policy.exemption(&subject.namespace, &subject.user, &subject.groups).is_some());
        let lookup = match asked {
            true => self.limits.lookup(&subject.namespace, &subject.deployment).await,
            false => Lookup::Unregistered,
        };
        let mut decision = decision::decide(&subject, &lookup, &self.policy);
        let (reread, reread_revision) = match self.reread_before_denial(&subject, &lookup, &mut decision).await {
            Some((reread, revision)) => (Some(reread), revision),
            None => (None, None),
        };
        // Which registry state the decision used: the re-read's, else the snapshot's or cache's;
        // none when the registry was not asked. Only what is recorded asks for it.
        let revision = match reread_revision {
            Some(revision) => Some(revision),
            None if asked && DecisionRecord::is_worth_recording(&subject, &decision) => {
                self.limits.revision(&subject.namespace, &subject.deployment).await
            }
            None => None,
        };
        self.record(&request.uid, &subject, &decision, reread, revision.as_deref());
        let mut response = respond::decided(&request.uid, &subject, &decision);
        if let Some(reread) = reread {
            response.audit_annotations.add("registry-reread", reread.as_str());
        }
        if let Some(revision) = &revision {
            response.audit_annotations.add("registry-revision", revision.to_string());
        }
        Answer { response, decided: Some(Decided { subject, decision }) }
    }

    /// A denial that rests on a cached entry is checked against the registry itself first: the
    /// team that raised its limit a moment ago must not be refused by the old one. Denials are
    /// rare, so this costs nothing on the common path; on timeout or error the cached answer
    /// stands (and the record says so).
    async fn reread_before_denial(
        &self,
        subject: &Subject,
        lookup: &Lookup,
        decision: &mut Decision,
    ) -> Option<(Reread, Option<Arc<str>>)> {
        if decision.verdict != decision::Verdict::Denied
            || !matches!(lookup, Lookup::Registered(_))
            || self.reread.is_zero()
        {
            return None;
        }
        let fresh = self.limits.reread(&subject.namespace, &subject.deployment)?;
        let (outcome, revision) = match tokio::time::timeout(self.reread, fresh).await {
            Ok(Ok((fresh, revision))) if &fresh == lookup => (Reread::Confirmed, Some(revision)),
            Ok(Ok((fresh, revision))) => {
                *decision = decision::decide(subject, &fresh, &self.policy);
                (Reread::Changed, Some(revision))
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "the registry could not be asked again before a denial; the cached entry stands");
                (Reread::Failed, None)
            }
            Err(_) => (Reread::TimedOut, None),
        };
        self.metrics.registry.reread(outcome.as_str());
        Some((outcome, revision))
    }

    /// The side effects of a decision. Dry runs are logged (marked) but change no counters of
    /// changes, violations or overrides: a pipeline's `--dry-run=server` is not a deploy.
    fn record(
        &self,
        uid: &str,
        subject: &Subject,
        decision: &Decision,
        reread: Option<Reread>,
        revision: Option<&str>,
    ) {
        let m = &self.metrics;
        let workload = metric_labels(subject, decision);
        if let Rule::Exempt(e) = decision.rule {
            m.admission.exempt(e.as_str());
        }
        if !subject.dry_run {
            if let Some(queue) = &self.events
                && let Some(event) = WorkloadEvent::of(subject, decision)
            {
                queue.offer(event);
            }
            for field in respond::changed_fields(subject) {
                m.admission.field_changed(workload, field);
            }
            if let (true, Some(mode)) = (decision.is_violation(), decision.mode) {
                m.admission.violation(workload, mode.as_str());
            }
            match decision.override_use {
                Override::Honoured => m.admission.override_used(workload, true),
                Override::Ignored => m.admission.override_used(workload, false),
                Override::NotUsed => {}
            }
        }
        record_decision(decision.verdict.as_str());
        // Every request at debug level; the ones that matter are in the decision record below.
        tracing::debug!(
            rule = decision.rule.as_str(),
            requested = subject.new_replicas,
            previous = subject.old_replicas,
            max = decision.limit.as_ref().map(|l| l.max_replicas),
            dry_run = subject.dry_run,
            "decided"
        );
        if DecisionRecord::is_worth_recording(subject, decision) {
            let time = jiff::Timestamp::now().to_string();
            let mut record = DecisionRecord::new(uid, subject, decision, time);
            record.registry_reread = reread.map(Reread::as_str);
            record.registry_revision = revision;
            self.records.write(&record);
        }
        m.admission.decided(request_kind(&subject.path), subject.operation.as_str(), decision.verdict.as_str());
    }
}

fn request_kind(path: &Path) -> RequestKind {
    match path {
        Path::Deployment => RequestKind::Deployment,
        Path::Scale => RequestKind::Scale,
        Path::Hpa { .. } => RequestKind::Hpa,
    }
}

/// Puts the decision into the request's span. Only events logged after the decision show it, and
/// at `info` none is (the decision record carries the decision): recording into a span makes the JSON
/// log format parse and re-serialize the span's fields, a few percent of a request's CPU
/// (BENCHMARKS.md), so it is done only when `debug` events will be there to show it.
fn record_decision(decision: &'static str) {
    if tracing::enabled!(tracing::Level::DEBUG) {
        tracing::Span::current().record("decision", decision);
    }
}

/// The `namespace`/`deployment` labels of per-workload metrics: real names only for workloads
/// the registry knows (a deployment entry, or its namespace's default), `_unregistered`
/// otherwise. Anything that can reach the webhook's Service can post made-up reviews; without
/// this bound each made-up name would be a new time series held in memory forever.
fn metric_labels<'a>(subject: &'a Subject, decision: &Decision) -> WorkloadLabels<'a> {
    const OTHER: &str = "_unregistered";
    let (namespace, deployment) = match decision.limit.as_ref().map(|l| l.scope) {
        Some(Scope::Deployment) => (subject.namespace.as_str(), subject.deployment.as_str()),
        Some(Scope::NamespaceDefault) => (subject.namespace.as_str(), OTHER),
        _ => (OTHER, OTHER),
    };
    WorkloadLabels { namespace, deployment }
}

fn operation_name(operation: &kube::core::admission::Operation) -> &'static str {
    use kube::core::admission::Operation as Op;
    match operation {
        Op::Create => "CREATE",
        Op::Update => "UPDATE",
        Op::Delete => "DELETE",
        Op::Connect => "CONNECT",
    }
}

/// The answer to one AdmissionReview: the response for the API server and, when the request
/// was on a replica path, what was decided (the offline `check` reads it; the HTTP edge
/// serialises only the response).
#[derive(Debug)]
pub struct Answer {
    pub response: respond::Response,
    pub decided: Option<Decided>,
}

#[derive(Debug)]
pub struct Decided {
    pub subject: Subject,
    pub decision: Decision,
}

impl Answer {
    /// The AdmissionReview to send back, as JSON.
    pub fn into_json(self) -> Vec<u8> {
        self.response.into_review_json()
    }
}
