//! Who used which credential where: a bounded usage table behind
//! `GET /migration` and the migration metrics ([`super::export`]).
//!
//! The first `max_identities` users are tracked by name; later ones are
//! summed into `other`. Admission order, not a ranking: a Prometheus counter
//! cannot move from one series to another without breaking `rate()`, so an
//! identity keeps the series it was given. Memory is bounded by
//! `max_identities` x the number of routes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde::Serialize;

use super::Pin;
use crate::identity::AuthMethod;

/// The name untracked identities are summed under.
pub const OTHER: &str = "other";

/// The route label of the admin endpoints (route labels are otherwise
/// configured prefixes, which start with `/`).
pub const ADMIN_ROUTE: &str = "admin";

/// Requests and first/last use (Unix seconds) of one credential kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Seen {
    /// Requests.
    pub requests: u64,
    /// First use.
    #[serde(serialize_with = "super::when::rfc3339")]
    pub first_seen: i64,
    /// Last use.
    #[serde(serialize_with = "super::when::rfc3339")]
    pub last_seen: i64,
}

impl Seen {
    fn bump(seen: &mut Option<Self>, now: i64) {
        match seen {
            Some(s) => {
                s.requests += 1;
                s.last_seen = s.last_seen.max(now);
            }
            None => {
                *seen = Some(Self {
                    requests: 1,
                    first_seen: now,
                    last_seen: now,
                });
            }
        }
    }
}

/// Last use (Unix seconds, 0: never) of each credential kind on one route.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LastSeen {
    /// Client certificate.
    pub mtls: i64,
    /// Bearer token.
    pub token: i64,
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
    /// Last use per credential kind on each of `routes` (same order).
    #[serde(skip)]
    pub last_seen_on: Vec<LastSeen>,
    /// Pinned to client certificates by `migration.mtls_required`.
    pub pinned: bool,
    /// Matched by an `enforce: false` entry of `migration.mtls_required`.
    #[serde(skip_serializing_if = "is_false")]
    pub pinned_dry_run: bool,
    /// Requests served that an enforced lever would have refused.
    #[serde(skip_serializing_if = "is_zero")]
    pub would_refuse: u64,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Usage {
    fn record(&mut self, method: AuthMethod, route: &str, pin: Pin, now: i64) {
        let seen = match method {
            AuthMethod::Mtls => &mut self.mtls,
            AuthMethod::Token => &mut self.token,
        };
        Seen::bump(seen, now);
        let i = self
            .routes
            .iter()
            .position(|r| r == route)
            .unwrap_or_else(|| {
                self.routes.push(route.to_owned());
                self.last_seen_on.push(LastSeen::default());
                self.routes.len() - 1
            });
        if let Some(l) = self.last_seen_on.get_mut(i) {
            let t = match method {
                AuthMethod::Mtls => &mut l.mtls,
                AuthMethod::Token => &mut l.token,
            };
            *t = (*t).max(now);
        }
        self.pinned |= pin == Pin::Enforced;
        self.pinned_dry_run |= pin == Pin::DryRun;
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

/// What was seen on one route (a configured prefix, or `admin`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RouteRow {
    /// The route prefix.
    pub route: String,
    /// Client-certificate requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtls: Option<Seen>,
    /// Bearer-token requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Seen>,
    /// Requests served that an enforced lever would have refused, by reason.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub would_refuse: BTreeMap<&'static str, u64>,
}

/// Totals over the table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Client-certificate requests.
    pub mtls_requests: u64,
    /// Bearer-token requests.
    pub token_requests: u64,
    /// Identities tracked by name (not `other`).
    pub identities: usize,
    /// Of those, the ones that sent no token.
    pub mtls_only_identities: usize,
    /// Requests served that an enforced lever would have refused.
    pub would_refuse: u64,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Totals.
    pub summary: Summary,
    /// Tracked identities, token users first, then by name; `other` last.
    pub identities: Vec<Row>,
    /// Every configured route, by prefix.
    pub routes: Vec<RouteRow>,
    /// How many identities are tracked by name at most.
    pub max_identities: usize,
}

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) named: HashMap<Box<str>, Usage>,
    pub(super) other: Usage,
    /// Bounded by the configured routes (and `admin`).
    pub(super) routes: BTreeMap<Box<str>, RouteRow>,
}

