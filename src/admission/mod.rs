//! The AdmissionReview boundary: `decode` reads a body, `subject` finds what it asks for,
//! `respond` writes the answer, `record` the decision record. Everything here is pure; `crate::webhook` runs it with I/O.

pub mod decode;
pub mod record;
pub mod respond;
pub mod subject;

pub use decode::{ReviewError, decode};
