//! Runtime assembly: a validated [`Config`] becomes the running parts (TLS
//! acceptor and reloader, backends, routes, gate, metrics, health). Nothing
//! here decides anything about a request; it only wires.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::authn::jwks::JwksAuthenticator;
use crate::authn::static_tokens::StaticTokens;
use crate::authn::token_review::TokenReviewer;
use crate::authn::x509::CertMapper;
use crate::authn::{Authenticator, TokenAuthenticator};
use crate::authz::access_review::AccessReviewer;
use crate::authz::static_rules::StaticRules;
use crate::authz::{Authorizer, Authorizers};
use crate::cache::{self, CacheSource, KeyHasher};
use crate::config::{AdminConfig, Config, KubernetesConfig, Limits, TlsConfig};
use crate::fleet::{self, Fleet};
use crate::gate::{Gate, Parts};
use crate::kubernetes::{self, ApiClient};
use crate::metrics::Metrics;
use crate::migration::Migration;
use crate::migration::report::IdentityCollector;
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
    /// The revocation object's namespace.
    #[error(transparent)]
    Fleet(#[from] fleet::Error),
}

/// Everything the server needs at runtime.
pub struct App {
    /// The request pipeline.
    pub gate: Arc<Gate>,
    /// The TLS material for new handshakes.
    pub tls: Arc<tls::Acceptor>,
    /// Reloads `tls` when its files change.
    pub reloader: Arc<Reloader>,
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
    /// TLS settings (reload interval).
    pub tls_config: TlsConfig,
    /// The client TLS of `https` upstreams loaded from files (reloaded
    /// like the serving material).
    pub upstream_tls: Vec<Arc<ClientTls>>,
    /// The watch of the fleet's revocation object, when configured.
    pub fleet: Option<Arc<Fleet>>,
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
        let metrics = Metrics::new();
        let acceptor = Arc::new(tls::Acceptor::new(tls::load(&config.tls)?));
        let reloader = Arc::new(Reloader::new(
            config.tls.clone(),
            acceptor.clone(),
            metrics.clone(),
        ));

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
        let upstreams = Upstreams::new(&config.routes, &config.limits)?;
        let upstream_tls = upstreams.client_tls().cloned().collect();
        let gate = gate(config, kube.as_ref(), acceptor.clone(), &metrics, upstreams);
        Ok(Self {
            gate: Arc::new(gate),
            tls: acceptor,
            reloader,
            limits: config.limits.clone(),
            kubernetes: kube,
            metrics,
            health: Arc::new(Health::default()),
            admin: config.admin.clone(),
            tls_config: config.tls.clone(),
            upstream_tls,
            fleet,
        })
    }

    /// Serves the main listener until `shutdown`, then drains it.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let handshake = Handshake::Tls {
            acceptor: self.tls.clone(),
            profile: Profile::Main,
            metrics: Some(Box::new(self.metrics.clone())),
        };
        let limits = server::Limits::main(&self.limits);
        server::serve(listener, handshake, self.gate.clone(), limits, shutdown).await;
    }

    /// Starts the background work (TLS reload, API probe) until `stop`.
    pub fn spawn_background(&self, stop: &CancellationToken) {
        let every = self.tls_config.reload_interval;
        tokio::spawn(self.reloader.clone().run(every, stop.clone()));
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

/// The gate of `config`: static backends first, then the Kubernetes
/// reviewers of `kube` (the apiserver's union of authenticators), sending
/// permitted requests to `forward`. Registers the caches' and the migration
/// report's metrics.
pub fn gate<F>(
    config: &Config,
    kube: Option<&KubeBackend>,
    tls: Arc<tls::Acceptor>,
    metrics: &Metrics,
    forward: F,
) -> Gate<F> {
    let statics = &config.static_backend;
    let mut tokens: Vec<Arc<dyn TokenAuthenticator>> = Vec::new();
    if !statics.tokens.is_empty() {
        tokens.push(Arc::new(StaticTokens::new(&statics.tokens)));
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
    Gate::new(Parts {
        routes: config.routes.clone(),
        authn: Authenticator::new(CertMapper::new(&config.identity_rules), tokens),
        authz: Authorizers::new(authorizers),
        headers: config.headers.clone(),
        paths: config.paths.clone(),
        migration,
        mode: config.mode.clone(),
        tls,
        metrics: metrics.clone(),
        forward,
    })
}
