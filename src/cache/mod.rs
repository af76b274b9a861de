//! The review cache shared by the token and access reviewers.
//!
//! - Keys are HMAC-SHA256 under a random per-process key ([`KeyHasher`]), so
//!   neither tokens nor precomputable hashes of them are ever stored.
//! - Entries are bounded ([`store`]: `quick_cache`, S3-FIFO) and carry their
//!   own TTL, so an accepted token can expire with its JWT and a deny can be
//!   shorter than an allow. The TTL given is a hard limit: the reviewers
//!   jitter it ([`jittered`]) and cap it (JWT `exp`) before it gets here.
//! - Concurrent lookups of one key share one fetch. The fetch runs in its own
//!   task with its own deadline, so a caller that goes away (client
//!   disconnect) does not cancel it for the others.
//! - Errors are never stored: the next lookup fetches again.
//! - Refresh-ahead: a hit in the last `refresh_ahead` fraction of an entry's
//!   life starts one background review of it (the hit is served at once). Its
//!   answer replaces the entry; if it fails, the entry is left to expire, so
//!   a refresh never extends trust past the TTL that was given.
//! - A flush is never undone by a review that was under way when it
//!   happened (refreshes included): each flush starts a new generation and
//!   detaches the flights, and an entry stored by a flight of an older
//!   generation counts only if no later flush covers it (checked on every
//!   read, so no store can race a flush).

mod flight;
mod flush;
mod jitter;
mod key;
mod lookups;
pub(crate) mod metrics;
mod store;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::Shared;

use crate::BoxFuture;
use crate::backend::BackendError;
use flush::{Doomed, Flushes};
pub(crate) use jitter::jittered;
pub(crate) use key::{Key, KeyHasher};
use lookups::note;
pub(crate) use lookups::traced;
pub(crate) use lookups::{Kind, Lookup, Lookups};
pub(crate) use metrics::Stats;
use store::{Cause, Entry, Store};

/// A cache whose counters and size are exported (read by
/// [`crate::metrics`] and [`metrics::Collector`] on each scrape).
pub trait CacheSource: Send + Sync + std::fmt::Debug + 'static {
    /// Lookup counters.
    fn stats(&self) -> &Stats;
    /// Approximate entries held.
    fn entries(&self) -> u64;
    /// Approximate bytes held.
    fn bytes(&self) -> u64 {
        0
    }
}

type Flight<V> = Shared<BoxFuture<'static, Result<V, BackendError>>>;

/// What a fetch yields: the value and how it may be kept.
type Fetched<V> = BoxFuture<'static, Result<(V, Keep), BackendError>>;

/// How long a review's answer may be kept (zero: not), and whether a hit
/// late in its life may refresh it ahead of expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keep {
    /// How long it may be served.
    pub ttl: Duration,
    /// False when a new answer could not outlive this one (a token's TTL
    /// cut short by its `exp`): refreshing it would only repeat the review.
    pub renewable: bool,
}

impl From<Duration> for Keep {
    /// Kept for `ttl`, renewable.
    fn from(ttl: Duration) -> Self {
        Self {
            ttl,
            renewable: true,
        }
    }
}

/// A flight and its number, so a finished flight removes only itself.
struct Flying<V> {
    id: u64,
    flight: Flight<V>,
}

/// A bounded, coalescing, per-entry-TTL, refresh-ahead cache of review
/// results.
pub struct ReviewCache<V: Clone + Send + Sync + 'static> {
    inner: Arc<Inner<V>>,
}

struct Inner<V: Clone + Send + Sync + 'static> {
    kind: Kind,
    store: Option<Store<V>>,
    flights: Mutex<HashMap<Key, Flying<V>>>,
    stats: Arc<Stats>,
    /// Bumped by every flush.
    generation: AtomicU64,
    /// Numbers flights.
    next_flight: AtomicU64,
    flushes: Mutex<Flushes<V>>,
    /// The end fraction of an entry's life in which a hit refreshes it.
    refresh_ahead: f64,
    /// Heap bytes a value holds on its own (for `authgate_cache_bytes`).
    weigh: fn(&V) -> usize,
    /// Whether a value is refreshed ahead of its expiry: only positive
    /// answers are (a rejection or deny just expires, so nobody can keep
    /// one re-reviewed outside their miss budget).
    refreshable: fn(&V) -> bool,
}

