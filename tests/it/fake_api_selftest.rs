//! Self-check of the fake Kubernetes API (testkit/src/fake_api.rs) with the
//! real kube client, so other tests can rely on it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
    SubjectAccessReviewStatus,
};
use kube::api::{Api, PostParams};
use testkit::*;

/// A kube client from the fake's kubeconfig, adjusted by `tweak`.
async fn client_with(api: &FakeApi, tweak: impl FnOnce(&mut kube::Config)) -> kube::Client {
    install_crypto_provider();
    let mut cfg = api.kube_config().await;
    cfg.default_retry = false;
    tweak(&mut cfg);
    kube::Client::try_from(cfg).expect("kube client")
}

async fn client(api: &FakeApi) -> kube::Client {
    client_with(api, |_| {}).await
}

async fn review(
    c: &kube::Client,
    token: &str,
    audiences: &[&str],
) -> Result<TokenReviewStatus, kube::Error> {
    let tr = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.to_owned()),
            audiences: (!audiences.is_empty())
                .then(|| audiences.iter().map(|a| (*a).to_owned()).collect()),
        },
        ..Default::default()
    };
    let r = Api::<TokenReview>::all(c.clone())
        .create(&PostParams::default(), &tr)
        .await?;
    assert_eq!(r.spec.token.as_deref(), Some(token), "the spec is echoed");
    Ok(r.status.expect("status"))
}

async fn sar(
    c: &kube::Client,
    user: &str,
    groups: &[&str],
    verb: &str,
    what: Result<&str, (&str, &str)>,
) -> Result<SubjectAccessReviewStatus, kube::Error> {
    let mut spec = SubjectAccessReviewSpec {
        user: Some(user.to_owned()),
        groups: Some(groups.iter().map(|g| (*g).to_owned()).collect()),
        ..Default::default()
    };
    match what {
        Ok(path) => {
            spec.non_resource_attributes = Some(NonResourceAttributes {
                path: Some(path.to_owned()),
                verb: Some(verb.to_owned()),
            });
        }
        Err((namespace, resource)) => {
            spec.resource_attributes = Some(ResourceAttributes {
                namespace: Some(namespace.to_owned()),
                resource: Some(resource.to_owned()),
                verb: Some(verb.to_owned()),
                ..Default::default()
            });
        }
    }
    let r = Api::<SubjectAccessReview>::all(c.clone())
        .create(
            &PostParams::default(),
            &SubjectAccessReview {
                spec,
                ..Default::default()
            },
        )
        .await?;
    Ok(r.status.expect("status"))
}

fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

#[tokio::test]
async fn a_known_token_is_authenticated_with_its_user_and_an_unknown_one_is_not() {
    let pki = Pki::new();
    let api = FakeApi::start(&pki).await;
    api.add_token("alice-secret-token", "alice", &["dev", "qa"]);
    let c = client(&api).await;

    let ok = review(&c, "alice-secret-token", &[]).await.unwrap();
    assert_eq!(ok.authenticated, Some(true));
    let user = ok.user.expect("user");
    assert_eq!(user.username.as_deref(), Some("alice"));
    assert_eq!(user.groups, Some(vec!["dev".into(), "qa".into()]));
    assert_eq!(
        ok.audiences,
        Some(vec!["https://kubernetes.default.svc".into()])
    );

    let bad = review(&c, "nobody-knows-me", &[]).await.unwrap();
    assert_eq!(bad.authenticated, Some(false));
    assert_eq!(bad.error.as_deref(), Some("invalid bearer token"));
    assert!(bad.user.is_none());

    api.remove_token("alice-secret-token");
    let gone = review(&c, "alice-secret-token", &[]).await.unwrap();
    assert_eq!(gone.authenticated, Some(false));

    assert_eq!(api.token_reviews(), 3);
    let specs = api.token_review_specs();
    assert_eq!(specs.len(), 3);
    assert_eq!(specs[0]["known"], true);
    assert_eq!(specs[1]["known"], false);
    assert_eq!(
        specs[0]["tokenSha256"],
        FakeApi::token_hash("alice-secret-token")
    );
    let recorded = serde_json::to_string(&specs).unwrap();
    assert!(
        !recorded.contains("alice-secret-token"),
        "the raw token is never recorded"
    );
    api.reset_counts();
    assert_eq!(
        (api.token_reviews(), api.token_review_specs().len()),
        (0, 0)
    );
}

