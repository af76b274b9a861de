//! The bounded store under [`super::ReviewCache`]: `quick_cache` (S3-FIFO
//! with ghost entries), chosen over moka by measurement (~89 vs ~440 bytes
//! per entry and ~60 vs ~480 ns per hit, `bench/results/*-caches-store.txt`).
//! A key seen once sits in the small "cold" queue and leaves first, so a
//! flood of one-off (bad) tokens does not push out entries in use.
//!
//! Expiry is per entry and checked on every read (with the clock of
//! `tokio::time`, which tests can pause); an expired entry nobody reads
//! again leaves when room is needed. Evictions are counted by cause.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use quick_cache::{Lifecycle, UnitWeighter};
use tokio::time::Instant;

use super::key::{Key, KeyBits};
use super::metrics::Stats;

/// A stored answer.
pub(super) struct Entry<V> {
    pub(super) value: V,
    /// Never served at or after this.
    pub(super) expires: Instant,
    /// A hit from here on starts a refresh-ahead review (`None`: never).
    pub(super) refresh_at: Option<Instant>,
    /// The generation its review was launched in.
    pub(super) generation: u64,
    /// Set by the hit that starts its refresh, so it starts once.
    pub(super) refreshing: AtomicBool,
    /// What it counts in `authgate_cache_bytes`.
    bytes: u64,
}

impl<V> Entry<V> {
    /// An entry stored `now` for `ttl`; `refresh_ahead` is the fraction of
    /// its life at the end in which a hit refreshes it (0: never).
    pub(super) fn new(
        value: V,
        now: Instant,
        ttl: Duration,
        refresh_ahead: f64,
        generation: u64,
        own_bytes: usize,
    ) -> Self {
        let refresh_at =
            (refresh_ahead > 0.0).then(|| now + ttl.mul_f64((1.0 - refresh_ahead).max(0.0)));
        Self {
            value,
            expires: now + ttl,
            refresh_at,
            generation,
            refreshing: AtomicBool::new(false),
            bytes: (size_of::<Self>() + 16 + own_bytes) as u64,
        }
    }

    /// Whether a hit at `now` should start its refresh.
    pub(super) fn refresh_due(&self, now: Instant) -> bool {
        self.refresh_at.is_some_and(|at| now >= at)
    }
}

type Slot<V> = Arc<Entry<V>>;

/// Counts what the store evicts for room (or finds expired while doing so).
#[derive(Clone)]
struct Evictions {
    stats: Arc<Stats>,
    bytes: Arc<AtomicU64>,
}

impl<V> Lifecycle<Key, Slot<V>> for Evictions {
    type RequestState = ();

    fn on_evict(&self, _: &mut (), _: Key, entry: Slot<V>) {
        self.bytes.fetch_sub(entry.bytes, Ordering::Relaxed);
        let cause = if entry.expires <= Instant::now() {
            &self.stats.evicted_expiry
        } else {
            &self.stats.evicted_size
        };
        Stats::add(cause, 1);
    }
}

/// Why an entry is taken out.
#[derive(Clone, Copy)]
pub(super) enum Cause {
    Expiry,
    Flush,
}

/// The bounded table of entries.
pub(super) struct Store<V> {
    table: quick_cache::sync::Cache<Key, Slot<V>, UnitWeighter, KeyBits, Evictions>,
    stats: Arc<Stats>,
    /// Bytes of the entries held (the table's own memory is added on read).
    bytes: Arc<AtomicU64>,
}

impl<V: Clone + Send + Sync + 'static> Store<V> {
    /// At most about `capacity` entries.
    pub(super) fn new(capacity: u64, stats: Arc<Stats>) -> Self {
        let bytes = Arc::new(AtomicU64::new(0));
        let evictions = Evictions {
            stats: stats.clone(),
            bytes: bytes.clone(),
        };
        let items = usize::try_from(capacity).unwrap_or(usize::MAX);
        Self {
            table: quick_cache::sync::Cache::with(
                items,
                capacity,
                UnitWeighter,
                KeyBits,
                evictions,
            ),
            stats,
            bytes,
        }
    }

    pub(super) fn get(&self, key: &Key) -> Option<Slot<V>> {
        self.table.get(key)
    }

    pub(super) fn insert(&self, key: Key, entry: Entry<V>) {
        self.bytes.fetch_add(entry.bytes, Ordering::Relaxed);
        // A replaced entry is not reported as evicted: take its bytes off.
        if let Some(old) = self.table.peek(&key) {
            self.bytes.fetch_sub(old.bytes, Ordering::Relaxed);
        }
        self.table.insert(key, Arc::new(entry));
    }

    /// Takes out `entry` (only that one: a newer entry of the key stays).
    pub(super) fn remove(&self, key: &Key, entry: &Slot<V>, cause: Cause) {
        if let Some((_, gone)) = self.table.remove_if(key, |e| Arc::ptr_eq(e, entry)) {
            self.taken(&gone, cause);
        }
    }

    fn taken(&self, entry: &Entry<V>, cause: Cause) {
        self.bytes.fetch_sub(entry.bytes, Ordering::Relaxed);
        let counter = match cause {
            Cause::Expiry => &self.stats.evicted_expiry,
            Cause::Flush => &self.stats.evicted_flush,
        };
        Stats::add(counter, 1);
    }

    /// Takes out every entry for which `doomed` is true.
    pub(super) fn flush_if(&self, doomed: impl Fn(&V) -> bool) {
        self.table.retain(|_, e| {
            let keep = !doomed(&e.value);
            if !keep {
                self.taken(e, Cause::Flush);
            }
            keep
        });
    }

    /// Entries held.
    pub(super) fn len(&self) -> u64 {
        self.table.len() as u64
    }

    /// Bytes of the entries and the table.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed) + self.table.memory_used().total() as u64
    }
}