impl<V: Clone + Send + Sync + 'static> Inner<V> {
    /// Whether a stored entry still counts: stored in the current
    /// generation, or in an older one that no later flush covers.
    fn current(&self, generation: u64, value: &V) -> bool {
        if generation == self.generation.load(Ordering::Acquire) {
            return true;
        }
        let flushes = self.flushes.lock().unwrap_or_else(|e| e.into_inner());
        flushes.spare(generation, value)
    }

    /// The entry of `key` if it may be served at `now`; an expired or
    /// flushed one is taken out.
    fn live(&self, key: &Key) -> Option<(Entry<V>, u64)> {
        let store = self.store.as_ref()?;
        let entry = store.get(key)?;
        let now = store.now();
        let generation = entry.generation(self.generation.load(Ordering::Acquire));
        if !self.current(generation, &entry.value) {
            // Stored by a review a later flush covers.
            store.remove(key, &entry, Cause::Flush);
            return None;
        }
        if entry.expired(now) {
            store.remove(key, &entry, Cause::Expiry);
            return None;
        }
        Some((entry, now))
    }

    /// Starts a new generation and detaches every flight, so no lookup
    /// after the flush joins a review that began before it.
    fn flush(&self, doomed: Option<Doomed<V>>) {
        let mut flushes = self.flushes.lock().unwrap_or_else(|e| e.into_inner());
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        flushes.record(generation, doomed);
        drop(flushes);
        self.flights
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

impl<V: Clone + Send + Sync + 'static> std::fmt::Debug for ReviewCache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReviewCache")
            .field("kind", &self.inner.kind)
            .finish_non_exhaustive()
    }
}

impl<V: Clone + Send + Sync + 'static> CacheSource for ReviewCache<V> {
    fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    fn entries(&self) -> u64 {
        self.len()
    }

    fn bytes(&self) -> u64 {
        self.bytes()
    }
}

impl<V: Clone + Send + Sync + 'static> Clone for ReviewCache<V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

/// Whether a lookup was answered, or must wait on a flight (or retry).
enum Step<V> {
    Join(Flight<V>),
    Refused,
    Retry,
}

