//! Step 2, item 4 (the gate's half): which upgrade requests may reach an
//! upstream at all. That a bogus 101 is never spliced is tested over real
//! sockets in `tests/`.

use super::*;

fn upgrade(path: &str, protocol: &str, auth: Option<&str>) -> Request<Empty<Bytes>> {
    let mut h = vec![("connection", "Upgrade"), ("upgrade", protocol)];
    if let Some(a) = auth {
        h.push(("authorization", a));
    }
    get(path, &h)
}

#[tokio::test]
async fn only_allowed_protocols_may_upgrade_and_h2c_never() {
    let s = Setup::new();
    let h = s.gate("");
    let token = bearer(BOB);
    for protocol in ["websocket", "WebSocket", "SPDY/3.1"] {
        let r = h
            .send(&h.anonymous(), upgrade("/api/x", protocol, Some(&token)))
            .await;
        assert_eq!(r.status, 200, "{protocol}");
        assert_eq!(h.only_seen().header("upgrade"), Some(protocol));
    }
    for protocol in ["h2c", "websocket, h2c", "tls/1.2", "irc"] {
        let r = h
            .send(&h.anonymous(), upgrade("/api/x", protocol, Some(&token)))
            .await;
        assert_eq!(r.status_reason(), (400, "bad_request".into()), "{protocol}");
        assert!(r.message().contains("routes[].upgrades"), "{}", r.message());
    }
    // Refused before credentials are read: no token needed to be told no.
    let r = h.send(&h.anonymous(), upgrade("/api/x", "h2c", None)).await;
    assert_eq!(r.status_reason(), (400, "bad_request".into()));
    h.nothing_forwarded();
}

#[tokio::test]
async fn an_upgrade_to_an_h2c_route_is_refused_with_400_naming_http2() {
    let s = Setup::new();
    let h = s.gate("routes:\n  - {path_prefix: /, upstream: \"http://127.0.0.1:9\"}\n  - {path_prefix: /grpc, upstream: \"h2c://127.0.0.1:10\"}\n");
    let token = bearer(BOB);
    for auth in [Some(token.as_str()), None] {
        let r = h
            .send(&h.anonymous(), upgrade("/grpc/x", "websocket", auth))
            .await;
        assert_eq!(r.status_reason(), (400, "bad_request".into()));
        assert!(r.message().contains("HTTP/2 (h2c)"), "{}", r.message());
    }
    h.nothing_forwarded();
    // The HTTP/1.1 route next to it still upgrades.
    let r = h
        .send(&h.anonymous(), upgrade("/api/x", "websocket", Some(&token)))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(h.only_seen().header("upgrade"), Some("websocket"));
}

#[tokio::test]
async fn a_route_lists_its_own_protocols() {
    let s = Setup::new();
    let h = s.gate("routes:\n  - {path_prefix: /, upstream: \"http://127.0.0.1:9\", upgrades: []}\n  - {path_prefix: /api/ws, upstream: \"http://127.0.0.1:9\", upgrades: [websocket]}\n");
    let token = bearer(BOB);
    let r = h
        .send(&h.anonymous(), upgrade("/api/x", "websocket", Some(&token)))
        .await;
    assert_eq!(r.status_reason(), (400, "bad_request".into()));
    let r = h
        .send(
            &h.anonymous(),
            upgrade("/api/ws/1", "SPDY/3.1", Some(&token)),
        )
        .await;
    assert_eq!(r.status_reason(), (400, "bad_request".into()));
    h.nothing_forwarded();
    let r = h
        .send(
            &h.anonymous(),
            upgrade("/api/ws/1", "websocket", Some(&token)),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(h.only_seen().route, RouteId::new(1));
}

#[tokio::test]
async fn public_paths_open_no_tunnel_unless_the_route_allows_it() {
    let s = Setup::new();
    let h = s.gate("paths:\n  unauthenticated: [\"/public/**\"]\n");
    let r = h
        .send(&h.anonymous(), upgrade("/public/ws", "websocket", None))
        .await;
    assert_eq!(r.status_reason(), (400, "bad_request".into()));
    assert!(
        r.message().contains("unauthenticated paths"),
        "{}",
        r.message()
    );
    h.nothing_forwarded();
    let h = s.gate(
        "routes:\n  - {path_prefix: /, upstream: \"http://127.0.0.1:9\", upgrades_on_public_paths: true}\npaths:\n  unauthenticated: [\"/public/**\"]\n",
    );
    let r = h
        .send(&h.anonymous(), upgrade("/public/ws", "websocket", None))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(h.only_seen().header("x-remote-user"), None);
}

#[test]
fn h2c_is_refused_in_the_config_with_the_key() {
    let s = Setup::new();
    let e = Config::from_yaml(&s.yaml(
        "routes:\n  - {path_prefix: /, upstream: \"http://127.0.0.1:9\", upgrades: [websocket, h2c]}\n",
    ))
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("routes[0].upgrades[1]: h2c"), "{e}");
}
