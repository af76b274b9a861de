//! The migration metrics, read from the [`Tracker`] on each scrape (the
//! request path pays for the table only):
//!
//! - `authgate_identity_requests_total{method[,identity]}`
//! - `authgate_identity_last_seen_timestamp_seconds{identity,method,route}`
//!   (with `migration.track_identities`): the last request of each tracked
//!   identity (or `other`) per credential kind and route;
//! - `authgate_route_last_seen_timestamp_seconds{route,method}`: the last
//!   request per configured route and credential kind, 0 before the first,
//!   so every configured route has its series;
//! - `authgate_would_refuse_total{route,reason}`: requests served only
//!   because their lever has `enforce: false`.
//!
//! Every label is bounded: identities by `migration.max_identities` (the
//! rest are `other`, as in the table), routes by the configuration; route
//! labels are configured prefixes, never request paths. A gauge of the
//! last-seen time, unlike a counter, may be `max`ed across replicas and
//! over time, which is what `authgate migration check` asks Prometheus.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::report::{OTHER, Tracker, Usage};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IdentityLabels {
    identity: String,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IdentityRouteLabels {
    identity: String,
    method: &'static str,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefuseLabels {
    route: String,
    reason: &'static str,
}

/// One sample of a family: labels and value.
type Samples<L> = Vec<(L, i64)>;

/// Everything one scrape exports, copied out under the lock.
#[derive(Debug, Default, PartialEq, Eq)]
struct Snapshot {
    /// (identity or `None`, method, requests).
    requests: Vec<(Option<String>, &'static str, u64)>,
    identity_seen: Samples<(String, &'static str, String)>,
    route_seen: Samples<(String, &'static str)>,
    would_refuse: Vec<(String, &'static str, u64)>,
}

impl Tracker {
    fn snapshot(&self) -> Snapshot {
        let s = self.lock();
        let mut out = Snapshot::default();
        let rows = s
            .named
            .iter()
            .map(|(k, v)| (&**k, v))
            .chain(std::iter::once((OTHER, &s.other)));
        let (mut mtls, mut token) = (0, 0);
        for (name, u) in rows {
            for (method, seen, total) in
                [("mtls", u.mtls, &mut mtls), ("token", u.token, &mut token)]
            {
                let n = seen.map_or(0, |s| s.requests);
                *total += n;
                if self.label_identities && n > 0 {
                    out.requests.push((Some(name.to_owned()), method, n));
                }
            }
            if self.label_identities {
                identity_seen(&mut out.identity_seen, name, u);
            }
        }
        if !self.label_identities {
            out.requests.push((None, "mtls", mtls));
            out.requests.push((None, "token", token));
        }
        for r in s.routes.values() {
            for (method, seen) in [("mtls", r.mtls), ("token", r.token)] {
                out.route_seen
                    .push(((r.route.clone(), method), seen.map_or(0, |s| s.last_seen)));
            }
            for (reason, n) in &r.would_refuse {
                out.would_refuse.push((r.route.clone(), reason, *n));
            }
        }
        out
    }
}

fn identity_seen(out: &mut Samples<(String, &'static str, String)>, name: &str, u: &Usage) {
    for (route, seen) in u.routes.iter().zip(&u.last_seen_on) {
        for (method, t) in [("mtls", seen.mtls), ("token", seen.token)] {
            if t > 0 {
                out.push(((name.to_owned(), method, route.clone()), t));
            }
        }
    }
}

/// Exports the migration metrics of a [`Tracker`].
#[derive(Debug)]
pub struct IdentityCollector(pub Arc<Tracker>);

impl Collector for IdentityCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let snap = self.0.snapshot();
        let counter = ConstCounter::new(0u64).metric_type();
        let gauge = ConstGauge::new(0i64).metric_type();
        let mut family = encoder.encode_descriptor(
            "identity_requests",
            "Authenticated requests by credential kind (and identity, with migration.track_identities)",
            None,
            counter,
        )?;
        for (identity, method, n) in snap.requests {
            let c = ConstCounter::new(n);
            match identity {
                Some(identity) => {
                    c.encode(family.encode_family(&IdentityLabels { identity, method })?)?;
                }
                None => c.encode(family.encode_family(&MethodLabel { method })?)?,
            }
        }
        if self.0.label_identities {
            let mut family = encoder.encode_descriptor(
                "identity_last_seen_timestamp_seconds",
                "Last request (Unix time) of each tracked identity per credential kind and route",
                None,
                gauge,
            )?;
            for ((identity, method, route), t) in snap.identity_seen {
                let labels = IdentityRouteLabels {
                    identity,
                    method,
                    route,
                };
                ConstGauge::new(t).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "route_last_seen_timestamp_seconds",
            "Last request (Unix time) per configured route and credential kind; 0: none yet",
            None,
            gauge,
        )?;
        for ((route, method), t) in snap.route_seen {
            ConstGauge::new(t).encode(family.encode_family(&RouteLabels { route, method })?)?;
        }
        let mut family = encoder.encode_descriptor(
            "would_refuse",
            "Requests served only because their migration lever has enforce: false",
            None,
            counter,
        )?;
        for (route, reason, n) in snap.would_refuse {
            ConstCounter::new(n).encode(family.encode_family(&RefuseLabels { route, reason })?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::AuthMethod::{Mtls, Token};
    use crate::migration::Pin;

    #[test]
    fn last_seen_per_identity_route_and_method_and_every_declared_route() {
        let t = Tracker::new(1, true);
        t.declare_routes(["/", "/legacy", "/quiet"]);
        t.record("alice", Token, "/legacy", Pin::No, 100);
        t.record("alice", Token, "/legacy", Pin::No, 90);
        t.record("alice", Mtls, "/", Pin::No, 120);
        t.record("bob", Token, "/legacy", Pin::No, 130);
        t.would_refuse("bob", "/legacy", "token_forbidden", true);
        let s = t.snapshot();
        let own = |v: &[((&str, &'static str, &str), i64)]| {
            v.iter()
                .map(|((a, b, c), t)| (((*a).to_owned(), *b, (*c).to_owned()), *t))
                .collect::<Vec<_>>()
        };
        let mut seen = s.identity_seen.clone();
        seen.sort();
        assert_eq!(
            seen,
            own(&[
                (("alice", "mtls", "/"), 120),
                (("alice", "token", "/legacy"), 100),
                (("other", "token", "/legacy"), 130),
            ])
        );
        let route = |r: &str, m: &'static str, t| ((r.to_owned(), m), t);
        assert_eq!(
            s.route_seen,
            [
                route("/", "mtls", 120),
                route("/", "token", 0),
                route("/legacy", "mtls", 0),
                route("/legacy", "token", 130),
                route("/quiet", "mtls", 0),
                route("/quiet", "token", 0),
            ]
        );
        assert_eq!(
            s.would_refuse,
            [("/legacy".to_owned(), "token_forbidden", 1)]
        );
        let r = t.report();
        assert_eq!(r.identities[1].usage.would_refuse, 1, "other's row");
        assert_eq!(r.summary.would_refuse, 1);
    }

    #[test]
    fn without_identity_labels_no_identity_series() {
        let t = Tracker::new(10, false);
        t.record("alice", Token, "/", Pin::No, 1);
        t.record("bob", Token, "/", Pin::No, 1);
        t.record("bob", Mtls, "/", Pin::No, 1);
        let s = t.snapshot();
        assert_eq!(s.requests, [(None, "mtls", 1), (None, "token", 2)]);
        assert!(s.identity_seen.is_empty());
        assert_eq!(s.route_seen.len(), 2);
    }
}
