//! The gate under test, run in-process on 127.0.0.1, and every other call
//! the harness makes into authgate's library API.
//!
//! This is the one file of the harness that calls authgate's library
//! (`Config::from_yaml`, `App::build`, `App::spawn_background`,
//! `App::serve`, `admin::serve`, `tls::provider`, `install_crypto_provider`);
//! when those signatures change, this file is what to adapt.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use authgate::app::App;
use authgate::config::Config;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::crypto::CryptoProvider;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::net::{Client, TIMEOUT};
use crate::pki::Pki;

/// Installs authgate's process-wide rustls crypto provider, as `main` does.
/// Needed before building a kube client outside the gate.
pub fn install_crypto_provider() {
    authgate::install_crypto_provider();
}

/// The rustls crypto provider authgate serves TLS with, for test clients.
pub fn tls_provider() -> Arc<CryptoProvider> {
    authgate::tls::provider()
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
        install_crypto_provider();
        let config = Config::from_yaml(yaml).unwrap_or_else(|e| panic!("test config: {e}\n{yaml}"));
        let app = Arc::new(App::build(&config).await.expect("app builds"));
        Self::serve(app).await
    }

    /// Serves an already built app.
    pub async fn serve(app: Arc<App>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let background = CancellationToken::new();
        app.spawn_background(&background);
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
        let admin_addr = admin.local_addr().expect("admin local addr");
        tokio::spawn(authgate::admin::serve(
            admin,
            app.clone(),
            background.clone().cancelled_owned(),
        ));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.clone().serve(listener, async move {
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
        let tcp = TcpStream::connect(self.admin_addr)
            .await
            .expect("admin connect");
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .expect("admin handshake");
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))
            .expect("admin request");
        let resp = tokio::time::timeout(TIMEOUT, send.send_request(req))
            .await
            .expect("admin request timed out")
            .expect("admin response");
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .expect("admin body")
            .to_bytes();
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
            .map_or(0.0, |v| v.trim().parse().expect("metric value"))
    }

    /// Stops accepting, drains and waits for the server to return.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("server did not stop within 30 s")
            .expect("server task");
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
