//! The listeners: open connections and waits for a slot, requests refused before or while they
//! are read, and the serving certificate's expiry.

use super::family::{counter, register};
use super::labels::Listener;
use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

pub struct Families {
    bad_requests: IntCounterVec,
    shed: IntCounterVec,
    connections_open: IntGaugeVec,
    connections_at_limit: IntCounterVec,
    unauthenticated: IntCounterVec,
    tls_cert_expiry: Gauge,
}

/// One listener's connection metrics, as its accept loop updates them.
#[derive(Clone)]
pub struct ConnectionMetrics {
    pub open: IntGauge,
    /// Times a client had to wait because `maxConnections` were open.
    pub at_limit: IntCounter,
}

impl Families {
    /// `admission`: where the admission listener's own families go (refusals, the certificate);
    /// `every`: the connections of every listener.
    pub(super) fn new(admission: &Registry, every: &Registry) -> Self {
        let r = admission;
        Self {
            bad_requests: counter(
                r,
                "replica_guard_bad_requests_total",
                "Requests refused with HTTP 4xx because the body was not a usable AdmissionReview.",
                &["reason"],
            ),
            shed: counter(
                r,
                "replica_guard_requests_shed_total",
                "Requests answered 503 without being read, by reason (body-budget: the memory budget for request bodies in flight was in use).",
                &["reason"],
            ),
            connections_open: register(
                every,
                IntGaugeVec::new(
                    Opts::new("replica_guard_open_connections", "Open connections, by listener (admission, admin)."),
                    &["listener"],
                ),
            ),
            connections_at_limit: counter(
                every,
                "replica_guard_connection_limit_reached_total",
                "Times a new connection had to wait because server.maxConnections were open, by listener.",
                &["listener"],
            ),
            unauthenticated: counter(
                r,
                "replica_guard_unauthenticated_connections_total",
                "Connections to the admission port refused with server.tls.clientAuth on, by reason (no-certificate, untrusted-certificate, name-not-allowed): no decision, no Event, no record.",
                &["reason"],
            ),
            tls_cert_expiry: register(
                r,
                Gauge::new(
                    "replica_guard_tls_cert_expiry_timestamp_seconds",
                    "Unix time at which the serving certificate expires.",
                ),
            ),
        }
    }
}

impl Families {
    /// A caller refused by `server.tls.clientAuth`; `reason` is one of a few fixed words.
    pub fn unauthenticated(&self, reason: &'static str) {
        self.unauthenticated.with_label_values(&[reason]).inc();
    }

    /// A body that could not be evaluated (answered 4xx); `reason` is a short fixed label.
    pub fn bad_request(&self, reason: &'static str) {
        self.bad_requests.with_label_values(&[reason]).inc();
    }

    /// A request answered 503 before it was read.
    pub fn shed(&self, reason: &'static str) {
        self.shed.with_label_values(&[reason]).inc();
    }

    pub fn tls_cert_expires_at(&self, unix_seconds: i64) {
        self.tls_cert_expiry.set(unix_seconds as f64);
    }

    /// The connection metrics of one listener.
    pub fn connections(&self, listener: Listener) -> ConnectionMetrics {
        let label = match listener {
            Listener::Admission => "admission",
            Listener::Admin => "admin",
        };
        ConnectionMetrics {
            open: self.connections_open.with_label_values(&[label]),
            at_limit: self.connections_at_limit.with_label_values(&[label]),
        }
    }
}
