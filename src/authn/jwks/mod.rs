//! Bearer tokens verified locally with the cluster's ServiceAccount keys,
//! falling back to TokenReview (`token_review.jwks`).
//!
//! ```text
//! token ─▶ cache (HMAC key, never past exp) ─ fresh ──────────────▶ identity
//!            │ older than revalidate_after ─▶ TokenReview ─ yes ─▶ identity, entry renewed
//!            │                                            ─ no ──▶ rejected; from now on
//!            │                                                     TokenReview only (until exp)
//!            │                                            ─ error ▶ 503
//!            ▼ miss
//!          local verify (signature, iss, aud, exp, nbf, claims) ─ ok ─▶ cached, identity
//!            │ unknown kid ─▶ refresh keys (≤ 1/min) ─▶ verify again
//!            ▼ any failure
//!          TokenReview (its own cache and coalescing)
//! ```
//!
//! Local verification cannot see what the apiserver checks in etcd: a
//! deleted Pod, Secret or ServiceAccount that a token is bound to. Such a
//! token stays valid here until `revalidate_after` sends it to TokenReview
//! (whose own cache may add up to `token_review.cache.ttl`).

pub mod claims;
pub mod crypto;
pub mod keys;
pub mod stats;
pub mod store;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{debug, error};

use super::TokenAuthenticator;
use super::bearer::BearerToken;
use super::token_review::TokenReviewer;
use crate::BoxFuture;
use crate::backend::BackendError;
use crate::cache::{Key, KeyHasher};
use crate::config::JwksConfig;
use crate::identity::Identity;
use crate::kubernetes::ApiClient;
use crate::metrics::Metrics;
use keys::Failure;
use stats::Stats;
use store::KeyStore;

/// A locally verified (or since reviewed) token. `id` is `None` once
/// TokenReview rejected it: it is then never verified locally again, so a
/// revoked token cannot come back through its still-valid signature.
#[derive(Clone)]
struct Entry {
    id: Option<Arc<Identity>>,
    exp: u64,
    checked: Instant,
}

/// How long a token with an unknown key that TokenReview rejected stays
/// TokenReview-only (its `exp` is unknown: it was not verified).
const REJECTION_MEMORY: Duration = Duration::from_secs(3600);

/// Entries expire with their token's `exp`.
struct UntilExp;

impl moka::Expiry<Key, Entry> for UntilExp {
    fn expire_after_create(&self, _: &Key, e: &Entry, _: Instant) -> Option<Duration> {
        Some(until(e.exp))
    }

    fn expire_after_update(
        &self,
        _: &Key,
        e: &Entry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(until(e.exp))
    }
}

fn until(exp: u64) -> Duration {
    Duration::from_secs(exp.saturating_sub(jsonwebtoken::get_current_timestamp()))
}

/// What to do with a token, given its cache entry (pure).
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Verified less than `revalidate_after` ago: this identity.
    Fresh(Arc<Identity>),
    /// Verified longer ago: TokenReview decides (the entry's `exp` is kept).
    Revalidate(u64),
    /// TokenReview rejected it before: TokenReview only.
    ReviewOnly,
    /// Not cached (or expired): verify locally.
    Verify,
}

fn step(entry: Option<&Entry>, revalidate_after: Duration) -> Step {
    match entry {
        Some(e) if until(e.exp) > Duration::ZERO => match &e.id {
            None => Step::ReviewOnly,
            Some(id) if e.checked.elapsed() < revalidate_after => Step::Fresh(id.clone()),
            Some(_) => Step::Revalidate(e.exp),
        },
        _ => Step::Verify,
    }
}

/// The token authenticator of `token_review.jwks`: local first, TokenReview
/// as the fallback and the revalidator.
pub struct JwksAuthenticator {
    store: Arc<KeyStore>,
    reviewer: Arc<TokenReviewer>,
    cache: moka::future::Cache<Key, Entry>,
    keys: KeyHasher,
    refresh: Duration,
    revalidate_after: Duration,
    /// The last `/cache/flush`: for `revalidate_after` after it, a token
    /// verified locally must also pass TokenReview (the flush is the
    /// emergency revocation; a still-valid signature must not undo it).
    last_flush: std::sync::Mutex<Option<Instant>>,
    stats: Stats,
}

impl JwksAuthenticator {
    /// Wraps `reviewer`; holds at most `max_entries` verified tokens.
    pub fn new(
        api: Arc<ApiClient>,
        cfg: &JwksConfig,
        max_entries: u64,
        reviewer: Arc<TokenReviewer>,
        keys: KeyHasher,
        metrics: &Metrics,
    ) -> Self {
        if !crypto::install() {
            error!("another JWT crypto provider is installed; every token goes to TokenReview");
        }
        let stats = Stats::registered(metrics);
        Self {
            store: Arc::new(KeyStore::new(
                api,
                cfg.issuer.clone(),
                cfg.audiences.clone(),
                stats.clone(),
            )),
            reviewer,
            cache: moka::future::Cache::builder()
                .max_capacity(max_entries)
                .expire_after(UntilExp)
                .support_invalidation_closures()
                .build(),
            keys,
            refresh: cfg.refresh,
            revalidate_after: cfg.revalidate_after,
            last_flush: std::sync::Mutex::new(None),
            stats,
        }
    }

    /// Fetches the keys once (at startup; a failure is logged and retried
    /// by [`JwksAuthenticator::run`]).
    pub async fn load(&self) -> bool {
        self.store.refresh().await
    }

