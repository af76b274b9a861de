//! The request pipeline, top to bottom: route, authenticate (with the
//! route's methods and the migration policy), authorize, forward (or, in
//! `mode: auth`, answer the front proxy). Every failure leaves the pipeline
//! as an [`Error`] and becomes a response in [`crate::respond`]; nothing is
//! forwarded on any error path, including a panic.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use futures_util::future::Either;
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::authn::policy::Notice;
use crate::authn::{self, Authenticator, CertIdentity, x509};
use crate::authz::{self, Authorizers};
use crate::config::{AuthEndpoint, HeaderNames, Mode, PathRules, RouteAuth, RouteConfig};
use crate::identity::{AuthMethod, Identity};
use crate::metrics::{Metrics, RouteLabel};
use crate::migration::Migration;
use crate::proxy::{self, Body, Upstream};
use crate::respond;
use crate::routes::{RouteTable, normalize_path};
use crate::{audit, auth_request, cache, tls};
use globset::{GlobSet, GlobSetBuilder};

/// Why a request was not forwarded (or forwarding failed).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Unusable request line (bad path, `CONNECT`).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// No route covers the path.
    #[error("no route for path {0:?}")]
    NoRoute(String),
    /// `mode: auth`: the checked request carries identity headers, which
    /// the front proxy would pass on.
    #[error("the request carries the identity header {0}; clients may not send identity headers")]
    SpoofedIdentity(String),
    /// Not authenticated.
    #[error(transparent)]
    Authn(#[from] authn::Error),
    /// Not authorized.
    #[error(transparent)]
    Authz(#[from] authz::Error),
    /// Forwarding failed.
    #[error(transparent)]
    Upstream(#[from] proxy::Error),
    /// A bug: a panic, or an identity that cannot be expressed as headers.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl Error {
    /// The fixed log/metric reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::NoRoute(_) => "no_route",
            Self::SpoofedIdentity(_) => "spoofed_identity",
            Self::Authn(e) => e.reason(),
            Self::Authz(e) => e.reason(),
            Self::Upstream(proxy::Error::Unavailable { .. }) => "upstream_error",
            Self::Upstream(proxy::Error::RequestBody(_)) => "bad_request",
            Self::Upstream(proxy::Error::Timeout { .. }) => "upstream_timeout",
            Self::Internal(_) => "internal_error",
        }
    }
}

/// What the TLS layer established about a connection, shared by its requests.
#[derive(Debug)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// The client certificate's identity, if a certificate was presented.
    pub cert: Option<CertIdentity>,
    /// The client certificate as an Envoy `X-Forwarded-Client-Cert` value,
    /// when `headers.forward_client_cert` is `xfcc`.
    pub xfcc: Option<HeaderValue>,
}

/// A configured route.
#[derive(Debug)]
pub struct Route {
    /// Its configuration.
    pub config: RouteConfig,
    /// Where it forwards to (`None` in `mode: auth`).
    pub upstream: Option<Upstream>,
}

/// The pipeline and everything it needs.
pub struct Gate {
    routes: RouteTable<Route>,
    authn: Authenticator,
    authz: Authorizers,
    headers: HeaderNames,
    /// When set, only matching paths are served.
    allow_paths: Option<GlobSet>,
    /// Paths served without authentication or authorization.
    unauthenticated_paths: Option<GlobSet>,
    migration: Migration,
    mode: Mode,
    /// Verifies certificates a trusted front proxy forwards (`mode: auth`).
    tls: Arc<tls::Acceptor>,
    metrics: Metrics,
}

/// The parts a [`Gate`] is assembled from.
pub struct Parts {
    /// Routes.
    pub routes: Vec<Route>,
    /// Authentication.
    pub authn: Authenticator,
    /// Authorization.
    pub authz: Authorizers,
    /// Identity header names.
    pub headers: HeaderNames,
    /// Path allow-list and public paths.
    pub paths: PathRules,
    /// Migration policy and tracking.
    pub migration: Migration,
    /// Proxy or auth endpoint.
    pub mode: Mode,
    /// The TLS material in service.
    pub tls: Arc<tls::Acceptor>,
    /// Metric handles.
    pub metrics: Metrics,
}

