use std::time::Duration;

use super::*;
use crate::authn::bearer::Malformed;
use crate::authn::x509::CertUnmapped;

/// An error of each reason. The match is exhaustive, so a new reason needs
/// an example (and so an expectation below) before the tests compile.
fn example(reason: Reason) -> Error {
    let backend = |b| Error::Authz(authz::Error::Backend(b));
    match reason {
        Reason::BadRequest => Error::BadRequest("CONNECT is not supported".into()),
        Reason::NoRoute => Error::NoRoute("/x".into()),
        Reason::SpoofedIdentity => Error::SpoofedIdentity("x-remote-user".into()),
        Reason::MissingCredentials => authn::Error::MissingCredentials.into(),
        Reason::CertUnmapped => authn::Error::CertUnmapped(CertUnmapped::NoRuleMatched).into(),
        Reason::InvalidToken => authn::Error::InvalidToken(Malformed::Empty).into(),
        Reason::TokenRejected => authn::Error::TokenRejected.into(),
        Reason::TokenMissesExceeded => authn::Error::TokenMissesExceeded.into(),
        Reason::TokenForbidden => authn::Error::TokenForbidden.into(),
        Reason::CertNotAccepted => authn::Error::CertNotAccepted.into(),
        Reason::CertRefused => authn::Error::ForwardedCertRefused("bad chain".into()).into(),
        Reason::CertExpired => authn::Error::StaleCert(tls::Stale::Expired).into(),
        Reason::CertRevoked => authn::Error::StaleCert(tls::Stale::Revoked).into(),
        Reason::CertUntrusted => authn::Error::StaleCert(tls::Stale::Untrusted).into(),
        Reason::MtlsRequired => authn::Error::MtlsRequired {
            user: "system:serviceaccount:ns:sa".into(),
        }
        .into(),
        Reason::Forbidden => authz::Error::Denied {
            user: "alice".into(),
            verb: "get".into(),
            target: "path \"/admin\"".into(),
            reason: String::new(),
        }
        .into(),
        Reason::BackendTimeout => Error::Authn(authn::Error::Backend(BackendError::Timeout {
            backend: "TokenReview",
        })),
        Reason::BackendThrottled => backend(BackendError::Throttled {
            backend: "SubjectAccessReview",
            retry_after: Some(Duration::from_secs(7)),
        }),
        Reason::BackendUnreachable => backend(BackendError::Unreachable {
            backend: "SubjectAccessReview",
            detail: "connect 10.0.0.1:443: refused".into(),
        }),
        Reason::BackendError => backend(BackendError::BadResponse {
            backend: "SubjectAccessReview",
            detail: "10.0.0.1 sent HTML".into(),
        }),
        Reason::UpstreamError => proxy::Error::Unavailable {
            upstream: "10.0.0.1:80".into(),
            detail: "refused".into(),
        }
        .into(),
        Reason::UpstreamTimeout => proxy::Error::Timeout {
            upstream: "10.0.0.1:80".into(),
            timeout: Duration::from_secs(30),
        }
        .into(),
        Reason::InternalError => Error::Internal("request handler panicked"),
    }
}

