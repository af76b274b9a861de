//! `xtask fake-api`: a fake Kubernetes API server for the cache benchmark
//! and the soak. HTTPS on 127.0.0.1 (its own rcgen CA and certificate in
//! `--dir`), answering the way kube-apiserver does:
//!
//! - `POST /apis/authentication.k8s.io/v1/tokenreviews`: `201` with the
//!   TokenReview; tokens `<prefix><i>` for `i < --tokens` authenticate as
//!   user `bench-user-<i>` in group `bench` (audiences echoed), others get
//!   `authenticated: false`;
//! - `POST /apis/authorization.k8s.io/v1/subjectaccessreviews`: `201`,
//!   allowed;
//! - `GET /version`, `/readyz`, `/livez`, `/healthz`;
//! - every request must carry the gateway token of the kubeconfig (`401`
//!   otherwise).
//!
//! It prints one JSON line (and writes it to `--info FILE`): the URL, the
//! kubeconfig to give authgate, and the counts URLs. Counts are served over
//! plain HTTP on loopback: `GET /counts` answers
//! `{"token_reviews": .., "access_reviews": .., "unauthorized": ..}`,
//! `POST /reset` zeroes them. `--upstream-listen ADDR` also serves a trivial
//! keep-alive HTTP/1.1 upstream (every request: `200 ok`). Runs until SIGTERM
//! or SIGINT, on one thread.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::Res;
use crate::pki::Pki;

const DEFAULT_AUDIENCE: &str = "https://kubernetes.default.svc";

/// `xtask fake-api`.
#[derive(clap::Args, Debug)]
pub(crate) struct FakeApiArgs {
    /// Tokens `<prefix><i>`, i = 0 .. N-1.
    #[arg(long, default_value_t = 1000)]
    tokens: usize,
    /// Token prefix.
    #[arg(long, default_value = "bench-token-")]
    token_prefix: String,
    /// Where the counts are served (plain HTTP, loopback).
    #[arg(long, default_value = "127.0.0.1:0")]
    counts_listen: SocketAddr,
    /// Also serve a trivial upstream here (loopback).
    #[arg(long)]
    upstream_listen: Option<SocketAddr>,
    /// Write the JSON line to this file too.
    #[arg(long)]
    info: Option<PathBuf>,
    /// Directory for the PKI and the kubeconfig (default: a new one in /tmp).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Default)]
struct Counts {
    token_reviews: AtomicU64,
    access_reviews: AtomicU64,
    unauthorized: AtomicU64,
}

impl Counts {
    fn json(&self) -> Value {
        json!({
            "token_reviews": self.token_reviews.load(Ordering::Relaxed),
            "access_reviews": self.access_reviews.load(Ordering::Relaxed),
            "unauthorized": self.unauthorized.load(Ordering::Relaxed),
        })
    }
}

struct State {
    gateway_token: String,
    tokens: usize,
    prefix: String,
    counts: Counts,
}

type Resp = Response<Full<Bytes>>;

fn json_resp(code: StatusCode, v: &Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = code;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn status(code: StatusCode, reason: &str, message: &str) -> Resp {
    json_resp(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code.as_u16()}),
    )
}

fn token_review(st: &State, spec: &Value) -> Value {
    let token = spec["token"].as_str().unwrap_or_default();
    let audiences = match spec["audiences"].as_array() {
        Some(a) if !a.is_empty() => Value::Array(a.clone()),
        _ => json!([DEFAULT_AUDIENCE]),
    };
    let index = token
        .strip_prefix(st.prefix.as_str())
        .and_then(|i| i.parse::<usize>().ok())
        .filter(|i| *i < st.tokens && token == format!("{}{i}", st.prefix));
    let status = match index {
        Some(i) => json!({"authenticated": true, "audiences": audiences,
                          "user": {"username": format!("bench-user-{i}"), "groups": ["bench"]}}),
        None => json!({"authenticated": false, "error": "invalid bearer token"}),
    };
    json!({"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
           "metadata": {"creationTimestamp": null}, "spec": spec, "status": status})
}

