//! The config file's defaults, its errors, and path resolution.

use super::*;
use crate::decision::policy::Mode;

const MINIMAL: &str = "registry:\n  file:\n    path: limits.yaml\n";

#[test]
fn minimal_config_gets_production_defaults() {
    let c = Config::parse(MINIMAL).unwrap();
    assert_eq!(c.server.address.port(), 8443);
    assert_eq!(c.server.admin_address.port(), 8080);
    assert_eq!(c.policy.mode, Mode::Enforce);
    assert!(!c.server.tls.generate_dev_certificate, "dev certificates must be opt-in");
}

#[test]
fn errors_name_the_key() {
    let cases = [
        ("registry: {file: {path: x}}\nserver: {adress: 1}", "server.adress", "unknown field `adress`"),
        ("registry: {file: {path: x}}\nserver: {address: nowhere}", "server.address", "invalid socket address"),
        ("registry: {file: {path: x}}\npolicy: {mode: block}", "policy.mode", "unknown variant `block`"),
        ("registry: {file: {path: x}}\nserver: {maxBodyBytes: 10}", "server.maxBodyBytes", "between 1024"),
        ("registry: {file: {path: x}}\nserver: {requestTimeoutSeconds: 60}", "server.requestTimeoutSeconds", "between"),
        (
            "registry: {file: {path: x}}\npolicy: {platformBounds: {minReplicas: 9, maxReplicas: 8}}",
            "policy.platformBounds",
            "minReplicas (9)",
        ),
        (
            "registry: {file: {path: x}}\npolicy: {override: {annotation: 'a b'}}",
            "policy.override.annotation",
            "not a valid annotation key",
        ),
        ("registry: {htp: {}}", "registry.htp", "unknown field `htp`"),
        ("registry: {file: {path: x}}\ncluster: {name: Prod_EU}", "cluster.name", "is not a cluster name"),
        ("registry: {file: {path: x}}\ncluster: {name: prod-}", "cluster.name", "starting and ending"),
        ("registry: {file: {path: x}}\ncluster: {nmae: prod}", "cluster.nmae", "unknown field `nmae`"),
        ("registry: {}", "registry", "choose exactly one source"),
        ("registry: {file: {path: x}, configMap: {namespace: a, name: b}}", "registry", "choose exactly one source"),
        ("registry: {http: {url: 'https://ped/x'}}", "registry.http.url", "must contain {namespace} and {name}"),
        ("registry: {http: {url: 'ftp://ped/{namespace}/{name}'}}", "registry.http.url", "must start with http"),
        (
            "registry: {http: {url: 'https://p/{namespace}/{name}', timeoutSeconds: 30}}",
            "registry.http.timeoutSeconds",
            "between",
        ),
        (
            "registry: {http: {url: 'https://p/{namespace}/{name}', format: xml}}",
            "registry.http.format",
            "unknown variant `xml`",
        ),
        (
            "registry: {http: {url: 'https://p/{namespace}/{name}', fields: {maxReplicas: max}}}",
            "registry.http.fields.maxReplicas",
            "not a JSON pointer",
        ),
        (
            "registry: {http: {url: 'https://p/{namespace}/{name}', auth: {bearerTokenFile: t, gceMetadata: {}}}}",
            "registry.http.auth",
            "not both",
        ),
        ("registry: {firestore: {project: p}}", "registry.firestore", "missing field `collection`"),
        (
            "registry: {firestore: {project: p, collection: ped, pageSize: 1000}}",
            "registry.firestore.pageSize",
            "between 1 and 300",
        ),
        (
            "registry: {firestore: {project: p, collection: ped, maxShrinkFraction: 50}}",
            "registry.firestore.maxShrinkFraction",
            "a fraction of the entries",
        ),
        (
            "registry: {firestore: {project: p, collection: ped, refreshSeconds: 0}}",
            "registry.firestore.refreshSeconds",
            "between",
        ),
        ("registry: {bigquery: {project: p}}", "registry.bigquery", "missing field `query`"),
        ("registry: {bigquery: {project: p, query: ' '}}", "registry.bigquery.query", "must not be empty"),
        (
            "registry: {bigquery: {project: p, query: 'SELECT 1', maxShrinkFraction: -1}}",
            "registry.bigquery.maxShrinkFraction",
            "a fraction of the entries",
        ),
        ("server: {}", "(top level)", "missing field `registry`"),
        (
            "registry: {file: {path: l.yaml}}\nlogging: {level: debugg}",
            "logging.level",
            "\"debugg\" in \"debugg\" is not a log level; use one of trace, debug, info, warn, error, off",
        ),
        (
            "registry: {file: {path: l.yaml}}\nlogging: {level: 'replica_guard=verbose,info'}",
            "logging.level",
            "\"verbose\"",
        ),
        (
            "registry: {file: {path: l.yaml}}\nserver: {maxBodyBytes: lots}",
            "server.maxBodyBytes",
            "expected a whole number of bytes, 0 or more",
        ),
        (
            "registry: {file: {path: l.yaml}}\nserver: {shutdownDelaySeconds: soon}",
            "server.shutdownDelaySeconds",
            "expected a number of seconds",
        ),
        (
            "registry: {file: {path: l.yaml}}\nserver: {maxConnections: 0}",
            "server.maxConnections",
            "between 1 and 65536",
        ),
        (
            "registry: {file: {path: l.yaml}}\nserver: {maxBufferedBytes: 2048}",
            "server.maxBufferedBytes",
            "at least server.maxBodyBytes",
        ),
        (
            "registry: {file: {path: l.yaml}}\nbackstop: {namespaceSelector: {matchExpressions: [{key: a, operator: Absent}]}}",
            "backstop.namespaceSelector",
            "Invalid expression operator: use matchLabels and matchExpressions with In, NotIn, Exists or DoesNotExist",
        ),
        (
            "registry: {file: {path: l.yaml}}\nbackstop: {namespaceSelector: {matchExpressions: [{key: a, operator: NotIn}]}}",
            "backstop.namespaceSelector",
            "a NotIn needs values",
        ),
    ];
    for (yaml, key, problem) in cases {
        let (k, p) = Config::parse(yaml).unwrap_err();
        assert_eq!(k, key, "{yaml}: {p}");
        assert!(p.contains(problem), "{yaml}: got {p:?}, want {problem:?}");
        for rust_type in ["usize", "f64", "i32", "u64"] {
            assert!(!p.contains(rust_type), "{yaml}: {p:?} names a Rust type");
        }
    }
}

