//! Kubernetes Events, off the request path: from admission (a denial, a warning, an override) and
//! from the cluster view (a workload going over its limit and coming back), each an
//! `events.k8s.io/v1` Event on the Deployment, so that kube-eventer or kubernetes-event-exporter
//! forward them. Never on the request path: the webhook puts the event in a bounded queue
//! (`try_send`; a full queue drops and counts, it never delays an answer), and one task publishes
//! through kube's `Recorder`, which aggregates repeats into a series. Token buckets bound what
//! reaches etcd at three levels — each workload (`WORKLOAD`: retrying a denied apply), each
//! namespace (`NAMESPACE`: reviews under made-up workload names) and the whole process
//! (`PROCESS`: made-up namespaces too) — and a dropped event is counted by the level that dropped
//! it. Dry runs make none (the webhook checks).

use crate::decision::{Decision, Override, Rule, Subject, Verdict, WorkloadKey};
use crate::metrics::Metrics;
use crate::part::{Part, Stop, Unfinished};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How many events may be published at once (`burst`), then one per `refill`.
#[derive(Debug, Clone, Copy)]
struct Rate {
    burst: f64,
    refill: Duration,
}

/// One workload: 10 at once, then one per 6 s.
const WORKLOAD: Rate = Rate { burst: 10.0, refill: Duration::from_secs(6) };
/// One namespace, whatever the workload names: 30 at once, then one a second.
const NAMESPACE: Rate = Rate { burst: 30.0, refill: Duration::from_secs(1) };
/// The whole process, whatever the namespaces: 100 at once, then ten a second.
const PROCESS: Rate = Rate { burst: 100.0, refill: Duration::from_millis(100) };
/// Most workloads (and namespaces) whose buckets are remembered; beyond, the oldest are forgotten.
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
            self.metrics.audit.event("dropped-queue-full");
        }
    }
}

/// The part that publishes what the queue holds. It needs no stop signal: it ends once every
/// sender is gone (the webhook's connections, the cluster view), having sent what was queued.
pub struct Publisher {
    receiver: mpsc::Receiver<WorkloadEvent>,
    recorder: Recorder,
    metrics: Arc<Metrics>,
}

impl Part for Publisher {
    fn name(&self) -> &'static str {
        "event publisher"
    }

    async fn run(self, _stop: Stop) -> Result<(), Unfinished> {
        publish(self.receiver, self.recorder, self.metrics).await;
        Ok(())
    }
}

/// A queue of `capacity` events and the part that publishes them as `reporter`.
pub fn start(
    client: kube::Client,
    reporter: Reporter,
    capacity: usize,
    metrics: Arc<Metrics>,
) -> (EventQueue, Publisher) {
    let (sender, receiver) = mpsc::channel(capacity);
    let recorder = Recorder::new(client, reporter);
    (EventQueue { sender, metrics: metrics.clone() }, Publisher { receiver, recorder, metrics })
}

async fn publish(mut receiver: mpsc::Receiver<WorkloadEvent>, recorder: Recorder, metrics: Arc<Metrics>) {
    let mut buckets = Buckets::default();
    while let Some(event) = receiver.recv().await {
        if let Err(level) = buckets.take(&event.namespace, &event.deployment, Instant::now()) {
            metrics.audit.event(level);
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
            Ok(()) => metrics.audit.event("published"),
            Err(e) => {
                metrics.audit.event("failed");
                tracing::warn!(error = %e, namespace = %event.namespace, deployment = %event.deployment, "could not publish the event");
            }
        }
    }
}

/// A token bucket's state: tokens left, and when it was last refilled.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Self {
        Self { tokens: rate.burst, at: now }
    }

    /// Refills for the time since the last call; whether a token is there.
    fn refill(&mut self, rate: Rate, now: Instant) -> bool {
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() / rate.refill.as_secs_f64()).min(rate.burst);
        self.at = now;
        self.tokens >= 1.0
    }
}

