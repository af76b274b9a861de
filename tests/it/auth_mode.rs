//! `mode: auth` over real TLS, driven the way nginx `auth_request` and Envoy
//! `ext_authz` drive it: original method/URI in headers or below the endpoint
//! path, the client certificate forwarded in a header, believed only from a
//! trusted proxy and only when it verifies.

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use testkit::*;

async fn auth_env(trusted: &str) -> Env {
    auth_env_with(trusted, "X-Client-Cert").await
}

async fn auth_env_with(trusted: &str, cert_header: &str) -> Env {
    Env::start(|y| {
        y.routes = String::new();
        y.rest = format!(
            "mode: auth\nauth:\n  trusted_proxies: [\"{trusted}\"]\n  cert_header: {cert_header}\nheaders:\n  group_separator: \",\"\n"
        );
    })
    .await
}

/// The certificate as nginx's `$ssl_client_escaped_cert` carries it.
fn escaped(cert: &ClientCert) -> String {
    let pem = std::fs::read_to_string(&cert.cert_file).expect("certificate file");
    utf8_percent_encode(&pem, NON_ALPHANUMERIC).to_string()
}

/// The XFCC element Envoy (`SANITIZE_SET`, `cert: true`) writes for `cert`.
fn envoy_xfcc(cert: &ClientCert, subject: &str) -> String {
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(cert.chain[0].as_ref()));
    format!(
        "Hash={hash};Cert=\"{}\";Subject=\"{subject}\"",
        escaped(cert)
    )
}

fn nginx(method: &str, uri: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-original-method", method.to_owned()),
        ("x-original-uri", uri.to_owned()),
    ]
}

async fn check(client: &Client, path: &str, headers: &[(&str, String)]) -> Resp {
    let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    client.get(path, &h).await.expect("response")
}

#[tokio::test]
async fn tokens_are_checked_against_the_original_method_and_uri() {
    let env = auth_env("127.0.0.1").await;
    let c = env.client();
    let bearer = |t: &str| ("authorization", format!("Bearer {t}"));

    let mut h = nginx("GET", "/api/pods?watch=1");
    h.push(bearer(BOB_TOKEN));
    let r = check(&c, "/auth", &h).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.headers["x-remote-user"], "bob");
    assert_eq!(r.headers["x-remote-group"], "dev,system:authenticated");
    assert_eq!(r.headers["x-remote-uid"], "1001");

    // dev may get and create under /api, not delete; nothing outside /api.
    for (method, uri, status, reason) in [
        ("POST", "/api/pods", 200, ""),
        ("DELETE", "/api/pods", 403, "forbidden"),
        ("GET", "/admin", 403, "forbidden"),
        ("GET", "/api/../admin", 403, "forbidden"),
    ] {
        let mut h = nginx(method, uri);
        h.push(bearer(BOB_TOKEN));
        let r = check(&c, "/auth", &h).await;
        assert_eq!(r.status, status, "{method} {uri}: {:?}", r.body);
        if status != 200 {
            assert_eq!(r.reason(), reason);
            assert!(r.headers.get("x-remote-user").is_none());
        }
    }
    let mut h = nginx("GET", "/api/x");
    h.push(bearer("nobody-knows-this"));
    let r = check(&c, "/auth", &h).await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (401, "token_rejected")
    );
    let r = check(&c, "/auth", &nginx("GET", "/api/x")).await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (401, "missing_credentials")
    );

    // Not the endpoint, or an unusable original request.
    let r = check(&c, "/other", &[bearer(BOB_TOKEN)]).await;
    assert_eq!((r.status.as_u16(), r.reason().as_str()), (404, "no_route"));
    let mut h = nginx("GET", "api-without-slash");
    h.push(bearer(BOB_TOKEN));
    let r = check(&c, "/auth", &h).await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (400, "bad_request")
    );
}

