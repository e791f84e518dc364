//! Kubernetes Events, off the request path: from admission (a denial, a warning, an override) and
//! from the continuous audit (a workload going over its limit and coming back), each an
//! `events.k8s.io/v1` Event on the Deployment, so that kube-eventer or kubernetes-event-exporter
//! forward them. Never on the request path: the webhook puts the event in a bounded queue
//! (`try_send`; a full queue drops and counts, it never delays an answer), and one task publishes
//! through kube's `Recorder`, which aggregates repeats into a series. Each workload has a token
//! bucket (a burst of `BURST`, then one event per `REFILL`), so an unprivileged user cannot flood
//! etcd with events by retrying a denied apply. Dry runs make none (the webhook checks).

use crate::decision::{Decision, Override, Rule, Subject, Verdict, WorkloadKey};
use crate::metrics::Metrics;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Events a workload may publish at once, then one per `REFILL`.
const BURST: f64 = 10.0;
const REFILL: Duration = Duration::from_secs(6);
/// Most workloads whose buckets are remembered; beyond, the oldest are forgotten.
const MAX_BUCKETS: usize = 10_000;

/// One event to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadEvent {
    pub namespace: String,
    pub deployment: String,
    pub warning: bool,
    pub reason: &'static str,
    pub action: &'static str,
    pub note: String,
}

/// The reason of the event an admission decision makes, if it makes one (the README lists them).
pub fn reason(decision: &Decision) -> Option<(&'static str, bool)> {
    let reason = match (decision.override_use, decision.verdict, decision.rule) {
        (Override::Honoured, _, _) => ("OverrideHonoured", true),
        (Override::Ignored, _, _) => ("OverrideRefused", true),
        (_, Verdict::Denied, Rule::Violation) => ("ReplicasAboveLimitDenied", true),
        (_, Verdict::Warned, Rule::Violation) => ("ReplicasAboveLimit", true),
        (_, Verdict::Warned, Rule::Ratchet) => ("AboveLimitNotRaised", true),
        (_, Verdict::Denied, Rule::Unregistered) => ("UnregisteredDenied", true),
        (_, Verdict::Warned, Rule::Unregistered) => ("Unregistered", true),
        (_, Verdict::Denied | Verdict::Warned, Rule::RegistryUnavailable) => ("RegistryUnavailable", true),
        _ => return None,
    };
    Some(reason)
}

impl WorkloadEvent {
    /// The event of a decided request: the message the user saw, and who they were.
    pub fn of(subject: &Subject, decision: &Decision) -> Option<Self> {
        let (reason, warning) = reason(decision)?;
        let seen = decision.deny_message.clone().unwrap_or_else(|| decision.warnings.join("; "));
        let mut note =
            format!("{seen} (user: {}, {} {})", subject.user, subject.operation.as_str(), path_name(subject));
        truncate_bytes(&mut note, 1024);
        let action = if decision.verdict == Verdict::Denied { "Denied" } else { "Admitted" };
        Some(Self {
            namespace: subject.namespace.clone(),
            deployment: subject.deployment.clone(),
            warning,
            reason,
            action,
            note,
        })
    }
}

fn path_name(subject: &Subject) -> String {
    match &subject.path {
        crate::decision::Path::Deployment => "Deployment".to_string(),
        crate::decision::Path::Scale => "deployments/scale".to_string(),
        crate::decision::Path::Hpa { hpa } => format!("HorizontalPodAutoscaler {hpa}"),
    }
}

fn truncate_bytes(text: &mut String, max: usize) {
    if text.len() > max {
        let mut cut = max - 3;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
}

/// The webhook's end of the queue.
#[derive(Clone)]
pub struct EventQueue {
    sender: mpsc::Sender<WorkloadEvent>,
    metrics: Arc<Metrics>,
}

impl EventQueue {
    /// Queues an event; a full queue drops it (counted), never waits.
    pub fn offer(&self, event: WorkloadEvent) {
        if self.sender.try_send(event).is_err() {
            self.metrics.event("dropped-queue-full");
        }
    }
}

/// A queue of `capacity` events and the task that publishes them as `reporter`.
pub fn start(
    client: kube::Client,
    reporter: Reporter,
    capacity: usize,
    metrics: Arc<Metrics>,
) -> (EventQueue, impl Future<Output = ()> + Send + 'static) {
    let (sender, receiver) = mpsc::channel(capacity);
    let recorder = Recorder::new(client, reporter);
    (EventQueue { sender, metrics: metrics.clone() }, publish(receiver, recorder, metrics))
}

async fn publish(mut receiver: mpsc::Receiver<WorkloadEvent>, recorder: Recorder, metrics: Arc<Metrics>) {
    let mut buckets = Buckets::default();
    while let Some(event) = receiver.recv().await {
        if !buckets.take(&event.namespace, &event.deployment, Instant::now()) {
            metrics.event("dropped-rate-limited");
            continue;
        }
        let reference = ObjectReference {
            api_version: Some("apps/v1".into()),
            kind: Some("Deployment".into()),
            namespace: Some(event.namespace.clone()),
            name: Some(event.deployment.clone()),
            ..ObjectReference::default()
        };
        let ev = Event {
            type_: if event.warning { EventType::Warning } else { EventType::Normal },
            reason: event.reason.into(),
            note: Some(event.note),
            action: event.action.into(),
            secondary: None,
        };
        match recorder.publish(&ev, &reference).await {
            Ok(()) => metrics.event("published"),
            Err(e) => {
                metrics.event("failed");
                tracing::warn!(error = %e, namespace = %event.namespace, deployment = %event.deployment, "could not publish the event");
            }
        }
    }
}

/// Token buckets per workload.
#[derive(Default)]
struct Buckets {
    tokens: HashMap<WorkloadKey, (f64, Instant)>,
}

impl Buckets {
    fn take(&mut self, namespace: &str, deployment: &str, now: Instant) -> bool {
        if self.tokens.len() >= MAX_BUCKETS {
            // Forget the fullest half: they have not been used for a while.
            let cutoff = now.checked_sub(REFILL.mul_f64(BURST)).unwrap_or(now);
            self.tokens.retain(|_, (_, at)| *at > cutoff);
            if self.tokens.len() >= MAX_BUCKETS {
                self.tokens.clear();
            }
        }
        let (tokens, at) = self.tokens.entry(WorkloadKey::new(namespace, deployment)).or_insert((BURST, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() / REFILL.as_secs_f64()).min(BURST);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workload_gets_a_burst_then_one_event_per_refill() {
        let mut b = Buckets::default();
        let t0 = Instant::now();
        let allowed = (0..50).filter(|_| b.take("ns", "api", t0)).count();
        assert_eq!(allowed, BURST as usize);
        assert!(!b.take("ns", "api", t0 + REFILL / 2));
        assert!(b.take("ns", "api", t0 + REFILL * 2));
        assert!(b.take("ns", "other", t0), "buckets are per workload");
    }

    #[test]
    fn notes_stay_within_a_kilobyte() {
        let mut text = "é".repeat(2000);
        truncate_bytes(&mut text, 1024);
        assert!(text.len() <= 1024 && text.ends_with("..."));
    }
}
