//! A small load generator for `scripts/soak.sh`: keep-alive HTTP/1.1 over TLS,
//! where each connection presents a client certificate or rotates through
//! bearer tokens, so a soak exercises both caches with many identities.
//!
//! ```text
//! cargo run --release --example loadgen -- --target 127.0.0.1:8443 --ca ca.crt \
//!     [--tokens 10000 --token-prefix bench-token-] [--certs-dir DIR --certs 100] \
//!     [--requests 1000000] [--connections 32] [--path /api/x] [--deadline SECONDS]
//! ```
//!
//! Certificates are read as `DIR/client-<i>.crt` / `.key`. Half of the
//! connections use certificates (when given), the rest tokens. Prints one
//! JSON line: requests answered, requests wanted, non-200 answers, transport
//! errors, whether the deadline was hit, seconds. With `--deadline`, no
//! request starts after that many seconds (answered < wanted then).
//!
//! A connection that fails to connect or handshake `MAX_CONSECUTIVE_FAILURES`
//! times in a row gives up, so the generator always stops by itself.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Connect/handshake failures in a row after which a connection gives up.
const MAX_CONSECUTIVE_FAILURES: u32 = 50;
/// Bound on one connection setup, and on one request with its body.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

struct Args {
    target: SocketAddr,
    ca: PathBuf,
    tokens: usize,
    prefix: String,
    certs_dir: Option<PathBuf>,
    certs: usize,
    requests: u64,
    connections: usize,
    path: String,
    deadline: Option<Instant>,
}

fn parse() -> Args {
    let mut a = Args {
        target: SocketAddr::from(([127, 0, 0, 1], 8443)),
        ca: PathBuf::from("ca.crt"),
        tokens: 0,
        prefix: "bench-token-".into(),
        certs_dir: None,
        certs: 0,
        requests: 100_000,
        connections: 32,
        path: "/api/x".into(),
        deadline: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--target" => a.target = v.parse().expect("--target host:port"),
            "--ca" => a.ca = v.into(),
            "--tokens" => a.tokens = v.parse().expect("--tokens N"),
            "--token-prefix" => a.prefix = v,
            "--certs-dir" => a.certs_dir = Some(v.into()),
            "--certs" => a.certs = v.parse().expect("--certs N"),
            "--requests" => a.requests = v.parse().expect("--requests N"),
            "--connections" => a.connections = v.parse().expect("--connections N"),
            "--path" => a.path = v,
            "--deadline" => {
                let secs: u64 = v.parse().expect("--deadline SECONDS");
                a.deadline = Some(Instant::now() + Duration::from_secs(secs));
            }
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(a.tokens > 0 || a.certs > 0, "give --tokens or --certs");
    a
}

fn tls_config(args: &Args, cert: Option<usize>) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&args.ca).expect("ca") {
        roots.add(c.expect("ca pem")).expect("ca cert");
    }
    let b = ClientConfig::builder_with_provider(authgate::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
    let mut c = match (cert, &args.certs_dir) {
        (Some(i), Some(dir)) => {
            let chain = CertificateDer::pem_file_iter(dir.join(format!("client-{i}.crt")))
                .expect("client cert")
                .collect::<Result<Vec<_>, _>>()
                .expect("client cert pem");
            let key = PrivateKeyDer::from_pem_file(dir.join(format!("client-{i}.key")))
                .expect("client key");
            b.with_client_auth_cert(chain, key).expect("client auth")
        }
        _ => b.with_no_client_auth(),
    };
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

#[derive(Default)]
struct Counts {
    /// Requests started.
    sent: AtomicU64,
    /// Requests answered (any status).
    done: AtomicU64,
    non_200: AtomicU64,
    errors: AtomicU64,
}

/// Connects, TLS-handshakes and HTTP/1.1-handshakes once.
async fn open(
    args: &Args,
    config: &Arc<ClientConfig>,
) -> Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
    let tcp = tokio::net::TcpStream::connect(args.target).await.ok()?;
    tcp.set_nodelay(true).ok()?;
    let connector = tokio_rustls::TlsConnector::from(config.clone());
    let tls = connector
        .connect(ServerName::try_from("localhost").expect("server name"), tcp)
        .await
        .ok()?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(send)
}

/// Whether `--deadline` has passed.
fn past_deadline(args: &Args) -> bool {
    args.deadline.is_some_and(|d| Instant::now() >= d)
}

/// One request and its body, bounded by `REQUEST_TIMEOUT`: `Some(status)`,
/// or `None` on a transport error or timeout.
async fn one(
    send: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    req: http::Request<Empty<Bytes>>,
) -> Option<http::StatusCode> {
    tokio::time::timeout(REQUEST_TIMEOUT, async {
        let resp = send.send_request(req).await.ok()?;
        let status = resp.status();
        resp.into_body().collect().await.ok()?;
        Some(status)
    })
    .await
    .ok()
    .flatten()
}

async fn connection(args: Arc<Args>, id: usize, counts: Arc<Counts>) {
    let use_cert = args.certs > 0 && (args.tokens == 0 || id.is_multiple_of(2));
    let config = tls_config(&args, use_cert.then_some(id % args.certs.max(1)));
    let mut n: usize = id * 7919;
    let mut failures = 0u32;
    loop {
        if counts.sent.load(Ordering::Relaxed) >= args.requests || past_deadline(&args) {
            return;
        }
        let opened = tokio::time::timeout(REQUEST_TIMEOUT, open(&args, &config)).await;
        let Ok(Some(mut send)) = opened else {
            counts.errors.fetch_add(1, Ordering::Relaxed);
            failures += 1;
            if failures >= MAX_CONSECUTIVE_FAILURES {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        failures = 0;
        loop {
            if past_deadline(&args) {
                return;
            }
            if counts.sent.fetch_add(1, Ordering::Relaxed) >= args.requests {
                return;
            }
            let mut req = http::Request::get(args.path.as_str()).header("host", "localhost");
            if !use_cert {
                n = n.wrapping_add(1);
                req = req.header(
                    "authorization",
                    format!("Bearer {}{}", args.prefix, n % args.tokens),
                );
            }
            let req = req.body(Empty::<Bytes>::new()).expect("request");
            match one(&mut send, req).await {
                Some(status) => {
                    counts.done.fetch_add(1, Ordering::Relaxed);
                    if status != http::StatusCode::OK {
                        counts.non_200.fetch_add(1, Ordering::Relaxed);
                    }
                }
                None => {
                    counts.errors.fetch_add(1, Ordering::Relaxed);
                    break; // reconnect
                }
            }
        }
    }
}

#[tokio::main]
async fn main() {
    authgate::install_crypto_provider();
    let args = Arc::new(parse());
    let counts = Arc::new(Counts::default());
    let start = Instant::now();
    let tasks: Vec<_> = (0..args.connections)
        .map(|i| tokio::spawn(connection(args.clone(), i, counts.clone())))
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    let done = counts.done.load(Ordering::Relaxed);
    let _ = writeln!(
        std::io::stdout(),
        "{{\"requests\": {done}, \"wanted\": {}, \"non_200\": {}, \"errors\": {}, \"deadline_hit\": {}, \"seconds\": {:.1}}}",
        args.requests,
        counts.non_200.load(Ordering::Relaxed),
        counts.errors.load(Ordering::Relaxed),
        past_deadline(&args),
        start.elapsed().as_secs_f64()
    );
}
