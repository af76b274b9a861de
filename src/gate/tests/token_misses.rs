//! `token_review.max_misses_per_client` through the pipeline, against an
//! in-memory Kubernetes API that counts its TokenReviews.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// The one token the in-memory API accepts.
const GOOD: &str = "good-serviceaccount-token";

/// A kube client whose TokenReview accepts [`GOOD`] as
/// `system:serviceaccount:monitoring:prom` and rejects anything else,
/// counting every review in `calls`.
fn counting_kube(calls: Arc<AtomicUsize>) -> kube::Client {
    let svc = tower::service_fn(move |req: Request<kube::client::Body>| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let review: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let status = if review["spec"]["token"] == GOOD {
                serde_json::json!({"authenticated": true, "user": {
                    "username": "system:serviceaccount:monitoring:prom", "uid": "u-1",
                    "groups": ["system:serviceaccounts"]}})
            } else {
                serde_json::json!({"authenticated": false, "error": "invalid token"})
            };
            let answer = serde_json::json!({"apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview", "status": status});
            Ok::<_, Infallible>(
                Response::builder()
                    .status(201)
                    .body(http_body_util::Full::new(Bytes::from(answer.to_string())))
                    .unwrap(),
            )
        }
    });
    kube::Client::new(svc, "default")
}

/// A gate whose tokens go to the counting API (no SubjectAccessReview: the
/// static rules allow prom on /api/**).
fn gate_with_api(s: &Setup, token_review: &str, calls: Arc<AtomicUsize>) -> Harness {
    let yaml = s.yaml(&format!(
        "kubernetes: {{kubeconfig: k.yaml}}\ntoken_review: {{{token_review}}}\naccess_review: {{enabled: false}}\n"
    ));
    let config = Config::from_yaml(&yaml).unwrap();
    let metrics = Metrics::new();
    let kube = crate::app::kube_backend(
        config.kubernetes.as_ref().unwrap(),
        counting_kube(calls),
        &metrics,
    );
    let tls = Arc::new(tls::Acceptor::new(tls::load(&config.tls).unwrap()));
    let upstream = Arc::new(Recorder::default());
    let gate = crate::app::gate(
        &config,
        Some(&kube),
        tls,
        &metrics,
        Shared(upstream.clone()),
    );
    Harness {
        gate,
        upstream,
        metrics,
    }
}

#[tokio::test]
async fn a_flood_of_unknown_tokens_from_one_address_is_refused_without_api_calls() {
    let s = Setup::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let h = gate_with_api(&s, "", calls.clone());
    let flooder = h.gate.conn_info("192.0.2.66:40000".parse().unwrap(), None);
    let mut reasons = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..200 {
        let auth = bearer(&format!("garbage-{i}"));
        let r = h
            .send(&flooder, get("/api/x", &[("authorization", &auth)]))
            .await;
        assert_eq!(r.status, 401);
        *reasons.entry(r.reason()).or_default() += 1;
    }
    // The default: 10 a second in bursts of 20. The flood lasts well under
    // a second, so at most a few more than the burst are reviewed.
    let reviewed = calls.load(Ordering::SeqCst);
    assert!((20..=25).contains(&reviewed), "{reviewed} TokenReviews");
    assert_eq!(reasons["token_rejected"], reviewed, "{reasons:?}");
    assert_eq!(reasons["token_misses_exceeded"], 200 - reviewed);
    h.nothing_forwarded();

    // Another address is not held back by it.
    let other = h
        .gate
        .conn_info("198.51.100.9:40000".parse().unwrap(), None);
    let good = bearer(GOOD);
    let r = h
        .send(&other, get("/api/x", &[("authorization", &good)]))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(calls.load(Ordering::SeqCst), reviewed + 1);
    // A cached token is never limited, even from the flooding address.
    let r = h
        .send(&flooder, get("/api/x", &[("authorization", &good)]))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(calls.load(Ordering::SeqCst), reviewed + 1);
    assert_eq!(h.seen().len(), 2, "the two 200s, and nothing else");
}

#[tokio::test]
async fn max_misses_per_client_zero_turns_the_limit_off() {
    let s = Setup::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let h = gate_with_api(&s, "max_misses_per_client: 0", calls.clone());
    let conn = h.anonymous();
    for i in 0..60 {
        let auth = bearer(&format!("garbage-{i}"));
        let r = h
            .send(&conn, get("/api/x", &[("authorization", &auth)]))
            .await;
        assert_eq!(r.status_reason(), (401, "token_rejected".into()));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 60);
}
