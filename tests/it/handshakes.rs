//! The handshake budget over real sockets: connections that have proven
//! nothing yet (their TLS handshake is under way) are bounded per client
//! address and overall, and a stalled client cannot keep others out.

use std::net::IpAddr;
use std::time::Duration;

use testkit::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

/// A TCP connection that never starts its handshake.
async fn stalled(env: &Env) -> TcpStream {
    TcpStream::connect(env.gate.addr).await.expect("connect")
}

/// Whether the server closed `s` (EOF) within `wait`.
async fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout(wait, s.read(&mut b)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn one_address_cannot_hold_every_handshake() {
    let env = Env::start(|y| {
        y.rest = "limits: {max_handshakes_per_ip: 2, handshake_timeout: 30s}\n".into();
    })
    .await;
    let mut held = vec![stalled(&env).await, stalled(&env).await];
    // Let the accept loop take both before the third arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = stalled(&env).await;
    assert!(
        closed_within(&mut third, Duration::from_secs(5)).await,
        "a third pending handshake from one address is closed at accept"
    );
    // The two stalled ones are still open (their deadline is 30 s away).
    assert!(!closed_within(&mut held[0], Duration::from_millis(100)).await);
    assert_eq!(
        env.gate
            .metric("authgate_tls_handshake_failures_total{reason=\"busy\"}")
            .await,
        1.0
    );

    // Another address is another client.
    let r = env
        .client()
        .from_ip(OTHER)
        .get_with_token("/api/x", BOB_TOKEN)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // The same address, once its stalled handshakes are gone.
    held.clear();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = env
        .client()
        .get_with_token("/api/x", BOB_TOKEN)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn beyond_the_global_budget_a_handshake_waits_for_a_slot() {
    let env = Env::start(|y| {
        y.rest = "limits: {max_handshakes: 1, handshake_timeout: 30s}\n".into();
    })
    .await;
    let held = stalled(&env).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = env.client().from_ip(OTHER);
    let waiting = tokio::spawn(async move { client.get_with_token("/api/x", BOB_TOKEN).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "the only slot is held");
    assert_eq!(env.upstream.count(), 0);
    drop(held);
    let r = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("served once the slot is free")
        .unwrap()
        .unwrap();
    assert_eq!(r.status, 200);
}
