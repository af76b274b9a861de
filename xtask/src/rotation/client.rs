//! One client of `xtask rotation`: a keep-alive connection (HTTP/1.1 or
//! HTTP/2) sending a GET every interval with the certificate the controller
//! tells it to use, reconnecting when it moves to another certificate or
//! loses its connection, and filing every request on the [`Board`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::tally::{Board, CertId, Outcome, Validity};
use crate::Res;

/// Deadline of one connection setup, and of one request.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed connection attempt.
const BACKOFF: Duration = Duration::from_millis(50);

/// A client: its protocol, its certificates, and which one it uses now.
pub(crate) struct Client {
    pub(crate) h2: bool,
    /// Each certificate with a TLS config (own session cache) presenting it.
    pub(crate) certs: Vec<(CertId, Arc<ClientConfig>)>,
    /// Index into `certs`, set by the controller.
    pub(crate) which: Arc<AtomicUsize>,
}

enum Sender {
    H1(http1::SendRequest<Empty<Bytes>>),
    H2(http2::SendRequest<Empty<Bytes>>),
}

/// An open connection.
struct Conn {
    send: Sender,
    /// The certificate it presented.
    cert: usize,
    /// No request has been sent on it yet.
    fresh: bool,
    /// Its last answer was a refusal.
    refused: bool,
}

/// `cfg` offering only `h2` (or only `http/1.1`) by ALPN.
pub(crate) fn with_alpn(cfg: &Arc<ClientConfig>, h2: bool) -> Arc<ClientConfig> {
    let mut c = ClientConfig::clone(cfg);
    c.alpn_protocols = vec![if h2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    Arc::new(c)
}

/// What went wrong below HTTP, from the error and its sources.
fn transport_kind(e: &(dyn std::error::Error + 'static)) -> &'static str {
    let mut cur = Some(e);
    while let Some(e) = cur {
        let text = e.to_string();
        if text.contains("alert") || text.contains("certificate") {
            return "tls alert";
        }
        cur = e.source();
    }
    "closed"
}

async fn open(target: SocketAddr, cfg: &Arc<ClientConfig>, h2: bool) -> Res<Sender> {
    let tcp = TcpStream::connect(target).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost")?;
    let tls = tokio_rustls::TlsConnector::from(cfg.clone())
        .connect(name, tcp)
        .await?;
    let io = TokioIo::new(tls);
    Ok(if h2 {
        let (send, conn) = http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(conn);
        Sender::H2(send)
    } else {
        let (send, conn) = http1::handshake(io).await?;
        tokio::spawn(conn);
        Sender::H1(send)
    })
}

async fn get(send: &mut Sender) -> Outcome {
    let fut = async {
        let resp = match send {
            Sender::H1(s) => {
                s.ready().await?;
                let req = http::Request::get("/rotation").header(http::header::HOST, "localhost");
                s.send_request(req.body(Empty::new())?).await?
            }
            Sender::H2(s) => {
                s.ready().await?;
                let req = http::Request::get("https://localhost/rotation");
                s.send_request(req.body(Empty::new())?).await?
            }
        };
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok::<_, crate::Error>((status, body))
    };
    match tokio::time::timeout(TIMEOUT, fut).await {
        Err(_) => Outcome::Transport("timeout"),
        Ok(Err(e)) => Outcome::Transport(transport_kind(e.as_ref())),
        Ok(Ok((200, _))) => Outcome::Ok,
        Ok(Ok((status, body))) => {
            let reason = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["reason"].as_str().map(str::to_owned))
                .unwrap_or_default();
            Outcome::Refused(status, reason)
        }
    }
}

fn lock(board: &Mutex<Board>) -> std::sync::MutexGuard<'_, Board> {
    board
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `c` until the board says stop.
pub(crate) async fn run(c: Client, board: Arc<Mutex<Board>>, target: SocketAddr, every: Duration) {
    let mut conn: Option<Conn> = None;
    let mut next = Instant::now();
    loop {
        tokio::time::sleep_until(next).await;
        next = Instant::now().max(next + every);
        let idx = c.which.load(Ordering::Relaxed);
        let (id, cfg) = &c.certs[idx];
        let (phase, before) = {
            let b = lock(&board);
            if b.stop {
                return;
            }
            (b.phase, b.validity(*id))
        };
        // Moved to another certificate: a new connection presents it.
        if conn.as_ref().is_some_and(|k| k.cert != idx) {
            conn = None;
        }
        let mut k = match conn.take() {
            Some(k) => k,
            None => match tokio::time::timeout(TIMEOUT, open(target, cfg, c.h2)).await {
                Ok(Ok(send)) => Conn {
                    send,
                    cert: idx,
                    fresh: true,
                    refused: false,
                },
                Ok(Err(e)) => {
                    let v = before.through(lock(&board).validity(*id));
                    let out = Outcome::Transport(transport_kind(e.as_ref()));
                    lock(&board).record(phase, v, &out, true);
                    next += BACKOFF;
                    continue;
                }
                Err(_) => {
                    let v = before.through(lock(&board).validity(*id));
                    lock(&board).record(phase, v, &Outcome::Transport("timeout"), true);
                    continue;
                }
            },
        };
        let out = get(&mut k.send).await;
        {
            let mut b = lock(&board);
            let v: Validity = before.through(b.validity(*id));
            b.record(phase, v, &out, k.fresh);
            if k.refused {
                b.after_refusal(&out);
            }
        }
        k.fresh = false;
        k.refused = matches!(out, Outcome::Refused(..));
        if matches!(out, Outcome::Transport(_)) {
            next += BACKOFF;
        } else {
            conn = Some(k);
        }
    }
}
