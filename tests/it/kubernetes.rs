//! The Kubernetes backend against a fake API server over HTTPS: cached,
//! coalesced TokenReview and SubjectAccessReview, and fail-closed behaviour.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use testkit::*;

/// The fake API, a gate using it (static backend too) and an upstream.
struct KubeEnv {
    api: FakeApi,
    env: Env,
}

async fn start(kube_yaml: &str) -> KubeEnv {
    let (api, env) = Env::with_kube(kube_yaml).await;
    KubeEnv { api, env }
}

fn sa_token(api: &FakeApi, n: usize) -> String {
    let token = format!("sa-token-{n:05}");
    api.add_token(
        &token,
        &format!("system:serviceaccount:demo:bot{n}"),
        &["system:serviceaccounts"],
    );
    token
}

/// A JWT-shaped token (the fake does not verify signatures) expiring at `exp`.
fn jwt_token(exp: i64) -> String {
    let b = |s: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.c2ln",
        b(r#"{"alg":"RS256","kid":"k"}"#.into()),
        b(format!(r#"{{"sub":"x","exp":{exp}}}"#))
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

#[tokio::test]
async fn sa_token_gets_200_with_the_reviewed_identity_and_the_sar_sees_every_attribute() {
    let k = start("").await;
    k.api.add_token_with(
        "sa-full",
        TokenIdentity {
            uid: Some("uid-7".into()),
            extra: [(
                "authentication.kubernetes.io/pod-name".to_owned(),
                vec!["web-0".to_owned()],
            )]
            .into(),
            ..TokenIdentity::new(
                "system:serviceaccount:demo:web",
                &["system:serviceaccounts", "system:serviceaccounts:demo"],
            )
        },
    );
    let r = k
        .env
        .client()
        .get_with_token("/api/x", "sa-full")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let seen = k.env.upstream.last();
    assert_eq!(
        seen.all("x-remote-user"),
        ["system:serviceaccount:demo:web"]
    );
    assert_eq!(seen.all("x-remote-uid"), ["uid-7"]);
    assert_eq!(
        seen.all("x-remote-extra-authentication.kubernetes.io%2fpod-name"),
        ["web-0"]
    );
    let sar = &k.api.access_review_specs()[0];
    assert_eq!(sar["user"], "system:serviceaccount:demo:web");
    assert_eq!(sar["uid"], "uid-7");
    assert_eq!(sar["groups"][2], "system:authenticated");
    assert_eq!(
        sar["extra"]["authentication.kubernetes.io/pod-name"][0],
        "web-0"
    );
    assert_eq!(sar["nonResourceAttributes"]["path"], "/api/x");
    assert_eq!(sar["nonResourceAttributes"]["verb"], "get");
    assert!(
        sar.get("resourceAttributes")
            .is_none_or(serde_json::Value::is_null)
    );
}

#[tokio::test]
async fn cert_identities_converge_on_the_same_sar_authorizer() {
    let k = start("").await;
    k.api.allow(Rule::user("alice").verb("get").path("/api/*"));
    let alice = k.env.cert_client("alice", &ClientOpts::cn("alice", &[]));
    assert_eq!(alice.get("/api/x", &[]).await.unwrap().status, 200);
    assert_eq!(alice.get("/api/other", &[]).await.unwrap().status, 200);
    let r = alice.get("/admin", &[]).await.unwrap();
    assert_eq!((r.status.as_u16(), r.reason().as_str()), (403, "forbidden"));
    assert_eq!(
        k.api.token_reviews(),
        0,
        "a certificate never causes a TokenReview"
    );
    assert_eq!(k.api.access_reviews(), 3);
}

#[tokio::test]
async fn route_resource_attributes_are_sent_instead_of_the_path() {
    let k = start("").await;
    k.api.allow(
        Rule::group("system:serviceaccounts")
            .verb("create")
            .resource("services")
            .namespace("web")
            .subresource("proxy"),
    );
    drop(k.env.gate);
    let mut y = Yaml::new(&k.env.pki, k.env.upstream.addr);
    y.routes = format!(
        "routes:\n  - {{path_prefix: /, upstream: \"http://{}\", resource: {{namespace: web, resource: services, subresource: proxy, name: frontend}}}}\n",
        k.env.upstream.addr
    );
    y.rest = format!(
        "kubernetes: {{kubeconfig: {}}}\n",
        k.api.kubeconfig.display()
    );
    let gate = Gate::start(&y.render()).await;
    let token = sa_token(&k.api, 1);
    let req = http::Request::post("/anything")
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(gate.client(&k.env.pki).send(req).await.unwrap().status, 200);
    let sar = &k.api.access_review_specs()[0];
    let ra = &sar["resourceAttributes"];
    assert_eq!(
        (
            ra["verb"].as_str(),
            ra["namespace"].as_str(),
            ra["resource"].as_str()
        ),
        (Some("create"), Some("web"), Some("services"))
    );
    assert_eq!(
        (ra["subresource"].as_str(), ra["name"].as_str()),
        (Some("proxy"), Some("frontend"))
    );
}

#[tokio::test]
async fn a_hundred_concurrent_requests_with_one_new_token_make_one_review_of_each_kind() {
    let k = start("").await;
    k.api
        .set_fault(Endpoint::Both, Fault::Latency(Duration::from_millis(300)));
    let token = sa_token(&k.api, 1);
    let session = k.env.client().h2_session().await;
    let mut joins = Vec::new();
    for _ in 0..100 {
        let mut s = session.clone();
        let token = token.clone();
        joins.push(tokio::spawn(async move {
            s.get_with_token("/api/x", &token).await
        }));
    }
    for j in joins {
        assert_eq!(j.await.unwrap().unwrap(), 200);
    }
    assert_eq!((k.api.token_reviews(), k.api.access_reviews()), (1, 1));
    assert_eq!(k.env.upstream.count(), 100);
}

#[tokio::test]
async fn ten_thousand_requests_over_a_hundred_tokens_make_a_hundred_reviews_of_each_kind() {
    // A hundred new tokens from one address at once: over its miss limit.
    let k = start("token_review: {max_misses_per_client: 0}\n").await;
    let tokens: Arc<Vec<String>> = Arc::new((0..100).map(|n| sa_token(&k.api, n)).collect());
    let mut joins = Vec::new();
    for worker in 0..8 {
        let mut s = k.env.client().h2_session().await;
        let tokens = tokens.clone();
        joins.push(tokio::spawn(async move {
            for i in 0..1250 {
                let t = &tokens[(i * 8 + worker) % 100];
                assert_eq!(s.get_with_token("/api/x", t).await.unwrap(), 200);
            }
        }));
    }
    for j in joins {
        j.await.unwrap();
    }
    assert_eq!((k.api.token_reviews(), k.api.access_reviews()), (100, 100));
    assert_eq!(k.env.upstream.count(), 10_000);
}

#[tokio::test]
async fn entries_expire_after_the_ttl_and_a_jwt_at_its_exp() {
    let k =
        start("token_review: {cache: {ttl: 1s}}\naccess_review: {cache: {allow_ttl: 1s}}\n").await;
    let token = sa_token(&k.api, 1);
    let c = k.env.client();
    for _ in 0..3 {
        assert_eq!(
            c.get_with_token("/api/x", &token).await.unwrap().status,
            200
        );
    }
    assert_eq!((k.api.token_reviews(), k.api.access_reviews()), (1, 1));
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(
        c.get_with_token("/api/x", &token).await.unwrap().status,
        200
    );
    assert_eq!(
        (k.api.token_reviews(), k.api.access_reviews()),
        (2, 2),
        "exactly one new call of each kind"
    );

    // A 2-minute TTL does not outlive the token's own exp two seconds away.
    let k = start("token_review: {cache: {ttl: 2m}}\n").await;
    let jwt = jwt_token(now() + 2);
    k.api.add_token(
        &jwt,
        "system:serviceaccount:demo:short",
        &["system:serviceaccounts"],
    );
    assert_eq!(
        c_for(&k)
            .get_with_token("/api/x", &jwt)
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        c_for(&k)
            .get_with_token("/api/x", &jwt)
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(k.api.token_reviews(), 1);
    tokio::time::sleep(Duration::from_millis(2600)).await;
    c_for(&k).get_with_token("/api/x", &jwt).await.unwrap();
    assert_eq!(k.api.token_reviews(), 2, "re-reviewed once exp passed");
}

fn c_for(k: &KubeEnv) -> Client {
    k.env.client()
}

#[tokio::test]
async fn rejected_tokens_are_cached_for_the_failure_ttl_only() {
    let k = start("token_review: {cache: {failure_ttl: 1s}}\n").await;
    let c = k.env.client();
    for _ in 0..3 {
        let r = c.get_with_token("/api/x", "unknown-token").await.unwrap();
        assert_eq!(
            (r.status.as_u16(), r.reason().as_str()),
            (401, "token_rejected")
        );
    }
    assert_eq!(k.api.token_reviews(), 1);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    c.get_with_token("/api/x", "unknown-token").await.unwrap();
    assert_eq!(k.api.token_reviews(), 2);
    assert_eq!(k.env.upstream.count(), 0);
}

#[tokio::test]
async fn api_errors_are_503_with_their_reason_never_cached_and_cached_identities_keep_working() {
    let k = start("").await;
    let c = k.env.client();
    let cached = sa_token(&k.api, 0);
    assert_eq!(
        c.get_with_token("/api/x", &cached).await.unwrap().status,
        200
    );
    let token = sa_token(&k.api, 1);
    let throttled = Fault::TooManyRequests {
        retry_after_secs: 2,
    };
    // The 429 last: authgate then holds TokenReviews back for 2 s.
    let cases = [
        (Fault::ServerError, "backend_unreachable", "1"),
        (Fault::MalformedJson, "backend_error", "1"),
        (Fault::WrongKind, "backend_error", "1"),
        (Fault::Hang, "backend_timeout", "1"),
        (Fault::HangMidResponse, "backend_timeout", "1"),
        (throttled, "backend_throttled", "2"),
    ];
    for (i, (fault, reason, retry_after)) in cases.into_iter().enumerate() {
        k.api.set_fault(Endpoint::Both, fault);
        let start = Instant::now();
        let r = c.get_with_token("/api/x", &token).await.unwrap();
        let took = start.elapsed();
        assert_eq!(
            (r.status.as_u16(), r.reason().as_str()),
            (503, reason),
            "case {i}"
        );
        assert_eq!(r.headers["retry-after"], retry_after, "case {i}");
        // kubernetes.timeout is 1 s: the answer comes within timeout + 100 ms.
        assert!(took < Duration::from_millis(1100), "case {i}: {took:?}");
        assert_eq!(
            k.api.token_reviews(),
            i + 2,
            "case {i}: the error was not cached"
        );
        let r = c.get_with_token("/api/x", &cached).await.unwrap();
        assert_eq!(r.status, 200, "case {i}: a cached identity keeps working");
    }
    assert_eq!(
        k.env.upstream.count(),
        1 + 6,
        "only the cached identity got through"
    );
    // Recovery is automatic (once the API's Retry-After has passed).
    k.api.set_fault(Endpoint::Both, Fault::None);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        c.get_with_token("/api/x", &token).await.unwrap().status,
        200
    );
    // The same for the authorizer alone.
    k.api.set_fault(Endpoint::AccessReview, Fault::ServerError);
    let other = sa_token(&k.api, 2);
    let r = c.get_with_token("/api/x", &other).await.unwrap();
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (503, "backend_unreachable")
    );
    k.api.set_fault(Endpoint::AccessReview, Fault::None);
    assert_eq!(
        c.get_with_token("/api/x", &other).await.unwrap().status,
        200
    );
}

#[tokio::test]
async fn with_the_api_down_cached_identities_work_new_ones_get_503_fast_and_recovery_is_automatic()
{
    let k = start("").await;
    let known = sa_token(&k.api, 1);
    let c = k.env.client();
    assert_eq!(
        c.get_with_token("/api/x", &known).await.unwrap().status,
        200
    );
    k.api.set_down(true);
    assert_eq!(
        c.get_with_token("/api/x", &known).await.unwrap().status,
        200,
        "cached identity keeps working"
    );
    let fresh = sa_token(&k.api, 2);
    for _ in 0..3 {
        let start = Instant::now();
        let r = c.get_with_token("/api/x", &fresh).await.unwrap();
        assert_eq!(r.status, 503);
        assert!(
            start.elapsed() < Duration::from_millis(1100),
            "{:?}",
            start.elapsed()
        );
        assert!(r.reason().starts_with("backend_"), "{}", r.reason());
    }
    assert_eq!(k.env.upstream.count(), 2);
    k.api.set_down(false);
    let mut ok = false;
    for _ in 0..20 {
        if c.get_with_token("/api/x", &fresh).await.unwrap().status == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "requests succeed again once the API is back");
}

#[tokio::test]
async fn a_request_queued_behind_a_saturated_api_cap_gives_up_at_the_timeout() {
    let k = start_with_kube("  max_in_flight: 1\n", "").await;
    k.api.set_fault(
        Endpoint::TokenReview,
        Fault::Latency(Duration::from_secs(5)),
    );
    let (a, b) = (sa_token(&k.api, 1), sa_token(&k.api, 2));
    let start = Instant::now();
    let (ca, cb) = (k.env.client(), k.env.client());
    let (ra, rb) = tokio::join!(
        ca.get_with_token("/api/x", &a),
        cb.get_with_token("/api/x", &b)
    );
    for r in [ra.unwrap(), rb.unwrap()] {
        assert_eq!(
            (r.status.as_u16(), r.reason().as_str()),
            (503, "backend_timeout")
        );
    }
    assert!(
        start.elapsed() < Duration::from_millis(1400),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        k.api.token_reviews(),
        1,
        "the queued call never reached the API"
    );
}

/// Like `start`, with lines added under `kubernetes:` and at top level.
async fn start_with_kube(kube_lines: &str, top: &str) -> KubeEnv {
    let pki = Pki::new();
    let api = FakeApi::start(&pki).await;
    api.allow(
        Rule::group("system:serviceaccounts")
            .verb("get")
            .path("/api/*"),
    );
    let upstream = Upstream::start().await;
    let mut y = Yaml::new(&pki, upstream.addr);
    y.rest = format!(
        "kubernetes:\n  kubeconfig: {}\n  timeout: 1s\n{kube_lines}{top}",
        api.kubeconfig.display()
    );
    let gate = Gate::start(&y.render()).await;
    KubeEnv {
        api,
        env: Env {
            pki,
            upstream,
            gate,
        },
    }
}

#[tokio::test]
async fn audiences_are_sent_and_a_token_for_another_audience_is_rejected() {
    let k = start("token_review: {audiences: [\"https://authgate.example\"]}\n").await;
    k.api.add_token_with(
        "for-us",
        TokenIdentity {
            audiences: vec!["https://authgate.example".into()],
            ..TokenIdentity::new("system:serviceaccount:a:b", &["system:serviceaccounts"])
        },
    );
    k.api.add_token_with(
        "for-apiserver",
        TokenIdentity::new("system:serviceaccount:a:c", &["system:serviceaccounts"]),
    );
    let c = k.env.client();
    assert_eq!(
        c.get_with_token("/api/x", "for-us").await.unwrap().status,
        200
    );
    let r = c.get_with_token("/api/x", "for-apiserver").await.unwrap();
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (401, "token_rejected")
    );
    for spec in k.api.token_review_specs() {
        assert_eq!(spec["audiences"][0], "https://authgate.example");
    }
}

#[tokio::test]
async fn static_tokens_and_rules_answer_first_without_api_calls() {
    let k = start("").await;
    let r = k
        .env
        .client()
        .get_with_token("/api/x", BOB_TOKEN)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!((k.api.token_reviews(), k.api.access_reviews()), (0, 0));
    // carol is a static identity with no static rule: the SAR decides (and denies).
    let r = k
        .env
        .client()
        .get_with_token("/api/x", CAROL_TOKEN)
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!((k.api.token_reviews(), k.api.access_reviews()), (0, 1));
}

#[tokio::test]
async fn an_explicit_sar_deny_is_403_with_the_reason_and_is_cached_for_the_deny_ttl() {
    let k = start("access_review: {cache: {deny_ttl: 1s}}\n").await;
    k.api.deny(Rule::user("system:serviceaccount:demo:bot1"));
    let token = sa_token(&k.api, 1);
    let c = k.env.client();
    for _ in 0..2 {
        let r = c.get_with_token("/api/x", &token).await.unwrap();
        assert_eq!(r.status, 403);
        assert!(
            r.json()["message"]
                .as_str()
                .unwrap()
                .contains("denied by fake rule"),
            "{:?}",
            r.json()
        );
    }
    assert_eq!(k.api.access_reviews(), 1);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    c.get_with_token("/api/x", &token).await.unwrap();
    assert_eq!(k.api.access_reviews(), 2);
}

#[tokio::test]
async fn refused_gateway_credentials_are_503_backend_error() {
    let pki = Pki::new();
    let api = FakeApi::start(&pki).await;
    let upstream = Upstream::start().await;
    let mut y = Yaml::new(&pki, upstream.addr);
    let anonymous = api.write_kubeconfig("anon.kubeconfig", None);
    y.rest = format!("kubernetes: {{kubeconfig: {}}}\n", anonymous.display());
    let gate = Gate::start(&y.render()).await;
    api.add_token("sa", "system:serviceaccount:a:b", &[]);
    let r = gate
        .client(&pki)
        .get_with_token("/api/x", "sa")
        .await
        .unwrap();
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (503, "backend_error")
    );
    assert!(
        api.unauthorized() >= 1,
        "the API refused authgate's own credentials"
    );
    assert_eq!(upstream.count(), 0);
    // A 401 to authgate itself is no answer: the replica is not ready.
    let (status, body) = gate.admin("GET", "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("[-]kubernetes_api failed: the API refused authgate's own credentials"),
        "{body}"
    );
}

#[tokio::test]
async fn fifty_thousand_junk_tokens_leave_the_cache_within_its_bound() {
    // The client-side rate limit (200/s by default) would make this slow, not wrong.
    let k = start_with_kube(
        "  qps: 1000000\n  burst: 1000000\n",
        // All from one address: no miss limit.
        "token_review: {cache: {max_entries: 1000}, max_misses_per_client: 0}\n",
    )
    .await;
    let kube = k.env.gate.app.kubernetes.as_ref().unwrap();
    let reviewer = kube.token_review.clone().unwrap();
    let mut joins = Vec::new();
    for w in 0..4 {
        let mut s = k.env.client().h2_session().await;
        joins.push(tokio::spawn(async move {
            for i in 0..12_500 {
                let r = s
                    .get_with_token("/api/x", &format!("junk-{w}-{i}"))
                    .await
                    .unwrap();
                assert_eq!(r, 401);
            }
        }));
    }
    for j in joins {
        j.await.unwrap();
    }
    reviewer.cache().sync().await;
    assert!(
        reviewer.cache().len() <= 1000,
        "{} entries",
        reviewer.cache().len()
    );
    assert_eq!(k.api.token_reviews(), 50_000);
}

#[tokio::test]
async fn the_client_side_rate_limit_caps_api_calls_and_throttles_the_rest() {
    let k = start_with_kube("  qps: 2\n  burst: 2\n", "").await;
    let tokens: Vec<String> = (0..10).map(|n| sa_token(&k.api, n)).collect();
    let mut joins = Vec::new();
    for t in tokens {
        let c = k.env.client();
        joins.push(tokio::spawn(async move {
            c.get_with_token("/api/x", &t).await.unwrap()
        }));
    }
    let mut throttled = 0;
    for j in joins {
        let r = j.await.unwrap();
        match r.status.as_u16() {
            200 => {}
            503 => {
                // A call that got a late rate token may then run out of its deadline.
                let reason = r.reason();
                assert!(
                    ["backend_throttled", "backend_timeout"].contains(&reason.as_str()),
                    "{reason}"
                );
                throttled += usize::from(reason == "backend_throttled");
            }
            other => panic!("unexpected {other}"),
        }
    }
    // 2 at once, then 2 per second within the 1 s deadline, for reviews of both kinds.
    let calls = k.api.token_reviews() + k.api.access_reviews();
    assert!(calls <= 5, "{calls} API calls");
    assert!(throttled >= 4, "{throttled} throttled");
}

#[tokio::test]
async fn a_429_holds_that_kind_of_review_back_for_its_retry_after() {
    let k = start("").await;
    let c = k.env.client();
    k.api.set_fault(
        Endpoint::TokenReview,
        Fault::TooManyRequests {
            retry_after_secs: 3,
        },
    );
    let r = c
        .get_with_token("/api/x", &sa_token(&k.api, 10))
        .await
        .unwrap();
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (503, "backend_throttled")
    );
    assert_eq!(r.headers["retry-after"], "3");
    let calls = k.api.token_reviews();
    // Within the window: refused without asking the API, with what is left.
    for n in 11..16 {
        let r = c
            .get_with_token("/api/x", &sa_token(&k.api, n))
            .await
            .unwrap();
        assert_eq!(
            (r.status.as_u16(), r.reason().as_str()),
            (503, "backend_throttled")
        );
        let left: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=3).contains(&left), "{left}");
    }
    assert_eq!(
        k.api.token_reviews(),
        calls,
        "TokenReviews sent during the back-off"
    );
    // After it, the API is asked again.
    k.api.set_fault(Endpoint::TokenReview, Fault::None);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let r = c
        .get_with_token("/api/x", &sa_token(&k.api, 20))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(k.api.token_reviews(), calls + 1);
}

#[tokio::test]
async fn an_api_retry_after_of_an_hour_reaches_clients_as_a_minute() {
    let k = start("").await;
    k.api.set_fault(
        Endpoint::TokenReview,
        Fault::TooManyRequests {
            retry_after_secs: 3600,
        },
    );
    let r = k
        .env
        .client()
        .get_with_token("/api/x", &sa_token(&k.api, 30))
        .await
        .unwrap();
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (503, "backend_throttled")
    );
    assert_eq!(r.headers["retry-after"], "60");
}
