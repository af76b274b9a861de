//! kube-rbac-proxy's `--oidc-*` flags: the issuer they name verifies its
//! tokens, and, as in kube-rbac-proxy, TokenReview is off.

use std::sync::Arc;

use authgate::app::App;
use authgate::config::Config;
use authgate::config::krp::KrpFlags;
use authgate::config::krp_oidc::KrpOidcFlags;
use serde_json::json;
use testkit::*;

use super::idp::{EcKey, Idp};
use super::{AUD, claims};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oidc_flags_verify_that_issuers_tokens_and_turn_token_review_off() {
    let key = EcKey::new("k");
    let idp = Idp::start(&[key.jwk()]).await;
    let pki = Pki::new();
    let api = FakeApi::start(&pki).await;
    api.allow(Rule::user("alice@example.com").verb("get").path("/api/*"));
    let upstream = Upstream::start().await;
    let ca = pki.path().join("idp-ca.crt");
    std::fs::write(&ca, &idp.ca_pem).expect("write the issuer CA");
    let flags = KrpFlags {
        upstream: Some(format!("http://{}", upstream.addr)),
        tls_cert_file: Some(pki.server_cert.clone()),
        tls_private_key_file: Some(pki.server_key.clone()),
        kubeconfig: Some(api.kubeconfig.clone()),
        auth_header_fields_enabled: Some(true),
        oidc: KrpOidcFlags {
            oidc_issuer: Some(idp.url.clone()),
            oidc_client_id: Some(AUD.to_owned()),
            oidc_ca_file: Some(ca),
            oidc_groups_prefix: Some("oidc:".to_owned()),
            // The issuer signs ES256 (kube-rbac-proxy's default is RS256).
            oidc_sign_alg: vec!["ES256".to_owned()],
            ..KrpOidcFlags::default()
        },
        ..KrpFlags::default()
    };
    let file = flags
        .apply(authgate::config::file::File::default())
        .expect("flags map");
    let config = Config::try_from(file).expect("valid config");
    install_crypto_provider();
    let app = Arc::new(App::build(&config).await.expect("app builds"));
    let gate = Gate::serve(app).await;
    let client = gate.client(&pki);
    let get = |token: String| {
        let client = client.clone();
        async move {
            client
                .get_with_token("/api/x", &token)
                .await
                .expect("request")
        }
    };

    // kube-rbac-proxy's defaults: the `email` claim, unprefixed.
    let mut c = claims(&idp.url, "alice");
    c["email"] = json!("alice@example.com");
    c["email_verified"] = json!(true);
    let r = get(key.sign(&c)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let seen = upstream.last();
    assert_eq!(seen.all("x-remote-user"), ["alice@example.com"]);
    assert_eq!(
        seen.all("x-remote-groups"),
        ["oidc:dev|system:authenticated"]
    );

    // An unverified address is refused; so is any other token, unreviewed.
    c["email_verified"] = json!(false);
    assert_eq!(get(key.sign(&c)).await.status, 401);
    api.add_token("opaque-sa-token", "system:serviceaccount:x:y", &[]);
    assert_eq!(get("opaque-sa-token".to_owned()).await.status, 401);
    assert_eq!(api.token_reviews(), 0, "no TokenReview, as kube-rbac-proxy");
}
