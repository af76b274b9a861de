//! HTTP/1.1 upstream connections owned by the client connection they
//! serve.
//!
//! Each client connection keeps its own idle upstream connections
//! ([`Local`]); a request takes one, or dials one, and the response body
//! gives it back to [`Local`] once it ends, for the next request. There is
//! no pool (no lock, no key hashed, no task spawned per request), and an
//! upstream connection never carries two client connections' requests.
//! Each upstream connection runs in a task of its own, spawned once when
//! it is dialed: driving it from the client connection's task instead was
//! measured slower (hyper's client wakes its waiter for every hand-off, and
//! each wake re-polled the whole client connection: `bench/results/PROOF.md`).
//!
//! Reuse follows nginx's upstream `keepalive`: a connection unused for
//! `limits.upstream_idle_timeout`, or that carried
//! `limits.upstream_max_requests`, is closed; a connection the upstream
//! closed is noticed before it is used (driving it reads the FIN), and a
//! request that was never written on a reused connection is sent once more
//! on a fresh one. A request that was written is never sent twice.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response, Uri};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use super::connect;
use super::kind::Kind;
use crate::proxy::trailers::NoTrailers;

/// What a request body is sent as.
type Outgoing = NoTrailers<Incoming>;

/// Idle upstream connections one client connection keeps. HTTP/1.1 needs
/// one at a time; HTTP/2 streams run at once, each on its own.
const MAX_IDLE: usize = 8;

/// Idle upstream connections all client connections keep together (the
/// pool this replaces kept 256 per upstream); beyond it a connection is
/// closed instead of kept.
const MAX_PARKED: usize = 1024;

/// Upstream connections parked now, process-wide.
static PARKED: AtomicUsize = AtomicUsize::new(0);

/// The idle upstream connections of one client connection.
#[derive(Clone, Debug, Default)]
pub struct Local(Arc<Mutex<Vec<Conn>>>);

impl Local {
    /// The most recently parked live connection to `to`, dropping those
    /// idle past `idle`.
    fn take(&self, to: usize, idle: Duration, now: Instant) -> Option<Conn> {
        let mut parked = self.0.lock().unwrap_or_else(|e| e.into_inner());
        parked.retain(|c| now.saturating_duration_since(c.parked_at) < idle && !c.tx.is_closed());
        let i = parked.iter().rposition(|c| c.to == to)?;
        let mut conn = parked.remove(i);
        conn.unpark();
        Some(conn)
    }

    /// Keeps `conn` for a later request, the oldest making room; closes it
    /// instead when the process keeps [`MAX_PARKED`] already.
    fn park(&self, mut conn: Conn) {
        if PARKED.fetch_add(1, Ordering::Relaxed) >= MAX_PARKED {
            PARKED.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        conn.parked_at = Instant::now();
        conn.idle.park(conn.parked_at);
        let mut parked = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if parked.len() >= MAX_IDLE {
            parked.remove(0);
        }
        parked.push(conn);
    }

    /// Idle connections kept (tests).
    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        self.0.lock().map_or(0, |p| p.len())
    }
}

/// One HTTP/1.1 upstream connection (its task drives it, and closes it
/// once it has been parked for the idle timeout).
struct Conn {
    tx: http1::SendRequest<Outgoing>,
    /// Since when it is parked, as its task reads it.
    idle: Arc<Idle>,
    /// The [`Dialer::id`] it was dialed by.
    to: usize,
    /// Requests sent on it.
    sent: usize,
    parked_at: Instant,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("to", &self.to)
            .field("sent", &self.sent)
            .field("live", &!self.tx.is_closed())
            .finish_non_exhaustive()
    }
}

impl Conn {
    fn unpark(&mut self) {
        self.idle.unpark();
    }

    /// Whether a parked connection can take a request now: still open, and
    /// done with the last one (a request whose body is still being written,
    /// say, holds it; such a connection is not waited for).
    fn usable(&self) -> bool {
        !self.tx.is_closed() && self.tx.is_ready()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.unpark();
    }
}

