//! Route selection, the order of authentication, the migration policy and
//! authorization, through the whole pipeline.

use super::*;

#[tokio::test]
async fn the_longest_route_prefix_wins_and_sees_the_normalised_path() {
    let s = Setup::new();
    let h = s.gate(
        "routes:\n  - {path_prefix: /, upstream: \"http://127.0.0.1:9\"}\n  - {path_prefix: /api, upstream: \"http://127.0.0.1:10\"}\n  - {path_prefix: /api/v2, upstream: \"http://127.0.0.1:11\"}\n",
    );
    let auth = bearer(BOB);
    for (path, route, forwarded) in [
        ("/api/v2/x?q=1", 2, "/api/v2/x?q=1"),
        ("/api/v2", 2, "/api/v2"),
        ("/api/v20", 1, "/api/v20"),
        ("/api/./v2/../x", 1, "/api/x"),
        ("/api//x", 1, "/api/x"),
        ("/api/%61%62", 1, "/api/ab"),
    ] {
        let r = h
            .send(&h.anonymous(), get(path, &[("authorization", &auth)]))
            .await;
        assert_eq!(r.status, 200, "{path}");
        let seen = h.only_seen();
        assert_eq!(seen.route, RouteId::new(route), "{path}");
        assert_eq!(seen.path_and_query, forwarded, "{path}");
    }
}

