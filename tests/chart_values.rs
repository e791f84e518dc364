//! The chart and the binary agree on what a valid value is: whatever `helm template` renders, the
//! pods' config check (`Config::parse`, and the registry file's own parser) accepts; whatever the
//! binary would refuse, `helm install` refuses first, naming the key, so a typo never becomes pods
//! that refuse their config while `failurePolicy: Fail` blocks every Deployment change.
//!
//! Needs Helm: `.ci/run` runs `HELM=... cargo test --test chart --test chart_values -- --ignored`.

#[path = "chart/helm.rs"]
mod helm;

use helm::template_with;
use serde_json::Value;

/// The `--set` base that selects each registry source with its required keys.
fn source_base(path: &str) -> &'static str {
    match path.split('.').nth(1) {
        Some("configMap") => "registry.source=configMap",
        Some("http") | Some("cache") => "registry.source=http,registry.http.url=https://ped.example/{namespace}/{name}",
        Some("firestore") => "registry.source=firestore,registry.firestore.project=p,registry.firestore.collection=ped",
        Some("bigquery") => "registry.source=bigquery,registry.bigquery.project=p,registry.bigquery.query=SELECT 1",
        _ => "",
    }
}

/// The optional keys of the registry sources that values.yaml leaves out (documented in the
/// README's config reference), with a valid value each.
const OPTIONAL: &[(&str, &str)] = &[
    ("registry.maxEntries", "1000"),
    ("registry.http.namespaceDefaultUrl", "https://ped.example/{namespace}/_default"),
    ("registry.http.format", "firestore"),
    ("registry.http.connectTimeoutSeconds", "0.5"),
    ("registry.http.timeoutSeconds", "1"),
    ("registry.http.caFile", "/etc/ca/ca.pem"),
    ("registry.http.fields.maxReplicas", "/max"),
    ("registry.http.auth.bearerTokenFile", "/var/run/token"),
    ("registry.cache.ttlSeconds", "30"),
    ("registry.cache.negativeTtlSeconds", "10"),
    ("registry.cache.errorTtlSeconds", "5"),
    ("registry.cache.capacity", "1000"),
    ("registry.firestore.database", "ped"),
    ("registry.firestore.url", "https://firestore.example/v1"),
    ("registry.firestore.namespaceDefault", "_all"),
    ("registry.firestore.pageSize", "100"),
    ("registry.firestore.refreshSeconds", "30"),
    ("registry.firestore.timeoutSeconds", "20"),
    ("registry.firestore.maxShrinkFraction", "0.25"),
    ("registry.firestore.caFile", "/etc/ca/ca.pem"),
    ("registry.firestore.fields.owner", "team"),
    ("registry.firestore.auth.bearerTokenFile", "/var/run/token"),
    ("registry.bigquery.location", "EU"),
    ("registry.bigquery.url", "https://bigquery.example/bigquery/v2"),
    ("registry.bigquery.pageSize", "5000"),
    ("registry.bigquery.namespaceDefault", "_all"),
    ("registry.bigquery.refreshSeconds", "120"),
    ("registry.bigquery.timeoutSeconds", "30"),
    ("registry.bigquery.maxShrinkFraction", "0.5"),
    ("registry.bigquery.caFile", "/etc/ca/ca.pem"),
    ("registry.bigquery.auth.bearerTokenFile", "/var/run/token"),
];

/// Every scalar of values.yaml, by `--set` path.
fn leaves(value: &Value, path: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let child = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                leaves(v, &child, out);
            }
        }
        Value::Array(_) => {}
        _ => out.push(path.to_string()),
    }
}

