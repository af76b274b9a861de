//! External JWT issuers (`authentication.jwt[]`) through the whole server
//! over TLS, against local issuers ([`idp::Idp`]) with their own keys,
//! discovery and JWKS over HTTPS, and the fake Kubernetes API counting
//! TokenReviews: an issuer's tokens are verified with its keys only and
//! never reach TokenReview; tokens of other issuers follow the old path.

mod confusion;
mod idp;
mod krp;
mod review_b;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use testkit::*;

use crate::jwks::{Key, keys};
use idp::{EcKey, Idp};

const AUD: &str = "authgate-app";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Claims of user `sub` (groups `dev`, uid `oid-<sub>`) from `iss`.
fn claims(iss: &str, sub: &str) -> Value {
    json!({
        "iss": iss, "aud": [AUD], "sub": sub, "groups": ["dev"], "oid": format!("oid-{sub}"),
        "iat": now(), "nbf": now(), "exp": now() + 3600,
    })
}

/// One `jwt[]` item for `idp`: username `sub`, groups `groups` (both
/// prefixed `idp:`), uid `oid`, trusting the issuer's CA.
fn item(idp: &Idp) -> String {
    let ca: String = idp
        .ca_pem
        .lines()
        .map(|l| format!("          {l}\n"))
        .collect();
    format!(
        "    - issuer:\n        url: \"{}\"\n        audiences: [\"{AUD}\"]\n        certificateAuthority: |\n{ca}      claimMappings:\n        username: {{claim: sub, prefix: \"idp:\"}}\n        groups: {{claim: groups, prefix: \"idp:\"}}\n        uid: {{claim: oid}}\n",
        idp.url
    )
}

/// The fake API (ServiceAccounts and `idp:dev` may get /api/*) and a gate
/// with TokenReview and these issuers.
async fn start(idps: &[&Idp]) -> (FakeApi, Env) {
    let items: String = idps.iter().map(|i| item(i)).collect();
    let (api, env) = Env::with_kube(&format!("authentication:\n  jwt:\n{items}")).await;
    api.allow(Rule::group("idp:dev").verb("get").path("/api/*"));
    (api, env)
}

async fn get(env: &Env, token: &str) -> Resp {
    env.client()
        .get_with_token("/api/x", token)
        .await
        .expect("request")
}

