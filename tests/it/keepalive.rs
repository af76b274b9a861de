//! Step 3, item 1, over real sockets: each client connection owns its
//! HTTP/1.1 upstream connections. They are reused across its requests,
//! never shared with another client connection, redialed when the upstream
//! closed them, closed after `limits.upstream_max_requests` and
//! `limits.upstream_idle_timeout`, and never reused after a response the
//! client abandoned or an upstream that sent more than its response.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use testkit::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// What one upstream connection carried: the `X-Remote-User` and path of
/// each of its requests.
type Carried = Arc<Mutex<Vec<Vec<(String, String)>>>>;

/// How the counting upstream treats its connections.
#[derive(Clone, Copy, Default)]
struct Behaviour {
    /// Close the connection this long after each response (no
    /// `Connection: close`: the FIN is all the proxy gets).
    close_after: Option<Duration>,
    /// `/big` streams a body it never finishes.
    endless_big: bool,
}

/// An HTTP/1.1 upstream that records which connection carried which request.
async fn counting_upstream(b: Behaviour) -> (SocketAddr, Carried) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let carried: Carried = Arc::default();
    let record = carried.clone();
    tokio::spawn(async move {
        while let Ok(Ok((tcp, _))) =
            tokio::time::timeout(Duration::from_secs(30), listener.accept()).await
        {
            let index = {
                let mut c = record.lock().expect("lock");
                c.push(Vec::new());
                c.len() - 1
            };
            let record = record.clone();
            tokio::spawn(async move {
                let served = Arc::new(AtomicUsize::new(0));
                let counted = served.clone();
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let user = req
                        .headers()
                        .get("x-remote-user")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_owned();
                    let path = req.uri().path().to_owned();
                    record.lock().expect("lock")[index].push((user, path.clone()));
                    counted.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let body: http_body_util::combinators::BoxBody<Bytes, std::io::Error> =
                            if path == "/api/big" && b.endless_big {
                                let (tx, body) = channel_body();
                                tokio::spawn(async move {
                                    while tx
                                        .send(hyper::body::Frame::data(Bytes::from(vec![
                                            b'x';
                                            4096
                                        ])))
                                        .await
                                        .is_ok()
                                    {
                                        tokio::time::sleep(Duration::from_millis(5)).await;
                                    }
                                });
                                body.map_err(|never| match never {}).boxed()
                            } else {
                                Full::new(Bytes::from(format!("answer:{path}")))
                                    .map_err(|never| match never {})
                                    .boxed()
                            };
                        Ok::<_, std::convert::Infallible>(http::Response::new(body))
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc);
                tokio::pin!(conn);
                let Some(after) = b.close_after else {
                    let _ = conn.await;
                    return;
                };
                // Serve one request, then close the idle connection.
                while served.load(Ordering::SeqCst) == 0 {
                    tokio::select! {
                        _ = conn.as_mut() => return,
                        () = tokio::time::sleep(Duration::from_millis(2)) => {}
                    }
                }
                let _ = tokio::time::timeout(after, conn.as_mut()).await;
            });
        }
    });
    (addr, carried)
}

/// One keep-alive HTTP/1.1 client connection to the gate.
async fn keep_alive(client: &Client) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let tls = client.connect().await.expect("connect");
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    send
}