#[tokio::test]
async fn a_forwarded_certificate_counts_from_a_trusted_proxy_once_verified() {
    let env = auth_env("127.0.0.1/32").await;
    let alice = env.pki.client("alice", &ClientOpts::cn("alice", &["dev"]));
    let mut h = nginx("GET", "/api/x");
    h.push(("x-client-cert", escaped(&alice)));
    let r = check(&env.client(), "/auth", &h).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.headers["x-remote-user"], "alice");
    assert!(
        r.headers["x-remote-extra-authentication.kubernetes.io%2fcredential-id"]
            .to_str()
            .unwrap()
            .starts_with("X509SHA256=")
    );

    // Only the configured header is read: an XFCC that a client sent
    // through nginx is not a certificate.
    let xfcc = format!("Hash=00;Cert=\"{}\";Subject=\"CN=alice\"", escaped(&alice));
    let mut h = nginx("GET", "/api/x");
    h.push(("x-forwarded-client-cert", xfcc.clone()));
    let r = check(&env.client(), "/auth", &h).await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (401, "missing_credentials")
    );

    // A certificate from another CA, an expired one and junk are refused,
    // never read as "no certificate".
    let rogue = env.pki.client(
        "rogue",
        &ClientOpts::cn("alice", &["ops"]).signer(Signer::Foreign),
    );
    let expired = env.pki.client(
        "old",
        &ClientOpts::cn("alice", &["ops"]).validity(Validity::Expired),
    );
    for (name, value) in [
        ("rogue", escaped(&rogue)),
        ("expired", escaped(&expired)),
        ("junk", "-----BEGIN%20CERTIFICATE-----%0Azzz".to_owned()),
    ] {
        let mut h = nginx("GET", "/api/x");
        h.push(("x-client-cert", value));
        h.push(("authorization", format!("Bearer {BOB_TOKEN}")));
        let r = check(&env.client(), "/auth", &h).await;
        assert_eq!(
            (r.status.as_u16(), r.reason().as_str()),
            (401, "cert_refused"),
            "{name}: {:?}",
            r.body
        );
    }
}

#[tokio::test]
async fn an_untrusted_peer_cannot_forward_a_certificate_nor_use_its_own() {
    // Only 10.9.9.9 is a trusted proxy; the test client is 127.0.0.1.
    let env = auth_env("10.9.9.9").await;
    let alice = env.pki.client("alice", &ClientOpts::cn("alice", &["dev"]));
    // nginx-style: X-Original-* from an untrusted peer are refused outright,
    // so it cannot choose the path that is checked either.
    let mut h = nginx("GET", "/api/x");
    h.push(("x-client-cert", escaped(&alice)));
    let r = check(&env.client(), "/auth", &h).await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (400, "bad_request")
    );
    // Envoy-style (the path below the endpoint): the certificate header of
    // an untrusted peer is ignored.
    let cert = [("x-client-cert", escaped(&alice))];
    let r = check(&env.client(), "/auth/api/x", &cert).await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (401, "missing_credentials")
    );
    // The connection's own certificate is the proxy's, not the client's.
    let r = check(&env.client().with_cert(&alice), "/auth/api/x", &[]).await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (401, "missing_credentials")
    );
    // A token still works from anyone.
    let token = [("authorization", format!("Bearer {BOB_TOKEN}"))];
    let r = check(&env.client(), "/auth/api/x", &token).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-remote-user"], "bob");
}

#[tokio::test]
async fn envoy_ext_authz_sends_the_path_below_the_endpoint_and_the_certificate_in_xfcc() {
    // cert_header: X-Forwarded-Client-Cert; the original path below the
    // endpoint, the method as sent.
    let envoy = auth_env_with("127.0.0.1", "X-Forwarded-Client-Cert").await;
    let alice = envoy
        .pki
        .client("alice", &ClientOpts::cn("alice", &["dev"]));
    let xfcc = envoy_xfcc(&alice, "CN=alice");
    let r = check(
        &envoy.client(),
        "/auth/api/x",
        &[("x-forwarded-client-cert", xfcc.clone())],
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.headers["x-remote-user"], "alice");
    let r = check(
        &envoy.client(),
        "/auth/admin",
        &[("x-forwarded-client-cert", xfcc.clone())],
    )
    .await;
    assert_eq!((r.status.as_u16(), r.reason().as_str()), (403, "forbidden"));
    // `..` in the original path cannot climb into the endpoint.
    let r = check(
        &envoy.client(),
        "/auth/../auth/admin",
        &[("x-forwarded-client-cert", xfcc)],
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (400, "bad_request")
    );
}