#[tokio::test]
async fn token_audiences_are_intersected_with_the_wanted_ones() {
    let pki = Pki::new();
    let api = FakeApi::start(&pki).await;
    api.add_token_with(
        "bot-token",
        TokenIdentity {
            user: "system:serviceaccount:default:bot".into(),
            uid: Some("uid-7".into()),
            groups: vec!["system:serviceaccounts".into()],
            extra: BTreeMap::from([("pod".into(), vec!["bot-1".into()])]),
            audiences: vec!["https://gate".into(), "https://other".into()],
        },
    );
    let c = client(&api).await;

    let ok = review(&c, "bot-token", &["https://gate", "https://nope"])
        .await
        .unwrap();
    assert_eq!(ok.authenticated, Some(true));
    assert_eq!(ok.audiences, Some(vec!["https://gate".into()]));
    let user = ok.user.unwrap();
    assert_eq!(user.uid.as_deref(), Some("uid-7"));
    assert_eq!(user.extra.unwrap()["pod"], ["bot-1"]);

    let default = review(&c, "bot-token", &[]).await.unwrap();
    assert_eq!(default.authenticated, Some(false));
    assert!(
        default
            .error
            .unwrap()
            .contains("is invalid for the target audiences [\"https://kubernetes.default.svc\"]")
    );
    assert_eq!(
        api.token_review_specs()[0]["audiences"],
        serde_json::json!(["https://gate", "https://nope"])
    );
}

#[tokio::test]
async fn access_reviews_follow_allow_and_deny_rules_and_deny_wins() {
    let pki = Pki::new();
    let api = FakeApi::start(&pki).await;
    api.allow(Rule::group("dev").verb("get").path("/api/*"));
    api.deny(Rule::user("mallory").path("/api/secret"));
    api.allow(
        Rule::user("ops")
            .verb("list")
            .resource("pods")
            .namespace("kube-system"),
    );
    let c = client(&api).await;

    let s = sar(&c, "bob", &["dev"], "get", Ok("/api/things"))
        .await
        .unwrap();
    assert!(s.allowed);
    let s = sar(&c, "bob", &["dev"], "create", Ok("/api/things"))
        .await
        .unwrap();
    assert!(!s.allowed);
    assert_eq!(s.denied, None);
    assert_eq!(s.reason.as_deref(), Some("no rule matched"));
    let s = sar(&c, "mallory", &["dev"], "get", Ok("/api/secret"))
        .await
        .unwrap();
    assert_eq!((s.allowed, s.denied), (false, Some(true)));
    let s = sar(&c, "ops", &[], "list", Err(("kube-system", "pods")))
        .await
        .unwrap();
    assert!(s.allowed);
    let s = sar(&c, "ops", &[], "list", Err(("default", "pods")))
        .await
        .unwrap();
    assert!(!s.allowed);

    assert_eq!(api.access_reviews(), 5);
    let specs = api.access_review_specs();
    assert_eq!(specs[0]["user"], "bob");
    assert_eq!(specs[0]["groups"], serde_json::json!(["dev"]));
    assert_eq!(specs[3]["resourceAttributes"]["namespace"], "kube-system");
}

