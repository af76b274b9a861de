//! A review in its own task: it completes however its callers go, and
//! what it found is stored only if no flush since its launch covers it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::FutureExt;

use super::{Fetched, Flight, Inner, Keep, Key, ReviewCache};
use crate::BoxFuture;
use crate::backend::BackendError;

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

impl<V: Clone + Send + Sync + 'static> ReviewCache<V> {
    /// Runs `fut` in its own task: it completes even if every caller goes
    /// away. A panic in it becomes an error, never a value.
    pub(super) fn launch(&self, key: Key, id: u64, fut: Fetched<V>, refresh: bool) -> Flight<V> {
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
            inner.land(key, generation, &result, refresh);
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
}

impl<V: Clone + Send + Sync + 'static> Inner<V> {
    /// What a finished review leaves: an entry (if it may be kept and no
    /// flush since its launch covers it), or, on error, nothing.
    pub(super) fn land(
        &self,
        key: Key,
        generation: u64,
        result: &Result<(V, Keep), BackendError>,
        refresh: bool,
    ) {
        match result {
            Ok((value, keep)) if !keep.ttl.is_zero() => {
                // A flush since launch: not worth storing (and the read
                // check would refuse it should a flush race this test).
                if let Some(store) = &self.store
                    && self.current(generation, value)
                {
                    let bytes = (self.weigh)(value);
                    let ahead = if keep.renewable && (self.refreshable)(value) {
                        self.refresh_ahead
                    } else {
                        0.0
                    };
                    let entry = store.entry(value.clone(), keep.ttl, ahead, generation, bytes);
                    store.insert(key, entry);
                    if refresh {
                        self.stats.refresh_stored.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok(_) => {}
            Err(_) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                if refresh {
                    self.stats.refresh_failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}
