//! Every decision rule of the design, as a table of cases named after the rule. The decision is a
//! pure function, so these run without a server.

use replica_guard::decision::limit::Unreachable;
use replica_guard::decision::policy::{ChangeSummary, FailurePolicy, Mode, NamespacePolicy, Policy};
use replica_guard::decision::{
    Decision, Field, FieldChange, Operation, Override, Path, Rule, Subject, Verdict, decide,
};
use replica_guard::decision::{Limit, Lookup, Scope};

fn subject(operation: Operation, old: Option<i32>, new: i32) -> Subject {
    Subject {
        path: Path::Deployment,
        operation,
        namespace: "team-a".into(),
        deployment: "payments-api".into(),
        new_replicas: new,
        old_replicas: old,
        min_replicas: None,
        override_reason: None,
        user: "alice@example.com".into(),
        groups: vec!["team-a-devs".into(), "system:authenticated".into()],
        dry_run: false,
        changes: vec![],
        unlisted_changes: Default::default(),
        omitted_values: Default::default(),
    }
}

fn create(new: i32) -> Subject {
    subject(Operation::Create, None, new)
}

fn update(old: i32, new: i32) -> Subject {
    let mut s = subject(Operation::Update, Some(old), new);
    if old != new {
        s.changes.push(change(Field::Replicas, "/spec/replicas"));
    }
    s
}

/// The same request on another path: `kubectl scale` or an HPA named like its target.
fn on(path: Path, mut s: Subject) -> Subject {
    s.path = path;
    s
}

fn hpa() -> Path {
    Path::Hpa { hpa: "payments-api".into() }
}

