//! `authgate_issuer_jwt_verifications_total{issuer,result}`,
//! `authgate_issuer_jwks_refreshes_total{issuer,result}` and
//! `authgate_issuer_jwks_keys{issuer}`: the external issuers' counters, one
//! series per configured issuer URL (bounded by the configuration).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::authn::jwks::store::RefreshStats;
use crate::metrics::Metrics;

/// `issuer`, `result`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuerResult {
    issuer: String,
    result: &'static str,
}

/// `issuer`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuerLabel {
    issuer: String,
}

#[derive(Debug, Default)]
struct Inner {
    verifications: Family<IssuerResult, Counter>,
    refreshes: Family<IssuerResult, Counter>,
    keys: Family<IssuerLabel, Gauge>,
}

/// The counters of every external issuer (cheap to clone; clones share).
#[derive(Clone, Debug, Default)]
pub struct Stats(Arc<Inner>);

/// One issuer's view of [`Stats`].
#[derive(Clone, Debug)]
pub struct IssuerStats {
    stats: Stats,
    issuer: String,
}

impl Stats {
    /// New counters, exported by `metrics`.
    pub fn registered(metrics: &Metrics) -> Self {
        let s = Self::default();
        metrics.register_collector(Box::new(s.clone()));
        s
    }

    /// The counters of the issuer `url`.
    pub fn issuer(&self, url: &str) -> IssuerStats {
        IssuerStats {
            stats: self.clone(),
            issuer: url.to_owned(),
        }
    }
}

impl IssuerStats {
    fn label(&self, result: &'static str) -> IssuerResult {
        IssuerResult {
            issuer: self.issuer.clone(),
            result,
        }
    }

    /// One token of this issuer: `verified`, `unavailable` (no keys yet:
    /// 503) or why it was rejected (`expired`, `audience`, `unknown_kid`,
    /// `bad_signature`, `username`, ...).
    pub fn verification(&self, result: &'static str) {
        self.stats
            .0
            .verifications
            .get_or_create(&self.label(result))
            .inc();
    }
}

impl RefreshStats for IssuerStats {
    fn refresh(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.stats
            .0
            .refreshes
            .get_or_create(&self.label(result))
            .inc();
    }

    fn keys(&self, n: usize) {
        let label = IssuerLabel {
            issuer: self.issuer.clone(),
        };
        self.stats
            .0
            .keys
            .get_or_create(&label)
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

impl Collector for Stats {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let v = &self.0.verifications;
        v.encode(encoder.encode_descriptor(
            "issuer_jwt_verifications",
            "Bearer JWTs of external issuers (authentication.jwt), by issuer and result (verified, unavailable, or the rejection reason)",
            None,
            v.metric_type(),
        )?)?;
        let r = &self.0.refreshes;
        r.encode(encoder.encode_descriptor(
            "issuer_jwks_refreshes",
            "Fetches of an external issuer's discovery document and JWKS, by issuer and result",
            None,
            r.metric_type(),
        )?)?;
        let k = &self.0.keys;
        k.encode(encoder.encode_descriptor(
            "issuer_jwks_keys",
            "Usable signing keys of an external issuer",
            None,
            k.metric_type(),
        )?)?;
        Ok(())
    }
}
