//! The key set in use and its refreshes (the I/O edge of local verification).
//!
//! A refresh GETs `/.well-known/openid-configuration` and `/openid/v1/jwks`
//! through the [`ApiClient`] (its slots, rate limit, deadline and metrics).
//! The JWKS is read from the API server itself, not from the discovery
//! document's `jwks_uri`, which names the issuer's public address. A failed
//! refresh keeps the last good key set; a successful one replaces it whole,
//! so a key the cluster removed stops verifying then. Refreshes happen every
//! `refresh`, sooner when the JWKS response's `Cache-Control` says so
//! ([`super::schedule`]), retried every minute after a failure; for a token
//! naming an unknown `kid`, at most once per [`ON_DEMAND_EVERY`]; and after a
//! cache flush, before the next token is verified ([`KeyStore::mark_stale`]).
//!
//! Where the keys come from is a [`KeySource`]: the API server for the
//! cluster's keys ([`ApiSource`]), an external issuer's discovery document
//! for `authentication.jwt[]` ([`crate::authn::issuers`]). The refresh,
//! rotation and on-demand budget are the same for both.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::keys::{self, Discovery, JwksDocument, KeySet};
use super::schedule;
use super::stats::Stats;
use crate::BoxFuture;
use crate::backend::BackendError;
use crate::kubernetes::{ApiClient, DISCOVERY_BACKEND, JWKS_BACKEND};

/// One fetch of a key set: the keys, and the JWKS response's `max-age`.
pub type Fetched = Result<(KeySet, Option<Duration>), BackendError>;

/// Where a [`KeyStore`] fetches its keys (the I/O of a refresh).
pub trait KeySource: Send + Sync {
    /// The issuer it is configured for, if known before a fetch (logs).
    fn issuer(&self) -> Option<&str>;
    /// Fetches the discovery document and the JWKS, as a verify-ready set.
    fn fetch(&self) -> BoxFuture<'_, Fetched>;
}

/// What a [`KeyStore`] reports about its refreshes.
pub trait RefreshStats: Send + Sync {
    /// One fetch, successful or not.
    fn refresh(&self, ok: bool);
    /// The number of usable keys now held.
    fn keys(&self, n: usize);
}

impl RefreshStats for Stats {
    fn refresh(&self, ok: bool) {
        Self::refresh(self, ok);
    }

    fn keys(&self, n: usize) {
        Self::keys(self, n);
    }
}

/// The cluster's keys, read from the API server.
pub struct ApiSource {
    api: Arc<ApiClient>,
    issuer: Option<String>,
    audiences: Vec<String>,
}

impl KeySource for ApiSource {
    fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    fn fetch(&self) -> BoxFuture<'_, Fetched> {
        Box::pin(async move {
            let discovery: Discovery = self.api.get_json(DISCOVERY_BACKEND, DISCOVERY_PATH).await?;
            let issuer =
                keys::issuer(&discovery.issuer, self.issuer.as_deref()).map_err(|detail| {
                    BackendError::BadResponse {
                        backend: DISCOVERY_BACKEND,
                        detail,
                    }
                })?;
            let (doc, headers): (JwksDocument, _) = self
                .api
                .get_json_with_headers(JWKS_BACKEND, JWKS_PATH)
                .await?;
            let max_age = schedule::max_age(&headers);
            Ok((KeySet::new(&doc, issuer, &self.audiences), max_age))
        })
    }
}

/// Unknown `kid`s cause at most one refresh per this interval.
pub const ON_DEMAND_EVERY: Duration = Duration::from_secs(60);

const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
const JWKS_PATH: &str = "/openid/v1/jwks";

/// The current key set and how to fetch the next one.
pub struct KeyStore {
    source: Box<dyn KeySource>,
    current: ArcSwapOption<KeySet>,
    /// The last successful fetch and the `Cache-Control` lifetime it gave.
    loaded_at: Mutex<Option<(Instant, Option<Duration>)>>,
    /// When each key of the current set was first loaded.
    first_seen: Mutex<HashMap<String, Instant>>,
    /// Flushes so far: each asks for fresh keys before the next verification.
    asked: AtomicU64,
    /// The flushes a completed fetch (started after them) has answered.
    answered: AtomicU64,
    /// Serialises refreshes; holds the time of the last on-demand one.
    on_demand: tokio::sync::Mutex<Option<Instant>>,
    stats: Arc<dyn RefreshStats>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("issuer", &self.source.issuer())
            .finish_non_exhaustive()
    }
}

impl KeyStore {
    /// A store with no keys yet; `issuer` is the configured one, if any.
    pub fn new(
        api: Arc<ApiClient>,
        issuer: Option<String>,
        audiences: Vec<String>,
        stats: Stats,
    ) -> Self {
        let source = ApiSource {
            api,
            issuer,
            audiences,
        };
        Self::from_source(Box::new(source), Arc::new(stats))
    }

