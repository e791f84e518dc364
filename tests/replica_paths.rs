//! Every path to more replicas, with the captured bodies of every fixture set (what
//! kube-apiserver 1.20 and 1.37 sent): `kubectl scale` (the scale subresource), HPAs in
//! autoscaling/v1, v2beta2 and v2, rollout restart, dry run, the break-glass override, exemptions
//! and the controllers' own traffic.

mod common;

use common::{FIXTURE_SETS, REGISTRY, TestServer, fixture_in, fixture_json_in, message, warnings};
use serde_json::json;

const ENFORCE: &str = "mode: enforce\noverride: {groups: [platform-admins]}";

#[tokio::test]
async fn kubectl_scale_is_held_to_the_limit() {
    for set in FIXTURE_SETS {
        eprintln!("fixture set {set}");
        let server = TestServer::start(ENFORCE, REGISTRY).await;
        let up = server.review(fixture_in(set, "scale-6-to-9.json")).await;
        assert_eq!(up["allowed"], false);
        assert_eq!(up["status"]["code"], 403);
        assert!(
            message(&up).starts_with(
                "replicas 6 -> 9 exceeds PED max 4 for team-a/payments-api. To deploy, scale to 4 or less"
            ),
            "{up}"
        );

        // `kubectl scale --replicas=0`: the Scale has no replicas field at all; 0 always passes.
        let to_zero = server.review(fixture_in(set, "scale-9-to-0-no-replicas-field.json")).await;
        assert_eq!((to_zero["allowed"].clone(), warnings(&to_zero).len()), (json!(true), 0), "{to_zero}");
        assert_eq!(to_zero["auditAnnotations"]["requested-replicas"], "0");
        assert_eq!(to_zero["auditAnnotations"]["previous-replicas"], "9");

        // From 0 (old Scale without replicas) to 3: within the limit.
        let from_zero = server.review(fixture_in(set, "scale-0-to-3.json")).await;
        assert_eq!(from_zero["allowed"], true);
        assert_eq!(from_zero["auditAnnotations"]["previous-replicas"], "0");

        // A team member scaling orders-api 1 -> 5.
        let alice = server.review(fixture_in(set, "scale-by-team-user-1-to-5.json")).await;
        assert_eq!(alice["allowed"], false);
        assert!(message(&alice).starts_with("replicas 1 -> 5 exceeds PED max 4 for team-a/orders-api"), "{alice}");
        assert!(!message(&alice).contains("override"), "alice may not override, so she is not told how");

        assert_eq!(
            server
                .metric(
                    "replica_guard_admission_requests_total{decision=\"denied\",kind=\"scale\",operation=\"UPDATE\"}"
                )
                .await,
            2.0
        );
        server.shutdown().await;
    }
}

#[tokio::test]
async fn kubectl_scale_in_warn_mode_warns() {
    for set in FIXTURE_SETS {
        eprintln!("fixture set {set}");
        let server = TestServer::start("mode: warn", REGISTRY).await;
        let up = server.review(fixture_in(set, "scale-6-to-9.json")).await;
        assert_eq!(up["allowed"], true);
        assert_eq!(
            warnings(&up),
            vec!["replicas 6 -> 9 exceeds PED max 4 for team-a/payments-api", "changes: replicas 6 -> 9"]
        );
        server.shutdown().await;
    }
}

