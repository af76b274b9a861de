//! The admin listener runs on the shared accept loop: its own small cap,
//! and a drain on shutdown.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::*;
use crate::config::Config;

async fn app(dir: &std::path::Path, max_connections: usize) -> Arc<App> {
    crate::pki::init(dir).unwrap();
    let d = dir.display();
    let yaml = format!(
        "listen: \"127.0.0.1:0\"\ntls:\n  cert_file: {d}/server.crt\n  key_file: {d}/server.key\nstatic:\n  tokens: [{{token: t0k3n, user: u}}]\nroutes:\n  - {{path_prefix: /, upstream: \"http://127.0.0.1:9\"}}\nadmin:\n  max_connections: {max_connections}\n"
    );
    Arc::new(
        App::build(&Config::from_yaml(&yaml).unwrap())
            .await
            .unwrap(),
    )
}

async fn get(s: &mut TcpStream, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn the_admin_listener_refuses_connections_beyond_its_cap_and_drains_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), 2).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, app, async {
        let _ = stopped.await;
    }));
    // Two keep-alive connections hold both slots.
    let mut a = TcpStream::connect(addr).await.unwrap();
    let mut b = TcpStream::connect(addr).await.unwrap();
    assert!(get(&mut a, "/healthz").await.starts_with("HTTP/1.1 200"));
    assert!(get(&mut b, "/livez").await.starts_with("HTTP/1.1 200"));
    // A third is closed at accept, without an answer.
    let mut c = TcpStream::connect(addr).await.unwrap();
    let _ = c
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut buf)).await;
    assert!(buf.is_empty(), "{:?}", String::from_utf8_lossy(&buf));
    // Unknown endpoints get the gate's refusal.
    let r = get(&mut a, "/nope").await;
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    assert!(r.contains("\"reason\":\"no_route\""), "{r}");
    // Shutdown closes the idle keep-alive connections and returns.
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    for s in [&mut a, &mut b] {
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&rest));
    }
}

#[tokio::test]
async fn guarded_endpoints_answer_loopback_only_with_the_gates_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), 4).await;
    let headers = http::HeaderMap::new();
    let outside = app.gate.conn_info("192.0.2.1:4000".parse().unwrap(), None);
    let e = guard(&app, &outside, &headers, "/metrics", "get")
        .await
        .unwrap_err();
    let r = e.refusal();
    assert_eq!((r.status.as_u16(), r.reason.as_str()), (403, "forbidden"));
    assert_eq!(
        r.message,
        "this admin endpoint answers loopback clients only"
    );
    let inside = app.gate.conn_info("127.0.0.1:4000".parse().unwrap(), None);
    assert!(
        guard(&app, &inside, &headers, "/metrics", "get")
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn authorized_admin_access_uses_the_gates_admission() {
    let dir = tempfile::tempdir().unwrap();
    crate::pki::init(dir.path()).unwrap();
    let d = dir.path().display();
    let yaml = format!(
        "listen: \"127.0.0.1:0\"\ntls:\n  cert_file: {d}/server.crt\n  key_file: {d}/server.key\nstatic:\n  tokens: [{{token: ops-t0k3n, user: ops}}, {{token: dev-t0k3n, user: dev}}]\n  allow: [{{user: ops, verbs: [get], paths: [/metrics]}}]\nroutes:\n  - {{path_prefix: /, upstream: \"http://127.0.0.1:9\"}}\nadmin:\n  access: authorized\n  tls: true\n  max_connections: 4\n"
    );
    let app = Arc::new(
        App::build(&Config::from_yaml(&yaml).unwrap())
            .await
            .unwrap(),
    );
    let conn = app.gate.conn_info("192.0.2.1:4000".parse().unwrap(), None);
    let with = |token: &str| {
        let mut h = http::HeaderMap::new();
        h.insert("authorization", format!("Bearer {token}").parse().unwrap());
        h
    };
    assert!(
        guard(&app, &conn, &with("ops-t0k3n"), "/metrics", "get")
            .await
            .is_ok()
    );
    for (headers, path, verb, want) in [
        (with("dev-t0k3n"), "/metrics", "get", (403, "forbidden")),
        (
            with("ops-t0k3n"),
            "/cache/flush",
            "create",
            (403, "forbidden"),
        ),
        (with("nope"), "/metrics", "get", (401, "token_rejected")),
        (
            http::HeaderMap::new(),
            "/metrics",
            "get",
            (401, "missing_credentials"),
        ),
    ] {
        let r = guard(&app, &conn, &headers, path, verb)
            .await
            .unwrap_err()
            .refusal();
        assert_eq!(
            (r.status.as_u16(), r.reason.as_str()),
            want,
            "{path} {verb}"
        );
    }
}

#[test]
fn a_flush_names_one_non_empty_user_form_decoded() {
    assert_eq!(flush_user(None).unwrap(), None);
    assert_eq!(flush_user(Some("x=1")).unwrap(), None);
    assert_eq!(
        flush_user(Some("user=Jane+Doe")).unwrap().as_deref(),
        Some("Jane Doe")
    );
    assert_eq!(
        flush_user(Some("user=system%3Aserviceaccount%3Ans%3Asa"))
            .unwrap()
            .as_deref(),
        Some("system:serviceaccount:ns:sa")
    );
    for bad in ["user=", "user=a&user=b"] {
        let r = flush_user(Some(bad)).unwrap_err().refusal();
        assert_eq!(r.status.as_u16(), 400, "{bad}");
    }
}
