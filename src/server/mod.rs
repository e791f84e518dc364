//! The listeners: HTTPS for admission and plain HTTP for the admin routes, with their connection
//! bounds (`connections`), request bodies and their memory budget (`body`), routes (`routes`) and what a request gets instead of a decision (`refused`),
//! readiness (`health`) and the serving certificate (`tls`). Started and stopped by
//! `crate::run` (`run::lifecycle`, `run::shutdown`).

pub mod body;
pub mod callers;
pub mod connections;
pub mod health;
pub mod refused;
pub mod routes;
pub mod tls;
