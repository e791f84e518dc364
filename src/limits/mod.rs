//! Where limits come from: the PED registry, seen through a `LimitSource` (`source`), opened
//! from the config by `open`.
//!
//! `table` is the in-memory view every snapshot source (file, ConfigMap, Firestore) produces,
//! `file` parses and validates the registry YAML, `store` keeps the last good snapshot while
//! reloads come and go, `file_source` watches a file on disk and feeds the store, `sync` lists a
//! remote registry whole in the background (`firestore_source`, `bigquery_source`) with the
//! Firestore collection also followed by its `Listen` stream (`firestore_listen`) and a denial's
//! entry read again past the snapshot (`firestore_reader`), and `http_source` asks one document
//! per workload through `cache`.

pub mod bigquery_source;
pub mod cache;
pub mod configmap_source;
pub mod entry;
pub mod error;
pub mod file;
pub mod file_source;
pub mod firestore_document;
pub mod firestore_listen;
pub mod firestore_reader;
pub mod firestore_source;
pub mod http_source;
pub mod open;
pub mod source;
pub mod store;
pub mod sync;
pub mod table;
pub mod transport;

pub use error::RegistryError;
pub use open::{OpenError, Opened, open};
pub use source::{BoxFuture, LimitSource, Reread};

pub use crate::decision::limit::{Limit, Lookup, Scope};
