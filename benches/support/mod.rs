//! Shared by the benches: an in-memory Kubernetes API (a tower service that
//! answers every TokenReview and SubjectAccessReview positively) and the
//! reviewers built on it.

use std::convert::Infallible;
use std::time::Duration;

use authgate::app::{KubeBackend, kube_backend};
use authgate::config::{AccessReviewConfig, Freshness, KubernetesConfig, TokenReviewConfig};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};

/// A kube client whose API answers in memory: every SAR is allowed; a
/// token is `system:serviceaccount:bench:sa` (no extra), except the
/// memory benchmark's numbered tokens, each its own
/// ServiceAccount as the apiserver reports it: namespace-shared groups and
/// the five `extra` of a projected token.
pub(crate) fn in_memory_kube() -> kube::Client {
    let svc = tower::service_fn(|req: http::Request<kube::client::Body>| async move {
        let review = req.uri().path().contains("tokenreviews");
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let body = if !review {
            r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","status":{"allowed":true}}"#.to_owned()
        } else {
            match token_number(&body) {
                Some(i) => service_account(i),
                None => r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","status":{"authenticated":true,"user":{"username":"system:serviceaccount:bench:sa","uid":"5b7c","groups":["system:serviceaccounts","system:serviceaccounts:bench"]}}}"#.to_owned(),
            }
        };
        Ok::<_, Infallible>(
            http::Response::builder()
                .status(201)
                .body(Full::new(Bytes::from(body)))
                .expect("response"),
        )
    });
    kube::Client::new(svc, "default")
}

/// The number of a memory-benchmark token, `eyJhbGciOiJSUzI1NiJ9.<i>.<sig>`.
fn token_number(body: &[u8]) -> Option<usize> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let token = v.pointer("/spec/token")?.as_str()?;
    token
        .strip_prefix("eyJhbGciOiJSUzI1NiJ9.")?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// ServiceAccount `i`'s TokenReview status: 100 namespaces, 50 nodes.
fn service_account(i: usize) -> String {
    let (ns, node) = (i % 100, i % 50);
    let uuid = |tag: u32, n: usize| format!("{n:08x}-{tag:04x}-4e2a-9f3d-{n:012x}");
    serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "status": {
            "authenticated": true,
            "user": {
                "username": format!("system:serviceaccount:ns-{ns:03}:sa-{i:06}"),
                "uid": uuid(1, i),
                "groups": ["system:serviceaccounts", format!("system:serviceaccounts:ns-{ns:03}")],
                "extra": {
                    "authentication.kubernetes.io/credential-id": [format!("JTI={}", uuid(2, i))],
                    "authentication.kubernetes.io/node-name": [format!("ip-10-0-{node}-17.ec2.internal")],
                    "authentication.kubernetes.io/node-uid": [uuid(3, node)],
                    "authentication.kubernetes.io/pod-name": [format!("sa-{i:06}-7d9f8c6b5-x2k4q")],
                    "authentication.kubernetes.io/pod-uid": [uuid(4, i)],
                }
            }
        }
    })
    .to_string()
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
            freshness: Freshness::default(),
        }),
        access_review: Some(AccessReviewConfig {
            max_entries,
            allow_ttl: Duration::from_secs(3600),
            deny_ttl: Duration::from_secs(30),
            freshness: Freshness::default(),
        }),
    };
    kube_backend(&cfg, in_memory_kube(), &authgate::metrics::Metrics::new())
}
