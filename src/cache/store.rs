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
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use quick_cache::{Lifecycle, UnitWeighter};
use tokio::time::Instant;

use super::key::{Key, KeyBits};
use super::metrics::Stats;

/// A stored answer, kept inline in the table (no allocation of its own),
/// and small: 32 bytes besides its value. Times are milliseconds on the
/// store's clock ([`Store::now`]).
#[derive(Clone)]
pub(super) struct Entry<V> {
    pub(super) value: V,
    /// Never served at or after this.
    expires: u64,
    /// A hit in the last this many milliseconds before `expires` starts a
    /// refresh-ahead review (0: never, and once the refresh has started).
    refresh_window: u32,
    /// The low bits of the generation its review was launched in (see
    /// [`Entry::generation`]).
    generation: u32,
    /// What it counts in `authgate_cache_bytes`.
    bytes: u32,
    /// Which entry of its store it is (made in order, wrapping: two entries
    /// of one key are 2^32 API calls apart before they could share one).
    serial: u32,
}

impl<V> Entry<V> {
    /// Whether it may no longer be served at `now`.
    pub(super) fn expired(&self, now: u64) -> bool {
        now >= self.expires
    }

    /// Whether a hit at `now` should start its refresh.
    pub(super) fn refresh_due(&self, now: u64) -> bool {
        self.refresh_window > 0 && now >= self.expires - u64::from(self.refresh_window)
    }

    /// The generation its review was launched in, given the `current` one
    /// (never older than it): whole for any entry fewer than 2^32 flushes
    /// old, which every live entry is by far (a flush is an operator's act).
    pub(super) fn generation(&self, current: u64) -> u64 {
        // Truncation intended: the low bits are what is stored.
        let behind = (current as u32).wrapping_sub(self.generation);
        current.saturating_sub(u64::from(behind))
    }

    /// The same stored entry (not a later one of the key).
    fn same(&self, other: &Self) -> bool {
        self.serial == other.serial
    }
}

/// Counts what the store evicts for room (or finds expired while doing so).
#[derive(Clone)]
struct Evictions {
    stats: Arc<Stats>,
    bytes: Arc<AtomicU64>,
    base: Instant,
}

impl<V> Lifecycle<Key, Entry<V>> for Evictions {
    /// The key and serial of the entry being inserted: quick_cache reports
    /// the entry an insert replaces as evicted, and it was not (a refresh,
    /// a re-review); the new entry itself may be pushed out, and that is.
    type RequestState = Option<(Key, u32)>;

    fn on_evict(&self, inserting: &mut Option<(Key, u32)>, key: Key, entry: Entry<V>) {
        take_off(&self.bytes, entry.bytes);
        let replaced =
            matches!(inserting, Some((k, serial)) if *k == key && *serial != entry.serial);
        if replaced {
            return;
        }
        let cause = if entry.expired(millis(self.base, Instant::now())) {
            &self.stats.evicted_expiry
        } else {
            &self.stats.evicted_size
        };
        Stats::add(cause, 1);
    }
}

/// Takes `n` off the byte count, never below zero: a count that wrapped
/// round would read as exabytes in `authgate_cache_bytes`.
fn take_off(bytes: &AtomicU64, n: u32) {
    let _ = bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
        Some(b.saturating_sub(u64::from(n)))
    });
}

/// Milliseconds from `base` to `t`, rounded down (so an entry is taken for
/// expired up to a millisecond early, never late).
fn millis(base: Instant, t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(base).as_millis()).unwrap_or(u64::MAX)
}

/// Why an entry is taken out.
#[derive(Clone, Copy)]
pub(super) enum Cause {
    Expiry,
    Flush,
}

/// The bounded table of entries.
pub(super) struct Store<V> {
    table: quick_cache::sync::Cache<Key, Entry<V>, UnitWeighter, KeyBits, Evictions>,
    stats: Arc<Stats>,
    /// Bytes of the entries held (the table's own memory is added on read).
    bytes: Arc<AtomicU64>,
    /// The next entry's [`Entry::serial`].
    serials: AtomicU32,
    /// The origin of the entries' times.
    base: Instant,
}