/// The usage table.
#[derive(Debug)]
pub struct Tracker {
    max: usize,
    pub(super) label_identities: bool,
    pub(super) state: Mutex<State>,
}

impl Tracker {
    /// Tracks up to `max` identities by name; `label_identities` adds the
    /// identity label to the metrics.
    pub fn new(max: usize, label_identities: bool) -> Self {
        Self {
            max,
            label_identities,
            state: Mutex::default(),
        }
    }

    /// Lists the configured routes, so that each has its series (at 0,
    /// "never") before its first request.
    pub fn declare_routes<'a>(&self, prefixes: impl IntoIterator<Item = &'a str>) {
        let mut s = self.lock();
        for p in prefixes {
            route_row(&mut s.routes, p);
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one authenticated request (admitted or not).
    pub fn record(&self, user: &str, method: AuthMethod, route: &str, pin: Pin, now: i64) {
        let mut s = self.lock();
        let State {
            named,
            other,
            routes,
        } = &mut *s;
        let r = route_row(routes, route);
        Seen::bump(
            match method {
                AuthMethod::Mtls => &mut r.mtls,
                AuthMethod::Token => &mut r.token,
            },
            now,
        );
        usage_of(named, other, self.max, user).record(method, route, pin, now);
    }

    /// Records a request served only because its lever is a dry run:
    /// enforced, `reason` would have refused it. `track`: count it against
    /// the identity's row too (not for the admin endpoints, which have none).
    pub fn would_refuse(&self, user: &str, route: &str, reason: &'static str, track: bool) {
        let mut s = self.lock();
        let State {
            named,
            other,
            routes,
        } = &mut *s;
        *route_row(routes, route)
            .would_refuse
            .entry(reason)
            .or_default() += 1;
        if track {
            usage_of(named, other, self.max, user).would_refuse += 1;
        }
    }

    /// A snapshot.
    pub fn report(&self) -> Report {
        let s = self.lock();
        let mut summary = Summary::default();
        for u in s.named.values() {
            summary.identities += 1;
            summary.mtls_only_identities += usize::from(u.token.is_none());
        }
        for u in s.named.values().chain(std::iter::once(&s.other)) {
            summary.mtls_requests += u.mtls.map_or(0, |s| s.requests);
            summary.token_requests += u.token.map_or(0, |s| s.requests);
        }
        summary.would_refuse = s
            .routes
            .values()
            .flat_map(|r| r.would_refuse.values())
            .sum();
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
            summary,
            identities,
            routes: s.routes.values().cloned().collect(),
            max_identities: self.max,
        }
    }
}

fn route_row<'a>(routes: &'a mut BTreeMap<Box<str>, RouteRow>, route: &str) -> &'a mut RouteRow {
    if !routes.contains_key(route) {
        routes.insert(
            route.into(),
            RouteRow {
                route: route.to_owned(),
                ..RouteRow::default()
            },
        );
    }
    routes
        .get_mut(route)
        .expect("the route's row was inserted just above")
}

/// The row `user` counts against: its own while there is room (one
/// allocation, on its first request), else `other`.
fn usage_of<'a>(
    named: &'a mut HashMap<Box<str>, Usage>,
    other: &'a mut Usage,
    max: usize,
    user: &str,
) -> &'a mut Usage {
    let room = named.len() < max && user != OTHER;
    if room && !named.contains_key(user) {
        named.insert(user.into(), Usage::default());
    }
    named.get_mut(user).unwrap_or(other)
}

#[cfg(test)]
mod tests;
