//! Every refusal the pipeline can give, reached through the pipeline; none
//! forwards anything.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::*;
use crate::BoxFuture;
use crate::authn::bearer::BearerToken;
use crate::authn::{TokenAnswer, TokenAuthenticator};
use crate::authz::attributes::Attributes;
use crate::authz::{Authorizer, Authorizers, Decision};
use crate::backend::BackendError;
use crate::identity::{AuthMethod, Identity};

/// A token backend that always fails the same way.
struct Failing(BackendError);

impl TokenAuthenticator for Failing {
    fn authenticate<'a>(&'a self, _: &'a BearerToken<'_>, _: IpAddr) -> BoxFuture<'a, TokenAnswer> {
        Box::pin(std::future::ready(Err(self.0.clone().into())))
    }
}

/// A token backend that accepts every token as one identity.
struct Everyone(Identity);

impl Everyone {
    fn dave(groups: &[&str]) -> Self {
        let groups = groups.iter().map(|g| (*g).to_owned()).collect();
        let id = Identity::new(
            "dave".into(),
            None,
            groups,
            BTreeMap::new(),
            AuthMethod::Token,
        );
        Self(id)
    }
}

impl TokenAuthenticator for Everyone {
    fn authenticate<'a>(&'a self, _: &'a BearerToken<'_>, _: IpAddr) -> BoxFuture<'a, TokenAnswer> {
        Box::pin(std::future::ready(Ok(Some(self.0.clone()))))
    }
}

/// An authorizer that always fails or always allows.
struct Fixed(Result<Decision, BackendError>);

impl Authorizer for Fixed {
    fn authorize<'a>(
        &'a self,
        _: &'a Identity,
        _: &'a Attributes,
    ) -> BoxFuture<'a, Result<Decision, BackendError>> {
        Box::pin(std::future::ready(self.0.clone()))
    }
}

#[tokio::test]
async fn requests_that_cannot_be_routed_are_refused_before_authentication() {
    let s = Setup::new();
    let h = s.gate("routes:\n  - {path_prefix: /api, upstream: \"http://127.0.0.1:9\"}\n");
    let token = bearer(BOB);
    let auth = [("authorization", token.as_str())];
    let r = h.send(&h.anonymous(), get("/other", &auth)).await;
    assert_eq!(r.status_reason(), (404, "no_route".into()));
    let r = h
        .send(&h.anonymous(), request(Method::CONNECT, "/api", &auth))
        .await;
    assert_eq!(r.status_reason(), (400, "bad_request".into()));
    let r = h
        .send(&h.anonymous(), get("/api/%2e%2e/%2e%2e/etc", &auth))
        .await;
    assert_eq!(r.status.as_u16() / 100, 4, "{}", r.reason());
    // HTTP/1.1 without Host.
    let mut req = get("/api/x", &auth);
    req.headers_mut().remove("host");
    let r = h.send(&h.anonymous(), req).await;
    assert_eq!(r.status_reason(), (400, "bad_request".into()));
    h.nothing_forwarded();
}

#[tokio::test]
async fn every_authentication_refusal_is_a_401_with_a_challenge() {
    let s = Setup::new();
    let h = s.gate("");
    let nobody = s.cert("nobody", None, &[], &["https://example.test/x"]);
    for (conn, headers, reason) in [
        (h.anonymous(), vec![], "missing_credentials"),
        (h.with_cert(&nobody), vec![], "cert_unmapped"),
        (
            h.anonymous(),
            vec![("authorization", "Basic YTpi")],
            "invalid_token",
        ),
        (
            h.anonymous(),
            vec![("authorization", "Bearer ")],
            "invalid_token",
        ),
        (
            h.anonymous(),
            vec![("authorization", "Bearer a"), ("authorization", "Bearer b")],
            "invalid_token",
        ),
        (
            h.anonymous(),
            vec![("authorization", "Bearer not-a-token")],
            "token_rejected",
        ),
    ] {
        let r = h.send(&conn, get("/api/x", &headers)).await;
        assert_eq!(r.status_reason(), (401, reason.into()), "{headers:?}");
        assert!(
            r.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer realm=\"authgate\"")
        );
        // The message never echoes the token.
        assert!(!r.message().contains("not-a-token"));
    }
    h.nothing_forwarded();
}

#[tokio::test]
async fn a_denied_identity_is_a_403_naming_user_verb_and_path() {
    let s = Setup::new();
    let h = s.gate("");
    let r = h
        .send(
            &h.anonymous(),
            get("/api/x", &[("authorization", &bearer(CAROL))]),
        )
        .await;
    assert_eq!(r.status_reason(), (403, "forbidden".into()));
    assert_eq!(r.message(), "user \"carol\" may not get path \"/api/x\"");
    h.nothing_forwarded();
}

