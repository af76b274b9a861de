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
//!
//! A flush is never undone by a check that was under way when it happened:
//! each flush starts a new generation, and an identity whose check began in
//! an older one counts only if no later flush covers it (checked before
//! every store and on every read, so no store can race a flush), as in
//! [`crate::cache`].

pub mod claims;
pub mod crypto;
pub mod keys;
pub mod stats;
pub mod store;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// The flush generation its check began in.
    generation: u64,
}

/// Per-user flushes kept for the read check; more collapse into a full one.
const MAX_FLUSH_MARKS: usize = 64;

/// What flushes happened, for identities checked before them.
#[derive(Default)]
struct Flushes {
    /// Identities checked in a generation below this were flushed whole.
    valid_from: u64,
    /// Per-user flushes: that user's identities checked below the
    /// generation are gone.
    marks: Vec<(u64, String)>,
    /// The last flush: for `revalidate_after` after it, a token verified
    /// locally must also pass TokenReview (the flush is the emergency
    /// revocation; a still-valid signature must not undo it).
    last: Option<Instant>,
}

impl Flushes {
    /// Records the flush that started `generation`: of everyone, or of `user`.
    fn record(&mut self, generation: u64, user: Option<&str>) {
        self.last = Some(Instant::now());
        match user {
            Some(u) if self.marks.len() < MAX_FLUSH_MARKS => {
                self.marks.push((generation, u.to_owned()));
            }
            _ => {
                self.valid_from = generation;
                self.marks.clear();
            }
        }
    }

