//! The load generator: HTTP/1.1 over TLS 1.2/1.3 (rustls, ring) to one
//! loopback address, with `--connections` connections (workers), each
//! authenticating with a bearer token (`--token`, or rotating through
//! `--tokens N` tokens `<prefix><i>`) or a client certificate (`--cert` /
//! `--key`, or `--certs-dir DIR --certs N` with `client-<i>.{crt,key}`; with
//! both tokens and certificates, even workers use certificates, odd tokens).
//!
//! - closed loop (default): each worker sends its next request as soon as
//!   the previous one is answered;
//! - open loop (`--rate R`): requests are scheduled at R per second in total,
//!   evenly spread over the workers (each at R / connections); a worker that
//!   falls behind sends at once until it has caught up. Latency is measured
//!   from the scheduled start, so queueing delay counts (no coordinated
//!   omission);
//! - `--new-connection`: every request opens a new TCP + TLS connection
//!   (`connection: close`), sharing one TLS session cache per identity, as a
//!   real client would (so sessions may resume);
//! - `--plain`: plain HTTP/1.1 over TCP, no TLS (to load an upstream
//!   directly; the same requests, headers and bearer token included).
//!
//! Always bounded: no request starts after `--duration` or `--deadline`
//! seconds, or after `--requests` requests; the default deadline is 600 s.
//! Prints one JSON line (see `LoadResult`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::{Res, procstat};

/// Connect/handshake failures in a row after which a worker gives up.
const MAX_CONSECUTIVE_FAILURES: u32 = 50;
/// Without `--duration` or `--deadline`, no request starts after this.
const DEFAULT_DEADLINE_S: f64 = 600.0;

/// `xtask load`.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct LoadArgs {
    /// Server address (a loopback address).
    #[arg(long)]
    pub(crate) target: SocketAddr,
    /// CA certificate (PEM) that signed the server certificate.
    #[arg(long)]
    pub(crate) ca: PathBuf,
    /// TLS server name (SNI and certificate check).
    #[arg(long, default_value = "localhost")]
    pub(crate) server_name: String,
    /// Request path.
    #[arg(long, default_value = "/bench")]
    pub(crate) path: String,
    /// A static bearer token.
    #[arg(long)]
    pub(crate) token: Option<String>,
    /// Rotate through this many tokens `<token-prefix><i>`.
    #[arg(long, default_value_t = 0)]
    pub(crate) tokens: usize,
    /// Prefix of the rotating tokens.
    #[arg(long, default_value = "bench-token-")]
    pub(crate) token_prefix: String,
    /// Client certificate chain (PEM), with --key.
    #[arg(long, requires = "key")]
    pub(crate) cert: Option<PathBuf>,
    /// Client key (PEM).
    #[arg(long, requires = "cert")]
    pub(crate) key: Option<PathBuf>,
    /// Directory of client certificates `client-<i>.crt` / `.key`.
    #[arg(long)]
    pub(crate) certs_dir: Option<PathBuf>,
    /// How many certificates of --certs-dir to use.
    #[arg(long, default_value_t = 0)]
    pub(crate) certs: usize,
    /// Connections (workers).
    #[arg(long, default_value_t = 50)]
    pub(crate) connections: usize,
    /// Seconds of load (no request starts after).
    #[arg(long)]
    pub(crate) duration: Option<f64>,
    /// At most this many requests in total.
    #[arg(long)]
    pub(crate) requests: Option<u64>,
    /// Like --duration (for the soak): no request starts after this.
    #[arg(long)]
    pub(crate) deadline: Option<f64>,
    /// Offered load in requests per second in total (open loop); 0: closed loop.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) rate: f64,
    /// A new connection (TCP + TLS handshake) for every request.
    #[arg(long)]
    pub(crate) new_connection: bool,
    /// Plain HTTP/1.1 over TCP, no TLS (--ca is then not used; client
    /// certificates are refused).
    #[arg(long)]
    pub(crate) plain: bool,
    /// Seconds allowed for one connection setup, and for one request.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) timeout: f64,
    /// Read the CPU time of these processes (the server under test) when the
    /// load starts (connections open) and after the last answer.
    #[arg(long, value_delimiter = ',')]
    pub(crate) sample_pids: Vec<u32>,
}

