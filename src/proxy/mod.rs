//! Forwarding an authorized request to its upstream ([`upstream`]: `http`,
//! `https` with h2 by ALPN, `h2c`, `unix`). HTTP/1.1 upstreams (`http`,
//! `unix`) are reached on connections the client connection owns
//! ([`upstream::local`]); HTTP/2 and ALPN ones, and upgrades, through a
//! pooled client of the upstream's kind. Bodies and trailers stream both ways; HTTP/2 clients are
//! downgraded only for HTTP/1.1 upstreams; protocol upgrades (WebSocket,
//! SPDY for `kubectl exec`) are spliced through, always over HTTP/1.1.
//!
//! [`Forward`] is the seam between the pipeline and the network: the gate
//! hands it a request with a [`Permit`]; [`Upstreams`] sends it to the
//! permit's route, and tests put an in-memory upstream in its place.

pub mod headers;
pub mod trailers;
pub mod upgrade;
pub mod upstream;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HOST, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::authz::permit::Permit;
use crate::body::Body;
use crate::config::{Limits, RouteConfig, UpstreamConfig};
use crate::server::Downstream;
pub use upstream::SetupError;
use upstream::kind::{self, Kind, Protocol};
pub use upstream::local::Local;
use upstream::local::{Dialer, Failed};
use upstream::tls::ClientTls;
use upstream::{HttpClient, PoolKey};

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
    /// `downstream` (its address, and what a tunnel of it holds), whose
    /// upstream connections `local` keeps.
    fn forward(
        &self,
        permit: &Permit,
        req: Request<B>,
        path_and_query: PathAndQuery,
        downstream: &Downstream,
        local: &Local,
    ) -> impl Future<Output = Result<Response<Body>, Error>> + Send;
}

/// The upstream of every route, by [`crate::routes::RouteId`].
#[derive(Debug, Default)]
pub struct Upstreams {
    by_route: Vec<Option<Upstream>>,
    /// The client TLS of `https` upstreams, one per distinct set of files.
    tls: Vec<Arc<ClientTls>>,
}

impl Upstreams {
    /// One pooled client per distinct kind of upstream ([`PoolKey`]),
    /// shared by its routes; routes without an upstream (`mode: auth`) get
    /// none. Fails if a TLS file of an `https` upstream is unusable.
    pub fn new(routes: &[RouteConfig], limits: &Limits) -> Result<Self, SetupError> {
        let tls = upstream::load_tls(routes)?;
        let mut clients = HashMap::<PoolKey, Clients>::new();
        // One id per distinct upstream, for the connections a client
        // connection keeps to it.
        let mut ids = HashMap::<(PoolKey, Authority), usize>::new();
        let mut by_route = Vec::with_capacity(routes.len());
        for r in routes {
            let Some(u) = &r.upstream else {
                by_route.push(None);
                continue;
            };
            let key = PoolKey::of(u);
            let n = ids.len();
            let id = *ids
                .entry((key.clone(), kind::authority(&u.target)))
                .or_insert(n);
            let c = match clients.get(&key) {
                Some(c) => c.clone(),
                None => {
                    let files = match &key {
                        PoolKey::Https(f) => tls.get(f).cloned(),
                        _ => None,
                    };
                    let c = Clients::of(u, files);
                    clients.insert(key, c.clone());
                    c
                }
            };
            by_route.push(Some(Upstream::new(u, c, limits, id)));
        }
        Ok(Self {
            by_route,
            tls: tls.into_values().collect(),
        })
    }

    /// The client TLS material that is loaded from files (to watch).
    pub fn client_tls(&self) -> impl Iterator<Item = &Arc<ClientTls>> {
        self.tls
            .iter()
            .filter(|t| t.files().ca_file.is_some() || t.files().client_cert.is_some())
    }
}

/// The clients of one kind of upstream.
#[derive(Clone, Debug)]
pub struct Clients {
    /// Ordinary requests.
    main: Option<HttpClient>,
    /// Upgrade requests: HTTP/1.1 only; `None` for an HTTP/2-only upstream.
    upgrade: Option<HttpClient>,
    /// The version requests are tagged with.
    version: Version,
    /// An HTTP/1.1-only kind: ordinary requests go on connections of the
    /// client connection ([`Local`]) instead of `main`.
    local: Option<Kind>,
}

impl Clients {
    /// The clients for `u`, with the client TLS of an `https` upstream.
    /// An `https` upstream without its TLS gets none: its requests fail
    /// (502), never go out in plain text.
    fn of(u: &UpstreamConfig, tls: Option<Arc<ClientTls>>) -> Self {
        match Kind::of(&u.target, tls) {
            Some(k) => Self {
                version: k.request_version(),
                upgrade: k.for_upgrade().map(upstream::client),
                local: (k.protocol == Protocol::Http1).then(|| k.clone()),
                main: Some(upstream::client(k)),
            },
            None => Self {
                main: None,
                upgrade: None,
                version: Version::HTTP_11,
                local: None,
            },
        }
    }
}

impl Forward<Incoming> for Upstreams {
    async fn forward(
        &self,
        permit: &Permit,
        req: Request<Incoming>,
        path_and_query: PathAndQuery,
        downstream: &Downstream,
        local: &Local,
    ) -> Result<Response<Body>, Error> {
        let upstream = permit
            .route()
            .index()
            .and_then(|i| self.by_route.get(i))
            .and_then(Option::as_ref)
            .ok_or(Error::NoUpstream)?;
        upstream
            .forward(req, path_and_query, downstream, local)
            .await
    }
}

