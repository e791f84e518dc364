//! The AdmissionReview boundary: `decode` reads a body, `subject` finds what it asks for,
//! `respond` writes the answer. Everything here is pure; `crate::webhook` runs it with I/O.

pub mod decode;
pub mod respond;
pub mod subject;

pub use decode::{ReviewError, decode};
