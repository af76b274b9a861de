//! Upstreams of every kind authgate speaks to, on loopback: an h2c
//! gRPC-style streaming echo, HTTP/1.1 on a Unix socket, and https
//! (ALPN `h2` or HTTP/1.1 only; a client certificate optional or
//! required). Each records what it saw.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, Version};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::gate::tls_provider;
use crate::net::{Seen, answer};
use crate::pki::Pki;

/// A streaming body fed through a channel: send frames (data, then
/// trailers) while the other side is already reading.
pub struct ChannelBody {
    rx: mpsc::Receiver<Frame<Bytes>>,
}

/// A body and the sender that feeds it; dropping the sender ends it.
pub fn channel_body() -> (mpsc::Sender<Frame<Bytes>>, ChannelBody) {
    let (tx, rx) = mpsc::channel(16);
    (tx, ChannelBody { rx })
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|f| f.map(Ok))
    }
}

/// A request a kind upstream saw, with its HTTP version and the client
/// certificate of its connection.
#[derive(Clone, Debug)]
pub struct SeenBy {
    /// Method, path and headers.
    pub seen: Seen,
    /// The version it arrived in.
    pub version: Version,
    /// The leaf certificate the connection presented (https only).
    pub peer_cert: Option<CertificateDer<'static>>,
}

type Record = Arc<Mutex<Vec<SeenBy>>>;

fn seen_of(req: &Request<Incoming>) -> Seen {
    Seen {
        method: req.method().to_string(),
        path: req
            .uri()
            .path_and_query()
            .map_or_else(|| "/".into(), ToString::to_string),
        headers: req.headers().clone(),
    }
}

fn push(record: &Record, seen: SeenBy) {
    record.lock().expect("upstream record").push(seen);
}

/// What a kind upstream saw so far.
fn list(record: &Record) -> Vec<SeenBy> {
    record.lock().expect("upstream record").clone()
}

/// An h2c (HTTP/2, prior knowledge) gRPC-style echo. Each request data
/// frame `m` is answered at once with a response data frame `echo:m`, so
/// a client can wait for each answer before sending on (streaming both
/// ways). When the request ends, the response ends with the trailers
/// `grpc-status: 0` and `grpc-message: <n> messages`.
pub struct GrpcUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    seen: Record,
    task: JoinHandle<()>,
}

impl GrpcUpstream {
    /// Starts on 127.0.0.1:0.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let seen: Record = Arc::default();
        let record = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        push(
                            &record,
                            SeenBy {
                                seen: seen_of(&req),
                                version: req.version(),
                                peer_cert: None,
                            },
                        );
                        async move { Ok::<_, Infallible>(echo_stream(req)) }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Self { addr, seen, task }
    }

    /// Requests received so far.
    pub fn seen(&self) -> Vec<SeenBy> {
        list(&self.seen)
    }
}

impl Drop for GrpcUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The streaming echo of [`GrpcUpstream`].
fn echo_stream(req: Request<Incoming>) -> Response<ChannelBody> {
    let (tx, body) = channel_body();
    tokio::spawn(async move {
        let mut inbound = req.into_body();
        let mut n = 0;
        while let Some(Ok(frame)) = inbound.frame().await {
            // The end of a stream may come as an empty DATA frame.
            if let Ok(data) = frame.into_data()
                && !data.is_empty()
            {
                n += 1;
                let mut echo = b"echo:".to_vec();
                echo.extend_from_slice(&data);
                if tx.send(Frame::data(Bytes::from(echo))).await.is_err() {
                    return;
                }
            }
        }
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let message = HeaderValue::try_from(format!("{n} messages")).expect("header value");
        trailers.insert("grpc-message", message);
        let _ = tx.send(Frame::trailers(trailers)).await;
    });
    Response::builder()
        .header("content-type", "application/grpc")
        .body(body)
        .expect("response")
}

/// The HTTP/1.1 recording echo of [`crate::Upstream`], on a Unix socket.
pub struct UnixUpstream {
    /// The socket.
    pub path: PathBuf,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl UnixUpstream {
    /// Listens on a new socket in a temporary directory.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("up.sock");
        let listener = UnixListener::bind(&path).expect("bind unix socket");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let resp = answer(req, &record);
                        async move { Ok::<_, Infallible>(resp) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Self {
            path,
            seen,
            task,
            _dir: dir,
        }
    }

    /// Requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("upstream record").clone()
    }
}

impl Drop for UnixUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How a [`TlsUpstream`] serves.
#[derive(Clone, Copy, Debug, Default)]
pub struct TlsOpts {
    /// Offer `h2` by ALPN (else `http/1.1` only).
    pub h2: bool,
    /// Refuse handshakes without a client certificate of the PKI's root.
    pub require_client_cert: bool,
    /// Close each HTTP/1.1 connection after one response (so every request
    /// is a new handshake).
    pub close_after_each: bool,
}

/// An https recording echo with the PKI's server certificate (`localhost`,
/// `127.0.0.1`), verifying client certificates against the PKI's root.
pub struct TlsUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    seen: Record,
    failed: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl TlsUpstream {
    /// Starts on 127.0.0.1:0.
    pub async fn start(pki: &Pki, opts: TlsOpts) -> Self {
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config(pki, opts));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (seen, failed): (Record, Arc<AtomicUsize>) = Default::default();
        let (record, failures) = (seen.clone(), failed.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, record, failures) =
                    (acceptor.clone(), record.clone(), failures.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        failures.fetch_add(1, Ordering::SeqCst);
                        return;
                    };
                    let conn = tls.get_ref().1;
                    let peer = conn.peer_certificates().and_then(|c| c.first()).cloned();
                    let h2 = conn.alpn_protocol() == Some(b"h2");
                    serve_tls(tls, h2, opts, peer, record).await;
                });
            }
        });
        Self {
            addr,
            seen,
            failed,
            task,
        }
    }

    /// Requests received so far.
    pub fn seen(&self) -> Vec<SeenBy> {
        list(&self.seen)
    }

    /// Handshakes that failed (e.g. no client certificate where one is required).
    pub fn failed_handshakes(&self) -> usize {
        self.failed.load(Ordering::SeqCst)
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn server_config(pki: &Pki, opts: TlsOpts) -> Arc<ServerConfig> {
    let (cert, key) = pki.server_pair(7001);
    let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("server chain");
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("server key");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).expect("root");
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), tls_provider());
    let verifier = if opts.require_client_cert {
        verifier
    } else {
        verifier.allow_unauthenticated()
    };
    let mut c = ServerConfig::builder_with_provider(tls_provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_client_cert_verifier(verifier.build().expect("verifier"))
        .with_single_cert(chain, key)
        .expect("server config");
    c.alpn_protocols = if opts.h2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Arc::new(c)
}

async fn serve_tls(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    h2: bool,
    opts: TlsOpts,
    peer: Option<CertificateDer<'static>>,
    record: Record,
) {
    let svc = service_fn(move |req: Request<Incoming>| {
        push(
            &record,
            SeenBy {
                seen: seen_of(&req),
                version: req.version(),
                peer_cert: peer.clone(),
            },
        );
        let resp = answer(req, &Mutex::new(Vec::new()));
        async move { Ok::<_, Infallible>(resp) }
    });
    let io = TokioIo::new(tls);
    if h2 {
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, svc)
            .await;
    } else {
        let _ = hyper::server::conn::http1::Builder::new()
            .keep_alive(!opts.close_after_each)
            .serve_connection(io, svc)
            .with_upgrades()
            .await;
    }
}
