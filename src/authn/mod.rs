//! Authentication: who is asking.
//!
//! A verified client certificate that maps to an identity wins. Otherwise the
//! bearer token, if any, goes through the token backends in order (static
//! first, then the Kubernetes API), like the apiserver's union of
//! authenticators. The result goes to [`crate::authz`].

pub mod bearer;
pub mod issuers;
pub mod jwks;
pub mod misses;
pub mod policy;
pub mod static_tokens;
pub mod token_review;
pub mod x509;

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;

use crate::BoxFuture;
use crate::backend::BackendError;
use crate::config::{RouteAuth, TokenPolicy};
use crate::identity::Identity;
use bearer::{BearerToken, Malformed};
use x509::{CertMapper, CertUnmapped};

/// What the TLS layer learnt about the client certificate of a connection.
pub type CertIdentity = Result<Identity, CertUnmapped>;

/// What a token backend says about one token.
pub type TokenAnswer = Result<Option<Identity>, Error>;

/// A bearer-token backend.
pub trait TokenAuthenticator: Send + Sync {
    /// `Ok(Some)`: the token is valid and names this identity. `Ok(None)`: this
    /// backend does not accept it (the next backend is asked). `Err`: the
    /// request is refused with that error, no other backend asked:
    /// [`Error::Backend`] when the backend could not decide (503),
    /// [`Error::TokenMissesExceeded`] when `client`, the connection's peer,
    /// sent more unknown tokens than it may have reviewed (401).
    fn authenticate<'a>(
        &'a self,
        token: &'a BearerToken<'_>,
        client: IpAddr,
    ) -> BoxFuture<'a, TokenAnswer>;
}

/// Why a request is not authenticated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Neither a client certificate nor a bearer token.
    #[error("no client certificate or bearer token was presented")]
    MissingCredentials,
    /// A verified certificate that names nobody, and no bearer token.
    #[error("{0}, and no bearer token was presented")]
    CertUnmapped(CertUnmapped),
    /// An `Authorization` header that cannot carry a token.
    #[error("invalid Authorization header: {0}")]
    InvalidToken(Malformed),
    /// Every token backend declined the token.
    #[error("the bearer token was not accepted")]
    TokenRejected,
    /// A bearer token on a route that does not accept tokens.
    #[error("bearer tokens are not accepted on this route; use a client certificate")]
    TokenForbidden,
    /// A client certificate (and no token) on a route that accepts only tokens.
    #[error("client certificates are not accepted on this route; use a bearer token")]
    CertNotAccepted,
    /// A certificate forwarded by a trusted front proxy (`mode: auth`) that is
    /// malformed or does not verify against the client CA.
    #[error("the forwarded client certificate was refused: {0}")]
    ForwardedCertRefused(String),
    /// A token of an identity pinned to client certificates.
    #[error("{user} must authenticate with a client certificate; its bearer tokens are refused")]
    MtlsRequired {
        /// The identity the token named.
        user: String,
    },
    /// The connection's certificate verified at its handshake but no longer
    /// does (expired, revoked, or its CA left the bundle).
    #[error("{0}; reconnect with a valid certificate")]
    StaleCert(crate::tls::Stale),
    /// A token no cache knows, from a client that sent more of those than
    /// `token_review.max_misses_per_client` allows: refused unreviewed.
    #[error("too many unknown bearer tokens from this address; retry later")]
    TokenMissesExceeded,
    /// A token backend could not decide.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// The certificate rules and the token backends.
pub struct Authenticator {
    certs: CertMapper,
    tokens: Vec<Arc<dyn TokenAuthenticator>>,
}

impl Authenticator {
    /// Token backends are asked in the order given.
    pub fn new(certs: CertMapper, tokens: Vec<Arc<dyn TokenAuthenticator>>) -> Self {
        Self { certs, tokens }
    }

    /// Maps a connection's verified chain (leaf first), once per
    /// connection and again whenever the TLS material changes.
    pub fn map_cert(
        &self,
        chain: &[rustls_pki_types::CertificateDer<'_>],
        issuers: &crate::tls::Issuers,
    ) -> CertIdentity {
        self.certs.map(chain, issuers, crate::clock::unix_now())
    }

    /// Establishes the identity of a request from its connection's
    /// certificate and its headers, using only the methods `allow` accepts.
    /// `client` is the connection's peer (token backends limit unknown
    /// tokens per client).
    pub async fn authenticate(
        &self,
        cert: Option<&CertIdentity>,
        headers: &HeaderMap,
        allow: RouteAuth,
        client: IpAddr,
    ) -> Result<Identity, Error> {
        // A verified, mapped certificate wins over any token, where accepted.
        let (unmapped, cert_refused) = match cert {
            Some(Ok(id)) if allow.mtls => return Ok(id.clone()),
            Some(Ok(_)) => (None, true),
            Some(Err(why)) => (Some(*why), false),
            None => (None, false),
        };
        // Otherwise the bearer token, refused early when malformed or where
        // tokens are not accepted (before any backend is asked).
        let Some(token) = bearer::extract(headers).map_err(Error::InvalidToken)? else {
            return Err(match (cert_refused, unmapped) {
                (true, _) => Error::CertNotAccepted,
                (false, Some(why)) => Error::CertUnmapped(why),
                (false, None) => Error::MissingCredentials,
            });
        };
        if allow.token == TokenPolicy::Forbidden {
            return Err(Error::TokenForbidden);
        }
        for backend in &self.tokens {
            if let Some(id) = backend.authenticate(&token, client).await? {
                return Ok(id);
            }
        }
        Err(Error::TokenRejected)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use http::HeaderValue;
    use http::header::AUTHORIZATION;

    use super::*;
    use crate::identity::AuthMethod;

    struct Fixed(TokenAnswer);

    impl TokenAuthenticator for Fixed {
        fn authenticate<'a>(
            &'a self,
            _: &'a BearerToken<'_>,
            _: IpAddr,
        ) -> BoxFuture<'a, TokenAnswer> {
            Box::pin(std::future::ready(self.0.clone()))
        }
    }

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn id(user: &str, method: AuthMethod) -> Identity {
        Identity::new(user.into(), None, vec![], BTreeMap::new(), method)
    }

