//! The access log and request metrics: one structured line and one count per
//! request. A refused request is logged and counted by its [`Refusal`], the
//! same one its response was built from. Never a token, never a
//! certificate; the path is logged without its query string.

use std::net::SocketAddr;
use std::time::Duration;

use http::Method;

use super::error::{Outcome, Refusal};
use crate::cache::Lookups;
use crate::identity::AuthMethod;
use crate::identity::Identity;
use crate::metrics::{self, RouteCounters};

/// Whether a request was served.
pub enum Verdict<'a> {
    /// Forwarded (or, in `mode: auth`, answered 200).
    Allowed,
    /// Refused.
    Refused {
        /// The refusal the response was built from.
        refusal: &'a Refusal,
        /// Token-free detail of the error, for the log only.
        detail: &'a str,
    },
}

/// What happened to one request.
pub struct Record<'a> {
    /// Client address.
    pub peer: SocketAddr,
    /// HTTP method.
    pub method: &'a Method,
    /// Request path as received (no query).
    pub path: &'a str,
    /// Matched route prefix, if any.
    pub route: Option<&'a str>,
    /// The request series of that route (or of no route).
    pub counters: &'a RouteCounters,
    /// Who, once authenticated.
    pub identity: Option<&'a Identity>,
    /// Response status.
    pub status: u16,
    /// Served or refused.
    pub verdict: Verdict<'a>,
    /// Time to the response head.
    pub latency: Duration,
    /// What the review caches did.
    pub lookups: Lookups,
    /// The listener's name, with several listeners ("" with one).
    pub listener: &'a str,
    /// Served in a dry run that, enforced, would refuse it for this reason.
    pub would_refuse: Option<&'a str>,
}

/// Logs and counts `r`.
pub fn record(r: &Record<'_>) {
    let auth = r.identity.map_or("none", |i| i.method().as_str());
    let route = r.route.unwrap_or("");
    let (outcome, reason, detail) = match r.verdict {
        Verdict::Allowed => (Outcome::Allowed, "allowed", ""),
        Verdict::Refused { refusal, detail } => {
            (refusal.outcome(), refusal.reason.as_str(), detail)
        }
    };
    let slot = metrics::Slot {
        auth: match r.identity.map(|i| i.method()) {
            None => 0,
            Some(AuthMethod::Mtls) => 1,
            Some(AuthMethod::Token) => 2,
        },
        outcome: (outcome.index(), outcome.as_str()),
    };
    r.counters.count(slot, r.latency.as_secs_f64());
    crate::access_log::write(&crate::access_log::Line {
        peer: r.peer,
        method: r.method,
        path: r.path,
        route,
        user: r.identity.map_or("", |i| i.user()),
        groups: r.identity.map_or(0, |i| i.groups().len()),
        auth,
        status: r.status,
        reason,
        detail,
        latency_us: u64::try_from(r.latency.as_micros()).unwrap_or(u64::MAX),
        token_cache: r.lookups.token.as_str(),
        access_cache: r.lookups.access.as_str(),
        listener: r.listener,
        would_refuse: r.would_refuse,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The series slots name the labels the families would.
    #[test]
    fn slots_match_the_label_values() {
        assert_eq!(Outcome::ALL.len(), metrics::OUTCOMES);
        for (i, o) in Outcome::ALL.into_iter().enumerate() {
            assert_eq!(o.index(), i, "{o:?}");
        }
        assert_eq!(metrics::AUTHS[1], AuthMethod::Mtls.as_str());
        assert_eq!(metrics::AUTHS[2], AuthMethod::Token.as_str());
    }
}