#[tokio::test]
async fn hpas_in_every_version_are_held_to_their_targets_limit() {
    for set in FIXTURE_SETS {
        eprintln!("fixture set {set}");
        let server = TestServer::start(ENFORCE, REGISTRY).await;
        for (file, hpa, target, max) in [
            ("hpa-autoscale-create-max-10.json", "payments-api", "payments-api", 10),
            ("hpa-apply-create-max-12.json", "orders-api", "orders-api", 12),
        ] {
            let response = server.review(fixture_in(set, file)).await;
            assert_eq!(response["allowed"], false, "{file}: {response}");
            let text = message(&response);
            assert!(
                text.starts_with(&format!("HPA maxReplicas {max} exceeds PED max 4 for team-a/{target}")),
                "{file}: {text}"
            );
            assert!(
                text.contains(&format!("lower maxReplicas (and minReplicas) of HPA {hpa} to 4 or less")),
                "{file}: {text}"
            );
        }
        // 1.20 sent what `kubectl autoscale` and `kubectl patch` made as autoscaling/v1 and the
        // applied manifest as v2beta2; 1.37 sends every HPA as autoscaling/v2.
        let versions: Vec<String> =
            ["hpa-autoscale-create-max-10.json", "hpa-apply-create-max-12.json", "hpa-patch-max-12-to-4.json"]
                .iter()
                .map(|f| fixture_json_in(set, f)["request"]["object"]["apiVersion"].as_str().unwrap().to_string())
                .collect();
        let expected = match set {
            "k8s-1.20" => ["autoscaling/v1", "autoscaling/v2beta2", "autoscaling/v1"],
            _ => ["autoscaling/v2"; 3],
        };
        assert_eq!(versions, expected, "{set}");
        // `kubectl patch hpa` lowering maxReplicas 12 -> 4: allowed, recorded as a replicas change.
        let lowered = server.review(fixture_in(set, "hpa-patch-max-12-to-4.json")).await;
        assert_eq!(lowered["allowed"], true, "{lowered}");
        assert_eq!(lowered["auditAnnotations"]["changed-fields"], "replicas");
        assert_eq!(lowered["auditAnnotations"]["previous-replicas"], "12");
        server.shutdown().await;
    }
}

#[tokio::test]
async fn an_hpa_raised_above_the_maximum_is_a_violation_and_lowered_within_it_passes() {
    for set in FIXTURE_SETS {
        eprintln!("fixture set {set}");
        let server = TestServer::start("mode: warn", REGISTRY).await;
        let created = server.review(fixture_in(set, "hpa-apply-create-max-12.json")).await;
        assert_eq!(warnings(&created)[0], "HPA maxReplicas 12 exceeds PED max 4 for team-a/orders-api");
        // An HPA whose minReplicas is also above the maximum says so.
        let mut both = fixture_json_in(set, "hpa-apply-create-max-12.json");
        both["request"]["object"]["spec"]["minReplicas"] = json!(6);
        let response = server.review(serde_json::to_vec(&both).unwrap()).await;
        assert_eq!(
            warnings(&response)[0],
            "HPA maxReplicas 12 (minReplicas 6 too) exceeds PED max 4 for team-a/orders-api"
        );
        server.shutdown().await;
    }
}

#[tokio::test]
async fn an_hpa_on_something_else_than_a_deployment_is_not_evaluated() {
    for set in FIXTURE_SETS {
        eprintln!("fixture set {set}");
        let server = TestServer::start(ENFORCE, REGISTRY).await;
        let mut statefulset = fixture_json_in(set, "hpa-autoscale-create-max-10.json");
        statefulset["request"]["object"]["spec"]["scaleTargetRef"]["kind"] = json!("StatefulSet");
        let response = server.review(serde_json::to_vec(&statefulset).unwrap()).await;
        assert_eq!(response["allowed"], true);
        assert!(response["auditAnnotations"].is_null());
        server.shutdown().await;
    }
}

#[tokio::test]
async fn the_ratchet_holds_on_every_path_when_the_registry_was_lowered() {
    for set in FIXTURE_SETS {
        eprintln!("fixture set {set}");
        // payments-api runs 3, then the registry is lowered to 2: the workload is above its maximum.
        let lowered = "entries:\n  - {namespace: team-a, deployment: payments-api, maxReplicas: 2}\n  - {namespace: team-a, deployment: orders-api, maxReplicas: 2}\n";
        let server = TestServer::start(ENFORCE, lowered).await;
        // A rollout restart (only a pod-template annotation changes) passes with a warning and a
        // one-line change summary.
        let restart = server.review(fixture_in(set, "deployment-rollout-restart.json")).await;
        assert_eq!(restart["allowed"], true);
        assert_eq!(
            warnings(&restart),
            vec![
                "replicas 3 is above PED max 2; allowed as not raised, please lower to 2 (team-a/payments-api)",
                "changes: pod annotation kubectl.kubernetes.io/restartedAt",
            ]
        );
        assert_eq!(restart["auditAnnotations"]["rule"], "ratchet");
        // Scaling 9 -> 0 passes silently; scaling 6 -> 9 does not.
        assert_eq!(server.review(fixture_in(set, "scale-9-to-0-no-replicas-field.json")).await["allowed"], true);
        assert_eq!(server.review(fixture_in(set, "scale-6-to-9.json")).await["allowed"], false);
        // The HPA lowered 12 -> 4 is still above 2, but not raised: it passes with a warning.
        let hpa = server.review(fixture_in(set, "hpa-patch-max-12-to-4.json")).await;
        assert_eq!(hpa["allowed"], true);
        assert_eq!(
            warnings(&hpa)[0],
            "HPA maxReplicas 12 -> 4 is above PED max 2; allowed as not raised, please lower to 2 (team-a/orders-api)"
        );
        server.shutdown().await;
    }
}

