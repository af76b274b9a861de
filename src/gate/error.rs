//! Why a request was not forwarded, and the one map from that to a refusal.
//!
//! [`Error::refusal`] is the only place that decides status, reason,
//! outcome, public message, challenge and `Retry-After` of a refused
//! request. The response ([`super::respond`]), the request metrics and the
//! access log ([`super::audit`]) all read the same [`Refusal`]. The match is
//! exhaustive and has no `_` arm: a new error kind does not compile until it
//! is given its refusal here.

use http::{HeaderValue, StatusCode};

use crate::authn;
use crate::authz;
use crate::backend::BackendError;
use crate::proxy;
use crate::tls;

/// Why a request was not forwarded (or forwarding failed).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Unusable request line (bad path, `CONNECT`).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// No route (or admin endpoint) covers the path.
    #[error("no route for path {0:?}")]
    NoRoute(String),
    /// `mode: auth`: the checked request carries identity headers, which
    /// the front proxy would pass on.
    #[error("the request carries the identity header {0}; clients may not send identity headers")]
    SpoofedIdentity(String),
    /// `admin.access: loopback` and the peer is not on loopback.
    #[error("this admin endpoint answers loopback clients only")]
    AdminLoopbackOnly,
    /// Not authenticated.
    #[error(transparent)]
    Authn(#[from] authn::Error),
    /// Not authorized.
    #[error(transparent)]
    Authz(#[from] authz::Error),
    /// Forwarding failed.
    #[error(transparent)]
    Upstream(#[from] proxy::Error),
    /// A bug: a panic, or an identity that cannot be expressed as headers.
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// `POST /cache/flush` with `fleet`: this replica flushed, but the
    /// revocation object could not be updated (the other replicas did not).
    #[error("{0}")]
    FleetFlush(String),
}

/// The fixed reason of a refusal: the `reason` of the JSON body, the access
/// log and the README's "Responses" table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Unusable request.
    BadRequest,
    /// No route.
    NoRoute,
    /// Client-sent identity headers in `mode: auth`.
    SpoofedIdentity,
    /// No certificate and no token.
    MissingCredentials,
    /// A verified certificate that names nobody.
    CertUnmapped,
    /// A malformed `Authorization` header.
    InvalidToken,
    /// No token backend accepted the token.
    TokenRejected,
    /// A token no cache knows, from a client over its miss limit.
    TokenMissesExceeded,
    /// A token where the route reads none.
    TokenForbidden,
    /// A certificate where the route reads none.
    CertNotAccepted,
    /// A forwarded certificate that did not verify.
    CertRefused,
    /// A token of an identity pinned to mTLS.
    MtlsRequired,
    /// The connection's certificate expired since its handshake.
    CertExpired,
    /// The connection's certificate was revoked since its handshake.
    CertRevoked,
    /// The connection's certificate's CA left the bundle since its handshake.
    CertUntrusted,
    /// Denied by the authorizers (or by the admin loopback guard).
    Forbidden,
    /// A review backend did not answer in time.
    BackendTimeout,
    /// A review backend is throttled.
    BackendThrottled,
    /// A review backend is unreachable.
    BackendUnreachable,
    /// A review backend answered something unusable.
    BackendError,
    /// The upstream failed.
    UpstreamError,
    /// The upstream did not answer in time.
    UpstreamTimeout,
    /// A bug.
    InternalError,
}

impl Reason {
    /// Every reason, for exhaustive tests and documentation.
    pub const ALL: [Self; 23] = [
        Self::BadRequest,
        Self::NoRoute,
        Self::SpoofedIdentity,
        Self::MissingCredentials,
        Self::CertUnmapped,
        Self::InvalidToken,
        Self::TokenRejected,
        Self::TokenMissesExceeded,
        Self::TokenForbidden,
        Self::CertNotAccepted,
        Self::CertRefused,
        Self::MtlsRequired,
        Self::CertExpired,
        Self::CertRevoked,
        Self::CertUntrusted,
        Self::Forbidden,
        Self::BackendTimeout,
        Self::BackendThrottled,
        Self::BackendUnreachable,
        Self::BackendError,
        Self::UpstreamError,
        Self::UpstreamTimeout,
        Self::InternalError,
    ];

    /// The snake-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::NoRoute => "no_route",
            Self::SpoofedIdentity => "spoofed_identity",
            Self::MissingCredentials => "missing_credentials",
            Self::CertUnmapped => "cert_unmapped",
            Self::InvalidToken => "invalid_token",
            Self::TokenRejected => "token_rejected",
            Self::TokenMissesExceeded => "token_misses_exceeded",
            Self::TokenForbidden => "token_forbidden",
            Self::CertNotAccepted => "cert_not_accepted",
            Self::CertRefused => "cert_refused",
            Self::MtlsRequired => "mtls_required",
            Self::CertExpired => "cert_expired",
            Self::CertRevoked => "cert_revoked",
            Self::CertUntrusted => "cert_untrusted",
            Self::Forbidden => "forbidden",
            Self::BackendTimeout => "backend_timeout",
            Self::BackendThrottled => "backend_throttled",
            Self::BackendUnreachable => "backend_unreachable",
            Self::BackendError => "backend_error",
            Self::UpstreamError => "upstream_error",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::InternalError => "internal_error",
        }
    }

    /// The `outcome` label this reason counts under.
    pub fn outcome(self) -> Outcome {
        match self {
            Self::BadRequest => Outcome::BadRequest,
            Self::NoRoute => Outcome::NoRoute,
            Self::MissingCredentials
            | Self::CertUnmapped
            | Self::InvalidToken
            | Self::TokenRejected
            | Self::TokenMissesExceeded
            | Self::TokenForbidden
            | Self::CertNotAccepted
            | Self::CertRefused
            | Self::MtlsRequired
            | Self::CertExpired
            | Self::CertRevoked
            | Self::CertUntrusted => Outcome::Unauthenticated,
            Self::SpoofedIdentity | Self::Forbidden => Outcome::Forbidden,
            Self::BackendTimeout
            | Self::BackendThrottled
            | Self::BackendUnreachable
            | Self::BackendError => Outcome::BackendError,
            Self::UpstreamError | Self::UpstreamTimeout => Outcome::UpstreamError,
            Self::InternalError => Outcome::InternalError,
        }
    }
}

