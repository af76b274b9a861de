//! The accept loop: the only code that owns client sockets.
//!
//! Per connection: a slot under `limits.max_connections`, the TLS handshake
//! under `limits.handshake_timeout`, the client certificate mapped once, then
//! HTTP/2 or HTTP/1.1 chosen by ALPN (never by sniffing, which has no timer),
//! with every request handed to [`crate::gate::Gate::handle`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::app::App;
use crate::config::Limits;
use crate::metrics::ReasonLabel;

/// Serves `listener` until `shutdown` resolves, then stops accepting, lets
/// in-flight requests finish for up to `limits.shutdown_timeout`, and returns.
pub async fn run(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let slots = Arc::new(Semaphore::new(app.limits.max_connections));
    let tracker = TaskTracker::new();
    let cancel = CancellationToken::new();
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
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "connection limit reached; closing");
            continue;
        };
        let app = app.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            serve_connection(&app, tcp, peer, cancel).await;
            drop(slot);
        });
    }
    drop(listener);
    info!(
        connections = tracker.len(),
        "shutting down; draining connections"
    );
    cancel.cancel();
    tracker.close();
    if tokio::time::timeout(app.limits.shutdown_timeout, tracker.wait())
        .await
        .is_err()
    {
        warn!(
            connections = tracker.len(),
            "drain deadline passed; dropping connections"
        );
    }
}

async fn serve_connection(app: &App, tcp: TcpStream, peer: SocketAddr, cancel: CancellationToken) {
    let _ = tcp.set_nodelay(true);
    let handshake = app.tls.acceptor().accept(tcp);
    let tls = match tokio::time::timeout(app.limits.handshake_timeout, handshake).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let reason = handshake_failure(&e);
            debug!(%peer, error = %e, reason, "TLS handshake failed");
            count(&app.metrics.handshake_failures, reason);
            return;
        }
        Err(_) => {
            debug!(%peer, "TLS handshake timed out");
            count(&app.metrics.handshake_failures, "timeout");
            return;
        }
    };
    let (_, session) = tls.get_ref();
    let h2 = session.alpn_protocol() == Some(b"h2");
    let leaf = session.peer_certificates().and_then(|c| c.first());
    match leaf.and_then(|l| crate::authn::x509::not_after(l)) {
        Some(not_after) => {
            count(&app.metrics.handshakes, "client_cert");
            let left = not_after.saturating_sub(crate::tls::unix_now());
            app.metrics.client_cert_expiry.observe(left as f64);
        }
        None => count(&app.metrics.handshakes, "no_client_cert"),
    }
    let conn = Arc::new(app.gate.conn_info(peer, leaf.map(AsRef::as_ref)));
    let gate = app.gate.clone();
    let activity = Arc::new(Activity::default());
    let seen = activity.clone();
    let svc = service_fn(move |req: hyper::Request<Incoming>| {
        let gate = gate.clone();
        let conn = conn.clone();
        let seen = seen.clone();
        async move {
            seen.started.fetch_add(1, Ordering::Relaxed);
            seen.active.fetch_add(1, Ordering::Relaxed);
            let resp = gate.handle(&conn, req).await;
            seen.active.fetch_sub(1, Ordering::Relaxed);
            Ok::<_, Infallible>(resp)
        }
    });
    let io = TokioIo::new(tls);
    let result = if h2 {
        serve_h2(io, svc, &app.limits, &activity, cancel).await
    } else {
        serve_h1(io, svc, &app.limits, cancel).await
    };
    if let Err(e) = result {
        debug!(%peer, error = %e, "connection ended with an error");
    }
}

fn count(family: &Family<ReasonLabel, Counter>, reason: &'static str) {
    family.get_or_create(&ReasonLabel { reason }).inc();
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

/// Request counters of one connection, for the HTTP/2 idle check.
#[derive(Default)]
struct Activity {
    /// Requests started on the connection so far.
    started: AtomicUsize,
    /// Requests whose handler is running.
    active: AtomicUsize,
}

async fn serve_h1<S>(
    io: TokioIo<tokio_rustls::server::TlsStream<TcpStream>>,
    svc: S,
    limits: &Limits,
    cancel: CancellationToken,
) -> hyper::Result<()>
where
    S: hyper::service::Service<
            hyper::Request<Incoming>,
            Response = hyper::Response<crate::proxy::Body>,
            Error = Infallible,
        >,
    S::Future: Send + 'static,
{
    let mut b = http1::Builder::new();
    // The header timer starts with the connection and restarts after each
    // response, so it also closes silent and idle keep-alive connections.
    b.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_headers(100);
    let conn = b.serve_connection(io, svc).with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => r,
        () = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

async fn serve_h2<S>(
    io: TokioIo<tokio_rustls::server::TlsStream<TcpStream>>,
    svc: S,
    limits: &Limits,
    activity: &Activity,
    cancel: CancellationToken,
) -> hyper::Result<()>
where
    S: hyper::service::Service<
            hyper::Request<Incoming>,
            Response = hyper::Response<crate::proxy::Body>,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut b = http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .max_concurrent_streams(250)
        .max_pending_accept_reset_streams(50)
        .max_local_error_reset_streams(256)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    let conn = b.serve_connection(io, svc);
    tokio::pin!(conn);
    // hyper has no HTTP/2 header or idle timeout. Like HTTP/1's header
    // timer, the first request must start within `header_read_timeout`, or
    // the connection is closed (a silent client, or one that never finishes
    // the preface). Later, it is closed once no request has started or been
    // handled for a whole `idle_timeout` tick (responses already streaming
    // are not cut; GOAWAY only refuses new streams).
    let first_request = tokio::time::sleep(limits.header_read_timeout);
    tokio::pin!(first_request);
    let mut idle = tokio::time::interval(limits.idle_timeout);
    idle.tick().await;
    let mut last_started = usize::MAX;
    let mut awaiting_first = true;
    loop {
        tokio::select! {
            r = conn.as_mut() => return r,
            () = cancel.cancelled() => {
                conn.as_mut().graceful_shutdown();
                return conn.await;
            }
            () = &mut first_request, if awaiting_first => {
                awaiting_first = false;
                if activity.started.load(Ordering::Relaxed) == 0 {
                    debug!("no HTTP/2 request within the header read timeout; closing");
                    break;
                }
            }
            _ = idle.tick() => {
                let started = activity.started.load(Ordering::Relaxed);
                if started == last_started && activity.active.load(Ordering::Relaxed) == 0 {
                    debug!("closing idle HTTP/2 connection");
                    break;
                }
                last_started = started;
            }
        }
    }
    // GOAWAY, then a bounded wait: a peer that never lets the connection
    // finish (e.g. mid-preface) is dropped.
    conn.as_mut().graceful_shutdown();
    tokio::time::timeout(limits.header_read_timeout, conn)
        .await
        .unwrap_or(Ok(()))
}
