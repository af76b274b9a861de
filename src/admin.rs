//! The admin listener: `/healthz`, `/readyz`, `/metrics`, `POST /cache/flush`.
//!
//! Health and readiness are open (kubelet probes them). Metrics, the
//! migration report and cache flushing are guarded: loopback peers only, or
//! (`admin.access: authorized`, over TLS) identities the gate admits as
//! non-resource requests (`get /metrics`, `create /cache/flush`), through
//! the same admission as every route. Refusals come from the gate's one
//! refusal map.

use std::future::Future;
use std::sync::Arc;

use http::header::HeaderValue;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use rustls_pki_types::CertificateDer;
use tokio::net::TcpListener;
use tracing::info;

use crate::app::App;
use crate::body::{self, Body};
use crate::clock::unix_now;
use crate::config::AdminAccess;
use crate::gate::{self, ConnInfo};
use crate::server::{self, Connections, Downstream, Handshake, Limits, Profile};

/// One readiness check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// Name (with several listeners, a listener's own checks are named
    /// `listener/<name>/<check>`).
    pub name: String,
    /// Passing?
    pub ok: bool,
    /// What it saw.
    pub detail: String,
}

/// Evaluates readiness at `now` (Unix seconds): ready only when every
/// listener is bound and its material is good.
pub fn readiness(app: &App, now: i64) -> Vec<Check> {
    let mut checks = Vec::new();
    let draining = app.health.is_draining();
    checks.push(Check {
        name: "shutdown".into(),
        ok: !draining,
        detail: if draining { "draining" } else { "serving" }.into(),
    });
    let several = app.listeners.len() > 1;
    for l in &app.listeners {
        let prefix = if several {
            format!("listener/{}/", l.name)
        } else {
            String::new()
        };
        checks.extend(listener_checks(l, now).into_iter().map(|mut c| {
            c.name.insert_str(0, &prefix);
            c
        }));
    }
    if let Some(k) = &app.kubernetes {
        let last = k.api.last_success();
        let window = i64::try_from(app.admin.api_ready_window.as_secs()).unwrap_or(i64::MAX);
        let rejected = k.api.last_rejected();
        let (ok, detail) = if rejected > last {
            (
                false,
                format!(
                    "the API refused authgate's own credentials {}s ago (401/403)",
                    now - rejected
                ),
            )
        } else if last == 0 {
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
            name: "kubernetes_api".into(),
            ok,
            detail,
        });
    }
    if let Some(fleet) = &app.fleet {
        let (ok, detail) = fleet.check(now);
        checks.push(Check {
            name: "fleet_revocation".to_owned(),
            ok,
            detail,
        });
    }
    checks
}

/// One listener's checks: bound, certificates, CRLs, last reload.
fn listener_checks(l: &crate::app::Listener, now: i64) -> Vec<Check> {
    let mut checks = Vec::new();
    let bound = l.bound();
    checks.push(Check {
        name: "listener".into(),
        ok: bound.is_some(),
        detail: match bound {
            Some(addr) => format!("{:?} accepting on {addr}", l.name),
            None => format!("{:?} not yet accepting on {}", l.name, l.listen),
        },
    });
    let s = l.tls.status();
    checks.push(expiry("serving_certificate", s.serving_not_after, now));
    if let Some(ca) = s.client_ca_not_after {
        checks.push(expiry("client_ca", ca, now));
    }
    if let Some(next) = s.crl_next_update {
        let ok = now <= next || l.tls_config.allow_stale_crl;
        let detail = if now <= next {
            format!("next update in {}h", (next - now) / 3600)
        } else {
            format!("past its nextUpdate by {}h", (now - next) / 3600)
        };
        checks.push(Check {
            name: "crl".into(),
            ok,
            detail,
        });
    }
    // A reload that failed after the last good one: the files on disk are
    // not what is served, and the next rotation may not land.
    let (_, failed) = l.reloader.last_reloads();
    let failing = l.reloader.failing();
    checks.push(Check {
        name: "tls_reload".into(),
        ok: !failing,
        detail: if !failing {
            "the files on disk are in service".into()
        } else {
            format!(
                "the last reload failed {}s ago; the previous material is in service",
                now - failed
            )
        },
    });
    checks
}

fn expiry(name: &str, not_after: i64, now: i64) -> Check {
    let left = not_after - now;
    Check {
        name: name.into(),
        ok: left > 0,
        detail: if left > 0 {
            format!("expires in {}h", left / 3600)
        } else {
            format!("expired {}h ago", -left / 3600)
        },
    }
}

/// Serves the admin endpoints on `listener` until `shutdown`, through the
/// same accept loop as the main listener, under `admin.max_connections`.
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let handshake = if app.admin.tls {
        Handshake::Tls {
            acceptor: app.tls.clone(),
            profile: Profile::Admin,
            metrics: None,
        }
    } else {
        Handshake::Plain
    };
    let limits = Limits::admin(&app.limits, &app.admin);
    server::serve(
        listener,
        handshake,
        Arc::new(Admin { app }),
        limits,
        shutdown,
    )
    .await;
}

/// The admin listener's [`Connections`].
struct Admin {
    app: Arc<App>,
}

impl Connections for Admin {
    type Conn = ConnInfo;