    fn bearer(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
        );
        h
    }

    #[tokio::test]
    async fn route_methods_decide_which_credential_is_read() {
        let bob: Arc<dyn TokenAuthenticator> =
            Arc::new(Fixed(Ok(Some(id("bob", AuthMethod::Token)))));
        let a = Authenticator::new(CertMapper::new(&[]), vec![bob]);
        let alice: CertIdentity = Ok(id("alice", AuthMethod::Mtls));
        let mtls_only = RouteAuth {
            mtls: true,
            token: TokenPolicy::Forbidden,
            enforce: true,
        };
        let token_only = RouteAuth {
            mtls: false,
            token: TokenPolicy::Allowed,
            enforce: true,
        };
        let user = |r: Result<Identity, Error>| r.map(|id| id.user().to_owned());
        // mTLS-only: the certificate serves, a token alone is refused unasked.
        assert_eq!(
            user(
                a.authenticate(Some(&alice), &bearer("t"), mtls_only, PEER)
                    .await
            ),
            Ok("alice".into())
        );
        assert_eq!(
            user(a.authenticate(None, &bearer("t"), mtls_only, PEER).await),
            Err(Error::TokenForbidden)
        );
        assert_eq!(
            user(
                a.authenticate(None, &HeaderMap::new(), mtls_only, PEER)
                    .await
            ),
            Err(Error::MissingCredentials)
        );
        // Token-only: the certificate is passed over for the token.
        assert_eq!(
            user(
                a.authenticate(Some(&alice), &bearer("t"), token_only, PEER)
                    .await
            ),
            Ok("bob".into())
        );
        assert_eq!(
            user(
                a.authenticate(Some(&alice), &HeaderMap::new(), token_only, PEER)
                    .await
            ),
            Err(Error::CertNotAccepted)
        );
    }

    #[tokio::test]
    async fn certificate_wins_then_tokens_in_order_then_the_reason() {
        let down = BackendError::Unreachable {
            backend: "TokenReview",
            detail: "connection refused".into(),
        };
        let none: Arc<dyn TokenAuthenticator> = Arc::new(Fixed(Ok(None)));
        let bob: Arc<dyn TokenAuthenticator> =
            Arc::new(Fixed(Ok(Some(id("bob", AuthMethod::Token)))));
        let err: Arc<dyn TokenAuthenticator> = Arc::new(Fixed(Err(down.clone().into())));
        let alice: CertIdentity = Ok(id("alice", AuthMethod::Mtls));
        let unmapped: CertIdentity = Err(CertUnmapped::MultipleCommonNames);

        let certs = || CertMapper::new(&[]);
        let a = Authenticator::new(certs(), vec![none.clone(), bob.clone()]);
        assert_eq!(
            a.authenticate(Some(&alice), &bearer("t"), RouteAuth::default(), PEER)
                .await
                .unwrap()
                .user(),
            "alice"
        );
        assert_eq!(
            a.authenticate(Some(&unmapped), &bearer("t"), RouteAuth::default(), PEER)
                .await
                .unwrap()
                .user(),
            "bob"
        );
        assert_eq!(
            a.authenticate(None, &bearer("t"), RouteAuth::default(), PEER)
                .await
                .unwrap()
                .user(),
            "bob"
        );
        assert_eq!(
            a.authenticate(
                Some(&unmapped),
                &HeaderMap::new(),
                RouteAuth::default(),
                PEER
            )
            .await,
            Err(Error::CertUnmapped(CertUnmapped::MultipleCommonNames))
        );
        assert_eq!(
            a.authenticate(None, &HeaderMap::new(), RouteAuth::default(), PEER)
                .await,
            Err(Error::MissingCredentials)
        );
        assert_eq!(
            a.authenticate(None, &bearer(""), RouteAuth::default(), PEER)
                .await,
            Err(Error::InvalidToken(Malformed::Empty))
        );

        let only_none = Authenticator::new(certs(), vec![none.clone()]);
        assert_eq!(
            only_none
                .authenticate(None, &bearer("t"), RouteAuth::default(), PEER)
                .await,
            Err(Error::TokenRejected)
        );
        // A backend error is never read as "rejected" or as "allowed".
        let failing = Authenticator::new(certs(), vec![none, err, bob]);
        assert_eq!(
            failing
                .authenticate(None, &bearer("t"), RouteAuth::default(), PEER)
                .await,
            Err(Error::Backend(down))
        );
    }
}