/// CPU time of `--sample-pids` over the load window.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct SampledCpu {
    /// utime + stime delta, clock ticks.
    pub(crate) ticks: u64,
    /// schedstat run time delta of the live threads, ns.
    pub(crate) sched_ns: u64,
    /// From the first request's start to the last answer (connections
    /// already open in keep-alive mode), seconds.
    pub(crate) window_s: f64,
    pub(crate) processes: usize,
}

/// Latency percentiles, microseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Latency {
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
    pub(crate) mean: f64,
}

/// What `xtask load` prints (one JSON line).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct LoadResult {
    /// Requests answered (any status).
    pub(crate) requests: u64,
    /// `--requests`, if given.
    pub(crate) wanted: Option<u64>,
    /// 2xx answers.
    pub(crate) ok: u64,
    /// Non-2xx answers.
    pub(crate) non_2xx: u64,
    /// Answers other than 200.
    pub(crate) non_200: u64,
    /// Transport errors and timeouts (connect, TLS, request).
    pub(crate) errors: u64,
    /// Whether the time bound stopped the run before `--requests`.
    pub(crate) deadline_hit: bool,
    /// From the start to the last answer.
    pub(crate) seconds: f64,
    /// `ok / seconds`.
    pub(crate) rps: f64,
    /// `--rate` (None: closed loop).
    pub(crate) offered_rate: Option<f64>,
    pub(crate) connections: usize,
    pub(crate) new_connection: bool,
    /// TCP + TLS connections opened.
    pub(crate) connects: u64,
    /// Of which resumed a TLS session.
    pub(crate) tls_resumed: u64,
    /// Latency of the answered requests, µs.
    pub(crate) latency_us: Latency,
    pub(crate) statuses: BTreeMap<u16, u64>,
    pub(crate) error_kinds: BTreeMap<String, u64>,
    /// With `--sample-pids`.
    pub(crate) server_cpu: Option<SampledCpu>,
}

/// A rustls client config trusting `ca`, with a client certificate if given.
pub(crate) fn client_config(ca: &Path, cert: Option<(&Path, &Path)>) -> Res<Arc<ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca)? {
        roots.add(c?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut c = match cert {
        Some((crt, key)) => {
            let chain = CertificateDer::pem_file_iter(crt)?.collect::<Result<Vec<_>, _>>()?;
            let key = PrivateKeyDer::from_pem_file(key)?;
            b.with_client_auth_cert(chain, key)?
        }
        None => b.with_no_client_auth(),
    };
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(c))
}

/// One TCP + TLS + HTTP/1.1 connection: the sender, and whether the TLS
/// session was resumed; plus a one-line TLS description.
pub(crate) async fn open(
    target: SocketAddr,
    config: &Arc<ClientConfig>,
    name: &ServerName<'static>,
) -> Res<(SendRequest<Empty<Bytes>>, bool, String)> {
    let tcp = TcpStream::connect(target).await?;
    tcp.set_nodelay(true)?;
    let tls = tokio_rustls::TlsConnector::from(config.clone())
        .connect(name.clone(), tcp)
        .await?;
    let (_, conn) = tls.get_ref();
    let resumed = conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    let show = |x: Option<String>| x.unwrap_or_else(|| "?".to_owned());
    let info = format!(
        "{} {} {} {}",
        show(conn.protocol_version().map(|v| format!("{v:?}"))),
        show(
            conn.negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()))
        ),
        show(
            conn.negotiated_key_exchange_group()
                .map(|g| format!("{:?}", g.name()))
        ),
        show(conn.handshake_kind().map(|k| format!("{k:?}"))),
    );
    let (send, c) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(c);
    Ok((send, resumed, info))
}

/// One plain TCP + HTTP/1.1 connection (no TLS): the sender.
pub(crate) async fn open_plain(target: SocketAddr) -> Res<SendRequest<Empty<Bytes>>> {
    let tcp = TcpStream::connect(target).await?;
    tcp.set_nodelay(true)?;
    let (send, c) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(c);
    Ok(send)
}

