//! Issuer confusion (the cluster's keys and an issuer's never verify each
//! other's tokens) and CEL refused at load by the real binary.

use serde_json::{Value, json};
use testkit::*;

use super::idp::{EcKey, Idp};
use super::{AUD, claims, get, item, now, verifications};
use crate::jwks::{Key, keys};

/// A ServiceAccount token as the cluster signs it (`aud` its issuer: the
/// default API audience).
fn sa_claims(iss: &str) -> Value {
    json!({
        "iss": iss, "aud": [iss], "sub": "system:serviceaccount:monitoring:prom",
        "iat": now(), "nbf": now(), "exp": now() + 3600,
        "kubernetes.io": {"namespace": "monitoring", "serviceaccount": {"name": "prom", "uid": "sa-uid"}},
    })
}

/// With the cluster's keys verified locally too (`token_review.jwks`),
/// neither side's keys verify the other's tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_and_an_external_issuer_never_verify_each_others_tokens() {
    const CLUSTER: &str = "https://kubernetes.default.svc";
    let key = EcKey::new("idp-1");
    let idp = Idp::start(&[key.jwk()]).await;
    let (api, env) = Env::with_kube(&format!(
        "token_review: {{jwks: {{enabled: true, issuer: \"{CLUSTER}\"}}}}\nauthentication:\n  jwt:\n{}",
        item(&idp)
    ))
    .await;
    api.serve_jwks(keys().jwks(), CLUSTER);
    api.allow(Rule::group("idp:dev").verb("get").path("/api/*"));

    // Each good token verifies with its own issuer's keys, unreviewed.
    let sa = keys().sign(Key::Rsa, "rsa-1", &sa_claims(CLUSTER));
    let r = get(&env, &sa).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        env.upstream.last().all("x-remote-user"),
        ["system:serviceaccount:monitoring:prom"]
    );
    assert_eq!(
        get(&env, &key.sign(&claims(&idp.url, "alice")))
            .await
            .status,
        200
    );
    assert_eq!(env.upstream.last().all("x-remote-user"), ["idp:alice"]);
    assert_eq!(api.token_reviews(), 0);

    // The issuer's key under the cluster's iss: the cluster's verifier does
    // not know it (TokenReview then refuses it, as before).
    let r = get(&env, &key.sign(&sa_claims(CLUSTER))).await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (401, "token_rejected")
    );
    assert_eq!(api.token_reviews(), 1);
    // The cluster's key under the issuer's iss: refused, unreviewed.
    let mut c = claims(&idp.url, "alice");
    c["aud"] = json!([AUD, CLUSTER]);
    let r = get(&env, &keys().sign(Key::Rsa, "rsa-1", &c)).await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (401, "token_rejected")
    );
    assert_eq!(
        api.token_reviews(),
        1,
        "never TokenReview for the issuer's iss"
    );
    assert_eq!(verifications(&env, &idp, "unknown_kid").await, 1.0);
    assert_eq!(env.upstream.count(), 2);
}

#[test]
fn cel_expressions_are_refused_at_load_naming_the_key() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let authn = dir.path().join("authn.yaml");
    std::fs::write(
        &authn,
        "apiVersion: apiserver.config.k8s.io/v1beta1\nkind: AuthenticationConfiguration\njwt:\n- issuer: {url: \"https://idp.example\", audiences: [a]}\n  claimMappings:\n    username: {claim: sub, prefix: \"\"}\n    extra:\n    - key: example.com/tenant\n      valueExpression: claims.tenant\n",
    )
    .expect("write");
    let config = dir.path().join("authgate.yaml");
    std::fs::write(
        &config,
        format!(
            "tls: {{cert_file: a, key_file: b}}\nroutes: [{{path_prefix: /, upstream: \"http://127.0.0.1:1\"}}]\nauthentication: {{config_file: {}}}\n",
            authn.display()
        ),
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_authgate"))
        .args(["check-config", "--skip-files", "--config"])
        .arg(&config)
        .output()
        .expect("run authgate");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}: jwt[0].claimMappings.extra[0].valueExpression: CEL expressions are not supported",
            authn.display()
        )),
        "{err}"
    );
}
