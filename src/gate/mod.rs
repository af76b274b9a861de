//! The request pipeline, top to bottom: route, authenticate (with the
//! route's methods and the migration policy), authorize, forward (or, in
//! `mode: auth`, answer the front proxy).
//!
//! Every failure leaves the pipeline as an [`Error`], whose one
//! [`Error::refusal`] becomes the response ([`respond`]), the metric and the
//! access-log line ([`audit`]). Nothing is forwarded without a
//! [`Permit`], and nothing at all on an error path, a panic included.
//!
//! The gate is generic over the request body and over its [`Forward`]er,
//! so tests drive the whole pipeline in memory.

pub mod audit;
pub mod auth_request;
mod conn;
pub mod error;
pub mod respond;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use globset::{GlobSet, GlobSetBuilder};
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use rustls_pki_types::CertificateDer;

use crate::authn::policy::{self, Notice};
use crate::authn::{self, Authenticator, CertIdentity};
use crate::authz::attributes::{self, Attributes, Target as AuthzTarget};
use crate::authz::permit::{self, Permit};
use crate::authz::{Authorizers, rewrite};
use crate::body::{self, Body};
use crate::config::{AuthEndpoint, HeaderNames, Mode, PathRules, RouteAuth, RouteConfig};
use crate::identity::{AuthMethod, Identity};
use crate::metrics::{Metrics, RouteLabel};
use crate::migration::Migration;
use crate::proxy::{self, Forward};
use crate::routes::{MatrixParams, RouteId, RouteTable, normalize_path_with};
use crate::server::{Connections, Downstream};
use crate::{cache, clock, tls};
pub use conn::ConnInfo;
pub use error::{Error, Outcome, Reason, Refusal};

/// A configured route.
#[derive(Debug)]
pub struct Route {
    /// Where it is in the configuration.
    pub id: RouteId,
    /// Its configuration.
    pub config: RouteConfig,
    /// Its request series.
    counters: crate::metrics::RouteCounters,
}

/// The pipeline and everything it needs; `F` sends permitted requests on.
pub struct Gate<F = proxy::Upstreams> {
    routes: RouteTable<Route>,
    authn: Arc<Authenticator>,
    authz: Authorizers,
    headers: HeaderNames,
    /// When set, only matching paths are served.
    allow_paths: Option<GlobSet>,
    /// Paths served without authentication or authorization.
    unauthenticated_paths: Option<GlobSet>,
    /// `;` path parameters: refused, or stripped before routing.
    matrix: MatrixParams,
    migration: Migration,
    mode: Mode,
    /// Verifies certificates a trusted front proxy forwards (`mode: auth`).
    tls: Arc<tls::Acceptor>,
    metrics: Metrics,
    /// The request series of requests that matched no route.
    no_route: crate::metrics::RouteCounters,
    forward: F,
    /// Its listener's name in the access log, with several listeners.
    listener: Option<Arc<str>>,
}

/// The parts a [`Gate`] is assembled from.
pub struct Parts<F> {
    /// Routes, in configuration order.
    pub routes: Vec<RouteConfig>,
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
    /// Where permitted requests go.
    pub forward: F,
}

/// What the access log records about a request as it moves along.
#[derive(Default)]
struct Trail<'g> {
    route: Option<&'g Route>,
    identity: Option<Identity>,
    /// `mode: auth`: the method and path being checked.
    original: Option<(Method, String)>,
    /// Served in a dry run that, enforced, would refuse it for this reason.
    would_refuse: Option<&'static str>,
}

/// Where a request is going, before anyone is asked who sends it.
enum Target<'g> {
    /// A public path: no authentication, no identity.
    Public(&'g Route),
    /// Everything else.
    Guarded(&'g Route),
}

/// Who is admitted where: a route, or the admin endpoints.
#[derive(Clone, Copy)]
struct Scope<'g> {
    route: RouteId,
    /// The route prefix, for the migration report and metrics.
    prefix: &'g str,
    auth: RouteAuth,
    /// Count the request in the migration report.
    track: bool,
}

impl<F> Gate<F> {
    /// Assembles a gate from its parts.
    pub fn new(p: Parts<F>) -> Self {
        p.migration.declare_routes(&p.routes);
        let routes = p
            .routes
            .into_iter()
            .enumerate()
            .map(|(i, config)| {
                let route = Route {
                    id: RouteId::new(i),
                    counters: p.metrics.route_counters(&config.path_prefix),
                    config,
                };
                (route.config.path_prefix.clone(), route)
            })
            .collect();
        Self {
            routes: RouteTable::new(routes),
            authn: Arc::new(p.authn),
            authz: p.authz,
            headers: p.headers,
            allow_paths: glob_set(&p.paths.allow),
            unauthenticated_paths: glob_set(&p.paths.unauthenticated),
            matrix: if p.paths.allow_matrix_params {
                MatrixParams::Strip
            } else {
                MatrixParams::Refuse
            },
            migration: p.migration,
            mode: p.mode,
            tls: p.tls,
            no_route: p.metrics.route_counters(""),
            metrics: p.metrics,
            forward: p.forward,
            listener: None,
        }
    }

