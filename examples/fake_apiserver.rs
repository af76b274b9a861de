//! A standalone fake Kubernetes API server for `scripts/bench.sh`: the test
//! harness's `FakeApi` (HTTPS, TokenReview and SubjectAccessReview, counters)
//! and its rcgen PKI, run as a process.
//!
//! ```text
//! cargo run --release --example fake_apiserver -- [--tokens N] [--token-prefix P]
//!     [--counts-listen 127.0.0.1:PORT] [--upstream-listen 127.0.0.1:PORT] [--info FILE]
//! ```
//!
//! It registers `N` tokens (default 1000) named `<P><i>` (default prefix
//! `bench-token-`), for user `bench-user-<i>` in group `bench`, and allows
//! every SubjectAccessReview. It prints one JSON line to stdout (and writes it
//! to `--info FILE`, if given): the API URL, the kubeconfig to give the gate,
//! and the counts URL. The counts are served over plain HTTP on loopback:
//! `GET /counts` answers `{"token_reviews": .., "access_reviews": .., "unauthorized": ..}`
//! and `POST /reset` zeroes them. With `--upstream-listen`, it also serves a
//! trivial HTTP/1.1 keep-alive upstream there (every request: 200 `ok`), for
//! `scripts/soak.sh`; its URL is `upstream_url` in the JSON line. On SIGTERM or SIGINT the counts are printed
//! to stderr and the process exits (the PKI's temporary directory goes with it).
// The harness files are shared with the integration tests, which use parts
// this binary does not (as tests/support/mod.rs does for the test crates).
#![allow(dead_code, unused_imports, unreachable_pub, missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/pki.rs"]
mod pki;

#[path = "../tests/support/fake_api.rs"]
mod fake_api;

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fake_api::{FakeApi, Rule};
use pki::Pki;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

struct Args {
    tokens: usize,
    prefix: String,
    counts_listen: SocketAddr,
    upstream_listen: Option<SocketAddr>,
    info: Option<std::path::PathBuf>,
}

fn usage(msg: &str) -> ! {
    let _ = writeln!(
        std::io::stderr(),
        "fake_apiserver: {msg}\nusage: fake_apiserver [--tokens N] [--token-prefix P] [--counts-listen ADDR] [--upstream-listen ADDR] [--info FILE]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut args = Args {
        tokens: 1000,
        prefix: "bench-token-".to_owned(),
        counts_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        upstream_listen: None,
        info: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--tokens" => {
                args.tokens = value().parse().unwrap_or_else(|_| usage("bad --tokens"));
            }
            "--token-prefix" => args.prefix = value(),
            "--counts-listen" => {
                let addr: SocketAddr = value()
                    .parse()
                    .unwrap_or_else(|_| usage("bad --counts-listen"));
                if !addr.ip().is_loopback() {
                    usage("--counts-listen must be a loopback address");
                }
                args.counts_listen = addr;
            }
            "--upstream-listen" => {
                let addr: SocketAddr = value()
                    .parse()
                    .unwrap_or_else(|_| usage("bad --upstream-listen"));
                if !addr.ip().is_loopback() {
                    usage("--upstream-listen must be a loopback address");
                }
                args.upstream_listen = Some(addr);
            }
            "--info" => args.info = Some(value().into()),
            "-h" | "--help" => usage("help"),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    args
}

fn counts_json(api: &FakeApi) -> String {
    serde_json::json!({
        "token_reviews": api.token_reviews(),
        "access_reviews": api.access_reviews(),
        "unauthorized": api.unauthorized(),
    })
    .to_string()
}

/// One request per connection: `GET /counts` or `POST /reset`.
async fn serve_counts(listener: TcpListener, api: Arc<FakeApi>) {
    loop {
        let Ok((mut tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let api = api.clone();
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            let mut chunk = [0u8; 1024];
            let head = tokio::time::timeout(Duration::from_secs(5), async {
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
                    match tcp.read(&mut chunk).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                true
            })
            .await;
            if !matches!(head, Ok(true)) {
                return;
            }
            let line = String::from_utf8_lossy(&buf);
            let line = line.lines().next().unwrap_or_default();
            let (status, body) = if line.starts_with("GET /counts ") {
                ("200 OK", counts_json(&api))
            } else if line.starts_with("POST /reset ") {
                api.reset_counts();
                ("200 OK", counts_json(&api))
            } else {
                ("404 Not Found", r#"{"error":"not found"}"#.to_owned())
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tcp.write_all(resp.as_bytes()).await;
            let _ = tcp.shutdown().await;
        });
    }
}

/// A trivial keep-alive HTTP/1.1 upstream: every request gets 200 `ok`.
async fn serve_upstream(listener: TcpListener) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from_static(b"ok"),
                )))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                .await;
        });
    }
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let pki = Pki::new();
    let api = Arc::new(FakeApi::start(&pki).await);
    for i in 0..args.tokens {
        api.add_token(
            &format!("{}{i}", args.prefix),
            &format!("bench-user-{i}"),
            &["bench"],
        );
    }
    api.allow(Rule::anyone());

    let listener = TcpListener::bind(args.counts_listen)
        .await
        .unwrap_or_else(|e| usage(&format!("bind {}: {e}", args.counts_listen)));
    let counts_addr = listener.local_addr().expect("counts address");
    tokio::spawn(serve_counts(listener, api.clone()));
    let upstream_url = match args.upstream_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .unwrap_or_else(|e| usage(&format!("bind {addr}: {e}")));
            let url = format!(
                "http://{}",
                listener.local_addr().expect("upstream address")
            );
            tokio::spawn(serve_upstream(listener));
            Some(url)
        }
        None => None,
    };

    let info = serde_json::json!({
        "url": api.url,
        "kubeconfig": api.kubeconfig,
        "ca_file": pki.ca_file,
        "counts_url": format!("http://{counts_addr}/counts"),
        "reset_url": format!("http://{counts_addr}/reset"),
        "upstream_url": upstream_url,
        "tokens": args.tokens,
        "token_prefix": args.prefix,
        "pid": std::process::id(),
    })
    .to_string();
    if let Some(path) = &args.info {
        // Written whole, then renamed: a reader never sees half a file.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{info}\n")).expect("write --info");
        std::fs::rename(&tmp, path).expect("rename --info");
    }
    let _ = writeln!(std::io::stdout(), "{info}");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let _ = writeln!(
        std::io::stderr(),
        "fake_apiserver counts: {}",
        counts_json(&api)
    );
}