#[tokio::test]
async fn dry_run_answers_exactly_like_the_real_request() {
    for set in FIXTURE_SETS {
        eprintln!("fixture set {set}");
        let server = TestServer::start(ENFORCE, REGISTRY).await;
        let dry = fixture_json_in(set, "deployment-dry-run-3-to-12.json");
        let mut real = dry.clone();
        real["request"]["dryRun"] = json!(false);
        let dry_answer = server.review(serde_json::to_vec(&dry).unwrap()).await;
        let real_answer = server.review(serde_json::to_vec(&real).unwrap()).await;
        assert_eq!(dry_answer, real_answer, "the same warnings, the same denial");
        assert_eq!(dry_answer["allowed"], false);
        let records = server.audit_records();
        assert_eq!((records[0]["dryRun"].clone(), records[1]["dryRun"].clone()), (json!(true), json!(false)));
        // Only the real one is counted.
        let labels = "{deployment=\"payments-api\",mode=\"enforce\",namespace=\"team-a\"}";
        assert_eq!(server.metric(&format!("replica_guard_violations_total{labels}")).await, 1.0);
        server.shutdown().await;
    }
}

#[tokio::test]
async fn break_glass_override_is_honoured_only_for_the_configured_groups() {
    for set in FIXTURE_SETS {
        eprintln!("fixture set {set}");
        let server = TestServer::start(ENFORCE, REGISTRY).await;
        let bob = server.review(fixture_in(set, "deployment-override-annotation-by-platform-admin-7-to-8.json")).await;
        assert_eq!(bob["allowed"], true);
        assert_eq!(warnings(&bob)[1], "override recorded: INC-4711 black friday (by bob@example.com)");
        assert_eq!(bob["auditAnnotations"]["override"], "INC-4711 black friday");

        // The same request by alice, who is not in platform-admins.
        let mut alice = fixture_json_in(set, "deployment-override-annotation-by-platform-admin-7-to-8.json");
        alice["request"]["userInfo"] =
            json!({"username": "alice@example.com", "groups": ["team-a-devs", "system:authenticated"]});
        let alice = server.review(serde_json::to_vec(&alice).unwrap()).await;
        assert_eq!(alice["allowed"], false);
        assert!(
            message(&alice).ends_with("The replica-guard.io/override annotation was ignored: alice@example.com is not allowed to override (only platform-admins may)."),
            "{alice}"
        );
        assert_eq!(alice["auditAnnotations"]["override-ignored"], "alice@example.com");

        let honoured = "{deployment=\"payments-api\",namespace=\"team-a\",result=\"honoured\"}";
        let ignored = "{deployment=\"payments-api\",namespace=\"team-a\",result=\"ignored\"}";
        assert_eq!(server.metric(&format!("replica_guard_overrides_total{honoured}")).await, 1.0);
        assert_eq!(server.metric(&format!("replica_guard_overrides_total{ignored}")).await, 1.0);
        let records = server.audit_records();
        assert_eq!(records[0]["overrideResult"], "honoured");
        assert_eq!(records[0]["overrideReason"], "INC-4711 black friday");
        assert_eq!(records[1]["overrideResult"], "ignored");

        // Scale requests carry no annotations: a platform admin is told how to override instead.
        let mut scale = fixture_json_in(set, "scale-6-to-9.json");
        scale["request"]["userInfo"] = json!({"username": "bob@example.com", "groups": ["platform-admins"]});
        let scale = server.review(serde_json::to_vec(&scale).unwrap()).await;
        assert!(
            message(&scale).contains("kubectl scale cannot carry the replica-guard.io/override annotation"),
            "{scale}"
        );
        server.shutdown().await;
    }
}

