//! Dialing an upstream of a given [`Kind`]: TCP, TLS (with the client
//! material in service, offering `h2` when the kind says so) or a Unix
//! socket. [`Connector`] is the `tower::Service<Uri>` the pooled client
//! uses; [`connect`] is the same dial for anyone holding a [`Kind`].

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use super::kind::{Kind, Transport};

/// How long a connect (TCP or Unix, plus the TLS handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to an upstream.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP (`http`, `h2c`).
    Tcp(TcpStream),
    /// TLS over TCP (`https`).
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// A Unix socket (`unix`).
    Unix(UnixStream),
}

impl Stream {
    /// Whether TLS selected `h2` by ALPN.
    pub fn negotiated_h2(&self) -> bool {
        match self {
            Self::Tls(t) => t.get_ref().1.alpn_protocol() == Some(b"h2"),
            Self::Tcp(_) | Self::Unix(_) => false,
        }
    }
}

/// Dials `dst` (scheme and authority; ignored for a Unix socket) as `kind`
/// says, within [`CONNECT_TIMEOUT`].
pub async fn connect(kind: &Kind, dst: &Uri) -> io::Result<Stream> {
    tokio::time::timeout(CONNECT_TIMEOUT, dial(kind, dst))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))?
}

async fn dial(kind: &Kind, dst: &Uri) -> io::Result<Stream> {
    match &kind.transport {
        Transport::Unix(path) => unix(path).await.map(Stream::Unix),
        Transport::Tcp => tcp(dst).await.map(Stream::Tcp),
        Transport::Tls(tls) => {
            let host = host(dst)?;
            let name = ServerName::try_from(host.to_owned()).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("{host:?}: {e}"))
            })?;
            let tcp = tcp(dst).await?;
            let connector = tokio_rustls::TlsConnector::from(tls.config(kind.offers_h2()));
            let stream = connector.connect(name, tcp).await?;
            Ok(Stream::Tls(Box::new(stream)))
        }
    }
}

async fn unix(path: &Path) -> io::Result<UnixStream> {
    UnixStream::connect(path)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// The host of `dst`, without the brackets of an IPv6 literal.
fn host(dst: &Uri) -> io::Result<&str> {
    let host = dst
        .host()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host"))?;
    Ok(host.trim_start_matches('[').trim_end_matches(']'))
}

async fn tcp(dst: &Uri) -> io::Result<TcpStream> {
    let default = match dst.scheme_str() {
        Some("https") => 443,
        _ => 80,
    };
    let port = dst.port_u16().unwrap_or(default);
    let tcp = TcpStream::connect((host(dst)?, port)).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// The pooled client's connector for one [`Kind`].
#[derive(Clone, Debug)]
pub struct Connector {
    kind: Kind,
}

impl Connector {
    /// Dials as `kind` says.
    pub fn new(kind: Kind) -> Self {
        Self { kind }
    }
}

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<Stream>>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let kind = self.kind.clone();
        Box::pin(async move { connect(&kind, &dst).await.map(TokioIo::new) })
    }
}

// === impl Stream ===

impl Connection for Stream {
    fn connected(&self) -> Connected {
        let c = Connected::new();
        if self.negotiated_h2() {
            c.negotiated_h2()
        } else {
            c
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, data),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
            Self::Unix(s) => Pin::new(s).poll_write(cx, data),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Self::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Tcp(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
            Self::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
