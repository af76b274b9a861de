//! What reaches the upstream: header hygiene, path normalisation, routing,
//! upgrades and upstream failures.

use std::time::{Duration, Instant};

use testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn spoofed_identity_headers_in_any_casing_never_reach_the_upstream() {
    let env = Env::start(|_| {}).await;
    let spoofed = [
        ("X-Remote-User", "mallory"),
        ("x-remote-group", "system:masters"),
        ("X-REMOTE-UID", "0"),
        ("X-Remote-Extra-Scopes", "all"),
        ("Impersonate-User", "admin"),
        ("IMPERSONATE-GROUP", "system:masters"),
        ("Impersonate-Extra-Foo", "bar"),
        ("X-Forwarded-Client-Cert", "Hash=00;Subject=\"CN=admin\""),
        ("Client-Cert", ":AAAA:"),
        ("Client-Cert-Chain", ":AAAA:"),
    ];
    for client in [
        env.client(),
        env.cert_client("alice", &ClientOpts::cn("alice", &["dev"])),
    ] {
        let mut headers = spoofed.to_vec();
        let auth = format!("Bearer {BOB_TOKEN}");
        headers.push(("Authorization", &auth));
        let r = client.get("/api/x", &headers).await.unwrap();
        assert_eq!(r.status, 200);
        let seen = env.upstream.last();
        assert!(["bob", "alice"].contains(&seen.all("x-remote-user")[0].as_str()));
        assert_eq!(seen.all("x-remote-user").len(), 1);
        assert!(
            !seen
                .all("x-remote-group")
                .contains(&"system:masters".to_owned())
        );
        for (name, _) in spoofed.iter().filter(|(n, _)| {
            !n.eq_ignore_ascii_case("x-remote-user") && !n.eq_ignore_ascii_case("x-remote-group")
        }) {
            if name.eq_ignore_ascii_case("x-remote-uid") && seen.all("x-remote-user") == ["bob"] {
                assert_eq!(seen.all("x-remote-uid"), ["1001"], "bob's real uid only");
                continue;
            }
            assert!(
                seen.headers.get(*name).is_none(),
                "{name} reached the upstream"
            );
        }
        assert!(seen.headers.get("authorization").is_none());
    }
}

#[tokio::test]
async fn dot_segments_and_encoded_dots_are_normalised_before_routing_and_authorization() {
    let env = Env::start(|_| {}).await;
    let c = env.client();
    // bob may get /api/** but not /admin: every spelling of /admin is refused.
    for path in [
        "/api/../admin",
        "/api/%2e%2e/admin",
        "/api/%2E%2E/admin",
        "//admin",
        "/api/./../admin/",
    ] {
        let r = c.get_with_token(path, BOB_TOKEN).await.unwrap();
        assert_eq!(r.status, 403, "{path}");
    }
    for path in ["/api%2fx", "/api/..%2f..%2fadmin", "/api/%00"] {
        let r = c.get_with_token(path, BOB_TOKEN).await.unwrap();
        assert_eq!(
            (r.status.as_u16(), r.reason().as_str()),
            (400, "bad_request"),
            "{path}"
        );
    }
    assert_eq!(env.upstream.count(), 0);
    // What is forwarded is the normalised path that was authorized.
    let r = c
        .get_with_token("/admin/../api//x/./y?q=%2e", BOB_TOKEN)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(env.upstream.last().path, "/api/x/y?q=%2e");
}

