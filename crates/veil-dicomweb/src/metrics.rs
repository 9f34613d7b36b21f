//! The numbers `/metrics` reports, in the Prometheus/OpenMetrics text
//! format (prometheus-client). The gateway holds one [`Metrics`] (in an
//! `Arc`) and calls its methods where things happen; this crate counts
//! what it sees itself (STOW-RS requests, received and refused parts,
//! authentication failures). Labels are route names and reason kinds
//! only, never a value from an instance.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

type Labels = Vec<(&'static str, String)>;

fn route(r: &str) -> Labels {
    vec![("route", r.to_string())]
}

fn seconds_histogram() -> Histogram {
    // 5 ms to about 10 min: one STOW request up to a slow study's delivery.
    Histogram::new(exponential_buckets(0.005, 2.5, 14))
}

/// The gateway's counters, gauges and histograms.
pub struct Metrics {
    registry: Registry,
    instances_received: Family<Labels, Counter>,
    instances_failed: Family<Labels, Counter>,
    studies_released: Family<Labels, Counter>,
    studies_refused: Family<Labels, Counter>,
    delivery_failures: Family<Labels, Counter>,
    http_requests: Family<Labels, Counter>,
    auth_failures: Counter,
    queue_depth: Gauge,
    dead_letters: Gauge,
    stow_seconds: Histogram,
    delivery_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    study_seconds: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// All metrics at zero, registered under the `veil_` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("veil");
        let m = Metrics {
            instances_received: Family::default(),
            instances_failed: Family::default(),
            studies_released: Family::default(),
            studies_refused: Family::default(),
            delivery_failures: Family::default(),
            http_requests: Family::default(),
            auth_failures: Counter::default(),
            queue_depth: Gauge::default(),
            dead_letters: Gauge::default(),
            stow_seconds: seconds_histogram(),
            delivery_seconds: Family::new_with_constructor(seconds_histogram),
            study_seconds: seconds_histogram(),
            registry: Registry::default(),
        };
        registry.register(
            "instances_received",
            "Instances stored durably in the spool (DIMSE and STOW-RS), by route",
            m.instances_received.clone(),
        );
        registry.register(
            "instances_failed",
            "Instances refused on receipt, by route and failure reason",
            m.instances_failed.clone(),
        );
        registry.register(
            "studies_released",
            "Studies de-identified, verified and handed to delivery, by route",
            m.studies_released.clone(),
        );
        registry.register(
            "studies_refused",
            "Studies refused by the release decision (consent, verification), by route",
            m.studies_refused.clone(),
        );
        registry.register(
            "delivery_failures",
            "Failed delivery attempts (each retry counts), by route",
            m.delivery_failures.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests answered, by endpoint and status code",
            m.http_requests.clone(),
        );
        registry.register(
            "auth_failures",
            "HTTP requests refused for a missing or wrong bearer token",
            m.auth_failures.clone(),
        );
        registry.register(
            "queue_depth",
            "Studies waiting for release or delivery",
            m.queue_depth.clone(),
        );
        registry.register(
            "dead_letters",
            "Studies parked after too many delivery failures",
            m.dead_letters.clone(),
        );
        registry.register(
            "stow_request_seconds",
            "Time to receive and store one STOW-RS request",
            m.stow_seconds.clone(),
        );
        registry.register(
            "delivery_seconds",
            "Time to deliver one study to its destination, by route",
            m.delivery_seconds.clone(),
        );
        registry.register(
            "study_latency_seconds",
            "Time from a study's last received instance to its delivery",
            m.study_seconds.clone(),
        );
        Metrics { registry, ..m }
    }

    /// An instance of `route` is durably stored.
    pub fn instance_received(&self, route: &str) {
        self.instances_received
            .get_or_create(&self::route(route))
            .inc();
    }

    /// An instance of `route` was refused on receipt, for `reason` (a short
    /// label such as [`crate::FailureReason::label`]).
    pub fn instance_failed(&self, route: &str, reason: &str) {
        let mut l = self::route(route);
        l.push(("reason", reason.to_string()));
        self.instances_failed.get_or_create(&l).inc();
    }

    /// A study of `route` was released.
    pub fn study_released(&self, route: &str) {
        self.studies_released
            .get_or_create(&self::route(route))
            .inc();
    }

    /// A study of `route` was refused by the release decision.
    pub fn study_refused(&self, route: &str) {
        self.studies_refused
            .get_or_create(&self::route(route))
            .inc();
    }

    /// A delivery attempt for `route` failed.
    pub fn delivery_failed(&self, route: &str) {
        self.delivery_failures
            .get_or_create(&self::route(route))
            .inc();
    }

    /// Studies now waiting (the queue's own count, set not incremented, so
    /// a restart reports the truth from the store).
    pub fn set_queue_depth(&self, studies: u64) {
        self.queue_depth
            .set(i64::try_from(studies).unwrap_or(i64::MAX));
    }

    /// Studies now parked in the dead-letter state.
    pub fn set_dead_letters(&self, studies: u64) {
        self.dead_letters
            .set(i64::try_from(studies).unwrap_or(i64::MAX));
    }

    /// One delivery of a study of `route` took `took`.
    pub fn observe_delivery(&self, route: &str, took: Duration) {
        self.delivery_seconds
            .get_or_create(&self::route(route))
            .observe(took.as_secs_f64());
    }

    /// A study was delivered `took` after its last instance arrived.
    pub fn observe_study_latency(&self, took: Duration) {
        self.study_seconds.observe(took.as_secs_f64());
    }

    pub(crate) fn observe_stow(&self, took: Duration) {
        self.stow_seconds.observe(took.as_secs_f64());
    }

    pub(crate) fn http_request(&self, endpoint: &'static str, status: u16) {
        self.http_requests
            .get_or_create(&vec![
                ("endpoint", endpoint.to_string()),
                ("code", status.to_string()),
            ])
            .inc();
    }

    pub(crate) fn auth_failure(&self) {
        self.auth_failures.inc();
    }

    /// The exposition text (OpenMetrics 1.0, which Prometheus scrapes).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// The media type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    /// The gateway's calls show up as samples with their labels.
    #[test]
    fn counts_appear_in_the_text() {
        let m = Metrics::new();
        m.instance_received("acme");
        m.instance_received("acme");
        m.study_released("acme");
        m.study_refused("acme");
        m.delivery_failed("acme");
        m.set_queue_depth(7);
        m.observe_delivery("acme", Duration::from_millis(30));
        m.observe_study_latency(Duration::from_secs(2));
        m.instance_failed("acme", "cannot_understand");
        let t = m.encode();
        assert!(
            t.contains("veil_instances_received_total{route=\"acme\"} 2"),
            "{t}"
        );
        assert!(t.contains("veil_studies_released_total{route=\"acme\"} 1"));
        assert!(t.contains("veil_studies_refused_total{route=\"acme\"} 1"));
        assert!(t.contains("veil_delivery_failures_total{route=\"acme\"} 1"));
        assert!(t.contains("veil_queue_depth 7"));
        assert!(t.contains("veil_delivery_seconds_count{route=\"acme\"} 1"));
        assert!(t.contains("veil_study_latency_seconds_count 1"));
        assert!(t.contains(
            "veil_instances_failed_total{route=\"acme\",reason=\"cannot_understand\"} 1"
        ));
    }
}
