//! Every metric name and label in one place (Prometheus, `authgate_*`).
//!
//! Labels take bounded values only: route prefixes from the config, fixed
//! enums for methods, outcomes and reasons. Never a token, never a user.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::cache::CacheSource;

pub mod listeners;
mod route;

pub use route::{AUTHS, OUTCOMES, RouteCounters, Slot};

/// `route`, `auth`, `outcome`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The matched route prefix (empty when no route matched).
    pub route: String,
    /// `mtls`, `token` or `none`.
    pub auth: &'static str,
    /// `allowed`, `unauthenticated`, `forbidden`, `backend_error`,
    /// `upstream_error`, `bad_request`, `no_route` or `internal_error`.
    pub outcome: &'static str,
}

/// `route`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    /// The matched route prefix.
    pub route: String,
}

/// `auth`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabel {
    /// `mtls`, `token` or `none`.
    pub auth: &'static str,
}

/// `kind` (`tokenreview`, `subjectaccessreview`) and `code` (`2xx`, `4xx`,
/// `throttled`, `5xx`, `timeout`, `error`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    /// Review kind.
    pub kind: &'static str,
    /// Status class.
    pub code: &'static str,
}

/// `kind`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// Review kind.
    pub kind: &'static str,
}

/// `reason`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// A fixed reason.
    pub reason: &'static str,
}

/// `result` (`success`, `failure`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// Result.
    pub result: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 µs .. ~6.5 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

/// The metric handles (cheap to clone; clones share the values).
#[derive(Clone, Debug)]
pub struct Metrics {
    /// `authgate_requests_total`.
    pub requests: Family<RequestLabels, Counter>,
    /// `authgate_request_duration_seconds`.
    pub request_duration: HistogramFamily<AuthLabel>,
    /// `authgate_deprecated_token_requests_total`.
    pub deprecated_tokens: Family<RouteLabel, Counter>,
    /// `authgate_api_requests_total`.
    pub api_requests: Family<ApiLabels, Counter>,
    /// `authgate_api_request_duration_seconds`.
    pub api_duration: HistogramFamily<KindLabel>,
    /// `authgate_api_in_flight`.
    pub api_in_flight: Gauge,
    /// `authgate_api_throttled_total`.
    pub api_throttled: Family<KindLabel, Counter>,
    /// `authgate_tls_handshake_failures_total`.
    pub handshake_failures: Family<ReasonLabel, Counter>,
    /// `authgate_tls_handshakes_total` (completed, by client certificate presence).
    pub handshakes: Family<ReasonLabel, Counter>,
    /// `authgate_client_certificate_expiry_seconds`.
    pub client_cert_expiry: Histogram,
    /// `authgate_serving_certificate_not_after_timestamp_seconds`.
    pub serving_cert_not_after: Gauge,
    /// `authgate_client_ca_not_after_timestamp_seconds`.
    pub client_ca_not_after: Gauge,
    /// `authgate_tls_reloads_total`.
    pub reloads: Family<ResultLabel, Counter>,
    /// `authgate_tls_reload_last_success_timestamp_seconds`.
    pub reload_last_success: Gauge,
    /// `authgate_tls_reload_last_failure_timestamp_seconds`.
    pub reload_last_failure: Gauge,
    /// `authgate_upstream_tls_reloads_total` (upstream client TLS files).
    pub upstream_reloads: Family<ResultLabel, Counter>,
    registry: Arc<std::sync::Mutex<Registry>>,
    /// `request_duration`'s series by auth, shared by [`RouteCounters`].
    durations: Arc<[std::sync::OnceLock<Histogram>; 3]>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let m = Self {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            deprecated_tokens: Family::default(),
            api_requests: Family::default(),
            api_duration: Family::new_with_constructor(latency_histogram),
            api_in_flight: Gauge::default(),
            api_throttled: Family::default(),
            handshake_failures: Family::default(),
            handshakes: Family::default(),
            // 1 hour .. ~1.4 years, in seconds left.
            client_cert_expiry: Histogram::new(exponential_buckets(3600.0, 2.0, 14)),
            serving_cert_not_after: Gauge::default(),
            client_ca_not_after: Gauge::default(),
            reloads: Family::default(),
            reload_last_success: Gauge::default(),
            reload_last_failure: Gauge::default(),
            upstream_reloads: Family::default(),
            durations: Arc::default(),
            registry: Arc::new(std::sync::Mutex::new(Registry::with_prefix("authgate"))),
        };
        {
            let mut r = m.registry.lock().unwrap_or_else(|e| e.into_inner());
            m.register_requests(&mut r);
            m.register_tls(&mut r);
        }
        m.initialize_alerting_series();
        m
    }

    /// Creates at 0 the series whose increase the alerts of
    /// `deploy/monitoring` watch: a series born at 1 shows no increase, so
    /// the first revoked handshake or failed reload would go unnoticed.
    fn initialize_alerting_series(&self) {
        for reason in ["revoked", "expired", "unknown_ca"] {
            drop(
                self.handshake_failures
                    .get_or_create(&ReasonLabel { reason }),
            );
        }
        for result in ["success", "failure"] {
            drop(self.reloads.get_or_create(&ResultLabel { result }));
            drop(self.upstream_reloads.get_or_create(&ResultLabel { result }));
        }
    }

    fn register_requests(&self, r: &mut Registry) {
        r.register(
            "requests",
            "Requests by route, credential kind and outcome",
            self.requests.clone(),
        );
        r.register_with_unit(
            "request_duration",
            "Time from request head to response head",
            Unit::Seconds,
            self.request_duration.clone(),
        );
        r.register(
            "deprecated_token_requests",
            "Bearer-token requests served on routes where tokens are deprecated",
            self.deprecated_tokens.clone(),
        );
        r.register(
            "api_requests",
            "Kubernetes API review calls by kind and status class",
            self.api_requests.clone(),
        );
        r.register_with_unit(
            "api_request_duration",
            "Kubernetes API review call latency",
            Unit::Seconds,
            self.api_duration.clone(),
        );
        r.register(
            "api_in_flight",
            "Kubernetes API review calls under way",
            self.api_in_flight.clone(),
        );
        r.register(
            "api_throttled",
            "Kubernetes API calls refused for throttling (API 429 or the client-side rate limit)",
            self.api_throttled.clone(),
        );
    }

    fn register_tls(&self, r: &mut Registry) {
        r.register(
            "tls_handshake_failures",
            "Failed TLS handshakes by reason",
            self.handshake_failures.clone(),
        );
        r.register(
            "tls_handshakes",
            "Completed TLS handshakes by client certificate presence",
            self.handshakes.clone(),
        );
        r.register_with_unit(
            "client_certificate_expiry",
            "Time left on client certificates at handshake",
            Unit::Seconds,
            self.client_cert_expiry.clone(),
        );
        r.register_with_unit(
            "serving_certificate_not_after_timestamp",
            "notAfter of the serving certificate in use",
            Unit::Seconds,
            self.serving_cert_not_after.clone(),
        );
        r.register_with_unit(
            "client_ca_not_after_timestamp",
            "Earliest notAfter in the client CA bundle in use",
            Unit::Seconds,
            self.client_ca_not_after.clone(),
        );
        r.register(
            "tls_reloads",
            "TLS material reloads by result",
            self.reloads.clone(),
        );
        r.register_with_unit(
            "tls_reload_last_success_timestamp",
            "When TLS material was last loaded successfully",
            Unit::Seconds,
            self.reload_last_success.clone(),
        );
        r.register_with_unit(
            "tls_reload_last_failure_timestamp",
            "When a TLS reload last failed (0: never)",
            Unit::Seconds,
            self.reload_last_failure.clone(),
        );
        r.register(
            "upstream_tls_reloads",
            "Reloads of upstream CA and client certificate files by result",
            self.upstream_reloads.clone(),
        );
    }

    /// Adds a cache's counters and size (read on each scrape) under
    /// `authgate_<name>_cache_*`.
    pub fn register_cache(&self, name: &'static str, cache: Arc<dyn CacheSource>) {
        self.registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .register_collector(Box::new(CacheCollector { name, cache }));
    }

    /// Exposes `authgate_log_lines_dropped_total`, read from `count` on each
    /// scrape: log lines the writer thread had no room for.
    pub fn count_dropped_log_lines(&self, count: Box<dyn Fn() -> u64 + Send + Sync>) {
        self.register_collector(Box::new(DroppedLogLines(count)));
    }

    /// Adds a collector read on each scrape.
    pub fn register_collector(&self, c: Box<dyn Collector>) {
        self.registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .register_collector(c);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let r = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        out
    }
}

