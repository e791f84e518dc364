//! JSON lines on stdout: the decision records of admission and the usage records of the
//! continuous audit, one record a line, each written whole.

use serde::Serialize;
use std::io::Write;
use std::sync::Mutex;

/// Where JSON-line records go (decision records, usage records): stdout in production, where the
/// log sink picks them up, a buffer in tests.
pub struct JsonLines {
    out: Mutex<Box<dyn Write + Send>>,
}

impl JsonLines {
    pub fn stdout() -> Self {
        Self::to(Box::new(std::io::stdout()))
    }

    pub fn to(out: Box<dyn Write + Send>) -> Self {
        Self { out: Mutex::new(out) }
    }

    /// Writes one record as one line, in one write, so lines never interleave with other logs.
    pub fn write(&self, record: &impl Serialize) {
        let Ok(mut line) = serde_json::to_vec(record) else { return };
        line.push(b'\n');
        let mut out = self.out.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(e) = out.write_all(&line).and_then(|()| out.flush()) {
            tracing::error!(error = %e, "could not write a record");
        }
    }
}