/// A new connection, plain (`--plain`) or TLS with `config`: the sender and
/// whether a TLS session was resumed.
async fn connect(
    sh: &Shared,
    config: &Arc<ClientConfig>,
) -> Res<(SendRequest<Empty<Bytes>>, bool)> {
    if sh.args.plain {
        Ok((open_plain(sh.args.target).await?, false))
    } else {
        let (send, resumed, _) = open(sh.args.target, config, &sh.name).await?;
        Ok((send, resumed))
    }
}

/// One GET with optional bearer token; the status, after the whole body.
pub(crate) async fn request(
    send: &mut SendRequest<Empty<Bytes>>,
    path: &str,
    bearer: Option<&str>,
    close: bool,
) -> Res<http::StatusCode> {
    send.ready().await?;
    let mut req = http::Request::get(path).header(http::header::HOST, "localhost");
    if let Some(t) = bearer {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if close {
        req = req.header(http::header::CONNECTION, "close");
    }
    let resp = send.send_request(req.body(Empty::new())?).await?;
    let status = resp.status();
    resp.into_body().collect().await?;
    Ok(status)
}

struct Shared {
    args: LoadArgs,
    /// One config per client certificate.
    cert_configs: Vec<Arc<ClientConfig>>,
    /// The config without a client certificate.
    plain: Arc<ClientConfig>,
    name: ServerName<'static>,
    sent: AtomicU64,
    timeout: Duration,
}

struct Stats {
    ok: u64,
    non_2xx: u64,
    non_200: u64,
    errors: u64,
    connects: u64,
    resumed: u64,
    hist: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    error_kinds: BTreeMap<String, u64>,
    last: Option<Instant>,
}

impl Stats {
    fn new() -> Res<Self> {
        Ok(Self {
            ok: 0,
            non_2xx: 0,
            non_200: 0,
            errors: 0,
            connects: 0,
            resumed: 0,
            hist: Histogram::new_with_bounds(1, 120_000_000, 3)?,
            statuses: BTreeMap::new(),
            error_kinds: BTreeMap::new(),
            last: None,
        })
    }

    fn error(&mut self, kind: &str) {
        self.errors += 1;
        *self.error_kinds.entry(kind.to_owned()).or_default() += 1;
    }

    fn merge(&mut self, o: Self) -> Res<()> {
        self.ok += o.ok;
        self.non_2xx += o.non_2xx;
        self.non_200 += o.non_200;
        self.errors += o.errors;
        self.connects += o.connects;
        self.resumed += o.resumed;
        self.hist.add(&o.hist)?;
        for (k, v) in o.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        for (k, v) in o.error_kinds {
            *self.error_kinds.entry(k).or_default() += v;
        }
        self.last = self.last.max(o.last);
        Ok(())
    }
}

/// Which TLS config (certificate) and whether a token, for worker `id`.
fn identity(sh: &Shared, id: usize) -> (Arc<ClientConfig>, bool) {
    let a = &sh.args;
    let have_token = a.token.is_some() || a.tokens > 0;
    let certs = &sh.cert_configs;
    if !certs.is_empty() && (!have_token || id.is_multiple_of(2)) {
        (certs[(id / 2) % certs.len()].clone(), false)
    } else {
        (sh.plain.clone(), have_token)
    }
}

/// Opens the keep-alive connection of worker `id` before the load starts.
async fn pre_open(sh: &Shared, id: usize) -> Option<(SendRequest<Empty<Bytes>>, bool)> {
    let (config, _) = identity(sh, id);
    let opened = tokio::time::timeout(sh.timeout, connect(sh, &config)).await;
    match opened {
        Ok(Ok(c)) => Some(c),
        _ => None,
    }
}

/// One worker: `start` is when its first request may start; no request
/// starts at or after `end`; `pre` is its already open connection.
async fn worker(
    sh: Arc<Shared>,
    id: usize,
    (start, end): (Instant, Instant),
    pre: Option<(SendRequest<Empty<Bytes>>, bool)>,
) -> Res<Stats> {
    let a = &sh.args;
    let mut st = Stats::new()?;
    let (config, use_token) = identity(&sh, id);
    let max = a.requests.unwrap_or(u64::MAX);
    let interval = (a.rate > 0.0).then(|| Duration::from_secs_f64(a.connections as f64 / a.rate));
    let mut next = start
        + interval.map_or(Duration::ZERO, |iv| {
            iv.mul_f64(id as f64 / a.connections.max(1) as f64)
        });
    let mut n = id.wrapping_mul(7919);
    let mut conn: Option<SendRequest<Empty<Bytes>>> = None;
    if let Some((send, resumed)) = pre {
        st.connects += 1;
        st.resumed += u64::from(resumed);
        conn = Some(send);
    }
    let mut failures = 0u32;
    loop {
        if let Some(iv) = interval {
            if next >= end {
                break;
            }
            tokio::time::sleep_until(next).await;
            next += iv;
        }
        let now = Instant::now();
        if now >= end || sh.sent.fetch_add(1, Ordering::Relaxed) >= max {
            break;
        }
        let t0 = interval.map_or(now, |iv| next - iv);
        if conn.as_ref().is_none_or(SendRequest::is_closed) {
            match tokio::time::timeout(sh.timeout, connect(&sh, &config)).await {
                Ok(Ok((send, resumed))) => {
                    st.connects += 1;
                    st.resumed += u64::from(resumed);
                    conn = Some(send);
                    failures = 0;
                }
                Ok(Err(_)) | Err(_) => {
                    st.error("connect");
                    failures += 1;
                    if failures >= MAX_CONSECUTIVE_FAILURES {
                        break;
                    }
                    if interval.is_none() {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    continue;
                }
            }
        }
        let token = if !use_token {
            None
        } else if a.tokens > 0 {
            n = n.wrapping_add(1);
            Some(format!("{}{}", a.token_prefix, n % a.tokens))
        } else {
            a.token.clone()
        };
        let Some(send) = conn.as_mut() else {
            continue;
        };
        let r = tokio::time::timeout(
            sh.timeout,
            request(send, &a.path, token.as_deref(), a.new_connection),
        )
        .await;
        match r {
            Ok(Ok(status)) => {
                let done = Instant::now();
                st.last = Some(done);
                let us = u64::try_from(done.duration_since(t0).as_micros()).unwrap_or(u64::MAX);
                st.hist.saturating_record(us.max(1));
                if status.is_success() {
                    st.ok += 1;
                } else {
                    st.non_2xx += 1;
                }
                if status != http::StatusCode::OK {
                    st.non_200 += 1;
                }
                *st.statuses.entry(status.as_u16()).or_default() += 1;
            }
            Ok(Err(_)) => {
                st.error("request");
                conn = None;
            }
            Err(_) => {
                st.error("timeout");
                conn = None;
            }
        }
        if a.new_connection {
            conn = None;
        }
    }
    Ok(st)
}

/// Runs the load described by `args` on a single-threaded runtime.
pub(crate) fn run(args: LoadArgs) -> Res<LoadResult> {
    if !args.target.ip().is_loopback() {
        return Err(format!("--target {} is not a loopback address", args.target).into());
    }
    if args.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    if args.plain && (args.cert.is_some() || args.certs > 0) {
        return Err("--plain: no TLS, so no client certificates".into());
    }
    let mut configs = Vec::new();
    if let (Some(c), Some(k)) = (&args.cert, &args.key) {
        configs.push(client_config(&args.ca, Some((c, k)))?);
    }
    if let Some(dir) = &args.certs_dir {
        for i in 0..args.certs {
            let c = dir.join(format!("client-{i}.crt"));
            let k = dir.join(format!("client-{i}.key"));
            configs.push(client_config(&args.ca, Some((&c, &k)))?);
        }
    } else if args.certs > 0 {
        return Err("--certs needs --certs-dir".into());
    }
    let plain = client_config(&args.ca, None)?;
    let bound = match (args.duration, args.deadline) {
        (Some(d), Some(e)) => d.min(e),
        (Some(d), None) | (None, Some(d)) => d,
        (None, None) => DEFAULT_DEADLINE_S,
    };
    let name = ServerName::try_from(args.server_name.clone())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let sh = Arc::new(Shared {
            timeout: Duration::from_secs_f64(args.timeout),
            cert_configs: configs,
            plain,
            name,
            sent: AtomicU64::new(0),
            args,
        });
        // Keep-alive: the connections are opened before the clock (and the
        // server's CPU sample) starts, so the handshakes do not count.
        let mut pre = Vec::new();
        for i in 0..sh.args.connections {
            pre.push(if sh.args.new_connection {
                None
            } else {
                pre_open(&sh, i).await
            });
        }
        let cpu0 = procstat::sample(&sh.args.sample_pids);
        let start = Instant::now() + Duration::from_millis(2);
        let end = start + Duration::from_secs_f64(bound);
        let tasks: Vec<_> = pre
            .into_iter()
            .enumerate()
            .map(|(i, p)| tokio::spawn(worker(sh.clone(), i, (start, end), p)))
            .collect();
        let mut total = Stats::new()?;
        for t in tasks {
            total.merge(t.await??)?;
        }
        let cpu1 = procstat::sample(&sh.args.sample_pids);
        let window_s = start.elapsed().as_secs_f64();
        let server_cpu = (!sh.args.sample_pids.is_empty()).then(|| SampledCpu {
            ticks: cpu1.ticks.saturating_sub(cpu0.ticks),
            sched_ns: cpu1.sched_ns.saturating_sub(cpu0.sched_ns),
            window_s,
            processes: cpu1.processes,
        });
        let a = &sh.args;
        let last = total.last.unwrap_or_else(Instant::now).max(start);
        let seconds = last.duration_since(start).as_secs_f64();
        let answered = total.ok + total.non_2xx;
        let h = &total.hist;
        let q = |p: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(p) as f64
            }
        };
        Ok(LoadResult {
            requests: answered,
            wanted: a.requests,
            ok: total.ok,
            non_2xx: total.non_2xx,
            non_200: total.non_200,
            errors: total.errors,
            deadline_hit: Instant::now() >= end && a.requests.is_none_or(|w| answered < w),
            seconds: (seconds * 1000.0).round() / 1000.0,
            rps: if seconds > 0.0 {
                total.ok as f64 / seconds
            } else {
                0.0
            },
            offered_rate: (a.rate > 0.0).then_some(a.rate),
            connections: a.connections,
            new_connection: a.new_connection,
            connects: total.connects,
            tls_resumed: total.resumed,
            latency_us: Latency {
                p50: q(0.5),
                p90: q(0.9),
                p99: q(0.99),
                p999: q(0.999),
                max: h.max() as f64,
                mean: if h.is_empty() { 0.0 } else { h.mean() },
            },
            statuses: total.statuses,
            error_kinds: total.error_kinds,
            server_cpu,
        })
    })
}

