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
use http::{Method, Request, Response};
use hyper::body::Incoming;
use tracing::info;

use crate::authn::{self, Authenticator, CertIdentity};
use crate::authz::{self, Authorizers};
use crate::config::{HeaderNames, RouteConfig};
use crate::identity::Identity;
use crate::proxy::{self, Body, Upstream};
use crate::respond;
use crate::routes::{RouteTable, normalize_path};

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
}

/// What the access log records about a request as it moves along.
#[derive(Default)]
struct Trail {
    route: Option<String>,
    identity: Option<Arc<Identity>>,
}

impl Gate {
    /// Assembles a gate from its parts.
    pub fn new(
        routes: Vec<Route>,
        authn: Authenticator,
        authz: Authorizers,
        headers: HeaderNames,
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
        }
    }

    /// What a new connection's requests share: its peer address and the
    /// identity of its verified client certificate, mapped once.
    pub fn conn_info(&self, peer: SocketAddr, leaf_der: Option<&[u8]>) -> ConnInfo {
        ConnInfo {
            peer,
            cert: leaf_der.map(|der| self.authn.map_cert(der)),
        }
    }

    /// Serves one request: the upstream's response, or the refusal.
    pub async fn handle(&self, conn: &ConnInfo, req: Request<Incoming>) -> Response<Body> {
        let start = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let mut trail = Trail::default();
        let result = AssertUnwindSafe(self.pass(conn, req, &mut trail))
            .catch_unwind()
            .await
            .unwrap_or(Err(Error::Internal("request handler panicked")));
        let (resp, reason, detail) = match result {
            Ok(r) => (r, "allowed", None),
            Err(e) => (respond::error_response(&e), e.reason(), Some(e.to_string())),
        };
        let user = trail.identity.as_ref().map_or("", |i| i.user.as_str());
        let auth = trail
            .identity
            .as_ref()
            .map_or("none", |i| i.method.as_str());
        info!(
            target: "authgate::access",
            peer = %conn.peer,
            %method,
            path,
            route = trail.route.as_deref().unwrap_or(""),
            user,
            auth,
            status = resp.status().as_u16(),
            reason,
            detail = detail.as_deref().unwrap_or(""),
            latency_us = start.elapsed().as_micros() as u64,
        );
        resp
    }

    async fn pass(
        &self,
        conn: &ConnInfo,
        mut req: Request<Incoming>,
        trail: &mut Trail,
    ) -> Result<Response<Body>, Error> {
        // 1. Which route? The path is normalised once; authorization and the
        //    upstream both see the normalised form.
        let (path, path_and_query) = target(req.method(), req.uri())?;
        let route = self
            .routes
            .select(&path)
            .ok_or_else(|| Error::NoRoute(path.clone()))?;
        trail.route = Some(route.config.path_prefix.clone());

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
        Ok(route
            .upstream
            .forward(req, path_and_query, conn.peer)
            .await?)
    }
}

/// The normalised path, and the path-and-query to send upstream.
fn target(method: &Method, uri: &http::Uri) -> Result<(String, PathAndQuery), Error> {
    if method == Method::CONNECT {
        return Err(Error::BadRequest("CONNECT is not supported".into()));
    }
    let path = normalize_path(uri.path()).map_err(|e| Error::BadRequest(e.to_string()))?;
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.clone(),
    };
    let pq = PathAndQuery::try_from(pq).map_err(|e| Error::BadRequest(e.to_string()))?;
    Ok((path, pq))
}