async fn get(
    send: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    method: &str,
    path: &str,
    token: &str,
) -> (u16, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let fut = async {
        send.ready().await.expect("ready");
        let resp = send.send_request(req).await.expect("response");
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(TIMEOUT, fut).await.expect("in time")
}

/// `GET path` with bob's token answers 200.
async fn ok(send: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>, path: &str) {
    assert_eq!(get(send, "GET", path, BOB_TOKEN).await.0, 200, "{path}");
}

async fn env_with(upstream: SocketAddr, limits: &str) -> Env {
    Env::start(|y| {
        y.routes = format!("routes:\n  - {{path_prefix: /, upstream: \"http://{upstream}\"}}\n");
        y.rest = limits.to_owned();
    })
    .await
}

fn connections(c: &Carried) -> Vec<Vec<(String, String)>> {
    c.lock().expect("lock").clone()
}

#[tokio::test]
async fn a_keep_alive_client_connection_reuses_one_upstream_connection() {
    let (addr, carried) = counting_upstream(Behaviour::default()).await;
    let env = env_with(addr, "").await;
    let mut send = keep_alive(&env.client()).await;
    for i in 0..10 {
        let path = format!("/api/{i}");
        assert_eq!(
            get(&mut send, "GET", &path, BOB_TOKEN).await,
            (200, format!("answer:{path}"))
        );
    }
    // A response without a body (HEAD) keeps the connection too.
    assert_eq!(get(&mut send, "HEAD", "/api/head", BOB_TOKEN).await.0, 200);
    ok(&mut send, "/api/last").await;
    let conns = connections(&carried);
    assert_eq!(conns.len(), 1, "one upstream connection: {conns:?}");
    assert_eq!(conns[0].len(), 12);
}

#[tokio::test]
async fn two_client_connections_never_share_an_upstream_connection() {
    let (addr, carried) = counting_upstream(Behaviour::default()).await;
    let env = env_with(addr, "").await;
    // Interleaved requests, told apart by path: `/api/b*` on one client
    // connection, `/api/c*` on the other.
    let mut one = keep_alive(&env.client()).await;
    let mut other = keep_alive(&env.client()).await;
    for i in 0..5 {
        ok(&mut one, &format!("/api/b{i}")).await;
        ok(&mut other, &format!("/api/c{i}")).await;
    }
    let conns = connections(&carried);
    assert_eq!(
        conns.len(),
        2,
        "one upstream connection per client connection: {conns:?}"
    );
    for c in &conns {
        let first = c[0].1.as_bytes()[5];
        assert!(
            c.iter().all(|(_, p)| p.as_bytes()[5] == first),
            "an upstream connection carried two client connections' requests: {c:?}"
        );
    }
}

#[tokio::test]
async fn an_upstream_connection_closed_by_the_upstream_is_redialed_not_a_502() {
    let (addr, carried) = counting_upstream(Behaviour {
        close_after: Some(Duration::from_millis(50)),
        ..Behaviour::default()
    })
    .await;
    let env = env_with(addr, "").await;
    let mut send = keep_alive(&env.client()).await;
    for i in 0..4 {
        // Each request finds its upstream connection closed (FIN only).
        tokio::time::sleep(Duration::from_millis(150)).await;
        let path = format!("/api/{i}");
        assert_eq!(
            get(&mut send, "GET", &path, BOB_TOKEN).await,
            (200, format!("answer:{path}"))
        );
    }
    assert_eq!(connections(&carried).len(), 4);
}

#[tokio::test]
async fn upstream_max_requests_and_idle_timeout_close_upstream_connections() {
    let (addr, carried) = counting_upstream(Behaviour::default()).await;
    let env = env_with(
        addr,
        "limits: {upstream_max_requests: 3, upstream_idle_timeout: 300ms}\n",
    )
    .await;
    let mut send = keep_alive(&env.client()).await;
    for i in 0..7 {
        ok(&mut send, &format!("/api/{i}")).await;
    }
    let sizes: Vec<usize> = connections(&carried).iter().map(Vec::len).collect();
    assert_eq!(sizes, [3, 3, 1], "3 requests per upstream connection");
    // Idle past the timeout: the next request gets a new connection.
    tokio::time::sleep(Duration::from_millis(600)).await;
    ok(&mut send, "/api/late").await;
    assert_eq!(connections(&carried).len(), 4);
}

#[tokio::test]
async fn a_response_the_client_abandoned_never_answers_its_next_request() {
    let (addr, carried) = counting_upstream(Behaviour {
        endless_big: true,
        ..Behaviour::default()
    })
    .await;
    let env = env_with(addr, "").await;
    // HTTP/2: one stream is reset mid-body while the connection lives on.
    let tls = env.client().http2().connect().await.expect("connect");
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let req = |path: &str| {
        Request::get(format!("https://localhost{path}"))
            .header("authorization", format!("Bearer {BOB_TOKEN}"))
            .body(Full::new(Bytes::new()))
            .expect("request")
    };
    let resp = tokio::time::timeout(TIMEOUT, send.send_request(req("/api/big")))
        .await
        .expect("in time")
        .expect("response");
    let mut body = resp.into_body();
    let first = tokio::time::timeout(TIMEOUT, body.frame())
        .await
        .expect("in time")
        .expect("a frame")
        .expect("data");
    assert!(first.is_data());
    drop(body);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let resp = tokio::time::timeout(TIMEOUT, send.send_request(req("/api/small")))
        .await
        .expect("in time")
        .expect("response");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(body, "answer:/api/small");
    assert_eq!(
        connections(&carried).len(),
        2,
        "the abandoned connection is not reused"
    );
}

/// An upstream that writes `reply(connection, request)` (both counted from
/// 0) for each request head it reads; the count is of connections accepted.
async fn scripted_upstream(
    reply: fn(usize, usize) -> &'static str,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok(Ok((mut tcp, _))) =
            tokio::time::timeout(Duration::from_secs(30), listener.accept()).await
        {
            let conn = count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut request = 0;
                while raw::read_head(&mut tcp).await.is_some() {
                    if tcp
                        .write_all(reply(conn, request).as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                    request += 1;
                }
            });
        }
    });
    (addr, accepted)
}

/// An upstream that sends a second, unasked response right after the first.
async fn over_answering_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    scripted_upstream(|_, _| {
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok\
         HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged"
    })
    .await
}

#[tokio::test]
async fn bytes_an_upstream_sends_beyond_its_response_never_answer_the_next_request() {
    let (addr, accepted) = over_answering_upstream().await;
    let env = env_with(addr, "").await;
    let mut send = keep_alive(&env.client()).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (status, body) = get(&mut send, "GET", "/api/x", BOB_TOKEN).await;
        assert_eq!((status, body.as_str()), (200, "ok"));
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        3,
        "each connection is dropped after its stray bytes"
    );
}

