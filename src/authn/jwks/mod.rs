//! Bearer tokens verified locally with the cluster's ServiceAccount keys,
//! falling back to TokenReview (`token_review.jwks`).
//!
//! ```text
//! token ─▶ rejection marker? ─ yes ─────────────────────────────▶ TokenReview only
//!            ▼ no
//!          cache (HMAC key, never past exp) ─ fresh ──────────────▶ identity
//!            │ older than revalidate_after ─▶ TokenReview ─ yes ─▶ identity, entry renewed
//!            │                                            ─ no ──▶ rejected, marked revoked
//!            │                                            ─ error ▶ 503
//!            ▼ miss
//!          local verify (signature, iss, aud, exp, nbf, claims) ─ ok ─▶ cached, identity
//!            │ unknown kid ─▶ refresh keys (≤ 1/min) ─▶ verify again
//!            │ bad signature under a known kid, our iss ─▶ rejected (no TokenReview)
//!            ▼ any other failure
//!          TokenReview (its own cache and coalescing; unknown kid rejected: marked)
//! ```
//!
//! Local verification cannot see what the apiserver checks in etcd: a
//! deleted Pod, Secret or ServiceAccount that a token is bound to. Such a
//! token stays valid here until `revalidate_after` sends it to TokenReview
//! (whose own cache may add up to `token_review.cache.ttl`). Rejections are
//! kept apart from the verified tokens ([`markers`]), so no flood of other
//! tokens can evict one and let the signature undo it.
//!
//! A locally verified token is also sent to TokenReview (as if old) while
//! local verification alone cannot be trusted: for `revalidate_after` after
//! a flush, while a revoked token has no marker (the set was full), and,
//! for a key loaded after an unknown-kid rejection that found no room for
//! its marker, for an hour after it.
//!
//! A flush is never undone by a check that was under way when it happened:
//! each flush starts a new generation, and an identity whose check began in
//! an older one counts only if no later flush covers it (checked before
//! every store and on every read, so no store can race a flush), as in
//! [`crate::cache`]. A flush also refreshes the keys before the next token
//! is verified.

pub mod claims;
pub mod crypto;
mod flushes;
pub mod keys;
pub mod markers;
pub mod schedule;
pub mod stats;
pub mod store;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{debug, error};

use super::bearer::BearerToken;
use super::token_review::TokenReviewer;
use super::{TokenAnswer, TokenAuthenticator};
use crate::BoxFuture;
use crate::cache::{Key, KeyHasher};
use crate::config::JwksConfig;
use crate::identity::Identity;
use crate::kubernetes::ApiClient;
use crate::metrics::Metrics;
use flushes::Flushes;
use keys::Failure;
use markers::{KidDrops, MarkerSet, REJECTION_MEMORY, Revoked, UNKNOWN_KID_MARKERS};
use stats::Stats;
use store::KeyStore;

/// A locally verified (or since reviewed) token.
#[derive(Clone)]
struct Entry {
    id: Identity,
    exp: u64,
    checked: Instant,
    /// The flush generation its check began in.
    generation: u64,
}

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

/// Time left until `exp`, to the sub-second (whole seconds would keep a
/// token up to a second past it).
fn until(exp: u64) -> Duration {
    Duration::from_secs(exp).saturating_sub(crate::clock::since_epoch())
}

fn now_secs() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// What to do with a token, given its marker and cache entry (pure).
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Verified less than `revalidate_after` ago: this identity.
    Fresh(Identity),
    /// Verified longer ago: TokenReview decides (the entry's `exp` is kept).
    Revalidate(u64),
    /// TokenReview rejected it before: TokenReview only.
    ReviewOnly,
    /// Not cached (or expired): verify locally.
    Verify,
}

/// `marked`: a rejection marker holds the token. `flushed`: a flush after
/// its check began covers the entry, which then counts as old whatever its
/// age.
fn step(marked: bool, entry: Option<&Entry>, revalidate_after: Duration, flushed: bool) -> Step {
    match entry {
        _ if marked => Step::ReviewOnly,
        Some(e) if until(e.exp) > Duration::ZERO => {
            if !flushed && e.checked.elapsed() < revalidate_after {
                Step::Fresh(e.id.clone())
            } else {
                Step::Revalidate(e.exp)
            }
        }
        _ => Step::Verify,
    }
}

/// The metric/log label of a local verification failure.
fn label(f: &Failure) -> &'static str {
    match f {
        Failure::UnknownKid => "unknown_kid",
        Failure::BadSignature => "bad_signature",
        Failure::Rejected(r) => r,
    }
}

