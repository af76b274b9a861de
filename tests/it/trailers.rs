//! Request trailers never reach an upstream: the header rewrite does not
//! see them, so a client could otherwise send identity headers after the body.
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Rec = Arc<Mutex<Vec<(HeaderMap, Option<HeaderMap>)>>>;

async fn trailer_upstream(h2: bool) -> (std::net::SocketAddr, Rec) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let rec: Rec = Arc::default();
    let r = rec.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let r = r.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let r = r.clone();
                    async move {
                        let (parts, mut body) = req.into_parts();
                        let mut trailers = None;
                        while let Some(Ok(f)) = body.frame().await {
                            if let Ok(t) = f.into_trailers() {
                                trailers = Some(t);
                            }
                        }
                        r.lock().expect("lock").push((parts.headers, trailers));
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                }
            });
        }
    });
    (addr, rec)
}

fn spoof_trailers() -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("x-remote-user", HeaderValue::from_static("admin"));
    t.insert("x-remote-group", HeaderValue::from_static("system:masters"));
    t.insert("impersonate-user", HeaderValue::from_static("system:admin"));
    t.insert("x-forwarded-for", HeaderValue::from_static("10.9.9.9"));
    t.insert(
        "authorization",
        HeaderValue::from_static("Bearer leaked-token"),
    );
    t
}

#[tokio::test]
async fn request_trailers_from_an_h2_client_never_reach_an_h2c_upstream() {
    let (addr, rec) = trailer_upstream(true).await;
    let env = Env::start(|y| {
        y.routes = format!("routes:\n  - {{path_prefix: /, upstream: \"h2c://{addr}\"}}\n");
    })
    .await;
    let tls = env.client().http2().connect().await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let (tx, body) = channel_body();
    let req = Request::post("https://localhost/api/x")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {BOB_TOKEN}"))
        .body(body)
        .unwrap();
    tokio::spawn(async move {
        tx.send(Frame::data(Bytes::from_static(b"hi")))
            .await
            .unwrap();
        tx.send(Frame::trailers(spoof_trailers())).await.unwrap();
    });
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let _ = resp.into_body().collect().await;
    let seen = rec.lock().unwrap().clone();
    let (headers, trailers) = &seen[0];
    assert_eq!(headers["x-remote-user"], "bob");
    assert_eq!(trailers, &None, "request trailers are dropped");
}

#[tokio::test]
async fn chunked_request_trailers_from_an_h1_client_never_reach_an_h2c_upstream() {
    let (addr, rec) = trailer_upstream(true).await;
    let env = Env::start(|y| {
        y.routes = format!("routes:\n  - {{path_prefix: /, upstream: \"h2c://{addr}\"}}\n");
    })
    .await;
    let mut tls = env.client().connect().await.unwrap();
    let req = format!(
        "POST /api/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {BOB_TOKEN}\r\nTE: trailers\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nhi\r\n0\r\nX-Remote-User: admin\r\nImpersonate-User: system:admin\r\nX-Remote-Group: system:masters\r\n\r\n"
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, tls.read_to_end(&mut out)).await;
    let seen = rec.lock().unwrap().clone();
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0["x-remote-user"], "bob");
    assert_eq!(seen[0].1, None, "request trailers are dropped");
}