async fn verifications(env: &Env, idp: &Idp, result: &str) -> f64 {
    let series = format!(
        "authgate_issuer_jwt_verifications_total{{issuer=\"{}\",result=\"{result}\"}}",
        idp.url
    );
    env.gate.metric(&series).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_token_is_mapped_with_its_prefixes_and_costs_no_token_review() {
    let key = EcKey::new("idp-1");
    let idp = Idp::start(&[key.jwk()]).await;
    let (api, env) = start(&[&idp]).await;
    assert_eq!((idp.discovery_fetches(), idp.jwks_fetches()), (1, 1));

    let r = get(&env, &key.sign(&claims(&idp.url, "alice"))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let seen = env.upstream.last();
    assert_eq!(seen.all("x-remote-user"), ["idp:alice"]);
    assert_eq!(seen.all("x-remote-uid"), ["oid-alice"]);
    assert_eq!(
        seen.all("x-remote-group"),
        ["idp:dev", "system:authenticated"]
    );
    assert_eq!(seen.all("authorization"), Vec::<String>::new());
    assert_eq!(api.token_reviews(), 0, "verified here only");
    assert_eq!(api.access_reviews(), 1, "authorized as usual");
    assert_eq!(verifications(&env, &idp, "verified").await, 1.0);
    let keys_series = format!("authgate_issuer_jwks_keys{{issuer=\"{}\"}}", idp.url);
    assert_eq!(env.gate.metric(&keys_series).await, 1.0);

    // Tokens of anyone else take the old path: static tokens, then TokenReview.
    assert_eq!(get(&env, BOB_TOKEN).await.status, 200);
    assert_eq!(api.token_reviews(), 0);
    let elsewhere = key.sign(&claims("https://elsewhere.example", "alice"));
    let r = get(&env, &elsewhere).await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (401, "token_rejected")
    );
    assert_eq!(
        api.token_reviews(),
        1,
        "an unknown issuer goes to TokenReview"
    );
    api.add_token_with(
        "opaque-sa-token",
        TokenIdentity::new(
            "system:serviceaccount:monitoring:prom",
            &["system:serviceaccounts"],
        ),
    );
    assert_eq!(get(&env, "opaque-sa-token").await.status, 200);
    assert_eq!(api.token_reviews(), 2);
}

/// `good` with one signature byte changed.
fn tampered(good: &str) -> String {
    let at = good.rfind('.').expect("three parts") + 10;
    let mut t = good.to_owned().into_bytes();
    t[at] = if t[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(t).expect("ascii")
}

/// An unsigned JWT (`alg: none`).
fn unsigned(kid: &str, claims: &Value) -> String {
    let header = json!({"alg": "none", "kid": kid});
    format!(
        "{}.{}.",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    )
}

/// HS256 with `secret` (an RSA public key, the classic confusion attack).
fn hs256(kid: &str, claims: &Value, secret: &[u8]) -> String {
    let header = json!({"alg": "HS256", "kid": kid});
    let msg = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, msg.as_bytes());
    format!("{msg}.{}", B64.encode(tag.as_ref()))
}

/// Tokens claiming issuer A (or B) with one defect each, by the reason
/// counted: claims, keys, signatures and algorithms.
fn defects(a: &Idp, a_key: &EcKey, b: &Idp, b_key: &EcKey) -> Vec<(&'static str, String)> {
    let rsa_jwk = keys().jwks()["keys"][0].clone();
    let with = |field: &str, v: Value| {
        let mut c = claims(&a.url, "mallory");
        c[field] = v;
        c
    };
    let rsa_n = B64
        .decode(rsa_jwk["n"].as_str().expect("n"))
        .expect("n decodes");
    vec![
        (
            "audience",
            a_key.sign(&with("aud", json!(["someone-else"]))),
        ),
        ("expired", a_key.sign(&with("exp", json!(now() - 600)))),
        (
            "not_yet_valid",
            a_key.sign(&with("nbf", json!(now() + 600))),
        ),
        (
            "unknown_kid",
            EcKey::new("stranger").sign(&claims(&a.url, "mallory")),
        ),
        // A's iss, B's key (and B's kid): only A's keys may verify it.
        ("unknown_kid", b_key.sign(&claims(&a.url, "mallory"))),
        (
            "bad_signature",
            tampered(&a_key.sign(&claims(&a.url, "mallory"))),
        ),
        // A's kid, signed by another key.
        (
            "bad_signature",
            EcKey::new("a-1").sign(&claims(&a.url, "mallory")),
        ),
        ("malformed", unsigned("a-1", &claims(&a.url, "mallory"))),
        (
            "bad_signature",
            hs256("rsa-1", &claims(&b.url, "mallory"), &rsa_n),
        ),
        (
            "bad_signature",
            hs256(
                "rsa-1",
                &claims(&b.url, "mallory"),
                rsa_jwk.to_string().as_bytes(),
            ),
        ),
        (
            "no_kid",
            a_key.sign_with(&json!({"alg": "ES256"}), &claims(&a.url, "mallory")),
        ),
        ("username", a_key.sign(&with("sub", json!(42)))),
        ("uid", {
            let mut c = claims(&a.url, "mallory");
            c.as_object_mut().expect("object").remove("oid");
            a_key.sign(&c)
        }),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defective_tokens_get_401_and_never_reach_token_review() {
    // Issuer A signs with a P-256 key; issuer B with another one and with
    // the RSA key of the jwks tests.
    let (a_key, b_key) = (EcKey::new("a-1"), EcKey::new("b-1"));
    let rsa_jwk = keys().jwks()["keys"][0].clone();
    let a = Idp::start(&[a_key.jwk()]).await;
    let b = Idp::start(&[b_key.jwk(), rsa_jwk.clone()]).await;
    let (api, env) = start(&[&a, &b]).await;

    let good_b = keys().sign(Key::Rsa, "rsa-1", &claims(&b.url, "bob"));
    assert_eq!(get(&env, &good_b).await.status, 200, "RS256 verifies");

    let cases = defects(&a, &a_key, &b, &b_key);
    for (reason, token) in &cases {
        let r = get(&env, token).await;
        assert_eq!(
            (r.status.as_u16(), r.reason().as_str()),
            (401, "token_rejected"),
            "{reason}"
        );
        // The 401 does not say which check failed.
        assert_eq!(
            r.json()["message"],
            "the bearer token was not accepted",
            "{reason}"
        );
    }
    assert_eq!(api.token_reviews(), 0, "no defect reaches TokenReview");
    assert_eq!(env.upstream.count(), 1, "only the good token was forwarded");
    for reason in [
        "audience",
        "expired",
        "not_yet_valid",
        "malformed",
        "no_kid",
        "username",
        "uid",
    ] {
        assert_eq!(verifications(&env, &a, reason).await, 1.0, "{reason}");
    }
    assert_eq!(verifications(&env, &a, "unknown_kid").await, 2.0);
    assert_eq!(verifications(&env, &a, "bad_signature").await, 2.0);
    assert_eq!(verifications(&env, &b, "bad_signature").await, 2.0);
    assert_eq!(
        a.jwks_fetches(),
        2,
        "two unknown kids, one refresh (at most one a minute)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_picked_up_and_unknown_kids_cost_one_refresh_a_minute() {
    let (old, new) = (EcKey::new("k-old"), EcKey::new("k-new"));
    let idp = Idp::start(&[old.jwk()]).await;
    let (api, env) = start(&[&idp]).await;
    let by_old = old.sign(&claims(&idp.url, "alice"));
    assert_eq!(get(&env, &by_old).await.status, 200);
    assert_eq!(idp.jwks_fetches(), 1);

    // The issuer rotates: the new key replaces the old one.
    idp.serve_keys(&[new.jwk()]);
    let by_new = new.sign(&claims(&idp.url, "alice"));
    assert_eq!(get(&env, &by_new).await.status, 200, "fetched on first use");
    assert_eq!(idp.jwks_fetches(), 2);
    assert_eq!(get(&env, &by_new).await.status, 200);
    assert_eq!(idp.jwks_fetches(), 2, "known now: no fetch");

    // The removed key no longer verifies, and a flood of unknown kids
    // causes no further fetch within the minute.
    let r = get(&env, &by_old).await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (401, "token_rejected")
    );
    for i in 0..20 {
        let t = EcKey::new(&format!("flood-{i}")).sign(&claims(&idp.url, "x"));
        assert_eq!(get(&env, &t).await.status, 401);
    }
    assert_eq!(idp.jwks_fetches(), 2, "bounded: no refresh flood");
    assert_eq!(verifications(&env, &idp, "unknown_kid").await, 21.0);
    assert_eq!(api.token_reviews(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_without_keys_gets_503_for_its_tokens_and_never_token_review() {
    // One issuer is down at startup; another's discovery names someone else.
    let key = EcKey::new("k");
    let down = Idp::start(&[key.jwk()]).await;
    down.set_down(true);
    let liar = Idp::start(&[key.jwk()]).await;
    liar.claim_issuer("https://evil.example");
    let (api, env) = start(&[&down, &liar]).await;

    for idp in [&down, &liar] {
        let token = key.sign(&claims(&idp.url, "alice"));
        let mut fetches = 0;
        for n in 0..3 {
            let r = get(&env, &token).await;
            assert_eq!(
                (r.status.as_u16(), r.reason().as_str()),
                (503, "backend_unreachable"),
                "{}",
                idp.url
            );
            assert!(r.headers.get("retry-after").is_some());
            if n == 0 {
                // The startup load, the refresh task's first try, the
                // first token's on-demand try.
                fetches = idp.discovery_fetches();
                assert!((1..=3).contains(&fetches), "{fetches}");
            }
        }
        assert_eq!(
            idp.discovery_fetches(),
            fetches,
            "no retry within the minute"
        );
        assert_eq!(idp.jwks_fetches(), 0);
        assert_eq!(verifications(&env, idp, "unavailable").await, 3.0);
    }
    assert_eq!(api.token_reviews(), 0, "never TokenReview instead");
    assert_eq!(env.upstream.count(), 0);
    let failures = format!(
        "authgate_issuer_jwks_refreshes_total{{issuer=\"{}\",result=\"failure\"}}",
        down.url
    );
    let fetches = down.discovery_fetches() as f64;
    assert_eq!(env.gate.metric(&failures).await, fetches);
}