#[tokio::test]
async fn longest_prefix_route_wins_on_whole_segments() {
    let pki = Pki::new();
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let mut y = Yaml::new(&pki, a.addr);
    y.routes = format!(
        "routes:\n  - {{path_prefix: /api, upstream: \"http://{}\"}}\n  - {{path_prefix: /api/special, upstream: \"http://{}\"}}\n",
        a.addr, b.addr
    );
    let gate = Gate::start(&y.render()).await;
    let c = gate.client(&pki);
    assert_eq!(
        c.get_with_token("/api/special/x", BOB_TOKEN)
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!((a.count(), b.count()), (0, 1));
    assert_eq!(
        c.get_with_token("/api/specialist", BOB_TOKEN)
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!((a.count(), b.count()), (1, 1));
    let r = c.get_with_token("/apis/x", BOB_TOKEN).await.unwrap();
    assert_eq!((r.status.as_u16(), r.reason().as_str()), (404, "no_route"));
}

#[tokio::test]
async fn upstream_down_is_502_and_never_leaks_its_address() {
    let pki = Pki::new();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let gate = Gate::start(&Yaml::new(&pki, dead).render()).await;
    let r = gate
        .client(&pki)
        .get_with_token("/api/x", BOB_TOKEN)
        .await
        .unwrap();
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (502, "upstream_error")
    );
    assert!(!String::from_utf8_lossy(&r.body).contains(&dead.port().to_string()));
}

#[tokio::test]
async fn upgrade_requests_are_spliced_through_after_authorization() {
    let env = Env::start(|_| {}).await;
    let mut tls = env.client().connect().await.unwrap();
    let head = format!(
        "GET /api/exec HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nAuthorization: Bearer {BOB_TOKEN}\r\nX-Remote-User: mallory\r\n\r\n"
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(TIMEOUT, tls.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let resp = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(resp.starts_with("HTTP/1.1 101"), "{resp}");
    tls.write_all(b"ping through the tunnel").await.unwrap();
    let mut echoed = vec![0u8; 23];
    tokio::time::timeout(TIMEOUT, tls.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echoed, b"ping through the tunnel");
    let seen = env.upstream.last();
    assert_eq!(seen.all("x-remote-user"), ["bob"]);
    assert_eq!(seen.all("upgrade"), ["SPDY/3.1"]);
    assert!(seen.headers.get("authorization").is_none());
}

#[tokio::test]
async fn unauthenticated_upgrade_is_refused_and_not_spliced() {
    let env = Env::start(|_| {}).await;
    let mut tls = env.client().connect().await.unwrap();
    tls.write_all(b"GET /api/exec HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(TIMEOUT, tls.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 401"));
    assert_eq!(env.upstream.count(), 0);
}

#[tokio::test]
async fn idle_tls_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let env = Env::start(|y| y.rest = "limits: {header_read_timeout: 1s}\n".into()).await;
    let mut tls = env.client().connect().await.unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let r = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await;
    let elapsed = start.elapsed();
    let closed = matches!(r, Ok(Ok(0)) | Ok(Err(_)));
    assert!(closed, "connection still open after {elapsed:?}: {r:?}");
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn slow_tls_handshake_is_cut_at_the_handshake_timeout() {
    let env = Env::start(|y| y.rest = "limits: {handshake_timeout: 1s}\n".into()).await;
    let mut tcp = tokio::net::TcpStream::connect(env.gate.addr).await.unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn connections_beyond_max_connections_are_closed_at_once() {
    let env = Env::start(|y| y.rest = "limits: {max_connections: 2}\n".into()).await;
    let _a = env.client().connect().await.unwrap();
    let _b = env.client().connect().await.unwrap();
    assert!(
        env.client().connect().await.is_err(),
        "third connection must be refused"
    );
    drop((_a, _b));
    // Slots free up once the holders go away.
    let mut ok = false;
    for _ in 0..50 {
        if env
            .client()
            .get_with_token("/api/x", BOB_TOKEN)
            .await
            .is_ok()
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "a slot never freed up");
}

#[tokio::test]
async fn xfcc_carries_the_verified_certificate_only_when_configured() {
    let env = Env::start(|y| y.rest = "headers: {forward_client_cert: xfcc}\n".into()).await;
    let opts = ClientOpts {
        uris: vec!["https://id.example/alice".into()],
        dns: vec!["api.web.svc".into()],
        ..ClientOpts::cn("alice", &["dev"])
    };
    let cert = env.pki.client("alice", &opts);
    let forged = [("x-forwarded-client-cert", "Hash=00;Subject=\"CN=admin\"")];
    let r = env
        .client()
        .with_cert(&cert)
        .get("/api/x", &forged)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let xfcc = env.upstream.last().all("x-forwarded-client-cert");
    assert_eq!(xfcc.len(), 1, "{xfcc:?}");
    let want_hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&cert.chain[0]))
    };
    assert!(
        xfcc[0].starts_with(&format!("Hash={want_hash};Subject=\"")),
        "{}",
        xfcc[0]
    );
    assert!(xfcc[0].contains("CN=alice"), "{}", xfcc[0]);
    assert!(
        xfcc[0].contains(";URI=https://id.example/alice;DNS=api.web.svc"),
        "{}",
        xfcc[0]
    );
    // A token client gets no XFCC, and its forged one is stripped.
    let auth = format!("Bearer {BOB_TOKEN}");
    let r = env
        .client()
        .get("/api/x", &[forged[0], ("authorization", &auth)])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(
        env.upstream
            .last()
            .headers
            .get("x-forwarded-client-cert")
            .is_none()
    );
}

#[tokio::test]
async fn an_http11_request_without_host_is_400_and_not_forwarded() {
    let env = Env::start(|_| {}).await;
    let mut tls = env.client().connect().await.unwrap();
    let head = format!("GET /api/x HTTP/1.1\r\nAuthorization: Bearer {BOB_TOKEN}\r\n\r\n");
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(TIMEOUT, tls.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let resp = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(resp.contains("bad_request"), "{resp}");
    assert_eq!(env.upstream.count(), 0);
}

#[tokio::test]
async fn an_http2_response_streaming_past_the_idle_timeout_is_not_cut() {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let Ok(Ok((mut tcp, _))) =
            tokio::time::timeout(Duration::from_secs(10), listener.accept()).await
        else {
            return;
        };
        if raw::read_head(&mut tcp).await.is_none() {
            return;
        }
        let _ = tcp
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await;
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(350)).await;
            if tcp.write_all(b"6\r\nchunk\n\r\n").await.is_err() {
                return;
            }
        }
        let _ = tcp.write_all(b"0\r\n\r\n").await;
    });
    let pki = Pki::new();
    let mut y = Yaml::new(&pki, up);
    y.rest = "limits: {idle_timeout: 1s, header_read_timeout: 1s}\n".into();
    let gate = Gate::start(&y.render()).await;
    let tls = gate.client(&pki).http2().connect().await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("https://localhost/api/watch")
        .header("authorization", format!("Bearer {BOB_TOKEN}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    // 3.5 s of streaming on a connection with a 1 s idle check.
    let body = tokio::time::timeout(
        Duration::from_secs(10),
        http_body_util::BodyExt::collect(resp.into_body()),
    )
    .await
    .expect("stream in time")
    .expect("the stream was cut")
    .to_bytes();
    assert_eq!(body.len(), 10 * 6);
}
