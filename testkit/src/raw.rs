//! Raw bytes on the wire, for inputs that well-behaved clients refuse to
//! produce: HTTP/1.1 requests written byte for byte over TLS, hand-made TLS
//! records on plain TCP, and hand-made HTTP/2 frames over TLS (ALPN h2).
//!
//! Every read here is bounded by a deadline; nothing waits forever.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::gate::tls_provider;
use crate::{BOB_TOKEN, ClientCert, Env, TIMEOUT, Yaml};

/// One HTTP/1.x response parsed from raw bytes.
#[derive(Clone, Debug)]
pub struct RawResp {
    /// Status code.
    pub status: u16,
    /// Status line and headers, as text.
    pub head: String,
    /// Body (de-chunked).
    pub body: Vec<u8>,
}

impl RawResp {
    /// The `reason` field of an authgate error body, or "".
    pub fn reason(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["reason"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// Everything a connection answered before it closed or went quiet.
#[derive(Debug, Default)]
pub struct Reply {
    /// Complete responses, in order.
    pub responses: Vec<RawResp>,
    /// The server closed the connection (EOF or reset).
    pub closed: bool,
    /// Every byte received.
    pub raw: Vec<u8>,
}

impl Reply {
    /// Statuses of the complete responses.
    pub fn statuses(&self) -> Vec<u16> {
        self.responses.iter().map(|r| r.status).collect()
    }

    /// `"401 invalid_token"`, `"closed"`, ... for assertion messages.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .responses
            .iter()
            .map(|r| format!("{} {}", r.status, r.reason()))
            .collect();
        if self.closed {
            parts.push("closed".into());
        }
        if parts.is_empty() {
            parts.push(format!("no response ({} bytes)", self.raw.len()));
        }
        parts.join(", ")
    }
}

/// When to stop reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    /// After the first complete response (or a close).
    FirstResponse,
    /// When the server closes, or after this long without a close.
    Close(Duration),
}

/// Parses as many complete responses as `buf` holds. `eof` means a body
/// without a length runs to the end of `buf`.
pub fn parse_responses(buf: &[u8], eof: bool) -> Vec<RawResp> {
    let mut out = Vec::new();
    let mut rest = buf;
    while let Some(end) = find(rest, b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(0);
        let after = &rest[end + 4..];
        let mut resp = RawResp {
            status,
            head,
            body: Vec::new(),
        };
        let chunked = resp
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let length = resp.header("content-length").and_then(|v| v.parse().ok());
        let used = if (100..200).contains(&status) || status == 204 || status == 304 {
            0
        } else if chunked {
            match dechunk(after) {
                Some((body, used)) => {
                    resp.body = body;
                    used
                }
                None => break,
            }
        } else if let Some(n) = length {
            if after.len() < n {
                break;
            }
            resp.body = after[..n].to_vec();
            n
        } else if eof {
            resp.body = after.to_vec();
            after.len()
        } else {
            break;
        };
        out.push(resp);
        rest = &after[used..];
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A chunked body at the start of `buf`: the body and the bytes it used.
fn dechunk(buf: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let line_end = at + find(&buf[at..], b"\r\n")?;
        let size = std::str::from_utf8(&buf[at..line_end]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            let end = at + find(&buf[at..], b"\r\n")?;
            return Some((body, end + 2));
        }
        body.extend_from_slice(buf.get(at..at + size)?);
        at += size + 2;
    }
}

/// Writes `bytes` (concurrently, so a server that answers early or stops
/// reading cannot deadlock us) and reads until `until`. Write errors are
/// ignored: a server may close while we are still writing.
pub async fn exchange<S>(stream: S, bytes: Vec<u8>, until: Until) -> Reply
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&bytes).await;
        let _ = wr.flush().await;
        wr
    });
    let mut reply = Reply::default();
    let limit = match until {
        Until::FirstResponse => TIMEOUT,
        Until::Close(d) => d,
    };
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, rd.read(&mut buf)).await {
            Err(_) => break,
            Ok(Ok(0) | Err(_)) => {
                reply.closed = true;
                break;
            }
            Ok(Ok(n)) => reply.raw.extend_from_slice(&buf[..n]),
        }
        if until == Until::FirstResponse && !parse_responses(&reply.raw, false).is_empty() {
            break;
        }
    }
    reply.responses = parse_responses(&reply.raw, reply.closed);
    writer.abort();
    reply
}

