//! How a running workload stands against its registry entry. Pure, like the admission decision,
//! and judged with the same registry, bounds and exemptions.

use crate::decision::policy::{Mode, Policy};
use crate::decision::{Limit, Lookup};

/// A Deployment as it runs, with the HPA that scales it (if any).
#[derive(Debug, Clone, PartialEq)]
pub struct RunningWorkload {
    pub namespace: String,
    pub deployment: String,
    /// `spec.replicas` (the API server defaults it to 1).
    pub replicas: i32,
    /// The HPA targeting the Deployment: its name and `maxReplicas` (the largest, if several).
    pub hpa: Option<(String, i32)>,
    /// The pod's summed CPU requests, in cores.
    pub cpu_requests: f64,
    /// The pod's summed memory requests, in GiB.
    pub memory_requests_gib: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Replicas and HPA maximum within the registered maximum, which is within the platform bounds.
    Within,
    /// Within, but the registered maximum itself is outside the platform bounds.
    OutOfBounds,
    /// Replicas within, but an HPA may scale above the maximum: it exists only by the ratchet
    /// (creating it now would be a violation), and any change to it must not raise it.
    RatchetOnly,
    /// Running above the registered maximum now.
    Over,
    /// No registry entry (and no namespace or global default).
    Unregistered,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Within => "within",
            Status::OutOfBounds => "out-of-bounds",
            Status::RatchetOnly => "ratchet-only",
            Status::Over => "over",
            Status::Unregistered => "unregistered",
        }
    }

    /// Whether the workload exceeds its limit now (the audit's exit status counts these).
    pub fn is_over(self) -> bool {
        matches!(self, Status::Over | Status::RatchetOnly)
    }
}

/// The judgement of one workload.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub workload: RunningWorkload,
    pub limit: Option<Limit>,
    pub mode: Option<Mode>,
    pub status: Status,
}

/// Judges `workload` against `lookup`; None when the policy exempts its namespace (the webhook
/// never evaluates it either). A registry that could not answer counts as unregistered.
pub fn judge(workload: RunningWorkload, lookup: Lookup, policy: &Policy) -> Option<Judged> {
    // Exemptions by namespace only: a running workload has no requesting user.
    if policy.exemption(&workload.namespace, "", &[]).is_some() {
        return None;
    }
    let Lookup::Registered(limit) = lookup else {
        return Some(Judged { workload, limit: None, mode: None, status: Status::Unregistered });
    };
    let max = limit.max_replicas;
    let status = if workload.replicas > max {
        Status::Over
    } else if workload.hpa.as_ref().is_some_and(|(_, hpa_max)| *hpa_max > max) {
        Status::RatchetOnly
    } else if !policy.platform_bounds.contains(max) {
        Status::OutOfBounds
    } else {
        Status::Within
    };
    let mode = Some(limit.mode.unwrap_or_else(|| policy.namespace_mode(&workload.namespace)));
    Some(Judged { workload, limit: Some(limit), mode, status })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Scope;
    use crate::decision::limit::Unreachable;

    fn workload(replicas: i32, hpa: Option<i32>) -> RunningWorkload {
        RunningWorkload {
            namespace: "team-a".into(),
            deployment: "api".into(),
            replicas,
            hpa: hpa.map(|m| ("api".to_string(), m)),
            cpu_requests: 2.0,
            memory_requests_gib: 4.0,
        }
    }

    fn limit(max: i32) -> Lookup {
        Lookup::Registered(Limit {
            max_replicas: max,
            min_replicas: None,
            mode: None,
            owner: None,
            scope: Scope::Deployment,
        })
    }

    #[test]
    fn statuses() {
        let policy = Policy::default();
        let cases = [
            (workload(3, None), limit(4), Status::Within),
            (workload(4, Some(4)), limit(4), Status::Within),
            (workload(7, None), limit(4), Status::Over),
            (workload(7, Some(10)), limit(4), Status::Over),
            (workload(3, Some(10)), limit(4), Status::RatchetOnly),
            (workload(3, None), limit(12), Status::OutOfBounds),
            (workload(3, None), Lookup::Unregistered, Status::Unregistered),
            (workload(3, None), Lookup::Unavailable(Unreachable::said("down")), Status::Unregistered),
        ];
        for (w, lookup, want) in cases {
            let got = judge(w.clone(), lookup, &policy).unwrap().status;
            assert_eq!(got, want, "{w:?}");
        }
    }

    #[test]
    fn exempt_namespaces_are_not_judged() {
        let mut w = workload(50, None);
        w.namespace = "kube-system".into();
        assert_eq!(judge(w, limit(4), &Policy::default()), None);
    }
}
