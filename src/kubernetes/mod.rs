//! The Kubernetes API as a decision backend: one kube client, a cap on
//! concurrent calls, a client-side rate limit and a deadline per call.
//!
//! Calls are raw `POST`s (reviews) and `GET`s (OIDC discovery and JWKS, for
//! local JWT verification) through [`kube::Client::send`] so that the status
//! code and `Retry-After` of a 429 are visible, and so that a response body
//! (which echoes the token of a TokenReview) is never logged: bodies are
//! parsed into envelopes that read `status` only, and parse errors are
//! reported by position, never by content. kube's own retry is off; a failed
//! call is a 503 for the client, who may retry.

pub(crate) mod rate;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::backend::BackendError;
use crate::clock::unix_now;
use crate::config::KubernetesConfig;

use crate::metrics::{ApiLabels, KindLabel, Metrics};
use rate::RateLimiter;

/// Largest API response body read.
const MAX_BODY: usize = 1024 * 1024;

/// The client could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig file is unusable.
    #[error("kubernetes.kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        source: kube::config::KubeconfigError,
    },
    /// Neither KUBECONFIG, ~/.kube/config nor in-cluster configuration works.
    #[error("no Kubernetes configuration found (set kubernetes.kubeconfig): {0}")]
    Infer(#[from] kube::config::InferConfigError),
    /// kube refused the configuration.
    #[error("cannot build the Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// Builds a kube client from `cfg`. The transport is kube's own layers (base URI, auth with token
/// refresh, extra headers) over a pooled hyper client whose sockets set
/// `TCP_NODELAY` (kube's default connector does not, which costs a delayed-ACK
/// round trip per review). No retry layer: our caller decides.
pub(crate) async fn client(cfg: &KubernetesConfig) -> Result<kube::Client, Error> {
    use hyper_util::client::legacy::connect::HttpConnector;
    use kube::client::ConfigExt;
    use tower::ServiceBuilder;

    let config = config(cfg).await?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(config.connect_timeout);
    let https = config.rustls_https_connector_with_connector(http)?;
    let pool = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(cfg.max_in_flight)
        .build(https);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(pool);
    Ok(kube::Client::new(service, config.default_namespace))
}

/// The kube configuration: the kubeconfig file if given, else inferred.
async fn config(cfg: &KubernetesConfig) -> Result<kube::Config, Error> {
    let mut config = match &cfg.kubeconfig {
        Some(path) => {
            let wrap = |source| Error::Kubeconfig {
                path: path.clone(),
                source,
            };
            let kc = kube::config::Kubeconfig::read_from(path).map_err(wrap)?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(wrap)?
        }
        None => kube::Config::infer().await?,
    };
    // Every call runs under our own deadline (`ApiClient::create`), so a slow
    // API is a `Timeout` (503 backend_timeout); connecting is bounded too.
    config.connect_timeout = Some(cfg.timeout);
    Ok(config)
}

/// A Kubernetes API object as returned by a create: only the fields a review
/// needs. Everything else, including the echoed spec, is skipped unread.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<S> {
    api_version: Option<String>,
    kind: Option<String>,
    status: Option<S>,
}

/// A `metav1.Status` error body: only its code-like fields.
#[derive(Deserialize, Default)]
struct StatusBody {
    reason: Option<String>,
    message: Option<String>,
}

/// The calls of one review kind may use: its own share of
/// `kubernetes.max_in_flight` and of `qps`/`burst`, so a flood of one kind
/// (unique junk tokens: TokenReviews) cannot starve another (decisions of
/// identities already known: SubjectAccessReviews).
struct Budget {
    slots: Semaphore,
    limiter: RateLimiter,
}

/// Shares of the budget: TokenReview, SubjectAccessReview, keys (JWKS and
/// OIDC discovery, rare). Each gets at least one slot and one call.
const SHARES: [f64; 3] = [0.45, 0.45, 0.10];

impl Budget {
    fn share(cfg: &KubernetesConfig, share: f64) -> Self {
        let part = |n: f64| (n * share).max(1.0);
        Self {
            slots: Semaphore::new(part(cfg.max_in_flight as f64) as usize),
            limiter: RateLimiter::new(part(cfg.qps), part(f64::from(cfg.burst)) as u32),
        }
    }
}