impl<V: Clone + Send + Sync + 'static> ReviewCache<V> {
    /// Holds at most `max_entries` results of `kind`; 0 stores nothing but
    /// still coalesces concurrent lookups. No refresh-ahead (see
    /// [`ReviewCache::with_refresh_ahead`]).
    pub fn new(kind: Kind, max_entries: u64) -> Self {
        Self::build(kind, max_entries, 0.0, |_| 0, |_| false)
    }

    /// Like [`ReviewCache::new`], refreshing hot entries in the last
    /// `refresh_ahead` fraction of their life (0: never), and counting
    /// `weigh(value)` heap bytes per value in [`ReviewCache::bytes`]; only
    /// values `refreshable` says so of are refreshed.
    pub fn build(
        kind: Kind,
        max_entries: u64,
        refresh_ahead: f64,
        weigh: fn(&V) -> usize,
        refreshable: fn(&V) -> bool,
    ) -> Self {
        let stats = Arc::new(Stats::default());
        let store = (max_entries > 0).then(|| Store::new(max_entries, stats.clone()));
        Self {
            inner: Arc::new(Inner {
                kind,
                store,
                flights: Mutex::new(HashMap::new()),
                stats,
                generation: AtomicU64::new(0),
                next_flight: AtomicU64::new(0),
                flushes: Mutex::new(Flushes::new()),
                refresh_ahead: refresh_ahead.clamp(0.0, 1.0),
                weigh,
                refreshable,
            }),
        }
    }

    /// The cached value for `key`, or the result of `fetch`, shared with every
    /// concurrent caller of the same key. `fetch` yields the value and how long
    /// to keep it (zero: do not keep).
    pub async fn get_or_fetch<F>(&self, key: Key, fetch: F) -> Result<V, BackendError>
    where
        F: FnOnce() -> Fetched<V>,
    {
        self.get_or_fetch_admitted(key, || true, fetch)
            .await
            .unwrap_or_else(|| unreachable!("every fetch is admitted"))
    }

    /// Like [`ReviewCache::get_or_fetch`], but a lookup that would start a
    /// fetch (a miss: neither stored nor under way) asks `admit` first.
    /// `None` when it says no: nothing is fetched or counted. A hit that
    /// starts a refresh-ahead review is not a miss: it is not asked.
    pub async fn get_or_fetch_admitted<A, F>(
        &self,
        key: Key,
        admit: A,
        fetch: F,
    ) -> Option<Result<V, BackendError>>
    where
        A: FnOnce() -> bool,
        F: FnOnce() -> Fetched<V>,
    {
        let inner = &self.inner;
        if let Some((hit, now)) = inner.live(&key) {
            inner.stats.hits.fetch_add(1, Ordering::Relaxed);
            note(inner.kind, Lookup::Hit);
            if hit.refresh_due(now)
                && inner
                    .store
                    .as_ref()
                    .is_some_and(|s| s.claim_refresh(&key, &hit))
            {
                self.refresh(key, fetch);
            }
            return Some(Ok(hit.value));
        }
        let (mut fetch, mut admit) = (Some(fetch), Some(admit));
        match self.join_or_launch(key, &mut admit, &mut fetch) {
            Step::Join(f) => Some(f.await),
            Step::Refused => None,
            Step::Retry => match (fetch, admit) {
                (Some(fetch), Some(admit)) => {
                    Box::pin(self.get_or_fetch_admitted(key, admit, fetch)).await
                }
                _ => unreachable!("fetch and admit are only taken when a flight starts"),
            },
        }
    }

    /// Under the flight table's lock: joins the flight of `key`, or starts
    /// one (if admitted), or asks for a retry when an answer landed since
    /// the miss.
    fn join_or_launch<A, F>(
        &self,
        key: Key,
        admit: &mut Option<A>,
        fetch: &mut Option<F>,
    ) -> Step<V>
    where
        A: FnOnce() -> bool,
        F: FnOnce() -> Fetched<V>,
    {
        let inner = &self.inner;
        let mut flights = inner.flights.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = flights.get(&key) {
            inner.stats.coalesced.fetch_add(1, Ordering::Relaxed);
            note(inner.kind, Lookup::Coalesced);
            return Step::Join(f.flight.clone());
        }
        if inner.live(&key).is_some() {
            // A flight finished between our miss and taking the lock.
            return Step::Retry;
        }
        if !admit.take().is_some_and(|a| a()) {
            return Step::Refused;
        }
        inner.stats.misses.fetch_add(1, Ordering::Relaxed);
        note(inner.kind, Lookup::Miss);
        let start = fetch.take().unwrap_or_else(|| unreachable!());
        let id = inner.next_flight.fetch_add(1, Ordering::Relaxed);
        let f = self.launch(key, id, start(), false);
        flights.insert(
            key,
            Flying {
                id,
                flight: f.clone(),
            },
        );
        Step::Join(f)
    }

    /// Starts the refresh-ahead review of a hot entry, unless a review of
    /// its key is under way. Nobody waits on it; a lookup after the entry
    /// expires joins it like any flight.
    fn refresh<F: FnOnce() -> Fetched<V>>(&self, key: Key, fetch: F) {
        let inner = &self.inner;
        let mut flights = inner.flights.lock().unwrap_or_else(|e| e.into_inner());
        if flights.contains_key(&key) {
            return;
        }
        inner.stats.refresh_started.fetch_add(1, Ordering::Relaxed);
        let id = inner.next_flight.fetch_add(1, Ordering::Relaxed);
        let flight = self.launch(key, id, fetch(), true);
        flights.insert(key, Flying { id, flight });
    }

    /// Drops every stored result, and every result of a review under way.
    pub fn clear(&self) {
        self.inner.flush(None);
        if let Some(store) = &self.inner.store {
            store.flush_if(|_| true);
        }
    }

    /// Drops the stored results for which `doomed` is true, now and when a
    /// review under way stores one.
    pub fn clear_if(&self, doomed: impl Fn(&V) -> bool + Send + Sync + 'static) {
        let doomed: Doomed<V> = Arc::new(doomed);
        self.inner.flush(Some(doomed.clone()));
        if let Some(store) = &self.inner.store {
            store.flush_if(|v| doomed(v));
        }
    }

    /// Approximate number of stored results.
    pub fn len(&self) -> u64 {
        self.inner.store.as_ref().map_or(0, Store::len)
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate bytes held: entries, the table, and what each value
    /// holds on its own.
    pub fn bytes(&self) -> u64 {
        self.inner.store.as_ref().map_or(0, Store::bytes)
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Kept for callers of the moka store (evictions are applied at once).
    pub async fn sync(&self) {}
}

#[cfg(test)]
mod tests;
