//! Runtime assembly: a validated [`Config`] becomes the running parts (TLS
//! acceptor and reloader, backends, routes, gate, metrics, health). Nothing
//! here decides anything about a request; it only wires.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::authn::issuers::Issuers;
use crate::authn::jwks::JwksAuthenticator;
use crate::authn::static_tokens::StaticTokens;
use crate::authn::token_review::TokenReviewer;
use crate::authn::x509::CertMapper;
use crate::authn::{Authenticator, TokenAuthenticator};
use crate::authz::access_review::AccessReviewer;
use crate::authz::static_rules::StaticRules;
use crate::authz::{Authorizer, Authorizers};
use crate::cache::{self, CacheSource, KeyHasher};
use crate::config::{AdminConfig, Config, KubernetesConfig, Limits, ListenerConfig, TlsConfig};
use crate::fleet::{self, Fleet};
use crate::gate::{Gate, Parts};
use crate::kubernetes::{self, ApiClient};
use crate::metrics::Metrics;
use crate::metrics::listeners::ListenerCollector;
use crate::migration::Migration;
use crate::migration::export::IdentityCollector;
use crate::proxy::upstream::tls::{ClientTls, Watched};
use crate::proxy::{self, Upstreams};
use crate::server::{self, Handshake, Profile};
use crate::tls::reload::{self, Reloader};
use crate::tls::{self};