fn change(field: Field, path: &str) -> FieldChange {
    FieldChange {
        field,
        path: path.into(),
        container: Some("api".into()).filter(|_| field != Field::Replicas),
        edit: replica_guard::decision::recorded::Edit::Remove { emptied_map: false },
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

fn limit_min(max: i32, min: i32) -> Lookup {
    match limit(max) {
        Lookup::Registered(l) => Lookup::Registered(Limit { min_replicas: Some(min), ..l }),
        other => other,
    }
}

fn limit_with_mode(max: i32, mode: Mode) -> Lookup {
    match limit(max) {
        Lookup::Registered(l) => Lookup::Registered(Limit { mode: Some(mode), ..l }),
        other => other,
    }
}

fn policy(mode: Mode) -> Policy {
    Policy { mode, ..Policy::default() }
}

struct Case {
    rule: &'static str,
    subject: Subject,
    lookup: Lookup,
    policy: Policy,
    verdict: Verdict,
    decided_by: Rule,
    /// Text the first warning (or the deny message) must contain; "" for none.
    says: &'static str,
}

#[rustfmt::skip] // one rule a line: a table reads best as a table
fn cases() -> Vec<Case> {
    let enforce = policy(Mode::Enforce);
    let mut namespace_warn = policy(Mode::Enforce);
    namespace_warn.namespaces.insert("team-a".into(), NamespacePolicy { mode: Some(Mode::Warn) });
    let with_override_group = {
        let mut p = policy(Mode::Enforce);
        p.override_rule.groups.insert("platform-admins".into());
        p
    };
    let by_platform_admin = |mut s: Subject| {
        s.user = "bob@example.com".into();
        s.groups = vec!["platform-admins".into()];
        s.override_reason = Some("INC-4711 black friday".into());
        s
    };
    let with_reason = |mut s: Subject| {
        s.override_reason = Some("INC-1".into());
        s
    };
    let in_namespace = |ns: &str, mut s: Subject| {
        s.namespace = ns.into();
        s
    };
    let exempt = |f: &dyn Fn(&mut Policy)| {
        let mut p = policy(Mode::Enforce);
        f(&mut p);
        p
    };
    let unregistered =
        |u: replica_guard::decision::policy::Unregistered| Policy { unregistered: u, ..policy(Mode::Enforce) };
    let failing = |f: FailurePolicy| Policy { registry_failure: f, ..policy(Mode::Enforce) };
    use Rule::*;
    use Verdict::*;
    vec![
        // Violation: the requested replicas exceed the registered maximum.
        Case { rule: "violation: create above max is denied in enforce", subject: create(6), lookup: limit(4), policy: enforce.clone(), verdict: Denied, decided_by: Violation, says: "replicas 6 exceeds PED max 4 for team-a/payments-api" },
        Case { rule: "violation: raising above max is denied in enforce", subject: update(3, 6), lookup: limit(4), policy: enforce.clone(), verdict: Denied, decided_by: Violation, says: "replicas 3 -> 6 exceeds PED max 4" },
        Case { rule: "within limit: exactly max is allowed", subject: update(3, 4), lookup: limit(4), policy: enforce.clone(), verdict: Allowed, decided_by: WithinLimit, says: "" },
        Case { rule: "within limit: create below max is allowed", subject: create(2), lookup: limit(4), policy: enforce.clone(), verdict: Allowed, decided_by: WithinLimit, says: "" },
        // Modes.
        Case { rule: "mode warn: violation allowed with a warning", subject: update(3, 6), lookup: limit(4), policy: policy(Mode::Warn), verdict: Warned, decided_by: Violation, says: "replicas 3 -> 6 exceeds PED max 4 for team-a/payments-api" },
        Case { rule: "mode audit: violation allowed silently", subject: update(3, 6), lookup: limit(4), policy: policy(Mode::Audit), verdict: Allowed, decided_by: Violation, says: "" },
        Case { rule: "mode: namespace override beats the global mode", subject: update(3, 6), lookup: limit(4), policy: namespace_warn.clone(), verdict: Warned, decided_by: Violation, says: "exceeds" },
        Case { rule: "mode: registry entry beats the namespace override", subject: update(3, 6), lookup: limit_with_mode(4, Mode::Enforce), policy: namespace_warn, verdict: Denied, decided_by: Violation, says: "exceeds" },
        Case { rule: "mode: registry entry can relax enforce to audit", subject: update(3, 6), lookup: limit_with_mode(4, Mode::Audit), policy: enforce.clone(), verdict: Allowed, decided_by: Violation, says: "" },
        // Ratchet: already above the maximum on UPDATE, not raised further.
        Case { rule: "ratchet: scale-down still above max passes with a warning", subject: update(7, 5), lookup: limit(4), policy: enforce.clone(), verdict: Warned, decided_by: Ratchet, says: "replicas 7 -> 5 is above PED max 4; allowed as not raised, please lower to 4 (team-a/payments-api)" },
        Case { rule: "ratchet: a rollout at the same replicas passes with a warning", subject: { let mut s = update(7, 7); s.changes.push(change(Field::Image, "/spec/template/spec/containers/0/image")); s }, lookup: limit(4), policy: enforce.clone(), verdict: Warned, decided_by: Ratchet, says: "replicas 7 is above PED max 4" },
        Case { rule: "ratchet: raising further is a violation", subject: update(7, 8), lookup: limit(4), policy: enforce.clone(), verdict: Denied, decided_by: Violation, says: "replicas 7 -> 8 exceeds" },
        Case { rule: "ratchet: scale-down to within max is plainly allowed", subject: update(9, 3), lookup: limit(4), policy: enforce.clone(), verdict: Allowed, decided_by: WithinLimit, says: "" },
        Case { rule: "ratchet: does not apply to CREATE", subject: create(7), lookup: limit(4), policy: enforce.clone(), verdict: Denied, decided_by: Violation, says: "replicas 7 exceeds" },
        // No-op updates (nothing a person wrote changed) are silent, before every other rule.
        Case { rule: "no-op: an update that changes nothing above max stays silent", subject: update(7, 7), lookup: limit(4), policy: enforce.clone(), verdict: Allowed, decided_by: NoChange, says: "" },
        Case { rule: "no-op: unregistered under deny (managedFields churn, a finalizer removed) is allowed silently", subject: update(3, 3), lookup: Lookup::Unregistered, policy: unregistered(replica_guard::decision::policy::Unregistered::Deny), verdict: Allowed, decided_by: NoChange, says: "" },
        Case { rule: "no-op: an entry outside the platform bounds is not reported on a no-op", subject: update(3, 3), lookup: limit(12), policy: enforce.clone(), verdict: Allowed, decided_by: NoChange, says: "" },
        Case { rule: "no-op: below the registered minimum is not reported on a no-op", subject: update(1, 1), lookup: limit_min(4, 2), policy: enforce.clone(), verdict: Allowed, decided_by: NoChange, says: "" },
        Case { rule: "no-op: a Scale update that keeps the replicas is silent", subject: on(Path::Scale, update(9, 9)), lookup: limit(4), policy: enforce.clone(), verdict: Allowed, decided_by: NoChange, says: "" },
        Case { rule: "no-op: registry unreachable and fail closed does not refuse a no-op", subject: update(3, 3), lookup: Lookup::Unavailable(Unreachable::said("timeout")), policy: failing(FailurePolicy::Closed), verdict: Allowed, decided_by: NoChange, says: "" },
        Case { rule: "no-op: not a no-op when a label changed", subject: { let mut s = update(7, 7); s.changes.push(change(Field::Other, "/metadata/labels/team")); s }, lookup: limit(4), policy: enforce.clone(), verdict: Warned, decided_by: Ratchet, says: "replicas 7 is above PED max 4" },
        // The ratchet and the violation hold on every path: kubectl scale and HPAs.
        Case { rule: "scale path: scaling above max is denied", subject: on(Path::Scale, update(6, 9)), lookup: limit(4), policy: enforce.clone(), verdict: Denied, decided_by: Violation, says: "replicas 6 -> 9 exceeds PED max 4 for team-a/payments-api. To deploy, scale to 4 or less" },
        Case { rule: "scale path: warn mode warns", subject: on(Path::Scale, update(6, 9)), lookup: limit(4), policy: policy(Mode::Warn), verdict: Warned, decided_by: Violation, says: "replicas 6 -> 9 exceeds PED max 4" },
        Case { rule: "scale path ratchet: scaling down while above max passes with a warning", subject: on(Path::Scale, update(9, 6)), lookup: limit(4), policy: enforce.clone(), verdict: Warned, decided_by: Ratchet, says: "replicas 9 -> 6 is above PED max 4" },
        Case { rule: "scale path ratchet: scaling up while above max is a violation", subject: on(Path::Scale, update(6, 7)), lookup: limit(4), policy: enforce.clone(), verdict: Denied, decided_by: Violation, says: "replicas 6 -> 7 exceeds" },
        Case { rule: "scale path: scaling to 0 always passes", subject: on(Path::Scale, update(9, 0)), lookup: limit(4), policy: enforce.clone(), verdict: Allowed, decided_by: WithinLimit, says: "" },
        Case { rule: "hpa path: creating with maxReplicas above max is denied", subject: on(hpa(), create(10)), lookup: limit(4), policy: enforce.clone(), verdict: Denied, decided_by: Violation, says: "HPA maxReplicas 10 exceeds PED max 4 for team-a/payments-api" },
        Case { rule: "hpa path ratchet: lowering maxReplicas while still above max passes with a warning", subject: on(hpa(), update(12, 8)), lookup: limit(4), policy: enforce.clone(), verdict: Warned, decided_by: Ratchet, says: "HPA maxReplicas 12 -> 8 is above PED max 4" },
        Case { rule: "hpa path ratchet: raising maxReplicas while above max is a violation", subject: on(hpa(), update(8, 12)), lookup: limit(4), policy: enforce.clone(), verdict: Denied, decided_by: Violation, says: "HPA maxReplicas 8 -> 12 exceeds" },
        Case { rule: "hpa path: lowering maxReplicas to within max is allowed", subject: on(hpa(), update(12, 4)), lookup: limit(4), policy: enforce.clone(), verdict: Allowed, decided_by: WithinLimit, says: "" },
        // Unregistered workloads.
        Case { rule: "unregistered: warn (default)", subject: create(3), lookup: Lookup::Unregistered, policy: enforce.clone(), verdict: Warned, decided_by: Unregistered, says: "not registered in PED; register it with the onboarding pipeline to set its maxReplicas (team-a/payments-api)" },
        Case { rule: "unregistered: allow", subject: create(3), lookup: Lookup::Unregistered, policy: unregistered(replica_guard::decision::policy::Unregistered::Allow), verdict: Allowed, decided_by: Unregistered, says: "" },
        Case { rule: "unregistered: deny refuses a create", subject: create(3), lookup: Lookup::Unregistered, policy: unregistered(replica_guard::decision::policy::Unregistered::Deny), verdict: Denied, decided_by: Unregistered, says: "Register it with the onboarding pipeline" },
        Case { rule: "unregistered: deny refuses an update that raises replicas", subject: update(2, 3), lookup: Lookup::Unregistered, policy: unregistered(replica_guard::decision::policy::Unregistered::Deny), verdict: Denied, decided_by: Unregistered, says: "team-a/payments-api is not registered in PED" },
        Case { rule: "unregistered: deny lets an update that does not raise replicas through, with a warning (ratchet)", subject: { let mut s = update(3, 2); s.changes.push(change(Field::Image, "/spec/template/spec/containers/0/image")); s }, lookup: Lookup::Unregistered, policy: unregistered(replica_guard::decision::policy::Unregistered::Deny), verdict: Warned, decided_by: Unregistered, says: "not registered in PED; allowed as replicas not raised, register it with the onboarding pipeline (team-a/payments-api)" },
        // Registry that cannot answer.
        Case { rule: "registry unavailable: fail open warns", subject: create(3), lookup: Lookup::Unavailable(Unreachable::said("timeout after 1s")), policy: failing(FailurePolicy::Open), verdict: Warned, decided_by: RegistryUnavailable, says: "PED limit not checked: registry unreachable (team-a/payments-api: timeout after 1s)" },
        Case { rule: "registry unavailable: fail closed denies", subject: create(3), lookup: Lookup::Unavailable(Unreachable::said("timeout after 1s")), policy: failing(FailurePolicy::Closed), verdict: Denied, decided_by: RegistryUnavailable, says: "PED registry unreachable" },
        // Platform bounds: reported, still enforced as registered.
        Case { rule: "platform bounds: an entry above the bounds is reported", subject: update(3, 10), lookup: limit(12), policy: enforce.clone(), verdict: Warned, decided_by: WithinLimit, says: "PED max 12 is outside the platform bounds 2-8; ask the platform team to correct the PED entry (team-a/payments-api)" },
        Case { rule: "platform bounds: an entry below the bounds is reported and enforced", subject: update(1, 2), lookup: limit(1), policy: enforce.clone(), verdict: Denied, decided_by: Violation, says: "replicas 1 -> 2 exceeds PED max 1" },
        // Exemptions: allowed without evaluation, even when violating.
        Case { rule: "exemption: system namespace", subject: in_namespace("kube-system", create(50)), lookup: limit(4), policy: enforce.clone(), verdict: Allowed, decided_by: Exempt(replica_guard::decision::policy::Exemption::SystemNamespace), says: "" },
        Case { rule: "exemption: the webhook's own namespace", subject: in_namespace("replica-guard", create(50)), lookup: limit(4), policy: exempt(&|p| p.own_namespace = Some("replica-guard".into())), verdict: Allowed, decided_by: Exempt(replica_guard::decision::policy::Exemption::SystemNamespace), says: "" },
        Case { rule: "exemption: configured namespace", subject: create(50), lookup: limit(4), policy: exempt(&|p| { p.exemptions.namespaces.insert("team-a".into()); }), verdict: Allowed, decided_by: Exempt(replica_guard::decision::policy::Exemption::Namespace), says: "" },
        Case { rule: "exemption: configured user", subject: create(50), lookup: limit(4), policy: exempt(&|p| { p.exemptions.users.insert("alice@example.com".into()); }), verdict: Allowed, decided_by: Exempt(replica_guard::decision::policy::Exemption::User), says: "" },
        Case { rule: "exemption: configured group", subject: create(50), lookup: limit(4), policy: exempt(&|p| { p.exemptions.groups.insert("team-a-devs".into()); }), verdict: Allowed, decided_by: Exempt(replica_guard::decision::policy::Exemption::Group), says: "" },
        // Break-glass override.
        Case { rule: "override: honoured for a member of an override group", subject: by_platform_admin(update(7, 8)), lookup: limit(4), policy: with_override_group.clone(), verdict: Warned, decided_by: Violation, says: "allowed by break-glass override: replicas 7 -> 8 exceeds PED max 4 for team-a/payments-api" },
        Case { rule: "override: ignored for anyone else, and the denial says so", subject: with_reason(update(7, 8)), lookup: limit(4), policy: with_override_group.clone(), verdict: Denied, decided_by: Violation, says: "The replica-guard.io/override annotation was ignored: alice@example.com is not allowed to override (only platform-admins may)." },
        Case { rule: "override: also lets an unregistered deny through", subject: by_platform_admin(create(3)), lookup: Lookup::Unregistered, policy: Policy { unregistered: replica_guard::decision::policy::Unregistered::Deny, ..with_override_group.clone() }, verdict: Warned, decided_by: Unregistered, says: "allowed by break-glass override: team-a/payments-api is not registered in PED" },
        Case { rule: "override: not needed within the limit", subject: by_platform_admin(update(3, 4)), lookup: limit(4), policy: with_override_group, verdict: Allowed, decided_by: WithinLimit, says: "" },
    ]
}

fn first_text(d: &Decision) -> String {
    d.deny_message.clone().or_else(|| d.warnings.first().cloned()).unwrap_or_default()
}

#[test]
fn decision_rules() {
    let mut failures = vec![];
    for case in cases() {
        let d = decide(&case.subject, &case.lookup, &case.policy);
        let text = first_text(&d);
        let ok = d.verdict == case.verdict
            && d.rule == case.decided_by
            && (if case.says.is_empty() { text.is_empty() } else { text.contains(case.says) })
            && (d.verdict == Verdict::Denied) == d.deny_message.is_some();
        if !ok {
            failures.push(format!("{}: got {:?} by {:?} saying {text:?}", case.rule, d.verdict, d.rule));
        }
        // Deterministic: the API server may send the same request twice.
        assert_eq!(d, decide(&case.subject, &case.lookup, &case.policy), "{}", case.rule);
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn a_change_with_tens_of_thousands_of_keys_is_described_briefly() {
    let mut s = update(3, 6);
    s.changes.extend((0..80_000).map(|i| change(Field::Other, &format!("/metadata/labels/key-{i}"))));
    let d = decide(&s, &limit(4), &policy(Mode::Enforce));
    let message = d.deny_message.unwrap();
    assert!(message.len() < 600, "{} bytes: {message}", message.len());
    assert!(message.ends_with("label key-5 and 79994 more."), "{message}");
}

#[test]
fn override_use_is_reported() {
    let mut p = policy(Mode::Enforce);
    p.override_rule.groups.insert("platform-admins".into());
    let mut s = update(7, 8);
    s.override_reason = Some("INC-1".into());
    assert_eq!(decide(&s, &limit(4), &p).override_use, Override::Ignored);
    s.groups = vec!["platform-admins".into()];
    let d = decide(&s, &limit(4), &p);
    assert_eq!(d.override_use, Override::Honoured);
    assert_eq!(d.warnings[1], "override recorded: INC-1 (by alice@example.com)");
}

#[test]
fn warnings_stay_within_kubernetes_limits_even_with_long_names() {
    let mut s = update(7, 9);
    s.namespace = "n".repeat(63);
    s.deployment = "d".repeat(253);
    s.override_reason = Some("r".repeat(500));
    s.groups = vec!["platform-admins".into()];
    s.changes = Field::ALL.iter().map(|f| change(*f, "/spec/template/spec/containers/0/x")).collect();
    let mut p = policy(Mode::Warn);
    p.override_rule.groups.insert("platform-admins".into());
    p.change_summary = ChangeSummary::Always;
    let d = decide(&s, &limit(12), &p);
    assert!(!d.warnings.is_empty() && d.warnings.len() <= 4, "{:?}", d.warnings);
    for w in &d.warnings {
        assert!(w.chars().count() <= 120, "{} chars: {w}", w.chars().count());
        assert!(!w.to_lowercase().starts_with("warning"), "kubectl adds the prefix: {w}");
    }
}

#[test]
fn deny_messages_say_what_to_change_on_each_path() {
    let p = policy(Mode::Enforce);
    let mut s = update(3, 6);
    assert!(
        decide(&s, &limit(4), &p)
            .deny_message
            .unwrap()
            .contains("lower spec.replicas to 4 or less, or raise maxReplicas in the PED config")
    );
    s.path = Path::Scale;
    assert!(decide(&s, &limit(4), &p).deny_message.unwrap().contains("scale to 4 or less"));
    s.path = Path::Hpa { hpa: "payments-api".into() };
    s.min_replicas = Some(5);
    let message = decide(&s, &limit(4), &p).deny_message.unwrap();
    assert!(
        message.starts_with("HPA maxReplicas 3 -> 6 (minReplicas 5 too) exceeds PED max 4 for team-a/payments-api"),
        "{message}"
    );
    assert!(message.contains("lower maxReplicas (and minReplicas) of HPA payments-api to 4 or less"), "{message}");
}

#[test]
fn a_denied_redeploy_names_what_else_it_would_have_changed() {
    let mut s = update(3, 6);
    s.changes.push(change(Field::Image, "/spec/template/spec/containers/0/image"));
    s.changes.push(change(Field::Env, "/spec/template/spec/containers/0/env/0/value"));
    let message = decide(&s, &limit(4), &policy(Mode::Enforce)).deny_message.unwrap();
    assert!(
        message.ends_with("Nothing of this request was applied, including its changes to image of api, env of api."),
        "{message}"
    );
}

#[test]
fn change_summary_follows_its_setting() {
    let mut s = update(3, 4);
    s.changes.push(change(Field::Image, "/spec/template/spec/containers/0/image"));
    let with = |summary| decide(&s, &limit(4), &Policy { change_summary: summary, ..policy(Mode::Enforce) }).warnings;
    assert_eq!(with(ChangeSummary::Always), vec!["changes: replicas 3 -> 4, image of api"]);
    assert!(with(ChangeSummary::WithWarnings).is_empty(), "nothing else to warn about: silent");
    assert!(with(ChangeSummary::Never).is_empty());
    let mut restart = update(3, 3);
    restart
        .changes
        .push(change(Field::Other, "/spec/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt"));
    let d = decide(&restart, &limit(4), &Policy { change_summary: ChangeSummary::Always, ..policy(Mode::Enforce) });
    assert_eq!(d.warnings, vec!["changes: pod annotation kubectl.kubernetes.io/restartedAt"]);
}

#[test]
fn below_registered_min_is_a_warning_never_a_denial() {
    let lookup = Lookup::Registered(Limit {
        max_replicas: 4,
        min_replicas: Some(2),
        mode: None,
        owner: None,
        scope: Scope::Deployment,
    });
    let d = decide(&update(3, 1), &lookup, &policy(Mode::Enforce));
    assert_eq!(d.verdict, Verdict::Warned);
    assert_eq!(d.warnings[0], "replicas 3 -> 1 is below PED minReplicas 2 (team-a/payments-api)");
    assert_eq!(
        decide(&update(3, 0), &lookup, &policy(Mode::Enforce)).verdict,
        Verdict::Allowed,
        "scaling to 0 is a deliberate pause"
    );
}

#[test]
fn namespace_and_global_defaults_are_named_as_such() {
    let ns = Lookup::Registered(Limit {
        max_replicas: 3,
        min_replicas: None,
        mode: None,
        owner: None,
        scope: Scope::NamespaceDefault,
    });
    assert!(
        first_text(&decide(&create(5), &ns, &policy(Mode::Warn))).contains("PED namespace default max 3 for team-a")
    );
    let global = Lookup::Registered(Limit {
        max_replicas: 2,
        min_replicas: None,
        mode: None,
        owner: None,
        scope: Scope::GlobalDefault,
    });
    assert!(
        first_text(&decide(&create(5), &global, &policy(Mode::Warn)))
            .contains("platform default max 2 for unregistered team-a/payments-api")
    );
}

#[test]
fn on_the_scale_path_an_override_group_member_is_told_how_to_override() {
    let mut p = policy(Mode::Enforce);
    p.override_rule.groups.insert("platform-admins".into());
    let mut s = on(Path::Scale, update(6, 9));
    let message = decide(&s, &limit(4), &p).deny_message.unwrap();
    assert!(!message.contains("kubectl scale cannot carry"), "not for users who cannot override: {message}");
    s.groups = vec!["platform-admins".into()];
    let message = decide(&s, &limit(4), &p).deny_message.unwrap();
    assert!(
        message.ends_with("kubectl scale cannot carry the replica-guard.io/override annotation: to override, apply the Deployment with the annotation and the new spec.replicas."),
        "{message}"
    );
}

/// Namespaces and Deployment names may take 63 characters each: cut at 120, every warning still
/// says what is wrong, what happens and what to do, and loses only the names.
#[test]
fn warnings_keep_their_point_with_the_longest_names() {
    let long = |mut s: Subject| {
        s.namespace = format!("team-{}", "n".repeat(58));
        s.deployment = format!("api-{}", "d".repeat(59));
        s.user = format!("system:serviceaccount:{}:deployer-{}", s.namespace, "u".repeat(40));
        s
    };
    let mut override_group = policy(Mode::Enforce);
    override_group.override_rule.groups.insert("platform-admins".into());
    let admin = |mut s: Subject| {
        s.groups = vec!["platform-admins".into()];
        s.override_reason = Some("INC-4711 black friday".into());
        s
    };
    let mut deny_unregistered = policy(Mode::Enforce);
    deny_unregistered.unregistered = replica_guard::decision::policy::Unregistered::Deny;
    let cases: Vec<(&str, Subject, Lookup, Policy, &str)> = vec![
        (
            "violation (warn mode)",
            long(update(3, 6)),
            limit(4),
            policy(Mode::Warn),
            "replicas 3 -> 6 exceeds PED max 4 for ",
        ),
        (
            "ratchet",
            long(update(7, 7)),
            limit(4),
            policy(Mode::Enforce),
            "replicas 7 is above PED max 4; allowed as not raised, please lower to 4",
        ),
        (
            "below the minimum",
            long(update(3, 1)),
            limit_min(4, 2),
            policy(Mode::Enforce),
            "replicas 3 -> 1 is below PED minReplicas 2",
        ),
        (
            "out of bounds",
            long(update(3, 4)),
            limit(12),
            policy(Mode::Enforce),
            "PED max 12 is outside the platform bounds 2-8; ask the platform team to correct the PED entry",
        ),
        (
            "unregistered",
            long(create(3)),
            Lookup::Unregistered,
            policy(Mode::Enforce),
            "not registered in PED; register it with the onboarding pipeline to set its maxReplicas",
        ),
        (
            "unregistered, not raised",
            long(update(3, 3)),
            Lookup::Unregistered,
            deny_unregistered,
            "not registered in PED; allowed as replicas not raised, register it with the onboarding pipeline",
        ),
        (
            "registry unreachable",
            long(create(3)),
            Lookup::Unavailable(Unreachable::said("timeout")),
            policy(Mode::Enforce),
            "PED limit not checked: registry unreachable",
        ),
        (
            "override",
            long(admin(update(3, 6))),
            limit(4),
            override_group,
            "allowed by break-glass override: replicas 3 -> 6 exceeds PED max 4",
        ),
    ];
    for (rule, mut subject, lookup, policy, point) in cases {
        if rule == "unregistered, not raised" || rule == "ratchet" {
            subject.changes.push(change(Field::Image, "/spec/template/spec/containers/0/image"));
        }
        let d = decide(&subject, &lookup, &policy);
        let first = d.warnings.first().unwrap_or_else(|| panic!("{rule}: no warning"));
        assert!(first.chars().count() <= 120, "{rule}: {first}");
        assert!(first.starts_with(point), "{rule}: the point is cut:\n  {first}\n  want it to start with: {point}");
        if rule == "override" {
            assert!(d.warnings[1].starts_with("override recorded: INC-4711 black friday (by "), "{:?}", d.warnings);
        }
    }
}
