//! Client certificates over real TLS: identities, every bad-certificate kind,
//! and the fallback to bearer tokens.

use testkit::*;

#[tokio::test]
async fn cn_cert_via_intermediate_gets_200_and_upstream_sees_exactly_the_mapped_identity() {
    let env = Env::start(|_| {}).await;
    let client = env.cert_client("alice", &ClientOpts::cn("alice", &["dev", "ops"]));
    let r = client.get("/api/pods", &[]).await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let seen = env.upstream.last();
    assert_eq!(seen.all("x-remote-user"), ["alice"]);
    assert_eq!(
        seen.all("x-remote-group"),
        ["dev", "ops", "system:authenticated"]
    );
    assert!(seen.all("x-remote-uid").is_empty());
    let cred = seen.all("x-remote-extra-authentication.kubernetes.io%2fcredential-id");
    assert_eq!(cred.len(), 1);
    assert!(cred[0].starts_with("X509SHA256="), "{cred:?}");
    assert!(seen.headers.get("authorization").is_none());
}

#[tokio::test]
async fn spiffe_cert_maps_to_its_serviceaccount() {
    let env = Env::start(|y| y.identity = SPIFFE_THEN_CN.into()).await;
    let opts = ClientOpts::spiffe("spiffe://cluster.local/ns/monitoring/sa/prometheus");
    let r = env
        .cert_client("prom", &opts)
        .get("/api/metrics", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let seen = env.upstream.last();
    assert_eq!(
        seen.all("x-remote-user"),
        ["system:serviceaccount:monitoring:prometheus"]
    );
    assert_eq!(
        seen.all("x-remote-group"),
        [
            "system:serviceaccounts",
            "system:serviceaccounts:monitoring",
            "system:authenticated"
        ]
    );
}

#[tokio::test]
async fn san_rule_maps_a_dns_name_through_its_template() {
    let env = Env::start(|y| {
        y.identity = "identity:\n  rules:\n    - san: {type: dns, pattern: \"*.web.svc\", user: \"svc:{value}\", groups: [dev]}\n".into();
    })
    .await;
    let opts = ClientOpts {
        dns: vec!["api.web.svc".into()],
        ..Default::default()
    };
    let r = env
        .cert_client("svc", &opts)
        .get("/api/x", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        env.upstream.last().all("x-remote-user"),
        ["svc:api.web.svc"]
    );
}

#[tokio::test]
async fn every_bad_certificate_fails_the_request_and_never_reaches_the_upstream() {
    let env = Env::start_with(|pki, y| {
        let crl = pki.crl_file("revoked.crl", &[666, 667]);
        y.tls_extra = format!(
            "  client_ca_file: {}\n  crl_files: [{}]\n",
            pki.bundle_file.display(),
            crl.display()
        );
    })
    .await;
    let alice = || ClientOpts::cn("alice", &["dev"]);
    let cases = [
        ("expired", alice().validity(Validity::Expired)),
        ("not-yet-valid", alice().validity(Validity::NotYetValid)),
        ("wrong-ca", alice().signer(Signer::Foreign)),
        ("server-eku", alice().usage(Usage::ServerAuthOnly)),
        ("revoked", alice().serial(666)),
        ("revoked-by-root", alice().serial(667).signer(Signer::Root)),
    ];
    for (name, opts) in cases {
        let r = env
            .cert_client(name, &opts)
            .get(
                "/api/x",
                &[("authorization", &format!("Bearer {BOB_TOKEN}"))],
            )
            .await;
        assert!(
            r.is_err(),
            "{name}: request must fail, got {:?}",
            r.map(|r| r.status)
        );
    }
    assert_eq!(
        env.upstream.count(),
        0,
        "no bad certificate reached the upstream"
    );
    // The server still serves good clients afterwards.
    let good = env.cert_client("good", &alice().serial(42));
    assert_eq!(good.get("/api/x", &[]).await.unwrap().status, 200);
    let root_signed = alice().serial(43).signer(Signer::Root);
    assert_eq!(
        env.cert_client("good2", &root_signed)
            .get("/api/x", &[])
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test]
async fn cert_without_eku_extension_is_accepted() {
    let env = Env::start(|_| {}).await;
    let opts = ClientOpts {
        usage: Usage::NoEku,
        ..ClientOpts::cn("alice", &["dev"])
    };
    assert_eq!(
        env.cert_client("noeku", &opts)
            .get("/api/x", &[])
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test]
async fn unmapped_cert_falls_back_to_the_token_or_is_401_cert_unmapped() {
    let env = Env::start(|_| {}).await;
    let two_cns = ClientOpts {
        cns: vec!["first".into(), "second".into()],
        ..Default::default()
    };
    let client = env.cert_client("twocn", &two_cns);
    let r = client.get("/api/x", &[]).await.unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.reason(), "cert_unmapped");
    assert!(r.headers.contains_key("www-authenticate"));
    let r = client.get_with_token("/api/x", BOB_TOKEN).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(env.upstream.last().all("x-remote-user"), ["bob"]);
    let bmp = ClientOpts {
        bmp_cn: true,
        ..ClientOpts::cn("bmp", &[])
    };
    let r = env
        .cert_client("bmp", &bmp)
        .get("/api/x", &[])
        .await
        .unwrap();
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (401, "cert_unmapped")
    );
    assert_eq!(env.upstream.count(), 1);
}

#[tokio::test]
async fn mapped_cert_wins_over_a_token_and_the_token_is_not_forwarded() {
    let env = Env::start(|_| {}).await;
    let client = env.cert_client("alice", &ClientOpts::cn("alice", &["dev"]));
    let r = client.get_with_token("/api/x", CAROL_TOKEN).await.unwrap();
    assert_eq!(r.status, 200);
    let seen = env.upstream.last();
    assert_eq!(seen.all("x-remote-user"), ["alice"]);
    assert!(seen.headers.get("authorization").is_none());
    // Even an invalid token is irrelevant when the certificate maps.
    let r = client
        .get_with_token("/api/x", "not-a-known-token")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn http2_cert_client_works() {
    let env = Env::start(|_| {}).await;
    let client = env
        .cert_client("alice", &ClientOpts::cn("alice", &["dev"]))
        .http2();
    let r = client.get("/api/x?watch=1", &[]).await.unwrap();
    assert_eq!(r.status, 200);
    let seen = env.upstream.last();
    assert_eq!(seen.path, "/api/x?watch=1");
    assert_eq!(seen.all("x-remote-user"), ["alice"]);
}

#[tokio::test]
async fn without_client_ca_no_certificate_is_requested_and_tokens_still_work() {
    let env = Env::start(|y| y.tls_extra.clear()).await;
    let client = env.cert_client("alice", &ClientOpts::cn("alice", &["dev"]));
    // The certificate is never asked for, so alice is anonymous here.
    let r = client.get("/api/x", &[]).await.unwrap();
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (401, "missing_credentials")
    );
    assert_eq!(
        client
            .get_with_token("/api/x", BOB_TOKEN)
            .await
            .unwrap()
            .status,
        200
    );
}

/// Two independent issuers trusted (the test root, and the foreign CA as a
/// CN issuer); each rule bound to its own. Before `ca_file`, any trusted CA
/// could write a `spiffe://` URI SAN and become any ServiceAccount.
#[tokio::test]
async fn a_rule_maps_only_certificates_from_its_own_issuer() {
    let env = Env::start_with(|pki, y| {
        let both = pki.path().join("two-issuers.crt");
        let pem = |f: &std::path::Path| std::fs::read_to_string(f).unwrap();
        std::fs::write(&both, pem(&pki.ca_file) + &pem(&pki.foreign_file)).unwrap();
        y.tls_extra = format!("  client_ca_file: {}\n", both.display());
        y.identity = format!(
            "identity:\n  rules:\n    - {{spiffe: {{trust_domain: cluster.local}}, ca_file: {}}}\n    - {{common_name: {{}}, ca_file: {}}}\n",
            pki.ca_file.display(),
            pki.foreign_file.display()
        );
    })
    .await;
    let admin_svid = "spiffe://cluster.local/ns/monitoring/sa/prometheus";

    // The CN issuer writes a SPIFFE ID: the SPIFFE rule does not apply.
    let forged = ClientOpts::spiffe(admin_svid).signer(Signer::Foreign);
    let r = env
        .cert_client("forged", &forged)
        .get("/api/metrics", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert!(
        String::from_utf8_lossy(&r.body).contains("cert_unmapped"),
        "{:?}",
        r.body
    );
    assert_eq!(env.upstream.count(), 0, "nothing forwarded");

    // A SPIFFE issuer's certificate naming a CN does not become that user.
    let cn_from_spiffe_ca = ClientOpts::cn("alice", &["dev"]).signer(Signer::Root);
    let r = env
        .cert_client("alice-root", &cn_from_spiffe_ca)
        .get("/api/pods", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert_eq!(env.upstream.count(), 0, "nothing forwarded");

    // Each issuer's own names map.
    let svid = ClientOpts::spiffe(admin_svid).signer(Signer::Root);
    let r = env
        .cert_client("prom", &svid)
        .get("/api/metrics", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        env.upstream.last().all("x-remote-user"),
        ["system:serviceaccount:monitoring:prometheus"]
    );
    let alice = ClientOpts::cn("alice", &["dev"]).signer(Signer::Foreign);
    let r = env
        .cert_client("alice", &alice)
        .get("/api/pods", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(env.upstream.last().all("x-remote-user"), ["alice"]);
}

/// A bundle of two independent issuers with a rule that names no
/// `ca_file` does not load: the error names the rule and the fix.
#[tokio::test]
async fn two_issuers_and_an_unbound_rule_do_not_load() {
    install_crypto_provider();
    let pki = Pki::new();
    let both = pki.path().join("two-issuers.crt");
    let pem = |f: &std::path::Path| std::fs::read_to_string(f).unwrap();
    std::fs::write(&both, pem(&pki.ca_file) + &pem(&pki.foreign_file)).unwrap();
    let mut y = Yaml::new(&pki, "127.0.0.1:9".parse().unwrap());
    y.tls_extra = format!("  client_ca_file: {}\n", both.display());
    y.identity = format!(
        "identity:\n  rules:\n    - {{spiffe: {{trust_domain: cluster.local}}, ca_file: {}}}\n    - common_name: {{}}\n",
        pki.ca_file.display()
    );
    let config = authgate::config::Config::from_yaml(&y.render()).unwrap();
    let err = authgate::app::App::build(&config)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("identity.rules[1]"), "{err}");
    assert!(err.contains("ca_file"), "{err}");
    assert!(err.contains("2 issuers"), "{err}");

    // The root with its own intermediate is one issuer: no ca_file needed.
    let mut y = Yaml::new(&pki, "127.0.0.1:9".parse().unwrap());
    y.tls_extra = format!("  client_ca_file: {}\n", pki.bundle_file.display());
    let config = authgate::config::Config::from_yaml(&y.render()).unwrap();
    assert!(authgate::app::App::build(&config).await.is_ok());
}