    /// Refreshes the keys every `refresh` until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        self.store.clone().run(self.refresh, stop).await;
    }

    /// Drops verified tokens: all of them, or those of `user`. Tokens
    /// TokenReview rejected stay marked, and for `revalidate_after` every
    /// locally verified token is also reviewed.
    pub fn flush(&self, user: Option<&str>) {
        *self.last_flush.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        match user {
            None => {
                // Fails only without `support_invalidation_closures`, set in `new`.
                let _ = self.cache.invalidate_entries_if(|_, e| e.id.is_some());
            }
            Some(u) => {
                let u = u.to_owned();
                // Fails only without `support_invalidation_closures`, set in `new`.
                let _ = self.cache.invalidate_entries_if(move |_, e| {
                    e.id.as_ref().is_some_and(|id| id.user == u)
                });
            }
        }
    }

    async fn check(&self, token: &BearerToken) -> Result<Option<Arc<Identity>>, BackendError> {
        let mut key = self.keys.builder();
        key.part(b"jwks").part(token.expose().as_bytes());
        let key = key.finish();
        let cached = self.cache.get(&key).await;
        match step(cached.as_ref(), self.revalidate_after) {
            Step::Fresh(id) => {
                self.stats.verification("cached");
                return Ok(Some(id));
            }
            Step::Revalidate(exp) => return self.revalidate(key, exp, token).await,
            Step::ReviewOnly => {
                self.stats.verification("revoked_before");
                return self.reviewer.authenticate(token).await;
            }
            Step::Verify => {}
        }
        match self.verify(token.expose()).await {
            Ok((_, exp)) if self.flushed_recently() => self.revalidate(key, exp, token).await,
            Ok((id, exp)) => {
                self.stats.verification("verified");
                let id = Arc::new(id);
                let entry = Entry {
                    id: Some(id.clone()),
                    exp,
                    checked: Instant::now(),
                };
                self.cache.insert(key, entry).await;
                Ok(Some(id))
            }
            Err(reason) => {
                self.stats.verification(reason);
                debug!(reason, "JWT not verified locally; asking TokenReview");
                let answer = self.reviewer.authenticate(token).await;
                if reason == "unknown_kid" && matches!(answer, Ok(None)) {
                    // Its key may arrive with the next refresh: remember the
                    // rejection so the signature cannot undo it then.
                    let exp = jsonwebtoken::get_current_timestamp() + REJECTION_MEMORY.as_secs();
                    let marker = Entry {
                        id: None,
                        exp,
                        checked: Instant::now(),
                    };
                    self.cache.insert(key, marker).await;
                }
                answer
            }
        }
    }

    fn flushed_recently(&self) -> bool {
        self.last_flush
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| t.elapsed() < self.revalidate_after)
    }

    /// A cached token older than `revalidate_after`: TokenReview decides.
    async fn revalidate(
        &self,
        key: Key,
        exp: u64,
        token: &BearerToken,
    ) -> Result<Option<Arc<Identity>>, BackendError> {
        match self.reviewer.authenticate(token).await {
            Ok(Some(id)) => {
                self.stats.verification("revalidated");
                let entry = Entry {
                    id: Some(id.clone()),
                    exp,
                    checked: Instant::now(),
                };
                self.cache.insert(key, entry).await;
                Ok(Some(id))
            }
            Ok(None) => {
                self.stats.verification("revoked");
                let entry = Entry {
                    id: None,
                    exp,
                    checked: Instant::now(),
                };
                self.cache.insert(key, entry).await;
                Ok(None)
            }
            Err(e) => {
                self.stats.verification("revalidation_error");
                Err(e)
            }
        }
    }

    /// Local verification, with one key refresh for an unknown `kid`.
    async fn verify(&self, token: &str) -> Result<(Identity, u64), &'static str> {
        let first = match self.store.keys() {
            Some(k) => k.verify(token),
            None => Err(Failure::UnknownKid),
        };
        let reason = |f: Failure| match f {
            Failure::UnknownKid => "unknown_kid",
            Failure::Rejected(r) => r,
        };
        match first {
            Err(Failure::UnknownKid) => {
                let Some(kid) = keys::kid(token) else {
                    return Err("malformed");
                };
                if !self.store.refresh_for(&kid).await {
                    return Err("unknown_kid");
                }
                let keys = self.store.keys().ok_or("unknown_kid")?;
                keys.verify(token).map_err(reason)
            }
            other => other.map_err(reason),
        }
    }
}

impl TokenAuthenticator for JwksAuthenticator {
    fn authenticate<'a>(
        &'a self,
        token: &'a BearerToken,
    ) -> BoxFuture<'a, Result<Option<Arc<Identity>>, BackendError>> {
        Box::pin(self.check(token))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::identity::AuthMethod;

    #[test]
    fn the_cache_entry_decides_the_next_step() {
        let id = Arc::new(Identity::new(
            "system:serviceaccount:a:b".into(),
            None,
            vec![],
            BTreeMap::new(),
            AuthMethod::Token,
        ));
        let exp = jsonwebtoken::get_current_timestamp() + 600;
        let minute = Duration::from_secs(60);
        let entry = |id: Option<Arc<Identity>>, exp, age| Entry {
            id,
            exp,
            checked: Instant::now() - age,
        };
        let some = Some(id.clone());
        let cases = [
            (None, Step::Verify),
            (
                Some(entry(some.clone(), exp, Duration::ZERO)),
                Step::Fresh(id),
            ),
            (
                Some(entry(some.clone(), exp, minute * 2)),
                Step::Revalidate(exp),
            ),
            (Some(entry(None, exp, Duration::ZERO)), Step::ReviewOnly),
            (Some(entry(some, exp - 700, Duration::ZERO)), Step::Verify),
            (Some(entry(None, exp - 700, Duration::ZERO)), Step::Verify),
        ];
        for (i, (e, want)) in cases.into_iter().enumerate() {
            assert_eq!(step(e.as_ref(), minute), want, "case {i}");
        }
    }
}
