//! Real network pieces on 127.0.0.1: a recording echo upstream and a TLS
//! client speaking HTTP/1.1 or HTTP/2.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::gate::tls_provider;
use crate::pki::ClientCert;

/// Every test network operation gives up after this long.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A request as the upstream saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers.
    pub headers: HeaderMap,
}

impl Seen {
    /// All values of header `name`.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().expect("ASCII header value").to_owned())
            .collect()
    }
}

/// An HTTP/1.1 upstream that records requests and echoes them as JSON.
/// Requests with `Upgrade` get a 101 and then a byte echo.
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Upstream {
    /// Starts on 127.0.0.1:0.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let record = record.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let record = record.clone();
                        async move {
                            // `/slow` paths answer after 1.5 s (shutdown tests).
                            let slow = req.uri().path().contains("/slow");
                            let resp = answer(req, &record);
                            if slow {
                                tokio::time::sleep(Duration::from_millis(1500)).await;
                            }
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Self { addr, seen, task }
    }

    /// Requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("upstream record").clone()
    }

    /// How many requests reached the upstream.
    pub fn count(&self) -> usize {
        self.seen.lock().expect("upstream record").len()
    }

    /// The last request received.
    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the upstream saw no request")
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Records `req` and answers as [`Upstream`] does: a 101 and a byte echo
/// for an upgrade, else the method and path as JSON.
pub(crate) fn answer(
    mut req: Request<Incoming>,
    record: &Mutex<Vec<Seen>>,
) -> Response<Full<Bytes>> {
    let seen = Seen {
        method: req.method().to_string(),
        path: req
            .uri()
            .path_and_query()
            .map_or_else(|| "/".into(), ToString::to_string),
        headers: req.headers().clone(),
    };
    record.lock().expect("upstream record").push(seen.clone());
    if let Some(proto) = req.headers().get(http::header::UPGRADE).cloned() {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", proto)
            .body(Full::new(Bytes::new()))
            .expect("101 response");
    }
    let body = serde_json::json!({"method": seen.method, "path": seen.path});
    Response::new(Full::new(Bytes::from(body.to_string())))
}

/// A TLS client: HTTP/1.1 or HTTP/2, with or without a client certificate.
/// Each request uses a new connection, so failures are the request's own.
#[derive(Clone)]
pub struct Client {
    addr: SocketAddr,
    roots: rustls::RootCertStore,
    cert: Option<
        Arc<(
            Vec<CertificateDer<'static>>,
            rustls_pki_types::PrivateKeyDer<'static>,
        )>,
    >,
    h2: bool,
    /// The local address connections are made from (default: any).
    source: Option<IpAddr>,
}

/// A complete response.
#[derive(Debug)]
pub struct Resp {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Resp {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// The `reason` field of an error body.
    pub fn reason(&self) -> String {
        self.json()["reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

impl Client {
    /// A client of `addr` trusting `ca`.
    pub fn new(addr: SocketAddr, ca: &CertificateDer<'static>) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone()).expect("CA");
        Self {
            addr,
            roots,
            cert: None,
            h2: false,
            source: None,
        }
    }

    /// Connects from `ip` (e.g. `127.0.0.2`: another client address on
    /// loopback, which Linux routes without setup).
    pub fn from_ip(mut self, ip: IpAddr) -> Self {
        self.source = Some(ip);
        self
    }

    /// Presents `cert`.
    pub fn with_cert(mut self, cert: &ClientCert) -> Self {
        self.cert = Some(Arc::new((cert.chain.clone(), cert.key_der())));
        self
    }

    /// Speaks HTTP/2 (ALPN h2).
    pub fn http2(mut self) -> Self {
        self.h2 = true;
        self
    }

    /// The TLS configuration of its connections (a new one per call: no
    /// session is resumed across `connect`s unless a caller keeps one).
    pub fn tls_config(&self) -> Arc<ClientConfig> {
        let b = ClientConfig::builder_with_provider(tls_provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(self.roots.clone());
        let mut c = match self.cert.as_deref() {
            Some((chain, key)) => b
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .expect("client certificate"),
            None => b.with_no_client_auth(),
        };
        c.alpn_protocols = if self.h2 {
            vec![b"h2".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        Arc::new(c)
    }

    /// Opens a TLS connection (handshake done).
    pub async fn connect(&self) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
        let tcp = match self.source {
            None => TcpStream::connect(self.addr).await,
            Some(ip) => {
                let socket = match ip {
                    IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
                    IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
                }
                .map_err(|e| e.to_string())?;
                socket
                    .bind(SocketAddr::new(ip, 0))
                    .map_err(|e| format!("bind {ip}: {e}"))?;
                socket.connect(self.addr).await
            }
        }
        .map_err(|e| e.to_string())?;
        let connector = tokio_rustls::TlsConnector::from(self.tls_config());
        let name = ServerName::try_from("localhost").expect("server name");
        tokio::time::timeout(TIMEOUT, connector.connect(name, tcp))
            .await
            .map_err(|_| "handshake timed out".to_owned())?
            .map_err(|e| format!("handshake: {e}"))
    }

    /// One HTTP/2 connection for many concurrent requests.
    pub async fn h2_session(&self) -> H2Session {
        let tls = self
            .clone()
            .http2()
            .connect()
            .await
            .expect("TLS connection");
        let (send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .expect("h2 handshake");
        tokio::spawn(conn);
        H2Session { send }
    }

    /// `GET path` with extra headers.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Result<Resp, String> {
        let mut b = Request::get(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(b.body(Full::new(Bytes::new())).expect("request"))
            .await
    }

    /// `GET path` with a bearer token.
    pub async fn get_with_token(&self, path: &str, token: &str) -> Result<Resp, String> {
        self.get(path, &[("authorization", &format!("Bearer {token}"))])
            .await
    }

    /// Sends `req` on a new connection and reads the whole response.
    pub async fn send(&self, mut req: Request<Full<Bytes>>) -> Result<Resp, String> {
        let tls = self.connect().await?;
        let io = TokioIo::new(tls);
        let fut = async move {
            let resp = if self.h2 {
                let uri = format!("https://localhost{}", req.uri());
                *req.uri_mut() = uri.parse().expect("absolute URI");
                let (mut send, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .map_err(|e| format!("h2 handshake: {e}"))?;
                tokio::spawn(conn);
                send.send_request(req).await
            } else {
                req.headers_mut()
                    .insert("host", http::HeaderValue::from_static("localhost"));
                let (mut send, conn) = hyper::client::conn::http1::handshake(io)
                    .await
                    .map_err(|e| format!("h1 handshake: {e}"))?;
                tokio::spawn(conn);
                send.send_request(req).await
            }
            .map_err(|e| format!("request: {e:?}"))?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?
                .to_bytes();
            Ok(Resp {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(TIMEOUT, fut)
            .await
            .map_err(|_| "request timed out".to_owned())?
    }
}

/// A multiplexed HTTP/2 connection (cloneable; clones share the connection).
#[derive(Clone)]
pub struct H2Session {
    send: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
}

impl H2Session {
    /// `GET path` with a bearer token; the status only.
    pub async fn get_with_token(&mut self, path: &str, token: &str) -> Result<StatusCode, String> {
        let req = Request::get(format!("https://localhost{path}"))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let fut = async {
            self.send.ready().await.map_err(|e| e.to_string())?;
            let resp = self
                .send
                .send_request(req)
                .await
                .map_err(|e| e.to_string())?;
            let status = resp.status();
            resp.into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            Ok(status)
        };
        tokio::time::timeout(TIMEOUT, fut)
            .await
            .map_err(|_| "request timed out".to_owned())?
    }
}