    /// The gate of the listener `name`, which its access lines name.
    #[must_use]
    pub fn for_listener(mut self, name: &str) -> Self {
        self.listener = Some(name.into());
        self
    }

    /// The migration policy and usage tracker.
    pub fn migration(&self) -> &Migration {
        &self.migration
    }

    /// Serves one request: the upstream's response (or, in `mode: auth`, the
    /// check's answer), or the refusal.
    pub async fn handle<B>(&self, conn: &ConnInfo, req: Request<B>) -> Response<Body>
    where
        F: Forward<B>,
        B: hyper::body::Body + Send,
    {
        let start = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let mut trail = Trail::default();
        let pass = async {
            self.cert_in_force(conn)?;
            match &self.mode {
                Mode::Proxy => self.pass(conn, req, &mut trail).await,
                Mode::Auth(ep) => self.check_for_proxy(conn, ep, req, &mut trail).await,
            }
        };
        let (result, lookups) = cache::traced(AssertUnwindSafe(pass).catch_unwind()).await;
        let result = result.unwrap_or(Err(Error::Internal("request handler panicked")));
        let (resp, refused) = match result {
            Ok(r) => (r, None),
            Err(e) => {
                let refusal = e.refusal();
                if refusal.close {
                    conn.downstream.close();
                }
                (respond::refusal(&refusal), Some((refusal, e.to_string())))
            }
        };
        let (method, path) = trail.original.take().unwrap_or((method, path));
        audit::record(&audit::Record {
            peer: conn.peer,
            method: &method,
            path: &path,
            route: trail.route.map(|r| r.config.path_prefix.as_str()),
            counters: trail.route.map_or(&self.no_route, |r| &r.counters),
            identity: trail.identity.as_ref(),
            status: resp.status().as_u16(),
            verdict: match &refused {
                None => audit::Verdict::Allowed,
                Some((refusal, detail)) => audit::Verdict::Refused { refusal, detail },
            },
            latency: start.elapsed(),
            lookups,
            listener: self.listener.as_deref().unwrap_or(""),
            would_refuse: trail.would_refuse,
        });
        resp
    }

    /// Admits a request for `verb` on the admin endpoint `path` (a
    /// non-resource request), with the same admission as every route.
    pub async fn admit_admin(
        &self,
        conn: &ConnInfo,
        headers: &HeaderMap,
        verb: &'static str,
        path: &str,
    ) -> Result<Permit, Error> {
        let scope = Scope {
            route: RouteId::ADMIN,
            prefix: "",
            auth: RouteAuth::default(),
            track: false,
        };
        let attrs = Attributes {
            verb: verb.to_owned(),
            target: AuthzTarget::NonResource {
                path: path.to_owned(),
            },
        };
        let mut trail = Trail::default();
        if let Err(e) = self.cert_in_force(conn) {
            conn.downstream.close();
            return Err(e);
        }
        let checks = std::slice::from_ref(&attrs);
        self.admit(conn, conn.cert.as_ref(), headers, scope, checks, &mut trail)
            .await
    }

