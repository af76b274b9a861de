//! Forwarding an authorized request to its upstream over a pooled HTTP/1.1
//! client: bodies stream both ways, HTTP/2 clients are downgraded, and
//! protocol upgrades (WebSocket, SPDY for `kubectl exec`) are spliced through.
//!
//! [`Forward`] is the seam between the pipeline and the network: the gate
//! hands it a request with a [`Permit`]; [`Upstreams`] sends it to the
//! permit's route, and tests put an in-memory upstream in its place.

pub mod headers;
pub mod upgrade;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::header::{HOST, HeaderValue};
use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::ClientConfig;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::authz::permit::Permit;
use crate::body::Body;
use crate::config::{Limits, RouteConfig};
use crate::server::Downstream;

type HttpClient = Client<HttpsConnector<HttpConnector>, Incoming>;

/// Why forwarding failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Could not connect, or the connection failed before a response (502).
    #[error("upstream {upstream} failed: {detail}")]
    Unavailable {
        /// The upstream authority.
        upstream: String,
        /// Cause.
        detail: String,
    },
    /// The client's own request body broke (e.g. invalid chunked encoding)
    /// while it was streamed upstream (400: the client's fault, not the upstream's).
    #[error("the request body is malformed: {0}")]
    RequestBody(String),
    /// No response headers within `limits.upstream_timeout` (504).
    #[error("upstream {upstream} did not answer within {timeout:?}")]
    Timeout {
        /// The upstream authority.
        upstream: String,
        /// The limit.
        timeout: Duration,
    },
    /// The permit's route has no upstream (a bug: validation gives every
    /// proxy-mode route one).
    #[error("the route has no upstream")]
    NoUpstream,
}

/// Sends a permitted request on: the pipeline's only way out.
pub trait Forward<B>: Send + Sync {
    /// Sends `req` (headers already rewritten for `permit`) to
    /// `path_and_query` on the permit's route, for the client connection
    /// `downstream` (its address, and what a tunnel of it holds).
    fn forward(
        &self,
        permit: &Permit,
        req: Request<B>,
        path_and_query: PathAndQuery,
        downstream: &Downstream,
    ) -> impl Future<Output = Result<Response<Body>, Error>> + Send;
}

/// The upstream of every route, by [`crate::routes::RouteId`].
#[derive(Debug, Default)]
pub struct Upstreams {
    by_route: Vec<Option<Upstream>>,
}

impl Upstreams {
    /// One pooled client per distinct upstream CA file, shared by its
    /// routes; routes without an upstream (`mode: auth`) get none.
    pub fn new(routes: &[RouteConfig], limits: &Limits) -> Result<Self, SetupError> {
        let mut clients = std::collections::HashMap::<Option<PathBuf>, HttpClient>::new();
        let mut by_route = Vec::with_capacity(routes.len());
        for r in routes {
            let Some(uri) = &r.upstream else {
                by_route.push(None);
                continue;
            };
            let client = match clients.get(&r.upstream_ca_file) {
                Some(c) => c.clone(),
                None => {
                    let c = client(r.upstream_ca_file.as_deref())?;
                    clients.insert(r.upstream_ca_file.clone(), c.clone());
                    c
                }
            };
            by_route.push(Some(Upstream::new(uri, client, limits)));
        }
        Ok(Self { by_route })
    }
}

impl Forward<Incoming> for Upstreams {
    async fn forward(
        &self,
        permit: &Permit,
        req: Request<Incoming>,
        path_and_query: PathAndQuery,
        downstream: &Downstream,
    ) -> Result<Response<Body>, Error> {
        let upstream = permit
            .route()
            .index()
            .and_then(|i| self.by_route.get(i))
            .and_then(Option::as_ref)
            .ok_or(Error::NoUpstream)?;
        upstream.forward(req, path_and_query, downstream).await
    }
}

/// Building an upstream client failed (bad CA file).
#[derive(Debug, thiserror::Error)]
#[error("upstream CA file {path}: {reason}")]
pub struct SetupError {
    path: String,
    reason: String,
}

/// One upstream: where to send requests and the client that sends them.
#[derive(Clone, Debug)]
pub struct Upstream {
    scheme: Scheme,
    authority: http::uri::Authority,
    client: HttpClient,
    timeout: Duration,
    tunnel_idle: Duration,
    max_age: Duration,
}

impl Upstream {
    /// An upstream at `base` (scheme and authority), using `client`.
    pub fn new(base: &Uri, client: HttpClient, limits: &Limits) -> Self {
        Self {
            scheme: base.scheme().cloned().unwrap_or(Scheme::HTTP),
            authority: base
                .authority()
                .cloned()
                .unwrap_or_else(|| http::uri::Authority::from_static("localhost")),
            client,
            timeout: limits.upstream_timeout,
            tunnel_idle: limits.tunnel_idle_timeout,
            max_age: limits.max_connection_age,
        }
    }

