//! serde's messages in the words of the person who wrote the input: a config file, a registry
//! document, an AdmissionReview. serde names Rust types (`expected struct Config`, `expected
//! i32`); a user knows "a mapping of keys" and "a whole number". And serde_yaml puts the path in
//! front of its message, where the caller names it already.

/// `problem` (a serde error about the value at `key`) without Rust type names.
pub fn in_words(key: &str, problem: &str) -> String {
    let unit = if key.ends_with("Bytes") {
        "a whole number of bytes"
    } else if key.ends_with("Seconds") {
        "a number of seconds"
    } else {
        ""
    };
    let whole = if unit.is_empty() { "a whole number" } else { unit };
    let number = if unit.is_empty() { "a number" } else { unit };
    let mut text = problem.to_string();
    for (rust, words) in [
        ("expected usize", format!("expected {whole}, 0 or more")),
        ("expected u64", format!("expected {whole}, 0 or more")),
        ("expected u32", format!("expected {whole}, 0 or more")),
        ("expected u16", format!("expected {whole}, 0 or more")),
        ("expected u8", format!("expected {whole}, 0 or more")),
        ("expected i32", format!("expected {whole} of at most 2147483647")),
        ("expected i64", format!("expected {whole}")),
        ("expected f64", format!("expected {number}")),
        ("expected f32", format!("expected {number}")),
        ("expected a boolean", "expected true or false".to_string()),
        ("expected a borrowed string", "expected a string".to_string()),
    ] {
        text = text.replace(rust, &words);
    }
    // `expected struct Config`, `expected struct GceMetadataAuth`, `expected a map`: a mapping.
    while let Some(at) = text.find("expected struct ") {
        let end = text[at + 16..].find(|c: char| !c.is_alphanumeric() && c != '_').map_or(text.len(), |e| at + 16 + e);
        text.replace_range(at..end, "expected a mapping of keys and values");
    }
    for (serde, words) in [
        ("expected a map", "expected a mapping of keys and values"),
        ("expected a sequence", "expected a list"),
        ("expected unit", "expected nothing (null)"),
    ] {
        text = replace_word(&text, serde, words);
    }
    text
}

/// Replaces `what` where it is not the start of a longer word.
fn replace_word(text: &str, what: &str, with: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(what) {
        let after = &rest[at + what.len()..];
        out.push_str(&rest[..at]);
        if after.starts_with(|c: char| c.is_alphanumeric()) {
            out.push_str(what);
        } else {
            out.push_str(with);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// A serde_yaml message about `key` without the path it starts with (`entries[0].maxReplicas:
/// invalid type …` when the caller prints `entries[0].maxReplicas` already).
pub fn without_path(key: &str, problem: &str) -> String {
    match problem.split_once(": ") {
        Some((prefix, rest)) if !prefix.is_empty() && (key.starts_with(prefix) || prefix.starts_with(key)) => {
            rest.to_string()
        }
        _ => problem.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_type_names_become_words() {
        assert_eq!(
            in_words(".", "invalid type: string \"x\", expected struct Config"),
            "invalid type: string \"x\", expected a mapping of keys and values"
        );
        assert_eq!(
            in_words(
                "registry.http.auth.gceMetadata",
                "invalid type: string \"yes\", expected struct GceMetadataAuth at line 3"
            ),
            "invalid type: string \"yes\", expected a mapping of keys and values at line 3"
        );
        assert_eq!(
            in_words("x.maxReplicas", "invalid type: string \"four\", expected i64"),
            "invalid type: string \"four\", expected a whole number"
        );
        assert_eq!(in_words("server.maxBodyBytes", "expected usize"), "expected a whole number of bytes, 0 or more");
        assert_eq!(in_words("k", "invalid type: map, expected a sequence"), "invalid type: map, expected a list");
    }

    #[test]
    fn the_path_is_said_once() {
        assert_eq!(
            without_path("entries[0].maxReplicas", "entries[0].maxReplicas: invalid type: string \"four\""),
            "invalid type: string \"four\""
        );
        assert_eq!(without_path("server", "server: unknown field `x`"), "unknown field `x`");
        assert_eq!(without_path("a", "invalid type: map"), "invalid type: map");
    }
}

/// A Kubernetes client error as the person who runs the command reads it: kube's own text for an
/// unreachable API server is `ServiceError: client error (Connect)`, and the reason (connection
/// refused, an unknown certificate authority, no such host) is at the end of its source chain.
#[derive(Debug)]
pub struct KubeError(pub kube::Error);

impl std::fmt::Display for KubeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            kube::Error::Api(status) => {
                write!(f, "the API server answered {} {}: {}", status.code, status.reason, status.message)
            }
            e @ (kube::Error::Service(_) | kube::Error::HyperError(_)) => {
                let mut cause: &dyn std::error::Error = e;
                while let Some(next) = cause.source() {
                    cause = next;
                }
                write!(f, "cannot reach the Kubernetes API server: {cause}")
            }
            other => write!(f, "{other}"),
        }
    }
}

impl std::error::Error for KubeError {}

impl From<kube::Error> for KubeError {
    fn from(e: kube::Error) -> Self {
        Self(e)
    }
}
