//! The review cache shared by the token and access reviewers.
//!
//! - Keys are HMAC-SHA256 under a random per-process key ([`KeyHasher`]), so
//!   neither tokens nor precomputable hashes of them are ever stored.
//! - Entries are bounded (moka, TinyLFU) and carry their own TTL, so an
//!   accepted token can expire with its JWT and a deny can be shorter than an
//!   allow.
//! - Concurrent lookups of one key share one fetch. The fetch runs in its own
//!   task with its own deadline, so a caller that goes away (client
//!   disconnect) does not cancel it for the others.
//! - Errors are never stored: the next lookup fetches again.
//! - A flush is never undone by a review that was under way when it
//!   happened: each flush starts a new generation and detaches the flights,
//!   and an entry stored by a flight of an older generation counts only if
//!   no later flush covers it (checked on every read, so no store can race
//!   a flush).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::Shared;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::BoxFuture;
use crate::backend::BackendError;

/// A cache key: HMAC-SHA256 of the length-prefixed parts.
pub(crate) type Key = [u8; 32];

/// Derives cache keys under a secret drawn once per process.
#[derive(Clone)]
pub struct KeyHasher {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher([REDACTED])")
    }
}

impl KeyHasher {
    /// A hasher with a fresh random key.
    pub fn random() -> Self {
        let mut secret = [0u8; 32];
        // SystemRandom only fails when the OS has no entropy source at all;
        // a zero key would still not store raw tokens.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret);
        Self {
            mac: <Hmac<Sha256> as KeyInit>::new_from_slice(&secret)
                .unwrap_or_else(|_| unreachable!()),
        }
    }

    /// HMAC over each part prefixed by its length, so `("ab", "c")` and
    /// `("a", "bc")` differ.
    pub fn key(&self, parts: &[&[u8]]) -> Key {
        let mut b = self.builder();
        for p in parts {
            b.part(p);
        }
        b.finish()
    }

    /// Starts a key to be fed part by part.
    pub fn builder(&self) -> KeyBuilder {
        KeyBuilder(self.mac.clone())
    }
}

/// A key being built; see [`KeyHasher::key`].
pub struct KeyBuilder(Hmac<Sha256>);

impl KeyBuilder {
    /// Adds one length-prefixed part.
    pub fn part(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update(&(bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
        self
    }

    /// The key.
    pub fn finish(self) -> Key {
        self.0.finalize().into_bytes().into()
    }
}

/// A cache whose counters and size are exported (read by
/// [`crate::metrics`] on each scrape).
pub trait CacheSource: Send + Sync + std::fmt::Debug + 'static {
    /// Lookup counters.
    fn stats(&self) -> &Stats;
    /// Approximate entries held.
    fn entries(&self) -> u64;
}

/// Which review cache a lookup went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// TokenReview results.
    Token,
    /// SubjectAccessReview decisions.
    Access,
}

impl Kind {
    /// The API kind, as named in errors.
    pub fn backend(self) -> &'static str {
        match self {
            Self::Token => "TokenReview",
            Self::Access => "SubjectAccessReview",
        }
    }
}

/// What a cache did for one lookup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lookup {
    /// Not consulted.
    #[default]
    None,
    /// Answered from the cache.
    Hit,
    /// Started an API call.
    Miss,
    /// Joined an API call already under way.
    Coalesced,
}

impl Lookup {
    /// The lower-case name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Coalesced => "coalesced",
        }
    }
}

/// The lookups made while serving one request (for the access log).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lookups {
    /// The token cache.
    pub token: Lookup,
    /// The access cache.
    pub access: Lookup,
}

tokio::task_local! {
    static LOOKUPS: std::cell::Cell<Lookups>;
}

/// Runs `f`, recording what the caches did for it.
pub(crate) async fn traced<F: Future>(f: F) -> (F::Output, Lookups) {
    LOOKUPS
        .scope(std::cell::Cell::new(Lookups::default()), async {
            let out = f.await;
            (out, LOOKUPS.with(std::cell::Cell::get))
        })
        .await
}

fn note(kind: Kind, lookup: Lookup) {
    let _ = LOOKUPS.try_with(|c| {
        let mut l = c.get();
        match kind {
            Kind::Token => l.token = lookup,
            Kind::Access => l.access = lookup,
        }
        c.set(l);
    });
}

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
}

#[derive(Clone)]
struct Timed<V> {
    value: V,
    ttl: Duration,
    /// The generation its flight was launched in.
    generation: u64,
}

/// Per-user flushes kept for the read check; more collapse into a full one.
const MAX_FLUSH_MARKS: usize = 64;

/// A flush predicate, applied to entries older than its generation.
type Doomed<V> = Arc<dyn Fn(&V) -> bool + Send + Sync>;