/// When a connection was parked (`None`: in use), which also means it holds
/// one of the [`PARKED`] slots. Shared with its task, so a connection that
/// ends while parked (idle timeout, upstream close) gives its slot back at
/// once, not when its client connection next looks.
#[derive(Debug, Default)]
struct Idle(Mutex<Option<Instant>>);

impl Idle {
    /// Parked at `at`, in a [`PARKED`] slot the caller has taken.
    fn park(&self, at: Instant) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(at);
    }

    /// In use again, or ended: gives its slot back (once).
    fn unpark(&self) {
        if self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .is_some()
        {
            PARKED.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// How long it has been parked, if it is.
    fn parked_for(&self, now: Instant) -> Option<Duration> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|at| now.saturating_duration_since(at))
    }
}

/// Drives `driver` until the connection ends, or until it has been parked
/// for `idle` (dropping it closes the socket; its sender then reads as
/// closed and is never handed out). One timer per connection, re-armed at
/// most once per `idle`.
async fn drive<F: Future>(driver: F, idle: Duration, parked: Arc<Idle>) {
    run(driver, idle, &parked).await;
    parked.unpark();
}

async fn run<F: Future>(driver: F, idle: Duration, parked: &Idle) {
    let mut driver = std::pin::pin!(driver);
    let mut wait = idle;
    loop {
        tokio::select! {
            _ = driver.as_mut() => return,
            () = tokio::time::sleep(wait) => match parked.parked_for(Instant::now()) {
                Some(d) if d >= idle => return,
                Some(d) => wait = idle - d,
                None => wait = idle,
            },
        }
    }
}

/// Sends requests to one HTTP/1.1 upstream on connections of the client
/// connection's [`Local`].
#[derive(Clone, Debug)]
pub struct Dialer {
    kind: Kind,
    /// What is dialed: scheme and authority.
    dst: Uri,
    /// Which upstream it is, among those a [`Local`] may hold connections to.
    id: usize,
    idle: Duration,
    max_requests: usize,
}

/// Why a request got no response.
#[derive(Debug)]
pub enum Failed {
    /// The dial failed.
    Connect(std::io::Error),
    /// The exchange failed.
    Http(hyper::Error),
}

impl Dialer {
    /// A dialer of `dst` as `kind` (an HTTP/1.1 kind), known to [`Local`]s
    /// as `id`.
    pub fn new(kind: Kind, dst: Uri, id: usize, idle: Duration, max_requests: usize) -> Self {
        Self {
            kind,
            dst,
            id,
            idle,
            max_requests,
        }
    }

    /// Sends `req` (origin-form URI, `Host` set) on a connection of
    /// `local`, or a new one; the response body drives the connection and
    /// gives it back to `local` once it ends.
    pub async fn send(
        &self,
        local: &Local,
        mut req: Request<Outgoing>,
    ) -> Result<Response<Driven>, Failed> {
        let mut reused = local.take(self.id, self.idle, Instant::now());
        loop {
            let mut conn = match reused.take() {
                Some(c) if c.usable() => c,
                // Closed by the upstream, or busy: a fresh one.
                Some(_) | None => self.dial().await?,
            };
            let fresh = conn.sent == 0;
            conn.sent += 1;
            match conn.tx.try_send_request(req).await {
                Ok(resp) => {
                    let keep = conn.sent < self.max_requests;
                    let home = keep.then(|| local.clone());
                    return Ok(resp.map(|body| Driven {
                        body,
                        conn: Some(conn),
                        home,
                        ended: false,
                    }));
                }
                Err(mut e) => match e.take_message() {
                    // Never written, on a connection that had served
                    // before (the upstream closed it as we took it): once
                    // more, on a fresh one.
                    Some(r) if !fresh => req = r,
                    _ => return Err(Failed::Http(e.into_error())),
                },
            }
        }
    }

