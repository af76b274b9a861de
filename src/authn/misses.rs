//! `token_review.max_misses_per_client`: how many tokens one client may
//! send per second that no cache answers, i.e. that would cost a TokenReview.
//!
//! Each client has a token bucket of `rate` per second holding up to
//! [`burst`] tokens. Answers from a cache (hits, and lookups that join a
//! review already under way) never take from it; only a lookup that would
//! start an API call does. Over the limit the token is refused (401
//! `token_misses_exceeded`) without an API call, so a flood of garbage
//! tokens from one address cannot spend the TokenReview budget
//! (`kubernetes.qps`, `max_in_flight`) that every other client shares.
//!
//! The client is the connection's peer address, as a rate limit keyed on
//! Envoy's `remote_address` is: never a header, which the client could vary
//! per request. IPv6 peers count per /64 (one host usually owns one), and
//! IPv4-mapped IPv6 as IPv4. In `mode: auth` the peer is the front proxy.
//!
//! Memory is bounded: at most [`MAX_CLIENTS`] buckets. A full bucket is
//! forgotten (it says nothing a new one would not); when every bucket is
//! in use, new clients share one overflow bucket rather than go unlimited.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Clients tracked at once; more share the overflow bucket.
pub const MAX_CLIENTS: usize = 16_384;

/// A bucket holds `rate` × this many seconds of misses.
pub const BURST_SECONDS: u32 = 2;

/// The bucket size for `rate` misses per second.
pub fn burst(rate: u32) -> u32 {
    rate.saturating_mul(BURST_SECONDS)
}

/// One client's token bucket (pure: the caller passes the time).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket at `now`.
    pub fn full(now: Instant, burst: u32) -> Self {
        Self {
            tokens: f64::from(burst),
            at: now,
        }
    }

    fn level(&self, now: Instant, rate: u32, burst: u32) -> f64 {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * f64::from(rate);
        (self.tokens + refill).min(f64::from(burst))
    }

    /// Takes one miss at `now`: whether the client is within its limit.
    pub fn take(&mut self, now: Instant, rate: u32, burst: u32) -> bool {
        let level = self.level(now, rate, burst);
        self.at = now.max(self.at);
        if level >= 1.0 {
            self.tokens = level - 1.0;
            true
        } else {
            self.tokens = level;
            false
        }
    }

    /// Whether the bucket has refilled (and may be forgotten).
    pub fn is_full(&self, now: Instant, rate: u32, burst: u32) -> bool {
        self.level(now, rate, burst) >= f64::from(burst)
    }
}

pub use crate::peer::counted_as as client_key;

/// The buckets of every client (see the module docs).
#[derive(Debug)]
pub struct MissLimiter {
    rate: u32,
    burst: u32,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    buckets: HashMap<IpAddr, Bucket>,
    overflow: Bucket,
    /// The last sweep of full buckets: at most one per refill period.
    swept: Instant,
}

impl MissLimiter {
    /// `rate` misses per second per client; `None` when `rate` is 0 (off).
    pub fn new(rate: u32) -> Option<Self> {
        let now = Instant::now();
        (rate > 0).then(|| Self {
            rate,
            burst: burst(rate),
            state: Mutex::new(State {
                buckets: HashMap::new(),
                overflow: Bucket::full(now, burst(rate)),
                swept: now,
            }),
        })
    }

    /// Takes one miss for `peer` at `now`: whether it may cost an API call.
    pub fn admit(&self, peer: IpAddr, now: Instant) -> bool {
        let (rate, burst) = (self.rate, self.burst);
        let key = client_key(peer);
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = s.buckets.get_mut(&key) {
            return b.take(now, rate, burst);
        }
        let period = Duration::from_secs(u64::from(BURST_SECONDS));
        if s.buckets.len() >= MAX_CLIENTS && now.saturating_duration_since(s.swept) >= period {
            s.swept = now;
            s.buckets.retain(|_, b| !b.is_full(now, rate, burst));
        }
        if s.buckets.len() >= MAX_CLIENTS {
            return s.overflow.take(now, rate, burst);
        }
        let mut b = Bucket::full(now, burst);
        let ok = b.take(now, rate, burst);
        s.buckets.insert(key, b);
        ok
    }

    /// Clients tracked now.
    pub fn clients(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .buckets
            .len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let (rate, burst) = (10, burst(10));
        let mut b = Bucket::full(t0, burst);
        let taken = (0..100).filter(|_| b.take(t0, rate, burst)).count();
        assert_eq!(taken, 20, "the burst, at once");
        assert!(!b.take(t0, rate, burst));
        // 100 ms later one more (10/s), then none.
        assert!(b.take(t0 + ms(100), rate, burst));
        assert!(!b.take(t0 + ms(100), rate, burst));
        assert!(!b.is_full(t0 + ms(100), rate, burst));
        // Refilled after two seconds, never above the burst.
        assert!(b.is_full(t0 + ms(2200), rate, burst));
        let taken = (0..100)
            .filter(|_| b.take(t0 + ms(60_000), rate, burst))
            .count();
        assert_eq!(taken, 20);
        // Time going backwards refills nothing.
        assert!(!b.take(t0, rate, burst));
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let cases = [
            ("192.0.2.7", "192.0.2.7"),
            ("::ffff:192.0.2.7", "192.0.2.7"),
            ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"),
            ("2001:db8:1:2:ffff::1", "2001:db8:1:2::"),
            ("::1", "::"),
        ];
        for (peer, want) in cases {
            let got = client_key(peer.parse().unwrap());
            assert_eq!(got, want.parse::<IpAddr>().unwrap(), "{peer}");
        }
    }

    #[test]
    fn one_client_over_its_limit_leaves_the_others_theirs() {
        let l = MissLimiter::new(10).unwrap();
        let now = Instant::now();
        let flood: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        let admitted = (0..1000).filter(|_| l.admit(flood, now)).count();
        assert_eq!(admitted, 20);
        assert!(l.admit(other, now));
        assert!(!l.admit(flood, now));
        assert!(MissLimiter::new(0).is_none(), "0 turns the limit off");
    }

    #[test]
    fn memory_is_bounded_and_overflow_clients_share_one_bucket() {
        let l = MissLimiter::new(1).unwrap();
        let now = Instant::now();
        let ip = |i: usize| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + u32::try_from(i).unwrap()));
        for i in 0..MAX_CLIENTS {
            assert!(l.admit(ip(i), now));
        }
        assert_eq!(l.clients(), MAX_CLIENTS);
        // Every bucket is in use: newcomers share the overflow bucket (2).
        let newcomers = (0..100)
            .filter(|i| l.admit(ip(MAX_CLIENTS + i), now))
            .count();
        assert_eq!(newcomers, 2);
        assert_eq!(l.clients(), MAX_CLIENTS);
        // Once the buckets have refilled they are forgotten for newcomers.
        let later = now + Duration::from_secs(3);
        assert!(l.admit(ip(MAX_CLIENTS + 1000), later));
        assert_eq!(l.clients(), 1);
    }
}