impl<V: Clone + Send + Sync + 'static> Store<V> {
    /// At most about `capacity` entries.
    pub(super) fn new(capacity: u64, stats: Arc<Stats>) -> Self {
        let bytes = Arc::new(AtomicU64::new(0));
        let base = Instant::now();
        let evictions = Evictions {
            stats: stats.clone(),
            bytes: bytes.clone(),
            base,
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
            serials: AtomicU32::new(0),
            base,
        }
    }

    /// The store's clock: milliseconds since it was made.
    pub(super) fn now(&self) -> u64 {
        millis(self.base, Instant::now())
    }

    /// An entry stored `now` for `ttl`; `refresh_ahead` is the fraction of
    /// its life at the end in which a hit refreshes it (0: never).
    pub(super) fn entry(
        &self,
        value: V,
        ttl: Duration,
        refresh_ahead: f64,
        generation: u64,
        own_bytes: usize,
    ) -> Entry<V> {
        let now = Instant::now();
        let expires = millis(self.base, now + ttl);
        let refresh_window = if refresh_ahead > 0.0 {
            let at = millis(self.base, now + ttl.mul_f64((1.0 - refresh_ahead).max(0.0)));
            u32::try_from(expires.saturating_sub(at)).unwrap_or(u32::MAX)
        } else {
            0
        };
        Entry {
            value,
            expires,
            refresh_window,
            // Truncation intended: see `Entry::generation`.
            generation: generation as u32,
            bytes: u32::try_from(size_of::<(Key, Entry<V>)>() + own_bytes).unwrap_or(u32::MAX),
            serial: self.serials.fetch_add(1, Ordering::Relaxed),
        }
    }

    pub(super) fn get(&self, key: &Key) -> Option<Entry<V>> {
        self.table.get(key)
    }

    pub(super) fn insert(&self, key: Key, entry: Entry<V>) {
        self.bytes
            .fetch_add(u64::from(entry.bytes), Ordering::Relaxed);
        // What it replaces, and what it pushes out (itself included), come
        // to `on_evict` under the shard's lock: each is taken off once.
        let serial = entry.serial;
        self.table
            .insert_with_lifecycle(key, entry, &mut Some((key, serial)));
    }

    /// Marks `entry` (still stored under `key`) as refreshing, by closing
    /// its refresh window; `false` when it is gone, replaced, or already
    /// refreshing.
    pub(super) fn claim_refresh(&self, key: &Key, entry: &Entry<V>) -> bool {
        let claimed = self.table.entry(key, Some(Duration::ZERO), |_, e| {
            let claim = e.same(entry) && e.refresh_window > 0;
            if claim {
                e.refresh_window = 0;
            }
            quick_cache::sync::EntryAction::Retain(claim)
        });
        matches!(claimed, quick_cache::sync::EntryResult::Retained(true))
    }

    /// Takes out `entry` (only that one: a newer entry of the key stays).
    pub(super) fn remove(&self, key: &Key, entry: &Entry<V>, cause: Cause) {
        if let Some((_, gone)) = self.table.remove_if(key, |e| e.same(entry)) {
            self.taken(&gone, cause);
        }
    }

    fn taken(&self, entry: &Entry<V>, cause: Cause) {
        take_off(&self.bytes, entry.bytes);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(generation: u64) -> Entry<()> {
        let stats = Arc::new(Stats::default());
        Store::new(4, stats).entry((), Duration::from_secs(60), 0.2, generation, 0)
    }

    #[test]
    fn an_entry_is_small_and_knows_its_whole_generation() {
        assert_eq!(size_of::<Entry<Option<Arc<()>>>>(), 40 - 8);
        for (stored, current) in [
            (0, 0),
            (5, 9),
            (u64::from(u32::MAX), u64::from(u32::MAX) + 3),
        ] {
            assert_eq!(
                entry(stored).generation(current),
                stored,
                "{stored} at {current}"
            );
        }
        let e = entry(7);
        assert!(!e.refresh_due(0));
        assert!(e.refresh_due(e.expires - 1));
        let never =
            Store::new(4, Arc::new(Stats::default())).entry((), Duration::from_secs(60), 0.0, 0, 0);
        assert!(!never.refresh_due(never.expires - 1));
    }

    #[test]
    fn concurrent_inserts_of_one_key_count_what_is_stored_once() {
        let store = Arc::new(Store::new(64, Arc::new(Stats::default())));
        let key = [9u8; 16];
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let store = store.clone();
                s.spawn(move || {
                    for i in 0..500 {
                        let own = usize::try_from(t * 1000 + i).unwrap_or(0);
                        let e = store.entry((), Duration::from_secs(60), 0.0, 0, own);
                        store.insert(key, e);
                    }
                });
            }
        });
        let held = store.table.peek(&key).map(|e| u64::from(e.bytes));
        assert_eq!(Some(store.bytes.load(Ordering::Relaxed)), held);
    }

    #[test]
    fn an_entry_is_claimed_once_and_a_stale_copy_touches_no_newer_one() {
        let store = Store::new(8, Arc::new(Stats::default()));
        let key = [3u8; 16];
        let e = || store.entry((), Duration::from_secs(60), 0.2, 0, 0);
        store.insert(key, e());
        let copy = store.get(&key).expect("stored");
        assert!(store.claim_refresh(&key, &copy));
        assert!(!store.claim_refresh(&key, &copy), "claimed once");
        // Claimed, it is still the entry the copy was taken of.
        store.remove(&key, &copy, Cause::Expiry);
        assert_eq!(store.len(), 0);
        // Made alike (same TTL, generation, millisecond), a newer entry is
        // still another one.
        store.insert(key, e());
        let stale = store.get(&key).expect("stored");
        store.insert(key, e());
        assert!(!store.claim_refresh(&key, &stale));
        store.remove(&key, &stale, Cause::Expiry);
        assert_eq!(store.len(), 1);
        assert!(store.get(&key).is_some_and(|e| e.refresh_window > 0));
    }

    /// Entries that went in and are not held, against evictions counted;
    /// bytes counted against bytes held.
    fn check_books(store: &Store<()>, stats: &Stats, admitted: u64) {
        let held: u64 = store.table.iter().map(|(_, e)| u64::from(e.bytes)).sum();
        assert_eq!(store.bytes.load(Ordering::Relaxed), held, "bytes");
        let evicted = stats.evicted_size.load(Ordering::Relaxed)
            + stats.evicted_expiry.load(Ordering::Relaxed);
        assert_eq!(admitted - store.len(), evicted, "evictions");
    }

    #[test]
    fn a_replaced_entry_is_not_an_eviction_and_a_pushed_out_one_is() {
        let stats = Arc::new(Stats::default());
        let store = Store::new(2, stats.clone());
        let e = |own| store.entry((), Duration::from_secs(60), 0.0, 0, own);
        for own in [10, 20, 30] {
            store.insert([1; 16], e(own));
        }
        assert_eq!(stats.evicted_size.load(Ordering::Relaxed), 0);
        assert_eq!(store.bytes.load(Ordering::Relaxed), u64::from(e(30).bytes));
        for k in 2..40u8 {
            store.insert([k; 16], e(0));
        }
        check_books(&store, &stats, 39);
    }

    /// Review: a key back from quick_cache's ghosts may be pushed out by
    /// its own insert; that is an eviction, though the key is the insert's.
    #[test]
    fn an_entry_its_own_insert_pushes_out_is_an_eviction() {
        let stats = Arc::new(Stats::default());
        let store = Store::new(4, stats.clone());
        let e = || store.entry((), Duration::from_secs(60), 0.0, 0, 0);
        let (mut admitted, mut seed) = (0u64, 0x9e37_79b9_7f4a_7c15_u64);
        for _ in 0..5_000 {
            // xorshift64: a fixed sequence of gets and inserts over 12 keys.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let key = [u8::try_from(seed % 12).unwrap_or(0); 16];
            if seed & 0x100 == 0 {
                let _ = store.get(&key);
            } else {
                admitted += u64::from(store.table.peek(&key).is_none());
                store.insert(key, e());
            }
            check_books(&store, &stats, admitted);
        }
        assert!(stats.evicted_size.load(Ordering::Relaxed) > 100);
    }

    #[test]
    fn the_byte_count_never_wraps_below_zero() {
        let bytes = AtomicU64::new(10);
        take_off(&bytes, 25);
        assert_eq!(bytes.load(Ordering::Relaxed), 0);
    }
}