    async fn dial(&self) -> Result<Conn, Failed> {
        let io = connect::connect(&self.kind, &self.dst)
            .await
            .map_err(Failed::Connect)?;
        let (tx, driver) = http1::Builder::new()
            .max_headers(100)
            .handshake(TokioIo::new(io))
            .await
            .map_err(Failed::Http)?;
        let idle = Arc::new(Idle::default());
        // Ends when the upstream closes, once every sender is gone and the
        // exchange under way is done, or after `idle` parked.
        tokio::spawn(drive(driver, self.idle, idle.clone()));
        Ok(Conn {
            tx,
            idle,
            to: self.id,
            sent: 0,
            parked_at: Instant::now(),
        })
    }
}

/// An upstream response body that, once it has ended, parks its
/// connection for the next request.
/// Dropped before its end (the client went away), it closes the
/// connection instead: what is left of the response would be read as the
/// next one's.
#[derive(Debug)]
pub struct Driven {
    body: Incoming,
    conn: Option<Conn>,
    /// Where the connection goes when the body ends; `None` when it has
    /// carried its last request.
    home: Option<Local>,
    ended: bool,
}

impl Body for Driven {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            this.ended = true;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Driven {
    fn drop(&mut self) {
        if !self.is_end_stream() {
            return;
        }
        if let (Some(conn), Some(home)) = (self.conn.take(), self.home.take())
            && !conn.tx.is_closed()
        {
            home.park(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection to nowhere (an in-memory pipe), as if dialed by `to`.
    async fn conn(to: usize) -> Conn {
        let (io, _peer) = tokio::io::duplex(64);
        let (tx, driver) = http1::handshake::<_, Outgoing>(TokioIo::new(io))
            .await
            .unwrap();
        tokio::spawn(driver);
        Conn {
            tx,
            idle: Arc::default(),
            to,
            sent: 1,
            parked_at: Instant::now(),
        }
    }

    #[tokio::test]
    async fn a_client_connection_keeps_few_idle_connections_and_only_fresh_ones() {
        let local = Local::default();
        for _ in 0..MAX_IDLE + 3 {
            local.park(conn(0).await);
        }
        assert_eq!(local.idle(), MAX_IDLE, "the oldest make room");
        local.park(conn(1).await);
        let now = Instant::now();
        assert_eq!(
            local.take(2, Duration::from_secs(60), now).map(|c| c.to),
            None
        );
        assert_eq!(
            local.take(1, Duration::from_secs(60), now).map(|c| c.to),
            Some(1)
        );
        // Unused for longer than the idle timeout: closed, not handed out.
        let later = now + Duration::from_secs(61);
        assert!(local.take(0, Duration::from_secs(60), later).is_none());
        assert_eq!(local.idle(), 0);
    }

    /// Review round 6: a parked connection that ends (here: its upstream
    /// goes away) gives its process-wide slot back at once. It used to hold
    /// it until its client connection next took a connection, so silent
    /// client connections could keep the whole cap with dead connections.
    #[tokio::test]
    async fn a_parked_connection_that_ends_gives_its_slot_back_at_once() {
        let (io, peer) = tokio::io::duplex(64);
        let (tx, driver) = http1::handshake::<_, Outgoing>(TokioIo::new(io))
            .await
            .unwrap();
        let idle = Arc::new(Idle::default());
        let task = tokio::spawn(drive(driver, Duration::from_secs(60), idle.clone()));
        let local = Local::default();
        local.park(Conn {
            tx,
            idle: idle.clone(),
            to: 0,
            sent: 1,
            parked_at: Instant::now(),
        });
        assert!(
            idle.parked_for(Instant::now()).is_some(),
            "parked, in a slot"
        );
        drop(peer);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        assert!(
            idle.parked_for(Instant::now()).is_none(),
            "its slot is given back"
        );
        assert_eq!(
            local.idle(),
            1,
            "still listed until the client connection looks"
        );
    }
}