/// `xtask load`: runs, prints the JSON line; exit 0 (the caller judges).
pub(crate) fn main(args: LoadArgs) -> Res<i32> {
    let r = run(args)?;
    println!("{}", serde_json::to_string(&r)?);
    Ok(0)
}

/// Status of one GET (a fresh connection); for sanity checks.
pub(crate) async fn check(
    target: SocketAddr,
    config: &Arc<ClientConfig>,
    path: &str,
    bearer: Option<&str>,
) -> Res<u16> {
    let name = ServerName::try_from("localhost")?;
    let fut = async {
        let (mut send, _, _) = open(target, config, &name).await?;
        request(&mut send, path, bearer, true).await
    };
    let status = tokio::time::timeout(Duration::from_secs(5), fut).await??;
    Ok(status.as_u16())
}

/// Two connections with one session cache (the first reads a response, so
/// that the session tickets arrive): the TLS parameters of both.
pub(crate) async fn tls_info(
    target: SocketAddr,
    config: &Arc<ClientConfig>,
    bearer: Option<&str>,
) -> Res<String> {
    let name = ServerName::try_from("localhost")?;
    let mut out = Vec::new();
    for _ in 0..2 {
        let fut = async {
            let (mut send, _, info) = open(target, config, &name).await?;
            request(&mut send, "/bench", bearer, true).await?;
            Ok::<_, crate::Error>(info)
        };
        out.push(tokio::time::timeout(Duration::from_secs(5), fut).await??);
    }
    Ok(format!("first: {}; second: {}", out[0], out[1]))
}