// ---- review-r4 PoCs ----

/// An upstream that answers each request after `delay` and counts its
/// open connections (accepted minus ended).
async fn slow_upstream(delay: Duration) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let open = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    let (o, a) = (open.clone(), accepted.clone());
    tokio::spawn(async move {
        while let Ok(Ok((tcp, _))) =
            tokio::time::timeout(Duration::from_secs(30), listener.accept()).await
        {
            o.fetch_add(1, Ordering::SeqCst);
            a.fetch_add(1, Ordering::SeqCst);
            let o = o.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |_req: Request<hyper::body::Incoming>| async move {
                        tokio::time::sleep(delay).await;
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
                o.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, open, accepted)
}

/// Review round 4: `limits.upstream_idle_timeout` was only looked at when a
/// later request took a connection, so the parked connections of a client
/// connection that sent nothing more stayed open (up to 8 per client
/// connection) for as long as it lived. Now each connection's task closes
/// it once parked for the timeout.
#[tokio::test]
async fn parked_upstream_connections_close_after_the_idle_timeout_while_the_client_is_silent() {
    let (addr, open, accepted) = slow_upstream(Duration::from_millis(300)).await;
    let env = env_with(addr, "limits: {upstream_idle_timeout: 200ms}\n").await;
    let tls = env.client().http2().connect().await.expect("connect");
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let mut send = send.clone();
        tasks.push(tokio::spawn(async move {
            let req = Request::get(format!("https://localhost/api/{i}"))
                .header("authorization", format!("Bearer {BOB_TOKEN}"))
                .body(Full::new(Bytes::new()))
                .expect("request");
            let resp = send.send_request(req).await.expect("response");
            let status = resp.status().as_u16();
            resp.into_body().collect().await.expect("body");
            status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), 200);
    }
    // Ten times the idle timeout, the client connection still open.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let still_open = open.load(Ordering::SeqCst);
    assert!(
        accepted.load(Ordering::SeqCst) > 1,
        "the streams ran at once"
    );
    assert_eq!(
        still_open, 0,
        "parked connections outlived upstream_idle_timeout"
    );
}

/// An upstream that answers its first connection's request with an unasked
/// 101 followed by a forged response: a 502, and the next request gets a
/// fresh connection's answer, never the forged one.
#[tokio::test]
async fn an_unasked_101_is_a_502_and_its_trailing_bytes_never_answer_the_next_request() {
    let (addr, accepted) = scripted_upstream(|conn, request| {
        if (conn, request) == (0, 0) {
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\nconnection: upgrade\r\n\r\n\
             HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged"
        } else {
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
        }
    })
    .await;
    let env = env_with(addr, "").await;
    let mut send = keep_alive(&env.client()).await;
    let first = get(&mut send, "GET", "/api/a", BOB_TOKEN).await;
    let second = get(&mut send, "GET", "/api/b", BOB_TOKEN).await;
    assert_eq!(first.0, 502);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    assert_eq!(second, (200, "ok".to_owned()));
}

/// An upstream that answers a POST before reading its body: the next
/// request gets its own answer (on the same client connection, or on a new
/// one if authgate closed it because the POST body was left unread), and
/// each POST reaches the upstream once.
#[tokio::test]
async fn an_early_answer_to_a_post_never_desyncs_the_next_request_or_resends_the_post() {
    let (addr, carried) = counting_upstream(Behaviour::default()).await;
    let env = env_with(addr, "").await;
    let mut send = keep_alive(&env.client()).await;
    for round in 0..3 {
        let req = Request::post(format!("/api/post{round}"))
            .header("host", "localhost")
            .header("authorization", format!("Bearer {BOB_TOKEN}"))
            .body(Full::new(Bytes::from(vec![b'p'; 300_000])))
            .expect("request");
        send.ready().await.expect("ready");
        let resp = tokio::time::timeout(TIMEOUT, send.send_request(req))
            .await
            .expect("in time")
            .expect("resp");
        let status = resp.status().as_u16();
        resp.into_body().collect().await.expect("body");
        // The upstream may close mid-body after its answer; hyper's client
        // then reports the broken write (502), as the pooled client did.
        // Never anything else.
        assert!(matches!(status, 200 | 502), "{status}");
        // A server may close a connection whose request body it left
        // unread (RFC 9112, 9.6); then the next request goes on a new one.
        if send.ready().await.is_err() {
            send = keep_alive(&env.client()).await;
        }
        let next = get(&mut send, "GET", &format!("/api/get{round}"), BOB_TOKEN).await;
        assert_eq!(next, (200, format!("answer:/api/get{round}")));
    }
    let all: Vec<String> = connections(&carried)
        .into_iter()
        .flatten()
        .map(|(_, p)| p)
        .collect();
    assert_eq!(all.iter().filter(|p| p.starts_with("/api/post")).count(), 3);
}