async fn handle(st: Arc<State>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let authorized = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t.trim() == st.gateway_token);
    if !authorized {
        st.counts.unauthorized.fetch_add(1, Ordering::Relaxed);
        return Ok(status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized",
        ));
    }
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let review = match (&method, path.as_str()) {
        (&Method::POST, "/apis/authentication.k8s.io/v1/tokenreviews") => Some(true),
        (&Method::POST, "/apis/authorization.k8s.io/v1/subjectaccessreviews") => Some(false),
        (&Method::GET, "/version") => {
            return Ok(json_resp(
                StatusCode::OK,
                &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0", "platform": "linux/amd64"}),
            ));
        }
        (&Method::GET, "/readyz" | "/livez" | "/healthz") => {
            return Ok(Response::new(Full::new(Bytes::from_static(b"ok"))));
        }
        _ => None,
    };
    let Some(is_token) = review else {
        return Ok(status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("the server could not find the requested resource ({path})"),
        ));
    };
    let body = match Limited::new(req.into_body(), 1 << 20).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &e.to_string(),
            ));
        }
    };
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return Ok(status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "invalid JSON",
        ));
    };
    let spec = v.get("spec").cloned().unwrap_or_else(|| json!({}));
    let out = if is_token {
        st.counts.token_reviews.fetch_add(1, Ordering::Relaxed);
        if spec["token"].as_str().unwrap_or_default().is_empty() {
            return Ok(status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "token is required for TokenReview in authentication",
            ));
        }
        token_review(&st, &spec)
    } else {
        st.counts.access_reviews.fetch_add(1, Ordering::Relaxed);
        json!({"kind": "SubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
               "metadata": {"creationTimestamp": null}, "spec": spec,
               "status": {"allowed": true, "reason": "allowed by the fake API"}})
    };
    Ok(json_resp(StatusCode::CREATED, &out))
}

async fn serve_api(listener: TcpListener, acceptor: tokio_rustls::TlsAcceptor, st: Arc<State>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let st = st.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let svc = hyper::service::service_fn(move |req| handle(st.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
    }
}

async fn serve_counts(listener: TcpListener, st: Arc<State>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let st = st.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let st = st.clone();
                async move {
                    let r = match (req.method(), req.uri().path()) {
                        (&Method::GET, "/counts") => json_resp(StatusCode::OK, &st.counts.json()),
                        (&Method::POST, "/reset") => {
                            st.counts.token_reviews.store(0, Ordering::Relaxed);
                            st.counts.access_reviews.store(0, Ordering::Relaxed);
                            st.counts.unauthorized.store(0, Ordering::Relaxed);
                            json_resp(StatusCode::OK, &st.counts.json())
                        }
                        _ => json_resp(StatusCode::NOT_FOUND, &json!({"error": "not found"})),
                    };
                    Ok::<_, Infallible>(r)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

/// A trivial keep-alive HTTP/1.1 upstream: every request gets `200 ok`.
pub(crate) async fn serve_upstream(listener: TcpListener) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(|_req: Request<Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn loopback(a: SocketAddr, flag: &str) -> Res<SocketAddr> {
    if a.ip().is_loopback() {
        Ok(a)
    } else {
        Err(format!("{flag} must be a loopback address").into())
    }
}

/// `xtask fake-api`.
pub(crate) fn main(args: &FakeApiArgs) -> Res<i32> {
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("xtask-fake-api-{}", std::process::id()))
    });
    let pki = Pki::create(&dir)?;
    let chain = CertificateDer::pem_file_iter(&pki.server_crt)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&pki.server_key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let mut random = [0u8; 24];
    provider
        .secure_random
        .fill(&mut random)
        .map_err(|_| "no random")?;
    let gateway_token = format!(
        "fakeapi-{}",
        random
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let counts_listen = loopback(args.counts_listen, "--counts-listen")?;
    let upstream_listen = args
        .upstream_listen
        .map(|a| loopback(a, "--upstream-listen"))
        .transpose()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let api = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("https://{}", api.local_addr()?);
        let kubeconfig = dir.join("fake.kubeconfig");
        let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n    certificate-authority: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: gateway\ncurrent-context: fake\nusers:\n- name: gateway\n  user:\n    token: {}\n",
                q(&url),
                q(&pki.ca_crt.display().to_string()),
                q(&gateway_token)
            ),
        )?;
        let st = Arc::new(State {
            gateway_token,
            tokens: args.tokens,
            prefix: args.token_prefix.clone(),
            counts: Counts::default(),
        });
        tokio::spawn(serve_api(api, acceptor, st.clone()));
        let counts = TcpListener::bind(counts_listen).await?;
        let counts_addr = counts.local_addr()?;
        tokio::spawn(serve_counts(counts, st.clone()));
        let upstream_url = match upstream_listen {
            Some(a) => {
                let l = TcpListener::bind(a).await?;
                let u = format!("http://{}", l.local_addr()?);
                tokio::spawn(serve_upstream(l));
                Some(u)
            }
            None => None,
        };
        let info = json!({
            "url": url,
            "kubeconfig": kubeconfig,
            "ca_file": pki.ca_crt,
            "counts_url": format!("http://{counts_addr}/counts"),
            "reset_url": format!("http://{counts_addr}/reset"),
            "upstream_url": upstream_url,
            "tokens": args.tokens,
            "token_prefix": args.token_prefix,
            "pid": std::process::id(),
        })
        .to_string();
        if let Some(path) = &args.info {
            // Written whole, then renamed: a reader never sees half a file.
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, format!("{info}\n"))?;
            std::fs::rename(&tmp, path)?;
        }
        println!("{info}");
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        eprintln!("fake-api counts: {}", st.counts.json());
        if args.dir.is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Ok(0)
    })
}
