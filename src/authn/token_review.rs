//! Bearer tokens checked with the Kubernetes TokenReview API, cached.
//!
//! Accepted tokens are kept for `ttl`, never past the token's own JWT `exp`
//! (read unverified, only ever to shorten the TTL). Rejected tokens are kept
//! for `failure_ttl`. API errors are never kept. See [`crate::cache`] for the
//! key, bound and coalescing. A token that would cost a TokenReview (a
//! miss) is first charged to its client ([`super::misses`]).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use serde::Deserialize;

use super::bearer::BearerToken;
use super::misses::MissLimiter;
use super::{Error, TokenAnswer, TokenAuthenticator};
use crate::BoxFuture;
use crate::backend::BackendError;
use crate::cache::{Keep, Key, KeyHasher, Kind, ReviewCache, jittered};
use crate::clock::since_epoch;
use crate::config::TokenReviewConfig;
use crate::identity::{AuthMethod, Identity};
use crate::kubernetes::ApiClient;

const BACKEND: &str = "TokenReview";
const PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";

/// The cached TokenReview authenticator.
pub struct TokenReviewer {
    api: Arc<ApiClient>,
    cache: ReviewCache<Option<Identity>>,
    keys: KeyHasher,
    settings: Arc<Settings>,
    /// `token_review.max_misses_per_client`; `None` when 0 (off).
    misses: Option<MissLimiter>,
}

struct Settings {
    audiences: Vec<String>,
    ttl: Duration,
    failure_ttl: Duration,
    /// `token_review.cache.jitter`.
    jitter: f64,
}

impl TokenReviewer {
    /// A reviewer calling `api` with the settings of `cfg`.
    pub fn new(api: Arc<ApiClient>, cfg: &TokenReviewConfig, keys: KeyHasher) -> Self {
        Self {
            api,
            cache: ReviewCache::build(
                Kind::Token,
                cfg.max_entries,
                cfg.freshness.refresh_ahead,
                weigh,
                Option::is_some,
            ),
            keys,
            settings: Arc::new(Settings {
                audiences: cfg.audiences.clone(),
                ttl: cfg.ttl,
                failure_ttl: cfg.failure_ttl,
                jitter: cfg.freshness.jitter,
            }),
            misses: MissLimiter::new(cfg.max_misses_per_client),
        }
    }

    /// The result cache (for metrics and flushing).
    pub fn cache(&self) -> &ReviewCache<Option<Identity>> {
        &self.cache
    }

    /// The cache key of `token`: its per-request digest, bound to the
    /// audiences asked for when there are any.
    fn key(&self, token: &BearerToken<'_>) -> Key {
        let digest = token.digest(&self.keys);
        if self.settings.audiences.is_empty() {
            return digest;
        }
        let mut key = self.keys.builder();
        key.part(b"tokenreview").part(&digest);
        for a in &self.settings.audiences {
            key.part(a.as_bytes());
        }
        key.finish()
    }

    /// Drops cached results: all of them, or the tokens of `user`.
    pub fn flush(&self, user: Option<&str>) {
        match user {
            None => self.cache.clear(),
            Some(u) => {
                let u = u.to_owned();
                self.cache
                    .clear_if(move |id| id.as_ref().is_some_and(|id| id.user() == u));
            }
        }
    }
}

impl TokenAuthenticator for TokenReviewer {
    fn authenticate<'a>(
        &'a self,
        token: &'a BearerToken<'_>,
        client: IpAddr,
    ) -> BoxFuture<'a, TokenAnswer> {
        let key = self.key(token);
        // Only a lookup that would start a review is charged to the client.
        let admit = move || {
            self.misses
                .as_ref()
                .is_none_or(|m| m.admit(client, Instant::now()))
        };
        Box::pin(async move {
            // Called only to start a review (a miss or a refresh): the one
            // place the token is copied.
            let fetch = move || -> BoxFuture<'static, _> {
                let (api, settings) = (self.api.clone(), self.settings.clone());
                let token = token.expose().to_owned();
                Box::pin(async move { review(&api, &settings, &token).await })
            };
            match self.cache.get_or_fetch_admitted(key, admit, fetch).await {
                Some(answer) => Ok(answer?),
                None => Err(Error::TokenMissesExceeded),
            }
        })
    }
}