/// The token authenticator of `token_review.jwks`: local first, TokenReview
/// as the fallback and the revalidator.
pub struct JwksAuthenticator {
    store: Arc<KeyStore>,
    reviewer: Arc<TokenReviewer>,
    cache: moka::future::Cache<Key, Entry>,
    /// Tokens verified here that TokenReview then rejected.
    revoked: Revoked,
    /// Tokens under unknown keys that TokenReview rejected (a small budget).
    unknown_kid: MarkerSet,
    /// Unknown-kid rejections that found `unknown_kid` full.
    kid_drops: std::sync::Mutex<KidDrops>,
    keys: KeyHasher,
    refresh: Duration,
    revalidate_after: Duration,
    review_bad_signatures: bool,
    /// Bumped by every `/cache/flush`.
    generation: AtomicU64,
    flushes: std::sync::Mutex<Flushes>,
    stats: Stats,
}

impl JwksAuthenticator {
    /// Wraps `reviewer`; holds at most `max_entries` verified tokens, and
    /// as many revoked ones.
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
            revoked: Revoked::new(usize::try_from(max_entries).unwrap_or(usize::MAX)),
            unknown_kid: MarkerSet::new(UNKNOWN_KID_MARKERS),
            kid_drops: std::sync::Mutex::new(KidDrops::default()),
            keys,
            refresh: cfg.refresh,
            revalidate_after: cfg.revalidate_after,
            review_bad_signatures: cfg.review_bad_signatures,
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

    /// How long until the next periodic key refresh: `refresh`, or the
    /// JWKS response's `max-age` when shorter (at least 10 s).
    pub fn next_refresh_in(&self) -> Duration {
        self.store.due_in(self.refresh, Instant::now())
    }