#[tokio::test]
async fn exempt_namespaces_users_and_groups_are_not_evaluated() {
    for set in FIXTURE_SETS {
        eprintln!("fixture set {set}");
        let policy = "mode: enforce\nexemptions: {namespaces: [team-a]}";
        let server = TestServer::start(policy, REGISTRY).await;
        let response = server.review(fixture_in(set, "deployment-patch-4-to-7.json")).await;
        assert_eq!(response["allowed"], true);
        assert!(response["warnings"].is_null());
        assert_eq!(response["auditAnnotations"]["exempt"], "namespace");
        assert_eq!(server.metric("replica_guard_exempt_requests_total{exemption=\"namespace\"}").await, 1.0);
        server.shutdown().await;

        let server = TestServer::start("mode: enforce\nexemptions: {groups: [team-a-devs]}", REGISTRY).await;
        assert_eq!(server.review(fixture_in(set, "scale-by-team-user-1-to-5.json")).await["allowed"], true);
        server.shutdown().await;

        let server = TestServer::start("mode: enforce\nownNamespace: team-a", REGISTRY).await;
        assert_eq!(
            server.review(fixture_in(set, "scale-6-to-9.json")).await["auditAnnotations"]["exempt"],
            "system-namespace"
        );
        server.shutdown().await;
    }
}

#[tokio::test]
async fn controllers_ordinary_traffic_gets_no_warning_or_denial() {
    for set in FIXTURE_SETS {
        eprintln!("fixture set {set}");
        // payments-api already runs above a lowered maximum of 2.
        let registry = "entries:\n  - {namespace: team-a, deployment: payments-api, maxReplicas: 2}\n";
        let server = TestServer::start(ENFORCE, registry).await;

        // The deployment controller / garbage collector touching only bookkeeping: silent.
        let mut gc = fixture_json_in(set, "deployment-rollout-restart.json");
        gc["request"]["userInfo"] = json!({"username": "system:serviceaccount:kube-system:generic-garbage-collector"});
        let old = gc["request"]["oldObject"].clone();
        gc["request"]["object"] = old;
        gc["request"]["object"]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!("7");
        gc["request"]["object"]["metadata"]["generation"] = json!(42);
        let response = server.review(serde_json::to_vec(&gc).unwrap()).await;
        assert_eq!(response["allowed"], true);
        assert!(response["warnings"].is_null(), "{response}");

        // Status updates arrive on the status subresource, which is not a replica path.
        let mut status = fixture_json_in(set, "deployment-rollout-restart.json");
        status["request"]["subResource"] = json!("status");
        status["request"]["userInfo"] = json!({"username": "system:serviceaccount:kube-system:deployment-controller"});
        let response = server.review(serde_json::to_vec(&status).unwrap()).await;
        assert_eq!(response["allowed"], true);
        assert!(response["warnings"].is_null() && response["auditAnnotations"].is_null(), "{response}");

        // The HPA controller scaling within the limit: silent. (Above it, it is held like anyone.)
        let mut hpa_controller = fixture_json_in(set, "scale-9-to-0-no-replicas-field.json");
        hpa_controller["request"]["userInfo"] =
            json!({"username": "system:serviceaccount:kube-system:horizontal-pod-autoscaler"});
        hpa_controller["request"]["oldObject"]["spec"]["replicas"] = json!(2);
        hpa_controller["request"]["object"]["spec"]["replicas"] = json!(1);
        let response = server.review(serde_json::to_vec(&hpa_controller).unwrap()).await;
        assert_eq!(response["allowed"], true);
        assert!(response["warnings"].is_null(), "{response}");
        server.shutdown().await;
    }
}
