//! When the keys are fetched next (pure).
//!
//! Every `token_review.jwks.refresh`, or sooner when the JWKS response's
//! `Cache-Control` says it goes stale sooner (`max-age`; `no-cache` and
//! `no-store` count as 0), but never more often than [`MIN_INTERVAL`]: a
//! misconfigured issuer cannot make authgate poll the API server.
//! kube-apiserver itself answers `max-age=3600`, so there the configured
//! interval decides.

use std::time::Duration;

use http::HeaderMap;
use http::header::CACHE_CONTROL;

/// The shortest interval a `Cache-Control` header can ask for.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);

/// The freshness lifetime a JWKS response's `Cache-Control` gives, if any:
/// the smallest `max-age`, or 0 for `no-cache`/`no-store`.
pub fn max_age(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|directive| {
            let d = directive.trim();
            let (name, value) = d.split_once('=').unwrap_or((d, ""));
            let name = name.trim().to_ascii_lowercase();
            match name.as_str() {
                "no-cache" | "no-store" => Some(Duration::ZERO),
                "max-age" => value
                    .trim()
                    .trim_matches('"')
                    .parse::<u64>()
                    .ok()
                    .map(Duration::from_secs),
                _ => None,
            }
        })
        .min()
}

/// How long after a successful fetch the next one is due: `every`, or the
/// response's `max_age` when shorter, but at least [`MIN_INTERVAL`].
pub fn interval(every: Duration, max_age: Option<Duration>) -> Duration {
    match max_age {
        Some(age) => age.max(MIN_INTERVAL).min(every),
        None => every,
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(CACHE_CONTROL, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn max_age_reads_the_smallest_lifetime_or_nothing() {
        let s = Duration::from_secs;
        let cases: [(&[&str], Option<Duration>); 9] = [
            (&[], None),
            (&["public, max-age=3600"], Some(s(3600))),
            (&["Max-Age = 120"], Some(s(120))),
            (&["max-age=\"30\""], Some(s(30))),
            (&["max-age=300", "max-age=60"], Some(s(60))),
            (&["private, no-cache"], Some(Duration::ZERO)),
            (&["no-store, max-age=600"], Some(Duration::ZERO)),
            (&["max-age=soon"], None),
            (&["public, s-maxage=5"], None),
        ];
        for (values, want) in cases {
            assert_eq!(max_age(&headers(values)), want, "{values:?}");
        }
    }

    #[test]
    fn the_next_refresh_is_never_later_than_max_age_nor_sooner_than_the_floor() {
        let s = Duration::from_secs;
        let every = s(60);
        let cases = [
            (None, s(60)),
            (Some(s(3600)), s(60)),
            (Some(s(30)), s(30)),
            (Some(s(1)), MIN_INTERVAL),
            (Some(Duration::ZERO), MIN_INTERVAL),
        ];
        for (age, want) in cases {
            assert_eq!(interval(every, age), want, "{age:?}");
        }
    }
}
