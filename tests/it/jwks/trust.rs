//! The trust boundary of local verification: a flush refreshes the keys, a
//! removed key stops verifying, the JWKS `max-age` is honoured, and
//! rejections cannot be evicted or outrun.

use super::*;

/// Waits (at most 5 s) for `cond`.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl JwksEnv {
    async fn flush(&self) {
        let (status, body) = self.env.gate.admin("POST", "/cache/flush").await;
        assert_eq!(status, 200, "{body}");
    }

    fn jwks(&self) -> std::sync::Arc<authgate::authn::jwks::JwksAuthenticator> {
        let kube = self.env.gate.app.kubernetes.as_ref().expect("kubernetes");
        kube.jwks.clone().expect("jwks on")
    }

    /// `token` verifies locally, then (`revalidate_after: 1s`) is found
    /// revoked by TokenReview: 200, then 401.
    async fn revoke(&self, token: &str, sa: &str) {
        self.api.add_token_with(token, reviewed(sa));
        assert_eq!(self.get(token).await.status, 200, "{sa}: verified");
        self.api.remove_token(token);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let r = self.get(token).await;
        assert_eq!(
            (r.status.as_u16(), r.reason().as_str()),
            (401, "token_rejected"),
            "{sa}: revoked"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_flush_refreshes_the_keys_and_a_removed_key_stops_verifying() {
    let k = start("", "", None).await;
    let rsa = keys().token(Key::Rsa, "prom");
    assert_eq!(k.get(&rsa).await.status, 200);
    assert_eq!(k.api.jwks_fetches(), 1);

    // The cluster drops the RSA key; the operator flushes: the keys are
    // fetched again by the flush itself.
    let mut jwks = keys().jwks();
    jwks["keys"].as_array_mut().expect("keys").remove(0);
    k.api.serve_jwks(jwks, ISSUER);
    k.flush().await;
    eventually("the flush refreshes the keys", || k.api.jwks_fetches() >= 2).await;

    // The removed key verifies nothing any more: its token goes to
    // TokenReview (which does not know it).
    let r = k.get(&rsa).await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (401, "token_rejected")
    );
    assert_eq!(k.verifications("unknown_kid").await, 1.0);
    assert_eq!(k.verifications("verified").await, 1.0);
    assert_eq!(k.api.token_reviews(), 1);
    assert_eq!(k.env.gate.metric("authgate_jwks_keys").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwks_max_age_brings_the_next_refresh_forward_within_bounds() {
    let secs = Duration::from_secs;
    // The default: a minute.
    let k = start("", "", None).await;
    let due = k.jwks().next_refresh_in();
    assert!(due > secs(50) && due <= secs(60), "{due:?}");

    let k = start("", ", refresh: 1h", None).await;
    let due = k.jwks().next_refresh_in();
    assert!(
        due > secs(3500),
        "no Cache-Control: the configured 1h ({due:?})"
    );
    for (cache_control, low, high) in [
        ("public, max-age=120", 110, 120),
        ("max-age=1", 1, 10),
        ("no-store", 1, 10),
        ("max-age=86400", 3500, 3600),
    ] {
        k.api.set_jwks_cache_control(Some(cache_control));
        let fetches = k.api.jwks_fetches();
        k.flush().await;
        let jwks = k.jwks();
        eventually(cache_control, || {
            k.api.jwks_fetches() > fetches
                && (secs(low)..=secs(high)).contains(&jwks.next_refresh_in())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_other_tokens_cannot_evict_a_revocation() {
    let k = start(
        "  max_misses_per_client: 0\n  cache: {max_entries: 10, ttl: 1s, failure_ttl: 1s}\n",
        ", revalidate_after: 1s",
        None,
    )
    .await;
    let token = keys().token(Key::Ec, "prom");
    k.revoke(&token, "prom").await;

    // Forty validly signed tokens (each used five times, so the cache of
    // ten prefers them) and forty garbage ones.
    for i in 0..40 {
        let other = keys().token(Key::Rsa, &format!("sa-{i}"));
        for _ in 0..5 {
            assert_eq!(k.get(&other).await.status, 200);
        }
        assert_eq!(k.get(&format!("garbage-{i}")).await.status, 401);
    }

    // The revocation stands: TokenReview only, and it still says no.
    let before = k.verifications("revoked_before").await;
    let r = k.get(&token).await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (401, "token_rejected")
    );
    assert_eq!(k.verifications("revoked_before").await, before + 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_that_finds_no_room_sends_local_verifications_to_token_review() {
    // Room for one revocation.
    let k = start(
        "  cache: {max_entries: 1, ttl: 1s, failure_ttl: 1s}\n",
        ", revalidate_after: 1s",
        None,
    )
    .await;
    let first = keys().token(Key::Ec, "first");
    let second = keys().token(Key::Rsa, "second");
    k.revoke(&first, "first").await;
    k.revoke(&second, "second").await;

    // The second has no marker, yet its valid signature does not bring it
    // back: every local verification is reviewed until its exp.
    let r = k.get(&second).await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (401, "token_rejected")
    );
    assert_eq!(k.get(&first).await.status, 401);
    // Others still get in, each through TokenReview.
    let third = keys().token(Key::Ec, "third");
    k.api.add_token_with(&third, reviewed("third"));
    let reviews = k.api.token_reviews();
    assert_eq!(k.get(&third).await.status, 200);
    assert_eq!(k.api.token_reviews(), reviews + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_rejection_outlives_the_arrival_of_its_key() {
    let k = start("", "", None).await;
    let token = keys().sign(Key::Rsa, "rsa-9", &claims("prom"));
    assert_eq!(k.get(&token).await.status, 401);
    assert_eq!(k.api.token_reviews(), 1);

    // The key is published afterwards: the rejection stands.
    let mut jwks = keys().jwks();
    let mut late = jwks["keys"][0].clone();
    late["kid"] = json!("rsa-9");
    jwks["keys"].as_array_mut().expect("keys").push(late);
    k.api.serve_jwks(jwks, ISSUER);
    k.flush().await;
    assert_eq!(k.get(&token).await.status, 401);
    assert_eq!(k.api.token_reviews(), 2);
    assert_eq!(k.verifications("revoked_before").await, 1.0);
}
