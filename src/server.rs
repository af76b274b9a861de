//! The accept loop: the only code that owns client sockets, shared by the
//! main and the admin listener.
//!
//! Per connection: a slot under [`Limits::max_connections`], the TLS
//! handshake under [`Limits::handshake_timeout`], then HTTP/2 or HTTP/1.1
//! chosen by ALPN (never by sniffing, which has no timer), with every request
//! handed to the listener's [`Connections`]. On shutdown the listener closes,
//! open connections are told to finish (HTTP/1 `Connection: close`, HTTP/2
//! GOAWAY), and the loop returns once they have, or after
//! [`Limits::shutdown_timeout`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use rustls_pki_types::CertificateDer;

use crate::body::Body;
use crate::metrics::{Metrics, ReasonLabel};
use crate::{clock, config, tls};

mod downstream;
mod http;

pub(crate) use downstream::{Downstream, Hold};
use downstream::{Held, IpSlot, PerIp};
use http::{Activity, Guarded, serve_h1, serve_h2};

/// What a listener does with its connections and their requests.
pub(crate) trait Connections: Send + Sync + 'static {
    /// What the requests of one connection share.
    type Conn: Send + Sync + 'static;

    /// A connection was accepted; `chain` is its verified client
    /// certificate chain, leaf first (empty without one).
    fn open(&self, downstream: Downstream, chain: &[CertificateDer<'static>]) -> Self::Conn;

    /// Answers one request of `conn`.
    fn call(
        self: Arc<Self>,
        conn: Arc<Self::Conn>,
        req: Request<Incoming>,
    ) -> impl Future<Output = Response<Body>> + Send + 'static;
}

/// How a listener's connections begin.
#[derive(Clone)]
pub(crate) enum Handshake {
    /// Plain HTTP/1.1 (the admin listener without `admin.tls`).
    Plain,
    /// TLS with the material in service.
    Tls {
        /// The material.
        acceptor: Arc<tls::Acceptor>,
        /// Which of its configurations to use.
        profile: Profile,
        /// Handshake counters, for the main listener.
        metrics: Option<Box<Metrics>>,
    },
}

/// The TLS configuration a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Profile {
    /// HTTP/2 and HTTP/1.1 by ALPN.
    Main,
    /// HTTP/1.1 only.
    Admin,
}

/// The limits of one listener.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    /// Concurrent connections; more are closed at accept.
    pub max_connections: usize,
    /// Concurrent connections from one client address.
    pub max_connections_per_ip: usize,
    /// TLS handshakes under way at once; more wait (within the deadline).
    pub max_handshakes: usize,
    /// TLS handshakes under way from one client address; more are closed
    /// at accept.
    pub max_handshakes_per_ip: usize,
    /// TLS handshake deadline (waiting for a handshake slot included).
    pub handshake_timeout: Duration,
    /// HTTP/1 request-head deadline (and idle keep-alive limit); also the
    /// deadline of an HTTP/2 connection's first request.
    pub header_read_timeout: Duration,
    /// Largest request head.
    pub max_header_bytes: usize,
    /// HTTP/2 connections with no new request for this long get GOAWAY.
    pub idle_timeout: Duration,
    /// How long shutdown waits for open connections.
    pub shutdown_timeout: Duration,
    /// Connections older than this are ended gracefully.
    pub max_connection_age: Duration,
}

impl Limits {
    /// The main listener's limits.
    pub(crate) fn main(l: &config::Limits) -> Self {
        Self {
            max_connections: l.max_connections,
            max_connections_per_ip: l.max_connections_per_ip,
            max_handshakes: l.max_handshakes,
            max_handshakes_per_ip: l.max_handshakes_per_ip,
            handshake_timeout: l.handshake_timeout,
            header_read_timeout: l.header_read_timeout,
            max_header_bytes: l.max_header_bytes,
            idle_timeout: l.idle_timeout,
            shutdown_timeout: l.shutdown_timeout,
            max_connection_age: l.max_connection_age,
        }
    }

    /// The admin listener's: its own connection cap, the main timeouts.
    pub(crate) fn admin(l: &config::Limits, a: &config::AdminConfig) -> Self {
        Self {
            max_connections: a.max_connections,
            max_connections_per_ip: a.max_connections,
            max_handshakes: a.max_connections,
            max_handshakes_per_ip: a.max_connections,
            ..Self::main(l)
        }
    }
}

