//! `mode: auth`: the same admission, answered to the front proxy.

use super::*;

const AUTH_MODE: &str = "mode: auth\nauth:\n  path: /auth\n  trusted_proxies: [\"192.0.2.7\"]\nroutes:\n  - {path_prefix: /}\n";

fn check(original: &str, headers: &[(&str, &str)]) -> Request<Empty<Bytes>> {
    let mut h = vec![("x-original-method", "GET"), ("x-original-uri", original)];
    h.extend_from_slice(headers);
    get("/auth", &h)
}

#[tokio::test]
async fn an_allowed_check_answers_200_with_the_identity_headers_and_forwards_nothing() {
    let s = Setup::new();
    let h = s.gate(AUTH_MODE);
    let r = h
        .send(
            &h.anonymous(),
            check("/api/x", &[("authorization", &bearer(BOB))]),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-remote-user"], "bob");
    assert_eq!(r.headers["x-remote-uid"], "1001");
    h.nothing_forwarded();
    // The checked request is what is authorized: bob may not see /admin.
    let r = h
        .send(
            &h.anonymous(),
            check("/admin", &[("authorization", &bearer(BOB))]),
        )
        .await;
    assert_eq!(r.status_reason(), (403, "forbidden".into()));
}

#[tokio::test]
async fn a_check_carrying_identity_headers_is_refused_as_spoofed() {
    let s = Setup::new();
    let h = s.gate(AUTH_MODE);
    for forged in ["X-Remote-User", "impersonate-user", "X-Remote-Extra-A"] {
        let r = h
            .send(
                &h.anonymous(),
                check(
                    "/api/x",
                    &[("authorization", &bearer(BOB)), (forged, "root")],
                ),
            )
            .await;
        assert_eq!(
            r.status_reason(),
            (403, "spoofed_identity".into()),
            "{forged}"
        );
    }
}

/// Method-override and URL-rewrite headers: no proxy adds them, the front
/// proxy forwards what the client sent, and an upstream that honours one
/// would act on another request than the one checked.
#[tokio::test]
async fn a_check_carrying_a_method_override_or_a_rewritten_url_is_refused() {
    let s = Setup::new();
    let h = s.gate(AUTH_MODE);
    let token = bearer(BOB);
    for (name, value) in [
        ("X-HTTP-Method-Override", "DELETE"),
        ("x-http-method", "DELETE"),
        ("X-Method-Override", "DELETE"),
        ("X-Original-URL", "/admin"),
        ("x-rewrite-url", "/admin"),
        ("x_http_method_override", "DELETE"),
        ("X_Original_URL", "/admin"),
    ] {
        // nginx-style and Envoy-style checks alike.
        for req in [
            check("/api/x", &[("authorization", &token), (name, value)]),
            get("/auth/api/x", &[("authorization", &token), (name, value)]),
        ] {
            let r = h.send(&h.anonymous(), req).await;
            assert_eq!(refused(&r), (403, "spoofed_identity".into()), "{name}");
        }
    }
    // What proxies set themselves is no reason to refuse.
    for (name, value) in [
        ("x-forwarded-for", "203.0.113.9"),
        ("x-forwarded-host", "k8s.example"),
        ("x-forwarded-proto", "https"),
        ("forwarded", "for=203.0.113.9;proto=https"),
        ("x-real-ip", "203.0.113.9"),
    ] {
        let r = h
            .send(
                &h.anonymous(),
                check("/api/x", &[("authorization", &token), (name, value)]),
            )
            .await;
        assert_eq!(r.status, 200, "{name}");
        assert_eq!(r.headers["x-remote-user"], "bob");
    }
    h.nothing_forwarded();
}

/// nginx always sends X-Original-URI; a check of the endpoint itself
/// without it names no request, and is not answered as a check of `/`.
#[tokio::test]
async fn a_check_of_the_endpoint_without_x_original_uri_is_a_bad_request() {
    let s = Setup::new();
    let public_root = format!("{AUTH_MODE}paths:\n  unauthenticated: [/]\n");
    for config in [AUTH_MODE, AUTH_UNTRUSTED, public_root.as_str()] {
        let h = s.gate(config);
        let token = bearer(BOB);
        for headers in [
            vec![("authorization", token.as_str())],
            vec![("x-original-method", "GET"), ("authorization", &token)],
            vec![],
        ] {
            let r = h.send(&h.anonymous(), get("/auth", &headers)).await;
            assert_eq!(
                refused(&r),
                (400, "bad_request".into()),
                "{config}: {headers:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_forwarded_certificate_counts_only_when_it_verifies() {
    let s = Setup::new();
    let h = s.gate(AUTH_MODE);
    let r = h
        .send(
            &h.anonymous(),
            check("/api/x", &[("x-client-cert", "not%20a%20cert")]),
        )
        .await;
    assert_eq!(r.status_reason(), (401, "cert_refused".into()));
    // A certificate from a CA the bundle does not hold.
    let other = Setup::new();
    let stranger = other.cert("mallory", Some("alice"), &["ops"], &[]);
    let escaped = escaped_pem(&stranger);
    let r = h
        .send(
            &h.anonymous(),
            check("/admin", &[("x-client-cert", &escaped)]),
        )
        .await;
    assert_eq!(r.status_reason(), (401, "cert_refused".into()));
    // One from the bundle's CA maps to its identity.
    let alice = s.cert("alice", Some("alice"), &["ops"], &[]);
    let r = h
        .send(
            &h.anonymous(),
            check("/admin", &[("x-client-cert", &escaped_pem(&alice))]),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-remote-user"], "alice");
}

#[tokio::test]
async fn a_check_for_another_path_is_no_route() {
    let s = Setup::new();
    let h = s.gate(AUTH_MODE);
    let r = h
        .send(
            &h.anonymous(),
            get("/other", &[("authorization", &bearer(BOB))]),
        )
        .await;
    assert_eq!(r.status_reason(), (404, "no_route".into()));
}

/// The nginx `$ssl_client_escaped_cert` form of a DER certificate.
fn escaped_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    percent_encoding::utf8_percent_encode(&pem, percent_encoding::NON_ALPHANUMERIC).to_string()
}

// === XFCC from Envoy ===

/// A refusal, asserted first as "no identity was answered".
fn refused(r: &Got) -> (u16, String) {
    assert!(
        r.status != 200 && r.headers.get("x-remote-user").is_none(),
        "got through: {} as {:?}",
        r.status,
        r.headers.get("x-remote-user")
    );
    r.status_reason()
}

/// Behind Envoy: the certificate arrives in `X-Forwarded-Client-Cert`.
const AUTH_ENVOY: &str = "mode: auth\nauth:\n  path: /auth\n  trusted_proxies: [\"192.0.2.7\"]\n  cert_header: X-Forwarded-Client-Cert\nroutes:\n  - {path_prefix: /}\n";

/// The `X-Forwarded-Client-Cert` Envoy (`SANITIZE_SET`) writes for the
/// client certificate `der` with URI SANs `uris`, byte for byte as its
/// `mutateXfccRequestHeader` does: `Hash=<hex sha256>`, then (`cert: true`)
/// `Cert="<URL-escaped PEM>"`, `Subject="<DN>"`, and every URI SAN
/// *unquoted*: `URI=<san>`.
fn envoy_xfcc(der: &[u8], with_cert: bool, subject: &str, uris: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut parts = vec![format!("Hash={}", hex::encode(Sha256::digest(der)))];
    if with_cert {
        parts.push(format!("Cert=\"{}\"", escaped_pem(der)));
    }
    parts.push(format!("Subject=\"{subject}\""));
    parts.extend(uris.iter().map(|u| format!("URI={u}")));
    parts.join(";")
}

#[tokio::test]
async fn an_envoy_xfcc_certificate_maps_to_its_identity() {
    let s = Setup::new();
    let h = s.gate(AUTH_ENVOY);
    let alice = s.cert(
        "alice",
        Some("alice"),
        &["ops"],
        &["https://alice.example/a=b"],
    );
    let xfcc = envoy_xfcc(
        &alice,
        true,
        "CN=alice,O=ops",
        &["https://alice.example/a=b"],
    );
    let r = h
        .send(
            &h.anonymous(),
            get("/auth/admin", &[("x-forwarded-client-cert", &xfcc)]),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-remote-user"], "alice");
    // Envoy without `cert: true`: no certificate, so no certificate identity.
    let xfcc = envoy_xfcc(&alice, false, "CN=alice,O=ops", &[]);
    let r = h
        .send(
            &h.anonymous(),
            get("/auth/admin", &[("x-forwarded-client-cert", &xfcc)]),
        )
        .await;
    assert_eq!(r.status_reason(), (401, "missing_credentials".into()));
    h.nothing_forwarded();
}

/// Mallory's CA-issued certificate has a URI SAN that, written unquoted by
/// Envoy, smuggles alice's (public) certificate into the header: as an
/// element of its own after a `,`, or as a second `Cert` after a `;`.
#[tokio::test]
async fn a_uri_san_smuggling_another_certificate_into_xfcc_is_refused() {
    use sha2::{Digest, Sha256};
    let s = Setup::new();
    let h = s.gate(AUTH_ENVOY);
    let alice = s.cert("alice", Some("alice"), &["ops"], &[]);
    let stolen = escaped_pem(&alice);
    let alice_hash = hex::encode(Sha256::digest(&alice));
    let sans = [
        format!("urn:x,Cert={stolen}"),
        format!("urn:x,Cert=\"{stolen}\""),
        format!("urn:x;Cert={stolen}"),
        format!("urn:x,Hash={alice_hash};Cert=\"{stolen}\""),
        format!("urn:x;Hash={alice_hash};Cert={stolen}"),
        format!("\"urn:x\";Cert=\"{stolen}\""),
    ];
    for (i, san) in sans.iter().enumerate() {
        let mallory = s.cert(&format!("mallory{i}"), Some("mallory"), &["dev"], &[san]);
        for with_cert in [true, false] {
            let xfcc = envoy_xfcc(&mallory, with_cert, "CN=mallory,O=dev", &[san]);
            let r = h
                .send(
                    &h.anonymous(),
                    get("/auth/admin", &[("x-forwarded-client-cert", &xfcc)]),
                )
                .await;
            assert_eq!(
                refused(&r),
                (401, "cert_refused".into()),
                "SAN #{i}, cert: {with_cert}"
            );
        }
    }
    h.nothing_forwarded();
}

#[tokio::test]
async fn an_xfcc_whose_hash_is_not_its_certificates_is_refused() {
    use sha2::{Digest, Sha256};
    let s = Setup::new();
    let h = s.gate(AUTH_ENVOY);
    let alice = s.cert("alice", Some("alice"), &["ops"], &[]);
    let bob = s.cert("bob", Some("bob"), &["dev"], &[]);
    let cert = escaped_pem(&alice);
    let bob_hash = hex::encode(Sha256::digest(&bob));
    for xfcc in [
        format!("Hash={bob_hash};Cert=\"{cert}\""),
        format!("Cert=\"{cert}\""),
        format!("Hash={bob_hash};Cert=\"{cert}\",Hash={bob_hash}"),
    ] {
        let r = h
            .send(
                &h.anonymous(),
                get("/auth/admin", &[("x-forwarded-client-cert", &xfcc)]),
            )
            .await;
        assert_eq!(refused(&r), (401, "cert_refused".into()), "{xfcc}");
    }
}

// === X-Original-* only from trusted proxies, and never below auth.path ===

/// AUTH_MODE with a trusted proxy that is not the harness's peer.
const AUTH_UNTRUSTED: &str = "mode: auth\nauth:\n  path: /auth\n  trusted_proxies: [\"198.51.100.1\"]\nroutes:\n  - {path_prefix: /}\n";

#[tokio::test]
async fn original_headers_from_an_untrusted_peer_are_refused_not_believed() {
    let s = Setup::new();
    let h = s.gate(AUTH_UNTRUSTED);
    let token = bearer(BOB);
    for headers in [
        vec![
            ("x-original-uri", "/api/x"),
            ("authorization", token.as_str()),
        ],
        vec![
            ("x-original-method", "GET"),
            ("authorization", token.as_str()),
        ],
    ] {
        let r = h.send(&h.anonymous(), get("/auth", &headers)).await;
        assert_eq!(refused(&r), (400, "bad_request".into()), "{headers:?}");
    }
    // The same peer's Envoy-style check names its path itself.
    let r = h
        .send(
            &h.anonymous(),
            get("/auth/api/x", &[("authorization", token.as_str())]),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-remote-user"], "bob");
    h.nothing_forwarded();
}

#[tokio::test]
async fn an_envoy_style_check_never_takes_the_original_headers() {
    let s = Setup::new();
    let h = s.gate(AUTH_MODE);
    let token = bearer(BOB);
    // Envoy checks /admin, which bob may not see; a client-sent
    // X-Original-URI (passed on by a permissive `allowed_headers`) names
    // /api/x, which he may. Even from the trusted proxy it is not believed.
    for headers in [
        vec![
            ("x-original-uri", "/api/x"),
            ("authorization", token.as_str()),
        ],
        vec![
            ("x-original-method", "GET"),
            ("authorization", token.as_str()),
        ],
    ] {
        let r = h.send(&h.anonymous(), get("/auth/admin", &headers)).await;
        assert_eq!(refused(&r), (400, "bad_request".into()), "{headers:?}");
    }
    // nginx-style from the trusted proxy still works.
    let r = h
        .send(
            &h.anonymous(),
            check("/api/x", &[("authorization", &token)]),
        )
        .await;
    assert_eq!(r.status, 200);
    h.nothing_forwarded();
}

// === The shipped front-proxy snippets ===

/// Headers a client sends to be taken for a verified certificate (the
/// prefixes authgate's proxy mode strips, by their usual names).
const CLIENT_CERT_HEADERS: &[&str] = &[
    "X-Client-Cert",
    "X-Forwarded-Client-Cert",
    "Client-Cert",
    "Client-Cert-Chain",
    "SSL-Client-Cert",
    "SSL-Client-Verify",
    "X-SSL-Client-Cert",
    "X-SSL-Client-Verify",
];

/// The headers proxy mode strips as steering (`STEERING` in
/// src/proxy/headers.rs): method overrides, rewritten URLs, client-address
/// and forwarding claims.
const STEERING_HEADERS: &[&str] = &[
    "X-HTTP-Method-Override",
    "X-HTTP-Method",
    "X-Method-Override",
    "X-Original-URL",
    "X-Original-URI",
    "X-Original-Method",
    "X-Rewrite-URL",
    "Forwarded",
    "X-Real-IP",
    "X-Client-IP",
    "True-Client-IP",
    "X-Forwarded-Host",
    "X-Forwarded-Proto",
    "X-Forwarded-Prefix",
    "X-Forwarded-Port",
    "X-Forwarded-Server",
];

/// Those of them authgate refuses on a check
/// ([`crate::gate::auth_request::steering`]).
const REFUSED_ON_A_CHECK: &[&str] = &[
    "X-HTTP-Method-Override",
    "X-HTTP-Method",
    "X-Method-Override",
    "X-Original-URL",
    "X-Rewrite-URL",
];

#[test]
fn the_header_lists_here_are_what_proxy_mode_strips_and_auth_mode_refuses() {
    use http::HeaderName;
    for name in REFUSED_ON_A_CHECK {
        assert!(STEERING_HEADERS.contains(name), "{name}");
        let mut h = HeaderMap::new();
        h.insert(HeaderName::try_from(*name).unwrap(), "x".parse().unwrap());
        assert!(crate::gate::auth_request::steering(&h).is_some(), "{name}");
    }
    for name in STEERING_HEADERS
        .iter()
        .filter(|n| !REFUSED_ON_A_CHECK.contains(n))
    {
        let mut h = HeaderMap::new();
        h.insert(HeaderName::try_from(*name).unwrap(), "x".parse().unwrap());
        assert!(crate::gate::auth_request::steering(&h).is_none(), "{name}");
    }
}

#[tokio::test]
async fn proxy_mode_strips_the_header_lists_here() {
    let s = Setup::new();
    let h = s.gate("");
    let token = bearer(BOB);
    let mut headers = vec![("authorization", token.as_str())];
    headers.extend(STEERING_HEADERS.iter().map(|n| (*n, "spoofed")));
    headers.extend(CLIENT_CERT_HEADERS.iter().map(|n| (*n, "spoofed")));
    let r = h.send(&h.anonymous(), get("/api/x", &headers)).await;
    assert_eq!(r.status, 200);
    let seen = h.only_seen();
    for name in STEERING_HEADERS.iter().chain(CLIENT_CERT_HEADERS) {
        assert!(
            seen.all(name).iter().all(|v| *v != "spoofed"),
            "{name} reached the upstream in proxy mode"
        );
    }
}

/// `deploy/auth-request/envoy.yaml`, parsed.
fn shipped_envoy() -> serde_json::Value {
    serde_saphyr::from_str(include_str!("../../../deploy/auth-request/envoy.yaml")).unwrap()
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_ascii_lowercase))
        .collect()
}

#[test]
fn the_shipped_envoy_config_sends_the_token_to_authgate_and_not_upstream() {
    let envoy = shipped_envoy();
    let filters = envoy["http_filters"].as_array().unwrap();
    let names: Vec<_> = filters
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["envoy.filters.http.ext_authz", "envoy.filters.http.router"],
        "ext_authz runs before the router"
    );
    let authz = &filters[0]["typed_config"];
    assert_eq!(authz["failure_mode_allow"], false);
    let to_authgate = authz["http_service"]["authorization_request"]["allowed_headers"]["patterns"]
        .as_array()
        .unwrap();
    assert!(
        to_authgate
            .iter()
            .any(|p| p["exact"].as_str() == Some("authorization")),
        "authgate must see the token"
    );
    // One element per request, which is all authgate accepts.
    assert_eq!(envoy["forward_client_cert_details"], "SANITIZE_SET");

    // The router removes it on the way to the upstream (after ext_authz),
    // for every route of the route configuration, and nothing adds it back.
    let routes = &envoy["route_config"];
    assert!(
        strings(&routes["request_headers_to_remove"]).contains(&"authorization".to_owned()),
        "route_config.request_headers_to_remove must hold authorization"
    );
    let hosts = routes["virtual_hosts"].as_array().unwrap();
    assert!(!hosts.is_empty());
    let adds_token = |v: &serde_json::Value| {
        v["request_headers_to_add"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|h| {
                h["header"]["key"].as_str().map(str::to_ascii_lowercase)
                    == Some("authorization".into())
            })
    };
    assert!(!adds_token(routes));
    for host in hosts {
        assert!(!adds_token(host));
        for route in host["routes"].as_array().unwrap() {
            assert!(!adds_token(route));
        }
    }
    // Identity headers come only from authgate's answer.
    let upstream =
        authz["http_service"]["authorization_response"]["allowed_upstream_headers"]["patterns"]
            .as_array()
            .unwrap();
    assert!(
        !upstream
            .iter()
            .any(|p| p["exact"].as_str() == Some("authorization"))
    );

    // What proxy mode strips does not reach the upstream either: Envoy
    // rewrites X-Forwarded-Client-Cert (SANITIZE_SET) and, at the edge
    // (use_remote_address), X-Forwarded-Proto; the router removes the rest.
    assert_eq!(envoy["use_remote_address"], true);
    let removed = strings(&routes["request_headers_to_remove"]);
    for name in STEERING_HEADERS.iter().chain(CLIENT_CERT_HEADERS) {
        let name = name.to_ascii_lowercase();
        if name == "x-forwarded-client-cert" || name == "x-forwarded-proto" {
            assert!(!removed.contains(&name), "Envoy sets {name} itself");
        } else {
            assert!(
                removed.contains(&name),
                "route_config.request_headers_to_remove must hold {name}"
            );
        }
    }
    // And the ones authgate refuses reach it, so that it does.
    for name in REFUSED_ON_A_CHECK {
        let name = name.to_ascii_lowercase();
        assert!(
            to_authgate
                .iter()
                .any(|p| p["exact"].as_str() == Some(name.as_str())),
            "allowed_headers must pass {name} to authgate"
        );
    }
}

/// The body of the nginx block that opens with `head {`, comments removed
/// and whitespace collapsed.
fn nginx_block(conf: &str, head: &str) -> String {
    let text: String = conf
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join(" ");
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let start = text.find(&format!("{head} {{")).unwrap() + head.len() + 2;
    let mut depth = 1;
    for (i, c) in text[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        if depth == 0 {
            return text[start..start + i].to_owned();
        }
    }
    panic!("unterminated block {head}");
}

#[test]
fn the_shipped_nginx_config_sends_the_token_to_authgate_and_not_upstream() {
    let conf = include_str!("../../../deploy/auth-request/nginx.conf");
    let upstream = nginx_block(conf, "location /");
    assert!(upstream.contains("proxy_pass @UPSTREAM@;"));
    assert!(
        upstream.contains("proxy_set_header Authorization \"\";"),
        "nginx must not pass the token upstream: {upstream}"
    );
    let check = nginx_block(conf, "location = /_authgate");
    assert!(check.contains("proxy_pass @AUTHGATE@/auth;"));
    // The subrequest carries the client's headers, the token included.
    assert!(
        !check
            .to_ascii_lowercase()
            .contains("proxy_set_header authorization")
    );
    assert!(!check.contains("proxy_pass_request_headers off"));
    assert!(check.contains("proxy_set_header X-Original-URI $request_uri;"));

    // What proxy mode strips, nginx blanks towards the upstream (an empty
    // value is not sent), and sets nowhere else in the block.
    let lower = upstream.to_ascii_lowercase();
    for name in STEERING_HEADERS.iter().chain(CLIENT_CERT_HEADERS) {
        let name = name.to_ascii_lowercase();
        let set = format!("proxy_set_header {name} ");
        assert_eq!(
            lower.matches(&set).count(),
            1,
            "location / must set {name} once: {upstream}"
        );
        assert!(
            lower.contains(&format!("{set}\"\";")),
            "location / must blank {name}: {upstream}"
        );
    }
}