    /// Drops verified tokens: all of them, or those of `user`, now and when
    /// a check under way stores one, and fetches the keys again before the
    /// next token is verified (a key the cluster removed stops verifying).
    /// Tokens TokenReview rejected stay marked, and for `revalidate_after`
    /// every locally verified token is also reviewed.
    pub fn flush(&self, user: Option<&str>) {
        {
            let mut flushes = lock(&self.flushes);
            let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
            flushes.record(generation, user);
        }
        self.store.mark_stale();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let store = self.store.clone();
            rt.spawn(async move { store.refresh_if_stale().await });
        }
        // moka drops only the entries already stored: the generation check
        // in `flushed` catches those stored from here on.
        match user {
            None => self.cache.invalidate_all(),
            Some(u) => {
                let u = u.to_owned();
                // Fails only without `support_invalidation_closures`, set in `new`.
                let _ = self
                    .cache
                    .invalidate_entries_if(move |_, e| e.id.user() == u);
            }
        }
    }

    async fn check(&self, token: &BearerToken<'_>, client: IpAddr) -> TokenAnswer {
        // Taken before anything is checked: a flush from here on covers it.
        let generation = self.generation.load(Ordering::Acquire);
        // The request's one digest of the token (its own store: no other
        // cache's key can collide with it here).
        let key = token.digest(&self.keys);
        let now = now_secs();
        let marked = self.revoked.contains(&key, now) || self.unknown_kid.contains(&key, now);
        let cached = if marked {
            None
        } else {
            self.cache.get(&key).await
        };
        let flushed = cached.as_ref().is_some_and(|e| self.flushed(e));
        match step(marked, cached.as_ref(), self.revalidate_after, flushed) {
            Step::Fresh(id) => {
                self.stats.verification("cached");
                return Ok(Some(id));
            }
            Step::Revalidate(exp) => {
                return self.revalidate(key, exp, token, client, generation).await;
            }
            Step::ReviewOnly => {
                self.stats.verification("revoked_before");
                return self.reviewer.authenticate(token, client).await;
            }
            Step::Verify => {}
        }
        match self.verify(token.expose()).await {
            Ok((_, exp)) if self.distrusted(token.expose()) => {
                self.revalidate(key, exp, token, client, generation).await
            }
            Ok((id, exp)) => {
                self.stats.verification("verified");
                let entry = Entry {
                    id: id.clone(),
                    exp,
                    checked: Instant::now(),
                    generation,
                };
                self.keep(key, entry).await;
                Ok(Some(id))
            }
            Err(Failure::BadSignature) if !self.review_bad_signatures => {
                // kube-apiserver refuses it too: no TokenReview to spend.
                self.stats.verification("bad_signature");
                debug!("JWT signature does not verify under its known key; rejected");
                Ok(None)
            }
            Err(f) => {
                let reason = label(&f);
                self.stats.verification(reason);
                debug!(reason, "JWT not verified locally; asking TokenReview");
                let answer = self.reviewer.authenticate(token, client).await;
                if f == Failure::UnknownKid && matches!(answer, Ok(None)) {
                    self.mark_unknown_kid(key);
                }
                answer
            }
        }
    }

    /// Its key may arrive with a later refresh: remember the rejection so
    /// that the signature cannot undo it then, within the budget.
    fn mark_unknown_kid(&self, key: Key) {
        let now = now_secs();
        if !self
            .unknown_kid
            .insert(key, now + REJECTION_MEMORY.as_secs(), now)
        {
            lock(&self.kid_drops).record(Instant::now());
        }
    }

    /// Whether a token that verified locally must still go to TokenReview:
    /// after a flush, while a revoked token has no marker, or under a key
    /// that arrived after an unmarked unknown-kid rejection.
    fn distrusted(&self, token: &str) -> bool {
        let recently_flushed = lock(&self.flushes)
            .last
            .is_some_and(|t| t.elapsed() < self.revalidate_after);
        if recently_flushed || self.revoked.overflowed(now_secs()) {
            return true;
        }
        let drops = *lock(&self.kid_drops);
        drops != KidDrops::default()
            && keys::kid(token)
                .and_then(|kid| self.store.first_seen(&kid))
                .is_none_or(|seen| drops.key_needs_review(seen, Instant::now()))
    }

    /// Whether a flush after `entry`'s check began covers it.
    fn flushed(&self, entry: &Entry) -> bool {
        entry.generation != self.generation.load(Ordering::Acquire)
            && lock(&self.flushes).cover(entry)
    }

    /// Stores `entry` unless a flush since its check began covers it: that
    /// answer is older than the flush (and should a flush land between this
    /// test and the insert, the read check refuses the entry).
    async fn keep(&self, key: Key, entry: Entry) {
        if !self.flushed(&entry) {
            self.cache.insert(key, entry).await;
        }
    }

    /// A token verified here that is old (or distrusted): TokenReview
    /// decides. `generation`: the one the check began in.
    async fn revalidate(
        &self,
        key: Key,
        exp: u64,
        token: &BearerToken<'_>,
        client: IpAddr,
        generation: u64,
    ) -> TokenAnswer {
        match self.reviewer.authenticate(token, client).await {
            Ok(Some(id)) => {
                self.stats.verification("revalidated");
                let entry = Entry {
                    id: id.clone(),
                    exp,
                    checked: Instant::now(),
                    generation,
                };
                self.keep(key, entry).await;
                Ok(Some(id))
            }
            Ok(None) => {
                self.stats.verification("revoked");
                self.revoked.insert(key, exp, now_secs());
                self.cache.invalidate(&key).await;
                Ok(None)
            }
            Err(e) => {
                self.stats.verification("revalidation_error");
                Err(e)
            }
        }
    }

    /// Local verification, with one key refresh for an unknown `kid` (and
    /// the refresh a flush asked for, first).
    async fn verify(&self, token: &str) -> Result<(Identity, u64), Failure> {
        if self.store.is_stale() {
            self.store.refresh_if_stale().await;
        }
        let first = match self.store.keys() {
            Some(k) => k.verify(token),
            None => Err(Failure::UnknownKid),
        };
        if first != Err(Failure::UnknownKid) {
            return first;
        }
        let Some(kid) = keys::kid(token) else {
            return Err(Failure::Rejected("malformed"));
        };
        if !self.store.refresh_for(&kid).await {
            return Err(Failure::UnknownKid);
        }
        let keys = self.store.keys().ok_or(Failure::UnknownKid)?;
        keys.verify(token)
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl TokenAuthenticator for JwksAuthenticator {
    fn authenticate<'a>(
        &'a self,
        token: &'a BearerToken<'_>,
        client: IpAddr,
    ) -> BoxFuture<'a, TokenAnswer> {
        Box::pin(self.check(token, client))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::identity::AuthMethod;

    #[test]
    fn the_marker_and_cache_entry_decide_the_next_step() {
        let id = Identity::new(
            "system:serviceaccount:a:b".into(),
            None,
            vec![],
            BTreeMap::new(),
            AuthMethod::Token,
        );
        let exp = now_secs() + 600;
        let minute = Duration::from_secs(60);
        let entry = |exp, age| Entry {
            id: id.clone(),
            exp,
            checked: Instant::now() - age,
            generation: 0,
        };
        let cases = [
            (false, None, Step::Verify),
            (true, None, Step::ReviewOnly),
            (
                false,
                Some(entry(exp, Duration::ZERO)),
                Step::Fresh(id.clone()),
            ),
            (true, Some(entry(exp, Duration::ZERO)), Step::ReviewOnly),
            (false, Some(entry(exp, minute * 2)), Step::Revalidate(exp)),
            (false, Some(entry(exp - 700, Duration::ZERO)), Step::Verify),
        ];
        for (i, (marked, e, want)) in cases.into_iter().enumerate() {
            assert_eq!(step(marked, e.as_ref(), minute, false), want, "case {i}");
        }
        // Covered by a later flush: old, however fresh.
        let fresh = entry(exp, Duration::ZERO);
        assert_eq!(
            step(false, Some(&fresh), minute, true),
            Step::Revalidate(exp)
        );
        assert_eq!(step(true, Some(&fresh), minute, true), Step::ReviewOnly);
    }
}