#[tokio::test]
async fn a_certificate_wins_over_a_token_and_a_token_serves_without_one() {
    let s = Setup::new();
    let h = s.gate("");
    let alice = s.cert("alice", Some("alice"), &["ops"], &[]);
    // Certificate and a token: the certificate's identity.
    let r = h
        .send(
            &h.with_cert(&alice),
            get("/admin/x", &[("authorization", &bearer(BOB))]),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(h.only_seen().header("x-remote-user"), Some("alice"));
    // No certificate: the token's.
    let r = h
        .send(
            &h.anonymous(),
            get("/api/x", &[("authorization", &bearer(BOB))]),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(h.only_seen().header("x-remote-user"), Some("bob"));
    // A certificate that maps to nobody falls back to the token.
    let nobody = s.cert("nobody", None, &[], &["https://example.test/x"]);
    let r = h
        .send(
            &h.with_cert(&nobody),
            get("/api/x", &[("authorization", &bearer(BOB))]),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(h.only_seen().header("x-remote-user"), Some("bob"));
}

#[tokio::test]
async fn a_spiffe_certificate_is_its_service_account() {
    let s = Setup::new();
    let h = s.gate("identity:\n  rules: [{spiffe: {trust_domain: cluster.local}}]\n");
    let prom = s.cert(
        "prom",
        None,
        &[],
        &["spiffe://cluster.local/ns/monitoring/sa/prom"],
    );
    let r = h.send(&h.with_cert(&prom), get("/api/metrics", &[])).await;
    assert_eq!(r.status, 200);
    let seen = h.only_seen();
    assert_eq!(
        seen.header("x-remote-user"),
        Some("system:serviceaccount:monitoring:prom")
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
async fn route_methods_choose_the_credential_read() {
    let s = Setup::new();
    let h = s.gate(
        "routes:\n  - {path_prefix: /api, upstream: \"http://127.0.0.1:9\", auth: {methods: [mtls]}}\n  - {path_prefix: /admin, upstream: \"http://127.0.0.1:9\", auth: {methods: [token]}}\n",
    );
    let alice = s.cert("alice", Some("alice"), &["dev", "ops"], &[]);
    // mTLS-only: the token is never read.
    let r = h
        .send(
            &h.anonymous(),
            get("/api/x", &[("authorization", &bearer(BOB))]),
        )
        .await;
    assert_eq!(r.status_reason(), (401, "token_forbidden".into()));
    let r = h.send(&h.with_cert(&alice), get("/api/x", &[])).await;
    assert_eq!(r.status, 200);
    assert_eq!(h.only_seen().header("x-remote-user"), Some("alice"));
    // Token-only: the certificate is passed over.
    let r = h.send(&h.with_cert(&alice), get("/admin/x", &[])).await;
    assert_eq!(r.status_reason(), (401, "cert_not_accepted".into()));
    h.nothing_forwarded();
}

#[tokio::test]
async fn a_pinned_identity_is_refused_with_a_token_and_served_with_its_certificate() {
    let s = Setup::new();
    let h = s.gate("migration:\n  mtls_required: [bob]\n");
    let r = h
        .send(
            &h.anonymous(),
            get("/api/x", &[("authorization", &bearer(BOB))]),
        )
        .await;
    assert_eq!(r.status_reason(), (401, "mtls_required".into()));
    assert!(
        r.message()
            .contains("bob must authenticate with a client certificate")
    );
    h.nothing_forwarded();
    let bob = s.cert("bob", Some("bob"), &["dev"], &[]);
    let r = h.send(&h.with_cert(&bob), get("/api/x", &[])).await;
    assert_eq!(r.status, 200);
    let report = h.gate.migration().tracker().report();
    let json = serde_json::to_value(&report).unwrap().to_string();
    assert!(json.contains("bob"), "{json}");
}

#[tokio::test]
async fn a_deprecated_token_is_served_with_a_warning() {
    let s = Setup::new();
    let h = s.gate(
        "routes:\n  - {path_prefix: /, upstream: \"http://127.0.0.1:9\", auth: {token: deprecated}}\n",
    );
    let r = h
        .send(
            &h.anonymous(),
            get("/api/x", &[("authorization", &bearer(BOB))]),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers["warning"],
        "299 authgate \"bearer token authentication is deprecated on this route; use a client certificate\""
    );
    h.only_seen();
    // A certificate on the same route gets no warning.
    let bob = s.cert("bob", Some("bob"), &["dev"], &[]);
    let r = h.send(&h.with_cert(&bob), get("/api/x", &[])).await;
    assert_eq!(r.status, 200);
    assert!(r.headers.get("warning").is_none());
}

#[tokio::test]
async fn authorization_decides_by_verb_and_path_for_both_credentials() {
    let s = Setup::new();
    let h = s.gate("");
    let alice = s.cert("alice", Some("alice"), &["dev"], &[]);
    let conn_cert = h.with_cert(&alice);
    let conn_token = h.anonymous();
    let token = bearer(BOB);
    for (method, path, want) in [
        (Method::GET, "/api/x", 200),
        (Method::HEAD, "/api/x", 200),
        (Method::POST, "/api/x", 200),
        (Method::DELETE, "/api/x", 403),
        (Method::GET, "/admin", 403),
        (Method::GET, "/apis", 403),
    ] {
        for (conn, headers) in [
            (&conn_cert, vec![]),
            (&conn_token, vec![("authorization", token.as_str())]),
        ] {
            let r = h.send(conn, request(method.clone(), path, &headers)).await;
            assert_eq!(r.status.as_u16(), want, "{method} {path}");
            let seen = h.seen();
            assert_eq!(seen.len(), usize::from(want == 200), "{method} {path}");
            if let Some(s) = seen.first() {
                assert_eq!(s.method, method);
            }
            if want == 403 {
                assert_eq!(r.reason(), "forbidden");
            }
        }
    }
}

#[tokio::test]
async fn a_route_resource_is_authorized_as_that_resource() {
    let s = Setup::new();
    let h = s.gate(
        "routes:\n  - {path_prefix: /, upstream: \"http://127.0.0.1:9\", resource: {namespace: monitoring, resource: services, subresource: proxy, name: prom}}\n",
    );
    // The static rules allow dev `/api/**` paths only, not the resource.
    let r = h
        .send(
            &h.anonymous(),
            get("/api/x", &[("authorization", &bearer(BOB))]),
        )
        .await;
    assert_eq!(r.status_reason(), (403, "forbidden".into()));
    assert!(
        r.message().contains("resource \"services/proxy\""),
        "{}",
        r.message()
    );
    h.nothing_forwarded();
}

#[tokio::test]
async fn public_paths_skip_authentication_and_carry_no_identity() {
    let s = Setup::new();
    let h = s.gate("paths:\n  unauthenticated: [\"/healthz\"]\n");
    let r = h
        .send(
            &h.anonymous(),
            get(
                "/healthz",
                &[
                    ("x-remote-user", "root"),
                    ("x-remote-group", "system:masters"),
                ],
            ),
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = h.only_seen();
    assert_eq!(seen.header("x-remote-user"), None);
    assert_eq!(seen.header("x-remote-group"), None);
    // Public even with a certificate: no identity is set.
    let alice = s.cert("alice", Some("alice"), &["ops"], &[]);
    let r = h.send(&h.with_cert(&alice), get("/healthz", &[])).await;
    assert_eq!(r.status, 200);
    assert_eq!(h.only_seen().header("x-remote-user"), None);
    // Everything else still needs credentials.
    let r = h.send(&h.anonymous(), get("/healthz/x", &[])).await;
    assert_eq!(r.status_reason(), (401, "missing_credentials".into()));
    h.nothing_forwarded();
}

#[tokio::test]
async fn the_allow_list_closes_every_other_path() {
    let s = Setup::new();
    let h = s.gate("paths:\n  allow: [\"/api/**\"]\n");
    let token = bearer(BOB);
    let r = h
        .send(&h.anonymous(), get("/api/x", &[("authorization", &token)]))
        .await;
    assert_eq!(r.status, 200);
    h.only_seen();
    let r = h
        .send(&h.anonymous(), get("/admin", &[("authorization", &token)]))
        .await;
    assert_eq!(r.status_reason(), (404, "no_route".into()));
    h.nothing_forwarded();
}
