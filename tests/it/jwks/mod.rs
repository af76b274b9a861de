//! Local JWT verification (`token_review.jwks`) through the whole server
//! over TLS, against the fake API server serving an RSA and an EC key:
//! verified tokens cost no TokenReview, every defect falls back to one,
//! unknown kids refresh the keys once, and `revalidate_after` sends old
//! entries back to TokenReview.

mod trust;

use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
    RsaPublicKeyComponents,
};
use serde_json::{Value, json};
use testkit::*;

const ISSUER: &str = "https://kubernetes.default.svc";
const AUDIENCE: &str = "https://authgate.test";
/// The namespace whose ServiceAccounts the test config allows on /api/**.
const NS: &str = "monitoring";

/// The cluster's signing keys: RSA (RS256) and P-256 (ES256). The
/// `issuers` tests sign with them too (as a foreign key, or as an issuer's
/// RSA key).
pub(crate) struct Keys {
    pub(crate) rsa: RsaKeyPair,
    ec: EcdsaKeyPair,
}

/// Generated once per test binary (ring cannot generate RSA keys; openssl can).
pub(crate) fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let out = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .args(["-outform", "DER"])
            .output()
            .expect("openssl genpkey");
        assert!(out.status.success(), "openssl genpkey failed");
        // OpenSSL 3 writes PKCS#1 for `-outform DER`; older ones PKCS#8.
        let rsa = RsaKeyPair::from_der(&out.stdout)
            .or_else(|_| RsaKeyPair::from_pkcs8(&out.stdout))
            .expect("RSA key");
        let rng = SystemRandom::new();
        let alg = &ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("EC key");
        let ec = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("EC PKCS#8");
        Keys { rsa, ec }
    })
}

/// Which key signs, and under which `kid` the header names it.
#[derive(Clone, Copy)]
pub(crate) enum Key {
    Rsa,
    Ec,
}

impl Keys {
    pub(crate) fn jwks(&self) -> Value {
        let rsa = RsaPublicKeyComponents::<Vec<u8>>::from(self.rsa.public());
        let p = self.ec.public_key().as_ref();
        json!({"keys": [
            {"use": "sig", "kty": "RSA", "kid": "rsa-1", "alg": "RS256",
             "n": B64.encode(&rsa.n), "e": B64.encode(&rsa.e)},
            {"use": "sig", "kty": "EC", "crv": "P-256", "kid": "ec-1", "alg": "ES256",
             "x": B64.encode(&p[1..33]), "y": B64.encode(&p[33..65])},
        ]})
    }

    /// A JWT over `claims`, signed by `key`, naming `kid`.
    pub(crate) fn sign(&self, key: Key, kid: &str, claims: &Value) -> String {
        let alg = match key {
            Key::Rsa => "RS256",
            Key::Ec => "ES256",
        };
        let header = json!({"alg": alg, "kid": kid});
        let msg = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let sig = match key {
            Key::Rsa => {
                let mut sig = vec![0; self.rsa.public().modulus_len()];
                self.rsa
                    .sign(&RSA_PKCS1_SHA256, &rng, msg.as_bytes(), &mut sig)
                    .expect("RSA sign");
                sig
            }
            Key::Ec => self
                .ec
                .sign(&rng, msg.as_bytes())
                .expect("EC sign")
                .as_ref()
                .to_vec(),
        };
        format!("{msg}.{}", B64.encode(sig))
    }

