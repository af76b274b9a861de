//! A panic anywhere in a decision ends in 500 `internal_error` (a bug, so
//! 5xx=500 alerting sees it), never in a forwarded request, and the server
//! keeps serving.

use std::net::IpAddr;
use std::sync::Arc;

use authgate::BoxFuture;
use authgate::app::App;
use authgate::authn::bearer::BearerToken;
use authgate::authn::x509::CertMapper;
use authgate::authn::{Authenticator, TokenAnswer, TokenAuthenticator};
use authgate::authz::attributes::Attributes;
use authgate::authz::{Authorizer, Authorizers, Decision};
use authgate::backend::BackendError;
use authgate::config::{Config, IdentityRule, RuleKind};
use authgate::gate::{Gate as Pipeline, Parts};
use authgate::identity::Identity;
use authgate::migration::Migration;
use authgate::proxy::Upstreams;
use testkit::*;

struct PanicsOn(&'static str);

impl TokenAuthenticator for PanicsOn {
    fn authenticate<'a>(
        &'a self,
        token: &'a BearerToken<'_>,
        _: IpAddr,
    ) -> BoxFuture<'a, TokenAnswer> {
        let bad = token.expose() == self.0;
        Box::pin(async move {
            assert!(!bad, "token backend bug");
            Ok(None)
        })
    }
}

struct PanicsForUser(&'static str);

impl Authorizer for PanicsForUser {
    fn authorize<'a>(
        &'a self,
        id: &'a Identity,
        _: &'a Attributes,
    ) -> BoxFuture<'a, Result<Decision, BackendError>> {
        let bad = id.user() == self.0;
        Box::pin(async move {
            assert!(!bad, "authorizer bug");
            Ok(Decision::Allow)
        })
    }
}

#[tokio::test]
async fn a_panicking_authenticator_or_authorizer_gives_500_and_nothing_is_forwarded() {
    let pki = Pki::new();
    let upstream = Upstream::start().await;
    let config = Config::from_yaml(&Yaml::new(&pki, upstream.addr).render()).unwrap();
    let built = App::build(&config).await.unwrap();
    let authn = Authenticator::new(
        CertMapper::new(&[IdentityRule::unbound(RuleKind::CommonName)]),
        vec![
            Arc::new(PanicsOn("boom-token")),
            Arc::new(authgate::authn::static_tokens::StaticTokens::new(
                &config.static_backend.tokens,
            )),
        ],
    );
    let authz = Authorizers::new(vec![Arc::new(PanicsForUser("mallory"))]);
    let app = App {
        fleet: None,
        gate: Arc::new(Pipeline::new(Parts {
            routes: config.routes.clone(),
            authn,
            authz,
            headers: config.headers.clone(),
            paths: config.paths.clone(),
            migration: Migration::new(&config.migration),
            mode: config.mode.clone(),
            tls: built.tls.clone(),
            metrics: built.metrics.clone(),
            forward: Upstreams::new(&config.routes, &config.limits).unwrap(),
        })),
        ..built
    };
    let gate = Gate::serve(Arc::new(app)).await;

    let r = gate
        .client(&pki)
        .get_with_token("/api/x", "boom-token")
        .await
        .unwrap();
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (500, "internal_error")
    );
    assert!(r.headers.get("retry-after").is_none());
    assert!(!String::from_utf8_lossy(&r.body).contains("boom-token"));
    let mallory = gate
        .client(&pki)
        .with_cert(&pki.client("mallory", &ClientOpts::cn("mallory", &[])));
    let r = mallory.get("/api/x", &[]).await.unwrap();
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (500, "internal_error")
    );
    assert_eq!(upstream.count(), 0);

    // The same connection-level machinery keeps serving everyone else.
    let r = gate
        .client(&pki)
        .get_with_token("/api/x", BOB_TOKEN)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(upstream.count(), 1);
}
