//! review-b (adversarial review): tokens signed by a configured external
//! issuer must never reach TokenReview, whatever shape their claims have.

use super::idp::{EcKey, Idp};
use super::{AUD, get, now, start};

/// A token the IdP signed whose payload names the issuer's `iss` twice
/// (RFC 7519 §4: a parser may reject or take the last). authgate's router
/// (`keys::unverified_issuer`, a serde struct) fails on the duplicate and
/// returns "no issuer", so the token goes to TokenReview: the issuer's
/// credential leaks to the API server, which may map it differently (its
/// own prefix for the same IdP). It must be refused here, unreviewed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_naming_the_issuer_twice_never_reaches_token_review() {
    let key = EcKey::new("idp-1");
    let idp = Idp::start(&[key.jwk()]).await;
    let (api, env) = start(&[&idp]).await;
    let (iss, t) = (&idp.url, now());
    let payload = format!(
        r#"{{"iss":"{iss}","iss":"{iss}","aud":["{AUD}"],"sub":"alice","groups":["dev"],"oid":"oid-alice","iat":{t},"nbf":{t},"exp":{}}}"#,
        t + 3600
    );
    let r = get(&env, &key.sign_raw(&payload)).await;
    assert_eq!(r.status.as_u16(), 401, "{:?}", r.body);
    assert_eq!(
        api.token_reviews(),
        0,
        "a token signed by a configured issuer was sent to TokenReview"
    );
}

/// The same with `iss` an array naming the issuer (jsonwebtoken accepts an
/// array `iss` that contains the configured issuer; the router sees none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_with_an_array_iss_of_the_issuer_never_reaches_token_review() {
    let key = EcKey::new("idp-1");
    let idp = Idp::start(&[key.jwk()]).await;
    let (api, env) = start(&[&idp]).await;
    let (iss, t) = (&idp.url, now());
    let payload = format!(
        r#"{{"iss":["{iss}"],"aud":["{AUD}"],"sub":"alice","iat":{t},"nbf":{t},"exp":{}}}"#,
        t + 3600
    );
    let r = get(&env, &key.sign_raw(&payload)).await;
    assert_eq!(r.status.as_u16(), 401, "{:?}", r.body);
    assert_eq!(api.token_reviews(), 0, "array iss sent to TokenReview");
}
