//! The admin listener: `/healthz`, `/readyz`, `/metrics`, `POST /cache/flush`.
//!
//! Health and readiness are open (kubelet probes them). Metrics and cache
//! flushing are guarded: loopback peers only, or (`admin.access: authorized`,
//! over TLS) identities the same authenticators and authorizers allow, as
//! non-resource requests (`get /metrics`, `create /cache/flush`).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::app::App;
use crate::config::AdminAccess;
use crate::gate::ConnInfo;
use crate::proxy::Body;
use crate::respond::{self, full};
use crate::tls::unix_now;

/// One readiness check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// Name.
    pub name: &'static str,
    /// Passing?
    pub ok: bool,
    /// What it saw.
    pub detail: String,
}

/// Evaluates readiness at `now` (Unix seconds).
pub fn readiness(app: &App, now: i64) -> Vec<Check> {
    let mut checks = Vec::new();
    let draining = app.health.is_draining();
    checks.push(Check {
        name: "shutdown",
        ok: !draining,
        detail: if draining { "draining" } else { "serving" }.into(),
    });
    let s = app.tls.status();
    checks.push(expiry("serving_certificate", s.serving_not_after, now));
    if let Some(ca) = s.client_ca_not_after {
        checks.push(expiry("client_ca", ca, now));
    }
    if let Some(k) = &app.kubernetes {
        let last = k.api.last_success();
        let window = i64::try_from(app.admin.api_ready_window.as_secs()).unwrap_or(i64::MAX);
        let (ok, detail) = if last == 0 {
            (false, "no answer yet".to_owned())
        } else if now - last <= window {
            (true, format!("answered {}s ago", now - last))
        } else {
            (
                false,
                format!("no answer for {}s (window {window}s)", now - last),
            )
        };
        checks.push(Check {
            name: "kubernetes_api",
            ok,
            detail,
        });
    }
    checks
}

fn expiry(name: &'static str, not_after: i64, now: i64) -> Check {
    let left = not_after - now;
    Check {
        name,
        ok: left > 0,
        detail: if left > 0 {
            format!("expires in {}h", left / 3600)
        } else {
            format!("expired {}h ago", -left / 3600)
        },
    }
}

/// Serves the admin endpoints on `listener` until `shutdown`.
pub async fn run(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let app = app.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(app, tcp, peer).await {
                debug!(%peer, error = %e, "admin connection ended with an error");
            }
        });
    }
}

async fn connection(
    app: Arc<App>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(app.limits.header_read_timeout);
    if app.admin.tls {
        // The main material, but HTTP/1.1 only: the admin listener speaks no HTTP/2.
        let mut cfg = (*app.tls.server_config()).clone();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let tls =
            tokio::time::timeout(app.limits.handshake_timeout, acceptor.accept(tcp)).await??;
        let leaf = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec());
        let conn = Arc::new(app.gate.conn_info(peer, leaf.as_deref()));
        let svc = service_fn(move |req| respond_to(app.clone(), conn.clone(), req));
        b.serve_connection(TokioIo::new(tls), svc).await?;
    } else {
        let conn = Arc::new(app.gate.conn_info(peer, None));
        let svc = service_fn(move |req| respond_to(app.clone(), conn.clone(), req));
        b.serve_connection(TokioIo::new(tcp), svc).await?;
    }
    Ok(())
}

async fn respond_to(
    app: Arc<App>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/healthz" | "/livez") => {
            text(StatusCode::OK, "ok\n".into())
        }
        (&Method::GET | &Method::HEAD, "/readyz") => ready(&app),
        (&Method::GET, "/metrics") => match guard(&app, &conn, &req, "get").await {
            Ok(()) => {
                let mut r = text(StatusCode::OK, app.metrics.render());
                r.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                r
            }
            Err(r) => r,
        },
        (&Method::GET, "/migration") => match guard(&app, &conn, &req, "get").await {
            Ok(()) => migration(&app, &req),
            Err(r) => r,
        },
        (&Method::POST, "/cache/flush") => match guard(&app, &conn, &req, "create").await {
            Ok(()) => flush(&app, req.uri().query()),
            Err(r) => r,
        },
        _ => respond::json(StatusCode::NOT_FOUND, "no_route", "unknown admin endpoint"),
    };
    Ok(resp)
}

fn ready(app: &App) -> Response<Body> {
    let checks = readiness(app, unix_now());
    let ok = checks.iter().all(|c| c.ok);
    let mut body = String::new();
    for c in &checks {
        let mark = if c.ok { "+" } else { "-" };
        body.push_str(&format!(
            "[{mark}]{} {}: {}\n",
            c.name,
            if c.ok { "ok" } else { "failed" },
            c.detail
        ));
    }
    body.push_str(if ok {
        "readyz check passed\n"
    } else {
        "readyz check failed\n"
    });
    text(
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        body,
    )
}

/// `Ok` when the caller may use a guarded endpoint, else the refusal.
async fn guard(
    app: &App,
    conn: &ConnInfo,
    req: &Request<Incoming>,
    verb: &str,
) -> Result<(), Response<Body>> {
    match app.admin.access {
        AdminAccess::Loopback if conn.peer.ip().is_loopback() => Ok(()),
        AdminAccess::Loopback => Err(respond::json(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this admin endpoint answers loopback clients only",
        )),
        AdminAccess::Authorized => app
            .gate
            .check(conn, req.headers(), verb, req.uri().path())
            .await
            .map(|_| ())
            .map_err(|e| respond::error_response(&e)),
    }
}

/// The migration report: JSON, or a plain-text table with `?format=text`
/// or `Accept: text/plain`.
fn migration(app: &App, req: &Request<Incoming>) -> Response<Body> {
    let report = app.gate.migration().tracker().report();
    let text_wanted = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "format=text"))
        || req
            .headers()
            .get(http::header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.starts_with("text/plain"));
    if text_wanted {
        return text(StatusCode::OK, report.to_text());
    }
    match serde_json::to_string_pretty(&report) {
        Ok(json) => {
            let mut r = text(StatusCode::OK, json + "\n");
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        Err(_) => respond::json(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the report could not be encoded",
        ),
    }
}

fn flush(app: &App, query: Option<&str>) -> Response<Body> {
    let user = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("user="))
        .map(|u| {
            percent_encoding::percent_decode_str(u)
                .decode_utf8_lossy()
                .into_owned()
        });
    app.flush_caches(user.as_deref());
    info!(
        user = user.as_deref().unwrap_or("*"),
        "review caches flushed"
    );
    let body =
        serde_json::json!({"flushed": user.as_deref().map_or("all", |_| "user"), "user": user});
    let mut r = Response::new(full(Bytes::from(body.to_string())));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(full(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