/// Sends raw HTTP/1.1 bytes on a new TLS connection and reads one response.
pub async fn h1(env: &Env, bytes: impl Into<Vec<u8>>) -> Reply {
    let tls = env.client().connect().await.expect("TLS connection");
    exchange(tls, bytes.into(), Until::FirstResponse).await
}

/// Sends raw HTTP/1.1 bytes on a new TLS connection and reads until the
/// server closes (or `wait` passes).
pub async fn h1_until_close(env: &Env, bytes: impl Into<Vec<u8>>, wait: Duration) -> Reply {
    let tls = env.client().connect().await.expect("TLS connection");
    exchange(tls, bytes.into(), Until::Close(wait)).await
}

/// `GET path` with bob's token and `extra` header lines (each ending in CRLF).
pub fn get_as_bob(path: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {BOB_TOKEN}\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// Raw bytes on plain TCP: what came back, whether the server closed, and
/// how long it took. With `eof`, our side shuts down writing after `bytes`.
pub async fn tcp(addr: SocketAddr, bytes: &[u8], eof: bool, wait: Duration) -> TcpReply {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).await.expect("TCP connect");
    let _ = s.write_all(bytes).await;
    if eof {
        let _ = s.shutdown().await;
    }
    let mut reply = TcpReply::default();
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => break,
            Ok(Ok(0) | Err(_)) => {
                reply.closed = true;
                break;
            }
            Ok(Ok(n)) => reply.bytes.extend_from_slice(&buf[..n]),
        }
    }
    reply.elapsed = start.elapsed();
    reply
}

/// What a plain TCP peer saw.
#[derive(Debug, Default)]
pub struct TcpReply {
    /// Bytes received.
    pub bytes: Vec<u8>,
    /// The server closed the connection.
    pub closed: bool,
    /// Time from connect to close (or giving up).
    pub elapsed: Duration,
}

impl TcpReply {
    /// Whether the server sent a TLS handshake record (a ServerHello).
    pub fn server_hello(&self) -> bool {
        self.bytes.first() == Some(&0x16)
    }

    /// Whether the server sent anything that looks like HTTP.
    pub fn http(&self) -> bool {
        find(&self.bytes, b"HTTP/").is_some()
    }
}

/// The first flight of a real rustls client (a TLS 1.3/1.2 ClientHello).
pub fn rustls_client_hello(ca: &CertificateDer<'static>) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("CA");
    let cfg = ClientConfig::builder_with_provider(tls_provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").expect("name");
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).expect("client");
    let mut out = Vec::new();
    conn.write_tls(&mut out).expect("ClientHello");
    out
}

fn u16be(v: usize) -> [u8; 2] {
    u16::try_from(v).expect("fits u16").to_be_bytes()
}

fn ext(kind: u16, body: &[u8]) -> Vec<u8> {
    let mut e = kind.to_be_bytes().to_vec();
    e.extend_from_slice(&u16be(body.len()));
    e.extend_from_slice(body);
    e
}

/// A hand-made ClientHello record with `client_version` (0x0300 SSLv3 …
/// 0x0303 TLS 1.2), ECDHE-ECDSA/RSA suites (GCM and CBC), SNI, groups, point
/// formats and signature algorithms; plus a `supported_versions` extension
/// when `versions` is given.
pub fn client_hello(client_version: u16, versions: Option<&[u16]>) -> Vec<u8> {
    client_hello_with(
        client_version,
        versions,
        &[0xc02b, 0xc02f, 0xc009, 0xc013, 0x002f, 0x0035],
    )
}

/// [`client_hello`] offering only `suites`.
pub fn client_hello_with(client_version: u16, versions: Option<&[u16]>, suites: &[u16]) -> Vec<u8> {
    let mut body = client_version.to_be_bytes().to_vec();
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&u16be(suites.len() * 2));
    suites
        .iter()
        .for_each(|s| body.extend_from_slice(&s.to_be_bytes()));
    body.extend_from_slice(&[1, 0]); // compression: null
    let mut exts = ext(0x0000, b"\x00\x0c\x00\x00\x09localhost");
    exts.extend(ext(0x000a, &[0, 4, 0, 0x17, 0, 0x1d])); // secp256r1, x25519
    exts.extend(ext(0x000b, &[1, 0])); // uncompressed points
    exts.extend(ext(0x000d, &[0, 4, 0x04, 0x03, 0x08, 0x04])); // ecdsa_p256, rsa_pss
    if let Some(vs) = versions {
        let mut v = vec![u8::try_from(vs.len() * 2).expect("few versions")];
        vs.iter()
            .for_each(|x| v.extend_from_slice(&x.to_be_bytes()));
        exts.extend(ext(0x002b, &v));
    }
    body.extend_from_slice(&u16be(exts.len()));
    body.extend(exts);
    let len = u32::try_from(body.len()).expect("small").to_be_bytes();
    let mut hs = vec![0x01, len[1], len[2], len[3]];
    hs.extend(body);
    tls_record(0x16, client_version.min(0x0301), &hs)
}