/// A set of validated globs; `None` when empty.
fn glob_set(globs: &[globset::Glob]) -> Option<GlobSet> {
    if globs.is_empty() {
        return None;
    }
    let mut b = GlobSetBuilder::new();
    for g in globs {
        b.add(g.clone());
    }
    // Every glob compiled on its own during validation; a set of them builds.
    // Should it not, an empty set matches nothing: for the allow-list that
    // closes every path, for public paths it makes none public.
    Some(b.build().unwrap_or_else(|_| GlobSet::empty()))
}

/// What the access log records about a request as it moves along.
#[derive(Default)]
struct Trail<'g> {
    route: Option<&'g str>,
    identity: Option<Arc<Identity>>,
    /// `mode: auth`: the method and path being checked.
    original: Option<(Method, String)>,
}

/// Where a request is going, before anyone is asked who sends it.
enum Target<'g> {
    /// A public path: no authentication, no identity.
    Public(&'g Route),
    /// Everything else.
    Guarded(&'g Route),
}

impl Gate {
    /// Assembles a gate from its parts.
    pub fn new(p: Parts) -> Self {
        let routes = p
            .routes
            .into_iter()
            .map(|r| (r.config.path_prefix.clone(), r))
            .collect();
        Self {
            routes: RouteTable::new(routes),
            authn: p.authn,
            authz: p.authz,
            headers: p.headers,
            allow_paths: glob_set(&p.paths.allow),
            unauthenticated_paths: glob_set(&p.paths.unauthenticated),
            migration: p.migration,
            mode: p.mode,
            tls: p.tls,
            metrics: p.metrics,
        }
    }

    /// The migration policy and usage tracker.
    pub fn migration(&self) -> &Migration {
        &self.migration
    }

    /// What a new connection's requests share: its peer address and the
    /// identity of its verified client certificate, mapped once.
    pub fn conn_info(&self, peer: SocketAddr, leaf_der: Option<&[u8]>) -> ConnInfo {
        ConnInfo {
            peer,
            cert: leaf_der.map(|der| self.authn.map_cert(der)),
            xfcc: leaf_der
                .filter(|_| self.headers.forward_client_cert)
                .and_then(x509::xfcc)
                .and_then(|v| HeaderValue::try_from(v).ok()),
        }
    }

    /// Serves one request: the upstream's response (or, in `mode: auth`, the
    /// check's answer), or the refusal.
    pub async fn handle(&self, conn: &ConnInfo, req: Request<Incoming>) -> Response<Body> {
        let start = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let mut trail = Trail::default();
        let pass = match &self.mode {
            Mode::Proxy => Either::Left(self.pass(conn, req, &mut trail)),
            Mode::Auth(ep) => Either::Right(self.check_for_proxy(conn, ep, req, &mut trail)),
        };
        let (result, lookups) = cache::traced(AssertUnwindSafe(pass).catch_unwind()).await;
        let result = result.unwrap_or(Err(Error::Internal("request handler panicked")));
        let (resp, reason, detail) = match result {
            Ok(r) => (r, "allowed", None),
            Err(e) => (respond::error_response(&e), e.reason(), Some(e.to_string())),
        };
        let (method, path) = trail.original.take().unwrap_or((method, path));
        audit::record(
            &self.metrics,
            &audit::Record {
                peer: conn.peer,
                method: &method,
                path: &path,
                route: trail.route,
                identity: trail.identity.as_deref(),
                status: resp.status().as_u16(),
                reason,
                detail: detail.as_deref(),
                latency: start.elapsed(),
                lookups,
            },
        );
        resp
    }

    /// Authenticates and authorizes a request for `verb` on the non-resource
    /// `path` without forwarding it (the admin endpoints use this).
    pub async fn check(
        &self,
        conn: &ConnInfo,
        headers: &http::HeaderMap,
        verb: &str,
        path: &str,
    ) -> Result<Arc<Identity>, Error> {
        let id = self
            .authn
            .authenticate(conn.cert.as_ref(), headers, RouteAuth::default())
            .await?;
        authn::policy::admit(RouteAuth::default(), &id, self.migration.is_pinned(&id))?;
        let attrs = authz::attributes::Attributes {
            verb: verb.to_owned(),
            target: authz::attributes::Target::NonResource {
                path: path.to_owned(),
            },
        };
        self.authz.authorize(&id, &attrs).await?;
        Ok(id)
    }

    /// `mode: proxy`: route, admit, forward.
    async fn pass<'g>(
        &'g self,
        conn: &ConnInfo,
        mut req: Request<Incoming>,
        trail: &mut Trail<'g>,
    ) -> Result<Response<Body>, Error> {
        // 1. Which route? The path is normalised once; authorization and the
        //    upstream both see the normalised form.
        let (path, path_and_query) = target(&req)?;
        let route = match self.route(&path, trail)? {
            Target::Public(route) => {
                proxy::headers::sanitize(req.headers_mut(), &self.headers);
                return Ok(upstream(route)?
                    .forward(req, path_and_query, conn.peer)
                    .await?);
            }
            Target::Guarded(route) => route,
        };

        // 2-3. Who is asking, may they use this credential here, may they do this?
        let attrs =
            authz::attributes::for_request(route.config.resource.as_ref(), req.method(), &path);
        let (id, notice) = self
            .admit(conn.cert.as_ref(), req.headers(), route, &attrs, trail)
            .await?;

        // 4. Forward, carrying authgate's identity headers and no client-sent ones.
        proxy::headers::rewrite(req.headers_mut(), &id, &self.headers)
            .map_err(|_| Error::Internal("identity cannot be expressed as headers"))?;
        if let (Some(xfcc), AuthMethod::Mtls) = (&conn.xfcc, id.method) {
            req.headers_mut().insert(proxy::headers::XFCC, xfcc.clone());
        }
        let mut resp = upstream(route)?
            .forward(req, path_and_query, conn.peer)
            .await?;
        notify(&mut resp, notice);
        Ok(resp)
    }

    /// `mode: auth`: the same decision about the request a front proxy is
    /// checking, answered with the identity headers instead of forwarded.
    async fn check_for_proxy<'g>(
        &'g self,
        conn: &ConnInfo,
        ep: &AuthEndpoint,
        req: Request<Incoming>,
        trail: &mut Trail<'g>,
    ) -> Result<Response<Body>, Error> {
        // 1. Which request is being checked, and which route would serve it?
        let original = auth_request::original(&req, &ep.path).map_err(|e| match e {
            auth_request::Malformed::NotEndpoint(p) => Error::NoRoute(p),
            e => Error::BadRequest(e.to_string()),
        })?;
        trail.original = Some((original.method.clone(), original.path.clone()));
        // The front proxy forwards what the client sent; authgate cannot
        // strip identity headers there, so it refuses them (public paths too).
        if let Some(name) = proxy::headers::claimed_identity(req.headers(), &self.headers) {
            return Err(Error::SpoofedIdentity(name.to_string()));
        }
        let route = match self.route(&original.path, trail)? {
            Target::Public(_) => return Ok(respond::empty(StatusCode::OK)),
            Target::Guarded(route) => route,
        };

        // 2. The client certificate: only a trusted proxy may forward one,
        //    and only one that verifies against the client CA counts. The
        //    connection's own certificate is the proxy's, never the client's.
        let cert = if auth_request::trusted(ep, conn.peer.ip()) {
            auth_request::forwarded_chain(req.headers(), &ep.cert_header)
                .map_err(|e| authn::Error::ForwardedCertRefused(e.to_string()))?
                .map(|chain| {
                    self.tls
                        .verify_client_chain(&chain)
                        .map_err(authn::Error::ForwardedCertRefused)?;
                    Ok::<_, authn::Error>(self.authn.map_cert(&chain[0]))
                })
                .transpose()?
        } else {
            None
        };

        // 3. The same admission as in proxy mode, for the original request.
        let attrs = authz::attributes::for_request(
            route.config.resource.as_ref(),
            &original.method,
            &original.path,
        );
        let (id, notice) = self
            .admit(cert.as_ref(), req.headers(), route, &attrs, trail)
            .await?;

        // 4. Answer with the identity headers for the proxy to pass on.
        let mut resp = respond::empty(StatusCode::OK);
        proxy::headers::set_identity(resp.headers_mut(), &id, &self.headers)
            .map_err(|_| Error::Internal("identity cannot be expressed as headers"))?;
        notify(&mut resp, notice);
        Ok(resp)
    }

    /// The route of a normalised path, and whether the path is public.
    fn route<'g>(&'g self, path: &str, trail: &mut Trail<'g>) -> Result<Target<'g>, Error> {
        let route = self
            .routes
            .select(path)
            .ok_or_else(|| Error::NoRoute(path.to_owned()))?;
        trail.route = Some(&route.config.path_prefix);
        if self
            .allow_paths
            .as_ref()
            .is_some_and(|allow| !allow.is_match(path))
        {
            return Err(Error::NoRoute(path.to_owned()));
        }
        // Explicitly public paths skip authn and authz, and carry no identity.
        let public = self
            .unauthenticated_paths
            .as_ref()
            .is_some_and(|p| p.is_match(path));
        Ok(if public {
            Target::Public(route)
        } else {
            Target::Guarded(route)
        })
    }

    /// Authentication with the route's methods, the migration policy, then
    /// authorization: one identity or one refusal.
    async fn admit<'g>(
        &'g self,
        cert: Option<&CertIdentity>,
        headers: &http::HeaderMap,
        route: &'g Route,
        attrs: &authz::attributes::Attributes,
        trail: &mut Trail<'g>,
    ) -> Result<(Arc<Identity>, Notice), Error> {
        let id = self
            .authn
            .authenticate(cert, headers, route.config.auth)
            .await?;
        trail.identity = Some(id.clone());
        let pinned = self.migration.is_pinned(&id);
        self.migration.tracker().record(
            &id.user,
            id.method,
            &route.config.path_prefix,
            pinned,
            tls::unix_now(),
        );
        let notice = authn::policy::admit(route.config.auth, &id, pinned)?;
        if notice == Notice::TokenDeprecated {
            self.metrics
                .deprecated_tokens
                .get_or_create(&RouteLabel {
                    route: route.config.path_prefix.clone(),
                })
                .inc();
        }
        self.authz.authorize(&id, attrs).await?;
        Ok((id, notice))
    }
}

