//! The HTTP/1.1 and HTTP/2 drivers of one connection, with the limits
//! hyper does not enforce itself (an HTTP/2 first-request deadline and
//! idle check, the connection's age).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::Limits;
use crate::body::Body;

/// Request counters of one HTTP/2 connection, for its idle check.
#[derive(Default)]
pub(super) struct Activity {
    /// Requests started on the connection so far.
    pub(super) started: AtomicUsize,
    /// Requests whose handler is running.
    pub(super) active: AtomicUsize,
}

impl Activity {
    /// Counts a request as started and running until the guard drops, so a
    /// request whose stream is reset (its future dropped) is not left
    /// counted as running.
    pub(super) fn start(self: &Arc<Self>) -> ActiveGuard {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(self.clone())
    }
}

pub(super) struct ActiveGuard(Arc<Activity>);

/// A response body that keeps its request counted as active.
pub(super) struct Guarded {
    pub(super) body: Body,
    pub(super) _guard: ActiveGuard,
}

impl hyper::body::Body for Guarded {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(super) async fn serve_h1<I, S>(
    io: TokioIo<I>,
    svc: S,
    limits: &Limits,
    stop: CancellationToken,
) -> hyper::Result<()>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>,
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
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
        () = tokio::time::sleep(limits.max_connection_age) => {
            debug!("connection reached limits.max_connection_age; closing");
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

pub(super) async fn serve_h2<I, S>(
    io: TokioIo<I>,
    svc: S,
    limits: &Limits,
    activity: &Activity,
    stop: CancellationToken,
) -> hyper::Result<()>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Send
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
    let aged = tokio::time::sleep(limits.max_connection_age);
    tokio::pin!(aged);
    loop {
        tokio::select! {
            r = conn.as_mut() => return r,
            () = stop.cancelled() => {
                conn.as_mut().graceful_shutdown();
                return conn.await;
            }
            () = &mut aged => {
                debug!("connection reached limits.max_connection_age; sending GOAWAY");
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
