//! The backstop policy (the chart's `backstop/policy.yaml`, evaluated here with kube-cel's CEL
//! and the Kubernetes extension functions) and the webhook's decision give the same answer,
//! allowed or denied, on the same requests: every captured fixture and a generated set, over
//! registries with deployment entries, namespace defaults and modes, exemptions and overrides.
//! The webhook also denies unregistered workloads (`unregistered: deny`) and on a registry it
//! cannot read (`registryFailure: closed`); those stay its own, so the policies here leave them
//! out.

mod common;

use common::Lcg;

use kube_cel::KubeCelExt;
use kube_cel::cel::objects::{Key, Map};
use kube_cel::cel::{Context, Program, Value};
use replica_guard::backstop::parameters::parameters;
use replica_guard::decision::policy::Policy;
use replica_guard::json_lines::JsonLines;
use replica_guard::limits::file;
use replica_guard::limits::store::SnapshotStore;
use replica_guard::metrics::{Metrics, SourceKind};
use replica_guard::webhook::Webhook;
use serde_json::{Value as Json, json};
use std::collections::HashMap;
use std::sync::Arc;

/// The policy's variables and its one validation, compiled.
struct Backstop {
    variables: Vec<(String, Program)>,
    validation: Program,
    message: Program,
    /// `matchConstraints.resourceRules`: (group, resource) pairs.
    resources: Vec<(String, String)>,
}