/// The route's upstream; every proxy-mode route has one.
fn upstream(route: &Route) -> Result<&Upstream, Error> {
    route
        .upstream
        .as_ref()
        .ok_or(Error::Internal("route has no upstream"))
}

/// Adds what `notice` asks for to a response.
fn notify(resp: &mut Response<Body>, notice: Notice) {
    if notice == Notice::TokenDeprecated {
        resp.headers_mut().append(
            http::header::WARNING,
            authn::policy::DEPRECATED_TOKEN_WARNING,
        );
    }
}

/// The normalised path, and the path-and-query to send upstream.
fn target<B>(req: &Request<B>) -> Result<(String, PathAndQuery), Error> {
    let (method, uri) = (req.method(), req.uri());
    if method == Method::CONNECT {
        return Err(Error::BadRequest("CONNECT is not supported".into()));
    }
    if req.version() == http::Version::HTTP_11 && !req.headers().contains_key(http::header::HOST) {
        return Err(Error::BadRequest(
            "an HTTP/1.1 request needs a Host header".into(),
        ));
    }
    let path = normalize_path(uri.path()).map_err(|e| Error::BadRequest(e.to_string()))?;
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.clone(),
    };
    let pq = PathAndQuery::try_from(pq).map_err(|e| Error::BadRequest(e.to_string()))?;
    Ok((path, pq))
}
