//! The accept loop over real loopback sockets: the connection cap, the
//! drain on shutdown, and its deadline.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, oneshot};

use super::*;
use crate::body;

/// Answers every request once `release` is notified.
#[derive(Default)]
struct Held {
    release: Notify,
    released: AtomicBool,
}

impl Connections for Held {
    type Conn = ();

    fn open(&self, _: Downstream, _: &[CertificateDer<'static>]) {}

    async fn call(self: Arc<Self>, _: Arc<()>, _: Request<Incoming>) -> Response<Body> {
        if !self.released.load(Ordering::SeqCst) {
            self.release.notified().await;
        }
        body::text(hyper::StatusCode::OK, "done")
    }
}

fn limits(max_connections: usize, shutdown_timeout: Duration) -> Limits {
    Limits {
        max_connections,
        max_connections_per_ip: max_connections,
        max_handshakes: max_connections,
        max_handshakes_per_ip: max_connections,
        handshake_timeout: Duration::from_secs(5),
        header_read_timeout: Duration::from_secs(5),
        max_header_bytes: 16 * 1024,
        idle_timeout: Duration::from_secs(60),
        shutdown_timeout,
        max_connection_age: Duration::from_secs(3600),
    }
}

async fn start(
    conns: Arc<Held>,
    limits: Limits,
) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, Handshake::Plain, conns, limits, async {
        let _ = stopped.await;
    }));
    (addr, stop, task)
}

async fn send_request(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    s
}

/// Reads until EOF (or 5 s) and returns what came.
async fn read_all(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_accept() {
    let held = Arc::new(Held::default());
    let (addr, stop, task) = start(held.clone(), limits(2, Duration::from_secs(5))).await;
    let mut busy = vec![send_request(addr).await, send_request(addr).await];
    // Let the two requests reach the service and hold their slots.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = send_request(addr).await;
    assert_eq!(
        read_all(&mut third).await,
        "",
        "the third connection was served"
    );
    // Released, the two held requests are answered.
    held.released.store(true, Ordering::SeqCst);
    held.release.notify_waiters();
    for s in &mut busy {
        s.write_all(b"").await.unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    }
    drop(busy);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_and_closes_the_listener() {
    let held = Arc::new(Held::default());
    let (addr, stop, task) = start(held.clone(), limits(8, Duration::from_secs(5))).await;
    let mut in_flight = send_request(addr).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = stop.send(());
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The listener is closed: new connections are refused.
    assert!(TcpStream::connect(addr).await.is_err());
    assert!(
        !task.is_finished(),
        "the drain did not wait for the request"
    );
    held.released.store(true, Ordering::SeqCst);
    held.release.notify_waiters();
    let resp = read_all(&mut in_flight).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp:?}");
    // Told to finish, the connection asked the client to close.
    assert!(
        resp.to_ascii_lowercase().contains("connection: close"),
        "{resp:?}"
    );
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn the_drain_gives_up_after_its_deadline() {
    let held = Arc::new(Held::default());
    let (addr, stop, task) = start(held, limits(8, Duration::from_millis(300))).await;
    let _stuck = send_request(addr).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = stop.send(());
    // The request is never released; the loop returns after 300 ms anyway.
    tokio::time::timeout(Duration::from_secs(3), task)
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn a_dropped_request_is_not_left_counted_as_active() {
    let activity = Arc::new(Activity::default());
    let guard = activity.start();
    assert_eq!(activity.active.load(Ordering::Relaxed), 1);
    // A reset HTTP/2 stream drops its future, and with it the guard.
    drop(guard);
    assert_eq!(activity.active.load(Ordering::Relaxed), 0);
    assert_eq!(activity.started.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn one_address_cannot_take_every_slot() {
    let held = Arc::new(Held::default());
    let mut l = limits(8, Duration::from_secs(5));
    l.max_connections_per_ip = 2;
    let (addr, stop, task) = start(held.clone(), l).await;
    let mut busy = vec![send_request(addr).await, send_request(addr).await];
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A third from 127.0.0.1 is closed unanswered ...
    let mut third = send_request(addr).await;
    assert_eq!(read_all(&mut third).await, "");
    // ... while another address is served.
    let other = tokio::net::TcpSocket::new_v4().unwrap();
    other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = other.connect(addr).await.unwrap();
    other
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    held.released.store(true, Ordering::SeqCst);
    held.release.notify_waiters();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), other.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // Closed connections give their address's share back.
    drop(busy.drain(..));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = send_request(addr).await;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), again.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

/// Per-address shares count an IPv6 client by its /64: one host holds a
/// whole /64, and 1024 of its addresses must not take 1024 shares.
#[test]
fn an_ipv6_client_is_counted_by_its_64() {
    let t = Arc::new(PerIp::default());
    let held: Vec<_> = (0..1024u16)
        .map(|i| {
            t.take(
                std::net::IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, i)),
                64,
            )
        })
        .collect();
    assert_eq!(held.iter().filter(|s| s.is_some()).count(), 64);
    // Another /64 is another client; a mapped IPv4 address is that IPv4.
    let other = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1);
    assert!(t.take(std::net::IpAddr::V6(other), 64).is_some());
    let v4: std::net::IpAddr = "192.0.2.1".parse().unwrap();
    let _one = t.take(v4, 1).unwrap();
    let mapped: std::net::IpAddr = "::ffff:192.0.2.1".parse().unwrap();
    assert!(t.take(mapped, 1).is_none());
}
