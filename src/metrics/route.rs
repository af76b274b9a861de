//! `authgate_requests_total` and `authgate_request_duration_seconds`
//! resolved once per route: a request costs one atomic add and one
//! histogram observation, with no label set built, hashed or looked up.
//! A series is created on its first request, as the families would, so
//! the exposition is the same.

use std::sync::{Arc, OnceLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use super::{AuthLabel, Metrics, RequestLabels};

/// The `auth` label values, in slot order.
pub const AUTHS: [&str; 3] = ["none", "mtls", "token"];
/// How many `outcome` label values there are.
pub const OUTCOMES: usize = 8;

/// Which series a request counts in: its `auth` and `outcome` positions.
#[derive(Clone, Copy, Debug)]
pub struct Slot {
    /// Index into [`AUTHS`].
    pub auth: usize,
    /// The outcome's position (below [`OUTCOMES`]) and label value.
    pub outcome: (usize, &'static str),
}

/// The request series of one route.
#[derive(Debug)]
pub struct RouteCounters {
    metrics: Metrics,
    route: String,
    counters: [[OnceLock<Counter>; OUTCOMES]; 3],
    /// Shared by every route (the histogram has no route label).
    durations: Arc<[OnceLock<Histogram>; 3]>,
}

impl Metrics {
    /// The request series of `route` (the prefix; `""` for requests that
    /// matched none).
    pub fn route_counters(&self, route: &str) -> RouteCounters {
        RouteCounters {
            metrics: self.clone(),
            route: route.to_owned(),
            counters: Default::default(),
            durations: self.durations.clone(),
        }
    }
}

impl RouteCounters {
    /// Counts a finished request.
    pub fn count(&self, slot: Slot, seconds: f64) {
        let auth = AUTHS[slot.auth % AUTHS.len()];
        let (i, outcome) = slot.outcome;
        self.counters[slot.auth % AUTHS.len()][i % OUTCOMES]
            .get_or_init(|| {
                self.metrics
                    .requests
                    .get_or_create(&RequestLabels {
                        route: self.route.clone(),
                        auth,
                        outcome,
                    })
                    .clone()
            })
            .inc();
        self.durations[slot.auth % AUTHS.len()]
            .get_or_init(|| {
                self.metrics
                    .request_duration
                    .get_or_create(&AuthLabel { auth })
                    .clone()
            })
            .observe(seconds);
    }
}