    fn open(&self, downstream: Downstream, chain: &[CertificateDer<'static>]) -> ConnInfo {
        self.app.gate.conn_info_for(downstream, chain)
    }

    async fn call(self: Arc<Self>, conn: Arc<ConnInfo>, req: Request<Incoming>) -> Response<Body> {
        match respond_to(&self.app, &conn, &req).await {
            Ok(resp) => resp,
            Err(e) => gate::respond::refusal(&e.refusal()),
        }
    }
}

async fn respond_to(
    app: &App,
    conn: &ConnInfo,
    req: &Request<Incoming>,
) -> Result<Response<Body>, gate::Error> {
    let path = req.uri().path();
    Ok(match (req.method(), path) {
        (&Method::GET | &Method::HEAD, "/healthz" | "/livez") => body::text(StatusCode::OK, "ok\n"),
        (&Method::GET | &Method::HEAD, "/readyz") => ready(app),
        (&Method::GET, "/metrics") => {
            guard(app, conn, req.headers(), path, "get").await?;
            body::with_type(
                StatusCode::OK,
                app.metrics.render(),
                Some(HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )),
            )
        }
        (&Method::GET, "/migration") => {
            guard(app, conn, req.headers(), path, "get").await?;
            migration(app, req)?
        }
        (&Method::POST, "/cache/flush") => {
            guard(app, conn, req.headers(), path, "create").await?;
            flush(app, req.uri().query()).await?
        }
        _ => return Err(gate::Error::NoRoute(path.to_owned())),
    })
}

fn ready(app: &App) -> Response<Body> {
    let checks = readiness(app, unix_now());
    let ok = checks.iter().all(|c| c.ok);
    let mut out = String::new();
    for c in &checks {
        let mark = if c.ok { "+" } else { "-" };
        out.push_str(&format!(
            "[{mark}]{} {}: {}\n",
            c.name,
            if c.ok { "ok" } else { "failed" },
            c.detail
        ));
    }
    out.push_str(if ok {
        "readyz check passed\n"
    } else {
        "readyz check failed\n"
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    body::text(status, out)
}

/// `Ok` when the caller may use a guarded endpoint, else why not.
async fn guard(
    app: &App,
    conn: &ConnInfo,
    headers: &http::HeaderMap,
    path: &str,
    verb: &'static str,
) -> Result<(), gate::Error> {
    match app.admin.access {
        AdminAccess::Loopback if conn.peer.ip().is_loopback() => Ok(()),
        AdminAccess::Loopback => Err(gate::Error::AdminLoopbackOnly),
        AdminAccess::Authorized => app
            .gate
            .admit_admin(conn, headers, verb, path)
            .await
            .map(drop),
    }
}

/// The migration report: JSON, a plain-text table with `?format=text`
/// or `Accept: text/plain`, or the HTML page with `?format=html` or an
/// `Accept` naming `text/html` (a browser).
fn migration(app: &App, req: &Request<Incoming>) -> Result<Response<Body>, gate::Error> {
    let report = app.gate.migration().tracker().report();
    let format = |f: &str| {
        req.uri()
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv.strip_prefix("format=") == Some(f)))
    };
    let accept = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .unwrap_or("");
    if format("text") || accept.starts_with("text/plain") {
        return Ok(body::text(StatusCode::OK, report.to_text()));
    }
    if format("html") || accept.contains("text/html") {
        return Ok(crate::migration::page::response(&report));
    }
    let json = serde_json::to_string_pretty(&report)
        .map_err(|_| gate::Error::Internal("the migration report could not be encoded"))?;
    Ok(body::with_type(
        StatusCode::OK,
        json + "\n",
        Some(HeaderValue::from_static("application/json")),
    ))
}

/// Flushes this replica's caches at once and, with `fleet`, adds the flush
/// to the revocation object so every replica applies it; if that write
/// fails the answer is a 503 saying the flush is local only.
async fn flush(app: &App, query: Option<&str>) -> Result<Response<Body>, gate::Error> {
    let user = flush_user(query)?;
    app.flush_caches(user.as_deref());
    info!(
        user = user.as_deref().unwrap_or("*"),
        "review caches flushed"
    );
    let mut json =
        serde_json::json!({"flushed": user.as_deref().map_or("all", |_| "user"), "user": user});
    if let Some(fleet) = &app.fleet {
        match fleet.request_flush(user.as_deref()).await {
            Ok(_) => json["fleet"] = fleet.object().into(),
            Err(e) => {
                tracing::warn!(object = %fleet.object(), error = %e, "the flush could not be written to the revocation object");
                return Err(gate::Error::FleetFlush(format!(
                    "flushed on this replica only: the revocation object {} could not be updated: {e}",
                    fleet.object()
                )));
            }
        }
    }
    Ok(body::with_type(
        StatusCode::OK,
        json.to_string(),
        Some(HeaderValue::from_static("application/json")),
    ))
}

/// The `user` of a flush query (form-encoded: `+` is a space), if any. An
/// empty or repeated `user` is refused rather than flushing nobody, or
/// someone else than meant.
fn flush_user(query: Option<&str>) -> Result<Option<String>, gate::Error> {
    let mut users = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|kv| kv.strip_prefix("user="))
        .map(|u| {
            percent_encoding::percent_decode_str(&u.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        });
    let user = users.next();
    if users.next().is_some() {
        return Err(gate::Error::BadRequest(
            "more than one user to flush".into(),
        ));
    }
    if user.as_deref().is_some_and(str::is_empty) {
        return Err(gate::Error::BadRequest("the user to flush is empty".into()));
    }
    Ok(user)
}

#[cfg(test)]
mod tests;