    /// Sends `req` (headers already rewritten) to `path_and_query` on this
    /// upstream and returns its response.
    pub async fn forward(
        &self,
        mut req: Request<Incoming>,
        path_and_query: PathAndQuery,
        downstream: &Downstream,
    ) -> Result<Response<Body>, Error> {
        let host = req.headers().get(HOST).cloned().or_else(|| {
            req.uri()
                .authority()
                .and_then(|a| HeaderValue::try_from(a.as_str()).ok())
        });
        // What the tunnel's identity rests on, set by the gate (never sent).
        let lease = req
            .extensions_mut()
            .remove::<upgrade::Lease>()
            .unwrap_or_default();
        // An upgrade the gate allowed: what was asked, to check the 101 against.
        let asked = upgrade::requested(req.headers()).map(|protocol| {
            (
                protocol,
                req.headers().clone(),
                hyper::upgrade::on(&mut req),
            )
        });
        *req.uri_mut() = Uri::from_parts({
            let mut p = http::uri::Parts::default();
            p.scheme = Some(self.scheme.clone());
            p.authority = Some(self.authority.clone());
            p.path_and_query = Some(path_and_query);
            p
        })
        .map_err(|e| self.unavailable(e))?;
        // The pooled client speaks HTTP/1.1 and refuses HTTP/2-tagged requests.
        *req.version_mut() = Version::HTTP_11;
        set_forwarded(req.headers_mut(), host, downstream.peer);
        let sent = tokio::time::timeout(self.timeout, self.client.request(req)).await;
        let mut resp = sent
            .map_err(|_| Error::Timeout {
                upstream: self.authority.to_string(),
                timeout: self.timeout,
            })?
            .map_err(|e| self.failed(e))?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            headers::strip_hop_by_hop(resp.headers_mut());
            return Ok(resp.map(BodyExt::boxed));
        }
        // A 101: splice only what was asked for and proven; anything else
        // would open a raw channel that no later check sees into.
        let Some((protocol, request, client)) = asked else {
            return Err(self.bad_switch("the upstream switched protocols unasked"));
        };
        upgrade::switched(&protocol, &request, resp.headers())
            .map_err(|why| self.bad_switch(why))?;
        upgrade::splice(
            client,
            hyper::upgrade::on(&mut resp),
            downstream.hold(),
            self.tunnel_idle,
            lease,
            downstream.opened + self.max_age,
        );
        Ok(resp.map(BodyExt::boxed))
    }

    /// A failed exchange: the client's body broke, or the upstream failed.
    fn failed(&self, e: hyper_util::client::legacy::Error) -> Error {
        let mut next: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
        while let Some(cause) = next {
            if cause
                .downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_user)
            {
                return Error::RequestBody(error_chain(cause));
            }
            next = cause.source();
        }
        self.unavailable(e)
    }

    fn bad_switch(&self, why: &str) -> Error {
        Error::Unavailable {
            upstream: self.authority.to_string(),
            detail: why.to_owned(),
        }
    }

    fn unavailable(&self, e: impl std::error::Error) -> Error {
        Error::Unavailable {
            upstream: self.authority.to_string(),
            detail: error_chain(&e),
        }
    }
}

/// An error and its sources, joined by `": "`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        next = cause.source();
    }
    s
}

/// `Host` comes from the upstream URI; the client's host and address travel
/// in `X-Forwarded-*`.
fn set_forwarded(h: &mut http::HeaderMap, host: Option<HeaderValue>, client: SocketAddr) {
    h.remove(HOST);
    if let Some(host) = host {
        h.insert("x-forwarded-host", host);
    }
    h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
    let ip = client.ip().to_string();
    let xff = match h.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {ip}"),
        None => ip,
    };
    if let Ok(v) = HeaderValue::try_from(xff) {
        h.insert("x-forwarded-for", v);
    }
}

/// Builds the pooled client for upstreams, trusting `ca_file` or, without
/// one, the system roots.
pub fn client(ca_file: Option<&Path>) -> Result<HttpClient, SetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let setup = |path: &Path, reason: String| SetupError {
        path: path.display().to_string(),
        reason,
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| setup(Path::new("-"), e.to_string()))?;
    let tls = match ca_file {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| setup(path, e.to_string()))?;
            if certs.is_empty() {
                return Err(setup(path, "no certificates found".into()));
            }
            for c in certs {
                roots.add(c).map_err(|e| setup(path, e.to_string()))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => {
            use rustls_platform_verifier::BuilderVerifierExt;
            builder
                .with_platform_verifier()
                .map_err(|e| setup(Path::new("(system roots)"), e.to_string()))?
                .with_no_client_auth()
        }
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .build(https))
}
