//! The key set in use and its refreshes (the I/O edge of local verification).
//!
//! A refresh GETs `/.well-known/openid-configuration` and `/openid/v1/jwks`
//! through the [`ApiClient`] (its slots, rate limit, deadline and metrics).
//! The JWKS is read from the API server itself, not from the discovery
//! document's `jwks_uri`, which names the issuer's public address. A failed
//! refresh keeps the last good key set. Refreshes happen every `refresh`
//! (retried every minute after a failure) and, for a token naming an unknown
//! `kid`, at most once per [`ON_DEMAND_EVERY`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::keys::{self, Discovery, JwksDocument, KeySet};
use super::stats::Stats;
use crate::backend::BackendError;
use crate::kubernetes::{ApiClient, DISCOVERY_BACKEND, JWKS_BACKEND};

/// Unknown `kid`s cause at most one refresh per this interval.
pub const ON_DEMAND_EVERY: Duration = Duration::from_secs(60);

const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
const JWKS_PATH: &str = "/openid/v1/jwks";

/// The current key set and how to fetch the next one.
pub struct KeyStore {
    api: Arc<ApiClient>,
    issuer: Option<String>,
    audiences: Vec<String>,
    current: ArcSwapOption<KeySet>,
    loaded_at: Mutex<Option<Instant>>,
    /// Serialises refreshes; holds the time of the last on-demand one.
    on_demand: tokio::sync::Mutex<Option<Instant>>,
    stats: Stats,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("issuer", &self.issuer)
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
        Self {
            api,
            issuer,
            audiences,
            current: ArcSwapOption::empty(),
            loaded_at: Mutex::new(None),
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

    /// Refreshes every `every` until `stop`; after a failure, again within a
    /// minute.
    pub async fn run(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        loop {
            let due = self
                .loaded_at
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .map_or(Duration::ZERO, |t| {
                    (t + every).saturating_duration_since(Instant::now())
                });
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

    async fn fetch_and_swap(&self) -> bool {
        match self.fetch().await {
            Ok(set) => {
                info!(
                    keys = set.len(),
                    issuer = set.issuer(),
                    "loaded the ServiceAccount token keys (JWKS)"
                );
                self.stats.refresh(true);
                self.stats.keys(set.len());
                self.current.store(Some(Arc::new(set)));
                *self.loaded_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                true
            }
            Err(e) => {
                let kept = self.keys().map_or(0, |k| k.len());
                warn!(
                    error = %e,
                    kept_keys = kept,
                    "JWKS refresh failed; keeping the last good key set"
                );
                self.stats.refresh(false);
                false
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, BackendError> {
        let discovery: Discovery = self.api.get_json(DISCOVERY_BACKEND, DISCOVERY_PATH).await?;
        let issuer = keys::issuer(&discovery.issuer, self.issuer.as_deref()).map_err(|detail| {
            BackendError::BadResponse {
                backend: DISCOVERY_BACKEND,
                detail,
            }
        })?;
        let doc: JwksDocument = self.api.get_json(JWKS_BACKEND, JWKS_PATH).await?;
        Ok(KeySet::new(&doc, issuer, &self.audiences))
    }
}
