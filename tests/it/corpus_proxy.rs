//! Bad-input corpus, proxy mode, over real TLS: a client certificate whose
//! SANs hold XFCC syntax (`"`, `,Cert=`, `;`) forwarded with
//! `forward_client_cert: xfcc`; upgrades the route must refuse (`h2c`, any
//! upgrade on a public path); and `*` in `static.allow` paths (one segment,
//! or alone every path). Every case asserts what the upstream saw.

use authgate::gate::auth_request::parse_xfcc;
use testkit::raw;
use testkit::*;

#[tokio::test]
async fn san_quotes_and_xfcc_syntax_cannot_add_elements_or_keys_to_authgates_xfcc() {
    let env = Env::start(|y| y.rest = "headers:\n  forward_client_cert: xfcc\n".into()).await;
    let uri = r#"urn:x",Cert="forged";Hash="00"#;
    let dns = r#"evil";DNS=admin,By=spiffe://x"#;
    let opts = ClientOpts {
        uris: vec![uri.into()],
        dns: vec![dns.into()],
        ..ClientOpts::cn("alice", &["dev"])
    };
    let alice = env.pki.client("alice", &opts);
    let client = env.client().with_cert(&alice);
    let spoofed = [("x-forwarded-client-cert", "Hash=SPOOF;Subject=\"CN=admin\"")];
    let r = client.get("/api/x", &spoofed).await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let seen = env.upstream.last();
    assert_eq!(seen.all("x-remote-user"), ["alice"]);
    let xfcc = seen.all("x-forwarded-client-cert");
    assert_eq!(xfcc.len(), 1, "{xfcc:?}");
    assert!(!xfcc[0].contains("SPOOF"), "{}", xfcc[0]);
    let elements = parse_xfcc(&xfcc[0]).unwrap_or_else(|e| panic!("{e}: {}", xfcc[0]));
    assert_eq!(elements.len(), 1, "one element: {}", xfcc[0]);
    let keys: Vec<&str> = elements[0].iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["Hash", "Subject", "URI", "DNS"], "{}", xfcc[0]);
    let value = |k: &str| {
        elements[0]
            .iter()
            .find(|(key, _)| key == k)
            .unwrap()
            .1
            .clone()
    };
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(alice.chain[0].as_ref()));
    assert_eq!(value("Hash"), hash);
    assert_eq!(value("URI"), uri, "read back as written in the SAN");
    assert_eq!(value("DNS"), dns);
    assert_eq!(value("Subject"), "CN=alice, O=dev");
}

/// bob's token on every request unless the case says otherwise.
const BOB: &str = "Authorization: Bearer {T}\r\n";

/// `(name, request head without the final CRLF, status, reason)`; `{T}`
/// is bob's token. Every case must reach nothing upstream.
type Refusal = (&'static str, String, u16, &'static str);

async fn refuse_all(env: &Env, cases: &[Refusal]) {
    for (name, head, status, reason) in cases {
        let before = env.upstream.count();
        let bytes = format!("{head}\r\n").replace("{T}", BOB_TOKEN);
        let reply = raw::h1(env, bytes).await;
        let r = reply
            .responses
            .first()
            .unwrap_or_else(|| panic!("{name}: no response: {}", reply.summary()));
        assert_eq!(
            (r.status, r.reason()),
            (*status, (*reason).to_owned()),
            "{name}: {}",
            reply.summary()
        );
        assert_eq!(env.upstream.count(), before, "{name}: reached the upstream");
        raw::assert_still_serves(env, name).await;
    }
}

fn upgrade(path: &str, protocol: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: Upgrade\r\nUpgrade: {protocol}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    )
}