/// The `outcome` label of `authgate_requests_total`: a coarse class of the
/// reason, for dashboards and alerts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Forwarded (or, in `mode: auth`, answered 200).
    Allowed,
    /// 401.
    Unauthenticated,
    /// 403.
    Forbidden,
    /// 503: a review backend could not answer.
    BackendError,
    /// 502/504.
    UpstreamError,
    /// 400.
    BadRequest,
    /// 404.
    NoRoute,
    /// 500: a bug.
    InternalError,
}

impl Outcome {
    /// Every outcome, in [`Outcome::index`] order.
    pub const ALL: [Self; 8] = [
        Self::Allowed,
        Self::Unauthenticated,
        Self::Forbidden,
        Self::BackendError,
        Self::UpstreamError,
        Self::BadRequest,
        Self::NoRoute,
        Self::InternalError,
    ];

    /// Its position in [`Outcome::ALL`] (the metrics' series slot).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::BackendError => "backend_error",
            Self::UpstreamError => "upstream_error",
            Self::BadRequest => "bad_request",
            Self::NoRoute => "no_route",
            Self::InternalError => "internal_error",
        }
    }
}

/// What a refused request gets: everything the response, the metrics and
/// the access log need, decided once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// 400, 401, 403, 404, 500, 502, 503 or 504.
    pub status: StatusCode,
    /// The fixed reason.
    pub reason: Reason,
    /// What the client is told: enough to act on, never a token, an
    /// internal address or a cause.
    pub message: String,
    /// `WWW-Authenticate` of a 401.
    pub challenge: Option<HeaderValue>,
    /// `Retry-After` seconds of a 503.
    pub retry_after: Option<u64>,
    /// Close the connection after this response (HTTP/1 `Connection:
    /// close`, HTTP/2 GOAWAY): its TLS identity no longer holds.
    pub close: bool,
}

impl Refusal {
    /// The outcome label of this refusal.
    pub fn outcome(&self) -> Outcome {
        self.reason.outcome()
    }
}