/// The API client shared by the reviewers.
pub struct ApiClient {
    client: kube::Client,
    /// By review kind: see [`SHARES`].
    budgets: [Budget; 3],
    timeout: Duration,
    last_success: AtomicI64,
    /// When the API last refused authgate's own credentials (401/403).
    last_rejected: AtomicI64,
    /// Per backend (review kind): no call before this instant, because the
    /// API answered 429 with `Retry-After`.
    backoff: std::sync::Mutex<HashMap<&'static str, Instant>>,
    metrics: Metrics,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    /// Wraps `client` with the limits of `cfg`.
    pub fn new(client: kube::Client, cfg: &KubernetesConfig, metrics: Metrics) -> Arc<Self> {
        Arc::new(Self {
            client,
            budgets: SHARES.map(|s| Budget::share(cfg, s)),
            timeout: cfg.timeout,
            last_success: AtomicI64::new(0),
            last_rejected: AtomicI64::new(0),
            backoff: std::sync::Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// Asks the API for `/version` every `every` until `stop`, so readiness
    /// reflects the API even when no review is needed.
    pub async fn probe_every(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.probe().await {
                debug!(error = %e, "Kubernetes API probe failed");
            }
        }
    }

    /// One `GET /version`.
    pub async fn probe(&self) -> Result<(), BackendError> {
        let backend = "version probe";
        let req = Request::get("/version")
            .header(http::header::ACCEPT, "application/json")
            .body(kube::client::Body::empty())
            .map_err(|e| bad(backend, format!("cannot build request: {e}")))?;
        let resp = tokio::time::timeout(self.timeout, self.client.send(req))
            .await
            .map_err(|_| BackendError::Timeout { backend })?
            .map_err(|e| unreachable(backend, &e))?;
        if resp.status().is_server_error() {
            return Err(BackendError::Unreachable {
                backend,
                detail: format!("HTTP {}", resp.status().as_u16()),
            });
        }
        self.answered(resp.status());
        Ok(())
    }

    /// Records an answer: a 401 or 403 refuses authgate's own credentials
    /// (its token expired, or it lost `system:auth-delegator`), which is no
    /// answer to count on; below 500 anything else is.
    fn answered(&self, status: StatusCode) {
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            self.last_rejected.store(unix_now(), Ordering::Relaxed);
        } else if !status.is_server_error() {
            self.last_success.store(unix_now(), Ordering::Relaxed);
        }
    }

    /// Unix time (seconds) of the last call the API answered (any status
    /// below 500 but 401 and 403), 0 if none.
    pub fn last_success(&self) -> i64 {
        self.last_success.load(Ordering::Relaxed)
    }

    /// Unix time (seconds) of the last call the API refused with 401/403.
    pub fn last_rejected(&self) -> i64 {
        self.last_rejected.load(Ordering::Relaxed)
    }

    /// POSTs `body` to `path` and returns the `status` of the created object,
    /// which must be `api_version`/`kind`. The whole call, including waiting
    /// for a slot and a rate token, ends by `self.timeout`.
    pub async fn create<S: DeserializeOwned>(
        &self,
        backend: &'static str,
        path: &str,
        api_version: &str,
        kind: &str,
        body: Vec<u8>,
    ) -> Result<S, BackendError> {
        self.observed(
            backend,
            self.create_inner(backend, path, api_version, kind, body),
        )
        .await
    }

    /// GETs the JSON document at `path` (the OIDC discovery document, the
    /// JWKS) and parses all of it as `T`, under the same slots, rate limit
    /// and deadline as [`ApiClient::create`].
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        backend: &'static str,
        path: &str,
    ) -> Result<T, BackendError> {
        Ok(self.get_json_with_headers(backend, path).await?.0)
    }

    /// [`ApiClient::get_json`], with the response headers (`Cache-Control`).
    pub async fn get_json_with_headers<T: DeserializeOwned>(
        &self,
        backend: &'static str,
        path: &str,
    ) -> Result<(T, http::HeaderMap), BackendError> {
        self.observed(backend, async {
            let req = Request::get(path)
                .header(
                    http::header::ACCEPT,
                    "application/json, application/jwk-set+json",
                )
                .body(kube::client::Body::empty())
                .map_err(|e| bad(backend, format!("cannot build request: {e}")))?;
            let (headers, bytes) = self.send(backend, req).await?;
            let doc = serde_json::from_slice(&bytes).map_err(|e| malformed(backend, &e))?;
            Ok((doc, headers))
        })
        .await
    }

