//! Shared by the benches: an in-memory Kubernetes API (a tower service that
//! answers every TokenReview and SubjectAccessReview positively) and the
//! reviewers built on it.

use std::convert::Infallible;
use std::time::Duration;

use authgate::app::{KubeBackend, kube_backend};
use authgate::config::{AccessReviewConfig, KubernetesConfig, TokenReviewConfig};
use bytes::Bytes;
use http_body_util::Full;

/// A kube client whose API answers in memory: every token is
/// `system:serviceaccount:bench:<token>`, every SAR is allowed.
pub(crate) fn in_memory_kube() -> kube::Client {
    let svc = tower::service_fn(|req: http::Request<kube::client::Body>| async move {
        let body = if req.uri().path().contains("tokenreviews") {
            r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","status":{"authenticated":true,"user":{"username":"system:serviceaccount:bench:sa","uid":"5b7c","groups":["system:serviceaccounts","system:serviceaccounts:bench"]}}}"#
        } else {
            r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","status":{"allowed":true}}"#
        };
        Ok::<_, Infallible>(
            http::Response::builder()
                .status(201)
                .body(Full::new(Bytes::from_static(body.as_bytes())))
                .expect("response"),
        )
    });
    kube::Client::new(svc, "default")
}

/// Token and access reviewers over [`in_memory_kube`], caches of `max_entries`.
pub(crate) fn backend(max_entries: u64) -> KubeBackend {
    let cfg = KubernetesConfig {
        kubeconfig: None,
        timeout: Duration::from_secs(5),
        max_in_flight: 64,
        qps: 1e9,
        burst: 1_000_000,
        token_review: Some(TokenReviewConfig {
            audiences: vec![],
            max_entries,
            ttl: Duration::from_secs(3600),
            failure_ttl: Duration::from_secs(10),
            // One client sends every distinct token: no per-client limit.
            max_misses_per_client: 0,
            jwks: None,
        }),
        access_review: Some(AccessReviewConfig {
            max_entries,
            allow_ttl: Duration::from_secs(3600),
            deny_ttl: Duration::from_secs(30),
        }),
    };
    kube_backend(&cfg, in_memory_kube(), &authgate::metrics::Metrics::new())
}
