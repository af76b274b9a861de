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