#[tokio::test]
async fn injected_faults_become_the_errors_a_client_would_see() {
    let pki = Pki::new();
    let api = FakeApi::start(&pki).await;
    api.add_token("t", "u", &[]);
    api.allow(Rule::anyone());
    let c = client_with(&api, |cfg| {
        cfg.read_timeout = Some(Duration::from_secs(1));
        cfg.reset_reader_on_write = true;
    })
    .await;

    api.set_fault(
        Endpoint::TokenReview,
        Fault::TooManyRequests {
            retry_after_secs: 3,
        },
    );
    let e = review(&c, "t", &[]).await.unwrap_err();
    assert_eq!(api_code(&e), Some(429), "{e:?}");
    // Only the TokenReview endpoint is affected.
    assert!(sar(&c, "u", &[], "get", Ok("/")).await.unwrap().allowed);

    api.set_fault(Endpoint::Both, Fault::ServerError);
    let e = sar(&c, "u", &[], "get", Ok("/")).await.unwrap_err();
    assert_eq!(api_code(&e), Some(500), "{e:?}");

    for fault in [Fault::MalformedJson, Fault::WrongKind] {
        api.set_fault(Endpoint::TokenReview, fault.clone());
        let e = review(&c, "t", &[]).await.unwrap_err();
        assert_eq!(api_code(&e), None, "{fault:?}: {e:?}");
    }

    for fault in [Fault::Hang, Fault::HangMidResponse] {
        api.set_fault(Endpoint::TokenReview, fault.clone());
        let t = Instant::now();
        let e = review(&c, "t", &[]).await.unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(5), "{fault:?}: {e:?}");
    }

    api.set_fault(Endpoint::All, Fault::Latency(Duration::from_millis(300)));
    let t = Instant::now();
    assert_eq!(
        review(&c, "t", &[]).await.unwrap().authenticated,
        Some(true)
    );
    assert!(t.elapsed() >= Duration::from_millis(300));

    api.set_fault(Endpoint::All, Fault::None);
    assert_eq!(
        review(&c, "t", &[]).await.unwrap().authenticated,
        Some(true)
    );
    assert_eq!((api.token_reviews(), api.access_reviews()), (7, 2));
}

#[tokio::test]
async fn requests_without_the_gateway_token_get_a_401_status_and_are_counted() {
    let pki = Pki::new();
    let api = FakeApi::start(&pki).await;
    let raw = Client::new(api.addr, &pki.ca_der);

    let r = raw.get("/readyz", &[]).await.unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
    );
    let r = raw.get_with_token("/readyz", "wrong").await.unwrap();
    assert_eq!(r.status, 401);

    let anon = api.write_kubeconfig("anon.kubeconfig", None);
    let kc = kube::config::Kubeconfig::read_from(&anon).unwrap();
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    cfg.default_retry = false;
    let anon = kube::Client::try_from(cfg).unwrap();
    let e = review(&anon, "whatever", &[]).await.unwrap_err();
    assert_eq!(api_code(&e), Some(401), "{e:?}");

    assert_eq!(api.unauthorized(), 3);
    assert_eq!((api.token_reviews(), api.readyz_calls()), (0, 0));

    let r = raw.get_with_token("/readyz", api.token()).await.unwrap();
    assert_eq!((r.status.as_u16(), &r.body[..]), (200, &b"ok"[..]));
    let v = client(&api).await.apiserver_version().await.unwrap();
    assert_eq!((v.major.as_str(), v.minor.as_str()), ("1", "33"));
    assert_eq!((api.readyz_calls(), api.version_calls()), (1, 1));
}

#[tokio::test]
async fn a_down_apiserver_drops_connections_until_it_is_back_on_the_same_port() {
    let pki = Pki::new();
    let api = FakeApi::start(&pki).await;
    api.add_token("t", "u", &[]);
    let c = client(&api).await;
    assert!(review(&c, "t", &[]).await.is_ok());

    api.set_down(true);
    // First on the pooled keep-alive connection, then on a new one.
    assert!(review(&c, "t", &[]).await.is_err());
    assert!(review(&c, "t", &[]).await.is_err());
    let raw = Client::new(api.addr, &pki.ca_der);
    assert!(raw.get_with_token("/readyz", api.token()).await.is_err());

    api.set_down(false);
    assert!(review(&c, "t", &[]).await.is_ok());
    assert_eq!(api.token_reviews(), 2);
}

#[tokio::test]
async fn jwks_documents_are_served_once_registered() {
    let pki = Pki::new();
    let api = FakeApi::start(&pki).await;
    let raw = Client::new(api.addr, &pki.ca_der);
    let r = raw
        .get_with_token("/openid/v1/jwks", api.token())
        .await
        .unwrap();
    assert_eq!(r.status, 404);

    api.serve_jwks(serde_json::json!({"keys": []}), "https://issuer.test");
    let r = raw
        .get_with_token("/.well-known/openid-configuration", api.token())
        .await
        .unwrap();
    assert_eq!(r.json()["jwks_uri"], format!("{}/openid/v1/jwks", api.url));
    assert_eq!(r.json()["issuer"], "https://issuer.test");
    let r = raw
        .get_with_token("/openid/v1/jwks", api.token())
        .await
        .unwrap();
    assert_eq!(r.json(), serde_json::json!({"keys": []}));
    assert_eq!(api.jwks_fetches(), 2);
}
