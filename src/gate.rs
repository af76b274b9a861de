//! The request pipeline, top to bottom: route, authenticate, authorize,
//! forward. Every failure leaves [`Gate::pass`] as an [`Error`] and becomes a
//! response in [`crate::respond`]; nothing is forwarded on any error path,
//! including a panic.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, Response};
use hyper::body::Incoming;

use crate::authn::{self, Authenticator, CertIdentity, x509};
use crate::authz::{self, Authorizers};
use crate::config::{HeaderNames, PathRules, RouteConfig};
use crate::identity::{AuthMethod, Identity};
use crate::metrics::Metrics;
use crate::proxy::{self, Body, Upstream};
use crate::respond;
use crate::routes::{RouteTable, normalize_path};
use crate::{audit, cache};
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
    /// Where it forwards to.
    pub upstream: Upstream,
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
    metrics: Metrics,
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
}

impl Gate {
    /// Assembles a gate from its parts.
    pub fn new(
        routes: Vec<Route>,
        authn: Authenticator,
        authz: Authorizers,
        headers: HeaderNames,
        paths: &PathRules,
        metrics: Metrics,
    ) -> Self {
        let routes = routes
            .into_iter()
            .map(|r| (r.config.path_prefix.clone(), r))
            .collect();
        Self {
            routes: RouteTable::new(routes),
            authn,
            authz,
            headers,
            allow_paths: glob_set(&paths.allow),
            unauthenticated_paths: glob_set(&paths.unauthenticated),
            metrics,
        }
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

    /// Serves one request: the upstream's response, or the refusal.
    pub async fn handle(&self, conn: &ConnInfo, req: Request<Incoming>) -> Response<Body> {
        let start = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let mut trail = Trail::default();
        let pass = AssertUnwindSafe(self.pass(conn, req, &mut trail)).catch_unwind();
        let (result, lookups) = cache::traced(pass).await;
        let result = result.unwrap_or(Err(Error::Internal("request handler panicked")));
        let (resp, reason, detail) = match result {
            Ok(r) => (r, "allowed", None),
            Err(e) => (respond::error_response(&e), e.reason(), Some(e.to_string())),
        };
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
        let id = self.authn.authenticate(conn.cert.as_ref(), headers).await?;
        let attrs = authz::attributes::Attributes {
            verb: verb.to_owned(),
            target: authz::attributes::Target::NonResource {
                path: path.to_owned(),
            },
        };
        self.authz.authorize(&id, &attrs).await?;
        Ok(id)
    }

    async fn pass<'g>(
        &'g self,
        conn: &ConnInfo,
        mut req: Request<Incoming>,
        trail: &mut Trail<'g>,
    ) -> Result<Response<Body>, Error> {
        // 1. Which route? The path is normalised once; authorization and the
        //    upstream both see the normalised form.
        let (path, path_and_query) = target(&req)?;
        let route = self
            .routes
            .select(&path)
            .ok_or_else(|| Error::NoRoute(path.clone()))?;
        trail.route = Some(&route.config.path_prefix);
        if self
            .allow_paths
            .as_ref()
            .is_some_and(|allow| !allow.is_match(&path))
        {
            return Err(Error::NoRoute(path));
        }
        // Explicitly public paths skip authn and authz, and carry no identity.
        if self
            .unauthenticated_paths
            .as_ref()
            .is_some_and(|p| p.is_match(&path))
        {
            proxy::headers::sanitize(req.headers_mut(), &self.headers);
            return Ok(route
                .upstream
                .forward(req, path_and_query, conn.peer)
                .await?);
        }

        // 2. Who is asking? A mapped client certificate, else the bearer token.
        let id = self
            .authn
            .authenticate(conn.cert.as_ref(), req.headers())
            .await?;
        trail.identity = Some(id.clone());

        // 3. May they? The same authorizers for certificate and token identities.
        let attrs =
            authz::attributes::for_request(route.config.resource.as_ref(), req.method(), &path);
        self.authz.authorize(&id, &attrs).await?;

        // 4. Forward, carrying authgate's identity headers and no client-sent ones.
        proxy::headers::rewrite(req.headers_mut(), &id, &self.headers)
            .map_err(|_| Error::Internal("identity cannot be expressed as headers"))?;
        if let (Some(xfcc), AuthMethod::Mtls) = (&conn.xfcc, id.method) {
            req.headers_mut().insert(proxy::headers::XFCC, xfcc.clone());
        }
        Ok(route
            .upstream
            .forward(req, path_and_query, conn.peer)
            .await?)
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
