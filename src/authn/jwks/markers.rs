//! Rejection markers: tokens TokenReview rejected, which a signature must
//! not bring back (pure but for a mutex; the caller passes the time).
//!
//! They live apart from the cache of verified tokens, where a flood of
//! other tokens could evict them, in two bounded sets:
//!
//! - **revoked**: tokens whose signature verified here and that TokenReview
//!   then rejected (a deleted Pod, Secret or ServiceAccount). Only a token
//!   the cluster signed can enter, so unauthenticated traffic cannot fill
//!   it. Should it fill anyway, the marker that does not fit is not
//!   silently lost: until that token's `exp`, every locally verified token
//!   also goes to TokenReview ([`Revoked::overflowed`]).
//! - **unknown kid**: tokens under a key not (yet) in the key set that
//!   TokenReview rejected, in case their key is published later. Anyone can
//!   send such tokens, so the set is small ([`UNKNOWN_KID_MARKERS`]); a
//!   rejection that does not fit leaves no marker, only its time
//!   ([`KidDrops`]): for [`REJECTION_MEMORY`] after it, tokens of keys
//!   first loaded after it go to TokenReview.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cache::Key;

/// How long a token with an unknown key that TokenReview rejected stays
/// TokenReview-only (its `exp` is unknown: it was not verified).
pub const REJECTION_MEMORY: Duration = Duration::from_secs(3600);

/// Unknown-kid markers kept at most.
pub const UNKNOWN_KID_MARKERS: usize = 1024;

/// A bounded set of token keys, each until its `exp` (Unix seconds).
#[derive(Debug)]
pub struct MarkerSet {
    cap: usize,
    marks: Mutex<HashMap<Key, u64>>,
}

impl MarkerSet {
    /// Holds at most `cap` markers.
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            marks: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `key` is marked at `now`.
    pub fn contains(&self, key: &Key, now: u64) -> bool {
        self.lock().get(key).is_some_and(|exp| *exp > now)
    }

    /// Marks `key` until `exp`; `false` when the set is full of unexpired
    /// markers (the caller decides what that means).
    pub fn insert(&self, key: Key, exp: u64, now: u64) -> bool {
        let mut marks = self.lock();
        if marks.len() >= self.cap && !marks.contains_key(&key) {
            marks.retain(|_, e| *e > now);
            if marks.len() >= self.cap {
                return false;
            }
        }
        let e = marks.entry(key).or_insert(exp);
        *e = (*e).max(exp);
        true
    }

    /// Markers held (expired ones included until the next sweep).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, u64>> {
        self.marks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The revoked set and what fell out of it.
#[derive(Debug)]
pub struct Revoked {
    set: MarkerSet,
    /// The latest `exp` of a revoked token that found the set full.
    overflow_until: Mutex<u64>,
}

impl Revoked {
    /// Holds at most `cap` markers.
    pub fn new(cap: usize) -> Self {
        Self {
            set: MarkerSet::new(cap),
            overflow_until: Mutex::new(0),
        }
    }

    /// Whether `key` is marked revoked.
    pub fn contains(&self, key: &Key, now: u64) -> bool {
        self.set.contains(key, now)
    }

    /// Marks `key` revoked until `exp`, or, when the set is full, remembers
    /// that some revoked token until `exp` has no marker.
    pub fn insert(&self, key: Key, exp: u64, now: u64) {
        if !self.set.insert(key, exp, now) {
            let mut until = self
                .overflow_until
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            *until = (*until).max(exp);
        }
    }

    /// Whether a revoked token without a marker may still be valid at
    /// `now`: then no local verification can be trusted alone.
    pub fn overflowed(&self, now: u64) -> bool {
        *self
            .overflow_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            > now
    }
}

/// When unknown-kid rejections found their set full: the first and the
/// latest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KidDrops(Option<(Instant, Instant)>);

impl KidDrops {
    /// Records a rejection left unmarked at `now`.
    pub fn record(&mut self, now: Instant) {
        self.0 = Some(match self.0 {
            Some((first, _)) => (first, now),
            None => (now, now),
        });
    }

    /// Whether a token under a key first loaded at `first_seen` must go to
    /// TokenReview at `now`: an unmarked rejection within the last
    /// [`REJECTION_MEMORY`] could be of a token under that key, if the key
    /// arrived after it. Conservative: an unmarked rejection older than
    /// the key is assumed to be as old as it can still matter.
    pub fn key_needs_review(&self, first_seen: Instant, now: Instant) -> bool {
        let Some((first, latest)) = self.0 else {
            return false;
        };
        if now.saturating_duration_since(latest) >= REJECTION_MEMORY {
            return false;
        }
        let floor = now
            .checked_sub(REJECTION_MEMORY)
            .map_or(first, |f| f.max(first));
        first_seen > floor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u8) -> Key {
        [i; 16]
    }

    #[test]
    fn a_marker_set_is_bounded_and_makes_room_only_from_expired_markers() {
        let s = MarkerSet::new(2);
        assert!(s.insert(key(1), 100, 0));
        assert!(s.insert(key(2), 200, 0));
        assert!(!s.insert(key(3), 300, 0), "full of live markers");
        assert!(s.insert(key(1), 150, 0), "a marked key is renewed in place");
        assert!(s.contains(&key(1), 120));
        assert!(!s.contains(&key(3), 0));
        // Once key 1 expired, it makes room.
        assert!(!s.contains(&key(1), 150));
        assert!(s.insert(key(3), 300, 160));
        assert_eq!(s.len(), 2);
        assert!(s.contains(&key(2), 160) && s.contains(&key(3), 160));
    }

    #[test]
    fn a_revoked_marker_that_does_not_fit_distrusts_local_verification_until_its_exp() {
        let r = Revoked::new(1);
        r.insert(key(1), 100, 0);
        assert!(!r.overflowed(0));
        r.insert(key(2), 500, 0);
        assert!(!r.contains(&key(2), 0), "no room");
        assert!(r.overflowed(0) && r.overflowed(499));
        assert!(!r.overflowed(500), "the unmarked token has expired");
        assert!(r.contains(&key(1), 0), "the first marker stays");
    }

    #[test]
    fn keys_loaded_after_an_unmarked_rejection_need_review_for_an_hour() {
        let t0 = Instant::now();
        let min = Duration::from_secs(60);
        let old_key = t0;
        let mut d = KidDrops::default();
        assert!(!d.key_needs_review(old_key, t0 + min));
        d.record(t0 + min);
        let new_key = t0 + min * 2;
        assert!(!d.key_needs_review(old_key, t0 + min * 3), "loaded before");
        assert!(d.key_needs_review(new_key, t0 + min * 3));
        // An hour after the last unmarked rejection, nothing is pending.
        assert!(!d.key_needs_review(new_key, t0 + min * 61));
        // Later rejections keep it going for keys loaded after the first
        // one that may still matter (conservatively: an hour ago).
        d.record(t0 + min * 70);
        assert!(d.key_needs_review(t0 + min * 20, t0 + min * 71));
        assert!(
            !d.key_needs_review(new_key, t0 + min * 71),
            "older than the hour"
        );
    }
}