impl Backstop {
    fn load() -> Self {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/replica-guard/backstop/policy.yaml");
        let spec: Json = serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let compile = |e: &Json| Program::compile(e.as_str().unwrap()).unwrap_or_else(|err| panic!("{e}: {err}"));
        let variables = spec["variables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v["name"].as_str().unwrap().to_string(), compile(&v["expression"])))
            .collect();
        let validations = spec["validations"].as_array().unwrap();
        assert_eq!(validations.len(), 1, "one validation, whose message the e2e suite reads");
        let mut resources = vec![];
        for rule in spec["matchConstraints"]["resourceRules"].as_array().unwrap() {
            assert_eq!(rule["operations"], json!(["CREATE", "UPDATE"]));
            for group in rule["apiGroups"].as_array().unwrap() {
                for resource in rule["resources"].as_array().unwrap() {
                    resources.push((group.as_str().unwrap().to_string(), resource.as_str().unwrap().to_string()));
                }
            }
        }
        Self {
            variables,
            validation: compile(&validations[0]["expression"]),
            message: compile(&validations[0]["messageExpression"]),
            resources,
        }
    }

    /// What the API server answers for `review`'s request with `params` (None: the namespace has
    /// no parameters object, and the binding's `parameterNotFoundAction: Allow` applies): `Ok` or
    /// the denial's message. An evaluation error panics: with the policy's `failurePolicy:
    /// Ignore` it would let the request through, so no input may cause one.
    fn answer(&self, review: &Json, params: Option<&Json>) -> Result<(), String> {
        let request = &review["request"];
        let resource = format!(
            "{}{}",
            request["resource"]["resource"].as_str().unwrap(),
            request["subResource"].as_str().map(|s| format!("/{s}")).unwrap_or_default()
        );
        let matched = self.resources.iter().any(|(g, r)| request["resource"]["group"] == g.as_str() && *r == resource)
            && matches!(request["operation"].as_str(), Some("CREATE" | "UPDATE"));
        let Some(params) = params.filter(|_| matched) else { return Ok(()) };
        let mut ctx = Context::default().with_all();
        let mut fields = request.as_object().unwrap().clone();
        fields.remove("object");
        fields.remove("oldObject");
        // As the API server builds `request`: fields that are empty (`subResource` outside a
        // subresource, `name` of a generateName CREATE) are absent, and reading one is an error.
        fields.retain(|_, v| !v.is_null() && v != "");
        ctx.add_variable_from_value("request", cel(&Json::Object(fields)));
        ctx.add_variable_from_value("object", cel(&request["object"]));
        ctx.add_variable_from_value("oldObject", cel(&request["oldObject"]));
        ctx.add_variable_from_value("params", cel(params));
        let mut variables: HashMap<Key, Value> = HashMap::new();
        for (name, program) in &self.variables {
            ctx.add_variable_from_value("variables", Value::Map(Map { map: Arc::new(variables.clone()) }));
            let value =
                program.execute(&ctx).unwrap_or_else(|e| panic!("variables.{name}: {e}\n{review:#}\n{params:#}"));
            variables.insert(Key::String(Arc::new(name.clone())), value);
        }
        ctx.add_variable_from_value("variables", Value::Map(Map { map: Arc::new(variables) }));
        match self.validation.execute(&ctx) {
            Ok(Value::Bool(true)) => Ok(()),
            Ok(Value::Bool(false)) => match self.message.execute(&ctx) {
                Ok(Value::String(s)) => Err(s.to_string()),
                other => panic!("messageExpression: {other:?}"),
            },
            other => panic!("validation: {other:?}\n{review:#}"),
        }
    }
}

/// JSON to CEL as the API server sees an object: integers are `int`.
fn cel(value: &Json) -> Value {
    match value {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => n.as_i64().map(Value::Int).unwrap_or_else(|| Value::Float(n.as_f64().unwrap())),
        Json::String(s) => Value::String(Arc::new(s.clone())),
        Json::Array(items) => Value::List(Arc::new(items.iter().map(cel).collect())),
        Json::Object(fields) => Value::Map(Map {
            map: Arc::new(fields.iter().map(|(k, v)| (Key::String(Arc::new(k.clone())), cel(v))).collect()),
        }),
    }
}

/// One registry and policy, both sides built from them.
struct Setup {
    webhook: Webhook,
    params: HashMap<String, Json>,
}

fn setup(registry: &str, policy: &str) -> Setup {
    let policy: Policy = serde_yaml_ng::from_str(policy).unwrap();
    let table = file::parse(registry, 1000).unwrap();
    let params = parameters(&table, &policy)
        .into_iter()
        .map(|(ns, spec)| (ns, json!({"spec": serde_json::to_value(spec).unwrap()})))
        .collect();
    let metrics = Arc::new(Metrics::new());
    let store = Arc::new(SnapshotStore::new(SourceKind::File, &metrics));
    store.replace(Arc::new(table), replica_guard::limits::store::Revision::now("test"));
    let webhook = Webhook::new(policy, store, metrics, JsonLines::to(Box::new(std::io::sink())));
    Setup { webhook, params }
}

/// The webhook's and the backstop's answers; `None` when they agree.
async fn disagreement(backstop: &Backstop, setup: &Setup, review: &Json) -> Option<String> {
    let answer = setup.webhook.review(&serde_json::to_vec(review).unwrap()).await.unwrap();
    let response: Json = serde_json::from_slice(&answer.into_json()).unwrap();
    let webhook_allows = response["response"]["allowed"] == true;
    let namespace = review["request"]["namespace"].as_str().unwrap_or_default();
    let policy = backstop.answer(review, setup.params.get(namespace));
    // Where both deny, the backstop's headline and advice are the webhook's.
    if let (Err(message), false) = (&policy, webhook_allows) {
        let webhook_message = response["response"]["status"]["message"].as_str().unwrap();
        let headline = webhook_message.split(" and rerun the onboarding pipeline").next().unwrap();
        assert!(message.starts_with(headline), "backstop: {message}\nwebhook: {webhook_message}");
    }
    (webhook_allows != policy.is_ok()).then(|| {
        format!(
            "webhook {} ({}), backstop {:?}\n{}",
            if webhook_allows { "allows" } else { "denies" },
            response["response"]["status"]["message"],
            policy,
            serde_json::to_string(&review["request"]).unwrap()
        )
    })
}

const REGISTRIES: [&str; 4] = [
    // A deployment entry per fixture workload, below and above what the fixtures ask for.
    "entries:\n  - {namespace: team-a, deployment: payments-api, maxReplicas: 4}\n  - {namespace: team-a, deployment: checkout, maxReplicas: 4, mode: warn}\n",
    // A namespace default only.
    "entries:\n  - {namespace: team-a, maxReplicas: 5}\n",
    // A deployment entry in warn mode shadows an enforced namespace default.
    "entries:\n  - {namespace: team-a, maxReplicas: 2}\n  - {namespace: team-a, deployment: payments-api, maxReplicas: 3, mode: warn}\n",
    // Enforce by entry in a namespace whose mode is warn.
    "entries:\n  - {namespace: team-a, deployment: payments-api, maxReplicas: 6, mode: enforce}\n  - {namespace: team-a, maxReplicas: 1}\n",
];

const POLICIES: [&str; 4] = [
    "mode: enforce\nunregistered: allow",
    "mode: enforce\nunregistered: warn\nnamespaces: {team-a: {mode: warn}}",
    "mode: enforce\nunregistered: allow\nexemptions: {users: [ci-bot], groups: [platform-admins]}",
    "mode: enforce\nunregistered: allow\noverride: {annotation: replica-guard.io/override, groups: [platform-admins, sre]}",
];

fn fixtures() -> Vec<(String, Json)> {
    let mut out = vec![];
    for set in common::FIXTURE_SETS {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(set);
        let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        for name in names {
            let name = name.to_string_lossy().to_string();
            if name.ends_with(".json") {
                out.push((format!("{set}/{name}"), common::fixture_json_in(set, &name)));
            }
        }
    }
    out
}

#[tokio::test]
async fn every_fixture_gets_the_same_answer_from_the_backstop_and_the_webhook() {
    let backstop = Backstop::load();
    let fixtures = fixtures();
    assert!(fixtures.len() >= 30, "{}", fixtures.len());
    let (mut compared, mut denied, mut failures) = (0, 0, vec![]);
    for registry in REGISTRIES {
        for policy in POLICIES {
            let setup = setup(registry, policy);
            for (name, review) in &fixtures {
                compared += 1;
                denied += usize::from(backstop.answer(review, setup.params.get("team-a")).is_err());
                if let Some(d) = disagreement(&backstop, &setup, review).await {
                    failures.push(format!("{name} with {registry:?} {policy:?}: {d}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {compared} disagree:\n{}", failures.len(), failures.join("\n"));
    assert!(denied > 20, "the fixtures must exercise denials too: {denied} of {compared}");
}

/// A request on one of the three paths, built from a captured body of that path.
fn generated(rng: &mut Lcg, bases: &[Json; 4]) -> Json {
    let mut review = rng.pick(bases).clone();
    let request = review["request"].as_object_mut().unwrap();
    let is_hpa = request["resource"]["resource"] == "horizontalpodautoscalers";
    let is_scale = request.get("subResource").is_some_and(|s| s == "scale");
    let count = |rng: &mut Lcg| json!(rng.next(9) as i64);
    let field = if is_hpa { "maxReplicas" } else { "replicas" };
    let deployment = rng.pick(&["payments-api", "checkout", "search"]).to_string();
    let update = rng.next(2) == 0;
    request.insert("operation".into(), json!(if update { "UPDATE" } else { "CREATE" }));
    if is_hpa {
        request["object"]["spec"]["scaleTargetRef"]["name"] = json!(deployment);
        request["object"]["spec"]["scaleTargetRef"]["kind"] =
            json!(*rng.pick(&["Deployment", "Deployment", "StatefulSet"]));
        request["object"]["spec"]["minReplicas"] = json!(1);
    } else {
        request.insert("name".into(), json!(deployment));
        request["object"]["metadata"]["name"] = json!(deployment);
    }
    let new = count(rng);
    if is_scale && new == 0 {
        request["object"]["spec"].as_object_mut().unwrap().remove("replicas");
    } else {
        request["object"]["spec"][field] = if is_hpa && new == 0 { json!(1) } else { new };
    }
    if update {
        let mut old = request["object"].clone();
        let before = count(rng);
        if is_scale && before == 0 {
            old["spec"].as_object_mut().unwrap().remove("replicas");
        } else {
            old["spec"][field] = if is_hpa && before == 0 { json!(1) } else { before };
        }
        if rng.next(3) == 0 && !is_scale {
            old["spec"]["template"] = json!({"metadata": {"labels": {"v": "old"}}});
        }
        request.insert("oldObject".into(), old);
    } else {
        request.insert("oldObject".into(), Json::Null);
    }
    if !is_scale && rng.next(3) == 0 {
        let reason = *rng.pick(&["incident 4711", "  ", ""]);
        request["object"]["metadata"]["annotations"] = json!({"replica-guard.io/override": reason});
    }
    let user = *rng.pick(&["alice", "ci-bot", "admin"]);
    const GROUPS: [&[&str]; 4] = [&["team-a-devs", "system:authenticated"], &["platform-admins"], &["sre", "x"], &[]];
    let groups = *rng.pick(&GROUPS);
    request.insert("userInfo".into(), json!({"username": user, "groups": groups}));
    review
}

#[tokio::test]
async fn thousands_of_generated_requests_get_the_same_answer_from_the_backstop_and_the_webhook() {
    let backstop = Backstop::load();
    let bases = [
        common::fixture_json("deployment-redeploy-replicas-3-to-6-and-image.json"),
        common::fixture_json("deployment-create-replicas-3.json"),
        common::fixture_json("scale-6-to-9.json"),
        common::fixture_json("hpa-patch-max-12-to-4.json"),
    ];
    let mut rng = Lcg(20261202);
    let (mut compared, mut denied, mut failures) = (0, 0, vec![]);
    for registry in REGISTRIES {
        for policy in POLICIES {
            let setup = setup(registry, policy);
            for _ in 0..400 {
                let review = generated(&mut rng, &bases);
                compared += 1;
                denied += usize::from(backstop.answer(&review, setup.params.get("team-a")).is_err());
                if let Some(d) = disagreement(&backstop, &setup, &review).await {
                    failures.push(format!("{registry:?} {policy:?}: {d}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {compared} disagree:\n{}",
        failures.len(),
        failures.iter().take(5).cloned().collect::<Vec<_>>().join("\n")
    );
    assert!(denied * 10 > compared, "denials must be common: {denied} of {compared}");
}