/// What flushes happened, for entries of older generations.
struct Flushes<V> {
    /// Entries of a generation below this were flushed whole.
    valid_from: u64,
    /// Per-user flushes: entries below the generation that match are gone.
    marks: Vec<(u64, Doomed<V>)>,
}

struct TtlFromEntry;

impl<V> moka::Expiry<Key, Timed<V>> for TtlFromEntry {
    fn expire_after_create(&self, _: &Key, entry: &Timed<V>, _: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }
}

type Flight<V> = Shared<BoxFuture<'static, Result<V, BackendError>>>;

/// A flight and its number, so a finished flight removes only itself.
struct Flying<V> {
    id: u64,
    flight: Flight<V>,
}

/// A bounded, coalescing, per-entry-TTL cache of review results.
pub struct ReviewCache<V: Clone + Send + Sync + 'static> {
    inner: Arc<Inner<V>>,
}

struct Inner<V: Clone + Send + Sync + 'static> {
    kind: Kind,
    store: Option<moka::future::Cache<Key, Timed<V>>>,
    flights: Mutex<HashMap<Key, Flying<V>>>,
    stats: Stats,
    /// Bumped by every flush.
    generation: AtomicU64,
    /// Numbers flights.
    next_flight: AtomicU64,
    flushes: Mutex<Flushes<V>>,
}

/// Removes a finished flight from the table when its task ends (unless a
/// flush detached it and a newer flight took its key).
struct Landing<V: Clone + Send + Sync + 'static> {
    inner: Arc<Inner<V>>,
    key: Key,
    id: u64,
}

impl<V: Clone + Send + Sync + 'static> Drop for Landing<V> {
    fn drop(&mut self) {
        let mut flights = self.inner.flights.lock().unwrap_or_else(|e| e.into_inner());
        if flights.get(&self.key).is_some_and(|f| f.id == self.id) {
            flights.remove(&self.key);
        }
    }
}

impl<V: Clone + Send + Sync + 'static> Inner<V> {
    /// Whether a stored entry still counts: stored in the current
    /// generation, or in an older one that no later flush covers.
    fn current(&self, entry: &Timed<V>) -> bool {
        if entry.generation == self.generation.load(Ordering::Acquire) {
            return true;
        }
        let flushes = self.flushes.lock().unwrap_or_else(|e| e.into_inner());
        entry.generation >= flushes.valid_from
            && !flushes
                .marks
                .iter()
                .any(|(g, doomed)| entry.generation < *g && doomed(&entry.value))
    }

    /// Starts a new generation and detaches every flight, so no lookup
    /// after the flush joins a review that began before it.
    fn flush(&self, doomed: Option<Doomed<V>>) {
        let mut flushes = self.flushes.lock().unwrap_or_else(|e| e.into_inner());
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        match doomed {
            Some(d) if flushes.marks.len() < MAX_FLUSH_MARKS => flushes.marks.push((generation, d)),
            _ => {
                flushes.valid_from = generation;
                flushes.marks.clear();
            }
        }
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
}

impl<V: Clone + Send + Sync + 'static> Clone for ReviewCache<V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<V: Clone + Send + Sync + 'static> ReviewCache<V> {
    /// Holds at most `max_entries` results of `kind`; 0 stores nothing but
    /// still coalesces concurrent lookups.
    pub fn new(kind: Kind, max_entries: u64) -> Self {
        let store = (max_entries > 0).then(|| {
            moka::future::Cache::builder()
                .max_capacity(max_entries)
                .expire_after(TtlFromEntry)
                .support_invalidation_closures()
                .build()
        });
        Self {
            inner: Arc::new(Inner {
                kind,
                store,
                flights: Mutex::new(HashMap::new()),
                stats: Stats::default(),
                generation: AtomicU64::new(0),
                next_flight: AtomicU64::new(0),
                flushes: Mutex::new(Flushes {
                    valid_from: 0,
                    marks: Vec::new(),
                }),
            }),
        }
    }

    /// The cached value for `key`, or the result of `fetch`, shared with every
    /// concurrent caller of the same key. `fetch` yields the value and how long
    /// to keep it (zero: do not keep).
    pub async fn get_or_fetch<F>(&self, key: Key, fetch: F) -> Result<V, BackendError>
    where
        F: FnOnce() -> BoxFuture<'static, Result<(V, Duration), BackendError>>,
    {
        self.get_or_fetch_admitted(key, || true, fetch)
            .await
            .unwrap_or_else(|| unreachable!("every fetch is admitted"))
    }