#[tokio::test]
async fn h2c_and_upgrades_on_public_paths_are_refused_before_the_upstream() {
    let env = Env::start(|y| {
        raw::api_and_admin_routes(y);
        y.rest = "paths:\n  unauthenticated: [\"/api/public/**\"]\n".into();
    })
    .await;
    let h2c = |extra: &str| {
        format!(
            "GET /api/x HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
        )
    };
    let cases: Vec<Refusal> = vec![
        ("h2c with a token", h2c(BOB), 400, "bad_request"),
        ("h2c without credentials", h2c(""), 400, "bad_request"),
        (
            "h2c after websocket in one Upgrade",
            upgrade("/api/x", "websocket, h2c", BOB),
            400,
            "bad_request",
        ),
        (
            "h2c in capitals",
            upgrade("/api/x", "H2C", BOB),
            400,
            "bad_request",
        ),
        (
            "an unknown protocol",
            upgrade("/api/x", "irc", BOB),
            400,
            "bad_request",
        ),
        (
            "websocket on a public path",
            upgrade("/api/public/ws", "websocket", ""),
            400,
            "bad_request",
        ),
        (
            "websocket on a public path with a token",
            upgrade("/api/public/ws", "websocket", BOB),
            400,
            "bad_request",
        ),
        (
            "SPDY on a public path",
            upgrade("/api/public/exec", "SPDY/3.1", ""),
            400,
            "bad_request",
        ),
        (
            "websocket on a public path by dot-dot",
            upgrade("/api/x/../public/ws", "websocket", ""),
            400,
            "bad_request",
        ),
    ];
    refuse_all(&env, &cases).await;
    // Controls: the public path serves plain requests, with no identity.
    let before = env.upstream.count();
    let r = env
        .client()
        .get("/api/public/x", &[("x-remote-user", "SPOOF")])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(env.upstream.count(), before + 1);
    let seen = env.upstream.last();
    assert!(seen.all("x-remote-user").is_empty(), "{:?}", seen.headers);
}

#[tokio::test]
async fn a_star_path_rule_covers_one_segment_and_a_lone_star_every_path() {
    const DAVE: &str = "dave-token-41c9d2";
    const ERIN: &str = "erin-token-9b07e3";
    let env = Env::start(|y| {
        raw::api_and_admin_routes(y);
        y.statics = format!(
            "static:\n  tokens:\n    - {{token: {DAVE}, user: dave}}\n    - {{token: {ERIN}, user: erin}}\n  allow:\n    - {{user: dave, verbs: [get], paths: [\"/api/*\"]}}\n    - {{user: erin, verbs: [get], paths: [\"*\"]}}\n"
        );
    })
    .await;
    let cases: &[(&str, &str, &str, u16, &str)] = &[
        ("one segment", DAVE, "/api/x", 200, "/api/x"),
        ("two segments", DAVE, "/api/x/y", 403, ""),
        ("the bare prefix", DAVE, "/api", 403, ""),
        ("two segments by dot-dot", DAVE, "/api/x/../y/z", 403, ""),
        ("an encoded slash", DAVE, "/api/x%2fy", 400, ""),
        ("a matrix parameter", DAVE, "/api/x;y=1/z", 400, ""),
        ("another route", DAVE, "/admin/x", 403, ""),
        (
            "a lone star: any path",
            ERIN,
            "/admin/a/b/c",
            200,
            "/admin/a/b/c",
        ),
        (
            "a lone star: the root of a route",
            ERIN,
            "/api",
            200,
            "/api",
        ),
        (
            "a lone star: still normalised",
            ERIN,
            "/api/../admin/x",
            200,
            "/admin/x",
        ),
        (
            "a lone star: still no encoded slash",
            ERIN,
            "/api%2f..%2fadmin",
            400,
            "",
        ),
    ];
    for &(name, token, path, status, forwarded) in cases {
        let before = env.upstream.count();
        let bytes = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        let reply = raw::h1(&env, bytes).await;
        assert_eq!(reply.statuses(), [status], "{name}: {}", reply.summary());
        if status == 200 {
            assert_eq!(env.upstream.count(), before + 1, "{name}");
            assert_eq!(env.upstream.last().path, forwarded, "{name}");
        } else {
            assert_eq!(env.upstream.count(), before, "{name}: reached the upstream");
        }
    }
    // Neither rule lets anyone write.
    let before = env.upstream.count();
    let bytes = format!(
        "DELETE /api/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ERIN}\r\n\r\n"
    );
    assert_eq!(raw::h1(&env, bytes).await.statuses(), [403]);
    assert_eq!(env.upstream.count(), before);
}