#[test]
#[expect(clippy::too_many_lines, reason = "one table row per reason")]
fn every_reason_has_its_status_outcome_and_public_message() {
    // (reason, status, outcome label, the public message contains)
    let expected: [(Reason, u16, &str, &str); 23] = [
        (
            Reason::BadRequest,
            400,
            "bad_request",
            "CONNECT is not supported",
        ),
        (Reason::NoRoute, 404, "no_route", "no route for path \"/x\""),
        (Reason::SpoofedIdentity, 403, "forbidden", "x-remote-user"),
        (
            Reason::MissingCredentials,
            401,
            "unauthenticated",
            "no client certificate or bearer token",
        ),
        (
            Reason::CertUnmapped,
            401,
            "unauthenticated",
            "no bearer token was presented",
        ),
        (
            Reason::InvalidToken,
            401,
            "unauthenticated",
            "invalid Authorization header",
        ),
        (
            Reason::TokenRejected,
            401,
            "unauthenticated",
            "was not accepted",
        ),
        (
            Reason::TokenMissesExceeded,
            401,
            "unauthenticated",
            "too many unknown bearer tokens from this address; retry later",
        ),
        (
            Reason::TokenForbidden,
            401,
            "unauthenticated",
            "use a client certificate",
        ),
        (
            Reason::CertNotAccepted,
            401,
            "unauthenticated",
            "use a bearer token",
        ),
        (
            Reason::CertRefused,
            401,
            "unauthenticated",
            "forwarded client certificate was refused",
        ),
        (
            Reason::MtlsRequired,
            401,
            "unauthenticated",
            "system:serviceaccount:ns:sa must authenticate with a client certificate",
        ),
        (
            Reason::CertExpired,
            401,
            "unauthenticated",
            "has expired; reconnect",
        ),
        (
            Reason::CertRevoked,
            401,
            "unauthenticated",
            "has been revoked; reconnect",
        ),
        (
            Reason::CertUntrusted,
            401,
            "unauthenticated",
            "no longer trusted; reconnect",
        ),
        (
            Reason::Forbidden,
            403,
            "forbidden",
            "user \"alice\" may not get path \"/admin\"",
        ),
        (
            Reason::BackendTimeout,
            503,
            "backend_error",
            "authentication is unavailable (backend_timeout); retry later",
        ),
        (
            Reason::BackendThrottled,
            503,
            "backend_error",
            "authorization is unavailable (backend_throttled); retry later",
        ),
        (
            Reason::BackendUnreachable,
            503,
            "backend_error",
            "authorization is unavailable (backend_unreachable)",
        ),
        (
            Reason::BackendError,
            503,
            "backend_error",
            "authorization is unavailable (backend_error)",
        ),
        (
            Reason::UpstreamError,
            502,
            "upstream_error",
            "the upstream is unavailable",
        ),
        (
            Reason::UpstreamTimeout,
            504,
            "upstream_error",
            "the upstream did not answer in time",
        ),
        (
            Reason::InternalError,
            500,
            "internal_error",
            "internal error",
        ),
    ];
    assert_eq!(expected.len(), Reason::ALL.len());
    for (reason, status, outcome, message) in expected {
        let r = example(reason).refusal();
        assert_eq!(r.reason, reason);
        assert_eq!(r.status.as_u16(), status, "{reason:?}");
        assert_eq!(r.outcome().as_str(), outcome, "{reason:?}");
        assert!(r.message.contains(message), "{reason:?}: {:?}", r.message);
        // Internal addresses and causes stay in the log.
        assert!(
            !r.message.contains("10.0.0.1"),
            "{reason:?}: {:?}",
            r.message
        );
        // 401s challenge, 503s say when to retry, nothing else does either.
        assert_eq!(r.challenge.is_some(), status == 401, "{reason:?}");
        assert_eq!(r.retry_after.is_some(), status == 503, "{reason:?}");
        // Only a stale certificate ends its connection.
        let stale = matches!(
            reason,
            Reason::CertExpired | Reason::CertRevoked | Reason::CertUntrusted
        );
        assert_eq!(r.close, stale, "{reason:?}");
    }
}

#[test]
fn every_reason_in_all_is_distinct_and_named_once() {
    let mut names: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), Reason::ALL.len());
}

#[test]
fn challenges_and_retry_after_follow_the_cause() {
    let r = example(Reason::InvalidToken).refusal();
    assert_eq!(
        r.challenge.unwrap(),
        r#"Bearer realm="authgate", error="invalid_token""#
    );
    let r = example(Reason::TokenRejected).refusal();
    assert_eq!(
        r.challenge.unwrap(),
        r#"Bearer realm="authgate", error="invalid_token""#
    );
    let r = example(Reason::MissingCredentials).refusal();
    assert_eq!(r.challenge.unwrap(), r#"Bearer realm="authgate""#);
    // An unreviewed token was not found invalid: a plain challenge.
    let r = example(Reason::TokenMissesExceeded).refusal();
    assert_eq!(r.challenge.unwrap(), r#"Bearer realm="authgate""#);
    // The API's Retry-After is passed on; otherwise one second.
    assert_eq!(
        example(Reason::BackendThrottled).refusal().retry_after,
        Some(7)
    );
    assert_eq!(
        example(Reason::BackendTimeout).refusal().retry_after,
        Some(1)
    );
    // A request-body error is the client's fault: 400, not an upstream error.
    let body: Error = proxy::Error::RequestBody("bad chunk".into()).into();
    let r = body.refusal();
    assert_eq!((r.status.as_u16(), r.reason), (400, Reason::BadRequest));
    // The admin guard's refusal is an ordinary 403.
    let r = Error::AdminLoopbackOnly.refusal();
    assert_eq!((r.status.as_u16(), r.reason), (403, Reason::Forbidden));
}

#[test]
fn a_fleet_flush_that_could_not_be_written_is_a_503_saying_it_is_local_only() {
    let r = Error::FleetFlush(
        "flushed on this replica only: the revocation object ns/rev could not be updated: forbidden"
            .into(),
    )
    .refusal();
    assert_eq!((r.status.as_u16(), r.reason), (503, Reason::BackendError));
    assert!(
        r.message.contains("flushed on this replica only"),
        "{}",
        r.message
    );
    assert_eq!(r.retry_after, Some(1));
    assert!(r.challenge.is_none());
}