const CHALLENGE: HeaderValue = HeaderValue::from_static(r#"Bearer realm="authgate""#);
const CHALLENGE_INVALID: HeaderValue =
    HeaderValue::from_static(r#"Bearer realm="authgate", error="invalid_token""#);

impl Error {
    /// The refusal for this error: the one map.
    pub fn refusal(&self) -> Refusal {
        let (status, reason) = self.classify();
        let message = match self {
            Self::Authn(authn::Error::Backend(b)) => {
                format!(
                    "authentication is unavailable ({}); retry later",
                    backend_reason(b).as_str()
                )
            }
            Self::Authz(authz::Error::Backend(b)) => format!(
                "authorization is unavailable ({}); retry later",
                backend_reason(b).as_str()
            ),
            Self::Upstream(proxy::Error::Unavailable { .. }) => {
                "the upstream is unavailable".into()
            }
            Self::Upstream(proxy::Error::RequestBody(_)) => "the request body is malformed".into(),
            Self::Upstream(proxy::Error::Timeout { .. }) => {
                "the upstream did not answer in time".into()
            }
            Self::Upstream(proxy::Error::NoUpstream) | Self::Internal(_) => "internal error".into(),
            Self::BadRequest(_)
            | Self::NoRoute(_)
            | Self::SpoofedIdentity(_)
            | Self::AdminLoopbackOnly
            | Self::FleetFlush(_)
            | Self::Authn(_)
            | Self::Authz(_) => self.to_string(),
        };
        let challenge = match self {
            Self::Authn(authn::Error::Backend(_)) => None,
            Self::Authn(authn::Error::InvalidToken(_) | authn::Error::TokenRejected) => {
                Some(CHALLENGE_INVALID)
            }
            Self::Authn(_) => Some(CHALLENGE),
            Self::BadRequest(_)
            | Self::NoRoute(_)
            | Self::SpoofedIdentity(_)
            | Self::AdminLoopbackOnly
            | Self::Authz(_)
            | Self::Upstream(_)
            | Self::FleetFlush(_)
            | Self::Internal(_) => None,
        };
        let retry_after = match self {
            Self::Authn(authn::Error::Backend(b)) | Self::Authz(authz::Error::Backend(b)) => {
                Some(b.retry_after().as_secs().max(1))
            }
            Self::FleetFlush(_) => Some(1),
            Self::BadRequest(_)
            | Self::NoRoute(_)
            | Self::SpoofedIdentity(_)
            | Self::AdminLoopbackOnly
            | Self::Authn(_)
            | Self::Authz(_)
            | Self::Upstream(_)
            | Self::Internal(_) => None,
        };
        Refusal {
            status,
            reason,
            message,
            challenge,
            retry_after,
            close: matches!(self, Self::Authn(authn::Error::StaleCert(_))),
        }
    }

    /// Status and reason.
    fn classify(&self) -> (StatusCode, Reason) {
        use authn::Error as N;
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, Reason::BadRequest),
            Self::NoRoute(_) => (StatusCode::NOT_FOUND, Reason::NoRoute),
            Self::SpoofedIdentity(_) => (StatusCode::FORBIDDEN, Reason::SpoofedIdentity),
            Self::AdminLoopbackOnly => (StatusCode::FORBIDDEN, Reason::Forbidden),
            Self::Authn(e) => match e {
                N::MissingCredentials => unauthorized(Reason::MissingCredentials),
                N::CertUnmapped(_) => unauthorized(Reason::CertUnmapped),
                N::InvalidToken(_) => unauthorized(Reason::InvalidToken),
                N::TokenRejected => unauthorized(Reason::TokenRejected),
                N::TokenMissesExceeded => unauthorized(Reason::TokenMissesExceeded),
                N::TokenForbidden => unauthorized(Reason::TokenForbidden),
                N::CertNotAccepted => unauthorized(Reason::CertNotAccepted),
                N::ForwardedCertRefused(_) => unauthorized(Reason::CertRefused),
                N::MtlsRequired { .. } => unauthorized(Reason::MtlsRequired),
                N::StaleCert(tls::Stale::Expired) => unauthorized(Reason::CertExpired),
                N::StaleCert(tls::Stale::Revoked) => unauthorized(Reason::CertRevoked),
                N::StaleCert(tls::Stale::Untrusted) => unauthorized(Reason::CertUntrusted),
                N::Backend(b) => (StatusCode::SERVICE_UNAVAILABLE, backend_reason(b)),
            },
            Self::Authz(authz::Error::Denied { .. }) => (StatusCode::FORBIDDEN, Reason::Forbidden),
            Self::Authz(authz::Error::Backend(b)) => {
                (StatusCode::SERVICE_UNAVAILABLE, backend_reason(b))
            }
            Self::Upstream(proxy::Error::Unavailable { .. }) => {
                (StatusCode::BAD_GATEWAY, Reason::UpstreamError)
            }
            Self::Upstream(proxy::Error::RequestBody(_)) => {
                (StatusCode::BAD_REQUEST, Reason::BadRequest)
            }
            Self::Upstream(proxy::Error::Timeout { .. }) => {
                (StatusCode::GATEWAY_TIMEOUT, Reason::UpstreamTimeout)
            }
            Self::Upstream(proxy::Error::NoUpstream) | Self::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, Reason::InternalError)
            }
            Self::FleetFlush(_) => (StatusCode::SERVICE_UNAVAILABLE, Reason::BackendError),
        }
    }
}

fn unauthorized(reason: Reason) -> (StatusCode, Reason) {
    (StatusCode::UNAUTHORIZED, reason)
}

fn backend_reason(b: &BackendError) -> Reason {
    match b {
        BackendError::Timeout { .. } => Reason::BackendTimeout,
        BackendError::Throttled { .. } => Reason::BackendThrottled,
        BackendError::Unreachable { .. } => Reason::BackendUnreachable,
        BackendError::BadResponse { .. } => Reason::BackendError,
    }
}

#[cfg(test)]
mod tests;