/// Serves `listener` until `shutdown` resolves, then stops accepting, lets
/// open connections finish for up to `limits.shutdown_timeout`, and returns.
pub(crate) async fn serve<C: Connections>(
    listener: TcpListener,
    handshake: Handshake,
    conns: Arc<C>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_ip = Arc::new(PerIp::default());
    let handshakes = Handshakes {
        slots: Arc::new(Semaphore::new(limits.max_handshakes)),
        per_ip: Arc::new(PerIp::default()),
    };
    let tracker = TaskTracker::new();
    let cancel = CancellationToken::new();
    let deadline = CancellationToken::new();
    let limits = Arc::new(limits);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // One address cannot take every slot (a flood from one client).
        let Some(ip_slot) = per_ip.take(peer.ip(), limits.max_connections_per_ip) else {
            debug!(%peer, "per-address connection limit reached; closing");
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "connection limit reached; closing");
            continue;
        };
        // Nor every handshake: before it, a client has proven nothing.
        let Ok(pending) = handshakes.take(&handshake, peer, limits.max_handshakes_per_ip) else {
            continue;
        };
        let downstream = Downstream {
            peer,
            opened: std::time::Instant::now(),
            verified_in: 0,
            close: cancel.child_token(),
            hold: Some(Arc::new(Held {
                _slot: slot,
                _per_ip: ip_slot,
                _drain: tracker.token(),
                stop: deadline.clone(),
            })),
        };
        let (handshake, conns, limits) = (handshake.clone(), conns.clone(), limits.clone());
        tracker.spawn(async move {
            connection(&handshake, conns, &limits, tcp, downstream, pending).await;
        });
    }
    drop(listener);
    info!(
        connections = tracker.len(),
        "shutting down; draining connections"
    );
    cancel.cancel();
    tracker.close();
    if tokio::time::timeout(limits.shutdown_timeout, tracker.wait())
        .await
        .is_err()
    {
        warn!(
            connections = tracker.len(),
            "drain deadline passed; dropping connections"
        );
    }
    // Tunnels still open are closed now.
    deadline.cancel();
}

/// The handshakes under way, overall and per client address.
struct Handshakes {
    slots: Arc<Semaphore>,
    per_ip: Arc<PerIp>,
}

impl Handshakes {
    /// `peer`'s share of the handshakes, if its handshake is TLS; `Err`
    /// (counted) when its address has `cap` under way already.
    fn take(&self, handshake: &Handshake, peer: SocketAddr, cap: usize) -> Result<Pending, ()> {
        let Handshake::Tls { metrics, .. } = handshake else {
            return Ok(None);
        };
        let Some(ip) = self.per_ip.take(peer.ip(), cap) else {
            debug!(%peer, "per-address handshake limit reached; closing");
            count(metrics.as_deref().map(|m| &m.handshake_failures), "busy");
            return Err(());
        };
        Ok(Some((self.slots.clone(), ip)))
    }
}

/// A connection's place among the handshakes: the global budget to wait
/// for, and its address's share (already taken).
type Pending = Option<(Arc<Semaphore>, IpSlot)>;

