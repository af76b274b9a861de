//! The caches' counters, and the collector that exports the ones
//! [`crate::metrics`]'s per-cache collector does not: bytes, evictions by
//! cause and refresh-ahead, as `authgate_cache_*{cache="<name>"}`.
//!
//! Registered once for every cache (one family per name):
//! `metrics.register_collector(Box::new(cache::metrics::Collector::new(caches)))`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector as PromCollector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::CacheSource;

/// Counters of one cache (read by metrics).
#[derive(Debug, Default)]
pub struct Stats {
    /// Answered from the cache.
    pub hits: AtomicU64,
    /// Not in the cache: started a fetch.
    pub misses: AtomicU64,
    /// Not in the cache: joined a fetch already under way.
    pub coalesced: AtomicU64,
    /// Fetches that ended in an error (not stored).
    pub errors: AtomicU64,
    /// Refresh-ahead reviews started for hot entries.
    pub refresh_started: AtomicU64,
    /// Refreshes whose answer replaced the entry.
    pub refresh_stored: AtomicU64,
    /// Refreshes that failed (the entry is left to expire).
    pub refresh_failed: AtomicU64,
    /// Entries evicted for room.
    pub evicted_size: AtomicU64,
    /// Entries dropped at or after their expiry.
    pub evicted_expiry: AtomicU64,
    /// Entries dropped by a flush.
    pub evicted_flush: AtomicU64,
}

impl Stats {
    pub(super) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// `cache`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabel {
    cache: &'static str,
}

/// `cache`, `cause`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    cache: &'static str,
    cause: &'static str,
}

/// `cache`, `result`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    cache: &'static str,
    result: &'static str,
}

/// The collector of `authgate_cache_bytes`, `authgate_cache_evictions_total`
/// and `authgate_cache_refreshes_total` for the caches given.
#[derive(Debug)]
pub(crate) struct Collector {
    caches: Vec<(&'static str, Arc<dyn CacheSource>)>,
}

impl Collector {
    /// Exports `caches`, each under its name.
    pub(crate) fn new(caches: Vec<(&'static str, Arc<dyn CacheSource>)>) -> Self {
        Self { caches }
    }
}

impl PromCollector for Collector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let g = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "cache_bytes",
            "Approximate bytes held by each review cache (entries, table, and identity parts not shared through the interner)",
            None,
            g.metric_type(),
        )?;
        for (cache, c) in &self.caches {
            let v = i64::try_from(c.bytes()).unwrap_or(i64::MAX);
            ConstGauge::new(v).encode(family.encode_family(&CacheLabel { cache })?)?;
        }
        let c0 = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "cache_evictions",
            "Review cache entries removed, by cause (size: room for others; expiry: at or past their TTL; flush: /cache/flush)",
            None,
            c0.metric_type(),
        )?;
        for (cache, c) in &self.caches {
            let s = c.stats();
            for (cause, v) in [
                ("size", &s.evicted_size),
                ("expiry", &s.evicted_expiry),
                ("flush", &s.evicted_flush),
            ] {
                let labels = CauseLabels { cache, cause };
                ConstCounter::new(v.load(Ordering::Relaxed))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "cache_refreshes",
            "Refresh-ahead reviews of hot entries, by result (started; stored: replaced the entry; failed: the entry is left to expire)",
            None,
            c0.metric_type(),
        )?;
        for (cache, c) in &self.caches {
            let s = c.stats();
            for (result, v) in [
                ("started", &s.refresh_started),
                ("stored", &s.refresh_stored),
                ("failed", &s.refresh_failed),
            ] {
                let labels = ResultLabels { cache, result };
                ConstCounter::new(v.load(Ordering::Relaxed))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::cache::{Kind, ReviewCache};

    #[tokio::test]
    async fn every_cache_is_exported_under_one_family_per_metric() {
        let token: ReviewCache<u32> = ReviewCache::new(Kind::Token, 10);
        let access: ReviewCache<u32> = ReviewCache::new(Kind::Access, 10);
        token
            .get_or_fetch([1; 16], || {
                Box::pin(async { Ok((1, std::time::Duration::from_secs(60).into())) })
            })
            .await
            .unwrap();
        token.clear();
        let mut r = Registry::with_prefix("authgate");
        r.register_collector(Box::new(Collector::new(vec![
            ("token", Arc::new(token.clone())),
            ("access", Arc::new(access)),
        ])));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        for line in [
            "# TYPE authgate_cache_bytes gauge",
            "authgate_cache_bytes{cache=\"access\"} ",
            "authgate_cache_evictions_total{cache=\"token\",cause=\"flush\"} 1",
            "authgate_cache_evictions_total{cache=\"access\",cause=\"size\"} 0",
            "authgate_cache_refreshes_total{cache=\"token\",result=\"started\"} 0",
        ] {
            assert!(out.contains(line), "{line} missing from\n{out}");
        }
        assert_eq!(out.matches("# TYPE authgate_cache_bytes").count(), 1);
    }
}
