//! Who used which credential where: a bounded usage table behind
//! `GET /migration` and `authgate_identity_requests_total`.
//!
//! The first `max_identities` users are tracked by name; later ones are
//! summed into `other`. Admission order, not a ranking: a Prometheus counter
//! cannot move from one series to another without breaking `rate()`, so an
//! identity keeps the series it was given. Memory is bounded by
//! `max_identities` x the number of routes.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use serde::Serialize;

use crate::identity::AuthMethod;

/// The name untracked identities are summed under.
pub const OTHER: &str = "other";

/// Requests and first/last use (Unix seconds) of one credential kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Seen {
    /// Requests.
    pub requests: u64,
    /// First use.
    #[serde(serialize_with = "rfc3339")]
    pub first_seen: i64,
    /// Last use.
    #[serde(serialize_with = "rfc3339")]
    pub last_seen: i64,
}

/// What one identity (or `other`) did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Client-certificate requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtls: Option<Seen>,
    /// Bearer-token requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Seen>,
    /// Route prefixes used, in first-use order.
    pub routes: Vec<String>,
    /// Pinned to client certificates by `migration.mtls_required`.
    pub pinned: bool,
}

impl Usage {
    fn record(&mut self, method: AuthMethod, route: &str, pinned: bool, now: i64) {
        let seen = match method {
            AuthMethod::Mtls => &mut self.mtls,
            AuthMethod::Token => &mut self.token,
        };
        match seen {
            Some(s) => {
                s.requests += 1;
                s.last_seen = s.last_seen.max(now);
            }
            None => {
                *seen = Some(Seen {
                    requests: 1,
                    first_seen: now,
                    last_seen: now,
                });
            }
        }
        if !self.routes.iter().any(|r| r == route) {
            self.routes.push(route.to_owned());
        }
        self.pinned |= pinned;
    }
}

/// One row of the report.
#[derive(Debug, Serialize)]
pub struct Row {
    /// User name, or `other`.
    pub identity: String,
    /// Its usage.
    #[serde(flatten)]
    pub usage: Usage,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Tracked identities, token users first, then by name; `other` last.
    pub identities: Vec<Row>,
    /// How many identities are tracked by name at most.
    pub max_identities: usize,
}

#[derive(Debug, Default)]
struct State {
    named: HashMap<Box<str>, Usage>,
    other: Usage,
}

/// The usage table.
#[derive(Debug)]
pub struct Tracker {
    max: usize,
    label_identities: bool,
    state: Mutex<State>,
}

impl Tracker {
    /// Tracks up to `max` identities by name; `label_identities` adds the
    /// identity label to the metric.
    pub fn new(max: usize, label_identities: bool) -> Self {
        Self {
            max,
            label_identities,
            state: Mutex::default(),
        }
    }

    /// Records one authenticated request.
    pub fn record(&self, user: &str, method: AuthMethod, route: &str, pinned: bool, now: i64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let State { named, other } = &mut *s;
        let room = named.len() < self.max && user != OTHER;
        let usage = if room || named.contains_key(user) {
            // One allocation per identity, on its first request.
            if !named.contains_key(user) {
                named.insert(user.into(), Usage::default());
            }
            named.get_mut(user).unwrap_or(other)
        } else {
            other
        };
        usage.record(method, route, pinned, now);
    }

    /// A snapshot.
    pub fn report(&self) -> Report {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut identities: Vec<Row> = s
            .named
            .iter()
            .map(|(k, v)| Row {
                identity: k.to_string(),
                usage: v.clone(),
            })
            .collect();
        identities.sort_by(|a, b| {
            (a.usage.token.is_none(), &a.identity).cmp(&(b.usage.token.is_none(), &b.identity))
        });
        if s.other != Usage::default() {
            identities.push(Row {
                identity: OTHER.into(),
                usage: s.other.clone(),
            });
        }
        Report {
            identities,
            max_identities: self.max,
        }
    }

    /// Requests per (identity or `None`, method), for the metric.
    fn counts(&self) -> Vec<(Option<String>, &'static str, u64)> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let rows = s
            .named
            .iter()
            .map(|(k, v)| (&**k, v))
            .chain(std::iter::once((OTHER, &s.other)));
        let mut out = Vec::new();
        let (mut mtls, mut token) = (0, 0);
        for (name, u) in rows {
            for (method, seen, total) in
                [("mtls", u.mtls, &mut mtls), ("token", u.token, &mut token)]
            {
                let n = seen.map_or(0, |s| s.requests);
                *total += n;
                if self.label_identities && n > 0 {
                    out.push((Some(name.to_owned()), method, n));
                }
            }
        }
        if !self.label_identities {
            out.push((None, "mtls", mtls));
            out.push((None, "token", token));
        }
        out
    }
}