    /// Like [`ReviewCache::get_or_fetch`], but a lookup that would start a
    /// fetch (a miss: neither stored nor under way) asks `admit` first.
    /// `None` when it says no: nothing is fetched or counted.
    pub async fn get_or_fetch_admitted<A, F>(
        &self,
        key: Key,
        admit: A,
        fetch: F,
    ) -> Option<Result<V, BackendError>>
    where
        A: FnOnce() -> bool,
        F: FnOnce() -> BoxFuture<'static, Result<(V, Duration), BackendError>>,
    {
        let inner = &self.inner;
        if let Some(store) = &inner.store
            && let Some(hit) = store.get(&key).await
        {
            if inner.current(&hit) {
                inner.stats.hits.fetch_add(1, Ordering::Relaxed);
                note(inner.kind, Lookup::Hit);
                return Some(Ok(hit.value));
            }
            // Stored by a review a later flush covers.
            store.invalidate(&key).await;
        }
        let mut fetch = Some(fetch);
        let mut admit = Some(admit);
        let flight = {
            let mut flights = inner.flights.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(f) = flights.get(&key) {
                inner.stats.coalesced.fetch_add(1, Ordering::Relaxed);
                note(inner.kind, Lookup::Coalesced);
                Some(f.flight.clone())
            } else if inner.store.as_ref().is_some_and(|s| s.contains_key(&key)) {
                // A flight finished between our miss and taking the lock.
                None
            } else if !admit.take().is_some_and(|a| a()) {
                return None;
            } else {
                inner.stats.misses.fetch_add(1, Ordering::Relaxed);
                note(inner.kind, Lookup::Miss);
                let start = fetch.take().unwrap_or_else(|| unreachable!());
                let id = inner.next_flight.fetch_add(1, Ordering::Relaxed);
                let f = self.launch(key, id, start());
                flights.insert(
                    key,
                    Flying {
                        id,
                        flight: f.clone(),
                    },
                );
                Some(f)
            }
        };
        match (flight, fetch, admit) {
            (Some(f), _, _) => Some(f.await),
            (None, Some(fetch), Some(admit)) => {
                Box::pin(self.get_or_fetch_admitted(key, admit, fetch)).await
            }
            (None, _, _) => unreachable!("fetch and admit are only taken when a flight starts"),
        }
    }

    /// Runs `fut` in its own task: it completes even if every caller goes
    /// away. A panic in it becomes an error, never a value.
    fn launch(
        &self,
        key: Key,
        id: u64,
        fut: BoxFuture<'static, Result<(V, Duration), BackendError>>,
    ) -> Flight<V> {
        let inner = self.inner.clone();
        let backend = inner.kind.backend();
        // Taken before the review starts: a flush from here on covers it.
        let generation = inner.generation.load(Ordering::Acquire);
        let task = tokio::spawn(async move {
            // Leaves the flight table however the task ends, panics included.
            let _landing = Landing {
                inner: inner.clone(),
                key,
                id,
            };
            let result = fut.await;
            match &result {
                Ok((value, ttl)) if !ttl.is_zero() => {
                    let entry = Timed {
                        value: value.clone(),
                        ttl: *ttl,
                        generation,
                    };
                    // A flush since launch: not worth storing (and the read
                    // check would refuse it should a flush race this test).
                    if let Some(store) = &inner.store
                        && inner.current(&entry)
                    {
                        store.insert(key, entry).await;
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    inner.stats.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            result.map(|(v, _)| v)
        });
        let joined: BoxFuture<'static, Result<V, BackendError>> = Box::pin(async move {
            task.await.unwrap_or_else(|_| {
                Err(BackendError::BadResponse {
                    backend,
                    detail: "the review task panicked".into(),
                })
            })
        });
        joined.shared()
    }

    /// Drops every stored result, and every result of a review under way.
    pub fn clear(&self) {
        self.inner.flush(None);
        if let Some(store) = &self.inner.store {
            store.invalidate_all();
        }
    }

    /// Drops the stored results for which `doomed` is true, now and when a
    /// review under way stores one.
    pub fn clear_if(&self, doomed: impl Fn(&V) -> bool + Send + Sync + 'static) {
        let doomed: Doomed<V> = Arc::new(doomed);
        self.inner.flush(Some(doomed.clone()));
        if let Some(store) = &self.inner.store {
            // Fails only without `support_invalidation_closures`, set in `new`.
            let _ = store.invalidate_entries_if(move |_, entry| doomed(&entry.value));
        }
    }

    /// Approximate number of stored results.
    pub fn len(&self) -> u64 {
        self.inner
            .store
            .as_ref()
            .map_or(0, moka::future::Cache::entry_count)
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Applies moka's pending evictions (tests and metrics).
    pub async fn sync(&self) {
        if let Some(store) = &self.inner.store {
            store.run_pending_tasks().await;
        }
    }
}

#[cfg(test)]
mod tests;