/// Token buckets per workload, per namespace and for the process.
#[derive(Default)]
struct Buckets {
    workloads: HashMap<WorkloadKey, Bucket>,
    namespaces: HashMap<String, Bucket>,
    process: Option<Bucket>,
}

/// Forgets the buckets unused for a while when there are too many (a full one is as good as new).
fn bounded<K>(buckets: &mut HashMap<K, Bucket>, rate: Rate, now: Instant) {
    if buckets.len() >= MAX_BUCKETS {
        let cutoff = now.checked_sub(rate.refill.mul_f64(rate.burst)).unwrap_or(now);
        buckets.retain(|_, b| b.at > cutoff);
        if buckets.len() >= MAX_BUCKETS {
            buckets.clear();
        }
    }
}

impl Buckets {
    /// Takes a token at every level, or none: the error is the metric result naming the level
    /// that had none (the process first, then the namespace, then the workload).
    fn take(&mut self, namespace: &str, deployment: &str, now: Instant) -> Result<(), &'static str> {
        bounded(&mut self.workloads, WORKLOAD, now);
        bounded(&mut self.namespaces, NAMESPACE, now);
        let process = self.process.get_or_insert(Bucket::full(PROCESS, now));
        let ns = self.namespaces.entry(namespace.to_string()).or_insert(Bucket::full(NAMESPACE, now));
        let workload =
            self.workloads.entry(WorkloadKey::new(namespace, deployment)).or_insert(Bucket::full(WORKLOAD, now));
        if !process.refill(PROCESS, now) {
            return Err("dropped-process-limited");
        }
        if !ns.refill(NAMESPACE, now) {
            return Err("dropped-namespace-limited");
        }
        if !workload.refill(WORKLOAD, now) {
            return Err("dropped-rate-limited");
        }
        for bucket in [process, ns, workload] {
            bucket.tokens -= 1.0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workload_gets_a_burst_then_one_event_per_refill() {
        let mut b = Buckets::default();
        let t0 = Instant::now();
        let allowed = (0..50).filter(|_| b.take("ns", "api", t0).is_ok()).count();
        assert_eq!(allowed, WORKLOAD.burst as usize);
        assert_eq!(b.take("ns", "api", t0 + WORKLOAD.refill / 2), Err("dropped-rate-limited"));
        assert!(b.take("ns", "api", t0 + WORKLOAD.refill * 2).is_ok());
        assert!(b.take("ns", "other", t0 + WORKLOAD.refill * 2).is_ok(), "buckets are per workload");
    }

    /// A tenant posting forged reviews under made-up names: made-up workloads in one namespace
    /// share its bucket, made-up namespaces share the process's; etcd sees a bounded number.
    #[test]
    fn a_flood_under_made_up_names_is_bounded_per_namespace_and_for_the_process() {
        let mut b = Buckets::default();
        let t0 = Instant::now();
        let results: Vec<_> = (0..100).map(|i| b.take("victim", &format!("made-up-{i}"), t0)).collect();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), NAMESPACE.burst as usize);
        assert!(results.iter().all(|r| *r == Ok(()) || *r == Err("dropped-namespace-limited")));
        let mut b = Buckets::default();
        let results: Vec<_> = (0..1000).map(|i| b.take(&format!("ns-{i}"), "api", t0)).collect();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), PROCESS.burst as usize);
        assert_eq!(results[999], Err("dropped-process-limited"));
        // A second later the process has ten more, whatever the names.
        let later =
            (1000..1100).filter(|i| b.take(&format!("ns-{i}"), "api", t0 + Duration::from_secs(1)).is_ok()).count();
        assert_eq!(later, 10);
    }

    #[test]
    fn notes_stay_within_a_kilobyte() {
        let mut text = "é".repeat(2000);
        truncate_bytes(&mut text, 1024);
        assert!(text.len() <= 1024 && text.ends_with("..."));
    }
}