    /// `mode: proxy`: route, admit, forward.
    async fn pass<'g, B>(
        &'g self,
        conn: &ConnInfo,
        mut req: Request<B>,
        trail: &mut Trail<'g>,
    ) -> Result<Response<Body>, Error>
    where
        F: Forward<B>,
        B: hyper::body::Body,
    {
        // 1. Which route? The path is normalised once; authorization and the
        //    upstream both see the normalised form.
        let (path, path_and_query) = target(&req, self.matrix)?;
        let target = self.route(&path, trail)?;
        // An upgrade (a tunnel no later check sees into) only to a protocol
        // the route allows, and on a public path only if the route says so.
        let upgrade = proxy::upgrade::requested(req.headers());
        if let Some(protocol) = &upgrade {
            let (route, public) = match &target {
                Target::Public(r) => (r, true),
                Target::Guarded(r) => (r, false),
            };
            proxy::upgrade::allowed(&route.config, protocol, public)
                .map_err(|why| Error::BadRequest(why.to_string()))?;
        }
        let (permit, path_and_query) = match target {
            Target::Public(route) => (Permit::public(route.id), path_and_query),
            Target::Guarded(route) => {
                // 2-3. What must be allowed (every resource check, every
                //      rewrite value), who is asking, may they use this
                //      credential here, may they do all of it?
                let (method, query) = (req.method(), req.uri().query());
                let body = !hyper::body::Body::is_end_stream(req.body());
                let bound =
                    attributes::bind(&route.config, method, &path, query, req.headers(), body)
                        .map_err(|e| Error::BadRequest(e.to_string()))?;
                let permit = self
                    .admit(
                        conn,
                        conn.cert.as_ref(),
                        req.headers(),
                        Scope::of(route),
                        &bound.checks,
                        trail,
                    )
                    .await?;
                // The upstream gets the rewrite values that were authorized.
                let pq = bound
                    .consume(&route.config, path_and_query, req.headers_mut())
                    .map_err(|e| Error::BadRequest(e.to_string()))?;
                (permit, pq)
            }
        };

        // An upgraded connection carries no more requests: the tunnel checks
        // the connection's certificate itself.
        if upgrade.is_some() {
            req.extensions_mut().insert(self.lease(conn));
        }

        // 4. Forward, carrying authgate's identity headers and no client-sent ones.
        proxy::headers::rewrite(
            req.headers_mut(),
            &permit,
            &self.headers,
            &conn.identity_headers,
        )
        .map_err(|_| Error::Internal("identity cannot be expressed as headers"))?;
        if let (Some(xfcc), Some(id)) = (&conn.xfcc, permit.identity())
            && id.method() == AuthMethod::Mtls
        {
            req.headers_mut().insert(proxy::headers::XFCC, xfcc.clone());
        }
        let mut resp = self
            .forward
            .forward(
                &permit,
                req,
                path_and_query,
                &conn.downstream,
                &conn.upstreams,
            )
            .await?;
        notify(&mut resp, &permit);
        Ok(resp)
    }

    /// `mode: auth`: the same decision about the request a front proxy is
    /// checking, answered with the identity headers instead of forwarded.
    async fn check_for_proxy<'g, B>(
        &'g self,
        conn: &ConnInfo,
        ep: &AuthEndpoint,
        req: Request<B>,
        trail: &mut Trail<'g>,
    ) -> Result<Response<Body>, Error> {
        // 1. Which request is being checked, and which route would serve it?
        //    Only a trusted proxy may name it in headers.
        let trusted = auth_request::trusted(ep, conn.peer.ip());
        let original = auth_request::original(&req, &ep.path, trusted).map_err(|e| match e {
            auth_request::Malformed::NotEndpoint(p) => Error::NoRoute(p),
            e => Error::BadRequest(e.to_string()),
        })?;
        trail.original = Some((original.method.clone(), original.path.clone()));
        // The front proxy forwards what the client sent; authgate cannot
        // strip identity headers there, so it refuses them (public paths too).
        if let Some(name) = proxy::headers::claimed_identity(req.headers(), &self.headers) {
            return Err(Error::SpoofedIdentity(name.to_string()));
        }
        // Nor can it strip method overrides or rewritten URLs the upstream
        // might act on instead of what is checked here.
        if let Some(name) = auth_request::steering(req.headers()) {
            return Err(Error::SpoofedIdentity(name.to_string()));
        }
        let route = match self.route(&original.path, trail)? {
            Target::Public(_) => return Ok(body::empty(StatusCode::OK)),
            Target::Guarded(route) => route,
        };

        // 2. The client certificate: only a trusted proxy may forward one,
        //    and only one that verifies against the client CA counts. The
        //    connection's own certificate is the proxy's, never the client's.
        let cert = if trusted {
            auth_request::forwarded_chain(req.headers(), &ep.cert_header)
                .map_err(|e| authn::Error::ForwardedCertRefused(e.to_string()))?
                .map(|chain| {
                    self.tls
                        .verify_client_chain(&chain)
                        .map_err(authn::Error::ForwardedCertRefused)?;
                    Ok::<_, authn::Error>(self.authn.map_cert(&chain, &self.tls.issuers()))
                })
                .transpose()?
        } else {
            None
        };

        // 3. The same admission as in proxy mode, for the original request.
        // (Validation keeps rewrites out of `mode: auth`: no values here.)
        let checks = attributes::checks(
            &route.config,
            &original.method,
            &original.path,
            &rewrite::Values::default(),
        )
        .map_err(|e| Error::BadRequest(e.to_string()))?;
        let permit = self
            .admit(
                conn,
                cert.as_ref(),
                req.headers(),
                Scope::of(route),
                &checks,
                trail,
            )
            .await?;

        // 4. Answer with the identity headers for the proxy to pass on.
        let mut resp = body::empty(StatusCode::OK);
        if let Some(id) = permit.identity() {
            proxy::headers::set_identity(resp.headers_mut(), id, &self.headers)
                .map_err(|_| Error::Internal("identity cannot be expressed as headers"))?;
        }
        notify(&mut resp, &permit);
        Ok(resp)
    }

    /// The route of a normalised path, and whether the path is public.
    fn route<'g>(&'g self, path: &str, trail: &mut Trail<'g>) -> Result<Target<'g>, Error> {
        let route = self
            .routes
            .select(path)
            .ok_or_else(|| Error::NoRoute(path.to_owned()))?;
        trail.route = Some(route);
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

    /// The one admission: authentication with the scope's methods, the
    /// migration policy, then authorization. One permit or one refusal.
    /// `cert` is the client's certificate: the connection's, or in `mode:
    /// auth` the one the front proxy forwarded. The client address token
    /// backends count misses by is always the connection's peer (in `mode:
    /// auth`, the front proxy): a header could name anyone.
    async fn admit(
        &self,
        conn: &ConnInfo,
        cert: Option<&CertIdentity>,
        headers: &HeaderMap,
        scope: Scope<'_>,
        checks: &[Attributes],
        trail: &mut Trail<'_>,
    ) -> Result<Permit, Error> {
        // A dry-run route reads what it read before it was closed to tokens.
        let id = self
            .authn
            .authenticate(cert, headers, scope.auth.in_force(), conn.peer.ip())
            .await?;
        trail.identity = Some(id.clone());
        let pin = self.migration.pin(&id);
        if scope.track {
            self.migration.tracker().record(
                id.user(),
                id.method(),
                scope.prefix,
                pin,
                clock::unix_now(),
            );
        }
        // The levers' refusal is computed whether they are enforced or not;
        // `enforce` decides, there and only there.
        let (notice, would_refuse) = policy::admit(scope.auth, &id, pin).enforce()?;
        if notice == Notice::TokenDeprecated {
            self.metrics
                .deprecated_tokens
                .get_or_create(&RouteLabel {
                    route: scope.prefix.to_owned(),
                })
                .inc();
        }
        let permit = self
            .authz
            .authorize_all(scope.route, &id, notice, checks)
            .await?;
        // Served only because of a dry run: counted (once authorized, so that
        // exactly the requests enforcing would stop are) and logged.
        if let Some(e) = would_refuse {
            let reason = Error::from(e).refusal().reason;
            self.migration.tracker().would_refuse(
                id.user(),
                scope.route_label(),
                reason.as_str(),
                scope.track,
            );
            trail.would_refuse = Some(reason.as_str());
        }
        Ok(permit)
    }
}

