//! The admin listener: readiness, metrics that match the API's own counts,
//! cache flushing and its guard.

use std::time::{Duration, Instant};

use testkit::*;

/// Polls `/readyz` until its status is `want` (or panics after 10 s).
async fn wait_ready(gate: &Gate, want: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = gate.admin("GET", "/readyz").await;
        if status == want {
            return body;
        }
        assert!(Instant::now() < deadline, "readyz stayed {status}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn healthz_is_always_ok_and_readyz_lists_every_check() {
    let env = Env::start(|_| {}).await;
    assert_eq!(
        env.gate.admin("GET", "/healthz").await,
        (200, "ok\n".to_owned())
    );
    let body = wait_ready(&env.gate, 200).await;
    for check in [
        "[+]shutdown ok",
        "[+]serving_certificate ok",
        "[+]client_ca ok",
    ] {
        assert!(body.contains(check), "{check} missing: {body}");
    }
    assert!(
        !body.contains("kubernetes_api"),
        "no API check without the backend: {body}"
    );
    env.gate.app.health.start_draining();
    let body = wait_ready(&env.gate, 503).await;
    assert!(body.contains("[-]shutdown failed: draining"), "{body}");
}

#[tokio::test]
async fn readyz_turns_false_while_the_api_is_unreachable_and_back_when_it_returns() {
    let (api, env) = Env::with_kube("admin: {api_ready_window: 2s}\n").await;
    let body = wait_ready(&env.gate, 200).await;
    assert!(body.contains("[+]kubernetes_api ok"), "{body}");
    assert!(api.version_calls() >= 1, "readiness asks the API itself");
    api.set_down(true);
    let body = wait_ready(&env.gate, 503).await;
    assert!(body.contains("[-]kubernetes_api failed"), "{body}");
    api.set_down(false);
    wait_ready(&env.gate, 200).await;
}

#[tokio::test]
async fn metrics_match_the_calls_the_fake_api_counted() {
    let (api, env) = Env::with_kube("").await;
    let c = env.client();
    for n in 0..3 {
        let token = format!("sa-{n}");
        api.add_token(
            &token,
            &format!("system:serviceaccount:m:sa{n}"),
            &["system:serviceaccounts"],
        );
        for _ in 0..10 {
            assert_eq!(
                c.get_with_token("/api/x", &token).await.unwrap().status,
                200
            );
        }
    }
    c.get_with_token("/api/x", "unknown").await.unwrap();
    let g = &env.gate;
    assert_eq!(api.token_reviews(), 4);
    assert_eq!(api.access_reviews(), 3);
    assert_eq!(
        g.metric(r#"authgate_api_requests_total{kind="tokenreview",code="2xx"}"#)
            .await,
        4.0
    );
    assert_eq!(
        g.metric(r#"authgate_api_requests_total{kind="subjectaccessreview",code="2xx"}"#)
            .await,
        3.0
    );
    assert_eq!(
        g.metric(r#"authgate_token_cache_requests_total{result="miss"}"#)
            .await,
        4.0
    );
    assert_eq!(
        g.metric(r#"authgate_token_cache_requests_total{result="hit"}"#)
            .await,
        27.0
    );
    assert_eq!(
        g.metric(r#"authgate_access_cache_requests_total{result="miss"}"#)
            .await,
        3.0
    );
    assert_eq!(
        g.metric(r#"authgate_access_cache_requests_total{result="hit"}"#)
            .await,
        27.0
    );
    assert_eq!(
        g.metric(r#"authgate_requests_total{route="/",auth="token",outcome="allowed"}"#)
            .await,
        30.0
    );
    assert_eq!(
        g.metric(r#"authgate_requests_total{route="/",auth="none",outcome="unauthenticated"}"#)
            .await,
        1.0
    );
    assert!(
        g.metric("authgate_serving_certificate_not_after_timestamp_seconds")
            .await
            > 1.7e9
    );
    let (_, body) = g.admin("GET", "/metrics").await;
    assert!(
        body.contains("authgate_api_request_duration_seconds_bucket"),
        "{body}"
    );
    assert!(!body.contains("sa-0"), "metrics never carry tokens");
}

#[tokio::test]
async fn cache_flush_makes_the_next_request_call_the_api_again() {
    let (api, env) = Env::with_kube("").await;
    let c = env.client();
    api.add_token(
        "t-a",
        "system:serviceaccount:f:a",
        &["system:serviceaccounts"],
    );
    api.add_token(
        "t-b",
        "system:serviceaccount:f:b",
        &["system:serviceaccounts"],
    );
    for t in ["t-a", "t-b", "t-a", "t-b"] {
        assert_eq!(c.get_with_token("/api/x", t).await.unwrap().status, 200);
    }
    assert_eq!((api.token_reviews(), api.access_reviews()), (2, 2));
    let (status, body) = env
        .gate
        .admin("POST", "/cache/flush?user=system%3Aserviceaccount%3Af%3Aa")
        .await;
    assert_eq!(status, 200, "{body}");
    for t in ["t-a", "t-b"] {
        c.get_with_token("/api/x", t).await.unwrap();
    }
    assert_eq!(
        (api.token_reviews(), api.access_reviews()),
        (3, 3),
        "only a's entries were flushed"
    );
    assert_eq!(env.gate.admin("POST", "/cache/flush").await.0, 200);
    c.get_with_token("/api/x", "t-b").await.unwrap();
    assert_eq!((api.token_reviews(), api.access_reviews()), (4, 4));
    assert_eq!(
        env.gate.admin("GET", "/cache/flush").await.0,
        404,
        "flush is POST only"
    );
}

#[tokio::test]
async fn authorized_admin_access_uses_the_same_authn_and_authz_over_tls() {
    let env = Env::start(|y| {
        y.statics
            .push_str("    - {user: bob, verbs: [get], paths: [\"/metrics\"]}\n");
        y.rest = "admin: {access: authorized, tls: true}\n".into();
    })
    .await;
    let admin = Client::new(env.gate.admin_addr, &env.pki.ca_der);
    assert_eq!(
        admin
            .get_with_token("/metrics", BOB_TOKEN)
            .await
            .unwrap()
            .status,
        200
    );
    let r = admin.get_with_token("/metrics", CAROL_TOKEN).await.unwrap();
    assert_eq!((r.status.as_u16(), r.reason().as_str()), (403, "forbidden"));
    let r = admin.get("/metrics", &[]).await.unwrap();
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (401, "missing_credentials")
    );
    let flush = http::Request::post("/cache/flush")
        .header("authorization", format!("Bearer {BOB_TOKEN}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(
        admin.send(flush).await.unwrap().status,
        403,
        "bob may not create /cache/flush"
    );
    assert_eq!(
        admin.get("/healthz", &[]).await.unwrap().status,
        200,
        "probes stay open"
    );
}

#[tokio::test]
async fn failed_handshakes_are_counted_by_reason() {
    let env = Env::start(|_| {}).await;
    let expired = ClientOpts::cn("alice", &["dev"]).validity(Validity::Expired);
    assert!(
        env.cert_client("old", &expired)
            .get("/api/x", &[])
            .await
            .is_err()
    );
    let foreign = ClientOpts::cn("alice", &["dev"]).signer(Signer::Foreign);
    assert!(
        env.cert_client("foreign", &foreign)
            .get("/api/x", &[])
            .await
            .is_err()
    );
    let good = env.cert_client("good", &ClientOpts::cn("alice", &["dev"]));
    assert_eq!(good.get("/api/x", &[]).await.unwrap().status, 200);
    let g = &env.gate;
    assert_eq!(
        g.metric(r#"authgate_tls_handshake_failures_total{reason="expired"}"#)
            .await,
        1.0
    );
    assert_eq!(
        g.metric(r#"authgate_tls_handshake_failures_total{reason="unknown_ca"}"#)
            .await,
        1.0
    );
    assert_eq!(
        g.metric(r#"authgate_tls_handshakes_total{reason="client_cert"}"#)
            .await,
        1.0
    );
    assert_eq!(
        g.metric("authgate_client_certificate_expiry_seconds_count")
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_stale_crl_fails_readiness_and_certificates_unless_allowed() {
    let pki = Pki::new();
    let upstream = Upstream::start().await;
    let stale = pki.crl_file_until("stale.crl", &[], time::Duration::minutes(-1));
    let yaml = |allow: bool| {
        let mut y = Yaml::new(&pki, upstream.addr);
        y.tls_extra = format!(
            "  client_ca_file: {}\n  crl_files: [{}]\n  allow_stale_crl: {allow}\n",
            pki.bundle_file.display(),
            stale.display()
        );
        y.render()
    };
    let alice = pki.client("alice", &ClientOpts::cn("alice", &["dev"]));
    let gate = Gate::start(&yaml(false)).await;
    let body = wait_ready(&gate, 503).await;
    assert!(
        body.contains("[-]crl failed: past its nextUpdate"),
        "{body}"
    );
    // The CRL no longer says who is revoked: no certificate is accepted ...
    assert!(
        gate.client(&pki)
            .with_cert(&alice)
            .get("/api/x", &[])
            .await
            .is_err()
    );
    // ... while tokens still are.
    let r = gate
        .client(&pki)
        .get_with_token("/api/x", BOB_TOKEN)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // Opted out: ready, and the certificate is served.
    let gate = Gate::start(&yaml(true)).await;
    let body = wait_ready(&gate, 200).await;
    assert!(body.contains("[+]crl ok: past its nextUpdate"), "{body}");
    let r = gate
        .client(&pki)
        .with_cert(&alice)
        .get("/api/x", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
}
