//! Bearer tokens of external JWT issuers (`authentication.jwt[]`), verified
//! here with the issuer's own keys and never sent to TokenReview.
//!
//! ```text
//! token ─▶ unverified iss ─ no configured issuer ─▶ Ok(None): the next backend (TokenReview)
//!            ▼ one of ours
//!          that issuer's keys only (its discovery + JWKS, refreshed like the cluster's)
//!            │ unknown kid ─▶ refresh (≤ 1/min) ─▶ verify again
//!            │ no keys ever loaded ─────────────▶ 503 (never TokenReview)
//!            │ any defect ──────────────────────▶ 401 (never TokenReview)
//!            ▼ signature, iss, aud, exp, nbf, claims
//!          mapped identity (username/groups prefixes, uid)
//! ```
//!
//! Routing is by the token's `iss` read *before* verification, only to pick
//! the keys: a token claiming an external issuer is checked against that
//! issuer's keys alone, so a key of the cluster or of another issuer cannot
//! verify it, and the cluster's verifier (`token_review.jwks`) requires the
//! cluster's `iss`, so these keys cannot verify a cluster token either.
//! Verified tokens are not cached: a signature check is cheap, and a key the
//! issuer removed stops working at the next refresh.

pub mod fetch;
pub mod mapping;
pub mod stats;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, error};

use super::bearer::BearerToken;
use super::jwks::crypto;
use super::jwks::keys::{self, Failure};
use super::jwks::store::KeyStore;
use super::{Error, TokenAnswer, TokenAuthenticator};
use crate::BoxFuture;
use crate::backend::BackendError;
use crate::config::issuers::IssuerConfig;
use crate::identity::Identity;
use crate::metrics::Metrics;
use fetch::IssuerSource;
use mapping::Claims;
use stats::IssuerStats;

/// One issuer: its keys, its mapping, its counters.
struct Issuer {
    cfg: IssuerConfig,
    store: Arc<KeyStore>,
    stats: IssuerStats,
}

/// Why a token of an issuer is not accepted.
enum Refused {
    /// No key set was ever loaded: 503.
    Unavailable,
    /// A defect, by its metric/log reason: 401.
    Rejected(&'static str),
}

fn failure(f: &Failure) -> Refused {
    Refused::Rejected(match f {
        Failure::UnknownKid => "unknown_kid",
        Failure::BadSignature => "bad_signature",
        Failure::Rejected(r) => r,
    })
}

impl Issuer {
    async fn authenticate(&self, token: &str) -> TokenAnswer {
        match self.verify(token).await {
            Ok(id) => {
                self.stats.verification("verified");
                Ok(Some(id))
            }
            Err(Refused::Unavailable) => {
                self.stats.verification("unavailable");
                Err(Error::Backend(BackendError::Unreachable {
                    backend: fetch::DISCOVERY,
                    detail: format!("no keys of {} loaded yet", self.cfg.url),
                }))
            }
            Err(Refused::Rejected(reason)) => {
                self.stats.verification(reason);
                debug!(issuer = %self.cfg.url, reason, "token of an external issuer rejected");
                Err(Error::TokenRejected)
            }
        }
    }

    async fn verify(&self, token: &str) -> Result<Identity, Refused> {
        let claims = self.decode(token).await?;
        mapping::identity(&self.cfg, &claims).map_err(|u| Refused::Rejected(u.label()))
    }

    /// Verified claims, with one key refresh for an unknown `kid` (bounded
    /// by the store: at most one a minute, however many tokens ask).
    async fn decode(&self, token: &str) -> Result<Claims, Refused> {
        let first = match self.store.keys() {
            Some(k) => k.decode::<Claims>(token),
            None => Err(Failure::UnknownKid),
        };
        match first {
            Err(Failure::UnknownKid) => {}
            other => return other.map_err(|f| failure(&f)),
        }
        let Some(kid) = keys::kid(token) else {
            return Err(Refused::Rejected("malformed"));
        };
        let known = self.store.refresh_for(&kid).await;
        let Some(set) = self.store.keys() else {
            return Err(Refused::Unavailable);
        };
        if !known {
            return Err(Refused::Rejected("unknown_kid"));
        }
        set.decode::<Claims>(token).map_err(|f| failure(&f))
    }
}

/// The token authenticator of `authentication.jwt[]`.
pub struct Issuers {
    by_url: HashMap<String, Issuer>,
    /// Stops the refresh tasks when the authenticator goes.
    _stop: DropGuard,
}

impl Issuers {
    /// Builds the issuers of `cfgs` (none: `None`), fetches their keys once
    /// (a failure is logged and retried by the refresh task; their tokens
    /// get 503 meanwhile) and starts refreshing them, until dropped.
    pub async fn start(
        cfgs: &[IssuerConfig],
        metrics: &Metrics,
    ) -> Result<Option<Arc<Self>>, String> {
        if cfgs.is_empty() {
            return Ok(None);
        }
        if !crypto::install() {
            error!(
                "another JWT crypto provider is installed; tokens of external issuers are refused"
            );
        }
        let stats = stats::Stats::registered(metrics);
        let stop = CancellationToken::new();
        let mut by_url = HashMap::new();
        for cfg in cfgs {
            let source = IssuerSource::new(cfg)?;
            let stats = stats.issuer(&cfg.url);
            let store = Arc::new(KeyStore::from_source(
                Box::new(source),
                Arc::new(stats.clone()),
            ));
            by_url.insert(
                cfg.url.clone(),
                Issuer {
                    cfg: cfg.clone(),
                    store,
                    stats,
                },
            );
        }
        futures_util::future::join_all(by_url.values().map(|i| i.store.refresh())).await;
        for i in by_url.values() {
            tokio::spawn(i.store.clone().run(i.cfg.refresh, stop.clone()));
        }
        Ok(Some(Arc::new(Self {
            by_url,
            _stop: stop.drop_guard(),
        })))
    }

    async fn check(&self, token: &BearerToken<'_>) -> TokenAnswer {
        // Named anywhere (a repeated or an array `iss` included), the token
        // is that issuer's: refused there if it does not verify, never sent
        // on to TokenReview.
        let named = keys::unverified_issuers(token.expose());
        match named.iter().find_map(|iss| self.by_url.get(iss)) {
            Some(issuer) => issuer.authenticate(token.expose()).await,
            None => Ok(None),
        }
    }
}

impl TokenAuthenticator for Issuers {
    fn authenticate<'a>(
        &'a self,
        token: &'a BearerToken<'_>,
        _client: IpAddr,
    ) -> BoxFuture<'a, TokenAnswer> {
        Box::pin(self.check(token))
    }
}