#[tokio::test]
async fn backend_failures_are_503_with_retry_after_and_never_forwarded() {
    let s = Setup::new();
    for (err, reason, retry) in [
        (
            BackendError::Timeout {
                backend: "TokenReview",
            },
            "backend_timeout",
            "1",
        ),
        (
            BackendError::Throttled {
                backend: "TokenReview",
                retry_after: Some(std::time::Duration::from_secs(4)),
            },
            "backend_throttled",
            "4",
        ),
        (
            BackendError::Unreachable {
                backend: "TokenReview",
                detail: "connect 10.0.0.1:443".into(),
            },
            "backend_unreachable",
            "1",
        ),
        (
            BackendError::BadResponse {
                backend: "TokenReview",
                detail: "HTML from 10.0.0.1".into(),
            },
            "backend_error",
            "1",
        ),
    ] {
        // The token backend fails ...
        let failing_authn = err.clone();
        let h = s.gate_with("", move |p| {
            p.authn = crate::authn::Authenticator::new(
                crate::authn::x509::CertMapper::new(&[]),
                vec![Arc::new(Failing(failing_authn))],
            );
        });
        let r = h
            .send(
                &h.anonymous(),
                get("/api/x", &[("authorization", &bearer(BOB))]),
            )
            .await;
        assert_eq!(r.status_reason(), (503, reason.into()));
        assert_eq!(r.headers["retry-after"], retry);
        assert!(!r.message().contains("10.0.0.1"));
        h.nothing_forwarded();
        // ... or the authorizer does.
        let failing_authz = err.clone();
        let h = s.gate_with("", move |p| {
            p.authn = crate::authn::Authenticator::new(
                crate::authn::x509::CertMapper::new(&[]),
                vec![Arc::new(Everyone::dave(&[]))],
            );
            p.authz = Authorizers::new(vec![Arc::new(Fixed(Err(failing_authz)))]);
        });
        let r = h
            .send(
                &h.anonymous(),
                get("/api/x", &[("authorization", "Bearer t")]),
            )
            .await;
        assert_eq!(r.status_reason(), (503, reason.into()));
        assert!(r.message().starts_with("authorization is unavailable"));
        h.nothing_forwarded();
    }
}

#[tokio::test]
async fn an_identity_that_cannot_be_headers_is_a_500_and_not_forwarded() {
    let s = Setup::new();
    let h = s.gate_with("headers:\n  group_separator: \"|\"\n", |p| {
        // Joined with the separator, this one group would read as two.
        p.authn = crate::authn::Authenticator::new(
            crate::authn::x509::CertMapper::new(&[]),
            vec![Arc::new(Everyone::dave(&["dev|system:masters"]))],
        );
        p.authz = Authorizers::new(vec![Arc::new(Fixed(Ok(Decision::Allow)))]);
    });
    let r = h
        .send(
            &h.anonymous(),
            get("/api/x", &[("authorization", "Bearer t")]),
        )
        .await;
    assert_eq!(r.status_reason(), (500, "internal_error".into()));
    assert!(r.headers.get("retry-after").is_none());
    h.nothing_forwarded();
}

#[tokio::test]
async fn upstream_failures_and_bugs_have_their_own_statuses() {
    let s = Setup::new();
    let h = s.gate("");
    let token = bearer(BOB);
    for (answer, want) in [
        (Answer::Refused, (502, "upstream_error")),
        (Answer::Timeout, (504, "upstream_timeout")),
        (Answer::Panic, (500, "internal_error")),
    ] {
        h.answer(answer);
        let r = h
            .send(&h.anonymous(), get("/api/x", &[("authorization", &token)]))
            .await;
        assert_eq!(r.status_reason(), (want.0, want.1.into()), "{answer:?}");
        assert!(!r.message().contains("10.0.0.1"));
    }
    // The metrics count each by the same refusal's outcome.
    let text = h.metrics.render();
    for outcome in ["upstream_error", "internal_error"] {
        assert!(
            text.contains(&format!("route=\"/\",auth=\"token\",outcome=\"{outcome}\"")),
            "{outcome} missing from\n{text}"
        );
    }
}

#[tokio::test]
async fn refusals_are_counted_under_their_outcome() {
    let s = Setup::new();
    let h = s.gate("");
    h.send(&h.anonymous(), get("/api/x", &[])).await;
    h.send(
        &h.anonymous(),
        get("/api/x", &[("authorization", &bearer(CAROL))]),
    )
    .await;
    h.send(
        &h.anonymous(),
        get("/api/x", &[("authorization", &bearer(BOB))]),
    )
    .await;
    let text = h.metrics.render();
    for series in [
        r#"authgate_requests_total{route="/",auth="none",outcome="unauthenticated"} 1"#,
        r#"authgate_requests_total{route="/",auth="token",outcome="forbidden"} 1"#,
        r#"authgate_requests_total{route="/",auth="token",outcome="allowed"} 1"#,
    ] {
        assert!(text.contains(series), "{series} missing from\n{text}");
    }
}