async fn connection<C: Connections>(
    handshake: &Handshake,
    conns: Arc<C>,
    limits: &Limits,
    tcp: TcpStream,
    mut downstream: Downstream,
    pending: Pending,
) {
    let peer = downstream.peer;
    // Shutdown, a stale certificate or the age limit end the connection.
    let stop = downstream.close.clone();
    let _ = tcp.set_nodelay(true);
    let (acceptor, profile, metrics) = match handshake {
        Handshake::Plain => {
            // `downstream` (and the slot it holds) lives as long as this task.
            let conn = Arc::new(conns.open(downstream.clone(), &[]));
            let r = serve_h1(TokioIo::new(tcp), service(conns, conn, None), limits, stop);
            return log_end(peer, r.await);
        }
        Handshake::Tls {
            acceptor,
            profile,
            metrics,
        } => (acceptor, *profile, metrics.as_deref()),
    };
    // Read before the configuration: a reload in between makes the first
    // request re-verify, never skip a verification.
    downstream.verified_in = acceptor.generation();
    let accept = match profile {
        Profile::Main => acceptor.acceptor(),
        Profile::Admin => acceptor.admin_acceptor(),
    };
    // The wait for a handshake slot counts against the deadline; both
    // slots are given back when the handshake ends, either way.
    let handshaking = async move {
        let _slots = match &pending {
            Some((slots, _)) => Some(slots.clone().acquire_owned().await),
            None => None,
        };
        let done = accept.accept(tcp).await;
        drop(pending);
        done
    };
    let tls = match tokio::time::timeout(limits.handshake_timeout, handshaking).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let reason = handshake_failure(&e);
            debug!(%peer, error = %e, reason, "TLS handshake failed");
            count(metrics.map(|m| &m.handshake_failures), reason);
            return;
        }
        Err(_) => {
            debug!(%peer, "TLS handshake timed out");
            count(metrics.map(|m| &m.handshake_failures), "timeout");
            return;
        }
    };
    let (_, session) = tls.get_ref();
    // A resumed session skipped this handshake's client-certificate check:
    // the first request verifies the chain against the material in service.
    // (A reload already drops the sessions and tickets issued before it;
    // this holds even if one survived.)
    if session.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
        downstream.verified_in = tls::UNVERIFIED;
    }
    let h2 = profile == Profile::Main && session.alpn_protocol() == Some(b"h2");
    let chain = session.peer_certificates().unwrap_or_default();
    if let Some(m) = metrics {
        observe_client_cert(m, chain.first().map(AsRef::as_ref));
    }
    let conn = Arc::new(conns.open(downstream.clone(), chain));
    let io = TokioIo::new(tls);
    let result = if h2 {
        let activity = Arc::new(Activity::default());
        let svc = service(conns, conn, Some(activity.clone()));
        serve_h2(io, svc, limits, &activity, stop).await
    } else {
        serve_h1(io, service(conns, conn, None), limits, stop).await
    };
    log_end(peer, result);
}

/// The hyper service of one connection; counts activity for the HTTP/2
/// idle check when asked to.
fn service<C: Connections>(
    conns: Arc<C>,
    conn: Arc<C::Conn>,
    activity: Option<Arc<Activity>>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
> + Clone
+ Send
+ 'static {
    service_fn(move |req| {
        let call = conns.clone().call(conn.clone(), req);
        let guard = activity.as_ref().map(|a| a.start());
        async move {
            let resp = call.await;
            // Running until its body ends: a response still streaming (a
            // watch, `logs -f`) keeps the connection from being idle.
            Ok::<_, Infallible>(match guard {
                None => resp,
                Some(guard) => resp.map(|body| {
                    http_body_util::combinators::BoxBody::new(Guarded {
                        body,
                        _guard: guard,
                    })
                }),
            })
        }
    })
}

fn log_end(peer: SocketAddr, result: hyper::Result<()>) {
    if let Err(e) = result {
        debug!(%peer, error = %e, "connection ended with an error");
    }
}

fn observe_client_cert(m: &Metrics, leaf: Option<&[u8]>) {
    match leaf.and_then(crate::authn::x509::not_after) {
        Some(not_after) => {
            count(Some(&m.handshakes), "client_cert");
            let left = not_after.saturating_sub(clock::unix_now());
            m.client_cert_expiry.observe(left as f64);
        }
        None => count(Some(&m.handshakes), "no_client_cert"),
    }
}

fn count(family: Option<&Family<ReasonLabel, Counter>>, reason: &'static str) {
    if let Some(f) = family {
        f.get_or_create(&ReasonLabel { reason }).inc();
    }
}

/// The metric reason of a failed handshake.
fn handshake_failure(e: &std::io::Error) -> &'static str {
    use rustls::{CertificateError as C, Error as E};
    let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<E>()) else {
        return match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "eof",
            _ => "io",
        };
    };
    match tls {
        E::InvalidCertificate(c) => match c {
            C::Expired | C::ExpiredContext { .. } => "expired",
            C::NotValidYet | C::NotValidYetContext { .. } => "not_yet_valid",
            C::Revoked => "revoked",
            C::UnknownIssuer => "unknown_ca",
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => "bad_eku",
            _ => "bad_certificate",
        },
        E::NoCertificatesPresented => "no_cert",
        E::PeerIncompatible(_) => "incompatible",
        E::AlertReceived(_) => "alert_received",
        E::InvalidMessage(_)
        | E::InappropriateMessage { .. }
        | E::InappropriateHandshakeMessage { .. } => "protocol",
        _ => "other",
    }
}

#[cfg(test)]
mod tests;
