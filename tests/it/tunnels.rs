//! Step 2, item 4, over real sockets: an upstream that answers 101 without
//! switching ("WebSocket smuggling") gets no raw channel; the client's next
//! bytes are still HTTP requests that authgate checks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An upstream that answers every request head with `reply`, then records
/// every byte that follows on the connection.
async fn lying_upstream(reply: &'static str) -> (std::net::SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let after = Arc::new(Mutex::new(Vec::new()));
    let record = after.clone();
    tokio::spawn(async move {
        let Ok(Ok((mut tcp, _))) =
            tokio::time::timeout(Duration::from_secs(10), listener.accept()).await
        else {
            return;
        };
        if raw::read_head(&mut tcp).await.is_none() {
            return;
        }
        let mut buf = [0u8; 4096];
        let _ = tcp.write_all(reply.as_bytes()).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            if n == 0 {
                break;
            }
            record.lock().expect("lock").extend_from_slice(&buf[..n]);
        }
    });
    (addr, after)
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

#[tokio::test]
async fn a_101_that_does_not_switch_is_a_502_and_later_requests_stay_http() {
    for reply in [
        // No Upgrade header at all.
        "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n\r\n",
        // The right protocol, the wrong proof.
        "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
        // Another protocol than the one asked for.
        "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n",
    ] {
        let (upstream, after) = lying_upstream(reply).await;
        let env = Env::start(|y| {
            y.routes =
                format!("routes:\n  - {{path_prefix: /, upstream: \"http://{upstream}\"}}\n");
        })
        .await;
        let mut tls = env.client().connect().await.unwrap();
        let upgrade = format!(
            "GET /api/ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\nAuthorization: Bearer {BOB_TOKEN}\r\n\r\n"
        );
        // The smuggled request: no credentials, a forged identity.
        let smuggled = "GET /admin/secret HTTP/1.1\r\nHost: localhost\r\nX-Remote-User: admin\r\nX-Remote-Group: ops\r\n\r\n";
        tls.write_all(upgrade.as_bytes()).await.unwrap();
        let reply_bytes = raw::exchange(
            tls,
            smuggled.as_bytes().to_vec(),
            raw::Until::Close(Duration::from_secs(3)),
        )
        .await;
        let statuses = reply_bytes.statuses();
        assert_eq!(
            statuses.first(),
            Some(&502),
            "{}: {}",
            reply.lines().nth(2).unwrap_or(""),
            reply_bytes.summary()
        );
        // The second request was read by authgate, as HTTP: refused.
        assert_eq!(statuses.get(1), Some(&401), "{}", reply_bytes.summary());
        tokio::time::sleep(Duration::from_millis(200)).await;
        let leaked = String::from_utf8_lossy(&after.lock().unwrap()).into_owned();
        assert!(
            !leaked.contains("X-Remote-User"),
            "smuggled to the upstream: {leaked:?}"
        );
        assert!(
            !leaked.contains("/admin"),
            "smuggled to the upstream: {leaked:?}"
        );
    }
}