impl Report {
    /// A plain-text table.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{:<48} {:<6} {:>10} {:>10} {:<20} {:<20} ROUTES\n",
            "IDENTITY", "PINNED", "MTLS", "TOKEN", "TOKEN_FIRST_SEEN", "TOKEN_LAST_SEEN"
        );
        for r in &self.identities {
            let u = &r.usage;
            let when = |t: Option<i64>| t.map_or_else(|| "-".to_owned(), rfc3339_string);
            let _ = writeln!(
                out,
                "{:<48} {:<6} {:>10} {:>10} {:<20} {:<20} {}",
                r.identity,
                if u.pinned { "yes" } else { "no" },
                u.mtls.map_or(0, |s| s.requests),
                u.token.map_or(0, |s| s.requests),
                when(u.token.map(|s| s.first_seen)),
                when(u.token.map(|s| s.last_seen)),
                u.routes.join(","),
            );
        }
        out
    }
}

fn rfc3339_string(unix: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

fn rfc3339<S: serde::Serializer>(unix: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339_string(*unix))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IdentityLabels {
    identity: String,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: &'static str,
}

/// Exports `authgate_identity_requests_total`, read from the tracker on each
/// scrape (the request path pays for the table only).
#[derive(Debug)]
pub struct IdentityCollector(pub std::sync::Arc<Tracker>);

impl Collector for IdentityCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let proto = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "identity_requests",
            "Authenticated requests by credential kind (and identity, with migration.track_identities)",
            None,
            proto.metric_type(),
        )?;
        for (identity, method, n) in self.0.counts() {
            let c = ConstCounter::new(n);
            match identity {
                Some(identity) => {
                    c.encode(family.encode_family(&IdentityLabels { identity, method })?)?
                }
                None => c.encode(family.encode_family(&MethodLabel { method })?)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AuthMethod::{Mtls, Token};

    #[test]
    fn tracks_the_first_identities_by_name_and_sums_the_rest() {
        let t = Tracker::new(2, true);
        t.record("alice", Token, "/api", false, 100);
        t.record("alice", Token, "/api", false, 160);
        t.record("alice", Mtls, "/metrics", false, 200);
        t.record("bob", Mtls, "/api", true, 110);
        t.record("carol", Token, "/api", false, 120);
        t.record("dave", Token, "/x", false, 130);
        t.record(OTHER, Mtls, "/x", false, 140);

        let r = t.report();
        let names: Vec<&str> = r.identities.iter().map(|r| r.identity.as_str()).collect();
        assert_eq!(names, ["alice", "bob", "other"]);
        let alice = &r.identities[0].usage;
        assert_eq!(
            alice.token,
            Some(Seen {
                requests: 2,
                first_seen: 100,
                last_seen: 160
            })
        );
        assert_eq!(alice.mtls.map(|s| s.requests), Some(1));
        assert_eq!(alice.routes, ["/api", "/metrics"]);
        assert!(r.identities[1].usage.pinned);
        let other = &r.identities[2].usage;
        assert_eq!(other.token.map(|s| s.requests), Some(2));
        assert_eq!(other.mtls.map(|s| s.requests), Some(1));
        assert_eq!(other.routes, ["/api", "/x"]);

        let mut counts = t.counts();
        counts.sort();
        let c = |i: &str, m: &'static str, n| (Some(i.to_owned()), m, n);
        assert_eq!(
            counts,
            [
                c("alice", "mtls", 1),
                c("alice", "token", 2),
                c("bob", "mtls", 1),
                c("other", "mtls", 1),
                c("other", "token", 2)
            ]
        );

        let text = r.to_text();
        assert!(text.starts_with("IDENTITY"), "{text}");
        assert!(text.contains("1970-01-01T00:01:40Z"), "{text}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["identities"][0]["identity"], "alice");
        assert_eq!(json["identities"][0]["token"]["requests"], 2);
        assert_eq!(
            json["identities"][0]["token"]["first_seen"],
            "1970-01-01T00:01:40Z"
        );
        assert!(json["identities"][1].get("token").is_none());
    }

    #[test]
    fn without_identity_labels_the_metric_has_one_series_per_method() {
        let t = Tracker::new(10, false);
        t.record("alice", Token, "/", false, 1);
        t.record("bob", Token, "/", false, 1);
        t.record("bob", Mtls, "/", false, 1);
        assert_eq!(t.counts(), [(None, "mtls", 1), (None, "token", 2)]);
    }
}