    /// A valid token of ServiceAccount `monitoring/<sa>`.
    fn token(&self, key: Key, sa: &str) -> String {
        let kid = match key {
            Key::Rsa => "rsa-1",
            Key::Ec => "ec-1",
        };
        self.sign(key, kid, &claims(sa))
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// ServiceAccount claims as kube-apiserver writes them for a Pod's token.
fn claims(sa: &str) -> Value {
    json!({
        "aud": [AUDIENCE], "iss": ISSUER,
        "iat": now(), "nbf": now(), "exp": now() + 3600,
        "sub": format!("system:serviceaccount:{NS}:{sa}"),
        "jti": format!("jti-{sa}"),
        "kubernetes.io": {
            "namespace": NS,
            "serviceaccount": {"name": sa, "uid": format!("uid-{sa}")},
            "pod": {"name": format!("{sa}-0"), "uid": format!("pod-uid-{sa}")},
        }
    })
}

/// The identity the fake's TokenReview gives `sa` (as the apiserver would).
fn reviewed(sa: &str) -> TokenIdentity {
    TokenIdentity {
        uid: Some(format!("uid-{sa}")),
        audiences: vec![AUDIENCE.to_owned()],
        ..TokenIdentity::new(
            &format!("system:serviceaccount:{NS}:{sa}"),
            &[
                "system:serviceaccounts",
                &format!("system:serviceaccounts:{NS}"),
            ],
        )
    }
}

struct JwksEnv {
    api: FakeApi,
    env: Env,
}

/// The fake API serving the test keys (unless `jwks_fault`), and a gate with
/// `token_review: {audiences: [AUDIENCE], <token_review>}` and jwks on.
async fn start(token_review: &str, jwks: &str, jwks_fault: Option<Fault>) -> JwksEnv {
    let pki = Pki::new();
    let api = FakeApi::start(&pki).await;
    api.serve_jwks(keys().jwks(), ISSUER);
    if let Some(f) = jwks_fault {
        api.set_fault(Endpoint::Jwks, f);
    }
    let upstream = Upstream::start().await;
    let mut y = Yaml::new(&pki, upstream.addr);
    y.rest = format!(
        "kubernetes:\n  kubeconfig: {}\n  timeout: 2s\ntoken_review:\n  audiences: [\"{AUDIENCE}\"]\n{token_review}  jwks: {{enabled: true{jwks}}}\naccess_review: {{enabled: false}}\n",
        api.kubeconfig.display()
    );
    let gate = Gate::start(&y.render()).await;
    JwksEnv {
        api,
        env: Env {
            pki,
            upstream,
            gate,
        },
    }
}

impl JwksEnv {
    async fn get(&self, token: &str) -> Resp {
        self.env
            .client()
            .get_with_token("/api/x", token)
            .await
            .expect("request")
    }

    async fn verifications(&self, result: &str) -> f64 {
        let series = format!("authgate_jwt_verifications_total{{result=\"{result}\"}}");
        self.env.gate.metric(&series).await
    }

    /// Waits (at most 5 s) until the fake has looked up the token of its
    /// `n`th TokenReview: from then on that review answers as of now.
    async fn review_under_way(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.api.token_review_specs().len() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "TokenReview {n} never started"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A request for `token` in its own task.
    fn spawn_get(&self, token: &str) -> tokio::task::JoinHandle<Resp> {
        let client = self.env.client();
        let token = token.to_owned();
        tokio::spawn(async move {
            client
                .get_with_token("/api/x", &token)
                .await
                .expect("request")
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_requests_with_valid_jwts_cause_no_token_review() {
    let k = start("", "", None).await;
    assert_eq!(
        (k.api.discovery_fetches(), k.api.jwks_fetches()),
        (1, 1),
        "keys are loaded once at startup"
    );

    // The identity is the apiserver's, headers included.
    let r = k.get(&keys().token(Key::Rsa, "prom")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let seen = k.env.upstream.last();
    assert_eq!(
        seen.all("x-remote-user"),
        ["system:serviceaccount:monitoring:prom"]
    );
    assert_eq!(seen.all("x-remote-uid"), ["uid-prom"]);
    assert_eq!(
        seen.all("x-remote-group"),
        [
            "system:serviceaccounts",
            "system:serviceaccounts:monitoring",
            "system:authenticated"
        ]
    );
    let extra = |k: &str| {
        seen.all(&format!(
            "x-remote-extra-authentication.kubernetes.io%2f{k}"
        ))
    };
    assert_eq!(extra("pod-name"), ["prom-0"]);
    assert_eq!(extra("pod-uid"), ["pod-uid-prom"]);
    assert_eq!(extra("credential-id"), ["JTI=jti-prom"]);

    // 1,000 requests: 100 ServiceAccounts, half RS256 and half ES256, ten
    // requests each, on four HTTP/2 connections.
    let tokens: Vec<String> = (0..100)
        .map(|i| {
            let key = if i % 2 == 0 { Key::Rsa } else { Key::Ec };
            keys().token(key, &format!("sa-{i}"))
        })
        .collect();
    let client = k.env.client().http2();
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..4 {
        let mut session = client.h2_session().await;
        let tokens = tokens.clone();
        tasks.spawn(async move {
            let mut ok = 0;
            for n in (lane..1000).step_by(4) {
                let status = session
                    .get_with_token("/api/x", &tokens[n % tokens.len()])
                    .await
                    .expect("request");
                ok += usize::from(status == 200);
            }
            ok
        });
    }
    let ok: usize = tasks.join_all().await.into_iter().sum();
    assert_eq!(ok, 1000);
    assert_eq!(k.api.token_reviews(), 0, "no TokenReview for a valid JWT");
    assert_eq!(k.api.jwks_fetches(), 1);
    assert_eq!(k.verifications("verified").await, 101.0);
    assert_eq!(k.verifications("cached").await, 900.0);
    assert_eq!(
        k.env
            .gate
            .metric("authgate_jwks_refreshes_total{result=\"success\"}")
            .await,
        1.0
    );
    assert_eq!(k.env.gate.metric("authgate_jwks_keys").await, 2.0);
}

/// `good` with one signature byte changed (a middle character: the last
/// one may only carry padding bits).
fn tampered(good: &str) -> String {
    let at = good.rfind('.').expect("three parts") + 10;
    let mut t = good.to_owned().into_bytes();
    t[at] = if t[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(t).expect("ascii")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_audience_and_expired_tokens_go_to_token_review_and_get_401() {
    let k = start("", "", None).await;
    let mut wrong_aud = claims("prom");
    wrong_aud["aud"] = json!(["https://someone-else"]);
    let mut expired = claims("prom");
    expired["exp"] = json!(now() - 300);
    expired["iat"] = json!(now() - 4000);
    expired["nbf"] = json!(now() - 4000);
    let cases = [
        ("audience", keys().sign(Key::Rsa, "rsa-1", &wrong_aud)),
        ("expired", keys().sign(Key::Ec, "ec-1", &expired)),
        ("malformed", "not-a-jwt-at-all".to_owned()),
    ];
    for (n, (reason, token)) in cases.iter().enumerate() {
        let r = k.get(token).await;
        assert_eq!(
            (r.status.as_u16(), r.reason().as_str()),
            (401, "token_rejected"),
            "{reason}"
        );
        assert_eq!(k.api.token_reviews(), n + 1, "{reason}: one TokenReview");
        let spec = k.api.token_review_specs().pop().expect("a recorded review");
        assert_eq!(spec["tokenSha256"], FakeApi::token_hash(token), "{reason}");
        assert_eq!(spec["audiences"], json!([AUDIENCE]), "{reason}");
        assert_eq!(k.verifications(reason).await, 1.0, "{reason}");
    }
    assert_eq!(k.env.upstream.count(), 0);

    // TokenReview still decides: an opaque token it knows is accepted.
    k.api.add_token_with("opaque-sa-token", reviewed("legacy"));
    assert_eq!(k.get("opaque-sa-token").await.status, 200);
    assert_eq!(k.api.token_reviews(), cases.len() + 1);
}

/// A signature that fails under one of the cluster's own keys is what the
/// apiserver refuses too: 401 at once, no TokenReview spent on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_signature_under_a_known_kid_is_refused_without_token_review() {
    let k = start("", "", None).await;
    let forged = [
        tampered(&keys().token(Key::Ec, "prom")),
        tampered(&keys().token(Key::Rsa, "prom")),
        // Signed by the EC key, naming the RSA key's kid.
        keys().sign(Key::Ec, "rsa-1", &claims("prom")),
    ];
    for token in &forged {
        k.api.add_token_with(token, reviewed("prom"));
        let r = k.get(token).await;
        assert_eq!(
            (r.status.as_u16(), r.reason().as_str()),
            (401, "token_rejected")
        );
    }
    assert_eq!(k.api.token_reviews(), 0, "no TokenReview for a forgery");
    assert_eq!(k.verifications("bad_signature").await, 3.0);
    assert_eq!(k.env.upstream.count(), 0);

    // Claiming another issuer, it may be another authenticator's token.
    let mut foreign = claims("prom");
    foreign["iss"] = json!("https://idp.example");
    let token = tampered(&keys().sign(Key::Ec, "ec-1", &foreign));
    assert_eq!(k.get(&token).await.status, 401);
    assert_eq!(k.api.token_reviews(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_bad_signatures_sends_them_to_token_review() {
    let k = start("", ", review_bad_signatures: true", None).await;
    let token = tampered(&keys().token(Key::Ec, "prom"));
    k.api.add_token_with(&token, reviewed("prom"));
    assert_eq!(k.get(&token).await.status, 200, "TokenReview decides");
    assert_eq!(k.api.token_reviews(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_refreshes_the_keys_once_a_minute_then_asks_token_review() {
    let k = start("", "", None).await;
    assert_eq!(k.get(&keys().token(Key::Rsa, "prom")).await.status, 200);
    assert_eq!(k.api.jwks_fetches(), 1);

    let stranger = keys().sign(Key::Rsa, "rotated-away", &claims("prom"));
    let r = k.get(&stranger).await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (401, "token_rejected")
    );
    assert_eq!(k.api.jwks_fetches(), 2, "one refresh for the unknown kid");
    assert_eq!(k.api.token_reviews(), 1, "then TokenReview");

    // Within the minute: no further refresh, straight to TokenReview.
    let other = keys().sign(Key::Ec, "another-unknown", &claims("x"));
    assert_eq!(k.get(&other).await.status, 401);
    assert_eq!(k.api.jwks_fetches(), 2);
    assert_eq!(k.api.token_reviews(), 2);
    assert_eq!(k.verifications("unknown_kid").await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_in_key_is_fetched_on_first_use_without_token_review() {
    let k = start("", "", None).await;
    // The cluster adds a key after authgate started: the RSA key under a new kid.
    let mut jwks = keys().jwks();
    let mut rotated = jwks["keys"][0].clone();
    rotated["kid"] = json!("rsa-2");
    jwks["keys"].as_array_mut().expect("keys").push(rotated);
    k.api.serve_jwks(jwks, ISSUER);
    let token = keys().sign(Key::Rsa, "rsa-2", &claims("prom"));
    assert_eq!(k.get(&token).await.status, 200);
    assert_eq!(k.api.jwks_fetches(), 2);
    assert_eq!(k.api.token_reviews(), 0);
    assert_eq!(k.env.gate.metric("authgate_jwks_keys").await, 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revalidate_after_sends_old_entries_to_token_review_and_never_fails_open() {
    let k = start(
        "  cache: {ttl: 1s, failure_ttl: 1s}\n",
        ", revalidate_after: 1s",
        None,
    )
    .await;
    let token = keys().token(Key::Ec, "prom");
    k.api.add_token_with(&token, reviewed("prom"));
    let pause = || tokio::time::sleep(Duration::from_millis(1200));

    assert_eq!(k.get(&token).await.status, 200);
    assert_eq!(k.get(&token).await.status, 200);
    assert_eq!(k.api.token_reviews(), 0, "fresh: local only");

    pause().await;
    assert_eq!(k.get(&token).await.status, 200);
    assert_eq!(k.api.token_reviews(), 1, "old: TokenReview accepted it");
    assert_eq!(k.get(&token).await.status, 200);
    assert_eq!(k.api.token_reviews(), 1, "renewed: local again");

    // The API fails during a revalidation: 503, never the cached identity.
    pause().await;
    k.api.set_fault(Endpoint::TokenReview, Fault::ServerError);
    let r = k.get(&token).await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (503, "backend_unreachable")
    );
    k.api.set_fault(Endpoint::TokenReview, Fault::None);
    assert_eq!(k.get(&token).await.status, 200);

    // The Pod is deleted: TokenReview rejects the token, and from then on
    // its valid signature no longer helps.
    k.api.remove_token(&token);
    pause().await;
    let reviews = k.api.token_reviews();
    let r = k.get(&token).await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (401, "token_rejected")
    );
    assert_eq!(k.api.token_reviews(), reviews + 1);
    for _ in 0..2 {
        assert_eq!(k.get(&token).await.status, 401);
        pause().await;
    }
    assert_eq!(k.get(&token).await.status, 401);
    assert_eq!(k.verifications("revalidated").await, 2.0);
    assert_eq!(k.verifications("revoked").await, 1.0);
    assert!(k.verifications("revoked_before").await >= 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_jwks_endpoint_down_at_start_tokens_still_work_through_token_review() {
    let k = start("", "", Some(Fault::ServerError)).await;
    let token = keys().token(Key::Rsa, "prom");
    k.api.add_token_with(&token, reviewed("prom"));
    let r = k.get(&token).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        k.env.upstream.last().all("x-remote-user"),
        ["system:serviceaccount:monitoring:prom"]
    );
    assert_eq!(k.api.token_reviews(), 1);
    let r = k.get(&keys().token(Key::Ec, "unknown-to-the-api")).await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (401, "token_rejected")
    );
    assert!(
        k.env
            .gate
            .metric("authgate_jwks_refreshes_total{result=\"failure\"}")
            .await
            >= 1.0
    );
    assert_eq!(k.env.gate.metric("authgate_jwks_keys").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_issuer_that_discovery_contradicts_loads_no_keys() {
    let k = start("", ", issuer: \"https://other.issuer\"", None).await;
    let token = keys().token(Key::Rsa, "prom");
    k.api.add_token_with(&token, reviewed("prom"));
    assert_eq!(k.get(&token).await.status, 200);
    assert_eq!(
        k.api.token_reviews(),
        1,
        "verified by TokenReview, not locally"
    );
    assert_eq!(k.verifications("verified").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_flush_is_not_undone_by_a_still_valid_signature() {
    let k = start("", ", revalidate_after: 1m", None).await;
    let token = keys().token(Key::Ec, "prom");
    k.api.add_token_with(&token, reviewed("prom"));
    assert_eq!(k.get(&token).await.status, 200);
    assert_eq!(k.api.token_reviews(), 0, "verified locally");

    // The Pod is deleted and the operator flushes: the next request is
    // reviewed (and refused), although the signature still verifies.
    k.api.remove_token(&token);
    let (status, _) = k.env.gate.admin("POST", "/cache/flush").await;
    assert_eq!(status, 200);
    let r = k.get(&token).await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (401, "token_rejected")
    );
    assert_eq!(k.api.token_reviews(), 1);
    // A second flush does not forget that TokenReview rejected it.
    let (status, _) = k.env.gate.admin("POST", "/cache/flush").await;
    assert_eq!(status, 200);
    assert_eq!(k.get(&token).await.status, 401);

    // Another token, first seen right after the flush, is reviewed too.
    let other = keys().token(Key::Rsa, "grafana");
    k.api.add_token_with(&other, reviewed("grafana"));
    let before = k.api.token_reviews();
    assert_eq!(k.get(&other).await.status, 200);
    assert_eq!(k.api.token_reviews(), before + 1);
}

/// A TokenReview under way at a flush answers for the moment before it: its
/// own request may have that answer, the JWKS cache must not keep it, or
/// the flushed (revoked) identity is served locally for `revalidate_after`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revalidation_under_way_at_a_flush_cannot_undo_it() {
    let k = start(
        "  cache: {ttl: 1s, failure_ttl: 1s}\n",
        ", revalidate_after: 2s",
        None,
    )
    .await;
    let token = keys().token(Key::Ec, "prom");
    k.api.add_token_with(&token, reviewed("prom"));
    assert_eq!(k.get(&token).await.status, 200);
    assert_eq!(k.api.token_reviews(), 0, "verified locally");

    // The entry grows old: the next request revalidates, slowly.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    k.api.set_fault(
        Endpoint::TokenReview,
        Fault::Latency(Duration::from_millis(1500)),
    );
    let under_way = k.spawn_get(&token);
    k.review_under_way(1).await;

    // Meanwhile the Pod is deleted and the operator flushes.
    k.api.remove_token(&token);
    let (status, _) = k.env.gate.admin("POST", "/cache/flush").await;
    assert_eq!(status, 200);
    let r = tokio::time::timeout(Duration::from_secs(10), under_way)
        .await
        .expect("the revalidation ends")
        .expect("request task");
    assert_eq!(r.status, 200, "begun before the flush: its answer stands");
    k.api.set_fault(Endpoint::TokenReview, Fault::None);

    // The next request is reviewed again, and refused.
    let r = k.get(&token).await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (401, "token_rejected")
    );
    assert_eq!(k.api.token_reviews(), 2);
}

/// The same for a flush of one user (here on the review a first flush
/// forces on a token verified locally); other users' entries stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revalidation_under_way_at_a_flush_of_its_user_cannot_undo_it() {
    let k = start("", ", revalidate_after: 1m", None).await;
    let flush_prom = "/cache/flush?user=system%3Aserviceaccount%3Amonitoring%3Aprom";
    let token = keys().token(Key::Ec, "prom");
    let other = keys().token(Key::Rsa, "grafana");
    k.api.add_token_with(&token, reviewed("prom"));
    k.api.add_token_with(&other, reviewed("grafana"));
    assert_eq!(k.get(&token).await.status, 200);
    assert_eq!(k.get(&other).await.status, 200);
    assert_eq!(k.api.token_reviews(), 0, "verified locally");

    // A first flush of prom: its next request is reviewed, slowly.
    let (status, _) = k.env.gate.admin("POST", flush_prom).await;
    assert_eq!(status, 200);
    k.api.set_fault(
        Endpoint::TokenReview,
        Fault::Latency(Duration::from_millis(1500)),
    );
    let under_way = k.spawn_get(&token);
    k.review_under_way(1).await;

    // Meanwhile prom's Pod is deleted and the operator flushes prom again.
    k.api.remove_token(&token);
    let (status, _) = k.env.gate.admin("POST", flush_prom).await;
    assert_eq!(status, 200);
    let r = tokio::time::timeout(Duration::from_secs(10), under_way)
        .await
        .expect("the review ends")
        .expect("request task");
    assert_eq!(r.status, 200, "begun before the flush: its answer stands");
    k.api.set_fault(Endpoint::TokenReview, Fault::None);

    let r = k.get(&token).await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (401, "token_rejected")
    );
    assert_eq!(k.api.token_reviews(), 2);
    // grafana was not flushed: still served locally.
    assert_eq!(k.get(&other).await.status, 200);
    assert_eq!(k.api.token_reviews(), 2);
}
