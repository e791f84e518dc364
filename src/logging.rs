//! The process's logs: `tracing` to stdout, as JSON lines or text (`logging.format`).
//!
//! Every admission request opens a span (uid, namespace, name, operation), so the JSON format's
//! cost of a span is paid on every request. tracing-subscriber's own `JsonFields` formats a new
//! span's fields by building a map of `serde_json::Value`s and serialising it; `SpanFields` writes
//! the same JSON object straight into the span's buffer. The event formatter reads it back as it
//! does `JsonFields`' output (a JSON object, the span's fields).

use crate::config::{Config, LogFormat};
use std::fmt;
use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FormatFields, FormattedFields};

/// Starts logging as configured; `RUST_LOG`, when set, overrides `logging.level`.
pub fn init(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.logging.level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stdout).with_ansi(ansi);
    match config.logging.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .fmt_fields(SpanFields)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

/// Span fields as one JSON object, written directly (see the module's doc).
#[derive(Debug, Default, Clone, Copy)]
pub struct SpanFields;

impl<'writer> FormatFields<'writer> for SpanFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut object = JsonObject { out: Vec::with_capacity(128), result: Ok(()) };
        fields.record(&mut object);
        writer.write_char('{')?;
        writer.write_str(object.text()?)?;
        writer.write_char('}')
    }

    /// A field recorded after the span was created: the object gets one more member (a member
    /// recorded twice appears twice, and a JSON reader keeps the last, the value recorded last).
    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut object = JsonObject { out: Vec::new(), result: Ok(()) };
        fields.record(&mut object);
        let members = object.text()?;
        if members.is_empty() {
            return Ok(());
        }
        match current.fields.pop() {
            Some('}') if current.fields.len() > 1 => current.fields.push(','),
            Some('}') => {}
            _ => current.fields.push('{'),
        }
        current.fields.push_str(members);
        current.fields.push('}');
        Ok(())
    }
}

/// The members of a JSON object, comma-separated, without the braces, written by serde_json
/// straight into one buffer (no string per name or value).
struct JsonObject {
    out: Vec<u8>,
    result: fmt::Result,
}

impl JsonObject {
    fn member(&mut self, field: &Field, value: impl serde::Serialize) {
        if !self.out.is_empty() {
            self.out.push(b',');
        }
        // Writing JSON into a Vec fails only for values that cannot be JSON (none here: names
        // are strings, values strings, numbers and booleans).
        let written = serde_json::to_writer(&mut self.out, field.name()).and_then(|()| {
            self.out.push(b':');
            serde_json::to_writer(&mut self.out, &value)
        });
        if written.is_err() {
            self.result = Err(fmt::Error);
        }
    }

    /// The members written; serde_json writes only UTF-8.
    fn text(&self) -> Result<&str, fmt::Error> {
        self.result?;
        std::str::from_utf8(&self.out).map_err(|_| fmt::Error)
    }
}

impl Visit for JsonObject {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, value);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, value);
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.member(field, value);
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// The log lines a closure writes through the JSON format with `SpanFields`, parsed.
    fn json_lines(f: impl FnOnce()) -> Vec<serde_json::Value> {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().write(bytes)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::DEBUG)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .fmt_fields(SpanFields)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text.lines().map(|line| serde_json::from_str(line).expect(line)).collect()
    }

    #[test]
    fn a_warning_inside_a_request_carries_the_requests_fields() {
        let lines = json_lines(|| {
            let span = tracing::info_span!(
                "admission",
                uid = "7f3c",
                namespace = "team-a",
                object_name = "payments \"api\"\n",
                operation = "UPDATE",
                replicas = 6u64,
                dry_run = false,
                decision = tracing::field::Empty,
            );
            let _entered = span.enter();
            tracing::warn!(error = "registry unreachable", "limit lookup failed");
        });
        assert_eq!(lines.len(), 1);
        let span = &lines[0]["span"];
        assert_eq!(span["uid"], "7f3c");
        assert_eq!(span["namespace"], "team-a");
        assert_eq!(span["object_name"], "payments \"api\"\n");
        assert_eq!(span["name"], "admission");
        assert_eq!(span["operation"], "UPDATE");
        assert_eq!(span["replicas"], 6);
        assert_eq!(span["dry_run"], false);
        assert!(span.get("decision").is_none(), "an empty field is not written");
        assert_eq!(lines[0]["error"], "registry unreachable");
    }

    #[test]
    fn fields_recorded_later_join_the_object() {
        let lines = json_lines(|| {
            let span = tracing::info_span!(
                "admission",
                uid = "1",
                decision = tracing::field::Empty,
                note = tracing::field::Empty
            );
            span.record("decision", "denied");
            span.record("note", tracing::field::debug(vec!["a", "b"]));
            let _entered = span.enter();
            tracing::info!("decided");
            let empty = tracing::info_span!("empty", decision = tracing::field::Empty);
            empty.record("decision", "allowed");
            let _inner = empty.enter();
            tracing::info!("inner");
        });
        assert_eq!(lines[0]["span"]["uid"], "1");
        assert_eq!(lines[0]["span"]["decision"], "denied");
        assert_eq!(lines[0]["span"]["note"], r#"["a", "b"]"#);
        assert_eq!(lines[1]["span"]["name"], "empty");
        assert_eq!(lines[1]["span"]["decision"], "allowed");
    }

    #[test]
    fn strings_are_escaped_and_numbers_stay_numbers() {
        let lines = json_lines(|| {
            tracing::info_span!("s", a = "x\ty\"}", b = -3i64, c = 1.5f64).in_scope(|| tracing::info!("in"));
            tracing::info_span!("bare").in_scope(|| tracing::info!("no fields"));
        });
        assert_eq!(lines[0]["span"]["a"], "x\ty\"}");
        assert_eq!(lines[0]["span"]["b"], -3);
        assert_eq!(lines[0]["span"]["c"], 1.5);
        assert_eq!(lines[1]["span"], serde_json::json!({"name": "bare"}));
    }
}