/// Log lines dropped because the writer thread's queue was full.
struct DroppedLogLines(Box<dyn Fn() -> u64 + Send + Sync>);

impl std::fmt::Debug for DroppedLogLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DroppedLogLines")
    }
}

impl Collector for DroppedLogLines {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let c = ConstCounter::new((self.0)());
        c.encode(encoder.encode_descriptor(
            "log_lines_dropped",
            "log lines dropped because the log writer fell behind (never blocks a request)",
            None,
            c.metric_type(),
        )?)
    }
}

#[derive(Debug)]
struct CacheCollector {
    name: &'static str,
    cache: Arc<dyn CacheSource>,
}

impl Collector for CacheCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = self.cache.stats();
        let lookups = format!("{}_cache_requests", self.name);
        let help = format!(
            "{} cache lookups by result (coalesced: joined a call under way)",
            self.name
        );
        let counter = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(&lookups, &help, None, counter.metric_type())?;
        for (result, v) in [
            ("hit", &s.hits),
            ("miss", &s.misses),
            ("coalesced", &s.coalesced),
        ] {
            let labels = ResultLabel { result };
            ConstCounter::new(v.load(Ordering::Relaxed)).encode(family.encode_family(&labels)?)?;
        }
        let errors = ConstCounter::new(s.errors.load(Ordering::Relaxed));
        let name = format!("{}_cache_fetch_errors", self.name);
        let help = format!("{} lookups whose API call failed (never cached)", self.name);
        errors.encode(encoder.encode_descriptor(&name, &help, None, errors.metric_type())?)?;
        let entries = ConstGauge::new(i64::try_from(self.cache.entries()).unwrap_or(i64::MAX));
        let name = format!("{}_cache_entries", self.name);
        let help = format!("{} cache entries held", self.name);
        entries.encode(encoder.encode_descriptor(&name, &help, None, entries.metric_type())?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_series_alerts_watch_for_an_increase_exist_before_the_first_event() {
        let out = Metrics::new().render();
        for series in [
            r#"authgate_tls_handshake_failures_total{reason="revoked"} 0"#,
            r#"authgate_tls_handshake_failures_total{reason="expired"} 0"#,
            r#"authgate_tls_handshake_failures_total{reason="unknown_ca"} 0"#,
            r#"authgate_tls_reloads_total{result="failure"} 0"#,
            r#"authgate_tls_reloads_total{result="success"} 0"#,
            r#"authgate_upstream_tls_reloads_total{result="failure"} 0"#,
        ] {
            assert!(out.contains(series), "{series} missing from\n{out}");
        }
    }
}