/// What the pods would make of a render: Ok, or the key and problem their config check names.
fn binary_accepts(objects: &[Value]) -> Result<(), String> {
    let data = |key: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == "ConfigMap" && o["data"][key].is_string())
            .map(|o| o["data"][key].as_str().unwrap())
    };
    let text = data("config.yaml").ok_or("no config.yaml rendered")?;
    let config = replica_guard::config::Config::parse(text).map_err(|(k, p)| format!("{k}: {p}"))?;
    if let Some(limits) = data("limits.yaml") {
        replica_guard::limits::file::parse(limits, config.registry.max_entries).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn render_set(set: &str) -> Result<Vec<Value>, String> {
    template_with("", &["--set", set])
}

#[test]
#[ignore = "needs helm; .ci/run runs it"]
fn whatever_helm_renders_the_binary_accepts() {
    let values: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/charts/replica-guard/values.yaml")).unwrap(),
    )
    .unwrap();
    let mut paths = vec![];
    leaves(&values, "", &mut paths);
    paths.extend(OPTIONAL.iter().map(|(p, _)| p.to_string()));
    // Values a user mistypes: empty, negative, tiny, huge, not a number, and a misspelt key.
    let mut cases: Vec<String> = vec![];
    for path in &paths {
        let base = source_base(path);
        let join = |set: String| if base.is_empty() { set } else { format!("{base},{set}") };
        for bad in ["", "-1", "0.005", "1000000000", "abc"] {
            cases.push(join(format!("{path}={bad}")));
        }
        cases.push(join(format!("{path}x=1")));
    }
    // The valid optional values render and are accepted.
    for (path, good) in OPTIONAL {
        let set = format!("{},{path}={good}", source_base(path));
        let objects = render_set(set.trim_start_matches(',')).unwrap_or_else(|e| panic!("{path}={good}: {e}"));
        binary_accepts(&objects).unwrap_or_else(|e| panic!("{path}={good}: the binary refuses: {e}"));
    }
    let cases = std::sync::Mutex::new(cases.into_iter());
    let disagreements = std::sync::Mutex::new(vec![]);
    let rendered = std::sync::atomic::AtomicUsize::new(0);
    let total = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    let Some(set) = cases.lock().unwrap().next() else { break };
                    total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Ok(objects) = render_set(&set) else { continue };
                    rendered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if let Err(e) = binary_accepts(&objects) {
                        disagreements
                            .lock()
                            .unwrap()
                            .push(format!("--set {set}: helm renders it, the binary refuses: {e}"));
                    }
                }
            });
        }
    });
    let disagreements = disagreements.into_inner().unwrap();
    eprintln!(
        "{} mistyped values: {} refused by the chart, {} rendered and accepted by the binary",
        total.load(std::sync::atomic::Ordering::Relaxed),
        total.load(std::sync::atomic::Ordering::Relaxed) - rendered.load(std::sync::atomic::Ordering::Relaxed),
        rendered.load(std::sync::atomic::Ordering::Relaxed) - disagreements.len()
    );
    assert!(disagreements.is_empty(), "{} disagreements:\n{}", disagreements.len(), disagreements.join("\n"));
}

#[test]
#[ignore = "needs helm; .ci/run runs it"]
fn the_mistakes_users_made_are_refused_naming_the_key() {
    for (set, key) in [
        (
            "registry.source=firestore,registry.firestore.project=p,registry.firestore.colection=c",
            "additional properties 'colection' not allowed",
        ),
        (
            "registry.source=bigquery,registry.bigquery.project=p,registry.bigquery.query=q,registry.bigquery.refreshSecond=5",
            "additional properties 'refreshSecond' not allowed",
        ),
        (
            "registry.source=firestore,registry.firestore.project=p,registry.firestore.collection=c,registry.firestore.pageSize=1000",
            "/registry/firestore/pageSize",
        ),
        (
            "registry.source=firestore,registry.firestore.project=p,registry.firestore.collection=c,registry.firestore.maxShrinkFraction=1.5",
            "/registry/firestore/maxShrinkFraction",
        ),
        ("registry.source=configMap,registry.configMap.name=", "/registry/configMap/name"),
        ("server.requestTimeoutSeconds=45.5", "server.requestTimeoutSeconds: must be between 0.1 and 30, got 45.5"),
        (
            "registry.file.limits.entries[0].namespace=Team_A,registry.file.limits.entries[0].maxReplicas=3",
            "/registry/file/limits/entries/0/namespace",
        ),
        (
            "registry.file.limits.entries[0].namespace=a,registry.file.limits.entries[0].maxReplicas=3,registry.file.limits.entries[0].minReplicas=5",
            "registry.file.limits.entries[0] (a/(namespace default)): minReplicas 5 is above maxReplicas 3",
        ),
        ("registry.source=http,registry.http.url=https://ped.example/limits", "/registry/http/url"),
        ("logging.level=verbose", "/logging/level"),
    ] {
        let error = render_set(set).map(|_| ()).unwrap_err();
        assert!(error.contains(key), "--set {set}\n{error}");
    }
}

#[test]
#[ignore = "needs helm; .ci/run runs it"]
fn the_ca_bundle_may_be_pem_or_base64() {
    let dir = tempfile::tempdir().unwrap();
    let certs = replica_guard::certs::generate(&["rg".to_string()]).unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, &certs.ca_pem).unwrap();
    let bundle = |objects: Vec<Value>| {
        let hook = objects.into_iter().find(|o| o["kind"] == "ValidatingWebhookConfiguration").unwrap();
        hook["webhooks"][0]["clientConfig"]["caBundle"].as_str().unwrap().to_string()
    };
    let base = ["--set", "tls.mode=secret,tls.secret.name=rg-tls"];
    let from_file =
        template_with("", &[&base[..], &["--set-file", &format!("tls.secret.caBundle={}", ca.display())]].concat())
            .unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let encoded = b64.encode(&certs.ca_pem);
    let from_base64 =
        template_with("", &[&base[..], &["--set", &format!("tls.secret.caBundle={encoded}")]].concat()).unwrap();
    let (pem, given) = (bundle(from_file), bundle(from_base64));
    assert_eq!(String::from_utf8(b64.decode(&pem).unwrap()).unwrap().trim(), certs.ca_pem.trim(), "PEM is encoded");
    assert_eq!(given, encoded, "base64 is kept");
    let error = template_with("", &[&base[..], &["--set", "tls.secret.caBundle=not-a-cert!"]].concat()).unwrap_err();
    assert!(error.contains("tls.secret.caBundle: neither a PEM certificate"), "{error}");
}
