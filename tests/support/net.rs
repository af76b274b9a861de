//! Real network pieces on 127.0.0.1: a recording echo upstream, a TLS
//! client speaking HTTP/1.1 or HTTP/2, and the gate itself.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authgate::app::App;
use authgate::config::Config;
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
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::pki::{ClientCert, Pki};

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
            .map(|v| v.to_str().unwrap().to_owned())
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
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
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
        self.seen.lock().unwrap().clone()
    }

    /// How many requests reached the upstream.
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
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

fn answer(mut req: Request<Incoming>, record: &Mutex<Vec<Seen>>) -> Response<Full<Bytes>> {
    let seen = Seen {
        method: req.method().to_string(),
        path: req
            .uri()
            .path_and_query()
            .map_or_else(|| "/".into(), ToString::to_string),
        headers: req.headers().clone(),
    };
    record.lock().unwrap().push(seen.clone());
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
            .unwrap();
    }
    let body = serde_json::json!({"method": seen.method, "path": seen.path});
    Response::new(Full::new(Bytes::from(body.to_string())))
}

/// A running gate on 127.0.0.1:0 with its admin listener and background
/// tasks (TLS reload, API probe), stopped on drop.
pub struct Gate {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where the admin listener listens.
    pub admin_addr: SocketAddr,
    /// The runtime parts (for reload tests).
    pub app: Arc<App>,
    stop: Option<oneshot::Sender<()>>,
    background: CancellationToken,
    task: JoinHandle<()>,
}

impl Gate {
    /// Validates `yaml`, builds the app and serves it.
    pub async fn start(yaml: &str) -> Self {
        authgate::install_crypto_provider();
        let config = Config::from_yaml(yaml).unwrap_or_else(|e| panic!("test config: {e}\n{yaml}"));
        let app = Arc::new(App::build(&config).await.expect("app builds"));
        Self::serve(app).await
    }

    /// Serves an already built app.
    pub async fn serve(app: Arc<App>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let background = CancellationToken::new();
        app.spawn_background(&background);
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin_addr = admin.local_addr().unwrap();
        tokio::spawn(authgate::admin::run(
            admin,
            app.clone(),
            background.clone().cancelled_owned(),
        ));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(authgate::server::run(listener, app.clone(), async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            admin_addr,
            app,
            stop: Some(stop),
            background,
            task,
        }
    }

    /// `method path` on the admin listener (plain HTTP); (status, body).
    pub async fn admin(&self, method: &str, path: &str) -> (u16, String) {
        let tcp = TcpStream::connect(self.admin_addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = tokio::time::timeout(TIMEOUT, send.send_request(req))
            .await
            .unwrap()
            .unwrap();
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// The value of a metric line (`name{labels} value`) in `/metrics`, 0 if absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let (status, body) = self.admin("GET", "/metrics").await;
        assert_eq!(status, 200, "{body}");
        body.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .map_or(0.0, |v| v.trim().parse().unwrap())
    }

    /// Stops accepting, drains and waits for the server to return.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .unwrap()
            .unwrap();
    }

    /// A client of this gate trusting `pki`'s root.
    pub fn client(&self, pki: &Pki) -> Client {
        Client::new(self.addr, &pki.ca_der)
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.background.cancel();
        self.task.abort();
    }
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
        roots.add(ca.clone()).unwrap();
        Self {
            addr,
            roots,
            cert: None,
            h2: false,
        }
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

    fn tls_config(&self) -> Arc<ClientConfig> {
        let b = ClientConfig::builder_with_provider(authgate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(self.roots.clone());
        let mut c = match self.cert.as_deref() {
            Some((chain, key)) => b
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .unwrap(),
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
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| e.to_string())?;
        let connector = tokio_rustls::TlsConnector::from(self.tls_config());
        let name = ServerName::try_from("localhost").unwrap();
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
        self.send(b.body(Full::new(Bytes::new())).unwrap()).await
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
                *req.uri_mut() = uri.parse().unwrap();
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
            .unwrap();
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