/// One TLS record.
pub fn tls_record(content_type: u8, version: u16, payload: &[u8]) -> Vec<u8> {
    let mut r = vec![content_type];
    r.extend_from_slice(&version.to_be_bytes());
    r.extend_from_slice(&u16be(payload.len()));
    r.extend_from_slice(payload);
    r
}

/// A good request still gets 200 and is the only new request the upstream
/// sees (proving the server survived `case` and forwarded nothing else).
pub async fn assert_still_serves(env: &Env, case: &str) {
    let before = env.upstream.count();
    let r = env
        .client()
        .get_with_token("/api/x", BOB_TOKEN)
        .await
        .unwrap_or_else(|e| panic!("{case}: the good request afterwards failed: {e}"));
    assert_eq!(r.status, 200, "{case}: good request afterwards: {r:?}");
    assert_eq!(
        env.upstream.count(),
        before + 1,
        "{case}: the upstream saw something besides the good request"
    );
    let seen = env.upstream.last();
    assert_eq!(seen.path, "/api/x", "{case}");
    assert_eq!(seen.all("x-remote-user"), ["bob"], "{case}");
}

/// Replaces the catch-all route with `/api` and `/admin` routes to the same
/// upstream, so paths outside them get 404.
pub fn api_and_admin_routes(y: &mut Yaml) {
    let line = y.routes.lines().nth(1).expect("a route line").to_owned();
    let route =
        |prefix: &str| line.replacen("path_prefix: /,", &format!("path_prefix: {prefix},"), 1);
    y.routes = format!("routes:\n{}\n{}\n", route("/api"), route("/admin"));
}

/// A TLS connection with full control: an optional client certificate,
/// TLS 1.2 only or the defaults, and the ALPN protocols offered.
pub async fn tls_connect(
    env: &Env,
    cert: Option<&ClientCert>,
    tls12_only: bool,
    alpn: &[&[u8]],
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(env.pki.ca_der.clone()).expect("CA");
    let b = ClientConfig::builder_with_provider(tls_provider());
    let b = if tls12_only {
        b.with_protocol_versions(&[&rustls::version::TLS12])
    } else {
        b.with_safe_default_protocol_versions()
    }
    .expect("versions")
    .with_root_certificates(roots);
    let mut cfg = match cert {
        Some(c) => b
            .with_client_auth_cert(c.chain.clone(), c.key_der())
            .expect("client cert"),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(env.gate.addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").expect("name");
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    tokio::time::timeout(TIMEOUT, connector.connect(name, tcp))
        .await
        .map_err(|_| "handshake timed out".to_owned())?
        .map_err(|e| format!("handshake: {e}"))
}

/// How a trickled write ended.
#[derive(Debug)]
pub struct Trickle {
    /// Bytes written before the server closed (or all of them).
    pub sent: usize,
    /// The server closed the connection.
    pub closed: bool,
    /// Bytes the server sent meanwhile.
    pub got: Vec<u8>,
    /// Time from the first byte to the close (or the end).
    pub elapsed: Duration,
}

/// Writes `bytes` one at a time, `gap` apart, watching for the server to
/// close the connection; stops at the close.
pub async fn trickle<S>(s: &mut S, bytes: &[u8], gap: Duration) -> Trickle
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let mut t = Trickle {
        sent: 0,
        closed: false,
        got: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let mut buf = [0u8; 4096];
    'bytes: for b in bytes {
        if s.write_all(&[*b]).await.is_err() || s.flush().await.is_err() {
            t.closed = true;
            break;
        }
        t.sent += 1;
        let until = tokio::time::Instant::now() + gap;
        while let Ok(r) = tokio::time::timeout_at(until, s.read(&mut buf)).await {
            match r {
                Ok(0) | Err(_) => {
                    t.closed = true;
                    break 'bytes;
                }
                Ok(n) => t.got.extend_from_slice(&buf[..n]),
            }
        }
    }
    t.elapsed = start.elapsed();
    t
}

/// Reads from `s` until the end of an HTTP/1 request head; the bytes read,
/// or `None` on EOF or an error first (a test upstream's first step).
pub async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    Some(head)
}
