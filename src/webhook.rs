//! One admission request from body to answer: decode, find the subject, look up its limit,
//! decide, respond, and record (metrics, audit record, log). The HTTP server and the offline
//! `check` command both call `Webhook::review`.

use crate::admission::decode::Request;
use crate::admission::subject::{self, Target};
use crate::admission::{ReviewError, decode, respond};
use crate::audit::{AuditLog, AuditRecord};
use crate::decision::policy::Policy;
use crate::decision::{self, Decision, Override, Path, Rule, Subject};
use crate::limits::{LimitSource, Lookup, Scope};
use crate::metrics::Metrics;
use kube::core::admission::AdmissionResponse;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

pub struct Webhook {
    policy: Policy,
    limits: Arc<dyn LimitSource>,
    metrics: Arc<Metrics>,
    audit: AuditLog,
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
    pub fn new(policy: Policy, limits: Arc<dyn LimitSource>, metrics: Arc<Metrics>, audit: AuditLog) -> Self {
        Self { policy, limits, metrics, audit }
    }

    pub fn limits(&self) -> &Arc<dyn LimitSource> {
        &self.limits
    }

    /// Answers one AdmissionReview body with the AdmissionReview to send back. An error means
    /// the body was unusable (HTTP 400); everything else, even a denial, is an answer.
    pub async fn review(&self, body: &[u8]) -> Result<Vec<u8>, ReviewError> {
        let started = Instant::now();
        let request = self.decoded(body)?;
        let span = tracing::info_span!(
            "admission",
            uid = %request.uid,
            namespace = request.namespace.as_deref().unwrap_or(""),
            name = %request.name,
            operation = ?request.operation,
            decision = tracing::field::Empty,
        );
        async {
            let response = match subject::target(&request, &self.policy.override_rule.annotation) {
                Ok(Target::Subject(subject)) => self.decide(&request, &subject, started).await,
                Ok(Target::NotHandled(why)) => {
                    tracing::info!(kind = %request.kind.kind, why, "not a replica path; allowed");
                    tracing::Span::current().record("decision", "not-handled");
                    let op = format!("{:?}", request.operation).to_uppercase();
                    self.metrics.requests.with_label_values(&["other", &op, "not-handled"]).inc();
                    respond::allowed(&request.uid)
                }
                Err(e) => return Err(self.bad_request(e)),
            };
            // Serializing our own response types cannot fail: no maps with non-string keys, no floats.
            Ok(serde_json::to_vec(&response.into_review()).unwrap_or_default())
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
        self.metrics.bad_requests.with_label_values(&[e.reason()]).inc();
        e
    }

    async fn decide(&self, request: &Request<'_>, subject: &Subject, started: Instant) -> AdmissionResponse {
        let exempt = self.policy.exemption(&subject.namespace, &subject.user, &subject.groups).is_some();
        // An exempt request is decided without its limit, so the registry is not asked.
        let lookup = if exempt {
            Lookup::Unregistered
        } else {
            self.limits.lookup(&subject.namespace, &subject.deployment).await
        };
        let decision = decision::decide(subject, &lookup, &self.policy);
        self.record(&request.uid, subject, &decision, started);
        respond::decided(&request.uid, subject, &decision)
    }

    /// The side effects of a decision. Dry runs are logged (marked) but change no counters of
    /// changes, violations or overrides: a pipeline's `--dry-run=server` is not a deploy.
    fn record(&self, uid: &str, subject: &Subject, decision: &Decision, started: Instant) {
        let m = &self.metrics;
        let kind = match subject.path {
            Path::Deployment => "deployment",
            Path::Scale => "scale",
            Path::Hpa { .. } => "hpa",
        };
        let (ns, name) = metric_labels(subject, decision);
        m.requests.with_label_values(&[kind, subject.operation.as_str(), decision.verdict.as_str()]).inc();
        if let Rule::Exempt(e) = decision.rule {
            m.exemptions.with_label_values(&[e.as_str()]).inc();
        }
        if !subject.dry_run {
            for field in respond::changed_fields(subject) {
                m.field_changes.with_label_values(&[ns, name, field]).inc();
            }
            if let (true, Some(mode)) = (decision.is_violation(), decision.mode) {
                m.violations.with_label_values(&[ns, name, mode.as_str()]).inc();
            }
            match decision.override_use {
                Override::Honoured => m.overrides.with_label_values(&[ns, name, "honoured"]).inc(),
                Override::Ignored => m.overrides.with_label_values(&[ns, name, "ignored"]).inc(),
                Override::NotUsed => {}
            }
        }
        tracing::Span::current().record("decision", decision.verdict.as_str());
        // Every request at debug level; the ones that matter are in the audit record below.
        tracing::debug!(
            rule = decision.rule.as_str(),
            requested = subject.new_replicas,
            previous = subject.old_replicas,
            max = decision.limit.as_ref().map(|l| l.max_replicas),
            dry_run = subject.dry_run,
            "decided"
        );
        if AuditRecord::is_worth_recording(subject, decision) {
            let time = jiff::Timestamp::now().to_string();
            self.audit.write(&AuditRecord::new(uid, subject, decision, time));
        }
        m.duration.with_label_values(&[kind]).observe(started.elapsed().as_secs_f64());
    }
}

/// The `namespace`/`deployment` labels of per-workload metrics: real names only for workloads
/// the registry knows (a deployment entry, or its namespace's default), `_unregistered`
/// otherwise. Anything that can reach the webhook's Service can post made-up reviews; without
/// this bound each made-up name would be a new time series held in memory forever.
fn metric_labels<'a>(subject: &'a Subject, decision: &Decision) -> (&'a str, &'a str) {
    const OTHER: &str = "_unregistered";
    match decision.limit.as_ref().map(|l| l.scope) {
        Some(Scope::Deployment) => (&subject.namespace, &subject.deployment),
        Some(Scope::NamespaceDefault) => (&subject.namespace, OTHER),
        _ => (OTHER, OTHER),
    }
}
