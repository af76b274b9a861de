//! Review round 5, over real sockets: a cached answer never outlives its
//! hard limits (the configured TTL, with any jitter; a JWT's `exp`, to the
//! sub-second).

use std::time::Duration;

use base64::Engine;
use testkit::*;

fn unix_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// `allow_ttl: 1s` with the largest jitter (0.5): no decision is served
/// later than 1.01 s after its review (jitter only shortens).
#[tokio::test]
async fn no_decision_is_served_past_its_allow_ttl_whatever_the_jitter() {
    let (api, env) =
        Env::with_kube("token_review: {cache: {ttl: 1m}, max_misses_per_client: 0}\naccess_review: {cache: {allow_ttl: 1s, jitter: 0.5}}\n").await;
    let n = 40;
    let mut joins = Vec::new();
    for i in 0..n {
        let token = format!("r5-token-{i:03}");
        api.add_token(
            &token,
            &format!("system:serviceaccount:demo:r5-{i}"),
            &["system:serviceaccounts"],
        );
        let c = env.client();
        assert_eq!(
            c.get_with_token("/api/x", &token).await.unwrap().status,
            200
        );
        joins.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1010)).await;
            assert_eq!(
                c.get_with_token("/api/x", &token).await.unwrap().status,
                200
            );
        }));
    }
    let first = api.access_reviews();
    for j in joins {
        j.await.unwrap();
    }
    assert_eq!(first, n, "one review per identity first");
    let reviews = api.access_reviews();
    assert_eq!(
        reviews,
        2 * n,
        "{} of {n} allow decisions were served >1.01s after review with allow_ttl 1s",
        2 * n - reviews
    );
}

/// A JWT's `exp` is whole seconds: a token reviewed at x.85 s must not be
/// served from the cache after `exp` (a whole-second clock kept it ~0.85 s
/// longer); after `exp` it is reviewed again.
#[tokio::test]
async fn no_cached_token_is_served_past_its_jwt_exp() {
    let (api, env) = Env::with_kube("token_review: {cache: {ttl: 2m, jitter: 0}}\n").await;
    // Wait for a wall-clock second's 0.85 mark.
    let frac = unix_f64().fract();
    let wait = if frac < 0.85 {
        0.85 - frac
    } else {
        1.85 - frac
    };
    tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    let exp = unix_f64().floor() as i64 + 2;
    let b = |s: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let jwt = format!(
        "{}.{}.c2ln",
        b(r#"{"alg":"RS256","kid":"k"}"#.into()),
        b(format!(r#"{{"sub":"x","exp":{exp}}}"#))
    );
    api.add_token(
        &jwt,
        "system:serviceaccount:demo:short",
        &["system:serviceaccounts"],
    );
    let c = env.client();
    assert_eq!(c.get_with_token("/api/x", &jwt).await.unwrap().status, 200);
    assert_eq!(api.token_reviews(), 1);
    // Until 0.4s past exp.
    let until = exp as f64 + 0.4 - unix_f64();
    tokio::time::sleep(Duration::from_secs_f64(until.max(0.0))).await;
    let late = unix_f64() - exp as f64;
    let r = c.get_with_token("/api/x", &jwt).await.unwrap();
    assert_eq!(
        api.token_reviews(),
        2,
        "served from the cache {late:.3}s after exp (status {})",
        r.status
    );
}