#[test]
fn relative_paths_are_taken_from_the_config_folder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, format!("{MINIMAL}server: {{tls: {{certFile: certs/tls.crt, keyFile: /abs/tls.key}}}}"))
        .unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(c.server.tls.cert_file, dir.path().join("certs/tls.crt"));
    assert_eq!(c.server.tls.key_file, PathBuf::from("/abs/tls.key"));
    let Source::File(f) = c.registry.source() else { panic!("a file source") };
    assert_eq!(f.path, dir.path().join("limits.yaml"));
}

#[test]
fn relative_token_and_ca_files_of_every_remote_source_are_taken_from_the_config_folder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    for (section, expect) in [
        ("firestore: {project: p, collection: c, caFile: ca.pem, auth: {bearerTokenFile: token}}", "firestore"),
        ("bigquery: {project: p, query: 'SELECT 1', caFile: ca.pem, auth: {bearerTokenFile: token}}", "bigquery"),
        ("http: {url: 'https://r/{namespace}/{name}', caFile: ca.pem, auth: {bearerTokenFile: token}}", "http"),
    ] {
        std::fs::write(&path, format!("registry: {{{section}}}\n")).unwrap();
        let c = Config::load(&path).unwrap();
        let (auth, ca) = match c.registry.source() {
            Source::Firestore(f) => (f.auth.clone(), f.ca_file.clone()),
            Source::BigQuery(b) => (b.auth.clone(), b.ca_file.clone()),
            Source::Http(h) => (h.auth.clone(), h.ca_file.clone()),
            _ => panic!("{expect}"),
        };
        assert_eq!(auth.bearer_token_file, Some(dir.path().join("token")), "{expect}");
        assert_eq!(ca, Some(dir.path().join("ca.pem")), "{expect}");
    }
}

#[test]
fn a_config_that_is_not_a_mapping_is_said_in_words() {
    for (yaml, want) in [
        ("just a string", "expected a mapping of keys and values"),
        ("registry: {file: {path: l.yaml}}\npolicy: strict", "expected a mapping of keys and values"),
        ("registry: {http: {url: 'https://r/{namespace}/{name}', auth: {gceMetadata: yes}}}", "expected a mapping"),
        ("registry: {file: {path: l.yaml}, maxEntries: 0}", "between 1 and 10000000"),
    ] {
        let (key, problem) = Config::parse(yaml).unwrap_err();
        assert!(problem.contains(want), "{yaml}: {key}: {problem}");
        assert!(!problem.contains("struct"), "{yaml}: {problem}");
    }
}

#[test]
fn the_backstop_scope_is_a_label_selector_for_the_namespaces() {
    let c = Config::parse(
        "registry: {file: {path: l.yaml}}\nbackstop:\n  enabled: true\n  namespaceSelector:\n    matchExpressions:\n    - {key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system, replica-guard]}\n    - {key: replica-guard.io/ignore, operator: DoesNotExist}\n",
    )
    .unwrap();
    let scope = c.backstop.scope().unwrap().expect("a selector");
    assert_eq!(
        scope.to_string(),
        "kubernetes.io/metadata.name notin (kube-system,replica-guard),!replica-guard.io/ignore",
        "what the namespace watch asks the API server for"
    );
    use kube::core::SelectorExt;
    let labels = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert!(scope.matches(&labels(&[("kubernetes.io/metadata.name", "team-a")])));
    assert!(!scope.matches(&labels(&[("kubernetes.io/metadata.name", "replica-guard")])));
    assert!(!scope.matches(&labels(&[("kubernetes.io/metadata.name", "team-c"), ("replica-guard.io/ignore", "")])));
    assert!(Config::parse(MINIMAL).unwrap().backstop.scope().unwrap().is_none(), "no selector: every namespace");
}
