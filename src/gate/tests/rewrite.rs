//! What the upstream sees: authgate's identity headers and no client-sent
//! ones, in every spelling the `http` crate can carry.

use super::*;

/// Identity and certificate claims a client might send.
const FORGED: &[(&str, &str)] = &[
    ("X-Remote-User", "root"),
    ("x-remote-group", "system:masters"),
    ("X-REMOTE-UID", "0"),
    ("X-Remote-Extra-Scopes", "all"),
    ("Impersonate-User", "root"),
    ("impersonate-group", "system:masters"),
    ("X-Forwarded-Client-Cert", "Hash=00;Subject=\"CN=root\""),
    ("Client-Cert", ":AAAA:"),
    ("SSL-Client-Verify", "SUCCESS"),
    ("X-SSL-Client-DN", "CN=root"),
];

fn forged_with(auth: Option<&str>) -> Vec<(&str, &str)> {
    let mut h = FORGED.to_vec();
    if let Some(a) = auth {
        h.push(("authorization", a));
    }
    h
}

#[tokio::test]
async fn forged_identity_headers_never_reach_the_upstream() {
    let s = Setup::new();
    let h = s.gate("");
    let alice = s.cert("alice", Some("alice"), &["dev"], &[]);
    let token = bearer(BOB);
    for (conn, auth, user) in [
        (h.with_cert(&alice), None, "alice"),
        (h.anonymous(), Some(token.as_str()), "bob"),
    ] {
        let r = h.send(&conn, get("/api/x", &forged_with(auth))).await;
        assert_eq!(r.status, 200);
        let seen = h.only_seen();
        // authgate's own identity headers hold the real identity only ...
        assert_eq!(seen.all("x-remote-user"), [user]);
        assert!(!seen.all("x-remote-group").contains(&"system:masters"));
        let uid = seen.all("x-remote-uid");
        assert!(uid.is_empty() || uid == ["1001"], "{uid:?}");
        // ... and every other claim is gone.
        for (name, value) in FORGED.iter().filter(|(n, _)| {
            !["x-remote-user", "x-remote-group", "x-remote-uid"]
                .contains(&n.to_ascii_lowercase().as_str())
        }) {
            assert_eq!(seen.header(name), None, "{name} reached the upstream");
            assert!(
                !seen
                    .headers
                    .values()
                    .any(|v| v.as_bytes() == value.as_bytes()),
                "the forged value of {name} reached the upstream"
            );
        }
        // The credential itself stays at the edge.
        assert_eq!(seen.header("authorization"), None);
    }
}

#[tokio::test]
async fn the_identity_is_carried_in_the_configured_headers() {
    let s = Setup::new();
    let h = s.gate(
        "headers:\n  user: X-Auth-User\n  group: X-Auth-Groups\n  uid: X-Auth-Uid\n  extra_prefix: X-Auth-Extra-\n  group_separator: \"|\"\n",
    );
    let r = h
        .send(
            &h.anonymous(),
            get(
                "/api/x",
                &[
                    ("authorization", &bearer(BOB)),
                    ("x-auth-user", "root"),
                    ("x-auth-extra-a", "b"),
                ],
            ),
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = h.only_seen();
    assert_eq!(seen.all("x-auth-user"), ["bob"]);
    assert_eq!(seen.all("x-auth-groups"), ["dev|system:authenticated"]);
    assert_eq!(seen.header("x-auth-uid"), Some("1001"));
    assert_eq!(seen.header("x-auth-extra-a"), None);
    assert_eq!(seen.header("x-remote-user"), None);
}

#[tokio::test]
async fn a_certificate_identity_carries_its_credential_id_and_xfcc_when_asked() {
    let s = Setup::new();
    let h = s.gate("headers:\n  forward_client_cert: xfcc\n");
    let alice = s.cert("alice", Some("alice"), &["dev"], &[]);
    let r = h
        .send(
            &h.with_cert(&alice),
            get("/api/x", &[("x-forwarded-client-cert", "Hash=forged")]),
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = h.only_seen();
    let credential = seen
        .header("x-remote-extra-authentication.kubernetes.io%2fcredential-id")
        .unwrap();
    assert!(credential.starts_with("X509SHA256="), "{credential}");
    let xfcc = seen.all("x-forwarded-client-cert");
    assert_eq!(xfcc.len(), 1);
    assert!(xfcc[0].starts_with("Hash=") && xfcc[0] != "Hash=forged");
    assert!(
        xfcc[0].contains("Subject=\"CN=alice, O=dev\""),
        "{}",
        xfcc[0]
    );
    // A token identity gets no XFCC, and the forged one is gone.
    let r = h
        .send(
            &h.anonymous(),
            get(
                "/api/x",
                &[
                    ("authorization", &bearer(BOB)),
                    ("x-forwarded-client-cert", "Hash=forged"),
                ],
            ),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(h.only_seen().header("x-forwarded-client-cert"), None);
}

#[tokio::test]
async fn hop_by_hop_headers_are_dropped_te_keeps_only_trailers_and_an_upgrade_is_kept() {
    let s = Setup::new();
    let h = s.gate("");
    let token = bearer(BOB);
    let r = h
        .send(
            &h.anonymous(),
            get(
                "/api/x",
                &[
                    ("authorization", &token),
                    ("connection", "keep-alive, x-secret"),
                    ("x-secret", "1"),
                    ("keep-alive", "timeout=5"),
                    ("te", "gzip, trailers"),
                    ("proxy-authorization", "Basic YTpi"),
                ],
            ),
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = h.only_seen();
    for name in [
        "connection",
        "x-secret",
        "keep-alive",
        "proxy-authorization",
    ] {
        assert_eq!(seen.header(name), None, "{name}");
    }
    // gRPC needs `TE: trailers` end to end (the one value HTTP/2 allows).
    assert_eq!(seen.header("te"), Some("trailers"));
    let r = h
        .send(
            &h.anonymous(),
            get(
                "/api/x",
                &[
                    ("authorization", &token),
                    ("connection", "Upgrade"),
                    ("upgrade", "websocket"),
                ],
            ),
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = h.only_seen();
    assert_eq!(seen.header("connection"), Some("upgrade"));
    assert_eq!(seen.header("upgrade"), Some("websocket"));
}

#[tokio::test]
async fn headers_can_be_turned_off_but_forged_ones_are_still_stripped() {
    let s = Setup::new();
    let h = s.gate("headers:\n  enabled: false\n");
    let r = h
        .send(
            &h.anonymous(),
            get("/api/x", &forged_with(Some(&bearer(BOB)))),
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = h.only_seen();
    for (name, _) in FORGED {
        assert_eq!(seen.header(name), None, "{name}");
    }
}
