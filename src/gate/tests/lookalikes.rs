//! Step 2, items 5 and 6: header names an upstream folds into identity
//! headers, request-steering headers, and `;` path parameters.

use super::*;

#[tokio::test]
async fn underscore_spellings_of_identity_headers_never_reach_the_upstream() {
    let s = Setup::new();
    let h = s.gate("headers:\n  user: X-Auth-User\n");
    let forged = [
        ("X_Remote_User", "root"),
        ("x_remote_group", "system:masters"),
        ("X-Remote_Extra-Scopes", "all"),
        ("Impersonate_User", "root"),
        ("x_forwarded_client_cert", "Hash=00"),
        ("SSL_Client_Verify", "SUCCESS"),
        ("X_Auth_User", "root"),
        ("authorization_", "x"),
    ];
    let mut headers = forged.to_vec();
    let token = bearer(BOB);
    headers.push(("authorization", &token));
    let r = h.send(&h.anonymous(), get("/api/x", &headers)).await;
    assert_eq!(r.status, 200);
    let seen = h.only_seen();
    for (name, _) in forged.iter().filter(|(n, _)| *n != "authorization_") {
        assert_eq!(seen.header(name), None, "{name} reached the upstream");
    }
    assert_eq!(seen.all("x-auth-user"), ["bob"]);
    assert!(
        !seen
            .headers
            .values()
            .any(|v| v == "root" || v == "system:masters"),
        "{:?}",
        seen.headers
    );
}

#[tokio::test]
async fn steering_headers_are_stripped_unless_turned_off() {
    const STEERING: [(&str, &str); 8] = [
        ("X-HTTP-Method-Override", "DELETE"),
        ("X-Method-Override", "DELETE"),
        ("x_http_method_override", "DELETE"),
        ("X-Original-URL", "/admin"),
        ("X-Rewrite-URL", "/admin"),
        ("Forwarded", "for=10.0.0.1;host=internal"),
        ("X-Real-IP", "10.0.0.1"),
        ("X-Forwarded-Prefix", "/admin"),
    ];
    let token = bearer(BOB);
    let mut headers = STEERING.to_vec();
    headers.push(("authorization", &token));
    let s = Setup::new();
    let h = s.gate("");
    let r = h.send(&h.anonymous(), get("/api/x", &headers)).await;
    assert_eq!(r.status, 200);
    let seen = h.only_seen();
    for (name, _) in STEERING {
        assert_eq!(seen.header(name), None, "{name} reached the upstream");
    }
    // Opted out: they pass, identity headers are still authgate's own.
    let h = s.gate("headers:\n  strip_steering: false\n");
    let r = h.send(&h.anonymous(), get("/api/x", &headers)).await;
    assert_eq!(r.status, 200);
    let seen = h.only_seen();
    assert_eq!(seen.header("x-http-method-override"), Some("DELETE"));
    assert_eq!(seen.header("forwarded"), Some("for=10.0.0.1;host=internal"));
    assert_eq!(seen.all("x-remote-user"), ["bob"]);
}

#[tokio::test]
async fn auth_mode_refuses_underscore_spellings_like_the_originals() {
    let s = Setup::new();
    let h = s.gate(
        "mode: auth\nauth:\n  path: /auth\n  trusted_proxies: [\"192.0.2.7\"]\nroutes:\n  - {path_prefix: /}\n",
    );
    for forged in [
        "x_remote_user",
        "X_Remote_Group",
        "impersonate_user",
        "X-Remote_Extra-A",
    ] {
        let r = h
            .send(
                &h.anonymous(),
                get(
                    "/auth",
                    &[
                        ("x-original-method", "GET"),
                        ("x-original-uri", "/api/x"),
                        ("authorization", &bearer(BOB)),
                        (forged, "root"),
                    ],
                ),
            )
            .await;
        assert_eq!(
            r.status_reason(),
            (403, "spoofed_identity".into()),
            "{forged}"
        );
        assert!(r.headers.get("x-remote-user").is_none());
    }
}

/// `/admin` is for certificates only, `/` takes tokens: the attack is to
/// reach `/admin` with a token by hiding the prefix behind a parameter.
const SPLIT_ROUTES: &str = "routes:\n  - {path_prefix: /, upstream: \"http://127.0.0.1:9\"}\n  - {path_prefix: /admin, upstream: \"http://127.0.0.1:10\", auth: {methods: [mtls]}}\n";

#[tokio::test]
async fn path_parameters_are_refused_so_no_route_is_bypassed() {
    let s = Setup::new();
    let h = s.gate(SPLIT_ROUTES);
    let token = bearer(BOB);
    for path in [
        "/admin;jsessionid=1/secret",
        "/admin;/secret",
        "/api/..;/admin/secret",
        "/x;a=b",
    ] {
        let r = h
            .send(&h.anonymous(), get(path, &[("authorization", &token)]))
            .await;
        assert_eq!(r.status_reason(), (400, "bad_request".into()), "{path}");
        assert!(r.message().contains("';' parameters"), "{}", r.message());
    }
    h.nothing_forwarded();
    // An escaped ';' is an ordinary character.
    let r = h
        .send(
            &h.anonymous(),
            get("/api/a%3Bb", &[("authorization", &token)]),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(h.only_seen().path_and_query, "/api/a%3Bb");
}

#[tokio::test]
async fn allowed_path_parameters_are_removed_before_routing_and_forwarding() {
    let s = Setup::new();
    let h = s.gate(&format!(
        "{SPLIT_ROUTES}paths:\n  allow_matrix_params: true\n"
    ));
    let token = bearer(BOB);
    // Routed as /admin/secret: the mTLS-only route refuses the token.
    let r = h
        .send(
            &h.anonymous(),
            get("/admin;jsessionid=1/secret", &[("authorization", &token)]),
        )
        .await;
    assert_eq!(r.status_reason(), (401, "token_forbidden".into()));
    h.nothing_forwarded();
    // With an ops certificate it is served, as the path that was authorized.
    let alice = s.cert("alice", Some("alice"), &["ops"], &[]);
    let r = h
        .send(
            &h.with_cert(&alice),
            get("/admin;jsessionid=1/secret?x=1", &[]),
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = h.only_seen();
    assert_eq!(seen.route, RouteId::new(1));
    assert_eq!(seen.path_and_query, "/admin/secret?x=1");
}