/// One upstream: where to send requests and the clients that send them.
#[derive(Clone, Debug)]
pub struct Upstream {
    scheme: Scheme,
    authority: Authority,
    /// What errors name: the authority, or the socket path.
    name: String,
    clients: Clients,
    /// Ordinary requests to an HTTP/1.1 upstream, with the `Host` they carry.
    local: Option<(Dialer, HeaderValue)>,
    timeout: Duration,
    tunnel_idle: Duration,
    max_age: Duration,
}

impl Upstream {
    /// The upstream `u`, using `clients`; `id` tells it apart from the
    /// other upstreams a client connection may keep connections to.
    pub fn new(u: &UpstreamConfig, clients: Clients, limits: &Limits, id: usize) -> Self {
        let authority = kind::authority(&u.target);
        let scheme = kind::scheme(&u.target);
        let local = clients.local.clone().and_then(|k| {
            let dst = Uri::builder()
                .scheme(scheme.clone())
                .authority(authority.clone())
                .path_and_query("/")
                .build()
                .ok()?;
            let host = host_header(&scheme, &authority)?;
            let d = Dialer::new(
                k,
                dst,
                id,
                limits.upstream_idle_timeout,
                limits.upstream_max_requests,
            );
            Some((d, host))
        });
        Self {
            local,
            scheme: kind::scheme(&u.target),
            name: match &u.target {
                crate::config::UpstreamTarget::Unix(p) => format!("unix:{}", p.display()),
                _ => authority.to_string(),
            },
            authority,
            clients,
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
        local: &Local,
    ) -> Result<Response<Body>, Error> {
        if let Some((dialer, host)) = &self.local
            && upgrade::requested(req.headers()).is_none()
        {
            return self
                .on_local(dialer, host, local, req, path_and_query, downstream)
                .await;
        }
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
        // An upgrade goes over HTTP/1.1 (HTTP/2 has no `Upgrade`); the gate
        // refuses upgrades to an HTTP/2-only upstream before this.
        let (client, version) = match (&asked, &self.clients) {
            (None, c) => (c.main.as_ref(), c.version),
            (Some(_), c) => (c.upgrade.as_ref(), Version::HTTP_11),
        };
        let client = client.ok_or_else(|| self.bad_switch("no client can carry this request"))?;
        // The legacy client refuses HTTP/2-tagged requests on HTTP/1.1
        // connections; HTTP/1.1-tagged ones go out as HTTP/2 where ALPN chose it.
        *req.version_mut() = version;
        set_forwarded(req.headers_mut(), host, downstream.peer);
        let req = req.map(trailers::NoTrailers);
        let sent = tokio::time::timeout(self.timeout, client.request(req)).await;
        let mut resp = sent
            .map_err(|_| Error::Timeout {
                upstream: self.name.clone(),
                timeout: self.timeout,
            })?
            .map_err(|e| self.failed(&e))?;
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

    /// An ordinary request to an HTTP/1.1 upstream, on a connection of the
    /// client connection's (see [`upstream::local`]).
    async fn on_local(
        &self,
        dialer: &Dialer,
        host: &HeaderValue,
        local: &Local,
        mut req: Request<Incoming>,
        path_and_query: PathAndQuery,
        downstream: &Downstream,
    ) -> Result<Response<Body>, Error> {
        let client_host = req.headers_mut().remove(HOST).or_else(|| {
            req.uri()
                .authority()
                .and_then(|a| HeaderValue::try_from(a.as_str()).ok())
        });
        *req.uri_mut() = Uri::from(path_and_query);
        *req.version_mut() = Version::HTTP_11;
        set_forwarded(req.headers_mut(), client_host, downstream.peer);
        req.headers_mut().insert(HOST, host.clone());
        let sent = dialer.send(local, req.map(trailers::NoTrailers));
        let mut resp = tokio::time::timeout(self.timeout, sent)
            .await
            .map_err(|_| Error::Timeout {
                upstream: self.name.clone(),
                timeout: self.timeout,
            })?
            .map_err(|e| match e {
                Failed::Connect(e) => self.unavailable(e),
                Failed::Http(e) => self.failed(&e),
            })?;
        // Nothing was asked to switch: a 101 would open a channel no check
        // sees into.
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            return Err(self.bad_switch("the upstream switched protocols unasked"));
        }
        headers::strip_hop_by_hop(resp.headers_mut());
        Ok(resp.map(BodyExt::boxed))
    }

    /// A failed exchange: the client's body broke, or the upstream failed.
    fn failed(&self, e: &(dyn std::error::Error + 'static)) -> Error {
        let mut next = Some(e);
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
            upstream: self.name.clone(),
            detail: why.to_owned(),
        }
    }

    fn unavailable(&self, e: impl std::error::Error) -> Error {
        Error::Unavailable {
            upstream: self.name.clone(),
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

/// The `Host` of requests to `authority`, as hyper-util's client writes
/// it: the port only when it is not the scheme's default.
fn host_header(scheme: &Scheme, authority: &Authority) -> Option<HeaderValue> {
    let default = if *scheme == Scheme::HTTPS { 443 } else { 80 };
    let host = match authority.port_u16() {
        Some(p) if p != default => format!("{}:{p}", authority.host()),
        _ => authority.host().to_owned(),
    };
    HeaderValue::try_from(host).ok()
}

/// `Host` comes from the upstream URI; the client's host and address travel
/// in `X-Forwarded-*`.
fn set_forwarded(h: &mut http::HeaderMap, host: Option<HeaderValue>, client: SocketAddr) {
    h.remove(HOST);
    if let Some(host) = host {
        h.insert(X_FORWARDED_HOST, host);
    }
    h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    let ip = client.ip().to_string();
    let xff = match h.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {ip}"),
        None => ip,
    };
    if let Ok(v) = HeaderValue::try_from(xff) {
        h.insert(X_FORWARDED_FOR, v);
    }
}

const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