    /// Runs one API call `call`, counting it in the API metrics.
    async fn observed<T>(
        &self,
        backend: &'static str,
        call: impl Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        let label = match backend {
            "TokenReview" => "tokenreview",
            "SubjectAccessReview" => "subjectaccessreview",
            JWKS_BACKEND | DISCOVERY_BACKEND => "jwks",
            _ => "other",
        };
        let start = std::time::Instant::now();
        self.metrics.api_in_flight.inc();
        let result = call.await;
        self.metrics.api_in_flight.dec();
        let code = match &result {
            Ok(_) => "2xx",
            Err(BackendError::Timeout { .. }) => "timeout",
            Err(BackendError::Throttled { .. }) => "throttled",
            Err(BackendError::Unreachable { detail, .. }) if detail.starts_with("HTTP 5") => "5xx",
            Err(BackendError::BadResponse { detail, .. }) if detail.starts_with("HTTP 4") => "4xx",
            Err(_) => "error",
        };
        if code == "throttled" {
            self.metrics
                .api_throttled
                .get_or_create(&KindLabel { kind: label })
                .inc();
        }
        self.metrics
            .api_requests
            .get_or_create(&ApiLabels { kind: label, code })
            .inc();
        self.metrics
            .api_duration
            .get_or_create(&KindLabel { kind: label })
            .observe(start.elapsed().as_secs_f64());
        result
    }

    async fn create_inner<S: DeserializeOwned>(
        &self,
        backend: &'static str,
        path: &str,
        api_version: &str,
        kind: &str,
        body: Vec<u8>,
    ) -> Result<S, BackendError> {
        let req = Request::post(path)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .body(kube::client::Body::from(body))
            .map_err(|e| bad(backend, format!("cannot build request: {e}")))?;
        let (_, bytes) = self.send(backend, req).await?;
        let env: Envelope<S> =
            serde_json::from_slice(&bytes).map_err(|e| malformed(backend, &e))?;
        if env.api_version.as_deref() != Some(api_version) || env.kind.as_deref() != Some(kind) {
            return Err(bad(
                backend,
                format!(
                    "expected {api_version} {kind}, got {} {}",
                    env.api_version.as_deref().unwrap_or("?"),
                    env.kind.as_deref().unwrap_or("?")
                ),
            ));
        }
        env.status
            .ok_or_else(|| bad(backend, "the answer has no status".into()))
    }

    /// Sends `req` once a slot and a rate token are free, and returns the
    /// headers and body of a 2xx answer. Everything ends by `self.timeout`.
    async fn send(
        &self,
        backend: &'static str,
        req: Request<kube::client::Body>,
    ) -> Result<(http::HeaderMap, bytes::Bytes), BackendError> {
        let deadline = Instant::now() + self.timeout;
        let timeout = || BackendError::Timeout { backend };
        // The API asked this kind of call to wait: answer for it, unasked.
        if let Some(left) = self.backing_off(backend) {
            return Err(BackendError::Throttled {
                backend,
                retry_after: Some(left),
            });
        }
        let budget = self.budget(backend);
        let _slot = tokio::time::timeout_at(deadline, budget.slots.acquire())
            .await
            .map_err(|_| timeout())?
            .map_err(|_| timeout())?;
        if Instant::now() >= deadline {
            return Err(timeout());
        }
        if !budget.limiter.acquire(deadline).await {
            return Err(BackendError::Throttled {
                backend,
                retry_after: None,
            });
        }
        let call = async {
            let resp = self
                .client
                .send(req)
                .await
                .map_err(|e| unreachable(backend, &e))?;
            let (parts, body) = resp.into_parts();
            let bytes = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|e| unreachable(backend, &*e))?
                .to_bytes();
            Ok::<_, BackendError>((parts, bytes))
        };
        let (parts, bytes) = tokio::time::timeout_at(deadline, call)
            .await
            .map_err(|_| timeout())??;
        self.answered(parts.status);
        let checked = check_status(backend, parts.status, &parts.headers, &bytes);
        if let Err(BackendError::Throttled { retry_after, .. }) = &checked {
            self.back_off(backend, retry_after.unwrap_or(Duration::from_secs(1)));
        }
        checked?;
        Ok((parts.headers, bytes))
    }

    /// The budget of `backend`'s review kind.
    fn budget(&self, backend: &'static str) -> &Budget {
        match backend {
            "TokenReview" => &self.budgets[0],
            "SubjectAccessReview" => &self.budgets[1],
            _ => &self.budgets[2],
        }
    }

    /// How long calls of `backend` still wait after a 429, if they do.
    fn backing_off(&self, backend: &'static str) -> Option<Duration> {
        let b = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        let until = *b.get(backend)?;
        until.checked_duration_since(Instant::now())
    }

    /// Holds calls of `backend` back for `wait` (at most [`MAX_BACKOFF`]).
    fn back_off(&self, backend: &'static str, wait: Duration) {
        let until = Instant::now() + wait.min(MAX_BACKOFF);
        let mut b = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        let at = b.entry(backend).or_insert(until);
        *at = (*at).max(until);
    }
}