/// Why the runtime could not be built from a valid config.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Serving certificate, key, client CA or CRL.
    #[error(transparent)]
    Tls(#[from] tls::Error),
    /// An upstream's CA or client certificate file.
    #[error(transparent)]
    Upstream(#[from] proxy::SetupError),
    /// The Kubernetes client.
    #[error(transparent)]
    Kubernetes(#[from] kubernetes::Error),
    /// The TLS material or an upstream of one of several listeners.
    #[error("listener {name:?} ({listen}): {source}")]
    Listener {
        /// The listener's name.
        name: String,
        /// Its address.
        listen: SocketAddr,
        /// What failed.
        source: Box<Self>,
    },
    /// A listener's address could not be bound.
    #[error("listener {name:?} cannot listen on {listen}: {source}")]
    Bind {
        /// The listener's name.
        name: String,
        /// Its address.
        listen: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// An external issuer's client (`authentication.jwt[]`).
    #[error("{0}")]
    Issuers(String),
    /// The revocation object's namespace.
    #[error(transparent)]
    Fleet(#[from] fleet::Error),
}

/// Everything the server needs at runtime.
pub struct App {
    /// The request pipeline (of the first listener; the admin listener's).
    pub gate: Arc<Gate>,
    /// The TLS material for new handshakes (of the first listener; the
    /// admin listener's with `admin.tls`).
    pub tls: Arc<tls::Acceptor>,
    /// Reloads `tls` when its files change.
    pub reloader: Arc<Reloader>,
    /// Every TLS listener, the first being `gate`, `tls` and `reloader`.
    pub listeners: Vec<Arc<Listener>>,
    /// Connection and timing limits.
    pub limits: Limits,
    /// The Kubernetes backend, when configured.
    pub kubernetes: Option<KubeBackend>,
    /// Metric handles.
    pub metrics: Metrics,
    /// Liveness and readiness state.
    pub health: Arc<Health>,
    /// Admin listener settings.
    pub admin: AdminConfig,
    /// TLS settings (of the first listener).
    pub tls_config: TlsConfig,
    /// The client TLS of `https` upstreams loaded from files (reloaded
    /// like the serving material).
    pub upstream_tls: Vec<Arc<ClientTls>>,
    /// The watch of the fleet's revocation object, when configured.
    pub fleet: Option<Arc<Fleet>>,
}

/// One TLS listener at runtime. Its own gate holds its routes, identity
/// rules, client-CA verifier, upstream pools and the state of its
/// connections; its own acceptor and reloader its TLS material. Nothing of
/// one listener is reachable from another's connections.
pub struct Listener {
    /// Its configured name.
    pub name: String,
    /// Its configured address.
    pub listen: SocketAddr,
    /// Its request pipeline.
    pub gate: Arc<Gate>,
    /// Its TLS material for new handshakes.
    pub tls: Arc<tls::Acceptor>,
    /// Reloads `tls` when its files change.
    pub reloader: Arc<Reloader>,
    /// Its TLS settings.
    pub tls_config: TlsConfig,
    /// Where it is accepting, once it is (readiness).
    bound: OnceLock<SocketAddr>,
}

impl Listener {
    /// The address it accepts on, once it does.
    pub fn bound(&self) -> Option<SocketAddr> {
        self.bound.get().copied()
    }
}

/// The running Kubernetes backend: the API client and the reviewers' caches.
pub struct KubeBackend {
    /// The API client (its last answer feeds readiness).
    pub api: Arc<ApiClient>,
    /// The TokenReview authenticator, if enabled.
    pub token_review: Option<Arc<TokenReviewer>>,
    /// Local JWT verification wrapping `token_review`, if enabled.
    pub jwks: Option<Arc<JwksAuthenticator>>,
    /// The SubjectAccessReview authorizer, if enabled.
    pub access_review: Option<Arc<AccessReviewer>>,
}

/// Process state that readiness reports.
#[derive(Debug, Default)]
pub struct Health {
    draining: AtomicBool,
}

impl Health {
    /// From now on, readiness is false (shutdown has begun).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

impl App {
    /// Loads TLS material and assembles the backends and routes of `config`.
    pub async fn build(config: &Config) -> Result<Self, Error> {
        // Draws the fingerprint key now, so a machine without randomness
        // stops here rather than on its first request.
        crate::identity::prepare();
        let metrics = Metrics::new();
        let (kube, fleet) = match &config.kubernetes {
            Some(k) => {
                let client = kubernetes::client(k).await?;
                let backend = kube_backend(k, client.clone(), &metrics);
                let fleet = match &config.fleet {
                    Some(f) => Some(Arc::new(Fleet::new(
                        f,
                        client,
                        k.timeout,
                        flusher(&backend),
                    )?)),
                    None => None,
                };
                (Some(backend), fleet)
            }
            None => (None, None),
        };
        if let Some(jwks) = kube.as_ref().and_then(|k| k.jwks.as_ref()) {
            jwks.load().await;
        }
        let issuers = Issuers::start(&config.issuers, &metrics)
            .await
            .map_err(Error::Issuers)?;
        let shared = Shared::new(config, (kube.as_ref(), issuers), &metrics);
        let several = config.listeners.len() > 1;
        let mut listeners = Vec::with_capacity(config.listeners.len());
        let mut upstream_tls = Vec::new();
        for (i, l) in config.listeners.iter().enumerate() {
            let (listener, tls) = listener(config, l, i == 0, &shared, &metrics).map_err(|e| {
                if several {
                    Error::Listener {
                        name: l.name.clone(),
                        listen: l.listen,
                        source: Box::new(e),
                    }
                } else {
                    e
                }
            })?;
            listeners.push(Arc::new(listener));
            upstream_tls.extend(tls);
        }
        let sources = listeners.iter().map(|l| l.reloader.clone() as _).collect();
        metrics.register_collector(Box::new(ListenerCollector(sources)));
        let first = listeners[0].clone();
        Ok(Self {
            gate: first.gate.clone(),
            tls: first.tls.clone(),
            reloader: first.reloader.clone(),
            tls_config: first.tls_config.clone(),
            listeners,
            limits: config.limits.clone(),
            kubernetes: kube,
            metrics,
            health: Arc::new(Health::default()),
            admin: config.admin.clone(),
            upstream_tls,
            fleet,
        })
    }

    /// Binds every listener at its configured address, in order; the
    /// error names the listener and the address.
    pub async fn bind(&self) -> Result<Vec<TcpListener>, Error> {
        let mut out = Vec::with_capacity(self.listeners.len());
        for l in &self.listeners {
            let tcp = TcpListener::bind(l.listen)
                .await
                .map_err(|source| Error::Bind {
                    name: l.name.clone(),
                    listen: l.listen,
                    source,
                })?;
            out.push(tcp);
        }
        Ok(out)
    }

    /// Serves the first listener on `listener` until `shutdown`, then drains it.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        self.serve_listener(0, listener, shutdown).await;
    }

    /// Serves each listener on its socket (`bound`, in the order of
    /// [`App::listeners`]) until `shutdown`, then drains them all.
    pub async fn serve_all(
        self: Arc<Self>,
        bound: Vec<TcpListener>,
        shutdown: impl Future<Output = ()>,
    ) {
        let stop = CancellationToken::new();
        let mut tasks = Vec::with_capacity(bound.len());
        for (i, tcp) in bound.into_iter().enumerate() {
            let (app, stop) = (self.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                app.serve_listener(i, tcp, stop.cancelled_owned()).await;
            }));
        }
        shutdown.await;
        stop.cancel();
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Listener `i`'s accept loop, with its own material, gate and
    /// connection and handshake budgets (the first listener's being
    /// [`App::gate`] and [`App::tls`]).
    async fn serve_listener(&self, i: usize, tcp: TcpListener, shutdown: impl Future<Output = ()>) {
        let Some(l) = self.listeners.get(i) else {
            return;
        };
        let (gate, tls) = if i == 0 {
            (self.gate.clone(), self.tls.clone())
        } else {
            (l.gate.clone(), l.tls.clone())
        };
        if let Ok(addr) = tcp.local_addr() {
            let _ = l.bound.set(addr);
            info!(listener = %l.name, listen = %addr, "authgate serving");
        }
        let handshake = Handshake::Tls {
            acceptor: tls,
            profile: Profile::Main,
            metrics: Some(Box::new(self.metrics.clone())),
        };
        let limits = server::Limits::main(&self.limits);
        server::serve(tcp, handshake, gate, limits, shutdown).await;
    }

    /// Starts the background work (TLS reload, API probe) until `stop`.
    pub fn spawn_background(&self, stop: &CancellationToken) {
        // Each listener's files on their own: a bad file of one keeps that
        // listener's material in service and touches no other.
        for l in &self.listeners {
            let every = l.tls_config.reload_interval;
            tokio::spawn(l.reloader.clone().run(every, stop.clone()));
        }
        let every = self.tls_config.reload_interval;
        for tls in &self.upstream_tls {
            let watched = Arc::new(Watched {
                tls: tls.clone(),
                metrics: self.metrics.clone(),
            });
            tokio::spawn(reload::run(watched, every, stop.clone()));
        }
        if let Some(k) = &self.kubernetes {
            let every = (self.admin.api_ready_window / 3).max(Duration::from_secs(1));
            tokio::spawn(k.api.clone().probe_every(every, stop.clone()));
            if let Some(jwks) = &k.jwks {
                tokio::spawn(jwks.clone().run(stop.clone()));
            }
        }
        if let Some(fleet) = &self.fleet {
            tokio::spawn(fleet.clone().run(stop.clone()));
        }
    }

    /// Empties the review caches: all entries, or those about `user`.
    pub fn flush_caches(&self, user: Option<&str>) {
        if let Some(k) = &self.kubernetes {
            if let Some(tr) = &k.token_review {
                tr.flush(user);
            }
            if let Some(jwks) = &k.jwks {
                jwks.flush(user);
            }
            if let Some(ar) = &k.access_review {
                ar.flush(user);
            }
        }
    }
}

/// Flushes the caches of `k` (what [`App::flush_caches`] does), for the
/// fleet's watch.
fn flusher(k: &KubeBackend) -> fleet::Flusher {
    let (tr, jwks, ar) = (
        k.token_review.clone(),
        k.jwks.clone(),
        k.access_review.clone(),
    );
    Box::new(move |user| {
        if let Some(tr) = &tr {
            tr.flush(user);
        }
        if let Some(jwks) = &jwks {
            jwks.flush(user);
        }
        if let Some(ar) = &ar {
            ar.flush(user);
        }
    })
}

/// The reviewers of `k`, sharing one API client and one key hasher.
pub fn kube_backend(k: &KubernetesConfig, client: kube::Client, metrics: &Metrics) -> KubeBackend {
    let api = ApiClient::new(client, k, metrics.clone());
    let keys = KeyHasher::random();
    let token_review = k
        .token_review
        .as_ref()
        .map(|c| Arc::new(TokenReviewer::new(api.clone(), c, keys.clone())));
    let jwks = k.token_review.as_ref().zip(token_review.as_ref());
    let jwks = jwks.and_then(|(c, tr)| {
        let j = c.jwks.as_ref()?;
        let (api, keys) = (api.clone(), keys.clone());
        let verifier = JwksAuthenticator::new(api, j, c.max_entries, tr.clone(), keys, metrics);
        Some(Arc::new(verifier))
    });
    KubeBackend {
        token_review,
        jwks,
        access_review: k
            .access_review
            .as_ref()
            .map(|c| Arc::new(AccessReviewer::new(api.clone(), c, keys.clone()))),
        api,
    }
}

/// The gate of `config`'s first listener: static backends first, then the
/// Kubernetes reviewers of `kube` (the apiserver's union of
/// authenticators), sending permitted requests to `forward`. Registers the
/// caches' and the migration report's metrics.
pub fn gate<F>(
    config: &Config,
    kube: Option<&KubeBackend>,
    tls: Arc<tls::Acceptor>,
    metrics: &Metrics,
    forward: F,
) -> Gate<F> {
    // External issuers need their keys fetched first ([`App::build`]).
    debug_assert!(
        config.issuers.is_empty(),
        "use App::build for authentication.jwt"
    );
    crate::identity::prepare();
    let shared = Shared::new(config, (kube, None), metrics);
    let first = &config.listeners[0];
    shared.gate(config, first, tls, metrics, forward)
}

/// The first listener (`primary`) or another one of `config`, and the
/// client TLS of its upstreams to watch.
fn listener(
    config: &Config,
    l: &ListenerConfig,
    primary: bool,
    shared: &Shared,
    metrics: &Metrics,
) -> Result<(Listener, Vec<Arc<ClientTls>>), Error> {
    let acceptor = Arc::new(tls::Acceptor::new(tls::load(&l.tls)?));
    let reloader = Arc::new(Reloader::for_listener(
        &l.name,
        primary,
        l.tls.clone(),
        acceptor.clone(),
        metrics.clone(),
    ));
    // Its own pools: an upstream connection is never reused across listeners.
    let upstreams = Upstreams::new(&l.routes, &config.limits)?;
    let upstream_tls = upstreams.client_tls().cloned().collect();
    let mut gate = shared.gate(config, l, acceptor.clone(), metrics, upstreams);
    if config.listeners.len() > 1 {
        gate = gate.for_listener(&l.name);
    }
    let listener = Listener {
        name: l.name.clone(),
        listen: l.listen,
        gate: Arc::new(gate),
        tls: acceptor,
        reloader,
        tls_config: l.tls.clone(),
        bound: OnceLock::new(),
    };
    Ok((listener, upstream_tls))
}

/// What every listener's gate shares: the token backends and authorizers
/// (so their caches and budgets are one), and the migration report.
struct Shared {
    tokens: Vec<Arc<dyn TokenAuthenticator>>,
    authorizers: Vec<Arc<dyn Authorizer>>,
    migration: Migration,
}

impl Shared {
    /// The backends of `config`, the started external issuers of
    /// `authentication.jwt[]` and `kube`, in that order (the apiserver's
    /// union of authenticators: an issuer's token never reaches
    /// TokenReview); registers the caches' and the migration report's
    /// metrics (once, whatever the listeners).
    fn new(
        config: &Config,
        (kube, issuers): (Option<&KubeBackend>, Option<Arc<Issuers>>),
        metrics: &Metrics,
    ) -> Self {
        let statics = &config.static_backend;
        let mut tokens: Vec<Arc<dyn TokenAuthenticator>> = Vec::new();
        if !statics.tokens.is_empty() {
            tokens.push(Arc::new(StaticTokens::new(&statics.tokens)));
        }
        if let Some(issuers) = issuers {
            tokens.push(issuers);
        }
        let mut authorizers: Vec<Arc<dyn Authorizer>> = Vec::new();
        if !statics.allow.is_empty() {
            authorizers.push(Arc::new(StaticRules::new(&statics.allow)));
        }
        // Bytes, evictions and refreshes of every cache, in one collector.
        let mut caches: Vec<(&'static str, Arc<dyn CacheSource>)> = Vec::new();
        if let Some(k) = kube {
            if let Some(tr) = &k.token_review {
                // With token_review.jwks, local verification takes the
                // reviewer's place and falls back to it.
                match &k.jwks {
                    Some(jwks) => tokens.push(jwks.clone()),
                    None => tokens.push(tr.clone()),
                }
                metrics.register_cache("token", Arc::new(tr.cache().clone()));
                caches.push(("token", Arc::new(tr.cache().clone())));
            }
            if let Some(ar) = &k.access_review {
                authorizers.push(ar.clone());
                metrics.register_cache("access", Arc::new(ar.cache().clone()));
                caches.push(("access", Arc::new(ar.cache().clone())));
            }
        }
        if !caches.is_empty() {
            metrics.register_collector(Box::new(cache::metrics::Collector::new(caches)));
        }
        let migration = Migration::new(&config.migration);
        metrics.register_collector(Box::new(IdentityCollector(migration.tracker().clone())));
        Self {
            tokens,
            authorizers,
            migration,
        }
    }

    /// The gate of listener `l`: its routes, identity rules and material,
    /// the shared backends.
    fn gate<F>(
        &self,
        config: &Config,
        l: &ListenerConfig,
        tls: Arc<tls::Acceptor>,
        metrics: &Metrics,
        forward: F,
    ) -> Gate<F> {
        Gate::new(Parts {
            routes: l.routes.clone(),
            authn: Authenticator::new(CertMapper::new(&l.identity_rules), self.tokens.clone()),
            authz: Authorizers::new(self.authorizers.clone()),
            headers: config.headers.clone(),
            paths: config.paths.clone(),
            migration: self.migration.clone(),
            mode: config.mode.clone(),
            tls,
            metrics: metrics.clone(),
            forward,
        })
    }
}
