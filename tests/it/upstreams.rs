//! Step 3, item 4: the upstream kinds over real sockets. A gRPC-style
//! exchange through an `h2c://` upstream (streaming both ways, trailers),
//! HTTP/1.1 over a `unix://` socket, `https://` with h2 by ALPN or
//! HTTP/1.1, and the client certificate authgate presents to an https
//! upstream (required there, rotated, a bad file keeping the last good one).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Version};
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use testkit::*;

fn route(prefix: &str, upstream: &str, extra: &str) -> String {
    format!("  - {{path_prefix: {prefix}, upstream: \"{upstream}\"{extra}}}\n")
}

#[tokio::test]
async fn a_grpc_call_streams_both_ways_through_an_h2c_upstream_and_its_trailers_come_back() {
    let grpc = GrpcUpstream::start().await;
    let env = Env::start(|y| {
        y.routes = format!(
            "routes:\n{}",
            route("/", &format!("h2c://{}", grpc.addr), "")
        );
    })
    .await;
    let tls = env.client().http2().connect().await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let (tx, body) = channel_body();
    let req = Request::post("https://localhost/api/echo.Echo/Chat")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {BOB_TOKEN}"))
        .body(body)
        .unwrap();
    let resp = tokio::time::timeout(TIMEOUT, send.send_request(req))
        .await
        .expect("response headers in time")
        .expect("response");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/grpc");
    let mut down = resp.into_body();
    // Each message goes up only after the answer to the previous one came
    // down: nothing is buffered to the end in either direction.
    for i in 0..3 {
        let msg = format!("ping-{i}");
        tx.send(Frame::data(Bytes::from(msg.clone())))
            .await
            .unwrap();
        let want = format!("echo:{msg}");
        let mut got = Vec::new();
        while got.len() < want.len() {
            let frame = tokio::time::timeout(TIMEOUT, down.frame())
                .await
                .expect("an answer before the request ends")
                .expect("a frame")
                .expect("no error");
            got.extend_from_slice(&frame.into_data().expect("data before trailers"));
        }
        assert_eq!(String::from_utf8_lossy(&got), want);
    }
    drop(tx);
    let trailers = loop {
        let frame = tokio::time::timeout(TIMEOUT, down.frame())
            .await
            .expect("trailers in time")
            .expect("the trailers frame")
            .expect("no error");
        if let Ok(t) = frame.into_trailers() {
            break t;
        }
    };
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "3 messages");

    let seen = grpc.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.version, Version::HTTP_2, "not downgraded");
    assert_eq!(
        (s.seen.method.as_str(), s.seen.path.as_str()),
        ("POST", "/api/echo.Echo/Chat")
    );
    assert_eq!(s.seen.all("te"), ["trailers"]);
    assert_eq!(s.seen.all("content-type"), ["application/grpc"]);
    assert_eq!(s.seen.all("x-remote-user"), ["bob"]);
    assert!(s.seen.headers.get("authorization").is_none());
}

#[tokio::test]
async fn a_unix_socket_upstream_gets_http1_with_host_localhost() {
    let up = UnixUpstream::start().await;
    let env = Env::start(|y| {
        y.routes = format!(
            "routes:\n{}",
            route("/", &format!("unix://{}", up.path.display()), "")
        );
    })
    .await;
    for client in [env.client(), env.client().http2()] {
        let r = client
            .get_with_token("/api/sidecar?x=1", BOB_TOKEN)
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.json()["path"], "/api/sidecar?x=1");
    }
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    for s in seen {
        assert_eq!(s.all("host"), ["localhost"]);
        assert_eq!(s.all("x-remote-user"), ["bob"]);
    }
    // A socket nobody listens on is a 502, never a request elsewhere.
    let gone = up.path.with_file_name("gone.sock");
    let env = Env::start(|y| {
        y.routes = format!(
            "routes:\n{}",
            route("/", &format!("unix://{}", gone.display()), "")
        );
    })
    .await;
    let r = env
        .client()
        .get_with_token("/api/x", BOB_TOKEN)
        .await
        .unwrap();
    assert_eq!(
        (r.status.as_u16(), r.reason()),
        (502, "upstream_error".into())
    );
    assert_eq!(env.upstream.count(), 0);
}