    /// Whether a flush after `e`'s check began drops it. Rejections are
    /// never dropped (a flush must not let a signature undo them).
    fn cover(&self, e: &Entry) -> bool {
        e.id.as_ref().is_some_and(|id| {
            e.generation < self.valid_from
                || self
                    .marks
                    .iter()
                    .any(|(g, u)| e.generation < *g && *u == id.user)
        })
    }
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

/// `flushed`: a flush after its check began covers the entry, which then
/// counts as old whatever its age.
fn step(entry: Option<&Entry>, revalidate_after: Duration, flushed: bool) -> Step {
    match entry {
        Some(e) if until(e.exp) > Duration::ZERO => match &e.id {
            None => Step::ReviewOnly,
            Some(id) if !flushed && e.checked.elapsed() < revalidate_after => {
                Step::Fresh(id.clone())
            }
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
    /// Bumped by every `/cache/flush`.
    generation: AtomicU64,
    flushes: std::sync::Mutex<Flushes>,
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
            generation: AtomicU64::new(0),
            flushes: std::sync::Mutex::new(Flushes::default()),
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

    /// Drops verified tokens: all of them, or those of `user`, now and when
    /// a check under way stores one. Tokens TokenReview rejected stay
    /// marked, and for `revalidate_after` every locally verified token is
    /// also reviewed.
    pub fn flush(&self, user: Option<&str>) {
        {
            let mut flushes = self.flushes.lock().unwrap_or_else(|e| e.into_inner());
            let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
            flushes.record(generation, user);
        }
        // moka drops only the entries already stored: the generation check
        // in `flushed` catches those stored from here on.
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
        // Taken before anything is checked: a flush from here on covers it.
        let generation = self.generation.load(Ordering::Acquire);
        let mut key = self.keys.builder();
        key.part(b"jwks").part(token.expose().as_bytes());
        let key = key.finish();
        let cached = self.cache.get(&key).await;
        let flushed = cached.as_ref().is_some_and(|e| self.flushed(e));
        match step(cached.as_ref(), self.revalidate_after, flushed) {
            Step::Fresh(id) => {
                self.stats.verification("cached");
                return Ok(Some(id));
            }
            Step::Revalidate(exp) => return self.revalidate(key, exp, token, generation).await,
            Step::ReviewOnly => {
                self.stats.verification("revoked_before");
                return self.reviewer.authenticate(token).await;
            }
            Step::Verify => {}
        }
        match self.verify(token.expose()).await {
            Ok((_, exp)) if self.flushed_recently() => {
                self.revalidate(key, exp, token, generation).await
            }
            Ok((id, exp)) => {
                self.stats.verification("verified");
                let id = Arc::new(id);
                let entry = Entry {
                    id: Some(id.clone()),
                    exp,
                    checked: Instant::now(),
                    generation,
                };
                self.keep(key, entry).await;
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
                        generation,
                    };
                    self.keep(key, marker).await;
                }
                answer
            }
        }
    }

    fn flushed_recently(&self) -> bool {
        self.flushes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last
            .is_some_and(|t| t.elapsed() < self.revalidate_after)
    }

    /// Whether a flush after `entry`'s check began covers it.
    fn flushed(&self, entry: &Entry) -> bool {
        entry.generation != self.generation.load(Ordering::Acquire)
            && self
                .flushes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .cover(entry)
    }

    /// Stores `entry` unless a flush since its check began covers it: that
    /// answer is older than the flush (and should a flush land between this
    /// test and the insert, the read check refuses the entry).
    async fn keep(&self, key: Key, entry: Entry) {
        if !self.flushed(&entry) {
            self.cache.insert(key, entry).await;
        }
    }

    /// A cached token older than `revalidate_after` (or than a flush):
    /// TokenReview decides. `generation`: the one the check began in.
    async fn revalidate(
        &self,
        key: Key,
        exp: u64,
        token: &BearerToken,
        generation: u64,
    ) -> Result<Option<Arc<Identity>>, BackendError> {
        match self.reviewer.authenticate(token).await {
            Ok(Some(id)) => {
                self.stats.verification("revalidated");
                let entry = Entry {
                    id: Some(id.clone()),
                    exp,
                    checked: Instant::now(),
                    generation,
                };
                self.keep(key, entry).await;
                Ok(Some(id))
            }
            Ok(None) => {
                self.stats.verification("revoked");
                let entry = Entry {
                    id: None,
                    exp,
                    checked: Instant::now(),
                    generation,
                };
                self.keep(key, entry).await;
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
            generation: 0,
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
            (
                Some(entry(some.clone(), exp - 700, Duration::ZERO)),
                Step::Verify,
            ),
            (Some(entry(None, exp - 700, Duration::ZERO)), Step::Verify),
        ];
        for (i, (e, want)) in cases.into_iter().enumerate() {
            assert_eq!(step(e.as_ref(), minute, false), want, "case {i}");
        }
        // Covered by a later flush: old, however fresh.
        let fresh = entry(some, exp, Duration::ZERO);
        assert_eq!(step(Some(&fresh), minute, true), Step::Revalidate(exp));
        let rejected = entry(None, exp, Duration::ZERO);
        assert_eq!(step(Some(&rejected), minute, true), Step::ReviewOnly);
    }

    #[test]
    fn a_flush_covers_identities_checked_before_it_never_rejections() {
        let entry = |user: Option<&str>, generation| Entry {
            id: user.map(|u| {
                Arc::new(Identity::new(
                    u.into(),
                    None,
                    vec![],
                    BTreeMap::new(),
                    AuthMethod::Token,
                ))
            }),
            exp: jsonwebtoken::get_current_timestamp() + 600,
            checked: Instant::now(),
            generation,
        };
        let mut f = Flushes::default();
        assert!(!f.cover(&entry(Some("a"), 0)), "no flush yet");

        // A flush of `a` starts generation 1.
        f.record(1, Some("a"));
        assert!(f.last.is_some());
        assert!(f.cover(&entry(Some("a"), 0)));
        assert!(!f.cover(&entry(Some("b"), 0)), "another user");
        assert!(!f.cover(&entry(Some("a"), 1)), "checked after the flush");
        assert!(!f.cover(&entry(None, 0)), "a rejection stays");

        // A full flush starts generation 2.
        f.record(2, None);
        assert!(f.cover(&entry(Some("b"), 1)));
        assert!(!f.cover(&entry(Some("b"), 2)));
        assert!(!f.cover(&entry(None, 1)));

        // Too many per-user flushes collapse into a full one.
        for g in 3..3 + MAX_FLUSH_MARKS as u64 {
            f.record(g, Some("a"));
        }
        assert_eq!(f.marks.len(), MAX_FLUSH_MARKS);
        let last = 3 + MAX_FLUSH_MARKS as u64;
        f.record(last, Some("a"));
        assert!(f.marks.is_empty());
        assert!(f.cover(&entry(Some("b"), last - 1)), "collapsed: everyone");
        assert!(!f.cover(&entry(Some("a"), last)));
    }
}