/// The main listener: each connection's requests go through the pipeline.
impl<F: Forward<Incoming> + 'static> Connections for Gate<F> {
    type Conn = ConnInfo;

    fn open(&self, downstream: Downstream, chain: &[CertificateDer<'static>]) -> ConnInfo {
        self.conn_info_for(downstream, chain)
    }

    async fn call(self: Arc<Self>, conn: Arc<ConnInfo>, req: Request<Incoming>) -> Response<Body> {
        self.handle(&conn, req).await
    }
}

impl<'g> Scope<'g> {
    /// The route label of the migration metrics.
    fn route_label(&self) -> &'g str {
        if self.route == RouteId::ADMIN {
            crate::migration::report::ADMIN_ROUTE
        } else {
            self.prefix
        }
    }

    fn of(route: &'g Route) -> Self {
        Self {
            route: route.id,
            prefix: &route.config.path_prefix,
            auth: route.config.auth,
            track: true,
        }
    }
}

/// Adds what the permit's notice asks for to a response.
fn notify(resp: &mut Response<Body>, permit: &Permit) {
    if let permit::Kind::Granted {
        notice: Notice::TokenDeprecated,
        ..
    } = permit.kind()
    {
        resp.headers_mut()
            .append(http::header::WARNING, policy::DEPRECATED_TOKEN_WARNING);
    }
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

/// The normalised path, and the path-and-query to send upstream.
fn target<B>(req: &Request<B>, matrix: MatrixParams) -> Result<(String, PathAndQuery), Error> {
    let (method, uri) = (req.method(), req.uri());
    if method == Method::CONNECT {
        return Err(Error::BadRequest("CONNECT is not supported".into()));
    }
    if req.version() == http::Version::HTTP_11 && !req.headers().contains_key(http::header::HOST) {
        return Err(Error::BadRequest(
            "an HTTP/1.1 request needs a Host header".into(),
        ));
    }
    let path =
        normalize_path_with(uri.path(), matrix).map_err(|e| Error::BadRequest(e.to_string()))?;
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.clone(),
    };
    let pq = PathAndQuery::try_from(pq).map_err(|e| Error::BadRequest(e.to_string()))?;
    Ok((path, pq))
}

#[cfg(test)]
mod tests;