#[tokio::test]
async fn an_https_upstream_gets_h2_when_it_offers_h2_and_http1_when_not() {
    let pki = Pki::new();
    let h2 = TlsUpstream::start(
        &pki,
        TlsOpts {
            h2: true,
            ..TlsOpts::default()
        },
    )
    .await;
    let h1 = TlsUpstream::start(&pki, TlsOpts::default()).await;
    let ca = format!(", upstream_ca_file: {}", pki.ca_file.display());
    let routes = format!(
        "routes:\n{}{}",
        route(
            "/api/h2",
            &format!("https://localhost:{}", h2.addr.port()),
            &ca
        ),
        route("/", &format!("https://127.0.0.1:{}", h1.addr.port()), &ca),
    );
    let gate = Gate::start(&yaml(&pki, &routes, "")).await;
    for client in [gate.client(&pki), gate.client(&pki).http2()] {
        for path in ["/api/h2/x", "/api/h1/x"] {
            let r = client.get_with_token(path, BOB_TOKEN).await.unwrap();
            assert_eq!(r.status, 200, "{path}: {:?}", r.body);
        }
    }
    let versions = |u: &TlsUpstream| u.seen().iter().map(|s| s.version).collect::<Vec<_>>();
    assert_eq!(versions(&h2), [Version::HTTP_2, Version::HTTP_2]);
    assert_eq!(versions(&h1), [Version::HTTP_11, Version::HTTP_11]);
    // HTTP/2 has no Upgrade: a tunnel to the h2 upstream goes over HTTP/1.1.
    let r = gate
        .client(&pki)
        .get(
            "/api/h2/exec",
            &[
                ("authorization", &format!("Bearer {BOB_TOKEN}")),
                ("connection", "Upgrade"),
                ("upgrade", "SPDY/3.1"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 101);
    let last = h2.seen().pop().unwrap();
    assert_eq!(last.version, Version::HTTP_11);
    assert_eq!(last.seen.all("upgrade"), ["SPDY/3.1"]);
}

/// The test configuration with `routes` and `tls_extra`, without the
/// default upstream.
fn yaml(pki: &Pki, routes: &str, tls_extra: &str) -> String {
    let mut y = Yaml::new(pki, "127.0.0.1:9".parse().expect("address"));
    y.routes = routes.to_owned();
    y.tls_extra.push_str(tls_extra);
    y.render()
}

#[tokio::test]
async fn an_upstream_requiring_a_client_cert_refuses_authgate_without_one_and_sees_the_configured_one()
 {
    let pki = Pki::new();
    let opts = TlsOpts {
        require_client_cert: true,
        ..TlsOpts::default()
    };
    let up = TlsUpstream::start(&pki, opts).await;
    let front = pki.client("front-proxy", &ClientOpts::cn("front-proxy", &[]));
    let target = format!("https://127.0.0.1:{}", up.addr.port());
    let ca = format!(", upstream_ca_file: {}", pki.ca_file.display());
    let with_cert = format!(
        "{ca}, upstream_client_cert_file: {}, upstream_client_key_file: {}",
        front.cert_file.display(),
        front.key_file.display()
    );
    let routes = format!(
        "routes:\n{}{}",
        route("/api/anonymous", &target, &ca),
        route("/", &target, &with_cert)
    );
    let gate = Gate::start(&yaml(&pki, &routes, "")).await;
    let c = gate.client(&pki);
    let r = c
        .get_with_token("/api/anonymous/x", BOB_TOKEN)
        .await
        .unwrap();
    assert_eq!(
        (r.status.as_u16(), r.reason()),
        (502, "upstream_error".into())
    );
    assert!(up.seen().is_empty());
    assert!(up.failed_handshakes() >= 1);
    let r = c.get_with_token("/api/x", BOB_TOKEN).await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].peer_cert.as_ref(), Some(&front.chain[0]));
    assert_eq!(seen[0].seen.all("x-remote-user"), ["bob"]);
}

/// Until `cond` holds, a request at a time (bounded).
async fn until(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond().await {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_rotated_upstream_client_cert_is_presented_and_a_bad_file_keeps_the_last_good_one() {
    let pki = Pki::new();
    let opts = TlsOpts {
        require_client_cert: true,
        close_after_each: true,
        ..TlsOpts::default()
    };
    let up = TlsUpstream::start(&pki, opts).await;
    let first = pki.client("front", &ClientOpts::cn("front-1", &[]));
    let extra = format!(
        ", upstream_ca_file: {}, upstream_client_cert_file: {}, upstream_client_key_file: {}",
        pki.ca_file.display(),
        first.cert_file.display(),
        first.key_file.display()
    );
    let target = format!("https://127.0.0.1:{}", up.addr.port());
    let routes = format!("routes:\n{}", route("/", &target, &extra));
    let gate = Gate::start(&yaml(&pki, &routes, "  reload_interval: 1s\n")).await;
    let c = gate.client(&pki);
    let presented = async || {
        let r = c.get_with_token("/api/x", BOB_TOKEN).await.unwrap();
        assert_eq!(r.status, 200, "{:?}", r.body);
        up.seen().pop().unwrap().peer_cert.unwrap()
    };
    assert_eq!(presented().await, first.chain[0]);

    // Rotation: new files under the same names.
    let next = pki.client("front-next", &ClientOpts::cn("front-2", &[]));
    std::fs::write(&first.key_file, std::fs::read(&next.key_file).unwrap()).unwrap();
    std::fs::write(&first.cert_file, std::fs::read(&next.cert_file).unwrap()).unwrap();
    until("the rotated certificate is presented", async || {
        presented().await == next.chain[0]
    })
    .await;
    let ok = r#"authgate_upstream_tls_reloads_total{result="success"}"#;
    assert!(gate.metric(ok).await >= 1.0);

    // A bad file: reported, and the last good certificate keeps serving.
    let failed = r#"authgate_upstream_tls_reloads_total{result="failure"}"#;
    let before = gate.metric(failed).await;
    std::fs::write(&first.cert_file, "not a certificate").unwrap();
    until("the bad file is reported", async || {
        gate.metric(failed).await > before
    })
    .await;
    assert_eq!(presented().await, next.chain[0]);
    assert_eq!(up.failed_handshakes(), 0);
}