/// One TokenReview call: the identity (or `None` when rejected) and how long
/// to keep the answer.
async fn review(
    api: &ApiClient,
    s: &Settings,
    token: &str,
) -> Result<(Option<Identity>, Keep), BackendError> {
    let request = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.to_owned()),
            audiences: (!s.audiences.is_empty()).then(|| s.audiences.clone()),
        },
        ..Default::default()
    };
    let body = serde_json::to_vec(&request).map_err(|_| BackendError::BadResponse {
        backend: BACKEND,
        detail: "cannot encode the request".into(),
    })?;
    drop(request);
    let status: TokenReviewStatus = api
        .create(
            BACKEND,
            PATH,
            "authentication.k8s.io/v1",
            "TokenReview",
            body,
        )
        .await?;
    match outcome(&status, &s.audiences)? {
        Some(id) => {
            // Jittered first, then capped: never past the JWT's `exp`.
            let keep = success_keep(jittered(s.ttl, s.jitter), jwt_expiry(token), since_epoch());
            Ok((Some(id), keep))
        }
        None => Ok((None, jittered(s.failure_ttl, s.jitter).into())),
    }
}

/// What a token cache entry holds on its own: the identity (shared with the
/// decision cache, counted here).
fn weigh(answer: &Option<Identity>) -> usize {
    answer.as_ref().map_or(0, Identity::own_bytes)
}

/// Reads a TokenReview status (pure): `Some(identity)` when authenticated for
/// one of `audiences` (any audience when none are configured), `None` when
/// rejected, `Err` when the answer claims success but is unusable.
pub fn outcome(
    status: &TokenReviewStatus,
    audiences: &[String],
) -> Result<Option<Identity>, BackendError> {
    if status.authenticated != Some(true) {
        return Ok(None);
    }
    if !audiences.is_empty() {
        let got = status.audiences.as_deref().unwrap_or_default();
        if !got.iter().any(|a| audiences.contains(a)) {
            return Ok(None);
        }
    }
    let bad = |detail: &str| BackendError::BadResponse {
        backend: BACKEND,
        detail: detail.to_owned(),
    };
    let user = status
        .user
        .as_ref()
        .ok_or_else(|| bad("authenticated without a user"))?;
    let name = user.username.clone().unwrap_or_default();
    let id = Identity::new(
        name,
        user.uid.clone().filter(|u| !u.is_empty()),
        user.groups.clone().unwrap_or_default(),
        user.extra.clone().unwrap_or_default(),
        AuthMethod::Token,
    );
    if let Some(field) = id.invalid_field() {
        return Err(bad(&format!(
            "the user's {field} is empty or has control characters"
        )));
    }
    Ok(Some(id))
}

/// The `exp` claim of a JWT, read without verifying anything. `None` for
/// tokens that are not JWTs or have no numeric `exp`.
pub fn jwt_expiry(token: &str) -> Option<i64> {
    #[derive(Deserialize)]
    struct Claims {
        exp: Option<serde_json::Number>,
    }
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let exp = serde_json::from_slice::<Claims>(&json).ok()?.exp?;
    exp.as_i64().or_else(|| exp.as_f64().map(|f| f as i64))
}

/// How to keep an accepted token: for its [`success_ttl`], and refreshed
/// ahead only when that is the whole `ttl`. An answer cut short by `exp` is
/// not:
/// no new answer could outlive it, so a hot token near its `exp` is
/// reviewed once more at most, not again at every shorter remainder.
pub fn success_keep(ttl: Duration, exp: Option<i64>, now: Duration) -> Keep {
    let kept = success_ttl(ttl, exp, now);
    Keep {
        ttl: kept,
        renewable: kept == ttl,
    }
}