/// The longest an API `Retry-After` holds a kind of call back (and is passed
/// on to clients): an overloaded API may ask for minutes.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The `backend` name of OIDC discovery calls (errors and metrics).
pub(crate) const DISCOVERY_BACKEND: &str = "OIDC discovery";
/// The `backend` name of JWKS calls (errors and metrics).
pub(crate) const JWKS_BACKEND: &str = "JWKS";

/// A body that is not the JSON expected: reported by position, never by content.
fn malformed(backend: &'static str, e: &serde_json::Error) -> BackendError {
    bad(
        backend,
        format!(
            "malformed JSON ({:?} at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ),
    )
}

/// Maps a non-2xx answer to an error.
fn check_status(
    backend: &'static str,
    code: StatusCode,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<(), BackendError> {
    if code.is_success() {
        return Ok(());
    }
    if code == StatusCode::TOO_MANY_REQUESTS {
        let retry_after = headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        return Err(BackendError::Throttled {
            backend,
            retry_after,
        });
    }
    let status: StatusBody = serde_json::from_slice(body).unwrap_or_default();
    let reason = status.reason.unwrap_or_default();
    if code.is_server_error() {
        return Err(BackendError::Unreachable {
            backend,
            detail: format!("HTTP {} {reason}", code.as_u16()),
        });
    }
    // 401/403: authgate's own credentials are refused; the message names
    // authgate's identity and the resource, never the reviewed token.
    let message = match code {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => status.message.unwrap_or_default(),
        _ => String::new(),
    };
    Err(bad(
        backend,
        format!("HTTP {} {reason} {message}", code.as_u16())
            .trim_end()
            .to_owned(),
    ))
}

fn bad(backend: &'static str, detail: String) -> BackendError {
    BackendError::BadResponse { backend, detail }
}

/// A transport failure; a timeout anywhere in the chain is a `Timeout`.
fn unreachable(backend: &'static str, e: &(dyn std::error::Error + 'static)) -> BackendError {
    let mut detail = e.to_string();
    let mut timed_out = false;
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(cause) = next {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            timed_out |= io.kind() == std::io::ErrorKind::TimedOut;
        }
        if !std::ptr::addr_eq(cause, e) {
            detail.push_str(": ");
            detail.push_str(&cause.to_string());
        }
        next = cause.source();
    }
    if timed_out {
        return BackendError::Timeout { backend };
    }
    BackendError::Unreachable { backend, detail }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    fn api(max_in_flight: usize, qps: f64, burst: u32) -> Arc<ApiClient> {
        let svc = tower::service_fn(|_: Request<kube::client::Body>| async {
            Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(
                bytes::Bytes::new(),
            )))
        });
        let cfg = KubernetesConfig {
            kubeconfig: None,
            timeout: Duration::from_secs(1),
            max_in_flight,
            qps,
            burst,
            token_review: None,
            access_review: None,
        };
        ApiClient::new(kube::Client::new(svc, "default"), &cfg, Metrics::new())
    }

    #[tokio::test]
    async fn a_flood_of_one_review_kind_leaves_the_others_their_share() {
        let api = api(64, 200.0, 400);
        let now = Instant::now();
        let deadline = now + Duration::from_secs(1);
        // TokenReviews take every rate token they can reserve and every slot.
        let tr = api.budget("TokenReview");
        let mut reserved = 0;
        while tr.limiter.reserve(now, deadline).is_some() {
            reserved += 1;
        }
        assert!(reserved > 100, "{reserved}");
        let held: Vec<_> = std::iter::from_fn(|| tr.slots.try_acquire().ok()).collect();
        assert_eq!(held.len(), 28);
        // SubjectAccessReviews and key fetches still start at once.
        for kind in ["SubjectAccessReview", JWKS_BACKEND, DISCOVERY_BACKEND] {
            let b = api.budget(kind);
            assert_eq!(
                b.limiter.reserve(now, deadline),
                Some(Duration::ZERO),
                "{kind}"
            );
            assert!(b.slots.try_acquire().is_ok(), "{kind}");
        }
    }

    #[tokio::test]
    async fn every_kind_gets_at_least_one_slot_and_one_call() {
        let api = api(1, 1.0, 1);
        let now = Instant::now();
        for kind in ["TokenReview", "SubjectAccessReview", JWKS_BACKEND] {
            let b = api.budget(kind);
            assert!(b.slots.try_acquire().is_ok(), "{kind}");
            assert!(
                b.limiter
                    .reserve(now, now + Duration::from_secs(1))
                    .is_some(),
                "{kind}"
            );
        }
    }
}
