//! `authgate_jwt_verifications_total{result}`, `authgate_jwks_refreshes_total{result}`
//! and `authgate_jwks_keys`, exported through [`Metrics::register_collector`].

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::metrics::{Metrics, ResultLabel};

/// The JWKS verifier's counters (cheap to clone; clones share the values).
#[derive(Clone, Debug, Default)]
pub struct Stats(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    verifications: Family<ResultLabel, Counter>,
    refreshes: Family<ResultLabel, Counter>,
    keys: AtomicI64,
}

impl Stats {
    /// New counters, exported by `metrics`.
    pub fn registered(metrics: &Metrics) -> Self {
        let s = Self::default();
        metrics.register_collector(Box::new(s.clone()));
        s
    }

    /// One token handled: `verified` (signature checked now), `cached`,
    /// `revalidated`/`revoked` (a TokenReview of an old or distrusted
    /// entry), `revoked_before` (a rejection marker: TokenReview only),
    /// `bad_signature` (refused without TokenReview under a known key, unless
    /// `review_bad_signatures` or another issuer's), or the reason it went to
    /// TokenReview instead (`unknown_kid`, `audience`, ...).
    pub fn verification(&self, result: &'static str) {
        self.0
            .verifications
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// One key fetch, `success` or `failure`.
    pub fn refresh(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.0
            .refreshes
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// The number of usable keys now held.
    pub fn keys(&self, n: usize) {
        self.0
            .keys
            .store(i64::try_from(n).unwrap_or(i64::MAX), Ordering::Relaxed);
    }
}

impl Collector for Stats {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let v = &self.0.verifications;
        v.encode(encoder.encode_descriptor(
            "jwt_verifications",
            "Bearer JWTs handled by local verification, by result (other than verified/cached/revalidated/revoked: the reason it went to TokenReview)",
            None,
            v.metric_type(),
        )?)?;
        let r = &self.0.refreshes;
        r.encode(encoder.encode_descriptor(
            "jwks_refreshes",
            "Fetches of the OIDC discovery document and JWKS, by result",
            None,
            r.metric_type(),
        )?)?;
        let keys = ConstGauge::new(self.0.keys.load(Ordering::Relaxed));
        keys.encode(encoder.encode_descriptor(
            "jwks_keys",
            "Usable signing keys in the key set in use",
            None,
            keys.metric_type(),
        )?)?;
        Ok(())
    }
}