/// How long to keep an accepted token: `ttl`, but never past `exp`;
/// `now` is the time since the Unix epoch, to the sub-second (a whole-second
/// clock would keep a token up to a second past its `exp`).
pub fn success_ttl(ttl: Duration, exp: Option<i64>, now: Duration) -> Duration {
    match exp {
        None => ttl,
        Some(exp) => match u64::try_from(exp) {
            Ok(exp) => ttl.min(Duration::from_secs(exp).saturating_sub(now)),
            Err(_) => Duration::ZERO,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::authentication::v1::UserInfo;

    use super::*;

    fn jwt(claims: &str) -> String {
        let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", b(r#"{"alg":"RS256"}"#), b(claims))
    }

    #[test]
    fn jwt_expiry_reads_exp_or_nothing() {
        let cases = [
            (jwt(r#"{"exp": 1700000000}"#), Some(1_700_000_000)),
            (jwt(r#"{"exp": 1700000000.5}"#), Some(1_700_000_000)),
            (jwt(r#"{"sub": "x"}"#), None),
            (jwt(r#"{"exp": "soon"}"#), None),
            ("opaque-static-token".to_owned(), None),
            ("a.b".to_owned(), None),
            ("a.!!!.c".to_owned(), None),
            (format!("{}.extra", jwt(r#"{"exp": 1}"#)), None),
        ];
        for (token, want) in cases {
            assert_eq!(jwt_expiry(&token), want, "{token}");
        }
    }

    #[test]
    fn ttl_is_capped_by_exp_and_zero_once_expired() {
        let two_min = Duration::from_secs(120);
        let at = Duration::from_secs;
        assert_eq!(success_ttl(two_min, None, at(1000)), two_min);
        assert_eq!(success_ttl(two_min, Some(1002), at(1000)), at(2));
        assert_eq!(success_ttl(two_min, Some(5000), at(1000)), two_min);
        assert_eq!(success_ttl(two_min, Some(1000), at(1000)), Duration::ZERO);
        assert_eq!(success_ttl(two_min, Some(10), at(1000)), Duration::ZERO);
        assert_eq!(success_ttl(two_min, Some(-1), at(1000)), Duration::ZERO);
        // Reviewed 0.85 s into a second: kept 0.15 s, not a whole second.
        let late = at(1000) + Duration::from_millis(850);
        assert_eq!(
            success_ttl(two_min, Some(1001), late),
            Duration::from_millis(150)
        );
    }

    fn status(auth: bool, user: Option<&str>, audiences: Option<&[&str]>) -> TokenReviewStatus {
        TokenReviewStatus {
            authenticated: Some(auth),
            audiences: audiences.map(|a| a.iter().map(|s| (*s).to_owned()).collect()),
            user: user.map(|u| UserInfo {
                username: Some(u.to_owned()),
                uid: Some("u-1".into()),
                groups: Some(vec!["system:serviceaccounts".into()]),
                extra: Some(BTreeMap::from([("Scopes".into(), vec!["a".into()])])),
            }),
            error: None,
        }
    }

    #[test]
    fn outcome_checks_authenticated_audiences_and_user() {
        let want = vec!["https://authgate".to_owned()];
        let id = outcome(&status(true, Some("sa"), None), &[])
            .unwrap()
            .unwrap();
        assert_eq!(id.user(), "sa");
        assert_eq!(id.uid(), Some("u-1"));
        assert_eq!(
            id.groups(),
            ["system:serviceaccounts", "system:authenticated"]
        );
        assert_eq!(id.extra().to_map()["scopes"], ["a"]);
        assert_eq!(outcome(&status(false, None, None), &[]).unwrap(), None);
        assert_eq!(
            outcome(&status(true, Some("sa"), Some(&["other"])), &want).unwrap(),
            None
        );
        assert_eq!(
            outcome(&status(true, Some("sa"), None), &want).unwrap(),
            None
        );
        assert!(
            outcome(
                &status(true, Some("sa"), Some(&["other", "https://authgate"])),
                &want
            )
            .unwrap()
            .is_some()
        );
        assert!(outcome(&status(true, None, None), &[]).is_err());
        assert!(outcome(&status(true, Some(""), None), &[]).is_err());
        assert!(outcome(&status(true, Some("a\nb"), None), &[]).is_err());
    }
}