    /// A store with no keys yet, fetching from `source`.
    pub fn from_source(source: Box<dyn KeySource>, stats: Arc<dyn RefreshStats>) -> Self {
        Self {
            source,
            current: ArcSwapOption::empty(),
            loaded_at: Mutex::new(None),
            first_seen: Mutex::new(HashMap::new()),
            asked: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            on_demand: tokio::sync::Mutex::new(None),
            stats,
        }
    }

    /// The key set in use, if one was ever loaded.
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        self.current.load_full()
    }

    /// Fetches the keys now (serialised with every other refresh).
    pub async fn refresh(&self) -> bool {
        let _turn = self.on_demand.lock().await;
        self.fetch_and_swap().await
    }

    /// When the key `kid` of the current set was first loaded.
    pub fn first_seen(&self, kid: &str) -> Option<Instant> {
        lock(&self.first_seen).get(kid).copied()
    }

    /// From now on, the next verification waits for a refresh
    /// ([`KeyStore::refresh_if_stale`]); a cache flush asks this.
    pub fn mark_stale(&self) {
        self.asked.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether a refresh was asked for and has not happened yet.
    pub fn is_stale(&self) -> bool {
        self.asked.load(Ordering::Acquire) > self.answered.load(Ordering::Acquire)
    }

    /// The refresh [`KeyStore::mark_stale`] asked for, once, however many
    /// callers wait for it. A failure keeps the last good keys, as every
    /// failed refresh does (the periodic refresh retries within a minute).
    pub async fn refresh_if_stale(&self) {
        let _turn = self.on_demand.lock().await;
        // Marked answered only once the fetch is done: a verification that
        // arrives meanwhile still sees the store stale and waits here.
        let asked = self.asked.load(Ordering::Acquire);
        if asked > self.answered.load(Ordering::Acquire) {
            self.fetch_and_swap().await;
            self.answered.fetch_max(asked, Ordering::AcqRel);
        }
    }

    /// For a token naming `kid`, which the key set lacks: refreshes unless
    /// another refresh already brought `kid` or the last on-demand refresh
    /// is less than [`ON_DEMAND_EVERY`] ago. Whether `kid` is known now.
    pub async fn refresh_for(&self, kid: &str) -> bool {
        let mut last = self.on_demand.lock().await;
        if self.keys().is_some_and(|k| k.has(kid)) {
            return true;
        }
        if last.is_some_and(|t| t.elapsed() < ON_DEMAND_EVERY) {
            return false;
        }
        *last = Some(Instant::now());
        self.fetch_and_swap().await;
        self.keys().is_some_and(|k| k.has(kid))
    }

    /// Refreshes every `every` (sooner if the JWKS response's `max-age` is
    /// shorter) until `stop`; after a failure, again within a minute.
    pub async fn run(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        loop {
            let due = self.due_in(every, Instant::now());
            let wait = if due.is_zero() {
                if self.refresh().await {
                    continue;
                }
                every.min(ON_DEMAND_EVERY)
            } else {
                due
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// How long from `now` until the next periodic refresh is due (zero
    /// before the first success).
    pub fn due_in(&self, every: Duration, now: Instant) -> Duration {
        lock(&self.loaded_at).map_or(Duration::ZERO, |(at, max_age)| {
            (at + schedule::interval(every, max_age)).saturating_duration_since(now)
        })
    }

    async fn fetch_and_swap(&self) -> bool {
        match self.fetch().await {
            Ok((set, max_age)) => {
                info!(
                    keys = set.len(),
                    issuer = set.issuer(),
                    "loaded the token signing keys (JWKS)"
                );
                self.stats.refresh(true);
                self.stats.keys(set.len());
                let now = Instant::now();
                {
                    let mut seen = lock(&self.first_seen);
                    let old = std::mem::take(&mut *seen);
                    seen.extend(
                        set.kids()
                            .map(|k| (k.to_owned(), old.get(k).copied().unwrap_or(now))),
                    );
                }
                self.current.store(Some(Arc::new(set)));
                *lock(&self.loaded_at) = Some((now, max_age));
                true
            }
            Err(e) => {
                let kept = self.keys().map_or(0, |k| k.len());
                warn!(
                    error = %e,
                    issuer = self.source.issuer().unwrap_or("(discovered)"),
                    kept_keys = kept,
                    "JWKS refresh failed; keeping the last good key set"
                );
                self.stats.refresh(false);
                false
            }
        }
    }

    async fn fetch(&self) -> Fetched {
        self.source.fetch().await
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
